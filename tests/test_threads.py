"""Threads as users get them (issue 12): importing fasthess changes nothing in the
process; each computation runs its Numba passes serially, lets BLAS use only the
threads its work is worth on cores no other work occupies, and restores every
setting when it returns, also when scopes nest or run in several threads."""
import os
import subprocess
import sys
import threading

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import fasthess as fh
from fasthess import _config, _resources
from fasthess._resources import ComputeThreads, pieces_for, planned_threads

from . import reference as ref
from .conftest import RTOL_EXACT, perturbed, rel_err


def _blas_counts():
    return sorted((i["filepath"], i["num_threads"]) for i in threadpool_info()
                  if i["user_api"] == "blas")


def test_import_changes_no_environment_variable_or_setting():
    """In either import order, os.environ is what it was before `import fasthess`, and
    the BLAS pools and Numba's threads are those of a process that never imports it."""
    report = ("from threadpoolctl import threadpool_info\n"
              "print(sorted((i['filepath'], i['num_threads']) for i in threadpool_info()),"
              " numba.get_num_threads())\n")
    check = "assert dict(os.environ) == env0, set(os.environ.items()) ^ set(env0.items())\n"
    codes = {
        "without": "import numpy, scipy.linalg, numba\n" + report,
        "numpy first": ("import os; env0 = dict(os.environ)\n"
                        "import numpy, scipy.linalg, numba\nimport fasthess\n" + check + report),
        "fasthess first": ("import os; env0 = dict(os.environ)\nimport fasthess\n" + check
                           + "import numpy, scipy.linalg, numba\n" + report),
    }
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT", "FASTHESS_NUM_THREADS")}
    out = {}
    for name, code in codes.items():
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env)
        assert run.returncode == 0, (name, run.stderr)
        out[name] = run.stdout
    assert out["numpy first"] == out["without"] == out["fasthess first"]


def test_every_setting_is_restored_after_each_computation():
    net = fh.TwoLayerNet.random(12, 9, n_out=2, activation="tanh", rng=1)
    teacher = perturbed(net, 0.1, seed=2)
    X = fh.gaussian_inputs(300, 12, rng=3)
    before, n_before = _blas_counts(), numba.get_num_threads()
    fh.hessian(net, X, teacher=teacher)
    fh.hessian_blocks(net, X)
    fh.ntk(net, X[:50])
    fh.hessian_operator(net, X, teacher=teacher) @ np.ones((net.n_params, 3))
    assert _blas_counts() == before and numba.get_num_threads() == n_before
    assert ComputeThreads._active == 0


def test_inside_a_computation_numba_and_blas_are_single_threaded():
    """The computation's own pieces are its parallelism: no OpenMP or BLAS pool works
    (or spins) beside them; the budget is the thread setting on entry."""
    with ComputeThreads() as scope:
        numba_inside = numba.get_num_threads()
        blas_inside = {n for _, n in _blas_counts()}
        budget = scope.budget
    assert numba_inside == 1 and blas_inside == {1}
    assert budget == numba.get_num_threads()
    with fh.threads(1):
        with ComputeThreads() as scope:
            assert scope.budget == 1


def test_a_callers_blas_limit_is_kept():
    with threadpool_limits(1, user_api="blas"):
        before = _blas_counts()
        with ComputeThreads():
            pass
        assert _blas_counts() == before


def test_nested_and_concurrent_scopes_restore_the_settings_once():
    before = _blas_counts()
    with ComputeThreads():
        with ComputeThreads():
            pass
        assert ComputeThreads._active == 1 and {n for _, n in _blas_counts()} == {1}
    assert _blas_counts() == before

    net = fh.TwoLayerNet.random(8, 8, rng=4)
    X = fh.gaussian_inputs(200, 8, rng=5)
    expected = fh.hessian(net, X)
    results, errors = [], []

    def work():
        try:
            for _ in range(5):
                results.append(fh.hessian(net, X))
                fh.hessian_operator(net, X) @ np.ones((net.n_params, 2))
        except Exception as exc:  # reported below, with the thread's error
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors
    assert all(np.array_equal(h, expected) for h in results) and len(results) == 15
    assert _blas_counts() == before and ComputeThreads._active == 0
    _assert_another_thread_may_set_limits(before)


def _assert_another_thread_may_set_limits(before):
    """threadpoolctl's controlling thread is released: a limit set in another thread
    takes effect there and is undone after, back to ``before``."""
    seen = []

    def limit_elsewhere():
        with threadpool_limits(1, user_api="blas"):
            seen.append({n for _, n in _blas_counts()})

    t = threading.Thread(target=limit_elsewhere)
    t.start()
    t.join()
    assert seen == [{1}] and _blas_counts() == before


class _ControllerOnly:
    """A threadpoolctl controller seen without its library's own functions (as for
    MKL, BLIS, or OpenBLAS on OpenMP): ComputeThreads must go through it."""

    def __init__(self, controller):
        self._controller = controller
        self.internal_api = controller.internal_api

    def get_num_threads(self):
        return self._controller.get_num_threads()

    def set_num_threads(self, n):
        return self._controller.set_num_threads(n)


def test_blas_pools_set_through_their_controller_are_restored_and_released(monkeypatch):
    pools = _resources.blas_pools()
    assert all(pool.direct for pool in pools if pool.controller.internal_api == "openblas"
               and getattr(pool.controller, "threading_layer", None) == "pthreads")
    fallback = tuple(_resources._BlasPool(_ControllerOnly(pool.controller)) for pool in pools)
    assert not any(pool.direct for pool in fallback)
    monkeypatch.setattr(_resources, "_blas_pools_cache", fallback)
    before = _blas_counts()
    with ComputeThreads():
        assert {n for _, n in _blas_counts()} == {1}
    assert _blas_counts() == before
    _assert_another_thread_may_set_limits(before)


def test_numba_threads_through_the_public_api_where_the_layers_calls_are_missing(monkeypatch):
    """numba_thread_calls falls back to numba.get/set_num_threads on a Numba release
    without the threading layer's own functions; a scope then behaves the same."""
    import types

    import numba.np.ufunc

    monkeypatch.setattr(_resources, "_numba_calls", None)
    # the package's view of the module, without the layer's functions (Numba itself
    # keeps the real module)
    monkeypatch.setattr(numba.np.ufunc, "parallel", types.SimpleNamespace())
    assert _resources.numba_thread_calls() == (numba.get_num_threads, numba.set_num_threads)
    before = numba.get_num_threads()
    with ComputeThreads() as scope:
        assert numba.get_num_threads() == 1 and scope.budget == before
    assert numba.get_num_threads() == before


def test_threads_and_pieces_follow_the_work_and_the_setting():
    """The plan (and so the pieces, and the result) follows the work and the thread
    setting only, never the load of the machine."""
    per_thread = _config.MIN_MACS_PER_THREAD
    assert planned_threads(per_thread - 1, 8) == 1
    assert planned_threads(3 * per_thread, 8) == 3
    assert planned_threads(100 * per_thread, 2) == 2
    rows = 10 * _config.PIECES_PER_THREAD * _config.MIN_PIECE_ROWS
    assert pieces_for(1, rows) == 1
    assert pieces_for(3, rows) == 3 * _config.PIECES_PER_THREAD  # a few per thread
    assert pieces_for(3, 3 * _config.MIN_PIECE_ROWS) == 3  # but none too thin
    assert pieces_for(3, 2) == 2  # and never more than the rows


def test_a_descheduled_thread_delays_one_piece_not_the_rest():
    """Pieces go to whichever thread is free: while one thread is stuck in a slow
    piece, the others take all the remaining ones."""
    import time

    ran_by = {}

    def task(i):
        ran_by[i] = threading.get_ident()
        time.sleep(0.3 if i == 0 else 0.001)  # piece 0: a thread descheduled meanwhile

    _resources.run_pieces(task, 40, 2)
    assert sorted(ran_by) == list(range(40))
    stuck = ran_by[0]
    assert sum(tid != stuck for tid in ran_by.values()) >= 35


def test_run_pieces_runs_each_piece_once_and_reports_failures():
    for threads in (1, 2, 5):
        seen = []
        _resources.run_pieces(seen.append, 17, threads)
        assert sorted(seen) == list(range(17))

    def fail_at_5(i):
        if i == 5:
            raise ZeroDivisionError("piece 5")

    with pytest.raises(ZeroDivisionError, match="piece 5"):
        _resources.run_pieces(fail_at_5, 12, 3)


def test_concurrent_callers_each_run_all_their_pieces():
    import time

    seen = {0: [], 1: []}

    def caller(k):
        def task(i):
            time.sleep(0.001)
            seen[k].append(i)
        _resources.run_pieces(task, 30, 2)

    callers = [threading.Thread(target=caller, args=(k,)) for k in (0, 1)]
    for c in callers:
        c.start()
    for c in callers:
        c.join()
    assert sorted(seen[0]) == list(range(30)) and sorted(seen[1]) == list(range(30))


def test_idle_workers_sleep():
    """After a computation, fasthess's own threads poll for well under a millisecond,
    then sleep: the process uses no CPU while it waits."""
    import time

    _resources.run_pieces(lambda i: time.sleep(0.001), 4, 2)
    time.sleep(0.05)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    time.sleep(0.3)
    assert time.process_time() - cpu0 < 0.05 * (time.perf_counter() - wall0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("b_transposed", [True, False])
def test_gemm_into_in_pieces(dtype, b_transposed):
    from fasthess.products import gemm_into

    rng = np.random.default_rng(10)
    a = rng.standard_normal((37, 23)).astype(dtype)
    b = rng.standard_normal((19, 23) if b_transposed else (23, 19)).astype(dtype)
    start = rng.standard_normal((37, 19)).astype(dtype)
    product = a.astype(np.float64) @ (b.T if b_transposed else b).astype(np.float64)
    outs = {}
    for pieces, threads in ((1, 1), (4, 1), (4, 3)):
        out = start.copy()
        gemm_into(out, a, b, b_transposed=b_transposed, beta=0.5, pieces=pieces,
                  threads=threads)
        outs[pieces, threads] = out
    # the same pieces give the same bits on any number of threads
    np.testing.assert_array_equal(outs[4, 1], outs[4, 3])
    tol = 1e-4 if dtype == np.float32 else 1e-12  # sums of 23 products of size ~1
    for out in outs.values():
        np.testing.assert_allclose(out, 0.5 * start + product, rtol=tol, atol=tol)
    # row ranges of a larger block (the chunk workspace) work in place too
    big = np.full((40, 19), np.nan, dtype=dtype)
    gemm_into(big[3:40], a, b, b_transposed=b_transposed, beta=0.0, pieces=5, threads=2)
    np.testing.assert_allclose(big[3:], product, rtol=tol, atol=tol)
    assert np.isnan(big[:3]).all()


@pytest.mark.parametrize("route", ["chunked", "sample_parts"])
@pytest.mark.parametrize("teacher_scale", [None, 0.2])
def test_results_do_not_depend_on_the_threads_that_run_the_pieces(monkeypatch, teacher_scale,
                                                                 route):
    """The pieces planned for a budget of three threads, run on one thread or on
    three: the same H and H V, bit for bit, and both match the twin. Both dense
    routes that split work: sample chunks contracted in pieces, and (small problems)
    one part of the samples per planned thread (blocks of them)."""
    import importlib

    net = fh.TwoLayerNet.random(11, 13, n_out=2, activation="erf", rng=6)
    teacher = None if teacher_scale is None else perturbed(net, teacher_scale, seed=7)
    X = fh.gaussian_inputs(900, 11, rng=8)
    V = np.random.default_rng(9).standard_normal((net.n_params, 4))
    monkeypatch.setattr(_config, "MIN_MACS_PER_THREAD", 1)  # pieces even at this size
    monkeypatch.setattr(_config, "MIN_WRITES_PER_THREAD", 1)
    if route == "chunked":
        monkeypatch.setattr(_config, "SAMPLE_PARTS_BYTES", 0)
    else:  # several blocks in each part
        monkeypatch.setattr(_config, "SAMPLE_BLOCK_BYTES", 100_000)
    real_enter, real_run = ComputeThreads.__enter__, _resources.run_pieces

    def enter_with_budget_3(self):
        real_enter(self)
        self.budget = 3
        return self

    monkeypatch.setattr(ComputeThreads, "__enter__", enter_with_budget_3)
    assembly = importlib.import_module("fasthess.assembly")
    out, pieces = {}, {}
    for threads in (1, 3):
        def run_on(task, n, _planned, threads=threads):
            pieces[threads] = max(pieces.get(threads, 0), n)
            real_run(task, n, threads)

        for module in (_resources, assembly):
            monkeypatch.setattr(module, "run_pieces", run_on)
        out[threads] = (fh.hessian(net, X, teacher=teacher),
                        fh.hessian_operator(net, X, teacher=teacher) @ V)
    assert pieces[1] == pieces[3] >= 3  # really split, the same way
    (h1, p1), (h3, p3) = out.values()
    np.testing.assert_array_equal(h1, h3)
    np.testing.assert_array_equal(p1, p3)
    expected = ref.hessian(net, X, teacher)
    assert rel_err(h1, expected) < RTOL_EXACT
    assert rel_err(p1, expected @ V) < RTOL_EXACT


def test_polls_without_the_gil_see_another_threads_write():
    """The polls that hand work between fasthess's threads: a change made by another
    thread is seen (the load is not hoisted out of the loop), an unchanged flag gives
    up after its polls, and a caller waiting for a worker's mark returns once set."""
    import time

    from fasthess._kernels.threads import finish_and_wait, wait_for_change, wait_until_done

    flags = np.zeros(3, dtype=np.int64)
    assert wait_for_change(flags, 0, 0, 10) == 0  # nothing changed: gives up

    def later():
        time.sleep(0.05)
        flags[0] = 7

    writer = threading.Thread(target=later)
    writer.start()
    assert wait_for_change(flags, 0, 0, 10**9) == 7  # (would hang if the load were hoisted)
    writer.join()

    def worker():
        time.sleep(0.05)
        finish_and_wait(flags, 2, 7, 10)  # marks job 7 done, then polls for the next

    marker = threading.Thread(target=worker)
    marker.start()
    wait_until_done(flags, np.array([2], dtype=np.int64), 7)
    assert flags[2] == 7
    marker.join()


def test_concurrent_callers_get_the_results_of_a_lone_call():
    """Users' threads calling fh.hessian at once (each keeps its own small-problem
    buffer; a caller that finds the workers busy runs its pieces alone): every
    result equals the one computed alone, bit for bit."""
    problems = []
    for k, n in enumerate((6, 10, 16, 20)):
        net = fh.TwoLayerNet.random(n, n, n_out=1 + k % 2, activation="erf", rng=20 + k)
        problems.append((net, fh.gaussian_inputs(2 * net.n_params, n, rng=30 + k)))
    alone = [fh.hessian(net, X) for net, X in problems]
    results = {}

    def caller(k):
        net, X = problems[k % len(problems)]
        for _ in range(5):
            H = fh.hessian(net, X)
            if not np.array_equal(H, alone[k % len(problems)]):
                results[k] = H
                return
        results[k] = None

    callers = [threading.Thread(target=caller, args=(k,)) for k in range(8)]
    for c in callers:
        c.start()
    for c in callers:
        c.join()
    assert results == {k: None for k in range(8)}


def test_workers_keep_nothing_of_a_finished_job():
    """What a job's pieces captured is freed when run_pieces returns (a worker that
    held on to its last job kept the features of a Hessian alive: +8% peak memory)."""
    import gc
    import weakref

    class Payload:
        pass

    import time

    payload = Payload()
    alive = weakref.ref(payload)
    joined = set()

    def piece(i, p=payload):
        joined.add(threading.get_ident())
        time.sleep(0.002)  # (long enough for the worker to join)

    _resources.run_pieces(piece, 8, 2)
    assert len(joined) == 2
    del piece
    del payload
    gc.collect()
    assert alive() is None
