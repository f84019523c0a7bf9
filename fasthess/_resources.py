"""Machine resources: available memory (refuse before allocating) and threads."""
from __future__ import annotations

import contextlib
import math
import os

__all__ = ["available_memory", "memory_limit", "format_bytes", "check_fits", "set_num_threads", "get_num_threads", "threads"]


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


def check_fits(n_bytes: int, what: str, alternative: str) -> None:
    """Raise MemoryError before allocating ``n_bytes`` if they will not fit."""
    avail = available_memory()
    if n_bytes > avail:
        raise MemoryError(
            f"{what} needs {n_bytes:,} bytes ({format_bytes(n_bytes)}) but only "
            f"{avail:,} bytes ({format_bytes(avail)}) are available; {alternative}")


# ---------------------------------------------------------------------- threads
def set_num_threads(n: int) -> None:
    """Use ``n`` threads for Numba kernels and BLAS together.

    The environment variable ``FASTHESS_NUM_THREADS`` sets the default at import
    of the first kernel-using call. Numba and BLAS never run concurrently in
    fasthess (BLAS is never called inside prange), so n threads total is n cores.

    Parameters
    ----------
    n : int
        Threads, >= 1; capped at the cores (Numba's thread pool), since more would
        oversubscribe them.

    See Also
    --------
    threads : The same for one block of code.

    Examples
    --------
    >>> import fasthess as fh
    >>> before = fh.get_num_threads()
    >>> fh.set_num_threads(1)
    >>> fh.get_num_threads()
    1
    >>> fh.set_num_threads(before)
    """
    import numba
    from threadpoolctl import threadpool_limits

    n = _check_threads(n)
    numba.set_num_threads(n)
    threadpool_limits(limits=n, user_api="blas")  # takes effect now, until changed again


def get_num_threads() -> int:
    """Return the number of threads fasthess kernels use.

    Returns
    -------
    int
        Numba's current thread count (BLAS is set to the same by
        :func:`set_num_threads`).

    Examples
    --------
    >>> import fasthess as fh
    >>> with fh.threads(1):
    ...     fh.get_num_threads()
    1
    """
    import numba

    return numba.get_num_threads()


@contextlib.contextmanager
def threads(n: int):
    """Run a block with ``n`` threads for Numba and BLAS (a context manager).

    The previous settings come back when the block ends, also on an exception.

    Parameters
    ----------
    n : int
        Threads, >= 1; capped at the cores.

    Yields
    ------
    None
        The block runs with ``n`` threads.

    Examples
    --------
    >>> import fasthess as fh
    >>> net = fh.TwoLayerNet.random(4, 3, rng=0); X = fh.gaussian_inputs(30, 4, rng=1)
    >>> with fh.threads(1):
    ...     H = fh.hessian(net, X)
    >>> H.shape
    (15, 15)
    """
    import numba
    from threadpoolctl import threadpool_limits

    n = _check_threads(n)
    old = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        with threadpool_limits(limits=n, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(old)


def _check_threads(n, name="n") -> int:
    """An int >= 1, capped at Numba's thread pool (the cores): more would oversubscribe."""
    import numba

    from ._validation import check_int

    return min(check_int(n, name, minimum=1), numba.config.NUMBA_NUM_THREADS)


def apply_env_threads() -> None:
    n = os.environ.get("FASTHESS_NUM_THREADS")
    if n:
        try:
            value = int(n)
        except ValueError:
            raise ValueError(f"FASTHESS_NUM_THREADS must be an integer >= 1, got {n!r}") from None
        set_num_threads(_check_threads(value, "FASTHESS_NUM_THREADS"))
