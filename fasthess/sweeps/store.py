"""The store: a directory holding one record per configuration of a sweep.

A store is a directory with ``manifest.json`` (the store format version) and
``records/``, holding per configuration ``<key>.json`` (config, measures, status
"ok" or "failed", error message and traceback, scalars, timings, worker, host, pid)
and, when there are arrays, ``<key>.npz``. The key is a hash of the canonical JSON
of (configuration with defaults filled in, measure names, format version). Each
file is written to a temporary file in the same directory, fsynced, then renamed
over its final name, the ``.npz`` before the ``.json``: a record exists exactly when
its ``.json`` does, and is then complete. A store of another format version is
refused.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from .. import _config, _io
from .configuration import check_measures, normalize_config

__all__ = ["FORMAT_VERSION", "StoreVersionError", "Store", "load_sweep", "record_key",
           "key_of", "canonical_json", "make_record", "flatten", "fasthess_version"]

#: Version of the store layout and record schema; part of every key.
FORMAT_VERSION = 1
_STORE_KIND = "fasthess-sweep-store"


class StoreVersionError(ValueError):
    """The store was written by another store format version."""


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


def _pretty_json(obj) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode("utf-8")


class Store:
    """A sweep store directory: ``manifest.json`` + ``records/<key>.json|.npz``.

    Parameters
    ----------
    path : str or path
        The directory.
    create : bool
        Create the store if it does not exist (and remove stale temporaries).
    """

    def __init__(self, path, create: bool):
        self.path = Path(path)
        self.records = self.path / "records"
        manifest = self.path / "manifest.json"
        if manifest.exists():
            self._check_manifest(manifest)
        elif not create:
            raise FileNotFoundError(f"store: {self.path} is not a fasthess sweep store "
                                    f"(no manifest.json)")
        elif self.path.exists() and any(self.path.iterdir()):
            raise ValueError(f"store: {self.path} exists, is not empty and has no "
                             f"manifest.json; it is not a fasthess sweep store (give a new "
                             f"or empty directory)")
        else:
            self.records.mkdir(parents=True, exist_ok=True)
            body = {"kind": _STORE_KIND, "format_version": FORMAT_VERSION,
                    "created_by": f"fasthess {fasthess_version()}"}
            _io.atomic_write(manifest, lambda f: f.write(_pretty_json(body)))
        if create:
            self._remove_stale_temporaries()

    def _check_manifest(self, manifest: Path):
        try:
            body = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"store: cannot read {manifest}: {exc}") from None
        if not isinstance(body, dict) or body.get("kind") != _STORE_KIND:
            raise ValueError(f"store: {manifest} is not a fasthess sweep store manifest")
        version = body.get("format_version")
        if version != FORMAT_VERSION:
            raise StoreVersionError(
                f"store: {self.path} was written with store format version {version} "
                f"({body.get('created_by', 'unknown fasthess')}); this fasthess "
                f"({fasthess_version()}) reads and writes format version {FORMAT_VERSION}. "
                f"Use a new store directory, or the fasthess version that wrote this one")
        self.records.mkdir(exist_ok=True)

    def _remove_stale_temporaries(self):
        now = time.time()
        for tmp in self.records.glob(f"{_io.TMP_PREFIX}*"):
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime > _config.STALE_TMP_SECONDS:
                    tmp.unlink()

    def has(self, key: str) -> bool:
        """Whether the record of ``key`` exists."""
        return (self.records / f"{key}.json").exists()

    def write(self, record: dict, arrays: dict) -> None:
        """Write a record: arrays first, then the JSON that makes the record exist."""
        key = record["key"]
        if arrays:
            # one directory fsync, after the JSON, covers both renames (same directory)
            _io.atomic_write(self.records / f"{key}.npz", lambda f: np.savez(f, **arrays),
                             sync_dir=False)
        _io.atomic_write(self.records / f"{key}.json", lambda f: f.write(_pretty_json(record)))

    def keys(self):
        """The keys of the records, sorted."""
        return sorted(p.stem for p in self.records.glob("*.json")
                      if not p.name.startswith(_io.TMP_PREFIX))

    def read(self, key: str, arrays: bool = True):
        """``(record, arrays)`` of ``key``; arrays is None unless asked for."""
        record = json.loads((self.records / f"{key}.json").read_text(encoding="utf-8"))
        loaded = None
        if arrays:
            loaded = {}
            if record["arrays"]:
                with np.load(self.records / f"{key}.npz", allow_pickle=False) as npz:
                    loaded = {name: npz[name] for name in record["arrays"]}
        return record, loaded


def load_sweep(store, arrays: bool = True, as_frame: bool = False):
    """The records of a sweep store, one flat dict per configuration.

    Parameters
    ----------
    store : str or path
        A directory written by :func:`fasthess.sweeps.sweep`.
    arrays : bool, default True
        Load the arrays (eigenvalues, densities, loss curves) too.
    as_frame : bool, default False
        Return a pandas DataFrame (pandas must be installed).

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
    """
    if as_frame:
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError(f"load_sweep(as_frame=True) needs pandas (pip install "
                              f"pandas); importing it failed: {exc}") from exc
    st = Store(store, create=False)
    rows = [flatten(*st.read(k, arrays=arrays)) for k in st.keys()]
    return pd.DataFrame(rows) if as_frame else rows
