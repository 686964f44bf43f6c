"""droplab.data.as_splits: tensors, arrays, DataFrames, Datasets and DataLoaders -> Splits.

Every form of the same data gives the same tensors (bitwise), and so the same sweep results.
"""

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from droplab.data import Splits, as_splits
from droplab.errors import ConfigError, DataError

pd = pytest.importorskip("pandas")


def _table(n=60, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1).astype(np.int64)
    return x, y


def _same(a: Splits, b: Splits):
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        ta, tb = getattr(a, name), getattr(b, name)
        assert ta.dtype == tb.dtype and torch.equal(ta, tb), name
    assert (a.task, a.n_classes, a.input_shape) == (b.task, b.n_classes, b.input_shape)


def test_every_form_gives_the_same_splits():
    x, y = _table()
    xt, yt = torch.from_numpy(x).float(), torch.from_numpy(y)
    ref = as_splits(xt, yt, quiet=True)
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "label": y})
    forms = {
        "numpy pair": as_splits(x.astype(np.float32), y, quiet=True),
        "float64 tensors": as_splits(torch.from_numpy(x), yt, quiet=True),
        "tuple": as_splits((xt, yt), quiet=True),
        "DataFrame": as_splits(frame, target="label", quiet=True),
        "Dataset": as_splits(TensorDataset(xt, yt), quiet=True),
        "DataLoader": as_splits(DataLoader(TensorDataset(xt, yt), batch_size=7), quiet=True),
        "DataLoader factory": as_splits(lambda: DataLoader(TensorDataset(xt, yt), batch_size=16), quiet=True),
    }
    for name, splits in forms.items():
        _same(ref, splits)
    assert ref.task == "classification" and ref.n_classes == 3
    assert (len(ref.x_train), len(ref.x_val), len(ref.x_test)) == (48, 12, 0)
    # stratified: each class in the validation split within one example of its share
    for c in range(3):
        share = int((yt == c).sum()) * 0.2
        assert abs(int((ref.y_val == c).sum()) - share) <= 1


def test_given_validation_and_test_data():
    x, y = _table(50)
    s = as_splits(x[:30], y[:30], val=(x[30:40], y[30:40]), test=(x[40:], y[40:]), quiet=True)
    assert (len(s.x_train), len(s.x_val), len(s.x_test)) == (30, 10, 10)
    assert torch.equal(s.x_val, torch.from_numpy(x[30:40]).float())
    assert s.info["validation"] == "given"
    ds = as_splits(TensorDataset(torch.ones(4, 2), torch.tensor([0, 1, 0, 1])),
                   val=TensorDataset(torch.zeros(2, 2), torch.tensor([1, 0])), quiet=True)
    assert len(ds.x_train) == 4 and torch.equal(ds.x_val, torch.zeros(2, 2))


def test_validation_draw_is_seeded():
    x, y = _table()
    a, b = as_splits(x, y, seed=1, quiet=True), as_splits(x, y, seed=1, quiet=True)
    _same(a, b)
    assert not torch.equal(a.x_val, as_splits(x, y, seed=2, quiet=True).x_val)


def test_notes_are_printed_and_kept(capsys):
    x, y = _table()
    s = as_splits(torch.from_numpy(x), torch.from_numpy(y))
    err = capsys.readouterr().err
    assert "droplab: train: inputs cast from float64 to float32" in err
    assert "droplab: task: classification (integer labels 0..2: 3-class classification); pass task=... to override" in err
    assert s.info["notes"][0] == "train: inputs cast from float64 to float32"
    as_splits(torch.from_numpy(x).float(), torch.from_numpy(y), quiet=True)
    assert capsys.readouterr().err == ""


def test_dataframe_categorical_one_hot_and_named_classes(capsys):
    frame = pd.DataFrame({
        "size": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
        "colour": ["red", "blue", "red", "green", "blue", "red", "green", "blue"],
        "fresh": [True, False, True, True, False, True, False, True],
        "kind": ["b", "a", "b", "a", "b", "a", "b", "a"],
    })
    s = as_splits(frame, target="kind", val_fraction=0.25)
    assert s.info["features"] == ["size", "colour=blue", "colour=green", "colour=red", "fresh"]
    assert s.info["classes"] == ["a", "b"] and s.task == "classification" and s.n_classes == 2
    err = capsys.readouterr().err
    assert "one-hot encoded categorical column colour (3 levels)" in err
    assert "task: classification (the target holds 2 class names); pass task=... to override" in err
    full = torch.cat([s.x_train, s.x_val])
    assert torch.equal(full[:, 1:4].sum(1), torch.ones(8))  # one level per row
    with pytest.raises(DataError, match=r"column 'colour' is not numeric \(\w+\); pass categorical='onehot'"):
        as_splits(frame, target="kind", categorical="error", quiet=True)


def test_dataframe_binary_target_and_pandas_categorical():
    frame = pd.DataFrame({"x": np.arange(10.0), "c": pd.Categorical(list("pqpqpqpqpq"), categories=["q", "p"]),
                          "y": [0.0, 1.0] * 5})
    s = as_splits(frame, target="y", quiet=True)
    assert s.task == "binary" and s.n_outputs == 1 and s.y_train.dtype == torch.float32
    assert s.info["features"] == ["x", "c=q", "c=p"]


def test_dataframe_errors():
    frame = pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.0], "t": [0, 1, 0, 1]})
    with pytest.raises(DataError, match=r"train: the inputs contains 1 NaN and 0 infinite values \(first in row 1\)"):
        as_splits(frame, target="t", quiet=True)
    good = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "t": [0, 1, 0, 1]})
    with pytest.raises(ConfigError, match="a DataFrame needs target=<column name>; columns: a, t"):
        as_splits(good)
    with pytest.raises(DataError, match=r"target column 'tt' not found \(did you mean 't'\?\); columns: a, t"):
        as_splits(good, target="tt")
    with pytest.raises(DataError, match="target column 't' has 1 missing values"):
        as_splits(pd.DataFrame({"a": [1.0, 2.0, 3.0], "t": [0.0, np.nan, 1.0]}), target="t")
    with pytest.raises(DataError, match="categorical column 'c' has 1 missing values"):
        as_splits(pd.DataFrame({"c": ["u", None, "v"], "t": [0, 1, 0]}), target="t")
    with pytest.raises(DataError, match="no feature columns besides the target 't'"):
        as_splits(pd.DataFrame({"t": [0, 1]}), target="t")
    with pytest.raises(DataError, match="the validation/test DataFrame has columns"):
        as_splits(good, target="t", val=good.rename(columns={"a": "b"}))
    with pytest.raises(ConfigError, match="y= goes with tensor or array inputs; with a DataFrame pass target="):
        as_splits(good, [0, 1, 0, 1])


def test_nan_and_shape_errors_for_tensors_and_arrays():
    x = torch.ones(10, 2)
    x[3, 1] = float("nan")
    with pytest.raises(DataError, match=r"train: the inputs contains 1 NaN and 0 infinite values \(first in row 3\)"):
        as_splits(x, torch.zeros(10, dtype=torch.long))
    y = torch.zeros(10)
    y[2] = float("inf")
    with pytest.raises(DataError, match="train: the targets contains 0 NaN and 1 infinite values"):
        as_splits(torch.ones(10, 2), y, quiet=True)
    with pytest.raises(DataError, match="train: 10 inputs but 9 targets; expected one target per example"):
        as_splits(torch.ones(10, 2), torch.zeros(9), quiet=True)
    with pytest.raises(DataError, match=r"val: examples have shape \(3,\), expected \(2,\) like the training data"):
        as_splits(torch.ones(10, 2), torch.zeros(10), val=(torch.ones(4, 3), torch.zeros(4)), quiet=True)
    with pytest.raises(ConfigError, match="train: inputs given without targets; pass y="):
        as_splits(torch.ones(10, 2))
    with pytest.raises(DataError, match="expected a tensor or array .* got str"):
        as_splits("data.csv")
    with pytest.raises(DataError, match="train: expected numbers, got an array of Python objects"):
        as_splits(np.array([{"a": 1}, {"b": 2}]), [0, 1])
    with pytest.raises(ConfigError, match=r"val_fraction must be in \[0, 1\), got 1\.5"):
        as_splits(torch.ones(10, 2), torch.zeros(10), val_fraction=1.5)
    with pytest.raises(DataError, match="val_fraction=0.01 of 10 examples leaves an empty validation set"):
        as_splits(torch.ones(10, 2), torch.zeros(10), val_fraction=0.01, quiet=True)
    with pytest.raises(DataError, match="train: a Dataset item must be a pair"):
        as_splits(TensorDataset(torch.ones(3, 2)))
    with pytest.raises(DataError, match="train: the DataLoader gave no batches"):
        as_splits(lambda: [])
    with pytest.raises(DataError, match="task 'binary' needs 0/1 targets"):
        as_splits(torch.ones(10, 2), torch.arange(10), task="binary", quiet=True)


def test_task_override_and_regression():
    x = torch.randn(40, 2)
    counts = torch.arange(40) % 30
    s = as_splits(x, counts, quiet=True)
    assert s.task == "regression" and s.y_train.dtype == torch.float32 and s.n_classes is None
    assert "counts, not classes" in s.info["task_reason"]
    s = as_splits(x, torch.arange(40) % 2, task="regression", quiet=True)
    assert s.task == "regression" and s.info["task_reason"] == "task='regression' given"


def test_pandas_is_not_imported_unless_a_frame_is_passed():
    code = ("import sys, torch; from droplab.data import as_splits; "
            "as_splits(torch.ones(10, 2), torch.zeros(10), quiet=True); print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_dataframe_and_tensors_give_the_same_sweep():
    """Splits from a DataFrame and from the equivalent tensors train to the same numbers."""
    from torch import nn

    from droplab.sweep import run_sweep
    from droplab.train import TrainConfig

    x, y = _table(80, seed=3)
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "label": y})

    def build(cfg):
        return nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Dropout(cfg["p"]), nn.Linear(16, 3))

    results = []
    for data in (as_splits(frame, target="label", quiet=True),
                 as_splits(torch.from_numpy(x).float(), torch.from_numpy(y), quiet=True)):
        res = run_sweep(build, data=data, space={"p": [0.0, 0.3]}, seeds=2,
                        train=TrainConfig(epochs=2, batch_size=16), progress=False)
        results.append([(r["key"], r["values"]) for r in res.rows])
    assert results[0] == results[1]
