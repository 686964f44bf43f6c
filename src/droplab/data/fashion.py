"""Fashion-MNIST: an idx file parser, the file search, and a checksum-verified downloader.

Xiao, Rasul & Vollgraf, "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
Learning Algorithms", 2017, arXiv:1708.07747. 60000 training and 10000 test images, 28x28
grey levels, 10 classes, stored in the idx format of LeCun's MNIST (gzipped or raw).
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from droplab.data._download import fetch_verified
from droplab.errors import DataError

__all__ = [
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_SHA256",
    "FASHION_MNIST_URL",
    "SYSTEM_FASHION_MNIST_DIR",
    "read_idx",
    "find_fashion_mnist",
    "download_fashion_mnist",
    "load_fashion_mnist_arrays",
]

#: The four files, by role.
FASHION_MNIST_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

#: SHA-256 of each file's *decompressed* idx bytes. Checksumming the content rather than the
#: .gz keeps it valid for recompressed copies (the Debian package's .gz files differ from the
#: upstream ones byte for byte, yet decode to the same arrays).
FASHION_MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

#: Where the official repository (zalandoresearch/fashion-mnist) serves the files.
FASHION_MNIST_URL = (
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"
)

#: Where the Debian package ``dataset-fashion-mnist`` installs them.
SYSTEM_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

_INSTALL_HINT = (
    "install the Debian package (apt-get install dataset-fashion-mnist), put the four idx files "
    "in $DROPLAB_DATA/fashion-mnist, or pass data_dir="
)

# idx type codes (third byte of the magic number) -> big-endian NumPy dtype.
_IDX_TYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def _read_bytes(path: Path) -> bytes:
    """File content, gunzipped when it starts with the gzip magic bytes."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"idx file not found: {path}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: not a valid gzip file ({exc})") from None
    return raw


def _parse_idx(data: bytes, where: str) -> np.ndarray:
    if len(data) < 4:
        raise DataError(f"{where}: {len(data)} bytes is too short for an idx header (4 bytes)")
    if data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{where}: bad idx magic number 0x{data[:4].hex()}; expected two zero bytes, a "
            f"type code and the rank"
        )
    code, rank = data[2], data[3]
    if code not in _IDX_TYPES:
        valid = ", ".join(f"0x{c:02X}" for c in _IDX_TYPES)
        raise DataError(f"{where}: unknown idx type code 0x{code:02X}; valid codes: {valid}")
    if rank < 1:
        raise DataError(f"{where}: idx rank must be >= 1, got {rank}")
    header = 4 + 4 * rank
    if len(data) < header:
        raise DataError(f"{where}: truncated idx header ({len(data)} bytes, need {header})")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=rank, offset=4))
    dtype = np.dtype(_IDX_TYPES[code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(data) - header
    if got != expected:
        kind = "truncated" if got < expected else "has trailing bytes"
        raise DataError(
            f"{where}: idx data {kind}: dims {dims} of {dtype.name} need {expected} bytes, "
            f"got {got}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an idx file (LeCun's MNIST format), gzipped or raw, into a NumPy array.

    Format: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the rank ``r``, then ``r`` big-endian uint32 dimensions and
    the data in C order, big-endian. Gzip is detected from the content, not the file name.

    Args:
        path: the file.

    Returns:
        An array of the stored dims in native byte order.

    Raises:
        DataError: missing file, bad gzip, bad magic number, unknown type code, or a data size
            that does not match the dims (truncated or trailing bytes).

    Example:
        >>> images = read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
        >>> images.shape
        (10000, 28, 28)
    """
    path = Path(path)
    return _parse_idx(_read_bytes(path), str(path))


def _resolve_file(directory: Path, name: str) -> Path | None:
    """``name`` in ``directory``, gzipped (``x.gz``) or raw (``x``)."""
    for candidate in (directory / name, directory / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _complete(directory: Path) -> dict[str, Path] | None:
    found = {role: _resolve_file(directory, n) for role, n in FASHION_MNIST_FILES.items()}
    return found if all(found.values()) else None  # type: ignore[return-value]


def find_fashion_mnist(
    data_dir: str | os.PathLike[str] | None = None, cache_dir: str | os.PathLike[str] | None = None
) -> dict[str, Path] | None:
    """Locate the four Fashion-MNIST files; return ``{role: path}`` or ``None``.

    Search order: ``data_dir`` if given (then only there: a missing file raises), else
    ``$DROPLAB_DATA/fashion-mnist``, the Debian package's ``/usr/share/datasets/fashion-mnist``,
    and ``<cache_dir>/fashion-mnist`` (where :func:`download_fashion_mnist` puts them).

    Args:
        data_dir: a directory holding the four files (``.gz`` or decompressed). Default None.
        cache_dir: droplab's cache directory. Default None (no cache lookup).

    Raises:
        DataError: ``data_dir`` was given and lacks a file (the message names it).
    """
    if data_dir is not None:
        directory = Path(data_dir)
        for name in FASHION_MNIST_FILES.values():
            if _resolve_file(directory, name) is None:
                raise DataError(
                    f"Fashion-MNIST file not found: {directory / name} (nor its decompressed "
                    f"form); data_dir must hold {', '.join(FASHION_MNIST_FILES.values())}"
                )
        return _complete(directory)
    candidates = []
    if os.environ.get("DROPLAB_DATA"):
        candidates.append(Path(os.environ["DROPLAB_DATA"]) / "fashion-mnist")
    candidates.append(SYSTEM_FASHION_MNIST_DIR)
    if cache_dir is not None:
        candidates.append(Path(cache_dir) / "fashion-mnist")
    for directory in candidates:
        found = _complete(directory)
        if found:
            return found
    return None


def download_fashion_mnist(
    cache_dir: str | os.PathLike[str], *, base_url: str | None = None, timeout: float = 60.0
) -> dict[str, Path]:
    """Download the four files into ``<cache_dir>/fashion-mnist``, verified by SHA-256.

    Each file is fetched into a temporary directory and checked against
    :data:`FASHION_MNIST_SHA256` (of its decompressed content); only when all four match are
    they moved into place. On any failure the temporary files are removed and nothing is left
    in the cache.

    Args:
        cache_dir: droplab's cache directory.
        base_url: where the files are served; default :data:`FASHION_MNIST_URL`.
        timeout: seconds per request. Default 60.

    Raises:
        DataError: a request failed or a checksum did not match.
    """
    base_url = FASHION_MNIST_URL if base_url is None else base_url
    target = Path(cache_dir) / "fashion-mnist"
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".fashion-mnist-", dir=cache_dir))
    try:
        for name in FASHION_MNIST_FILES.values():
            url = base_url.rstrip("/") + "/" + name
            payload = fetch_verified(url, FASHION_MNIST_SHA256[name], what="Fashion-MNIST", hint=_INSTALL_HINT,
                                     timeout=timeout, content=lambda b, url=url: _decompress(b, url))
            (tmp / name).write_bytes(payload)
        target.mkdir(parents=True, exist_ok=True)
        for name in FASHION_MNIST_FILES.values():
            os.replace(tmp / name, target / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {role: target / name for role, name in FASHION_MNIST_FILES.items()}


def _decompress(payload: bytes, where: str) -> bytes:
    if payload[:2] != b"\x1f\x8b":
        return payload
    try:
        return gzip.decompress(payload)
    except (OSError, EOFError) as exc:
        raise DataError(
            f"{where}: not a valid gzip file ({exc}); the download was discarded"
        ) from None


def load_fashion_mnist_arrays(
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
) -> tuple[dict[str, np.ndarray], Path]:
    """Find (or download) and parse Fashion-MNIST; return the arrays and their directory.

    Args:
        data_dir: see :func:`find_fashion_mnist`. Default None.
        cache_dir: cache for downloads. Default None (no cache, no download).
        download: download into ``cache_dir`` when the files are nowhere else. Default True.

    Returns:
        ``({"x": (N, 28, 28) uint8, "y": (N,) uint8, "x_test": ..., "y_test": ...}, directory)``

    Raises:
        DataError: files not found (the message says how to install them), malformed files,
            image/label counts that differ, images that are not 28x28, labels outside 0..9.
    """
    found = find_fashion_mnist(data_dir, cache_dir)
    if found is None:
        if not download or cache_dir is None:
            raise DataError(f"Fashion-MNIST files not found; {_INSTALL_HINT}")
        found = download_fashion_mnist(cache_dir)
    arrays = {}
    for split, (img_role, lab_role) in {
        "": ("train_images", "train_labels"),
        "_test": ("test_images", "test_labels"),
    }.items():
        images, labels = read_idx(found[img_role]), read_idx(found[lab_role])
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DataError(
                f"{found[img_role]}: expected images of shape (N, 28, 28), got {images.shape}"
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(
                f"{found[lab_role]}: expected {len(images)} labels (one per image), "
                f"got shape {labels.shape}"
            )
        bad = np.unique(labels[(labels < 0) | (labels > 9)])
        if len(bad):
            raise DataError(
                f"{found[lab_role]}: labels must be in 0..9, got {bad[:5].tolist()}"
            )
        arrays["x" + split], arrays["y" + split] = images, labels
    return arrays, found["train_images"].parent
