"""What a sweep record holds: its key, its fields, its checksum.

A record's key is a hash of the canonical JSON of (configuration with defaults
filled in, measure names, :data:`FORMAT_VERSION`); :mod:`fasthess.sweeps.store`
writes and reads records on disk.
"""
from __future__ import annotations

import datetime
import hashlib
import json

from .configuration import check_measures, normalize_config

__all__ = ["FORMAT_VERSION", "FIELDS", "canonical_json", "key_of", "record_key",
           "fasthess_version", "make_record", "flatten", "record_checksum", "pretty_json"]

#: Version of the store layout and record schema; part of every key.
FORMAT_VERSION = 2
# every field make_record writes, checked before a record is used
FIELDS = ("format_version", "key", "config", "measure", "status", "error", "traceback",
           "scalars", "arrays", "arrays_sha256", "timings", "worker", "host", "pid",
           "checksum")


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


def record_checksum(record: dict) -> str:
    """SHA-256 of the canonical JSON of ``record`` without its own ``checksum`` field."""
    body = {k: v for k, v in record.items() if k != "checksum"}
    return hashlib.sha256(canonical_json(body).encode("ascii")).hexdigest()


def pretty_json(obj) -> bytes:
    """``obj`` as indented, sorted JSON bytes: how the store writes manifests and records."""
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode("utf-8")
