"""The study store: one SQLite file per study, committed every epoch, safe to resume.

A *study* is one sweep: its spec, its *configurations* (points of the search space, without
the seed), its *runs* (configuration x seed), the metrics of every epoch of every run, the
final result and the cost (wall time, peak memory) of each run, and the checkpoints a resumed
sweep restarts from. Everything lives in one SQLite file so that a study can be copied, mailed
and diffed; ``droplab runs STUDY.db`` reads it.

Durability and concurrency, decided once here:

* Journal mode WAL with ``synchronous=NORMAL``. Every :meth:`Store.commit_epoch` is one
  transaction, so a crash of the process (Ctrl-C, ``kill -9``, out of memory) loses at most
  the epoch being written and never leaves a half-written one. With WAL, ``NORMAL`` may lose
  the last few committed transactions on an *operating-system* crash or power loss (never
  corrupting the file); a sweep then simply recomputes those epochs. ``FULL`` would fsync
  every epoch for a guarantee that only matters for power loss.
* One writer per study: :meth:`Store.open` with ``mode="w"`` takes ``fcntl.flock`` on the
  sidecar file ``<path>.lock`` and writes its pid there. The OS drops the lock when the
  process dies, even on ``kill -9``, so a stale lock file never blocks a resume. The writer
  deletes the lock file on close while still holding the lock; a writer that locked the file
  just before it went checks, once locked, that its file is still the one at ``<path>.lock``
  and otherwise starts over, so two writers never hold locks on two different files.
* Any number of readers: ``mode="r"`` opens the file read-only and takes no lock; WAL lets it
  read a consistent snapshot while a sweep is writing. A reader shows a run recorded as
  ``"running"`` as ``"interrupted"`` when no live process holds the study (the pid in the
  lock file is gone, or there is no lock file): the sweep that ran it was killed.
* Non-finite floats (a diverged run's ``nan`` loss, an ``inf`` bound) round-trip: JSON columns
  hold strict JSON, with ``nan``, ``inf`` and ``-inf`` written as the strings ``"NaN"``,
  ``"Infinity"`` and ``"-Infinity"`` and read back as floats. (The one price: a *string* value
  spelled exactly like one of those three reads back as a float.)

Example::

    with Store.open("study.db") as store:
        store.init_study("rates", {"rates": [0.1, 0.5], "seeds": 3})
        cfg = store.add_configuration("p=0.5", {"p": 0.5}, group="mlp")
        run = store.start_run(cfg, seed=0)
        store.commit_epoch([(run, 0, {"val_loss": 0.7})], checkpoint=("mlp", 0, b"..."))
        store.finish_runs([(run, "completed", {"val_loss": 0.7}, {"seconds": 1.2})])
"""

from __future__ import annotations

import csv
import datetime as _dt
import errno
import fcntl
import io
import json
import math
import os
import pathlib
import platform
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from droplab._checks import check_choice, check_nonneg_int
from droplab.errors import StoreError

__all__ = ["Store", "SCHEMA_VERSION", "RUN_STATUSES", "FINAL_STATUSES"]

#: Version of the table layout below; a file with another version is refused, not guessed at.
SCHEMA_VERSION = 1

#: Statuses a run can end in (:meth:`Store.finish_runs`).
FINAL_STATUSES = ("completed", "early_stopped", "diverged", "failed")
#: Every status a run can have. A read-only store shows ``"running"`` runs as
#: ``"interrupted"`` when no live process writes the study (a sweep that was killed).
RUN_STATUSES = ("running", "interrupted", *FINAL_STATUSES)

_APP = "droplab-study"
_RECORDED = tuple(s for s in FINAL_STATUSES if s != "failed")  # a resume keeps them; it retries failed

_SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE study (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    name     TEXT NOT NULL,
    spec     TEXT NOT NULL,
    versions TEXT NOT NULL,
    created  TEXT NOT NULL
);
CREATE TABLE configurations (
    id     INTEGER PRIMARY KEY,
    key    TEXT NOT NULL UNIQUE,
    params TEXT NOT NULL,
    grp    TEXT NOT NULL
);
CREATE TABLE runs (
    id        INTEGER PRIMARY KEY,
    config_id INTEGER NOT NULL REFERENCES configurations(id),
    seed      INTEGER NOT NULL,
    status    TEXT NOT NULL,
    attempts  INTEGER NOT NULL DEFAULT 0,
    result    TEXT,
    cost      TEXT,
    started   TEXT,
    finished  TEXT,
    UNIQUE (config_id, seed)
);
CREATE TABLE epochs (
    run_id  INTEGER NOT NULL REFERENCES runs(id),
    epoch   INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    PRIMARY KEY (run_id, epoch)
) WITHOUT ROWID;
CREATE TABLE checkpoints (
    key     TEXT PRIMARY KEY,
    epoch   INTEGER NOT NULL,
    blob    BLOB NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE summary (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    data    TEXT NOT NULL,
    updated TEXT NOT NULL
);
"""

_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


# --- JSON with non-finite floats ----------------------------------------------------------------
def _encode(value: Any, where: str) -> Any:
    """Turn ``value`` into strict-JSON data; non-finite floats become tagged strings."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise StoreError(f"cannot store {where}: key {k!r} is not a string")
            out[k] = _encode(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    item = getattr(value, "item", None)  # numpy / torch scalars
    if callable(item) and getattr(value, "ndim", None) == 0:
        return _encode(item(), where)
    raise StoreError(
        f"cannot store {where}: {type(value).__name__} is not a number, string, bool, None, "
        "list or dict"
    )


def _decode(value: Any) -> Any:
    if isinstance(value, str):
        return _NONFINITE.get(value, value)
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _dumps(value: Any, where: str) -> str:
    return json.dumps(_encode(value, where), sort_keys=True, allow_nan=False)


def _loads(text: str | None) -> Any:
    return None if text is None else _decode(json.loads(text))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay whole values."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: value}


def _differing_keys(old: Any, new: Any) -> list[str]:
    # Compared as JSON text, as the stored spec is: 1 and 1.0 differ there, so they differ here.
    a, b = (
        {k: json.dumps(v, sort_keys=True) for k, v in _flatten(_encode(spec, "spec")).items()}
        for spec in (old, new)
    )
    return sorted(k or "<spec>" for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    # importlib.metadata rather than importing torch: opening a store stays fast.
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("torch", "numpy", "droplab"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "absent"
    return out


# --- the store ----------------------------------------------------------------------------------
class Store:
    """One study's SQLite file: spec, configurations, runs, per-epoch metrics, checkpoints.

    Open it with :meth:`Store.open` (not the constructor). See the module docstring for the
    durability, locking and non-finite-float decisions.

    Args:
        path: the study file (conventionally ``*.db``).
        mode: ``"w"`` (default) creates the file if missing and takes the single-writer lock;
            ``"r"`` opens read-only, takes no lock, and works while a sweep is writing.

    Example::

        with Store.open("study.db", mode="r") as store:
            for run in store.runs(status="completed"):
                print(run["key"], run["seed"], run["result"]["val_loss"])
    """

    def __init__(self, path: pathlib.Path, mode: str, conn: sqlite3.Connection, lock_fd: int | None):
        self.path = path
        self.mode = mode
        self._conn: sqlite3.Connection | None = conn
        self._lock_fd = lock_fd
        self._mutex = threading.RLock()

    # --- opening / closing -----------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, *, mode: str = "w") -> Store:
        """Open (``"w"``: create if missing and lock; ``"r"``: read-only) the study at ``path``.

        Raises:
            StoreError: ``"r"`` and no file; another process holds the study
                (``study <path> is in use by another process (pid N)``); the file is not a
                droplab study or has another schema version.
        """
        check_choice("mode", mode, ("w", "r"))
        path = pathlib.Path(path)
        if mode == "r":
            if not path.is_file():
                raise StoreError(f"no study at {path}")
            conn = cls._connect(path, f"{path.resolve().as_uri()}?mode=ro", uri=True)
            store = cls(path, mode, conn, None)
            try:
                store._check_schema(create=False)
            except BaseException:
                store.close()
                raise
            return store
        if path.is_dir():
            raise StoreError(f"study path {path} is a directory")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of study {path}: {exc.strerror}") from None
        lock_fd = cls._lock(path)
        try:
            conn = cls._connect(path, str(path), uri=False)
        except BaseException:
            cls._unlock(lock_fd, path)
            raise
        store = cls(path, mode, conn, lock_fd)
        try:
            store._check_schema(create=True)
        except BaseException:
            store.close()
            raise
        return store

    @staticmethod
    def _connect(path: pathlib.Path, target: str, *, uri: bool) -> sqlite3.Connection:
        try:
            # isolation_level=None: no implicit transactions; _tx() issues BEGIN IMMEDIATE so
            # each public write is exactly one transaction.
            conn = sqlite3.connect(
                target, uri=uri, timeout=10.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open study {path}: {exc}") from None
        return conn

    @staticmethod
    def _lock(path: pathlib.Path) -> int:
        lock_path = f"{path}.lock"
        while True:
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise StoreError(f"cannot create lock file {lock_path}: {exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                try:
                    owner = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
                finally:
                    os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise StoreError(f"study {path} is in use by another process (pid {owner})") from None
                raise StoreError(f"cannot lock study {path}: {exc.strerror}") from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the previous writer deleted this file as we locked it: lock the new one
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    @staticmethod
    def _unlock(fd: int, path: pathlib.Path) -> None:
        try:
            try:
                os.unlink(f"{path}.lock")  # while still locked: see the module docstring
            except FileNotFoundError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _writer_alive(self) -> bool:
        """Whether a live process holds this study for writing (its pid is in the lock file)."""
        if self._lock_fd is not None:
            return True
        try:
            with open(f"{self.path}.lock", "rb") as fh:
                pid = int(fh.read(64).decode("ascii", "replace").strip() or 0)
        except (OSError, ValueError):
            return False
        if pid <= 0:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, another user's
            return True
        return True

    def _check_schema(self, *, create: bool) -> None:
        conn = self._conn
        assert conn is not None
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError:
            raise StoreError(f"{self.path} is not a droplab study (not an SQLite file)") from None
        if not tables and create:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                with self._tx() as c:
                    # One statement at a time: executescript() would COMMIT our transaction.
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            c.execute(statement)
                    c.executemany(
                        "INSERT INTO meta (key, value) VALUES (?, ?)",
                        [("application", _APP), ("schema_version", str(SCHEMA_VERSION))],
                    )
            except sqlite3.Error as exc:
                raise StoreError(f"cannot create study {self.path}: {exc}") from None
            self._tune_writer()
            return
        meta: dict[str, str] = {}
        if "meta" in tables:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("application") != _APP:
            raise StoreError(f"{self.path} is not a droplab study (no droplab metadata)")
        version = meta.get("schema_version")
        if version != str(SCHEMA_VERSION):
            raise StoreError(
                f"study {self.path} has schema version {version}; this droplab reads version "
                f"{SCHEMA_VERSION}"
            )
        if create:
            self._tune_writer()

    def _tune_writer(self) -> None:
        conn = self._db()
        conn.execute("PRAGMA synchronous = NORMAL")
        # A big checkpoint blob grows the WAL; truncate it back after each WAL checkpoint.
        conn.execute(f"PRAGMA journal_size_limit = {64 * 2**20}")

    def close(self) -> None:
        """Close the file and release the writer lock (idempotent)."""
        with self._mutex:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._lock_fd is not None:
                fd, self._lock_fd = self._lock_fd, None
                self._unlock(fd, self.path)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else self.mode
        return f"Store({str(self.path)!r}, {state})"

    # --- plumbing ---------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"study {self.path} is closed")
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any exception."""
        conn = self._db()
        if self.mode != "w":
            raise StoreError(f"study {self.path} is open read-only")
        with self._mutex:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreError(f"cannot write study {self.path}: {exc}") from None
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError:
                    raise StoreError(f"cannot write study {self.path}: {exc}") from None
                raise

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        conn = self._db()
        with self._mutex:
            try:
                return conn.execute(sql, args).fetchall()
            except sqlite3.OperationalError as exc:
                raise StoreError(f"cannot read study {self.path}: {exc}") from None

    # --- study ------------------------------------------------------------------------------
    def init_study(self, name: str, spec: dict) -> None:
        """Record the study's name and spec, or check them against the recorded ones.

        The first call stores ``spec`` (JSON), the library versions (python, torch, numpy,
        droplab, platform) and a UTC timestamp. Later calls (a resume) must pass an equal
        spec; otherwise a :class:`StoreError` names the keys that differ (dotted paths), since
        resuming with another configuration would mix two experiments in one file. The name
        recorded first is kept.
        """
        if not isinstance(name, str) or not name:
            raise StoreError(f"study name must be a non-empty string, got {name!r}")
        if not isinstance(spec, dict):
            raise StoreError(f"study spec must be a dict, got {type(spec).__name__}")
        spec_json = _dumps(spec, "spec")
        with self._tx() as c:
            row = c.execute("SELECT spec FROM study WHERE id = 1").fetchone()
            if row is None:
                c.execute(
                    "INSERT INTO study (id, name, spec, versions, created) VALUES (1, ?, ?, ?, ?)",
                    (name, spec_json, _dumps(_versions(), "versions"), _now()),
                )
                return
            if row[0] != spec_json:
                keys = _differing_keys(_loads(row[0]), spec)
                raise StoreError(
                    f"study {self.path} was created with a different spec (differing keys: "
                    f"{', '.join(keys)}); resuming with another configuration is refused"
                )

    def study(self) -> dict:
        """``{"name", "spec", "versions", "created"}`` of the study."""
        rows = self._query("SELECT name, spec, versions, created FROM study WHERE id = 1")
        if not rows:
            raise StoreError(f"study {self.path} has no study record (init_study never ran)")
        name, spec, versions, created = rows[0]
        return {"name": name, "spec": _loads(spec), "versions": _loads(versions), "created": created}

    # --- configurations ---------------------------------------------------------------------
    def add_configuration(self, key: str, params: dict, group: str) -> int:
        """Record a configuration (one point of the space, no seed); return its id.

        Idempotent on ``key``: adding an existing key returns the existing id, provided the
        params and group agree (otherwise :class:`StoreError`). ``group`` is the population /
        architecture key runs are trained together under.
        """
        if not isinstance(key, str) or not key:
            raise StoreError(f"configuration key must be a non-empty string, got {key!r}")
        if not isinstance(params, dict):
            raise StoreError(f"params of configuration {key!r} must be a dict, got {type(params).__name__}")
        params_json = _dumps(params, f"params of {key!r}")
        with self._tx() as c:
            row = c.execute("SELECT id, params, grp FROM configurations WHERE key = ?", (key,)).fetchone()
            if row is not None:
                if (row[1], row[2]) != (params_json, str(group)):
                    raise StoreError(
                        f"configuration {key!r} is already recorded with other params or group "
                        f"(recorded group {row[2]!r}, params {row[1]}; given group {group!r}, "
                        f"params {params_json})"
                    )
                return int(row[0])
            cur = c.execute(
                "INSERT INTO configurations (key, params, grp) VALUES (?, ?, ?)",
                (key, params_json, str(group)),
            )
            return int(cur.lastrowid)

    def configurations(self) -> list[dict]:
        """All configurations in insertion order: ``{"id", "key", "params", "group"}``."""
        rows = self._query("SELECT id, key, params, grp FROM configurations ORDER BY id")
        return [{"id": i, "key": k, "params": _loads(p), "group": g} for i, k, p, g in rows]

    # --- runs -------------------------------------------------------------------------------
    def start_run(self, config_id: int, seed: int) -> int:
        """Mark run (configuration, seed) as running and return its id.

        Idempotent: the run is created on the first call and reused after; each call sets the
        status to ``"running"`` and counts one more attempt (a resume shows ``attempts > 1``).
        """
        check_nonneg_int("seed", seed)
        with self._tx() as c:
            if c.execute("SELECT 1 FROM configurations WHERE id = ?", (config_id,)).fetchone() is None:
                raise StoreError(f"study {self.path} has no configuration with id {config_id!r}")
            c.execute(
                "INSERT INTO runs (config_id, seed, status, attempts, started) VALUES (?, ?, ?, 0, ?)"
                " ON CONFLICT (config_id, seed) DO NOTHING",
                (config_id, seed, "running", _now()),
            )
            c.execute(
                "UPDATE runs SET status = 'running', attempts = attempts + 1 "
                "WHERE config_id = ? AND seed = ?",
                (config_id, seed),
            )
            (run_id,) = c.execute(
                "SELECT id FROM runs WHERE config_id = ? AND seed = ?", (config_id, seed)
            ).fetchone()
            return int(run_id)

    def run_state(self, config_id: int, seed: int) -> dict | None:
        """``{"id", "status", "attempts", "last_epoch"}`` of a run, or None if never started.

        ``last_epoch`` is the highest committed epoch, or None when no epoch was committed.
        """
        rows = self._query(
            "SELECT r.id, r.status, r.attempts, (SELECT MAX(epoch) FROM epochs e WHERE e.run_id = r.id)"
            " FROM runs r WHERE r.config_id = ? AND r.seed = ?",
            (config_id, seed),
        )
        if not rows:
            return None
        run_id, status, attempts, last = rows[0]
        return {"id": run_id, "status": status, "attempts": attempts, "last_epoch": last}

    def commit_epoch(
        self,
        rows: list[tuple[int, int, dict]],
        checkpoint: tuple[str, int, bytes] | None = None,
    ) -> None:
        """Record epoch metrics of one or more runs, and a checkpoint, in ONE transaction.

        Args:
            rows: ``(run_id, epoch, metrics)``; metrics maps names to floats or None
                (non-finite floats are kept). A row for an epoch already recorded replaces it,
                so retrying a commit never duplicates an epoch.
            checkpoint: ``(key, epoch, blob)`` or None (default). Replaces the previous
                checkpoint stored under ``key``; committed with the rows, so the epoch log and
                the checkpoint a resume starts from can never disagree.
        """
        prepared = []
        for row in rows:
            if not (isinstance(row, tuple) and len(row) == 3):
                raise StoreError(f"epoch rows must be (run_id, epoch, metrics) tuples, got {row!r}")
            run_id, epoch, metrics = row
            check_nonneg_int("epoch", epoch)
            if not isinstance(metrics, dict):
                raise StoreError(f"metrics of run {run_id} epoch {epoch} must be a dict, got {metrics!r}")
            if {"run_id", "epoch"} & metrics.keys():
                raise StoreError("metric names 'run_id' and 'epoch' are reserved")
            prepared.append((run_id, epoch, _dumps(metrics, f"metrics of run {run_id} epoch {epoch}")))
        if checkpoint is not None:
            if not (isinstance(checkpoint, tuple) and len(checkpoint) == 3):
                raise StoreError("checkpoint must be a (key, epoch, blob) tuple")
            ckey, cepoch, blob = checkpoint
            check_nonneg_int("checkpoint epoch", cepoch)
            if not isinstance(blob, (bytes, bytearray, memoryview)):
                raise StoreError(f"checkpoint blob must be bytes, got {type(blob).__name__}")
        with self._tx() as c:
            for run_id, epoch, metrics_json in prepared:
                try:
                    c.execute(
                        "INSERT OR REPLACE INTO epochs (run_id, epoch, metrics) VALUES (?, ?, ?)",
                        (run_id, epoch, metrics_json),
                    )
                except sqlite3.IntegrityError:
                    raise StoreError(f"study {self.path} has no run with id {run_id!r}") from None
            if checkpoint is not None:
                c.execute(
                    "INSERT OR REPLACE INTO checkpoints (key, epoch, blob, updated) VALUES (?, ?, ?, ?)",
                    (str(ckey), cepoch, bytes(blob), _now()),
                )

    def load_checkpoint(self, key: str) -> tuple[int, bytes] | None:
        """``(epoch, blob)`` of the checkpoint stored under ``key``, or None."""
        rows = self._query("SELECT epoch, blob FROM checkpoints WHERE key = ?", (str(key),))
        return (int(rows[0][0]), bytes(rows[0][1])) if rows else None

    def delete_checkpoint(self, key: str) -> None:
        """Drop the checkpoint under ``key`` (no-op if there is none)."""
        with self._tx() as c:
            c.execute("DELETE FROM checkpoints WHERE key = ?", (str(key),))

    def drop_checkpoints(self) -> None:
        """Delete every checkpoint and give their space back to the file system.

        For a finished study (see :meth:`is_complete`): what a resume or a report reads
        (spec, configurations, runs, epochs, summary) stays. The deletion is one transaction;
        ``VACUUM`` then rewrites the file without the freed pages, atomically (a crash leaves
        the file as the committed deletion left it), and the WAL is checkpointed and truncated.
        """
        with self._tx() as c:
            c.execute("DELETE FROM checkpoints")
        conn = self._db()
        with self._mutex:
            try:
                conn.execute("VACUUM")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot compact study {self.path}: {exc}") from None

    def finish_runs(self, items: list[tuple[int, str, dict, dict]]) -> None:
        """Record ``(run_id, status, result, cost)`` of finished runs in one transaction.

        ``status`` is one of ``FINAL_STATUSES``; ``result`` holds the final metrics
        (best_epoch, val_loss, val_acc, ...); ``cost`` what the run cost (seconds,
        peak_mem_mb, ...), so a report can show what each regularizer costs.
        """
        prepared = []
        for item in items:
            if not (isinstance(item, tuple) and len(item) == 4):
                raise StoreError(f"finish_runs items must be (run_id, status, result, cost), got {item!r}")
            run_id, status, result, cost = item
            check_choice("status", status, FINAL_STATUSES)
            for what, d in (("result", result), ("cost", cost)):
                if not isinstance(d, dict):
                    raise StoreError(f"{what} of run {run_id} must be a dict, got {type(d).__name__}")
            prepared.append(
                (status, _dumps(result, f"result of run {run_id}"), _dumps(cost, f"cost of run {run_id}"), _now(), run_id)
            )
        with self._tx() as c:
            for args in prepared:
                cur = c.execute(
                    "UPDATE runs SET status = ?, result = ?, cost = ?, finished = ? WHERE id = ?", args
                )
                if cur.rowcount != 1:
                    raise StoreError(f"study {self.path} has no run with id {args[-1]!r}")

    def runs(self, status: str | None = None) -> list[dict]:
        """Every run (or those with ``status``), ordered by configuration then seed.

        Each is ``{"id", "config_id", "key", "params", "group", "seed", "status", "attempts",
        "result", "cost", "epochs_run"}``; ``result`` and ``cost`` are None until the run
        finishes; ``epochs_run`` counts committed epochs. Read-only, a ``"running"`` run of a
        study no live process writes is ``"interrupted"`` (and ``status="interrupted"`` finds it).
        """
        sql = (
            "SELECT r.id, r.config_id, c.key, c.params, c.grp, r.seed, r.status, r.attempts,"
            " r.result, r.cost, (SELECT COUNT(*) FROM epochs e WHERE e.run_id = r.id)"
            " FROM runs r JOIN configurations c ON c.id = r.config_id"
        )
        args: tuple = ()
        if status is not None:
            check_choice("status", status, RUN_STATUSES)
            stored = "running" if status == "interrupted" else status
            sql, args = sql + " WHERE r.status = ?", (stored,)
        names = ("id", "config_id", "key", "params", "group", "seed", "status", "attempts",
                 "result", "cost", "epochs_run")
        out = []
        rows = self._query(sql + " ORDER BY r.config_id, r.seed", args)
        dead = self.mode == "r" and any(row[6] == "running" for row in rows) and not self._writer_alive()
        for row in rows:
            d = dict(zip(names, row))
            for k in ("params", "result", "cost"):
                d[k] = _loads(d[k])
            if dead and d["status"] == "running":
                d["status"] = "interrupted"
            if status is None or d["status"] == status:
                out.append(d)
        return out

    def epochs(self, run_id: int | None = None) -> list[dict]:
        """Per-epoch metrics ``{"run_id", "epoch", **metrics}``, ordered by run then epoch."""
        if run_id is None:
            rows = self._query("SELECT run_id, epoch, metrics FROM epochs ORDER BY run_id, epoch")
        else:
            rows = self._query(
                "SELECT run_id, epoch, metrics FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,)
            )
        return [{"run_id": r, "epoch": e, **_loads(m)} for r, e, m in rows]

    # --- summary / export -------------------------------------------------------------------
    def set_summary(self, summary: dict) -> None:
        """Store the end-of-study summary (selection table, test metrics), replacing any."""
        if not isinstance(summary, dict):
            raise StoreError(f"summary must be a dict, got {type(summary).__name__}")
        data = _dumps(summary, "summary")
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO summary (id, data, updated) VALUES (1, ?, ?)", (data, _now())
            )

    def summary(self) -> dict | None:
        """The summary stored by :meth:`set_summary`, or None."""
        rows = self._query("SELECT data FROM summary WHERE id = 1")
        return _loads(rows[0][0]) if rows else None

    def is_complete(self) -> bool:
        """Whether the sweep finished: its summary is stored and no run is unfinished or failed."""
        if self.summary() is None:
            return False
        rows = self._query("SELECT COUNT(*) FROM runs WHERE status NOT IN (?, ?, ?)", _RECORDED)
        return rows[0][0] == 0

    def export_jsonl(self, out: str | os.PathLike | IO[str], *, status: str | None = None) -> None:
        """Write one JSON object per line per run (to a path or a text file).

        Keys (sorted, so two studies diff line by line): ``config`` (params), ``cost``,
        ``epochs_run``, ``group``, ``key``, ``result``, ``seed``, ``status``. Non-finite
        floats appear as ``"NaN"``/``"Infinity"``/``"-Infinity"``: every line is strict JSON.
        """
        lines = []
        for r in self.runs(status):
            record = {
                "config": r["params"], "key": r["key"], "group": r["group"], "seed": r["seed"],
                "status": r["status"], "result": r["result"], "cost": r["cost"],
                "epochs_run": r["epochs_run"],
            }
            lines.append(_dumps(record, f"run {r['id']}") + "\n")
        _write_text(out, "".join(lines))

    def export_csv(self, out: str | os.PathLike | IO[str], *, status: str | None = None) -> None:
        """Write one CSV row per run (to a path or a text file), params and results flattened.

        Columns: ``run_id, key, group, seed, status, attempts, epochs_run``, then
        ``param.<name>``, ``result.<name>``, ``cost.<name>`` (nested dicts as dotted names,
        lists as JSON), the union over all runs; a missing value is an empty cell.
        """
        runs = self.runs(status)
        base = ["run_id", "key", "group", "seed", "status", "attempts", "epochs_run"]
        flat = []
        sections: dict[str, set[str]] = {"param": set(), "result": set(), "cost": set()}
        for r in runs:
            row = {"run_id": r["id"], **{k: r[k] for k in base[1:]}}
            for section, src in (("param", r["params"]), ("result", r["result"]), ("cost", r["cost"])):
                for k, v in (_flatten(src) if src else {}).items():
                    row[f"{section}.{k}"] = json.dumps(_encode(v, k)) if isinstance(v, list) else v
                    sections[section].add(f"{section}.{k}")
            flat.append(row)
        header = base + [c for s in ("param", "result", "cost") for c in sorted(sections[s])]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=header, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(flat)
        _write_text(out, buf.getvalue())


def _write_text(out: str | os.PathLike | IO[str], text: str) -> None:
    if hasattr(out, "write"):
        out.write(text)  # type: ignore[union-attr]
        return
    try:
        pathlib.Path(out).write_text(text, encoding="utf-8", newline="")
    except OSError as exc:
        raise StoreError(f"cannot write {out}: {exc.strerror}") from None
