"""The :class:`Splits` container and the split / subsample / corrupt / standardize pipeline.

Every step works on NumPy arrays with its own seeded stream (``numpy.random.SeedSequence``
keyed by ``(seed, step)``), so changing one option (say the label-noise fraction) never
changes another step's draws (say which examples are in the validation set).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from droplab.errors import DataError

__all__ = [
    "Splits",
    "TEST_FRACTION",
    "TEST_SEED",
    "stratified_order",
    "check_finite",
    "build_splits",
]

#: Fraction of examples carved out as the test set when a dataset has no test split of its own.
TEST_FRACTION = 0.2
#: Seed of that carve: fixed, independent of ``seed``, so every run of a study (every seed)
#: is evaluated on the same test examples.
TEST_SEED = 0

# Stream ids: one independent random stream per pipeline step.
_TEST, _VAL, _SUBSAMPLE, _LABEL_NOISE, _INPUT_NOISE = range(5)

# Rows per chunk when accumulating moments in float64 (bounds the temporary memory).
_CHUNK = 4096


@dataclass(frozen=True, repr=False)
class Splits:
    """A dataset split into train / validation / test tensors, ready for training.

    Attributes:
        name: dataset name (one of :data:`~droplab.data.DATASETS`).
        task: ``"classification"`` or ``"regression"`` (also ``"binary"`` from
            :func:`droplab.data.as_splits`: float32 0/1 targets ``(N,)``, one output).
        x_train, x_val, x_test: float32 inputs, shape ``(N, *input_shape)``.
        y_train, y_val, y_test: int64 class labels ``(N,)`` in ``0..n_classes-1`` for
            classification; float32 targets ``(N,)`` (one target) or ``(N, k)`` for regression.
        n_classes: number of classes, ``None`` for regression.
        input_shape: shape of one example, e.g. ``(40,)`` for MNIST-1D, ``(1, 28, 28)`` for
            Fashion-MNIST.
        info: provenance: ``source``, ``sizes``, ``test_split``, ``standardization`` (mode,
            mean, std fitted on the training split), ``options`` (every option used),
            ``classes`` (original label of each class index) and ``label_noise`` /
            ``input_noise`` records when those were applied.

    The test tensors are only returned, never used by the pipeline (standardization is fitted
    on the training split); keep them unseen until the final evaluation.
    """

    name: str
    task: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int | None
    input_shape: tuple[int, ...]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_outputs(self) -> int:
        """Width of a model's output: ``n_classes``, else the number of regression targets."""
        if self.n_classes is not None:
            return self.n_classes
        return 1 if self.y_train.dim() == 1 else int(self.y_train.shape[1])

    def __repr__(self) -> str:
        sizes = f"train={len(self.x_train)}, val={len(self.x_val)}, test={len(self.x_test)}"
        classes = f", n_classes={self.n_classes}" if self.n_classes is not None else ""
        return (
            f"Splits(name={self.name!r}, task={self.task!r}, {sizes}, "
            f"input_shape={self.input_shape}{classes})"
        )


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


def stratified_order(y: np.ndarray | None, n: int, rng: np.random.Generator) -> np.ndarray:
    """A seeded permutation of ``range(n)`` whose every prefix is stratified by ``y``.

    Each class's examples are shuffled and spread evenly over ``[0, 1)`` (the ``i``-th of
    ``n_c`` gets key ``(i + u_c) / n_c`` with one uniform offset ``u_c`` per class); sorting
    all keys interleaves the classes, so any prefix of length ``m`` holds each class within
    about one example of ``m * n_c / n``. Prefixes are nested: the first 100 of the order
    contain the first 50. With ``y=None`` (regression) this is a plain random permutation.

    Args:
        y: integer class labels of length ``n``, or ``None``.
        n: number of examples.
        rng: the NumPy generator to draw from.

    Example:
        >>> order = stratified_order(np.array([0, 0, 1, 1]), 4, np.random.default_rng(0))
    """
    if y is None:
        return rng.permutation(n)
    keys = np.empty(n, dtype=np.float64)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        shuffled = members[rng.permutation(len(members))]
        keys[shuffled] = (np.arange(len(members)) + rng.random()) / len(members)
    # Ties between classes (equal keys) are broken by a random secondary key.
    return np.lexsort((rng.random(n), keys))


def _moments(x: np.ndarray, per_feature: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std of ``x`` in float64, by chunks of rows (two passes)."""
    n = len(x)
    flat = x.reshape(n, -1)
    width = flat.shape[1] if per_feature else 1
    total = np.zeros(width)
    for start in range(0, n, _CHUNK):
        chunk = flat[start : start + _CHUNK].astype(np.float64)
        total += chunk.sum(axis=0) if per_feature else chunk.sum()
    count = n if per_feature else n * flat.shape[1]
    mean = total / count
    sq = np.zeros(width)
    for start in range(0, n, _CHUNK):
        dev = flat[start : start + _CHUNK].astype(np.float64) - mean
        sq += (dev**2).sum(axis=0) if per_feature else (dev**2).sum()
    std = np.sqrt(sq / count)
    return mean, std


def check_finite(where: str, array_name: str, a: np.ndarray) -> None:
    """Raise :class:`DataError` if a float array holds NaN or inf; say where and how many."""
    if not np.issubdtype(a.dtype, np.floating):
        return
    bad = ~np.isfinite(a)
    if bad.any():
        n_nan = int(np.isnan(a).sum())
        n_inf = int(bad.sum()) - n_nan
        first = int(np.flatnonzero(bad.reshape(len(a), -1).any(axis=1))[0]) if a.ndim else 0
        raise DataError(
            f"{where}: {array_name} contains {n_nan} NaN and {n_inf} infinite values "
            f"(first in row {first})"
        )


def _as_tensor(a: np.ndarray, dtype: np.dtype) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=dtype))


def build_splits(
    *,
    name: str,
    task: str,
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray | None,
    y_test: np.ndarray | None,
    n_classes: int | None,
    standardize_mode: str,
    info: dict[str, Any],
    val_fraction: float,
    seed: int,
    subsample: int | None,
    label_noise: float,
    input_noise: float,
    standardize: bool,
) -> Splits:
    """Split, subsample, corrupt and standardize already-validated arrays into :class:`Splits`.

    Order: (1) test set = the dataset's own, else a stratified ``TEST_FRACTION`` carve with
    ``TEST_SEED``; (2) validation = a stratified ``val_fraction`` of the rest, seeded by
    ``seed``; (3) training subsample (stratified, nested across sizes); (4) label noise on
    training labels; (5) standardization fitted on the clean training inputs, applied to all
    three splits; (6) Gaussian input noise on the standardized training inputs, drawn once.
    """
    classif = task == "classification"
    strat = y if classif else None
    info = dict(info)
    if x_test is None:
        order = stratified_order(strat, len(x), _rng(TEST_SEED, _TEST))
        n_test = int(round(TEST_FRACTION * len(x)))
        test_idx, pool_idx = np.sort(order[:n_test]), np.sort(order[n_test:])
        x_test, y_test = x[test_idx], y[test_idx]
        x, y = x[pool_idx], y[pool_idx]
        info["test_split"] = (
            f"carved: {TEST_FRACTION:.0%} stratified, seed {TEST_SEED} (same for every seed)"
            if classif
            else f"carved: {TEST_FRACTION:.0%} random, seed {TEST_SEED} (same for every seed)"
        )
    else:
        info["test_split"] = "the dataset's own test split"

    order = stratified_order(y if classif else None, len(x), _rng(seed, _VAL))
    n_val = int(round(val_fraction * len(x)))
    val_idx, train_idx = np.sort(order[:n_val]), order[n_val:]
    if subsample is not None:
        if subsample > len(train_idx):
            raise DataError(
                f"subsample={subsample} is larger than the {len(train_idx)} training examples "
                f"available for {name!r} (after carving {n_val} for validation)"
            )
        sub = stratified_order(y[train_idx] if classif else None, len(train_idx),
                               _rng(seed, _SUBSAMPLE))
        train_idx = train_idx[sub[:subsample]]
    train_idx = np.sort(train_idx)
    x_train, y_train = x[train_idx], y[train_idx].copy()
    x_val, y_val = x[val_idx], y[val_idx]
    if classif and len(np.unique(y_train)) < 2:
        raise DataError(
            f"{name!r}: the training split has fewer than two classes "
            f"({len(np.unique(y_train))}); use a larger subsample"
        )

    if label_noise > 0:
        rng = _rng(seed, _LABEL_NOISE)
        n = len(y_train)
        # Drawn for every example, so at a larger fraction the corrupted set and the wrong
        # labels of a smaller fraction stay the same (nested, for common random numbers).
        order = rng.permutation(n)
        shift = rng.integers(1, n_classes, size=n)
        k = int(round(label_noise * n))
        noisy = np.sort(order[:k])
        y_train[noisy] = (y_train[noisy] + shift[noisy]) % n_classes
        info["label_noise"] = {
            "fraction": label_noise,
            "n_corrupted": k,
            "indices": noisy.tolist(),
        }

    x_train = np.asarray(x_train, dtype=np.float32)
    x_val = np.asarray(x_val, dtype=np.float32)
    x_test = np.asarray(x_test, dtype=np.float32)
    if standardize:
        per_feature = standardize_mode == "feature"
        mean, std = _moments(x_train, per_feature)
        std = np.where(std > 0, std, 1.0)  # constant features are centred, not scaled
        shape = (1, *x_train.shape[1:]) if per_feature else (1,) * x_train.ndim
        m32 = mean.astype(np.float32).reshape(shape)
        s32 = std.astype(np.float32).reshape(shape)
        x_train, x_val, x_test = ((a - m32) / s32 for a in (x_train, x_val, x_test))
        info["standardization"] = {
            "mode": standardize_mode,
            "fitted_on": "train",
            "mean": mean.tolist() if per_feature else float(mean[0]),
            "std": std.tolist() if per_feature else float(std[0]),
        }
    else:
        info["standardization"] = {"mode": "none"}

    if input_noise > 0:
        rng = _rng(seed, _INPUT_NOISE)
        noise = rng.standard_normal(x_train.shape, dtype=np.float32)
        x_train = x_train + np.float32(input_noise) * noise
        info["input_noise"] = {"std": input_noise, "applied": "once, at load, to x_train"}

    y_dtype = np.int64 if classif else np.float32
    info["sizes"] = {"train": len(x_train), "val": len(x_val), "test": len(x_test)}
    return Splits(
        name=name,
        task=task,
        x_train=_as_tensor(x_train, np.float32),
        y_train=_as_tensor(y_train, y_dtype),
        x_val=_as_tensor(x_val, np.float32),
        y_val=_as_tensor(y_val, y_dtype),
        x_test=_as_tensor(x_test, np.float32),
        y_test=_as_tensor(y_test, y_dtype),
        n_classes=n_classes,
        input_shape=tuple(int(d) for d in x_train.shape[1:]),
        info=info,
    )
