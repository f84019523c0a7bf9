"""How fasthess uses threads: one small runtime, safe wherever a researcher runs it.

* fasthess's own work is split into pieces fixed by the work and the cores (so the
  result does not depend on who runs them): ``nogil`` Numba kernels over ranges
  (activations, per-sample factors, the scatter into H) and calls of a private,
  single-threaded GEMM (:mod:`fasthess._kernels.blas`). :func:`run_pieces` runs them
  on the calling thread plus workers of a ``concurrent.futures`` thread pool, handing
  pieces out one at a time (a descheduled thread delays one piece, not half the
  work). No Numba threading layer is ever started: GNU OpenMP's makes a forked child
  abort, and Numba's workqueue layer aborts when two threads use it at once.
* The dense eigenvalues run on one thread in the same private OpenBLAS; ARPACK, the
  SVD route and the few other NumPy/SciPy calls run on the shared BLAS's own threads
  at the count the user sets (``threadpoolctl.threadpool_limits``,
  ``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS``, :func:`set_num_threads`), while
  fasthess's threads wait on a queue. fasthess never changes that count during a
  computation, so other threads of the process see their BLAS as they left it.

How many threads a computation uses (:func:`compute_budget`): fasthess's setting
(:func:`threads` in this thread, else :func:`set_num_threads` /
``FASTHESS_NUM_THREADS``; by default every core in the main thread and one in any
other thread, so a Dask or thread-pool task uses the thread it runs on), never more
than the BLAS count, nor Numba's count where a user set it.

Safety: :func:`run_pieces` never returns or raises while a piece may still run,
``KeyboardInterrupt`` included (it stops handing out pieces, waits for those running,
then re-raises); a forked child starts with no pool (``os.register_at_fork``).
"""
from __future__ import annotations

import contextlib
import itertools
import os
import threading
import warnings

from . import _config

__all__ = ["set_num_threads", "get_num_threads", "threads", "compute_budget", "plan_budget",
           "planned_threads", "pieces_for", "run_pieces", "apply_env_threads", "blas_threads"]

# fasthess's process-wide thread setting (None: the default), and each thread's
# stack of fh.threads(n) scopes.
_setting: list = [None]
_local = threading.local()
_capped_warned: list = [False]


def _cores() -> int:
    """The cores fasthess may use: Numba's NUMBA_NUM_THREADS (the CPUs this process
    may run on, unless the user lowered it)."""
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)


def _check_threads(n, name="n") -> int:
    """An int >= 1, capped at the cores (warned once per process): more would
    oversubscribe them."""
    from ._validation import check_int

    n = check_int(n, name, minimum=1)
    cores = _cores()
    if n > cores:
        if not _capped_warned[0]:
            _capped_warned[0] = True
            warnings.warn(f"{name}={n} exceeds the {cores} cores fasthess may use "
                          f"(NUMBA_NUM_THREADS); using {cores}", RuntimeWarning, stacklevel=3)
        n = cores
    return n


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for fasthess computations, in every thread of the process.

    Sets fasthess's own kernels to at most ``n`` threads and every loaded BLAS
    library to ``n`` threads (through threadpoolctl, until changed again): fasthess's
    matrix products and eigensolvers run on BLAS's threads. The environment variable
    ``FASTHESS_NUM_THREADS`` sets the default at the first computation.

    Parameters
    ----------
    n : int
        Threads, >= 1. Capped at the cores (``NUMBA_NUM_THREADS``), with a
        ``RuntimeWarning`` the first time, since more would oversubscribe them.

    Raises
    ------
    ValueError
        If ``n`` is not an integer >= 1.

    See Also
    --------
    threads : The same for one block of code, in one thread.
    get_num_threads : The threads the next computation of this thread would use.

    Notes
    -----
    Without this call fasthess uses every core from the main thread and one thread
    from any other thread (a Dask task, a thread pool), never more than BLAS's own
    thread count (``threadpoolctl.threadpool_limits``, ``OMP_NUM_THREADS`` and
    ``OPENBLAS_NUM_THREADS`` are honoured) nor Numba's (``numba.set_num_threads``).

    Examples
    --------
    >>> import fasthess as fh
    >>> fh.set_num_threads(1)
    >>> fh.get_num_threads()
    1
    >>> fh.set_num_threads(fh.get_num_threads())  # keep it, for the rest of the process
    """
    n = _check_threads(n)
    _setting[0] = n
    _shared_blas().limit(limits=n)  # takes effect now, until changed again


def get_num_threads() -> int:
    """Return the number of threads the next fasthess computation of this thread uses.

    Returns
    -------
    int
        :func:`compute_budget`: fasthess's setting (see :func:`set_num_threads`)
        within the limits set outside (BLAS's thread count, Numba's).

    Examples
    --------
    >>> import fasthess as fh
    >>> with fh.threads(1):
    ...     fh.get_num_threads()
    1
    """
    return compute_budget()


@contextlib.contextmanager
def threads(n: int):
    """Run a block with ``n`` threads for fasthess and BLAS (a context manager).

    Inside the block, computations called from this thread use ``n`` threads, and
    every BLAS library runs ``n`` threads (``threadpoolctl.threadpool_limits``, which
    is process-wide, as BLAS's own setting is). The previous settings come back when
    the block ends, also on an exception.

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
    n = _check_threads(n)
    stack = _scopes()
    stack.append(n)
    try:
        with _shared_blas().limit(limits=n):
            yield
    finally:
        stack.pop()


def _scopes() -> list:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def apply_env_threads() -> None:
    """``FASTHESS_NUM_THREADS``, if set: fasthess's default thread setting (BLAS is left
    as it is: a library does not change the process's settings by being imported)."""
    n = os.environ.get("FASTHESS_NUM_THREADS")
    if n:
        try:
            value = int(n)
        except ValueError:
            raise ValueError(f"FASTHESS_NUM_THREADS must be an integer >= 1, got {n!r}") from None
        _setting[0] = _check_threads(value, "FASTHESS_NUM_THREADS")


# ------------------------------------------------------------------ limits set outside
_blas_getters: list = [None]


def _shared_blas():
    """threadpoolctl's controller of the BLAS libraries the process shares (NumPy's,
    SciPy's), without fasthess's private single-threaded GEMM."""
    import scipy.linalg.blas  # noqa: F401  (load SciPy's BLAS before the scan)
    from threadpoolctl import ThreadpoolController

    from ._kernels.blas import PRIVATE

    blas = ThreadpoolController().select(user_api="blas")
    paths = [lib.filepath for lib in blas.lib_controllers
             if not _same_file(lib.filepath, PRIVATE.path)]
    return blas.select(filepath=paths)


def _same_file(a, b) -> bool:
    if a is None or b is None:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def blas_threads() -> int:
    """The thread count of the BLAS that fasthess calls (SciPy's, as NumPy's where
    they differ: the smaller), as threadpoolctl reads it: it reflects
    ``threadpool_limits`` and the ``*_NUM_THREADS`` variables read at load."""
    getters = _blas_getters[0]
    if getters is None:
        getters = _blas_getters[0] = _find_blas_getters()
    counts = [get() for get in getters]
    counts = [c for c in counts if c is not None and c > 0]
    return min(counts) if counts else 1


def _find_blas_getters() -> tuple:
    """Callables returning each loaded BLAS library's thread count: OpenBLAS's own
    ``openblas_get_num_threads`` through ctypes (0.2 us a call; threadpoolctl's
    controller takes microseconds), else the controller's."""
    getters = []
    for lib in _shared_blas().lib_controllers:
        find = getattr(lib, "_get_symbol", None)
        direct = None
        if find is not None and getattr(lib, "internal_api", None) == "openblas":
            with contextlib.suppress(Exception):
                direct = find("openblas_get_num_threads")
        getters.append(direct if direct is not None else lib.get_num_threads)
    return tuple(getters)


def _numba_limit() -> int | None:
    """Numba's thread count of this thread where the user set one (numba.set_num_threads
    launches Numba's threading layer; fasthess never does), else None."""
    from numba.np.ufunc import parallel

    if not getattr(parallel, "_is_initialized", False):
        return None
    import numba

    return int(numba.get_num_threads())


def plan_budget() -> int:
    """The threads a plan is made for: every core. How the work is split (so the
    result) then depends on the work and the machine only, not on which thread calls,
    nor on how many threads run the pieces (:func:`compute_budget`)."""
    return _cores()


def compute_budget() -> int:
    """The threads a computation started now, from this thread, may use.

    fasthess's setting (the innermost :func:`threads` scope of this thread, else
    :func:`set_num_threads` / ``FASTHESS_NUM_THREADS``, else every core in the main
    thread and one in any other), at most BLAS's thread count and Numba's where set.
    """
    from ._kernels.blas import PRIVATE

    PRIVATE.keep_single()
    stack = getattr(_local, "stack", None)
    if stack:
        n = stack[-1]
    elif _setting[0] is not None:
        n = _setting[0]
    elif threading.current_thread() is threading.main_thread():
        n = _cores()
    else:
        return 1
    if n > 1:
        n = min(n, blas_threads())
        numba_limit = _numba_limit()
        if numba_limit is not None:
            n = min(n, numba_limit)
    return max(1, n)


# ------------------------------------------------------------------ pieces on threads
def planned_threads(work: float, budget: int, per_thread: float | None = None) -> int:
    """Threads that ``work`` is worth, at most ``budget``.

    Each thread gets at least ``per_thread`` units of work (default
    ``_config.MIN_MACS_PER_THREAD`` multiply-adds; memory-bound passes give their own
    minimum, e.g. ``_config.MIN_WRITES_PER_THREAD``): below that, handing work to
    another thread costs more than it saves.
    """
    if per_thread is None:
        per_thread = _config.MIN_MACS_PER_THREAD
    return int(max(1, min(budget, work // per_thread)))


def pieces_for(planned: int, rows: int) -> int:
    """Pieces to split work planned for ``planned`` threads into, along ``rows``.

    One when it is not split; else ``_config.PIECES_PER_THREAD`` per thread (a
    descheduled thread then delays a small piece of the work), with at least
    ``_config.MIN_PIECE_ROWS`` rows each, never fewer than one per thread.
    """
    if planned == 1:
        return 1
    per_thread = max(1, min(_config.PIECES_PER_THREAD,
                            rows // (planned * _config.MIN_PIECE_ROWS)))
    return max(1, min(rows, planned * per_thread))


_pool: list = [None]  # the ThreadPoolExecutor of this process (None after a fork)
_pool_lock = threading.Lock()


def _executor():
    from concurrent.futures import ThreadPoolExecutor

    with _pool_lock:
        if _pool[0] is None:
            _pool[0] = ThreadPoolExecutor(max_workers=max(1, _cores() - 1),
                                          thread_name_prefix="fasthess")
        return _pool[0]


def _forget_pool_in_child() -> None:
    """A forked child has none of its parent's threads: it starts a pool of its own
    when it needs one (the parent's executor object would wait for ghosts)."""
    global _pool_lock
    _pool[0] = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def run_pieces(task, n_pieces: int, threads: int) -> None:
    """Call ``task(i)`` for i in range(n_pieces), on up to ``threads`` threads at once.

    The calling thread works too; the others are workers of a thread pool. Pieces
    are handed out one at a time, in order, to whichever thread is free. ``task``
    must release the GIL for its work (a ``nogil`` Numba kernel) and write outputs
    of its own, so that the result does not depend on ``threads``.

    Returns only once no piece runs any more. The first exception of a piece, or a
    ``KeyboardInterrupt`` of the caller, stops the handing out of pieces; the pieces
    already running finish; then it is raised here.
    """
    if threads <= 1 or n_pieces <= 1:
        for i in range(n_pieces):
            task(i)
        return
    counter = itertools.count()  # next() on it is atomic under the GIL
    stop = []  # non-empty: hand out no more pieces
    failures = []
    done = threading.Condition()
    active = [0]  # threads inside drain

    def drain():
        with done:  # counted before stop is read: the caller's wait then sees it
            active[0] += 1
        try:
            while not stop:
                i = next(counter)
                if i >= n_pieces:
                    return
                try:
                    task(i)
                except BaseException as exc:  # stop every thread; raised by the caller
                    failures.append(exc)
                    stop.append(True)
        finally:
            with done:
                active[0] -= 1
                done.notify_all()

    futures = []
    interrupt = None
    try:
        for _ in range(min(threads, n_pieces) - 1):
            futures.append(_executor().submit(drain))
        drain()
    except BaseException as exc:  # a KeyboardInterrupt between two pieces of the caller
        stop.append(True)
        interrupt = exc
    interrupt = _wait_for(done, active, stop, interrupt)
    for fut in futures:  # not started yet: nothing left for them (they would return at once)
        fut.cancel()
    if interrupt is not None:
        raise interrupt
    if failures:
        raise failures[0]


def _wait_for(done, active, stop, interrupt):
    """Wait until no thread is inside a drain of this call. A ``KeyboardInterrupt``
    meanwhile stops the handing out of pieces and is returned, to be raised once the
    wait is over. A drain that starts later sees every piece handed out, or ``stop``."""
    with done:
        while active[0]:
            try:
                done.wait(_config.WAIT_POLL_SECONDS)
            except BaseException as exc:  # the lock is held again when wait raises
                stop.append(True)
                if interrupt is None:
                    interrupt = exc
    return interrupt
