import dataclasses
import gzip
import hashlib
import http.server
import random
import struct
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from droplab.data import DATASETS, FASHION_MNIST_CLASSES, Splits, load_dataset, read_idx
from droplab.data import fashion, sources
from droplab.data.splits import stratified_order
from droplab.errors import ConfigError, DataError, DroplabWarning

# ------------------------------------------------------------------------------- helpers


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _blobs(n_per_class=(100, 60, 40), n_features=3, seed=0):
    """Imbalanced 3-class data; feature 0 is a unique example id (to track rows)."""
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.full(n, c) for c, n in enumerate(n_per_class)])
    x = rng.normal(size=(len(y), n_features)) + y[:, None]
    x[:, 0] = np.arange(len(y))
    return x, y


def _ids(x):
    return set(np.rint(x[:, 0].numpy()).astype(int).tolist())


_IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C,
              np.float32: 0x0D, np.float64: 0x0E}


def _idx_bytes(a):
    a = np.asarray(a)
    header = bytes([0, 0, _IDX_CODES[a.dtype.type], a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + a.astype(a.dtype.newbyteorder(">")).tobytes()


def _fake_fashion(directory, n_train=30, n_test=10, seed=0, gz=True):
    """Small synthetic Fashion-MNIST idx files; returns the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": (np.arange(n_test) % 10).astype(np.uint8),
    }
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        if gz:
            (directory / name).write_bytes(gzip.compress(_idx_bytes(a)))
        else:
            (directory / name.removesuffix(".gz")).write_bytes(_idx_bytes(a))
    return arrays


# ------------------------------------------------------------------------ public surface


def test_dataset_names_and_unknown_name():
    assert set(DATASETS) == {"mnist1d", "fashion_mnist", "digits", "breast_cancer", "wine",
                             "iris", "diabetes", "csv", "npz", "sine"}
    with pytest.raises(ConfigError, match=r"name must be one of 'mnist1d', .*'sine'; got 'mnist1'.*did you mean 'mnist1d'"):
        load_dataset("mnist1")


def test_splits_is_frozen_and_reports_outputs(tmp_path):
    s = load_dataset("iris")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.name = "x"
    assert s.n_outputs == 3 and "train=108" in repr(s) and "n_classes=3" in repr(s)
    x = np.random.default_rng(0).normal(size=(50, 4))
    p = _write_npz(tmp_path / "r.npz", x=x, y=x[:, :2].astype(np.float32))
    r = load_dataset("npz", path=p)
    assert r.task == "regression" and r.n_classes is None and r.n_outputs == 2
    assert r.y_train.dtype == torch.float32 and r.y_train.shape[1] == 2


@pytest.mark.parametrize(
    "name,task,n,k,features",
    [("iris", "classification", 150, 3, 4), ("wine", "classification", 178, 3, 13),
     ("breast_cancer", "classification", 569, 2, 30), ("digits", "classification", 1797, 10, 64),
     ("diabetes", "regression", 442, None, 10)],
)
def test_sklearn_sets(name, task, n, k, features):
    s = load_dataset(name)
    n_test = round(0.2 * n)
    n_val = round(0.1 * (n - n_test))
    assert (len(s.x_train), len(s.x_val), len(s.x_test)) == (n - n_test - n_val, n_val, n_test)
    assert s.task == task and s.n_classes == k and s.input_shape == (features,)
    assert s.x_train.dtype == torch.float32
    assert s.y_train.dtype == (torch.int64 if k else torch.float32)
    if k:
        assert sorted(s.y_train.unique().tolist()) == list(range(k))
        assert len(s.info["classes"]) == k
    mean = s.x_train.mean(0)
    assert torch.all(mean.abs() < 1e-4)  # per-feature standardization on the training split
    std = s.x_train.std(0, unbiased=False)
    const = torch.tensor([v == 1.0 for v in s.info["standardization"]["std"]])
    assert torch.allclose(std[~const], torch.ones(int((~const).sum())), atol=1e-4)


# --------------------------------------------------------------------- splits and strata


def test_split_sizes_and_disjointness(tmp_path):
    x, y = _blobs()
    p = _write_npz(tmp_path / "d.npz", x=x, y=y)
    s = load_dataset("npz", path=p, standardize=False, val_fraction=0.25, seed=3)
    n_test = round(0.2 * 200)
    n_val = round(0.25 * (200 - n_test))
    assert (len(s.x_test), len(s.x_val), len(s.x_train)) == (n_test, n_val, 200 - n_test - n_val)
    tr, va, te = _ids(s.x_train), _ids(s.x_val), _ids(s.x_test)
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert tr | va | te == set(range(200))
    # labels travel with their rows
    for xs, ys in ((s.x_train, s.y_train), (s.x_val, s.y_val), (s.x_test, s.y_test)):
        assert torch.equal(torch.from_numpy(y[np.rint(xs[:, 0].numpy()).astype(int)]), ys)
    assert s.info["sizes"] == {"train": len(s.x_train), "val": n_val, "test": n_test}


def _assert_stratified(counts, m, class_sizes):
    # A prefix of m from stratified_order holds class c within 1 + K * n_c / n of m * n_c / n
    # (each class count is within 1 of t * n_c for the prefix threshold t; see its docstring).
    n, k = sum(class_sizes), len(class_sizes)
    for c, n_c in enumerate(class_sizes):
        assert abs(counts.get(c, 0) - m * n_c / n) < 1 + k * n_c / n, (c, counts, m)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_stratification_of_test_val_and_subsample(tmp_path, seed):
    sizes = (100, 60, 40)
    x, y = _blobs(sizes)
    p = _write_npz(tmp_path / "d.npz", x=x, y=y)
    s = load_dataset("npz", path=p, seed=seed, val_fraction=0.3, subsample=70)
    for part, m in ((s.y_test, 40), (s.y_val, 48), (s.y_train, 70)):
        counts = dict(zip(*np.unique(part.numpy(), return_counts=True)))
        _assert_stratified(counts, m, sizes)


def test_stratified_order_prefixes(gen):
    rng = np.random.default_rng(11)
    y = rng.integers(0, 4, size=301)
    sizes = [int((y == c).sum()) for c in range(4)]
    order = stratified_order(y, len(y), np.random.default_rng(5))
    assert sorted(order.tolist()) == list(range(301))
    for m in (1, 17, 100, 250, 301):
        counts = dict(zip(*np.unique(y[order[:m]], return_counts=True)))
        _assert_stratified(counts, m, sizes)


def test_subsample_is_nested_and_val_test_fixed(tmp_path):
    x, y = _blobs()
    p = _write_npz(tmp_path / "d.npz", x=x, y=y)
    small = load_dataset("npz", path=p, subsample=30, seed=4, standardize=False)
    big = load_dataset("npz", path=p, subsample=90, seed=4, standardize=False)
    assert _ids(small.x_train) < _ids(big.x_train)
    assert torch.equal(small.x_val, big.x_val) and torch.equal(small.x_test, big.x_test)


def test_determinism_and_seed_effects(tmp_path):
    kw = dict(seed=7, subsample=500, label_noise=0.2, input_noise=0.3)
    a, b = load_dataset("digits", **kw), load_dataset("digits", **kw)
    for f in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    assert a.info == b.info
    c = load_dataset("digits", seed=8)
    d = load_dataset("digits", seed=7)
    assert not torch.equal(c.y_val, d.y_val)  # validation carve follows the seed
    assert torch.equal(c.y_test, d.y_test)  # the carved test set does not
    assert "same for every seed" in c.info["test_split"]


# ------------------------------------------------------------------------ standardization


def test_standardization_fitted_on_train_only(tmp_path):
    x, y = _blobs()
    x_test = np.random.default_rng(1).normal(size=(20, 3))
    y_test = np.arange(20) % 3
    p1 = _write_npz(tmp_path / "a.npz", x=x, y=y, x_test=x_test, y_test=y_test)
    plain = load_dataset("npz", path=p1, standardize=False, seed=2)
    # Same file with the validation rows and the test inputs replaced by huge values.
    val_rows = sorted(_ids(plain.x_val))
    x2 = x.copy()
    x2[val_rows, 1:] = 1e6
    p2 = _write_npz(tmp_path / "b.npz", x=x2, y=y, x_test=x_test + 1e6, y_test=y_test)
    s1 = load_dataset("npz", path=p1, seed=2)
    s2 = load_dataset("npz", path=p2, seed=2)
    assert torch.equal(s1.x_train, s2.x_train)
    assert s1.info["standardization"] == s2.info["standardization"]
    st = s1.info["standardization"]
    assert st["mode"] == "feature" and st["fitted_on"] == "train"
    raw_train = plain.x_train.double()
    torch.testing.assert_close(torch.tensor(st["mean"], dtype=torch.float64), raw_train.mean(0))
    torch.testing.assert_close(torch.tensor(st["std"], dtype=torch.float64), raw_train.std(0, unbiased=False))
    expect_test = (torch.from_numpy(x_test) - torch.tensor(st["mean"], dtype=torch.float64)) / torch.tensor(st["std"], dtype=torch.float64)
    torch.testing.assert_close(s1.x_test, expect_test.float())
    assert torch.all(s2.x_val[:, 1:] > 1e4)  # val is transformed with train stats, not refit


def test_global_standardization_for_signals_and_constant_features(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(80, 2, 5))
    p = _write_npz(tmp_path / "g.npz", x=x, y=np.arange(80) % 2)
    s = load_dataset("npz", path=p)
    st = s.info["standardization"]
    assert st["mode"] == "global" and isinstance(st["mean"], float)
    assert s.input_shape == (2, 5)
    assert abs(float(s.x_train.mean())) < 1e-5
    assert abs(float(s.x_train.std(unbiased=False)) - 1) < 1e-5
    xc = rng.normal(size=(50, 3))
    xc[:, 1] = 4.0
    s = load_dataset("npz", path=_write_npz(tmp_path / "c.npz", x=xc, y=np.arange(50) % 2))
    assert s.info["standardization"]["std"][1] == 1.0
    assert torch.all(s.x_train[:, 1] == 0) and torch.all(s.x_test[:, 1] == 0)


# ------------------------------------------------------------------------------- noise


@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.3, 1.0])
def test_label_noise_exact_fraction_and_training_only(fraction):
    clean = load_dataset("digits", seed=5)
    noisy = load_dataset("digits", seed=5, label_noise=fraction)
    n = len(clean.y_train)
    changed = (clean.y_train != noisy.y_train).nonzero().flatten().tolist()
    assert len(changed) == round(fraction * n)
    if fraction:
        assert noisy.info["label_noise"]["n_corrupted"] == len(changed)
        assert noisy.info["label_noise"]["indices"] == changed
        assert noisy.info["label_noise"]["fraction"] == fraction
    assert torch.equal(clean.x_train, noisy.x_train)
    assert torch.equal(clean.y_val, noisy.y_val) and torch.equal(clean.y_test, noisy.y_test)


def test_label_noise_nested_and_uniform_over_other_classes():
    a = load_dataset("digits", seed=1, label_noise=0.1)
    b = load_dataset("digits", seed=1, label_noise=0.4)
    ia, ib = a.info["label_noise"]["indices"], b.info["label_noise"]["indices"]
    assert set(ia) < set(ib)
    assert torch.equal(a.y_train[ia], b.y_train[ia])  # same wrong label at both levels
    # The replacement is uniform over the 9 other classes: chi-square on (new - old) mod 10,
    # over 3 seeds, each with 1294 corrupted labels (~144 per cell).
    clean = load_dataset("digits")
    for seed in (0, 1, 2):
        full = load_dataset("digits", seed=seed, label_noise=1.0)
        ref = load_dataset("digits", seed=seed)
        shift = ((full.y_train - ref.y_train) % 10).numpy()
        assert shift.min() >= 1
        counts = np.bincount(shift, minlength=10)[1:]
        assert stats.chisquare(counts).pvalue > 1e-3
    assert len(clean.y_train) == 1294


def test_input_noise_std_training_only():
    clean = load_dataset("digits", seed=2)
    noisy = load_dataset("digits", seed=2, input_noise=0.5)
    delta = (noisy.x_train - clean.x_train).flatten()
    # 1294 * 64 = 82816 draws: the sample std is within 5 / sqrt(2 * 82816) ~ 1.2% of 0.5.
    assert abs(float(delta.std()) / 0.5 - 1) < 5 / np.sqrt(2 * delta.numel())
    assert abs(float(delta.mean())) < 5 * 0.5 / np.sqrt(delta.numel())
    assert torch.equal(clean.x_val, noisy.x_val) and torch.equal(clean.x_test, noisy.x_test)
    assert noisy.info["input_noise"]["std"] == 0.5
    assert noisy.info["standardization"] == clean.info["standardization"]


# ----------------------------------------------------------------------------------- CSV


def _csv(tmp_path, text, name="d.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_csv_string_labels_mapping_and_task_inference(tmp_path):
    rows = ["a,b,species"] + [f"{i},{i % 7},{['setosa', 'virginica', 'apple'][i % 3]}"
                             for i in range(60)]
    s = load_dataset("csv", path=_csv(tmp_path, "\n".join(rows)), target="species")
    assert s.task == "classification" and s.n_classes == 3
    assert s.info["classes"] == ["apple", "setosa", "virginica"]
    assert s.input_shape == (2,) and s.info["features"] == ["a", "b"]
    ints = ["f,t"] + [f"{i},{(i % 4) * 10}" for i in range(40)]
    # Integers that are not exactly 0..K-1 are values (infer_task's rule); task= makes them classes.
    s = load_dataset("csv", path=_csv(tmp_path, "\n".join(ints), "i.csv"), target="t")
    assert s.task == "regression" and "with gaps" in s.info["task_reason"]
    s = load_dataset("csv", path=_csv(tmp_path, "\n".join(ints), "i.csv"), target="t", task="classification")
    assert s.task == "classification" and s.info["classes"] == [0, 10, 20, 30]
    one_k = ["f,t"] + [f"{i},{i % 3 + 1}" for i in range(30)]
    s = load_dataset("csv", path=_csv(tmp_path, "\n".join(one_k), "k.csv"), target="t")
    assert s.task == "regression" and "task='classification' reads them as 3 classes" in s.info["task_reason"]
    zero_k = ["f,t"] + [f"{i},{i % 3}" for i in range(30)]
    s = load_dataset("csv", path=_csv(tmp_path, "\n".join(zero_k), "z.csv"), target="t")
    assert s.task == "classification" and s.info["task_reason"] == "integer labels 0..2: 3-class classification"
    s = load_dataset("csv", path=_csv(tmp_path, "\n".join(ints), "i.csv"), target="t",
                     task="regression")
    assert s.task == "regression" and s.y_train.dtype == torch.float32
    floats = ["f,t"] + [f"{i},{i * 0.5}" for i in range(40)]
    s = load_dataset("csv", path=_csv(tmp_path, "\n".join(floats), "r.csv"), target="t")
    assert s.task == "regression"


def test_csv_errors(tmp_path):
    good = _csv(tmp_path, "a,b,species\n1,2,x\n3,4,y\n")
    with pytest.raises(DataError, match=r"target column 'specis' not found in .*d\.csv \(did you mean 'species'\?\); columns: a, b, species"):
        load_dataset("csv", path=good, target="specis")
    with pytest.raises(ConfigError, match=r"the 'csv' dataset needs target=<column name>; columns of .*: a, b, species"):
        load_dataset("csv", path=good)
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataError, match=rf"CSV file not found: {missing}"):
        load_dataset("csv", path=missing, target="t")
    with pytest.raises(DataError, match=r"column 'a' contains 1 NaN/empty and 1 infinite values \(first at line 3\)"):
        load_dataset("csv", path=_csv(tmp_path, "a,t\n1,0\n,1\ninf,0\n2,1\n", "n.csv"), target="t")
    with pytest.raises(DataError, match=r"column 'a' is not numeric \(line 2: 'red'\)"):
        load_dataset("csv", path=_csv(tmp_path, "a,t\nred,0\n", "s.csv"), target="t")
    with pytest.raises(DataError, match=r"classification needs at least two classes, found 1 \(\['x'\]\)"):
        load_dataset("csv", path=_csv(tmp_path, "a,t\n1,x\n2,x\n", "o.csv"), target="t")
    with pytest.raises(DataError, match=r"line 3 has 1 fields, expected 2"):
        load_dataset("csv", path=_csv(tmp_path, "a,t\n1,0\n2\n", "w.csv"), target="t")
    with pytest.raises(DataError, match=r"no data rows after the header"):
        load_dataset("csv", path=_csv(tmp_path, "a,t\n", "h.csv"), target="t")
    with pytest.raises(DataError, match=r"regression target 't' must be numeric and finite \(line 3: 'z'\)"):
        load_dataset("csv", path=_csv(tmp_path, "a,t\n1,0.5\n2,z\n", "z.csv"), target="t",
                     task="regression")


# ----------------------------------------------------------------------------------- NPZ


def test_npz_own_test_split_and_label_coding(tmp_path):
    x, y = _blobs()
    y = y * 5 + 1  # labels 1, 6, 11
    xt = np.zeros((9, 3))
    p = _write_npz(tmp_path / "t.npz", feats=x, lab=y, feats_test=xt, lab_test=np.array([1, 6, 11] * 3))
    assert load_dataset("npz", path=p, x_key="feats", y_key="lab").task == "regression"  # not 0..K-1
    s = load_dataset("npz", path=p, x_key="feats", y_key="lab", task="classification")
    assert len(s.x_test) == 9 and s.info["test_split"] == "the dataset's own test split"
    assert s.info["classes"] == [1, 6, 11] and s.y_test.tolist() == [0, 1, 2] * 3
    assert len(s.x_train) + len(s.x_val) == 200


def test_npz_errors(tmp_path):
    x = np.random.default_rng(0).normal(size=(10, 2))
    y = np.arange(10) % 2
    with pytest.raises(DataError, match=r"'x' has 10 rows but 'y' has 9; expected one target per example"):
        load_dataset("npz", path=_write_npz(tmp_path / "a.npz", x=x, y=y[:9]))
    bad = x.copy()
    bad[3, 0], bad[5, 1], bad[7, 0] = np.nan, np.nan, np.inf
    with pytest.raises(DataError, match=r"b\.npz: x contains 2 NaN and 1 infinite values \(first in row 3\)"):
        load_dataset("npz", path=_write_npz(tmp_path / "b.npz", x=bad, y=y))
    with pytest.raises(DataError, match=r"x_test contains 1 NaN and 0 infinite values \(first in row 0\)"):
        load_dataset("npz", path=_write_npz(tmp_path / "c.npz", x=x, y=y, x_test=bad[3:5], y_test=y[:2]))
    with pytest.raises(DataError, match=r"no array named 'feat' \(did you mean 'feats'\?\); arrays: feats, y"):
        load_dataset("npz", path=_write_npz(tmp_path / "d.npz", feats=x, y=y), x_key="feat")
    with pytest.raises(DataError, match=r"has 'x_test' but not 'y_test'"):
        load_dataset("npz", path=_write_npz(tmp_path / "e.npz", x=x, y=y, x_test=x))
    with pytest.raises(DataError, match=r"classification needs at least two classes, found 1"):
        load_dataset("npz", path=_write_npz(tmp_path / "f.npz", x=x, y=np.zeros(10, dtype=int)), task="classification")
    with pytest.raises(DataError, match=r"test labels include classes absent from the training data: \[5\]"):
        load_dataset("npz", path=_write_npz(tmp_path / "g.npz", x=x, y=y, x_test=x[:2], y_test=np.array([0, 5])))
    missing = tmp_path / "none.npz"
    with pytest.raises(DataError, match=rf"NPZ file not found: {missing}"):
        load_dataset("npz", path=missing)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"cannot read as \.npz"):
        load_dataset("npz", path=tmp_path / "junk.npz")
    obj = tmp_path / "obj.npz"
    np.savez(obj, x=np.array([{"a": 1}] * 10, dtype=object), y=y)
    with pytest.raises(DataError, match=r"cannot read as \.npz"):
        load_dataset("npz", path=obj)


def test_option_errors(tmp_path):
    with pytest.raises(DataError, match=r"subsample=500 is larger than the 108 training examples available for 'iris' \(after carving 12 for validation\)"):
        load_dataset("iris", subsample=500)
    with pytest.raises(DataError, match=r"training split has fewer than two classes"):
        load_dataset("iris", subsample=1)
    with pytest.raises(ConfigError, match=r"val_fraction must be in \[0, 1\), got 1.0"):
        load_dataset("iris", val_fraction=1.0)
    with pytest.raises(ConfigError, match=r"label_noise must be in \[0, 1\], got 1.5"):
        load_dataset("iris", label_noise=1.5)
    with pytest.raises(ConfigError, match=r"label_noise needs a classification dataset; 'diabetes' is regression"):
        load_dataset("diabetes", label_noise=0.1)
    with pytest.raises(ConfigError, match=r"input_noise must be a finite number >= 0, got -1"):
        load_dataset("iris", input_noise=-1)
    with pytest.raises(ConfigError, match=r"subsample must be a positive integer, got 0"):
        load_dataset("iris", subsample=0)
    with pytest.raises(ConfigError, match=r"seed must be a non-negative integer, got -2"):
        load_dataset("iris", seed=-2)
    with pytest.raises(ConfigError, match=r"path is only used by the 'csv' and 'npz' dataset\(s\), not 'iris'"):
        load_dataset("iris", path="x.csv")
    with pytest.raises(ConfigError, match=r"data_dir is only used by the 'fashion_mnist' dataset\(s\), not 'wine'"):
        load_dataset("wine", data_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"task is only used by the 'csv' and 'npz' datasets, not 'iris'"):
        load_dataset("iris", task="regression")
    with pytest.raises(ConfigError, match=r"task must be one of 'classification', 'regression'; got 'regresion'"):
        load_dataset("npz", path="x.npz", task="regresion")
    with pytest.raises(ConfigError, match=r"the 'npz' dataset needs path=<file>"):
        load_dataset("npz")
    with pytest.raises(ConfigError, match=r"standardize must be True or False, got 'yes'"):
        load_dataset("iris", standardize="yes")


# ---------------------------------------------------------------------------------- sine


def test_sine_dataset():
    s = load_dataset("sine", options={"n": 200, "n_test": 50, "noise": 0.0,
                                       "test_low": -6.0, "test_high": 6.0}, standardize=False)
    assert (len(s.x_train), len(s.x_val), len(s.x_test)) == (180, 20, 50)
    assert s.task == "regression" and s.input_shape == (1,) and s.y_train.shape == (180,)
    torch.testing.assert_close(s.y_train, torch.sin(s.x_train[:, 0]))  # noise 0: exact
    assert s.x_train.abs().max() <= 3.0 and s.x_test.abs().max() > 3.0
    noisy = load_dataset("sine", options={"n": 2000, "noise": 0.2}, standardize=False, val_fraction=0.0)
    resid = noisy.y_train - torch.sin(noisy.x_train[:, 0])
    # 1600 residuals: sample std within 5 / sqrt(2 * 1600) ~ 9% of 0.2
    assert abs(float(resid.std()) / 0.2 - 1) < 5 / np.sqrt(2 * 1600)
    a = load_dataset("sine", seed=1, standardize=False)
    b = load_dataset("sine", seed=2, standardize=False)
    assert torch.equal(a.x_test, b.x_test)  # data fixed by data_seed, split by seed
    with pytest.raises(ConfigError, match=r"unknown key 'nn' in options for 'sine' \(did you mean 'n'\?\)"):
        load_dataset("sine", options={"nn": 3})
    with pytest.raises(ConfigError, match=r"low must be < high, got 2.0 and 1.0"):
        load_dataset("sine", options={"low": 2.0, "high": 1.0})
    with pytest.raises(ConfigError, match=r"options is only used by the 'mnist1d' and 'sine' dataset\(s\), not 'iris'"):
        load_dataset("iris", options={"n": 3})


# --------------------------------------------------------------------------------- idx


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trip(tmp_path, dtype, gz):
    a = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
    data = _idx_bytes(a)
    p = tmp_path / "a.idx"
    p.write_bytes(gzip.compress(data) if gz else data)
    got = read_idx(p)
    assert got.dtype == np.dtype(dtype).newbyteorder("=") and got.dtype.isnative
    np.testing.assert_array_equal(got, a)


def test_read_idx_errors(tmp_path):
    def write(name, data):
        (tmp_path / name).write_bytes(data)
        return tmp_path / name

    good = _idx_bytes(np.zeros((2, 3), dtype=np.uint8))
    with pytest.raises(DataError, match=r"idx file not found: .*missing\.idx"):
        read_idx(tmp_path / "missing.idx")
    with pytest.raises(DataError, match=r"bad idx magic number 0x01000802"):
        read_idx(write("m", b"\x01" + good[1:]))
    with pytest.raises(DataError, match=r"unknown idx type code 0x07; valid codes: 0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E"):
        read_idx(write("t", good[:2] + b"\x07" + good[3:]))
    with pytest.raises(DataError, match=r"idx data truncated: dims \(2, 3\) of uint8 need 6 bytes, got 5"):
        read_idx(write("tr", good[:-1]))
    with pytest.raises(DataError, match=r"idx data has trailing bytes: .* need 6 bytes, got 7"):
        read_idx(write("tb", good + b"\x00"))
    with pytest.raises(DataError, match=r"too short for an idx header"):
        read_idx(write("s", b"\x00\x00"))
    with pytest.raises(DataError, match=r"truncated idx header \(8 bytes, need 12\)"):
        read_idx(write("h", good[:8]))
    with pytest.raises(DataError, match=r"not a valid gzip file"):
        read_idx(write("g", gzip.compress(good)[:-6]))
    with pytest.raises(DataError, match=r"idx rank must be >= 1, got 0"):
        read_idx(write("r", b"\x00\x00\x08\x00"))


# ------------------------------------------------------------------------ Fashion-MNIST


@pytest.fixture
def no_system_fashion(monkeypatch, tmp_path):
    """Hide any installed Fashion-MNIST so the search and download paths are exercised."""
    monkeypatch.setattr(fashion, "SYSTEM_FASHION_MNIST_DIR", tmp_path / "no-such-dir")
    monkeypatch.delenv("DROPLAB_DATA", raising=False)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_from_data_dir(tmp_path, gz):
    arrays = _fake_fashion(tmp_path / "fm", gz=gz)
    s = load_dataset("fashion_mnist", data_dir=tmp_path / "fm", standardize=False, val_fraction=0.2)
    assert s.input_shape == (1, 28, 28) and s.n_classes == 10
    assert (len(s.x_train), len(s.x_val), len(s.x_test)) == (24, 6, 10)
    np.testing.assert_array_equal(s.x_test[:, 0].numpy(), arrays["t10k-images-idx3-ubyte.gz"])
    assert s.info["classes"] == list(FASHION_MNIST_CLASSES)
    std = load_dataset("fashion_mnist", data_dir=tmp_path / "fm")
    assert std.info["standardization"]["mode"] == "global"


def test_fashion_env_dir_and_errors(tmp_path, monkeypatch, no_system_fashion):
    _fake_fashion(tmp_path / "data" / "fashion-mnist")
    monkeypatch.setenv("DROPLAB_DATA", str(tmp_path / "data"))
    s = load_dataset("fashion_mnist", cache_dir=tmp_path / "cache")
    assert "data/fashion-mnist" in s.info["source"] and len(s.x_test) == 10
    (tmp_path / "partial").mkdir()
    with pytest.raises(DataError, match=r"Fashion-MNIST file not found: .*partial/train-images-idx3-ubyte\.gz"):
        load_dataset("fashion_mnist", data_dir=tmp_path / "partial")
    d = tmp_path / "badlabels"
    _fake_fashion(d)
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(np.full(10, 12, np.uint8))))
    with pytest.raises(DataError, match=r"labels must be in 0\.\.9, got \[12\]"):
        load_dataset("fashion_mnist", data_dir=d)
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(np.zeros(9, np.uint8))))
    with pytest.raises(DataError, match=r"expected 10 labels \(one per image\), got shape \(9,\)"):
        load_dataset("fashion_mnist", data_dir=d)
    (d / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(np.zeros((9, 28, 27), np.uint8))))
    with pytest.raises(DataError, match=r"expected images of shape \(N, 28, 28\), got \(9, 28, 27\)"):
        load_dataset("fashion_mnist", data_dir=d)
    monkeypatch.delenv("DROPLAB_DATA")
    with pytest.raises(DataError, match=r"Fashion-MNIST files not found; install the Debian package"):
        fashion.load_fashion_mnist_arrays(cache_dir=tmp_path / "empty", download=False)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def local_server(tmp_path):
    """An http.server on 127.0.0.1 serving synthetic Fashion-MNIST .gz files."""
    root = tmp_path / "served"
    arrays = _fake_fashion(root, n_train=20, n_test=10, seed=3)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sums = {name: hashlib.sha256(_idx_bytes(a)).hexdigest() for name, a in arrays.items()}
    yield f"http://127.0.0.1:{server.server_address[1]}/", sums, arrays
    server.shutdown()
    server.server_close()


def test_download_verified_into_cache(tmp_path, monkeypatch, no_system_fashion, local_server):
    url, sums, arrays = local_server
    monkeypatch.setattr(fashion, "FASHION_MNIST_URL", url)
    monkeypatch.setattr(fashion, "FASHION_MNIST_SHA256", sums)
    cache = tmp_path / "cache"
    s = load_dataset("fashion_mnist", cache_dir=cache, standardize=False)
    assert sorted(p.name for p in (cache / "fashion-mnist").iterdir()) == sorted(sums)
    assert [p.name for p in cache.iterdir()] == ["fashion-mnist"]  # no temporary leftovers
    np.testing.assert_array_equal(s.x_test[:, 0].numpy(), arrays["t10k-images-idx3-ubyte.gz"])
    # second load reads the cache (the server is no longer needed)
    monkeypatch.setattr(fashion, "FASHION_MNIST_URL", "http://127.0.0.1:9/")
    again = load_dataset("fashion_mnist", cache_dir=cache, standardize=False)
    assert torch.equal(s.x_train, again.x_train)


def test_download_checksum_mismatch_leaves_nothing(tmp_path, monkeypatch, no_system_fashion, local_server):
    url, sums, _ = local_server
    wrong = dict(sums)
    wrong["t10k-images-idx3-ubyte.gz"] = "0" * 64
    monkeypatch.setattr(fashion, "FASHION_MNIST_URL", url)
    monkeypatch.setattr(fashion, "FASHION_MNIST_SHA256", wrong)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"checksum mismatch for http://127\.0\.0\.1:\d+/t10k-images-idx3-ubyte\.gz: expected SHA-256 0{64}, got [0-9a-f]{64}; the download was discarded"):
        load_dataset("fashion_mnist", cache_dir=cache)
    assert list(cache.iterdir()) == []
    monkeypatch.setattr(fashion, "FASHION_MNIST_URL", url + "missing/")
    with pytest.raises(DataError, match=r"could not download Fashion-MNIST file .*missing/train-images-idx3-ubyte\.gz: HTTP Error 404"):
        load_dataset("fashion_mnist", cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_real_fashion_mnist_files():
    directory = fashion.SYSTEM_FASHION_MNIST_DIR
    if fashion._complete(directory) is None:
        pytest.skip(f"Fashion-MNIST not installed in {directory}: apt-get install dataset-fashion-mnist")
    for name, digest in fashion.FASHION_MNIST_SHA256.items():
        data = gzip.decompress((directory / name).read_bytes())
        assert hashlib.sha256(data).hexdigest() == digest
    labels = read_idx(directory / "train-labels-idx1-ubyte.gz")
    assert labels.shape == (60000,) and np.bincount(labels).tolist() == [6000] * 10
    s = load_dataset("fashion_mnist", data_dir=directory, subsample=2000)
    assert (len(s.x_train), len(s.x_val), len(s.x_test)) == (2000, 6000, 10000)
    assert s.x_train.shape == (2000, 1, 28, 28) and s.y_test.dtype == torch.int64
    assert np.bincount(s.y_train.numpy()).tolist() == [200] * 10  # stratified subsample


# ------------------------------------------------------------------------------ MNIST-1D


@pytest.fixture(scope="module")
def mnist1d(tmp_path_factory):
    """Generate MNIST-1D once for the module (a few seconds), in a temporary cache."""
    cache = tmp_path_factory.mktemp("cache")
    np.random.seed(99)
    random.seed(99)
    np_before, py_before = np.random.get_state()[1].copy(), random.getstate()
    s = load_dataset("mnist1d", cache_dir=cache)
    np_after, py_after = np.random.get_state()[1], random.getstate()
    restored = np.array_equal(np_before, np_after) and py_before == py_after
    return cache, s, restored


def test_mnist1d_shapes_and_rng_untouched(mnist1d):
    cache, s, restored = mnist1d
    assert restored  # make_dataset reseeds the global RNGs; droplab puts them back
    assert (len(s.x_train), len(s.x_val), len(s.x_test)) == (3600, 400, 1000)
    assert s.input_shape == (40,) and s.n_classes == 10
    assert s.info["standardization"]["mode"] == "global"
    assert abs(float(s.x_train.mean())) < 1e-5
    assert sorted(s.y_test.unique().tolist()) == list(range(10))
    assert Path(s.info["cache_file"]).parent == cache


def test_mnist1d_cache_round_trip_and_corruption(mnist1d, monkeypatch):
    cache, s, _ = mnist1d
    path = Path(s.info["cache_file"])
    with np.load(path, allow_pickle=False) as f:
        saved = {k: f[k] for k in f.files}
    assert saved["x"].shape == (4000, 40) and saved["x"].dtype == np.float32
    calls = []

    def fake_generate(args):
        calls.append(args)
        return saved

    monkeypatch.setattr(sources, "_generate_mnist1d", fake_generate)
    again = load_dataset("mnist1d", cache_dir=cache)
    assert calls == [] and torch.equal(again.x_train, s.x_train)  # read from the cache
    path.write_bytes(b"garbage")
    with pytest.warns(DroplabWarning, match=r"cache file .* is corrupt or has unexpected arrays; regenerating"):
        load_dataset("mnist1d", cache_dir=cache)
    assert len(calls) == 1
    np.savez(path, x=saved["x"][:10], y=saved["y"], x_test=saved["x_test"], y_test=saved["y_test"])
    with pytest.warns(DroplabWarning, match=r"regenerating"):
        fixed = load_dataset("mnist1d", cache_dir=cache)
    assert len(calls) == 2 and torch.equal(fixed.x_train, s.x_train)
    with np.load(path, allow_pickle=False) as f:  # the rewritten file is intact again
        assert f["x"].shape == (4000, 40)
    assert not list(cache.glob("*.tmp"))


def test_mnist1d_cache_key_and_options(mnist1d, monkeypatch, tmp_path):
    cache, s, _ = mnist1d
    args = sources._mnist1d_args({})
    assert sources._mnist1d_cache_file(cache, args) == Path(s.info["cache_file"])
    other = sources._mnist1d_cache_file(cache, sources._mnist1d_args({"seed": 1}))
    assert other != Path(s.info["cache_file"])
    assert "url" not in args and s.info["generation_args"] == args
    with pytest.raises(ConfigError, match=r"unknown key 'sed' in options for 'mnist1d' \(did you mean 'seed'\?\)"):
        load_dataset("mnist1d", cache_dir=cache, options={"sed": 1})
    monkeypatch.setenv("DROPLAB_CACHE", str(tmp_path / "env-cache"))
    assert sources.default_cache_dir() == tmp_path / "env-cache"
