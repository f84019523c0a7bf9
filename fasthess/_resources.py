"""Machine resources: available memory (refuse before allocating) and threads."""
from __future__ import annotations

import contextlib
import math
import os
import threading

from . import _config

__all__ = ["available_memory", "memory_limit", "format_bytes", "check_fits", "set_num_threads",
           "get_num_threads", "threads", "ComputeThreads", "compute_budget", "planned_threads",
           "pieces_for", "run_pieces"]


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


class _BlasPool:
    """Get and set the thread count of one loaded BLAS library.

    OpenBLAS built on pthreads (NumPy's and SciPy's wheels): its own
    ``openblas_get/set_num_threads`` through ctypes, 0.2 us a call; threadpoolctl's
    controller takes ~1 us and keeps a "controlling thread" that must be released
    after each use. Other libraries, or an OpenBLAS whose functions are not found:
    the controller, ``direct`` False.
    """

    def __init__(self, controller):
        self.controller = controller
        find = getattr(controller, "_get_symbol", None)  # the library's affixed names
        calls = None
        if (find is not None and getattr(controller, "internal_api", None) == "openblas"
                and getattr(controller, "threading_layer", None) == "pthreads"):
            calls = find("openblas_get_num_threads"), find("openblas_set_num_threads")
        self.direct = calls is not None and None not in calls
        if self.direct:
            self.get, self.set = calls
        else:
            self.get, self.set = controller.get_num_threads, controller.set_num_threads


def blas_pools() -> tuple:
    """Every BLAS library loaded (NumPy's and SciPy's wheels each load their own
    OpenBLAS), as :class:`_BlasPool`, found once: scanning the loaded libraries
    costs milliseconds, setting a pool's thread count a fraction of a microsecond."""
    global _blas_pools_cache
    if _blas_pools_cache is None:
        import scipy.linalg.blas  # noqa: F401  (load SciPy's BLAS before the scan)
        from threadpoolctl import ThreadpoolController

        _blas_pools_cache = tuple(_BlasPool(lib) for lib in ThreadpoolController().lib_controllers
                                  if lib.user_api == "blas")
    return _blas_pools_cache


def planned_threads(work: float, budget: int, per_thread: float | None = None) -> int:
    """Threads that ``work`` is worth, at most ``budget``.

    Each thread gets at least ``per_thread`` units of work (default
    ``_config.MIN_MACS_PER_THREAD`` multiply-adds; memory-bound passes give their own
    minimum, e.g. ``_config.MIN_WRITES_PER_THREAD``): below that, waking and joining
    threads costs more than it saves. The plan fixes how the work is split into
    pieces (:func:`pieces_for`), so, at a fixed thread setting, the result.
    """
    if per_thread is None:
        per_thread = _config.MIN_MACS_PER_THREAD
    return int(max(1, min(budget, work // per_thread)))


def pieces_for(planned: int, rows: int) -> int:
    """Pieces to split a product planned for ``planned`` threads into, along ``rows``.

    One when it is not split; else ``_config.PIECES_PER_THREAD`` per thread, so that
    a descheduled thread delays a small piece of the work, not half of it, but with
    at least ``_config.MIN_PIECE_ROWS`` rows each; never fewer than one per thread.
    """
    if planned == 1:
        return 1
    per_thread = max(1, min(_config.PIECES_PER_THREAD,
                            rows // (planned * _config.MIN_PIECE_ROWS)))
    return max(1, min(rows, planned * per_thread))


def run_pieces(task, n_pieces: int, threads: int) -> None:
    """Call ``task(i)`` for i in range(n_pieces), on ``threads`` threads at once.

    The calling thread works too; the others come from a pool of plain threads
    (:class:`_Workers`), created on first use. Pieces are handed out one at a time,
    in order, to whichever thread is free: a thread descheduled by another job on
    its core delays one piece, not the whole product, as a static split (OpenMP,
    OpenBLAS) would. ``task`` must release the GIL for its work (a BLAS call through
    ctypes, a ``nogil`` Numba kernel) and write outputs of its own: the same pieces
    give the same results whatever ``threads`` is. The first exception raised by a
    task is raised here, after every thread has stopped taking pieces.
    """
    import itertools

    if threads <= 1 or n_pieces <= 1:
        for i in range(n_pieces):
            task(i)
        return
    counter = itertools.count()  # next() on it is atomic under the GIL
    failed = []

    def drain():
        while not failed:
            i = next(counter)
            if i >= n_pieces:
                return
            try:
                task(i)
            except BaseException as exc:  # stop every thread, re-raised below
                failed.append(exc)
                return

    _workers().run(drain, min(threads, n_pieces) - 1)
    if failed:
        raise failed[0]


class _Workers:
    """The threads that join :func:`run_pieces` besides its caller.

    Each waits for a job (a ``drain`` function that takes pieces until none are
    left) by polling a flag with the GIL released, the core yielded between polls
    (:mod:`fasthess._kernels.threads`), up to ``_config.WORKER_POLLS`` polls, then
    asleep on a condition. A worker marks its part of a job done and goes back to
    polling in one call without the GIL, and the caller waits for the workers that
    joined by polling their marks: on the 2-core VM measured, a handoff through the
    GIL or a condition took 50-100 us, as long as a piece of an N = 10 Hessian; the
    rounds of one computation follow each other within microseconds. Idle workers
    sleep after their polls and cost nothing. One caller at a time: a second caller
    while a job runs does its pieces on its own thread.
    """

    def __init__(self, n_threads: int):
        import numpy as np

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._job = None
        self._generation = 0
        self._slots = 0  # workers still wanted by the current job
        self._joined: list = []  # flag indices of the workers that joined it
        self._busy = False
        # read and written without the GIL: [generation, then per worker the last
        # generation whose part it finished]
        self._flags = np.zeros(1 + n_threads, dtype=np.int64)
        for k in range(n_threads):
            threading.Thread(target=self._serve, args=(1 + k,), name=f"fasthess-{k}",
                             daemon=True).start()

    def run(self, drain, extra: int) -> None:
        """Run ``drain`` on this thread and on up to ``extra`` workers; return when all
        that joined have finished."""
        with self._lock:
            if self._busy:  # another caller's job runs: do this one alone
                extra = 0
            else:
                self._busy = True
                self._job, self._slots, self._joined = drain, extra, []
                self._generation += 1
                self._flags[0] = self._generation
                self._wake.notify(extra)
        try:
            drain()
        finally:
            if extra:
                self._join()

    def _join(self) -> None:
        """Wait for the workers that joined the job; none joins after this starts."""
        import numpy as np

        from ._kernels.threads import wait_until_done

        with self._lock:
            self._job, self._slots = None, 0  # no late joiners
            joined = np.array(self._joined, dtype=np.int64)
            generation = self._generation
        wait_until_done(self._flags, joined, generation)
        with self._lock:
            self._busy = False

    def _serve(self, flag: int) -> None:
        from ._kernels.threads import finish_and_wait, wait_for_change

        seen = 0
        wait_for_change(self._flags, 0, seen, _config.WORKER_POLLS)
        while True:
            with self._lock:
                while self._generation == seen:
                    self._wake.wait()
                seen = self._generation
                job = self._job
                joins = job is not None and self._slots > 0
                if not joins:
                    job = None
                if joins:
                    self._slots -= 1
                    self._joined.append(flag)
            if joins:
                try:
                    job()  # drain: it catches what the pieces raise
                finally:
                    # drop the job before waiting: its closures hold the computation's
                    # arrays, which would otherwise live until the next job (peak memory)
                    job = None
                    finish_and_wait(self._flags, flag, seen, _config.WORKER_POLLS)
            else:
                wait_for_change(self._flags, 0, seen, _config.WORKER_POLLS)


_pool: list = [None, None]  # [pid that created it, _Workers]
_pool_lock = threading.Lock()


def _workers() -> _Workers:
    """The workers of :func:`run_pieces`: Numba's thread count (the cores) less the
    caller's, started once per process (a forked child starts its own)."""
    import numba

    with _pool_lock:
        if _pool[0] != os.getpid():
            _pool[:] = [os.getpid(), _Workers(max(1, numba.config.NUMBA_NUM_THREADS - 1))]
        return _pool[1]


_numba_calls: tuple | None = None


def numba_thread_calls() -> tuple:
    """(get, set) of Numba's thread count for the calling thread.

    The threading layer's own functions (0.1-0.3 us a call), once the layer is
    launched: ``numba.get_num_threads`` / ``set_num_threads`` check the layer (two
    locks) and the argument on every call (~1 us each, a few percent of an N = 10
    Hessian). The public functions where a Numba release lacks the internal ones.
    """
    global _numba_calls
    if _numba_calls is None:
        import numba
        from numba.np.ufunc import parallel

        numba.get_num_threads()  # launches the threading layer
        calls = (getattr(parallel, "_get_num_threads", None),
                 getattr(parallel, "_set_num_threads", None))
        if None in calls:
            calls = (numba.get_num_threads, numba.set_num_threads)
        _numba_calls = calls
    return _numba_calls


class ComputeThreads:
    """Context manager for the threads of one fasthess computation.

    Inside, Numba kernels run on the calling thread only and every BLAS library on
    one thread: the computation's parallelism is its own (:func:`run_pieces`, with
    :func:`planned_threads` out of ``budget``, the thread setting on entry,
    :func:`get_num_threads`). On exit the Numba setting of this thread is restored,
    and when the last scope of the process exits (scopes may nest, or run in several
    threads at once) every BLAS pool gets back the count it had when the first one
    entered, and threadpoolctl's controlling thread is released: nothing lasts
    beyond the computation, and no environment variable is read or written for it.

    Why: Numba's OpenMP workers and each BLAS library's workers (NumPy and SciPy
    wheels each load their own OpenBLAS) keep spinning on the cores for a while
    after their last task, ~0.1 s for OpenBLAS; pools taking turns then fight for
    the cores. And their static splits of the work stall whenever one of their
    threads is descheduled by another job (measured beside a busy loop: two
    OpenBLAS threads took 4.4x, at worst 17x, the time of one at N = 30).

    Examples
    --------
    >>> from fasthess._resources import ComputeThreads
    >>> with ComputeThreads() as scope:
    ...     budget = scope.budget  # the threads this computation may use
    >>> budget >= 1
    True
    """

    # Process-wide, like the BLAS pools: the counts recorded by the first scope to
    # enter, restored by the last to exit.
    _lock = threading.Lock()
    _active = 0
    _originals: list = []  # [(controller, count on entry)]
    _budgets = threading.local()  # .stack: the budgets of this thread's open scopes

    def __init__(self):
        self.budget = 1
        self._numba_before = 1

    def __enter__(self) -> "ComputeThreads":
        get_numba, set_numba = numba_thread_calls()
        self.budget = self._numba_before = get_numba()
        stack = getattr(self._budgets, "stack", None)
        if stack is None:
            stack = self._budgets.stack = []
        if stack:  # a nested scope: Numba already reads 1 here; the budget is the outer one
            self.budget = stack[-1]
        stack.append(self.budget)
        if self._numba_before != 1:
            set_numba(1)
        cls = ComputeThreads
        with cls._lock:
            if cls._active == 0:
                cls._originals = [(pool, n) for pool in blas_pools()
                                  if (n := pool.get()) is not None and n != 1]
                for pool, _ in cls._originals:
                    pool.set(1)
            cls._active += 1
        return self

    def __exit__(self, *exc) -> None:
        cls = ComputeThreads
        cls._budgets.stack.pop()
        with cls._lock:
            cls._active -= 1
            if cls._active == 0:
                through_controller = not all(pool.direct for pool, _ in cls._originals)
                if through_controller:
                    _release_blas_control()  # whichever thread set them, this one restores
                for pool, before in cls._originals:
                    pool.set(before)
                if through_controller:
                    _release_blas_control()
                cls._originals = []
        if self._numba_before != 1:
            numba_thread_calls()[1](self._numba_before)


def compute_budget() -> int:
    """The threads of the innermost :class:`ComputeThreads` scope of this thread, or,
    outside any, the thread setting (:func:`get_num_threads`)."""
    stack = getattr(ComputeThreads._budgets, "stack", None)
    if stack:
        return stack[-1]
    import numba

    return numba.get_num_threads()


def _release_blas_control() -> None:
    """Clear threadpoolctl's controlling thread of OpenBLAS (threadpoolctl >= 3.6 lets
    only that thread set OpenBLAS's shared pool; older versions have no such state)."""
    import threadpoolctl

    controller = getattr(threadpoolctl, "OpenBLASController", None)
    clear = getattr(controller, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)
