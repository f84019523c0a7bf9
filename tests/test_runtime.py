"""fasthess._runtime: how computations use threads. Importing changes nothing; no
computation changes a process-wide setting; the thread budget follows fasthess's setting
within the limits set outside; pieces run once each, on whichever thread is free; a
caller never leaves while a piece runs; concurrent callers get the bits of a lone call."""
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import fasthess as fh
from fasthess import _config, _runtime
from fasthess._runtime import pieces_for, planned_threads

from . import reference as ref
from .conftest import RTOL_EXACT, perturbed, rel_err


@pytest.fixture(autouse=True)
def _default_thread_setting(monkeypatch):
    """Each test starts from the default setting (another test's fh.set_num_threads
    would otherwise apply here: it is process-wide by design)."""
    monkeypatch.setattr(_runtime, "_setting", [None])


def _blas_counts():
    """The thread counts of the BLAS libraries the process shares (not fasthess's
    private single-threaded GEMM)."""
    return sorted((i["filepath"], i["num_threads"]) for i in threadpool_info()
                  if i["user_api"] == "blas" and "scipy_openblas32" not in i["filepath"])


def _every_computation(net, X, teacher):
    """One call of each kind of computation, sampled and population."""
    fh.hessian(net, X, teacher=teacher)
    fh.hessian_blocks(net, X)
    fh.ntk(net, X[:50])
    fh.hessian_operator(net, X, teacher=teacher) @ np.ones((net.n_params, 3))
    fh.eigenvalues(net, X)
    fh.eigsh(net, X, k=2)
    fh.hessian(net, fh.POPULATION)
    fh.hessian_operator(net, fh.POPULATION) @ np.ones((net.n_params, 2))


def test_import_changes_no_environment_variable_or_setting():
    """In either import order, os.environ is what it was before `import fasthess`, and
    the BLAS pools are those of a process that never imports it; Numba's threading
    layer is not started, neither by the import nor by a computation."""
    report = ("from threadpoolctl import threadpool_info\n"
              "print(sorted((i['filepath'], i['num_threads']) for i in threadpool_info()\n"
              "             if 'scipy_openblas32' not in i['filepath']))\n")
    check = "assert dict(os.environ) == env0, set(os.environ.items()) ^ set(env0.items())\n"
    layer = ("import fasthess as fh\n"
             "net = fh.TwoLayerNet.random(6, 5, rng=0)\n"
             "fh.hessian(net, fh.gaussian_inputs(80, 6, rng=1)); fh.hessian(net, fh.POPULATION)\n"
             "from numba.np.ufunc import parallel\n"
             "assert not parallel._is_initialized, 'a threading layer was launched'\n")
    codes = {
        "without": "import numpy, scipy.linalg, numba\n" + report,
        "numpy first": ("import os; env0 = dict(os.environ)\n"
                        "import numpy, scipy.linalg, numba\nimport fasthess\n" + check + report),
        "fasthess first": ("import os; env0 = dict(os.environ)\nimport fasthess\n" + check
                           + "import numpy, scipy.linalg, numba\n" + report),
        "after computing": "import numpy, scipy.linalg, numba\n" + layer + report,
    }
    env = {k: v for k, v in os.environ.items() if k != "FASTHESS_NUM_THREADS"}
    out = {}
    for name, code in codes.items():
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, timeout=600)
        assert run.returncode == 0, (name, run.stderr)
        out[name] = run.stdout
    assert len(set(out.values())) == 1, out


def test_computations_change_no_setting_that_another_thread_sees():
    """While computations run in this thread, another thread reads its BLAS counts
    again and again: they never change (fasthess's products run on BLAS's threads at
    the count BLAS has)."""
    net = fh.TwoLayerNet.random(12, 9, n_out=2, activation="tanh", rng=1)
    teacher = perturbed(net, 0.1, seed=2)
    X = fh.gaussian_inputs(300, 12, rng=3)
    before = _blas_counts()
    seen, running = set(), threading.Event()

    def watch():
        while not running.is_set():
            seen.add(tuple(_blas_counts()))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(3):
            _every_computation(net, X, teacher)
    finally:
        running.set()
        watcher.join()
    assert seen == {tuple(before)} and _blas_counts() == before


def test_budget_default_and_fasthess_setting():
    """Every core in the main thread, one in any other thread unless told (a Dask or
    thread-pool task uses the thread it runs on); fh.set_num_threads applies in every
    thread; fh.threads in its own thread only."""
    cores = _runtime._cores()
    assert fh.get_num_threads() == min(cores, _runtime.blas_threads())
    seen = {}

    def other(key, n=None):
        if n is None:
            seen[key] = fh.get_num_threads()
        else:
            with fh.threads(n):
                seen[key] = fh.get_num_threads()

    def in_thread(*args):
        t = threading.Thread(target=other, args=args)
        t.start()
        t.join()

    in_thread("default")
    assert seen["default"] == 1
    with fh.threads(1):
        assert fh.get_num_threads() == 1
        in_thread("beside a scope")  # another thread's scope is not this one's
    assert seen["beside a scope"] == 1
    if cores >= 2:
        in_thread("told", 2)
        assert seen["told"] == min(2, _runtime.blas_threads())
    saved = _runtime._setting[0]
    try:
        _runtime._setting[0] = 1
        assert fh.get_num_threads() == 1
    finally:
        _runtime._setting[0] = saved


def test_limits_set_outside_cap_the_budget():
    """threadpoolctl limits (BLAS's count) and a Numba count the user set lower the
    budget; fasthess never raises them."""
    with threadpool_limits(1, user_api="blas"):
        assert fh.get_num_threads() == 1
        with fh.threads(2):  # fh.threads sets BLAS too: the user's explicit request
            assert fh.get_num_threads() == min(2, _runtime._cores())
        assert fh.get_num_threads() == 1
    code = ("import numba, fasthess as fh\n"
            "numba.set_num_threads(1)\n"
            "print(fh.get_num_threads())\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300)
    assert run.stdout.split() == ["1"]


def test_thread_setting_is_capped_with_one_warning(monkeypatch):
    monkeypatch.setattr(_runtime, "_capped_warned", [False])
    cores = _runtime._cores()
    with pytest.warns(RuntimeWarning, match=f"exceeds the {cores} cores"):
        with fh.threads(cores + 5):
            assert fh.get_num_threads() <= cores
    with fh.threads(cores + 5):  # once per process
        pass
    with pytest.raises(ValueError, match="n must be >= 1"):
        with fh.threads(0):
            pass


def test_env_thread_setting_applies_at_import():
    """FASTHESS_NUM_THREADS is fasthess's own default: BLAS is left as it was."""
    code = ("import numpy, scipy.linalg\nfrom threadpoolctl import threadpool_info\n"
            "before = [i['num_threads'] for i in threadpool_info()]\n"
            "import fasthess\n"
            "assert [i['num_threads'] for i in threadpool_info()] == before\n"
            "print(fasthess.get_num_threads())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "FASTHESS_NUM_THREADS": "1"}, check=True,
                         timeout=300)
    assert out.stdout.split() == ["1"]


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
    ran_by = {}

    def task(i):
        ran_by[i] = threading.get_ident()
        time.sleep(0.3 if i == 0 else 0.001)  # piece 0: a thread descheduled meanwhile

    _runtime.run_pieces(task, 40, 2)
    assert sorted(ran_by) == list(range(40))
    stuck = ran_by[0]
    assert sum(tid != stuck for tid in ran_by.values()) >= 35


def test_run_pieces_runs_each_piece_once_and_reports_failures():
    for threads in (1, 2, 5):
        seen = []
        _runtime.run_pieces(seen.append, 17, threads)
        assert sorted(seen) == list(range(17))

    running = []

    def fail_at_5(i):
        running.append(i)
        time.sleep(0.002)
        if i == 5:
            raise ZeroDivisionError("piece 5")
        running.remove(i)

    with pytest.raises(ZeroDivisionError, match="piece 5"):
        _runtime.run_pieces(fail_at_5, 40, 3)
    assert running == [5]  # every other piece had finished when the error was raised


def test_an_interrupt_of_the_caller_waits_for_the_running_pieces():
    """A KeyboardInterrupt raised on the calling thread (here by its own piece) stops
    the handing out of pieces, waits for the piece another thread runs, then is
    raised: when run_pieces raises, nothing runs any more."""
    state = {"running": 0, "max_seen_after": None, "started": []}
    lock = threading.Lock()
    caller = threading.get_ident()

    def task(i):
        with lock:
            state["running"] += 1
            state["started"].append(i)
        try:
            if threading.get_ident() == caller and i > 0:
                raise KeyboardInterrupt
            time.sleep(0.05)
        finally:
            with lock:
                state["running"] -= 1

    with pytest.raises(KeyboardInterrupt):
        _runtime.run_pieces(task, 50, 2)
    assert state["running"] == 0
    assert len(state["started"]) < 50  # the rest were never handed out
    time.sleep(0.1)
    assert state["running"] == 0 and len(state["started"]) < 50


def test_concurrent_callers_each_run_all_their_pieces():
    seen = {0: [], 1: [], 2: []}

    def caller(k):
        def task(i):
            time.sleep(0.001)
            seen[k].append(i)
        _runtime.run_pieces(task, 30, 2)

    callers = [threading.Thread(target=caller, args=(k,)) for k in seen]
    for c in callers:
        c.start()
    for c in callers:
        c.join()
    assert all(sorted(v) == list(range(30)) for v in seen.values())


def test_idle_threads_use_no_cpu():
    """Between computations fasthess's threads wait on a queue (no polling), and so
    do BLAS's after their own short spin: the process uses no CPU while it waits."""
    _runtime.run_pieces(lambda i: time.sleep(0.001), 4, 2)
    time.sleep(0.3)  # (OpenBLAS's threads spin ~0.1 s after a call of theirs)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    time.sleep(0.3)
    assert time.process_time() - cpu0 < 0.05 * (time.perf_counter() - wall0)


def test_pieces_keep_nothing_of_a_finished_call():
    """What a call's pieces captured is freed when run_pieces returns (a worker that
    held on to its last job kept the features of a Hessian alive: +8% peak memory)."""
    import gc
    import weakref

    class Payload:
        pass

    payload = Payload()
    alive = weakref.ref(payload)
    joined = set()

    def piece(i, p=payload):
        joined.add(threading.get_ident())
        time.sleep(0.002)  # (long enough for the worker to join)

    _runtime.run_pieces(piece, 8, 2)
    assert len(joined) == 2
    del piece
    del payload
    gc.collect()
    assert alive() is None


@pytest.mark.parametrize("teacher_scale", [None, 0.2])
def test_results_do_not_depend_on_the_threads(monkeypatch, teacher_scale):
    """The same H and H V, bit for bit, with the budget 1, 2 or 3 (pieces of the
    features, the factor writes and the scatter on that many threads), on the chunked
    route and the route in blocks; both match the twin."""
    net = fh.TwoLayerNet.random(11, 13, n_out=2, activation="erf", rng=6)
    teacher = None if teacher_scale is None else perturbed(net, teacher_scale, seed=7)
    X = fh.gaussian_inputs(900, 11, rng=8)
    V = np.random.default_rng(9).standard_normal((net.n_params, 4))
    for name in ("MIN_MACS_PER_THREAD", "MIN_WRITES_PER_THREAD", "MIN_ACTIVATIONS_PER_THREAD"):
        monkeypatch.setattr(_config, name, 1)  # pieces even at this size
    expected = ref.hessian(net, X, teacher)
    for route in ({"SAMPLE_PARTS_BYTES": 0}, {"SAMPLE_BLOCK_BYTES": 100_000}):
        for name, value in route.items():
            monkeypatch.setattr(_config, name, value)
        out = {}
        for budget in (1, 2, 3):
            monkeypatch.setattr(_runtime, "_setting", [budget])
            monkeypatch.setattr(_runtime, "_cores", lambda: 3)
            out[budget] = (fh.hessian(net, X, teacher=teacher),
                           fh.hessian_operator(net, X, teacher=teacher) @ V)
        for budget in (2, 3):
            np.testing.assert_array_equal(out[budget][0], out[1][0])
            np.testing.assert_array_equal(out[budget][1], out[1][1])
        assert rel_err(out[1][0], expected) < RTOL_EXACT
        assert rel_err(out[1][1], expected @ V) < RTOL_EXACT


def test_concurrent_callers_get_the_results_of_a_lone_call():
    """Users' threads calling fasthess at once (each keeps its own small-problem
    buffer): every Hessian, product, population Hessian and eigsh result equals the
    one computed alone, bit for bit, also when the callers are told to use 2 threads."""
    problems = []
    for k, n in enumerate((6, 10, 16, 20)):
        net = fh.TwoLayerNet.random(n, n, n_out=1 + k % 2, activation="erf", rng=20 + k)
        problems.append((net, fh.gaussian_inputs(2 * net.n_params, n, rng=30 + k)))

    def compute(net, X):
        V = np.ones((net.n_params, 3))
        return (fh.hessian(net, X), fh.hessian_operator(net, X) @ V,
                fh.hessian(net, fh.POPULATION), fh.eigsh(net, X, k=2, v0=V[:, 0])[0])

    alone = [compute(net, X) for net, X in problems]
    mismatches, errors = [], []

    def caller(k, n_threads):
        try:
            with fh.threads(n_threads) if n_threads else _nothing():
                for _ in range(3):
                    got = compute(*problems[k % len(problems)])
                    for a, b in zip(got, alone[k % len(problems)]):
                        if not np.array_equal(a, b):
                            mismatches.append(k)
        except Exception as exc:  # reported below
            errors.append(exc)

    callers = [threading.Thread(target=caller, args=(k, None if k % 2 else min(2, _runtime._cores())))
               for k in range(6)]
    for c in callers:
        c.start()
    for c in callers:
        c.join()
    assert not errors and not mismatches


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_without_the_private_gemm_the_shared_blas_gives_the_same_answers():
    """Where the scipy-openblas32 wheel is missing, fasthess's GEMM is SciPy's BLAS (one
    product at a time, on BLAS's own threads): every route still matches the twin."""
    code = ("import sys; sys.modules['scipy_openblas32'] = None\n"
            "import numpy as np, fasthess as fh\n"
            "from fasthess._kernels.blas import PRIVATE\n"
            "from tests import reference as ref\n"
            "assert not PRIVATE.private\n"
            "for n in (6, 12, 45):\n"
            "    net = fh.TwoLayerNet.random(n, n, n_out=2, rng=n)\n"
            "    t = fh.TwoLayerNet.random(n, n, n_out=2, rng=n + 1)\n"
            "    X = fh.gaussian_inputs(2 * net.n_params if n < 45 else 300, n, rng=2)\n"
            "    for teacher in (None, t):\n"
            "        H = fh.hessian(net, X, teacher=teacher)\n"
            "        R = ref.hessian(net, X, teacher) if n < 45 else H\n"
            "        V = np.ones((net.n_params, 3))\n"
            "        HV = fh.hessian_operator(net, X, teacher=teacher) @ V\n"
            "        assert np.abs(H - R).max() <= 1e-12 * np.abs(R).max()\n"
            "        assert np.abs(HV - H @ V).max() <= 1e-11 * np.abs(H @ V).max()\n"
            "print('ok')\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=root, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == ["ok"]


def test_a_scipy_without_its_gemm_is_an_import_error(monkeypatch):
    """A SciPy build whose cython_blas lacks dgemm would end the process by a signal in
    the first kernel that calls it: fasthess says what is missing instead."""
    import types

    from fasthess._kernels import blas

    fake = types.SimpleNamespace(__pyx_capi__={"sgemm": object()})
    monkeypatch.setitem(sys.modules, "scipy.linalg.cython_blas", fake)
    import scipy.linalg

    monkeypatch.setattr(scipy.linalg, "cython_blas", fake, raising=False)
    with pytest.raises(ImportError, match="cython_blas lacks dgemm"):
        blas._scipy_gemm()


_THREADS_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, fasthess as fh
    out = {}
    for act in ("erf", "quadratic"):
        net = fh.TwoLayerNet.random(24, 24, n_out=2, activation=act, rng=0)
        X = fh.gaussian_inputs(2 * net.n_params, 24, rng=1)
        out[act + "_H"] = fh.hessian(net, X)
        out[act + "_ev"] = fh.eigenvalues(net, X, method="dense").eigenvalues
        out[act + "_op"] = fh.hessian_operator(net, X) @ np.ones(net.n_params)
    np.savez(sys.argv[1], **out)
""")


def _run_with_threads(n, path):
    env = {**os.environ, "FASTHESS_NUM_THREADS": str(n),
           "PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))}
    subprocess.run([sys.executable, "-c", _THREADS_SCRIPT, str(path)], check=True, env=env,
                   cwd=_ROOT, timeout=600)
    return dict(np.load(path))


def test_thread_count_guarantee(tmp_path):
    """The README's guarantee: bit-identical at a fixed thread setting (across
    processes); across settings, H and products within 16 eps of max|H| and eigenvalues
    within D eps of lambda_max (FASTHESS_NUM_THREADS changes fasthess's threads only,
    so even these agree bit for bit today; BLAS's own count may change LAPACK's bits)."""
    one = _run_with_threads(1, tmp_path / "a.npz")
    two = _run_with_threads(2, tmp_path / "b.npz")
    two_again = _run_with_threads(2, tmp_path / "c.npz")
    eps = np.finfo(np.float64).eps
    for key in one:
        np.testing.assert_array_equal(two[key], two_again[key])
        scale = np.max(np.abs(one[key]))
        bound = (one[key].size * eps if key.endswith("_ev") else 16 * eps) * scale
        assert np.max(np.abs(one[key] - two[key])) <= bound, key


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("order", ["C", "F"])
def test_the_private_eigensolver_matches_numpy(dtype, order):
    """The dense route's eigenvalues (LAPACK ?syevr of the private single-threaded
    OpenBLAS) against NumPy's eigvalsh in float64, for either memory order."""
    from fasthess._kernels.blas import PRIVATE, symmetric_eigenvalues

    if not PRIVATE.private:
        pytest.skip("no private OpenBLAS (scipy-openblas32) in this environment")
    A = np.random.default_rng(3).standard_normal((120, 120))
    A = (A + A.T).astype(dtype)
    expected = np.linalg.eigvalsh(A.astype(np.float64))
    got = symmetric_eigenvalues(np.array(A, order=order))
    tol = 1e-13 if dtype == np.float64 else 1e-5
    assert got.dtype == dtype and got.shape == expected.shape
    assert np.max(np.abs(got - expected)) <= tol * np.max(np.abs(expected))
    assert np.all(np.diff(got) >= 0)
