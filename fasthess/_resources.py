"""Machine resources: available memory (refuse before allocating). Threads: :mod:`fasthess._runtime`."""
from __future__ import annotations

import math
import os

from . import _config

__all__ = ["available_memory", "memory_limit", "format_bytes", "check_fits"]


def available_memory() -> int:
    """Bytes of memory available to a new allocation, capped by FASTHESS_MEMORY_LIMIT.

    psutil reads it on every platform (Linux's MemAvailable, macOS and Windows
    alike). ``FASTHESS_MEMORY_LIMIT`` (bytes; ``inf`` means no cap) lowers it, e.g.
    to share a node.
    """
    import psutil

    avail = int(psutil.virtual_memory().available)
    limit = memory_limit()
    return avail if limit is None else min(avail, limit)


def memory_limit() -> int | None:
    """FASTHESS_MEMORY_LIMIT in bytes, or None when it is unset or infinite."""
    raw = os.environ.get("FASTHESS_MEMORY_LIMIT")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if math.isnan(value) or value < 0:
        raise ValueError(f"FASTHESS_MEMORY_LIMIT must be a number of bytes >= 0 (or inf), "
                         f"got {raw!r}")
    return None if math.isinf(value) else int(value)


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n} B"


def check_fits(n_bytes: int, what, alternative: str) -> None:
    """Raise MemoryError before allocating ``n_bytes`` if they will not fit.

    ``what`` names the allocation: a str, or a callable returning it (formatted only
    when the request is refused).

    FASTHESS_MEMORY_LIMIT is always applied; the system's available memory is read
    (~50 us through psutil) only for requests above ``_config.MEMORY_CHECK_FLOOR``,
    so small problems, which sweeps call thousands of times, do not pay for it.
    """
    limit = memory_limit()
    if n_bytes <= _config.MEMORY_CHECK_FLOOR and (limit is None or n_bytes <= limit):
        return
    avail = available_memory()
    if n_bytes > avail:
        what = what() if callable(what) else what
        raise MemoryError(
            f"{what} needs {n_bytes:,} bytes ({format_bytes(n_bytes)}) but only "
            f"{avail:,} bytes ({format_bytes(avail)}) are available; {alternative}")
