"""The store: a directory holding one record per configuration of a sweep.

Layout
------
``manifest.json``
    The store format version (:data:`FORMAT_VERSION`); a store of another version
    is refused with :class:`StoreVersionError`.
``records/<key>.json``
    One record per configuration: config, measures, status "ok" or "failed", error
    message and traceback, scalars, timings, worker, host, pid, and checksums.
``records/<key>.npz``
    Its arrays, when it has any.
``claims/``
    Which running sweep is computing which key (see Concurrency).

The key is a hash of the canonical JSON of (configuration with defaults filled in,
measure names, format version).

Integrity
---------
Each file is written to a temporary file in the same directory, fsynced, then
renamed over its final name, the ``.npz`` before the ``.json``: a record exists
once its ``.json`` does. A record is *done* only when it reads back whole: its JSON
parses, its ``checksum`` (SHA-256 of its canonical JSON) matches, its key matches
its configuration and measures, and its ``.npz`` matches ``arrays_sha256``. Any
other file in ``records/`` (a truncated or edited record, a symbolic link, a stray
``README.json``) is *damaged*: :func:`load_sweep` skips it with a warning that
names it (or raises, with ``on_damaged="raise"``), and a sweep runs its
configuration again. Symbolic links inside the store are never followed: a linked
``manifest.json``, ``records/`` or ``claims/`` is refused, a linked record is
damaged.

Concurrency
-----------
Creating a store is race-free: the manifest is linked into place only if no other
process did so first, and a directory that holds nothing but temporary files is
one being created. Sweeps running at once on one store do not redo each other's
work: before running a key, a sweep *claims* it by creating ``claims/<key>.claim``
exclusively, naming its owner, and holds an advisory lock (``flock``) on
``claims/<owner>.owner`` while it runs; the operating system drops the lock when
the process ends, however it ends, so a claim whose owner's lock is free is stale
and is taken over. Where ``fcntl`` is missing (Windows) there are no claims:
concurrent sweeps may then run a configuration twice, which is harmless (records
are replaced atomically, and both runs compute the same result from the seed).
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import io
import json
import os
import re
import stat
import time
import uuid
import warnings
from pathlib import Path

import numpy as np

from .. import _config, _io
from .configuration import check_measures, normalize_config

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, no claims
    fcntl = None

__all__ = ["FORMAT_VERSION", "StoreVersionError", "DamagedRecordError",
           "DamagedRecordWarning", "Store", "Claims", "load_sweep", "record_key", "key_of",
           "canonical_json", "make_record", "flatten", "fasthess_version"]

#: Version of the store layout and record schema; part of every key.
FORMAT_VERSION = 2
_STORE_KIND = "fasthess-sweep-store"
_KEY_RE = re.compile(r"^[0-9a-f]{32}$")
# every field make_record writes, checked before a record is used
_FIELDS = ("format_version", "key", "config", "measure", "status", "error", "traceback",
           "scalars", "arrays", "arrays_sha256", "timings", "worker", "host", "pid",
           "checksum")


class StoreVersionError(ValueError):
    """The store was written by another store format version."""


class DamagedRecordError(ValueError):
    """A file in a store's ``records/`` is not a whole record (the message names it)."""


class DamagedRecordWarning(UserWarning):
    """:func:`load_sweep` skipped damaged files of a store (the message lists them)."""


def canonical_json(obj) -> str:
    """One JSON spelling of ``obj``: sorted keys, no spaces, ASCII."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def key_of(canon: dict, names) -> str:
    """The key of a canonical configuration run with the measures ``names``."""
    payload = {"config": canon, "measure": list(names), "format_version": FORMAT_VERSION}
    return hashlib.sha256(canonical_json(payload).encode("ascii")).hexdigest()[:32]


def record_key(config, measure) -> str:
    """The store key of (config, measure).

    A hash of their canonical JSON and the store format version: defaults filled in
    or spelled out, and any order of the measures, give the same key.

    Parameters
    ----------
    config : dict
        A configuration.
    measure : str, callable or list of them
        Its measures.

    Returns
    -------
    str
        32 hexadecimal digits.

    Examples
    --------
    >>> from fasthess.sweeps import record_key
    >>> record_key({"activation": "erf", "n": 3}, "rank") == record_key(
    ...     {"activation": "erf", "n_in": 3, "n_hidden": 3, "seed": 0}, ["rank"])
    True
    """
    names, _ = check_measures(measure)
    return key_of(normalize_config(config, measure), names)


def fasthess_version() -> str:
    """The installed fasthess version, for records and manifests."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fasthess")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def make_record(key, canon, names, result) -> dict:
    """The JSON part of a record (its arrays go to the .npz beside it)."""
    return {
        "format_version": FORMAT_VERSION, "key": key, "config": canon,
        "measure": list(names), "status": result["status"], "error": result["error"],
        "traceback": result["traceback"], "scalars": result["scalars"],
        "arrays": sorted(result["arrays"]), "timings": result["timings"],
        "worker": result["worker"], "host": result["host"], "pid": result["pid"],
        "fasthess_version": fasthess_version(),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def flatten(record: dict, arrays: dict | None) -> dict:
    """One flat dict per record: config keys, status, scalars, time_*, arrays."""
    flat = {"key": record["key"], "status": record["status"], "error": record["error"]}
    flat.update(record["config"])
    flat["measure"] = record["measure"]
    flat.update(record["scalars"])
    flat.update({f"time_{k[:-2] if k.endswith('_s') else k}": v
                 for k, v in record["timings"].items()})
    flat.update(worker=record["worker"], host=record["host"], pid=record["pid"],
                traceback=record["traceback"])
    if arrays is not None:
        flat.update(arrays)
    return flat


def _checksum(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "checksum"}
    return hashlib.sha256(canonical_json(body).encode("ascii")).hexdigest()


def _pretty_json(obj) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode("utf-8")


def _read_regular(path: Path) -> bytes:
    """The bytes of a regular file, never through a symbolic link."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise DamagedRecordError(f"{path} is a symbolic link (not followed)")
    if not stat.S_ISREG(info.st_mode):
        raise DamagedRecordError(f"{path} is not a regular file")
    # O_NOFOLLOW: a link swapped in after the lstat is refused too
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _atomic_write(path: Path, data: bytes, sync_dir: bool = True, named=None) -> None:
    """:func:`fasthess._io.atomic_write` of ``data``; an OSError names ``named`` (default
    ``path``), not the temporary file it was writing."""
    try:
        _io.atomic_write(path, lambda f: f.write(data), sync_dir=sync_dir)
    except OSError as exc:
        if exc.errno is None:
            raise
        raise type(exc)(exc.errno, exc.strerror, str(named or path)) from None


def _create_exclusive(path: Path, data: bytes) -> bool:
    """Write ``path`` whole, only if it does not exist yet; False if it did."""
    tmp = path.parent / f"{_io.TMP_PREFIX}{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    _atomic_write(tmp, data, sync_dir=False, named=path)
    try:
        os.link(tmp, path)  # atomic, and fails if path exists: no reader sees half of it
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: exclusive create, then write
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            return False
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:  # never leave half of it
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return True


class Store:
    """A sweep store directory (see the module docstring for its layout).

    Parameters
    ----------
    path : str or path
        The directory.
    create : bool
        Create the store if it does not exist yet (and remove stale temporaries).

    Raises
    ------
    FileNotFoundError
        ``create=False`` and ``path`` holds no store.
    ValueError
        ``path`` is a directory that is not a store, or a part of the store is a
        symbolic link.
    StoreVersionError
        The store was written by another store format version.
    OSError
        The store cannot be created (read-only, a regular file in the way, disk
        full); nothing half-made is left.
    """

    def __init__(self, path, create: bool):
        self.path = Path(path)
        self.records = self.path / "records"
        self.claims_dir = self.path / "claims"
        self.manifest = self.path / "manifest.json"
        if create:
            self._create()
        elif not self._exists(self.manifest):
            raise FileNotFoundError(f"store: {self.path} is not a fasthess sweep store "
                                    f"(no manifest.json)")
        self._check_manifest()
        for directory in (self.records, self.claims_dir):
            if self._exists(directory) and not directory.is_dir():
                raise ValueError(f"store: {directory} is not a directory")
            if create:
                directory.mkdir(exist_ok=True)
        if create:
            self._remove_stale_temporaries()

    @staticmethod
    def _exists(path: Path) -> bool:
        """Whether ``path`` exists; a symbolic link in the store is refused."""
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return False
        if stat.S_ISLNK(info.st_mode):
            raise ValueError(f"store: {path} is a symbolic link; a store's files are its "
                             f"own and links are not followed")
        return True

    def _create(self):
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory",
                                     str(self.path))
        made = []  # directories made here, removed again if the store cannot be made
        missing = self.path
        while not missing.exists() and missing != missing.parent:
            made.append(missing)
            missing = missing.parent
        try:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except (NotADirectoryError, FileExistsError):
                in_the_way = next((p for p in self.path.parents
                                   if p.exists() and not p.is_dir()), self.path)
                raise NotADirectoryError(errno.ENOTDIR, f"{in_the_way} is a file, not a "
                                         f"directory", str(self.path)) from None
            if self._exists(self.manifest):
                return
            # a directory holding only temporaries is a store being created by another
            # process (the manifest is its first file): not "someone else's directory"
            others = [p.name for p in self.path.iterdir()
                      if not p.name.startswith(_io.TMP_PREFIX)]
            # ... or one that another process has just finished creating
            if others and not self._exists(self.manifest):
                raise ValueError(f"store: {self.path} exists, is not empty and has no "
                                 f"manifest.json; it is not a fasthess sweep store (give a "
                                 f"new or empty directory)")
            if others:
                return
            body = {"kind": _STORE_KIND, "format_version": FORMAT_VERSION,
                    "created_by": f"fasthess {fasthess_version()}"}
            _create_exclusive(self.manifest, _pretty_json(body))  # False: another won
        except BaseException:
            for directory in made:  # innermost first; only if still empty
                with contextlib.suppress(OSError):
                    directory.rmdir()
            raise

    def _check_manifest(self):
        try:
            body = json.loads(_read_regular(self.manifest))
        except (OSError, ValueError) as exc:
            raise ValueError(f"store: cannot read {self.manifest}: {exc}") from None
        if not isinstance(body, dict) or body.get("kind") != _STORE_KIND:
            raise ValueError(f"store: {self.manifest} is not a fasthess sweep store manifest")
        version = body.get("format_version")
        if version != FORMAT_VERSION:
            raise StoreVersionError(
                f"store: {self.path} was written with store format version {version} "
                f"({body.get('created_by', 'unknown fasthess')}); this fasthess "
                f"({fasthess_version()}) reads and writes format version {FORMAT_VERSION}. "
                f"Use a new store directory, or the fasthess version that wrote this one")

    def _remove_stale_temporaries(self):
        now = time.time()
        for directory in (self.path, self.records, self.claims_dir):
            for tmp in directory.glob(f"{_io.TMP_PREFIX}*"):
                with contextlib.suppress(OSError):
                    if now - tmp.lstat().st_mtime > _config.STALE_TMP_SECONDS:
                        tmp.unlink()

    # ------------------------------------------------------------------ records
    def record_path(self, key: str) -> Path:
        """The JSON file of the record of ``key``."""
        return self.records / f"{key}.json"

    def write(self, record: dict, arrays: dict) -> None:
        """Write a record: arrays first, then the JSON that makes the record exist.

        The record gets its checksums here. If a write fails (disk full, say),
        nothing of this record is left: no temporary, no arrays without their JSON.
        """
        key = record["key"]
        npz = self.records / f"{key}.npz"
        record = dict(record, arrays_sha256=None)
        if arrays:
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)
            data = buffer.getvalue()
            record["arrays_sha256"] = hashlib.sha256(data).hexdigest()
            # one directory fsync, after the JSON, covers both renames (same directory)
            _atomic_write(npz, data, sync_dir=False)
        record["checksum"] = _checksum(record)
        try:
            _atomic_write(self.record_path(key), _pretty_json(record))
        except BaseException:
            if arrays:
                with contextlib.suppress(OSError):
                    npz.unlink()
            raise
        if not arrays:  # arrays of an earlier (damaged) record of this key
            with contextlib.suppress(FileNotFoundError):
                npz.unlink()

    def scan(self):
        """``(keys, strays)``: the keys with a record file, and the other files.

        Temporaries (a write in progress) and ``.npz`` files without their JSON (a
        write that was interrupted) are neither.
        """
        keys, strays = [], []
        try:
            entries = sorted(os.scandir(self.records), key=lambda e: e.name)
        except FileNotFoundError:
            return keys, strays
        for entry in entries:
            name = entry.name
            if name.startswith(_io.TMP_PREFIX):
                continue
            stem, _, suffix = name.rpartition(".")
            if suffix == "json" and _KEY_RE.match(stem):
                keys.append(stem)
            elif not (suffix == "npz" and _KEY_RE.match(stem)):
                strays.append(self.records / name)
        return keys, strays

    def read(self, key: str, arrays: bool = True):
        """``(record, arrays)`` of ``key``; arrays is None unless asked for.

        Raises
        ------
        FileNotFoundError
            There is no record of ``key``.
        DamagedRecordError
            The record is not whole (the message names the file and what is wrong).
        """
        path = self.record_path(key)
        try:
            raw = _read_regular(path)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise DamagedRecordError(f"{path} cannot be read: {exc.strerror or exc}") from None
        try:
            record = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise DamagedRecordError(f"{path} is not valid JSON ({exc})") from None
        if not isinstance(record, dict):
            raise DamagedRecordError(f"{path} holds a JSON {type(record).__name__}, not a "
                                     f"record")
        if record.get("checksum") != _checksum(record):
            raise DamagedRecordError(f"{path} does not match its checksum (edited, or not "
                                     f"written by fasthess)")
        missing = [f for f in _FIELDS if f not in record]
        if missing:
            raise DamagedRecordError(f"{path} lacks the fields {missing}")
        try:
            own_key = key_of(record["config"], record["measure"])
        except (TypeError, ValueError):
            own_key = None
        if record["key"] != key or own_key != key:
            raise DamagedRecordError(f"{path} holds the record of another configuration "
                                     f"(key {own_key})")
        if record["status"] not in ("ok", "failed"):
            raise DamagedRecordError(f"{path} has status {record['status']!r}")
        loaded = self._read_arrays(key, record)  # checked even when not returned
        return record, (loaded if arrays else None)

    def _read_arrays(self, key, record) -> dict:
        if not record["arrays"]:
            return {}
        npz = self.records / f"{key}.npz"
        try:
            raw = _read_regular(npz)
        except OSError as exc:
            raise DamagedRecordError(f"{npz}, the arrays of {self.record_path(key)}, cannot "
                                     f"be read: {exc.strerror or exc}") from None
        except DamagedRecordError as exc:
            raise DamagedRecordError(f"{exc}: the arrays of {self.record_path(key)}") from None
        if hashlib.sha256(raw).hexdigest() != record["arrays_sha256"]:
            raise DamagedRecordError(f"{npz} does not match the checksum in "
                                     f"{self.record_path(key)} (changed or truncated)")
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            return {name: data[name] for name in record["arrays"]}

    def state(self, key: str):
        """``(status, reason)``: ``status`` is "ok", "failed", None (no record) or
        "damaged", and ``reason`` says what is wrong with a damaged record."""
        try:
            record, _ = self.read(key, arrays=False)
        except FileNotFoundError:
            return None, None
        except DamagedRecordError as exc:
            return "damaged", str(exc)
        return record["status"], None

    def claims(self):
        """A :class:`Claims` of this store for one sweep (use it as a context manager)."""
        return Claims(self.claims_dir)


class Claims:
    """The keys one sweep is running, claimed so that concurrent sweeps skip them.

    Use it as a context manager: entering takes this sweep's owner lock, leaving
    releases every claim still held and the lock. See the module docstring.

    Parameters
    ----------
    directory : Path
        The store's ``claims/``.
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.owner = uuid.uuid4().hex
        self.held = set()
        self.enabled = fcntl is not None
        self._lock_fd = None

    def __enter__(self):
        if not self.enabled:
            return self
        # locked under a temporary name, then renamed: a lock file visible under its
        # final name is always locked while its owner lives
        tmp = self.directory / f"{_io.TMP_PREFIX}{self.owner}.owner"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:  # a file system without locks (ENOLCK, ENOTSUP, ...)
            os.close(fd)
            os.unlink(tmp)
            if exc.errno in (errno.EBADF, errno.EINTR):
                raise
            self.enabled = False  # no claims: duplicates are harmless, only wasted work
            return self
        os.replace(tmp, self._owner_path(self.owner))
        self._lock_fd = fd
        self._remove_dead_owners()
        return self

    def __exit__(self, *exc):
        for key in list(self.held):
            self.release(key)
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._owner_path(self.owner))
            os.close(self._lock_fd)  # drops the lock
            self._lock_fd = None
        return False

    def _owner_path(self, owner: str) -> Path:
        return self.directory / f"{owner}.owner"

    def _claim_path(self, key: str) -> Path:
        return self.directory / f"{key}.claim"

    def _alive(self, owner: str) -> bool:
        """Whether the sweep ``owner`` still runs: its lock is held."""
        if not _KEY_RE.match(owner):  # an owner id has the form of a key
            return False
        try:
            fd = os.open(self._owner_path(owner), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:  # its owner file is gone: it ended
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def _remove_dead_owners(self):
        for path in self.directory.glob("*.owner"):
            owner = path.stem
            if owner != self.owner and not self._alive(owner):
                with contextlib.suppress(OSError):
                    path.unlink()

    def _owner_of(self, key: str):
        try:
            return _read_regular(self._claim_path(key)).decode("ascii", "replace").strip()
        except FileNotFoundError:
            return None
        except (OSError, DamagedRecordError):
            return ""

    def claim(self, key: str) -> bool:
        """Claim ``key`` for this sweep: False if a live sweep holds it."""
        if not self.enabled:
            return True
        path = self._claim_path(key)
        if key in self.held:
            return True
        if _create_exclusive(path, self.owner.encode("ascii")):
            self.held.add(key)
            return True
        if self._alive(self._owner_of(key) or ""):
            return False
        # stale: take it over, one sweep at a time (the lock serialises takeovers, and
        # the claim is read again under it: another sweep may have taken it over first)
        fd = os.open(self.directory / "takeover.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            owner = self._owner_of(key)
            if owner is not None and self._alive(owner):
                return False
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            if not _create_exclusive(path, self.owner.encode("ascii")):
                return False
        finally:
            os.close(fd)
        self.held.add(key)
        return True

    def release(self, key: str) -> None:
        """Give ``key`` up (its record is written, or this sweep stops)."""
        if key in self.held:
            self.held.discard(key)
            with contextlib.suppress(FileNotFoundError):
                self._claim_path(key).unlink()


def load_sweep(store, arrays: bool = True, as_frame: bool = False, *, on_damaged="warn"):
    """The records of a sweep store, one flat dict per configuration.

    Parameters
    ----------
    store : str or path
        A directory written by :func:`fasthess.sweeps.sweep`.
    arrays : bool, default True
        Load the arrays (eigenvalues, densities, loss curves) too.
    as_frame : bool, default False
        Return a pandas DataFrame (pandas must be installed).
    on_damaged : {"warn", "raise"}, default "warn"
        What to do with a file of ``records/`` that is not a whole record (see
        :mod:`fasthess.sweeps.store`): skip it, with one
        :class:`DamagedRecordWarning` that lists every skipped file and why, or
        raise :class:`DamagedRecordError` naming the first one.

    Returns
    -------
    list of dict (or DataFrame)
        Keys: ``key``, ``status`` ("ok" or "failed"), ``error``, the configuration
        (``activation``, ``n_in``, ``n_hidden``, ``n_out``, ``n_samples`` as given,
        ``seed``, measure parameters), ``measure``, scalars (``D``, ``P`` and the
        measures' own: ``rank``, ``effective_parameters``, ...), ``time_<part>``
        seconds, ``worker``, ``host``, ``pid``, ``traceback`` and the arrays by name.
        Sorted by key.

    Raises
    ------
    StoreVersionError
        If the store was written by another store format version.
    DamagedRecordError
        With ``on_damaged="raise"``, if a file in ``records/`` is not a whole record.

    Examples
    --------
    >>> import shutil, tempfile
    >>> from distributed import Client
    >>> from fasthess.sweeps import load_sweep, sweep
    >>> def n_rows(net, X, seed):
    ...     return {"n_rows": X.shape[0]}
    >>> store = tempfile.mkdtemp()
    >>> with Client(processes=False, n_workers=1, threads_per_worker=1,
    ...             dashboard_address=":0") as client:
    ...     _ = sweep([{"activation": "erf", "n": 2, "seed": s} for s in range(3)], n_rows,
    ...               store, client=client, progress=False)
    >>> records = load_sweep(store)
    >>> [(r["status"], r["seed"], r["n_rows"], r["D"]) for r in sorted(records,
    ...                                                              key=lambda r: r["seed"])]
    [('ok', 0, 12, 6), ('ok', 1, 12, 6), ('ok', 2, 12, 6)]
    >>> shutil.rmtree(store)
    """
    if on_damaged not in ("warn", "raise"):
        raise ValueError(f"on_damaged must be 'warn' or 'raise', got {on_damaged!r}")
    if as_frame:
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError(f"load_sweep(as_frame=True) needs pandas (pip install "
                              f"pandas); importing it failed: {exc}") from exc
    st = Store(store, create=False)
    keys, strays = st.scan()
    damaged = [f"{p} is not a record (records are <32 hex digits>.json)" for p in strays]
    if strays and on_damaged == "raise":
        raise DamagedRecordError(damaged[0])
    rows = []
    for key in keys:
        try:
            rows.append(flatten(*st.read(key, arrays=arrays)))
        except FileNotFoundError:  # removed while we read the store
            continue
        except DamagedRecordError as exc:
            if on_damaged == "raise":
                raise
            damaged.append(str(exc))
    if damaged:
        warnings.warn(f"load_sweep: skipped {len(damaged)} damaged file(s) of the store "
                      f"{st.path}: " + "; ".join(damaged), DamagedRecordWarning, stacklevel=2)
    return pd.DataFrame(rows) if as_frame else rows
