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
one being created. Concurrent sweeps on one store claim keys
(:mod:`fasthess.sweeps.claims`) so as not to redo each other's work.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import stat
import time
import warnings
from pathlib import Path

import numpy as np

from .. import _config, _io
from . import records
from .claims import Claims
from .files import DamagedRecordError, atomic_write_bytes, create_exclusive, read_regular
from .records import (FORMAT_VERSION, canonical_json, fasthess_version, flatten, key_of,
                      make_record, pretty_json, record_checksum, record_key)

__all__ = ["FORMAT_VERSION", "StoreVersionError", "DamagedRecordError",
           "DamagedRecordWarning", "Store", "Claims", "load_sweep", "record_key", "key_of",
           "canonical_json", "make_record", "flatten", "fasthess_version"]  # some re-exported

_STORE_KIND = "fasthess-sweep-store"
_KEY_RE = re.compile(r"^[0-9a-f]{32}$")


class StoreVersionError(ValueError):
    """The store was written by another store format version."""


class DamagedRecordWarning(UserWarning):
    """:func:`load_sweep` skipped damaged files of a store (the message lists them)."""


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
            body = {"kind": _STORE_KIND, "format_version": records.FORMAT_VERSION,
                    "created_by": f"fasthess {fasthess_version()}"}
            create_exclusive(self.manifest, pretty_json(body))  # False: another won
        except BaseException:
            for directory in made:  # innermost first; only if still empty
                with contextlib.suppress(OSError):
                    directory.rmdir()
            raise

    def _check_manifest(self):
        try:
            body = json.loads(read_regular(self.manifest))
        except (OSError, ValueError) as exc:
            raise ValueError(f"store: cannot read {self.manifest}: {exc}") from None
        if not isinstance(body, dict) or body.get("kind") != _STORE_KIND:
            raise ValueError(f"store: {self.manifest} is not a fasthess sweep store manifest")
        version = body.get("format_version")
        if version != records.FORMAT_VERSION:
            raise StoreVersionError(
                f"store: {self.path} was written with store format version {version} "
                f"({body.get('created_by', 'unknown fasthess')}); this fasthess "
                f"({fasthess_version()}) reads and writes format version {records.FORMAT_VERSION}. "
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
            atomic_write_bytes(npz, data, sync_dir=False)
        record["checksum"] = record_checksum(record)
        try:
            atomic_write_bytes(self.record_path(key), pretty_json(record))
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
            raw = read_regular(path)
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
        if record.get("checksum") != record_checksum(record):
            raise DamagedRecordError(f"{path} does not match its checksum (edited, or not "
                                     f"written by fasthess)")
        missing = [f for f in records.FIELDS if f not in record]
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
            raw = read_regular(npz)
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
