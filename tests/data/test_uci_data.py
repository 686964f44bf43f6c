"""The UCI loader: the canonical data in ../shared/data/uci, every error path, the checked download."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from droplab.data._uci_sums import UCI_SHA256
from droplab.data.uci import UCI_DATASETS, download_uci, find_uci, load_uci, uci_folder
from droplab.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "uci"
needs_shared = pytest.mark.skipif(
    not (SHARED / "yacht" / "data.txt").is_file(),
    reason=f"the UCI data are not at {SHARED} (the project's shared data folder)",
)


def _fake(root: Path, name: str = "yacht", n: int = 40, splits: int = 2) -> Path:
    """A tiny data set in the original layout (numbers made up here)."""
    folder = root / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savetxt(folder / "data.txt", rng.normal(size=(n, 4)))
    (folder / "index_features.txt").write_text("0\n1\n2\n")
    (folder / "index_target.txt").write_text("3\n")
    for s in range(splits):
        perm = rng.permutation(n)
        np.savetxt(folder / f"index_train_{s}.txt", perm[: n - 5].astype(float))
        np.savetxt(folder / f"index_test_{s}.txt", perm[n - 5 :].astype(float))
    for file, text in (("n_splits.txt", f"{splits}"), ("n_epochs.txt", "40"), ("n_hidden.txt", "50"),
                       ("dropout_rates.txt", "0.005\n0.1"), ("tau_values.txt", "0.25\n0.5")):
        (folder / file).write_text(text + "\n")
    return folder


def test_fake_layout_loads(tmp_path):
    _fake(tmp_path)
    d = load_uci("yacht", tmp_path)
    assert d.x.shape == (40, 3) and d.y.shape == (40,)
    assert d.n_splits == 2 and len(d.train_index[0]) == 35 and len(d.test_index[1]) == 5
    assert d.dropout_rates == (0.005, 0.1) and d.tau_values == (0.25, 0.5)
    assert d.n_epochs == 40 and d.n_hidden == 50
    # the data set's folder itself, and the repository's <name>/data layout, work too
    assert load_uci("yacht", tmp_path / "yacht").folder == tmp_path / "yacht"
    nested = tmp_path / "repo" / "yacht" / "data"
    shutil.copytree(tmp_path / "yacht", nested)
    assert uci_folder(tmp_path / "repo", "yacht") == nested


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda f: (f / "data.txt").unlink(), "no UCI data set 'yacht'"),
        (lambda f: (f / "data.txt").write_text("1 2 3 x\n"), "malformed data file"),
        (lambda f: (f / "index_train_1.txt").unlink(), "missing file .*index_train_1.txt"),
        (lambda f: (f / "index_train_0.txt").write_text("0\n1\n99\n" + "2\n" * 0 + "3\n4\n5\n6\n7\n8\n9\n"),
         r"indices outside \[0, 40\)"),
        (lambda f: (f / "index_test_0.txt").write_text("0.5\n"), "non-integer indices"),
        (lambda f: (f / "index_test_0.txt").write_text("3\n3\n"), "repeats an index"),
        (lambda f: (f / "index_target.txt").write_text("1\n"), "one column that is not an input"),
        (lambda f: (f / "n_splits.txt").write_text("two\n"), "malformed n_splits"),
        (lambda f: (f / "n_splits.txt").write_text("1\n"), "says 1 splits but index_train_1.txt exists"),
        (lambda f: (f / "dropout_rates.txt").write_text("0.5\n1.5\n"), r"values in \[0.0, 1.0\)"),
        (lambda f: (f / "tau_values.txt").write_text("nan\n"), "NaN or infinite"),
        (lambda f: (f / "n_hidden.txt").write_text("\n"), "empty n_hidden"),
    ],
)
def test_bad_folders_raise_one_line(tmp_path, breakage, message):
    breakage(_fake(tmp_path))
    with pytest.raises(DataError, match=message) as info:
        load_uci("yacht", tmp_path)
    assert "\n" not in str(info.value)


def test_overlapping_split_raises(tmp_path):
    folder = _fake(tmp_path)
    train = np.loadtxt(folder / "index_train_0.txt")
    np.savetxt(folder / "index_test_0.txt", train[:3])
    with pytest.raises(DataError, match="train and test rows overlap"):
        load_uci("yacht", tmp_path)


def test_unknown_name_and_missing_folder(tmp_path):
    with pytest.raises(DataError, match="unknown UCI data set 'bostonhousing'.*did you mean 'bostonHousing'"):
        load_uci("bostonhousing", tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        load_uci("yacht", tmp_path / "nowhere")
    with pytest.raises(DataError, match="not in the cache"):
        find_uci("yacht", cache_dir=tmp_path, download=False)


def test_sums_cover_the_nine_data_sets():
    assert len(UCI_DATASETS) == 9
    for name, sums in UCI_SHA256.items():
        assert "data.txt" in sums and "index_train_0.txt" in sums and "tau_values.txt" in sums
        assert all(len(h) == 64 for h in sums.values())


@needs_shared
def test_canonical_data_match_the_published_sums_and_sizes():
    rows = {"bostonHousing": (506, 13, 20), "yacht": (308, 6, 20), "protein-tertiary-structure": (45730, 9, 5)}
    for name, (n, d, splits) in rows.items():
        data = load_uci(name, SHARED)
        assert data.x.shape == (n, d) and data.n_splits == splits
        for s in range(splits):
            assert len(data.train_index[s]) + len(data.test_index[s]) == n
    for file, digest in UCI_SHA256["yacht"].items():
        assert hashlib.sha256((SHARED / "yacht" / file).read_bytes()).hexdigest() == digest


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def server(tmp_path):
    """A local HTTP server on 127.0.0.1 over a temporary copy of yacht's files (made now)."""
    if not (SHARED / "yacht" / "data.txt").is_file():
        pytest.skip(f"the UCI data are not at {SHARED} (the project's shared data folder)")
    served = tmp_path / "served"
    shutil.copytree(SHARED / "yacht", served / "yacht" / "data")
    handler = functools.partial(_Quiet, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_download_checks_sums_and_fills_the_cache(server, tmp_path):
    served, url = server
    cache = tmp_path / "cache"
    data = find_uci("yacht", cache_dir=cache, base_url=url)
    assert data.x.shape == (308, 6) and data.folder == cache / "uci" / "yacht"
    assert not list((cache / "uci" / "yacht").glob("*.part"))
    # a corrupt file in the cache is fetched again; a corrupt file on the server is refused
    (cache / "uci" / "yacht" / "tau_values.txt").write_text("7\n")
    download_uci("yacht", cache, base_url=url)
    assert load_uci("yacht", cache / "uci").tau_values == (0.25, 0.5, 0.75)
    (served / "yacht" / "data" / "n_hidden.txt").write_text("51\n")
    (cache / "uci" / "yacht" / "n_hidden.txt").unlink()
    with pytest.raises(DataError, match="checksum mismatch for .*n_hidden.txt"):
        download_uci("yacht", cache, base_url=url)
    assert not (cache / "uci" / "yacht" / "n_hidden.txt").exists()


def test_download_failure_is_one_line(server, tmp_path):
    _, url = server
    with pytest.raises(DataError, match="could not download UCI file .*bostonHousing"):
        download_uci("bostonHousing", tmp_path, base_url=url)
