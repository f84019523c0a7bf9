"""Machine resources: available memory (refuse before allocating) and threads."""
from __future__ import annotations

import contextlib
import math
import os

__all__ = ["available_memory", "memory_limit", "format_bytes", "check_fits", "set_num_threads",
           "get_num_threads", "threads", "ComputeThreads", "threads_for_work"]


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
    _explicit[0] = True  # a thread count the user chose is used as given (reproducible)


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
    old, old_explicit = numba.get_num_threads(), _explicit[0]
    numba.set_num_threads(n)
    _explicit[0] = True
    try:
        with threadpool_limits(limits=n, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(old)
        _explicit[0] = old_explicit


def _check_threads(n, name="n") -> int:
    """An int >= 1, capped at Numba's thread pool (the cores): more would oversubscribe."""
    import numba

    from ._validation import check_int

    return min(check_int(n, name, minimum=1), numba.config.NUMBA_NUM_THREADS)


def apply_env_threads() -> None:
    """``FASTHESS_NUM_THREADS``, if set: what :func:`set_num_threads` does with it."""
    n = os.environ.get("FASTHESS_NUM_THREADS")
    if n:
        try:
            value = int(n)
        except ValueError:
            raise ValueError(f"FASTHESS_NUM_THREADS must be an integer >= 1, got {n!r}") from None
        set_num_threads(_check_threads(value, "FASTHESS_NUM_THREADS"))


# ------------------------------------------------------- threads of one computation
_blas_pools_cache: tuple | None = None
# Whether the user chose the thread count (then the load does not change it).
_explicit = [False]


def blas_pools() -> tuple:
    """threadpoolctl controllers of every BLAS library loaded (NumPy's and SciPy's
    wheels each load their own OpenBLAS), found once: scanning the loaded libraries
    costs milliseconds, setting a pool's thread count microseconds."""
    global _blas_pools_cache
    if _blas_pools_cache is None:
        import scipy.linalg.blas  # noqa: F401  (load SciPy's BLAS before the scan)
        from threadpoolctl import ThreadpoolController

        _blas_pools_cache = tuple(lib for lib in ThreadpoolController().lib_controllers
                                  if lib.user_api == "blas")
    return _blas_pools_cache


def threads_for_work(macs_per_call: float, budget: int) -> int:
    """Threads for BLAS calls of ``macs_per_call`` multiply-adds each, at most ``budget``.

    Each thread gets at least ``_config.MIN_MACS_PER_THREAD``: below that, waking and
    joining threads costs more than it saves. And, unless the user chose the thread
    count (:func:`set_num_threads`, :func:`threads`, ``FASTHESS_NUM_THREADS``), only
    cores that no other work is running on right now are used (:func:`idle_cores`):
    on a busy machine a BLAS thread that shares its core is descheduled for whole
    time slices while the others wait for it at every synchronisation (measured: 4x,
    at worst 17x slower than one thread at N = 30 beside a busy loop), as
    ``OMP_DYNAMIC`` does for OpenMP. A chosen count is used as given, so that results
    are bit-identical from run to run whatever the load (BLAS sums in another order
    on another thread count).
    """
    from . import _config

    n = int(max(1, min(budget, macs_per_call // _config.MIN_MACS_PER_THREAD)))
    return n if n == 1 or _explicit[0] else max(1, min(n, idle_cores()))


_idle_cache = [-1.0, 1]  # (monotonic time read, idle cores)
_own_spinning = [-1.0, 0]  # (monotonic end of our last multi-threaded BLAS work, its workers)


def idle_cores() -> int:
    """Cores of this process's affinity that no other runnable task occupies now.

    Linux's /proc/loadavg counts the runnable tasks at this instant; this process
    is one, and so are its own BLAS workers still spinning after a recent call (they
    yield to real work), which are not counted against the cores. Read at most once
    per ``_config.IDLE_CHECK_SECONDS``. Elsewhere (no /proc): all cores.
    """
    import time

    from . import _config

    now = time.monotonic()
    if now - _idle_cache[0] < _config.IDLE_CHECK_SECONDS:
        return _idle_cache[1]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    try:
        with open("/proc/loadavg", "rb") as f:
            running = int(f.read().split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        running = 1
    own = _own_spinning[1] if now - _own_spinning[0] < _config.BLAS_SPIN_SECONDS else 0
    idle = max(1, cores - max(0, running - 1 - own))
    _idle_cache[:] = [now, idle]
    return idle


class ComputeThreads:
    """Context manager for the threads of one fasthess computation.

    Inside: Numba kernels run on the calling thread only, and every BLAS pool on
    one thread until :meth:`blas` allows more. On exit every setting is restored.
    The budget is the thread setting on entry (:func:`get_num_threads`); a pool is
    never given more threads than it had (a caller's threadpoolctl limit holds).

    Why: Numba's OpenMP workers and each BLAS library's workers keep spinning on
    the cores for a while after their last task (OpenBLAS ~0.1 s). Two pools
    taking turns then compete for the same cores; with one pool working at a time
    and the memory-bound Numba passes on the calling thread, they never do. No
    environment variable or lasting setting is changed.

    Examples
    --------
    >>> from fasthess._resources import ComputeThreads
    >>> with ComputeThreads() as scope:
    ...     n = scope.blas(scope.budget)  # BLAS may now use the whole budget
    >>> n >= 1
    True
    """

    def __init__(self):
        self.budget = 1
        self._numba_before = 1
        self._pools: list = []

    def __enter__(self) -> "ComputeThreads":
        import numba

        self.budget = self._numba_before = numba.get_num_threads()
        if self._numba_before != 1:
            numba.set_num_threads(1)
        self._pools = []
        for lib in blas_pools():
            before = lib.get_num_threads()
            if before is not None:
                self._pools.append([lib, before, before])
        self.blas(1)
        return self

    def blas(self, n: int) -> int:
        """Let every BLAS pool use up to ``n`` threads (capped by what it had); returns
        the largest count set."""
        used = 1
        for entry in self._pools:
            lib, before, current = entry
            target = max(1, min(int(n), before))
            if target != current:
                lib.set_num_threads(target)
                entry[2] = target
            used = max(used, target)
        return used

    def __exit__(self, *exc) -> None:
        import time

        import numba

        used = max((current for _, _, current in self._pools), default=1)
        if used > 1:  # its workers spin a while yet: idle_cores does not count them
            _own_spinning[:] = [time.monotonic(), used - 1]
        for lib, before, current in self._pools:
            if current != before:
                lib.set_num_threads(before)
        self._pools = []
        if self._numba_before != 1:
            numba.set_num_threads(self._numba_before)
