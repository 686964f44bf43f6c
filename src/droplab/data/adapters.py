"""Data in the forms people have -> the :class:`~droplab.data.Splits` a sweep or a Trainer takes.

:func:`as_splits` accepts tensors of any dtype, NumPy arrays, a pandas ``DataFrame`` (feature
columns and one target column), a ``torch.utils.data.Dataset``, a ``DataLoader`` or a function
returning one (a *DataLoader factory*). Everything is read once into float32 input tensors in
memory (the population engine draws its own seeded batches from them, so every form gives the
same batches per seed as the equivalent tensors) and checked once: NaN or infinite values are a
:class:`~droplab.errors.DataError`, never a NaN loss three epochs later.

What is done for you is said, not hidden: every conversion (a float64 tensor cast to float32,
categorical columns one-hot encoded, the task inferred) is printed to stderr as a
``droplab: ...`` line (``quiet=True`` silences it) and kept in ``splits.info["notes"]``. Notes
are printed rather than raised as warnings: they describe legal, intended input.

pandas is an optional extra (``pip install droplab[pandas]``); it is imported only when a
DataFrame is passed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from droplab._checks import check_choice, check_probability, did_you_mean
from droplab.data.sources import encode_labels
from droplab.data.splits import Splits, check_finite, stratified_order
from droplab.data.tasks import infer_task
from droplab.errors import ConfigError, DataError

__all__ = ["as_splits", "CATEGORICAL"]

#: What :func:`as_splits` does with a non-numeric DataFrame feature column.
CATEGORICAL: tuple[str, ...] = ("onehot", "error")

# Stream id of the validation draw, mixed with the seed (as data/splits.py does per step).
_VAL_STREAM = 1


class _Notes(list):
    def __init__(self, quiet: bool) -> None:
        super().__init__()
        self.quiet = quiet

    def add(self, text: str) -> None:
        self.append(text)
        if not self.quiet:
            print(f"droplab: {text}", file=sys.stderr)


def _is_frame(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "pandas" and hasattr(obj, "columns")


def _to_numpy(a: Any, what: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    try:
        out = np.asarray(a)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what}: cannot read as an array ({exc})") from None
    if out.dtype == object:
        raise DataError(f"{what}: expected numbers, got an array of Python objects")
    return out


def _from_dataset(ds: Any, what: str) -> tuple[Any, Any]:
    try:
        n = len(ds)
    except TypeError:
        items = list(ds)  # an IterableDataset
    else:
        items = [ds[i] for i in range(n)]
    if not items:
        raise DataError(f"{what}: the Dataset is empty")
    first = items[0]
    if not isinstance(first, (tuple, list)) or len(first) != 2:
        raise DataError(f"{what}: a Dataset item must be a pair (x, y), got {type(first).__name__}")
    xs = torch.stack([torch.as_tensor(x) for x, _ in items])
    ys = torch.stack([torch.as_tensor(y) for _, y in items])
    return xs, ys


def _from_batches(batches: Any, what: str) -> tuple[Any, Any]:
    xs, ys = [], []
    for batch in batches:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise DataError(f"{what}: a batch must be a pair (x, y), got {type(batch).__name__}")
        xs.append(torch.as_tensor(batch[0]))
        ys.append(torch.as_tensor(batch[1]))
    if not xs:
        raise DataError(f"{what}: the DataLoader gave no batches")
    return torch.cat(xs), torch.cat(ys)


def _frame_columns(frames: Sequence[Any], target: str | None, categorical: str, notes: _Notes,
                   ) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    first = frames[0]
    columns = [str(c) for c in first.columns]
    if target is None:
        raise ConfigError(f"a DataFrame needs target=<column name>; columns: {', '.join(columns)}")
    if target not in columns:
        raise DataError(f"target column {target!r} not found{did_you_mean(target, columns)}; "
                        f"columns: {', '.join(columns)}")
    for other in frames[1:]:
        if [str(c) for c in other.columns] != columns:
            raise DataError(f"the validation/test DataFrame has columns {list(map(str, other.columns))}, "
                            f"expected {columns} like the training one")
    import pandas as pd

    names: list[str] = []
    blocks: list[list[np.ndarray]] = [[] for _ in frames]
    encoded = []
    for col in first.columns:
        if str(col) == target:
            continue
        series = [f[col] for f in frames]
        numeric = pd.api.types.is_bool_dtype(series[0]) or (
            pd.api.types.is_numeric_dtype(series[0]) and not isinstance(series[0].dtype, pd.CategoricalDtype)
        )
        if numeric:
            for b, s in zip(blocks, series):
                b.append(s.to_numpy(dtype=np.float64, na_value=np.nan))
            names.append(str(col))
            continue
        if categorical == "error":
            raise DataError(f"column {str(col)!r} is not numeric ({series[0].dtype}); pass "
                            f"categorical='onehot' to one-hot encode it, or drop it")
        missing = sum(int(s.isna().sum()) for s in series)
        if missing:
            raise DataError(f"categorical column {str(col)!r} has {missing} missing values; fill in "
                            f"or drop those rows")
        if isinstance(series[0].dtype, pd.CategoricalDtype):
            levels = [str(v) for v in series[0].cat.categories]
        else:
            levels = sorted({str(v) for s in series for v in s.unique()})
        for b, s in zip(blocks, series):
            text = s.astype(str).to_numpy()
            for level in levels:
                b.append((text == level).astype(np.float64))
        names += [f"{col}={level}" for level in levels]
        encoded.append(f"{col!s} ({len(levels)} levels)")
    if encoded:
        notes.add(f"one-hot encoded categorical column{'s' * (len(encoded) > 1)} {', '.join(encoded)}")
    if not names:
        raise DataError(f"no feature columns besides the target {target!r}")
    xs = [np.stack(b, axis=1) for b in blocks]
    ys = []
    for f in frames:
        t = f[target]
        if t.isna().any():
            raise DataError(f"target column {target!r} has {int(t.isna().sum())} missing values")
        ys.append(t.to_numpy())
    return xs, ys, names


def _pair(obj: Any, y: Any, what: str) -> tuple[Any, Any, str]:
    """(x, y, form) from one of the accepted forms (DataFrames are handled by the caller)."""
    from torch.utils.data import DataLoader, Dataset

    if isinstance(obj, (torch.Tensor, np.ndarray)) or (isinstance(obj, list) and y is not None):
        if y is None:
            raise ConfigError(f"{what}: inputs given without targets; pass y=")
        return obj, y, "tensor" if isinstance(obj, torch.Tensor) else "array"
    if y is not None:
        raise ConfigError(f"{what}: y= goes with tensor or array inputs, not with a {type(obj).__name__}")
    if isinstance(obj, tuple) and len(obj) == 2:
        return obj[0], obj[1], "pair"
    if isinstance(obj, DataLoader):
        return (*_from_batches(obj, what), "DataLoader")
    if isinstance(obj, Dataset):
        return (*_from_dataset(obj, what), "Dataset")
    if callable(obj) and not isinstance(obj, torch.nn.Module):
        return (*_from_batches(obj(), what), "DataLoader factory")
    raise DataError(
        f"{what}: expected a tensor or array (with y=), a pair (x, y), a pandas DataFrame (with "
        f"target=), a torch Dataset, a DataLoader or a function returning one; got {type(obj).__name__}"
    )


def _inputs(a: Any, what: str, notes: _Notes) -> np.ndarray:
    x = _to_numpy(a, what)
    if x.ndim == 0:
        raise DataError(f"{what}: inputs are a scalar, expected one row per example")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise DataError(f"{what}: inputs must be numeric, got dtype {x.dtype}")
    if x.dtype != np.float32:
        notes.add(f"{what}: inputs cast from {x.dtype} to float32")
        x = x.astype(np.float32)
    if x.ndim == 1:
        x = x[:, None]
    check_finite(what, "the inputs", x)
    return x


def as_splits(
    data: Any,
    y: Any = None,
    *,
    target: str | None = None,
    val: Any = None,
    test: Any = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    task: str | None = None,
    n_outputs: int | None = None,
    categorical: str = "onehot",
    name: str = "data",
    quiet: bool = False,
) -> Splits:
    """Read ``data`` in any accepted form into :class:`~droplab.data.Splits` (train/val/test).

    Forms (``val`` and ``test`` take the same ones as ``data``):

    * tensors or NumPy arrays ``x`` with ``y=``, or a pair ``(x, y)``: inputs of any numeric
      dtype are cast to float32 (said in a note); a 1-D ``x`` is one feature.
    * a pandas ``DataFrame`` with ``target=<column>``: every other column is a feature;
      numeric and boolean columns are used as they are; categorical, string and object columns
      are one-hot encoded (``categorical="onehot"``, default: one 0/1 column ``name=level``
      per level, levels sorted, taken from all the frames given) or refused
      (``categorical="error"``). A non-numeric target is a class label (coded ``0..K-1`` in
      sorted order; ``info["classes"]`` keeps the names).
    * a ``torch.utils.data.Dataset`` of ``(x, y)`` pairs, a ``DataLoader``, or a function
      returning an iterable of ``(x, y)`` batches (a DataLoader factory): read once, in order.

    Without ``val``, a validation set of ``val_fraction`` of the examples is drawn with
    ``seed`` (stratified by class for classification and binary tasks, by
    :func:`droplab.data.splits.stratified_order`); the other examples, in their original
    order, are the training set. Without ``test``, the test split is empty. Inputs are not
    standardized (use :func:`droplab.data.load_dataset` for droplab's pipeline of named sets
    and files).

    The task is :func:`droplab.data.tasks.infer_task` of the training targets and
    ``n_outputs``, printed with its reason; ``task=`` overrides it. Targets: int64 labels for
    ``"classification"``, float32 ``(N,)`` 0/1 for ``"binary"`` (one output,
    ``splits.n_outputs == 1``), float32 for ``"regression"``.

    Args:
        data: the training data (or all of it, when ``val`` is not given), in a form above.
        y: targets, when ``data`` holds inputs only (tensor, array or list).
        target: the target column of a DataFrame.
        val: validation data in the same form, or ``None`` to draw it from ``data``.
        test: test data in the same form, or ``None``.
        val_fraction: fraction drawn for validation when ``val`` is ``None``, in (0, 1).
            Default 0.2 (small tables need more than 10% to tell configurations apart).
        seed: seed of the validation draw. Default 0.
        task: ``"classification"``, ``"binary"``, ``"regression"`` or ``None`` (infer).
        n_outputs: the model's output width if known (helps the inference: one output with
            0/1 targets is binary). Default ``None``.
        categorical: ``"onehot"`` (default) or ``"error"``, for DataFrame feature columns.
        name: the dataset's name in the Splits. Default ``"data"``.
        quiet: do not print the notes (they are still in ``info["notes"]``). Default False.

    Returns:
        A :class:`~droplab.data.Splits`; ``info`` holds ``source`` (the form), ``notes``,
        ``task_reason``, ``sizes`` and, for DataFrames, ``features`` (and ``classes``).

    Raises:
        DataError: NaN or infinite values (inputs or targets), mismatched lengths, empty data,
            a missing target column, a categorical column with ``categorical="error"``,
            targets that do not fit ``task``.
        ConfigError: bad arguments (``val_fraction``, ``task``, ``categorical``, a DataFrame
            without ``target``, inputs without ``y``).

    Example:
        >>> x, y = np.random.rand(100, 4), np.random.randint(0, 3, 100)
        >>> splits = as_splits(x, y, val_fraction=0.25, quiet=True)
        >>> splits.task, len(splits.x_train), len(splits.x_val)
        ('classification', 75, 25)
    """
    check_choice("categorical", categorical, CATEGORICAL)
    if val is None:
        val_fraction = check_probability("val_fraction", val_fraction)
        if val_fraction == 0:
            raise ConfigError("val_fraction must be > 0 when no val data is given, got 0.0")
    notes = _Notes(quiet)
    parts = {"train": data, "val": val, "test": test}
    given = {k: v for k, v in parts.items() if v is not None}
    info: dict[str, Any] = {}
    if _is_frame(data):
        if y is not None:
            raise ConfigError("y= goes with tensor or array inputs; with a DataFrame pass target=")
        for k, v in given.items():
            if not _is_frame(v):
                raise DataError(f"{k}: expected a DataFrame like the training data, got {type(v).__name__}")
        xs, ys, features = _frame_columns(list(given.values()), target, categorical, notes)
        raw = {k: (x, t) for k, x, t in zip(given, xs, ys)}
        info["source"], info["features"] = "DataFrame", features
    else:
        if target is not None:
            raise ConfigError("target= names a DataFrame column; with tensors or arrays pass y=")
        raw = {}
        for k, v in given.items():
            xa, ya, form = _pair(v, y if k == "train" else None, k)
            raw[k] = (xa, ya)
            if k == "train":
                info["source"] = form
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for k, (xa, ya) in raw.items():
        x = _inputs(xa, k, notes)
        t = _to_numpy(ya, f"{k} targets") if not (isinstance(ya, np.ndarray) and ya.dtype == object) else ya
        if t.ndim == 2 and t.shape[1] == 1 and task != "regression":
            t = t[:, 0]
        if len(x) != len(t):
            raise DataError(f"{k}: {len(x)} inputs but {len(t)} targets; expected one target per example")
        if len(x) == 0:
            raise DataError(f"{k}: no examples")
        if k != "train" and x.shape[1:] != arrays["train"][0].shape[1:]:
            raise DataError(f"{k}: examples have shape {x.shape[1:]}, expected "
                            f"{arrays['train'][0].shape[1:]} like the training data")
        arrays[k] = (x, t)

    classes = None
    reason = None
    ytr = arrays["train"][1]
    if ytr.dtype == object or ytr.dtype.kind in "USO":  # labels given as names
        _, _, classes = encode_labels(ytr, None, "targets")
        lookup = {c: i for i, c in enumerate(classes)}
        for k, (x, t) in arrays.items():
            unknown = [v for v in np.unique(t) if v not in lookup]
            if unknown:
                raise DataError(f"{k}: labels {unknown[:10]} are not among the training labels")
            arrays[k] = (x, np.asarray([lookup[v] for v in t], dtype=np.int64))
        info["classes"] = classes
        if task is None:
            task, reason = "classification", f"the target holds {len(classes)} class names"
    for k, (_, t) in arrays.items():
        if np.issubdtype(t.dtype, np.floating):
            check_finite(k, "the targets", t)
    guess = infer_task(arrays["train"][1], n_outputs, task=task)
    if reason is not None:
        guess = guess._replace(reason=reason)
    overridable = task is None or reason is not None
    notes.add(f"task: {guess.task} ({guess.reason})" + ("; pass task=... to override" if overridable else ""))
    task = guess.task
    for k, (_, t) in arrays.items():
        if k != "train":
            infer_task(t, n_outputs, task=task)  # the same checks for val and test targets

    if "val" not in arrays:
        x, t = arrays["train"]
        strat = t if task in ("classification", "binary") else None
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), _VAL_STREAM]))
        order = stratified_order(strat, len(x), rng)
        n_val = int(round(val_fraction * len(x)))
        if n_val == 0 or n_val == len(x):
            raise DataError(f"val_fraction={val_fraction} of {len(x)} examples leaves an empty "
                            f"{'validation' if n_val == 0 else 'training'} set")
        val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
        arrays["val"] = (x[val_idx], t[val_idx])
        arrays["train"] = (x[train_idx], t[train_idx])
        info["validation"] = f"{val_fraction:g} drawn with seed {seed}" + (
            ", stratified" if strat is not None else "")
    else:
        info["validation"] = "given"
    if "test" not in arrays:
        x, t = arrays["train"]
        arrays["test"] = (x[:0], t[:0])

    y_dtype = torch.int64 if task == "classification" else torch.float32
    tensors = {k: (torch.from_numpy(np.ascontiguousarray(x)),
                   torch.from_numpy(np.ascontiguousarray(t)).to(y_dtype)) for k, (x, t) in arrays.items()}
    n_classes = None
    if task == "classification":
        top = max(int(t.max()) for _, t in tensors.values() if len(t))
        n_classes = max(top + 1, n_outputs or 0, len(classes or ()))
    info["notes"] = list(notes)
    info["task_reason"] = guess.reason
    info["sizes"] = {k: len(tensors[k][0]) for k in ("train", "val", "test")}
    return Splits(
        name=name, task=task,
        x_train=tensors["train"][0], y_train=tensors["train"][1],
        x_val=tensors["val"][0], y_val=tensors["val"][1],
        x_test=tensors["test"][0], y_test=tensors["test"][1],
        n_classes=n_classes,
        input_shape=tuple(int(d) for d in tensors["train"][0].shape[1:]),
        info=info,
    )
