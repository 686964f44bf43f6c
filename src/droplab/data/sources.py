"""Raw sources: each returns a dataset as NumPy arrays plus what the pipeline needs to know.

MNIST-1D (generated and cached), scikit-learn's bundled sets, CSV and NPZ files, and a
synthetic sine regression. Fashion-MNIST lives in :mod:`droplab.data.fashion`.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import json
import os
import random
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from droplab._checks import (
    check_keys,
    check_nonneg_float,
    check_nonneg_int,
    check_positive_int,
    did_you_mean,
)
from droplab.data.splits import check_finite
from droplab.data.tasks import MAX_AUTO_CLASSES, InferredTask, infer_task
from droplab.errors import ConfigError, DataError, DroplabWarning

__all__ = [
    "RawData",
    "default_cache_dir",
    "encode_labels",
    "MAX_AUTO_CLASSES",
    "SINE_DEFAULTS",
    "load_mnist1d",
    "load_sklearn",
    "load_csv",
    "load_npz",
    "make_sine",
]



@dataclass
class RawData:
    """A dataset as loaded, before splitting.

    Attributes:
        task: ``"classification"`` or ``"regression"``.
        x, y: all training-pool examples (classification labels already coded 0..K-1).
        x_test, y_test: the dataset's own test split, or ``None`` to carve one.
        standardize_mode: ``"feature"`` (per-feature mean/std, tabular data) or ``"global"``
            (one mean/std for every value: images and 1-D signals).
        classes: original label of each class code (classification), else ``None``.
        info: provenance to merge into :attr:`Splits.info` (``source`` at least).
    """

    task: str
    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    standardize_mode: str
    classes: list[Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def default_cache_dir() -> Path:
    """``$DROPLAB_CACHE`` if set, else ``~/.cache/droplab``."""
    env = os.environ.get("DROPLAB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "droplab"


def _python_scalar(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def encode_labels(
    y: np.ndarray, y_test: np.ndarray | None, where: str
) -> tuple[np.ndarray, np.ndarray | None, list[Any]]:
    """Map labels to codes ``0..K-1`` (sorted original labels); test labels use the same map."""
    classes, codes = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise DataError(
            f"{where}: classification needs at least two classes, found {len(classes)} "
            f"({[_python_scalar(c) for c in classes]})"
        )
    codes_test = None
    if y_test is not None:
        unseen = np.setdiff1d(np.unique(y_test), classes)
        if len(unseen):
            raise DataError(
                f"{where}: the test labels include classes absent from the training data: "
                f"{[_python_scalar(c) for c in unseen[:10]]}"
            )
        codes_test = np.searchsorted(classes, y_test)
    return codes.astype(np.int64), codes_test, [_python_scalar(c) for c in classes]


# --------------------------------------------------------------------------------- MNIST-1D


def _mnist1d_args(options: Mapping[str, Any]) -> dict[str, Any]:
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    args.pop("url", None)  # only the downloader uses it; droplab never downloads MNIST-1D
    check_keys("options for 'mnist1d'", options, args)
    args.update(options)
    return args


def _mnist1d_cache_file(cache_dir: Path, args: Mapping[str, Any]) -> Path:
    version = importlib.metadata.version("mnist1d")
    key = json.dumps({"args": dict(args), "mnist1d": version}, sort_keys=True, default=str)
    return cache_dir / f"mnist1d-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def _mnist1d_expected(args: Mapping[str, Any]) -> tuple[int, int, int]:
    n_total = (int(args["num_samples"]) // 10) * 10
    n_train = int(n_total * args["train_split"])
    return n_train, n_total - n_train, int(args["final_seq_length"])


def _read_mnist1d_cache(path: Path, args: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    """The cached arrays if they are intact and have the expected shapes, else ``None``."""
    n_train, n_test, length = _mnist1d_expected(args)
    want = {
        "x": ((n_train, length), np.float32),
        "y": ((n_train,), np.int64),
        "x_test": ((n_test, length), np.float32),
        "y_test": ((n_test,), np.int64),
    }
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in want}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    for k, (shape, dtype) in want.items():
        if arrays[k].shape != shape or arrays[k].dtype != dtype:
            return None
    if not (np.isfinite(arrays["x"]).all() and np.isfinite(arrays["x_test"]).all()):
        return None
    return arrays


def _generate_mnist1d(args: Mapping[str, Any]) -> dict[str, np.ndarray]:
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    # make_dataset seeds NumPy's and Python's global generators; put them back afterwards.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {
        "x": d["x"].astype(np.float32),
        "y": d["y"].astype(np.int64),
        "x_test": d["x_test"].astype(np.float32),
        "y_test": d["y_test"].astype(np.int64),
    }


def load_mnist1d(
    cache_dir: str | os.PathLike[str] | None = None, options: Mapping[str, Any] | None = None
) -> RawData:
    """MNIST-1D, generated with the ``mnist1d`` package and cached as ``.npz``.

    Greydanus, "Scaling Down Deep Learning", 2020, arXiv:2011.14439. Generated by
    ``make_dataset(get_dataset_args())`` (a few seconds; the package's downloader, which
    unpickles from the network, is never used). Default arguments give 4000 training and 1000
    test signals of length 40 in 10 classes.

    The cache file is ``<cache_dir>/mnist1d-<key>.npz``, ``key`` a hash of every generation
    argument (all of ``get_dataset_args()`` except ``url``, after ``options``) and of the
    installed ``mnist1d`` version, so changing either generates a new file. It is written
    atomically and loaded with ``allow_pickle=False``; a file whose arrays do not have the
    expected shapes, dtypes or finite values is regenerated (with a warning).

    Args:
        cache_dir: directory of the cache; default :func:`default_cache_dir`.
        options: overrides of ``get_dataset_args()`` keys (``num_samples``, ``seed``,
            ``shuffle_seq``, ``iid_noise_scale``, ...). Default None.
    """
    args = _mnist1d_args(options or {})
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = _mnist1d_cache_file(cache, args)
    arrays = _read_mnist1d_cache(path, args) if path.exists() else None
    if arrays is None:
        if path.exists():
            warnings.warn(
                f"MNIST-1D cache file {path} is corrupt or has unexpected arrays; regenerating",
                DroplabWarning,
                stacklevel=3,
            )
        arrays = _generate_mnist1d(args)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    return RawData(
        task="classification",
        x=arrays["x"],
        y=arrays["y"],
        x_test=arrays["x_test"],
        y_test=arrays["y_test"],
        standardize_mode="global",
        classes=list(range(10)),
        info={"source": "mnist1d.data.make_dataset (generated)", "cache_file": str(path),
              "generation_args": dict(args)},
    )


# ------------------------------------------------------------------------------ scikit-learn

_SKLEARN = {
    "digits": ("load_digits", "classification"),
    "breast_cancer": ("load_breast_cancer", "classification"),
    "wine": ("load_wine", "classification"),
    "iris": ("load_iris", "classification"),
    "diabetes": ("load_diabetes", "regression"),
}


def load_sklearn(name: str) -> RawData:
    """One of scikit-learn's bundled datasets (offline): digits, breast_cancer, wine, iris
    (classification) or diabetes (regression). All are tabular (per-feature standardization;
    digits as 64 pixel features) and have no test split of their own.

    Args:
        name: ``"digits"``, ``"breast_cancer"``, ``"wine"``, ``"iris"`` or ``"diabetes"``.
    """
    import sklearn.datasets

    func, task = _SKLEARN[name]
    bunch = getattr(sklearn.datasets, func)()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target)
    classes = None
    if task == "classification":
        y, _, classes = encode_labels(y, None, name)
        if hasattr(bunch, "target_names"):
            classes = [str(bunch.target_names[c]) for c in classes]
    else:
        y = y.astype(np.float32)
    return RawData(
        task=task, x=x, y=y, x_test=None, y_test=None, standardize_mode="feature",
        classes=classes, info={"source": f"sklearn.datasets.{func}"},
    )


# ----------------------------------------------------------------------------------- CSV


def _as_float(value: str) -> float | None:
    try:
        return float(value) if value.strip() else float("nan")
    except ValueError:
        return None


def _is_integral(values: list[float]) -> bool:
    return all(np.isfinite(v) and float(v).is_integer() for v in values)


def _file_task(y: np.ndarray) -> InferredTask:
    """The task of a file's numeric target when none is given: :func:`infer_task`'s rule for
    integer targets (labels exactly ``0..K-1``, ``K <=`` :data:`MAX_AUTO_CLASSES`, are classes;
    ``1..K``, gaps, negatives and more values are regression); booleans are two classes, floats
    regression (a file's float 0/1 target becomes one logit only with ``task="binary"``)."""
    if y.dtype == np.bool_:
        return InferredTask("classification", "a boolean target: 2-class classification")
    if not np.issubdtype(y.dtype, np.integer):
        return InferredTask("regression", f"a {y.dtype} target: regression")
    return infer_task(y)


def load_csv(
    path: str | os.PathLike[str], target: str | None, task: str | None = None
) -> RawData:
    """A CSV file with a header row: numeric feature columns and one target column.

    Every column other than ``target`` is a feature and must be numeric (an empty cell is
    NaN, which is then reported); an empty target cell is refused too. The task, unless
    given, is classification when the target has a non-numeric value, or integer values that
    are exactly ``0..K-1`` (at most :data:`MAX_AUTO_CLASSES` classes: the rule of
    :func:`droplab.data.infer_task`); regression otherwise, labels ``1..K`` included (give
    ``task="classification"``). ``info["task_reason"]`` says why. Class labels are coded
    ``0..K-1`` in sorted order (numeric order for numbers) and the original labels kept in
    ``classes``.

    Args:
        path: the file.
        target: name of the target column.
        task: ``"classification"``, ``"regression"`` or None (infer). Default None.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"CSV file not found: {path}")
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if any(cell.strip() for cell in r)]
    if not rows:
        raise DataError(f"{path}: empty file (expected a header row and data rows)")
    header = [h.strip() for h in rows[0]]
    listed = ", ".join(header)
    if target is None:
        raise ConfigError(
            f"the 'csv' dataset needs target=<column name>; columns of {path}: {listed}"
        )
    if target not in header:
        raise DataError(
            f"target column {target!r} not found in {path}{did_you_mean(target, header)}; "
            f"columns: {listed}"
        )
    body = rows[1:]
    if not body:
        raise DataError(f"{path}: no data rows after the header")
    t = header.index(target)
    features = [h for i, h in enumerate(header) if i != t]
    if not features:
        raise DataError(f"{path}: no feature columns besides the target {target!r}")
    x = np.empty((len(body), len(features)), dtype=np.float64)
    raw_target = []
    for r, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DataError(f"{path}: line {r} has {len(row)} fields, expected {len(header)}")
        j = 0
        for i, cell in enumerate(row):
            if i == t:
                raw_target.append(cell.strip())
                continue
            value = _as_float(cell)
            if value is None:
                raise DataError(
                    f"{path}: column {header[i]!r} is not numeric (line {r}: {cell!r}); "
                    f"droplab reads numeric features only"
                )
            x[r - 2, j] = value
            j += 1
    for j, name in enumerate(features):
        col = x[:, j]
        if not np.isfinite(col).all():
            n_nan = int(np.isnan(col).sum())
            n_inf = int((~np.isfinite(col)).sum()) - n_nan
            first = int(np.flatnonzero(~np.isfinite(col))[0]) + 2
            raise DataError(
                f"{path}: column {name!r} contains {n_nan} NaN/empty and {n_inf} infinite "
                f"values (first at line {first})"
            )
    blank = [i for i, v in enumerate(raw_target) if not v]
    if blank:  # refused like a blank feature cell: it is a missing label, not a class or a value
        n = len(blank)
        raise DataError(
            f"{path}: target column {target!r} has {n} empty cell{'s' * (n != 1)} "
            f"(first at line {blank[0] + 2}); fill in or drop those rows"
        )
    numeric = [_as_float(v) for v in raw_target]
    all_numeric = all(v is not None and np.isfinite(v) for v in numeric)
    info: dict[str, Any] = {"source": str(path), "target": target, "features": features}
    if task is None:
        if not all_numeric:
            inferred = InferredTask("classification", "a target with non-numeric values: classes")
        else:  # integral text is integers: labels 0..K-1 are classes, other integers values
            values = np.asarray(numeric)
            inferred = _file_task(values.astype(np.int64) if _is_integral(numeric) else values)
        task, info["task_reason"] = inferred
    if task == "regression":
        if not all_numeric:
            bad = next(i for i, v in enumerate(numeric) if v is None or not np.isfinite(v))
            raise DataError(
                f"{path}: regression target {target!r} must be numeric and finite "
                f"(line {bad + 2}: {raw_target[bad]!r})"
            )
        y = np.asarray(numeric, dtype=np.float32)
        classes = None
    else:
        if all_numeric:
            values = [float(v) for v in numeric if v is not None]
            labels = np.asarray([int(v) for v in values] if _is_integral(values) else values)
        else:
            labels = np.asarray(raw_target)
        y, _, classes = encode_labels(labels, None, str(path))
    return RawData(
        task=task, x=x, y=y, x_test=None, y_test=None, standardize_mode="feature",
        classes=classes, info=info,
    )


# ----------------------------------------------------------------------------------- NPZ


def load_npz(
    path: str | os.PathLike[str],
    x_key: str = "x",
    y_key: str = "y",
    task: str | None = None,
) -> RawData:
    """Named arrays in an ``.npz`` file (loaded with ``allow_pickle=False``).

    ``x_key`` holds inputs ``(N, *shape)`` (a 1-D array is one feature, ``(N, 1)``), ``y_key``
    targets ``(N,)`` or ``(N, k)``. If the file also holds ``<x_key>_test`` and
    ``<y_key>_test`` they are the test split; otherwise one is carved. Task, unless given:
    integer ``y`` with values exactly ``0..K-1`` and boolean ``y`` are classification; other
    integers (``1..K``, gaps, counts) and floating ``y`` regression; ``info["task_reason"]``
    says why. Standardization is
    per feature for 2-D ``x`` and global for higher ranks (images, signals with channels).

    Args:
        path: the file.
        x_key, y_key: array names. Defaults ``"x"``, ``"y"``.
        task: ``"classification"``, ``"regression"`` or None (infer). Default None.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"NPZ file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = list(f.keys())
            for k in (x_key, y_key):
                if k not in keys:
                    raise DataError(
                        f"{path}: no array named {k!r}{did_you_mean(k, keys)}; "
                        f"arrays: {', '.join(keys)}"
                    )
            test_keys = [k for k in (f"{x_key}_test", f"{y_key}_test") if k in keys]
            if len(test_keys) == 1:
                missing = ({f"{x_key}_test", f"{y_key}_test"} - set(test_keys)).pop()
                raise DataError(f"{path}: has {test_keys[0]!r} but not {missing!r}")
            arrays = {k: f[k] for k in (x_key, y_key, *test_keys)}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot read as .npz of numeric arrays ({exc})") from None
    x, y = arrays[x_key], arrays[y_key]
    x_test = arrays.get(f"{x_key}_test")
    y_test = arrays.get(f"{y_key}_test")
    for name, a in arrays.items():
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
            raise DataError(f"{path}: array {name!r} has non-numeric dtype {a.dtype}")
        if a.ndim == 0:
            raise DataError(f"{path}: array {name!r} is a scalar, expected one row per example")
    pairs = [(x_key, y_key, x, y)]
    if x_test is not None:
        pairs.append((f"{x_key}_test", f"{y_key}_test", x_test, y_test))
    for xn, yn, xa, ya in pairs:
        if len(xa) != len(ya):
            raise DataError(
                f"{path}: {xn!r} has {len(xa)} rows but {yn!r} has {len(ya)}; "
                f"expected one target per example"
            )
    if x.ndim == 1:
        x = x[:, None]
        x_test = None if x_test is None else x_test[:, None]
    if x_test is not None and x_test.shape[1:] != x.shape[1:]:
        raise DataError(
            f"{path}: {x_key + '_test'!r} examples have shape {x_test.shape[1:]}, "
            f"expected {x.shape[1:]} like {x_key!r}"
        )
    info = {"source": str(path), "x_key": x_key, "y_key": y_key}
    if task is None:
        task, info["task_reason"] = _file_task(y)
    classes = None
    if task == "classification":
        if y.ndim != 1:
            raise DataError(f"{path}: class labels {y_key!r} must be 1-D, got shape {y.shape}")
        if np.issubdtype(y.dtype, np.floating):
            check_finite(str(path), repr(y_key), y)
            if not np.all(np.mod(y, 1) == 0):
                raise DataError(f"{path}: classification labels {y_key!r} must be integers")
        y, y_test, classes = encode_labels(y, y_test, str(path))
    else:
        y = y.astype(np.float32)
        y_test = None if y_test is None else y_test.astype(np.float32)
    return RawData(
        task=task, x=x, y=y, x_test=x_test, y_test=y_test,
        standardize_mode="feature" if x.ndim == 2 else "global",
        classes=classes, info=info,
    )


# ---------------------------------------------------------------------------------- sine

#: Options of the synthetic ``"sine"`` dataset and their defaults.
SINE_DEFAULTS: dict[str, Any] = {
    "n": 1000,
    "n_test": 1000,
    "noise": 0.1,
    "low": -3.0,
    "high": 3.0,
    "test_low": None,
    "test_high": None,
    "data_seed": 0,
}


def make_sine(options: Mapping[str, Any] | None = None) -> RawData:
    """Synthetic 1-D regression ``y = sin(x) + noise * eps``, ``eps ~ N(0, 1)``.

    ``n`` training-pool inputs are drawn uniformly from ``[low, high]`` and ``n_test`` test
    inputs from ``[test_low, test_high]`` (default: the same interval; widen it to see
    predictive uncertainty grow outside the data, as in MC-dropout and concrete-dropout
    experiments, Gal & Ghahramani 2016 arXiv:1506.02142, Gal et al. 2017 arXiv:1705.07832).
    The data are drawn with ``data_seed`` (not the split ``seed``), so every run of a study
    sees the same points.

    Args:
        options: overrides of :data:`SINE_DEFAULTS`: ``n`` (1000), ``n_test`` (1000),
            ``noise`` (0.1, the std), ``low`` (-3), ``high`` (3), ``test_low``,
            ``test_high`` (None: same as train), ``data_seed`` (0).

    Shape:
        x: ``(n, 1)``; y: ``(n,)``.
    """
    opts = dict(SINE_DEFAULTS)
    options = dict(options or {})
    check_keys("options for 'sine'", options, SINE_DEFAULTS)
    opts.update(options)
    n = check_positive_int("n", opts["n"])
    n_test = check_positive_int("n_test", opts["n_test"])
    noise = check_nonneg_float("noise", opts["noise"])
    seed = check_nonneg_int("data_seed", opts["data_seed"])
    bounds = {}
    for key, default in (("low", None), ("high", None), ("test_low", "low"), ("test_high", "high")):
        value = opts[key] if opts[key] is not None else opts[default]  # type: ignore[index]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        bounds[key] = float(value)
    for lo, hi in (("low", "high"), ("test_low", "test_high")):
        if not bounds[lo] < bounds[hi]:
            raise ConfigError(f"{lo} must be < {hi}, got {bounds[lo]} and {bounds[hi]}")
    rng = np.random.default_rng(seed)
    x = rng.uniform(bounds["low"], bounds["high"], size=(n, 1))
    y = np.sin(x[:, 0]) + noise * rng.standard_normal(n)
    x_test = rng.uniform(bounds["test_low"], bounds["test_high"], size=(n_test, 1))
    y_test = np.sin(x_test[:, 0]) + noise * rng.standard_normal(n_test)
    opts.update(bounds)
    return RawData(
        task="regression", x=x, y=y.astype(np.float32), x_test=x_test,
        y_test=y_test.astype(np.float32), standardize_mode="feature",
        info={"source": "synthetic: y = sin(x) + noise * N(0, 1)", "generation": opts},
    )
