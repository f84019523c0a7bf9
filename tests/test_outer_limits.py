"""Limits set outside are honoured: inside threadpoolctl.threadpool_limits(1), with
OMP_NUM_THREADS=1 or OPENBLAS_NUM_THREADS=1, after fh.set_num_threads(1) or
numba.set_num_threads(1), a fasthess workload uses one core (its CPU time is at most
1.15 times its wall time), and in a Dask task on a threaded worker it uses the thread
the task runs on."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# CPU time / wall time of a workload of assembly, products, population and eigensolves
# that runs on two cores when it may (on one machine: sampled N = 30, N = 12 off the
# optimum, the population product at Ni = Nh = 150)
_WORKLOAD = r"""
import sys, time
import numpy as np
SETUP
import fasthess as fh
net = fh.TwoLayerNet.random(30, 30, rng=0)
X = fh.gaussian_inputs(2 * net.n_params, 30, rng=1)
small = fh.TwoLayerNet.random(12, 12, n_out=2, rng=2)
teacher = fh.TwoLayerNet.random(12, 12, n_out=2, rng=3)
Xs = fh.gaussian_inputs(2 * small.n_params, 12, rng=4)
pop = fh.TwoLayerNet.random(150, 150, rng=5)
V = np.ones((net.n_params, 40))
Vp = np.ones((pop.n_params, 4))

def work():
    fh.hessian(net, X)
    fh.hessian_operator(net, X) @ V
    fh.hessian(small, Xs, teacher=teacher)
    fh.hessian_operator(pop, fh.POPULATION) @ Vp
    fh.eigenvalues(small, Xs)

work()  # compiled
INSIDE
cpu0, wall0 = time.process_time(), time.perf_counter()
while time.perf_counter() - wall0 < 1.5:
    work()
print(fh.get_num_threads(), (time.process_time() - cpu0) / (time.perf_counter() - wall0))
"""

LIMITS = {
    "threadpool_limits": ("from threadpoolctl import threadpool_limits", "threadpool_limits(1)", {}),
    "OMP_NUM_THREADS": ("", "", {"OMP_NUM_THREADS": "1"}),
    "OPENBLAS_NUM_THREADS": ("", "", {"OPENBLAS_NUM_THREADS": "1"}),
    "fh.set_num_threads": ("", "fh.set_num_threads(1)", {}),
    "numba.set_num_threads": ("import numba", "numba.set_num_threads(1)", {}),
}


def _run(setup, inside, env):
    code = _WORKLOAD.replace("SETUP", setup).replace("INSIDE", inside)
    env = {**{k: v for k, v in os.environ.items()
              if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "FASTHESS_NUM_THREADS")},
           "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
           **env}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    threads, ratio = run.stdout.split()
    return int(threads), float(ratio)


@pytest.mark.parametrize("limit", list(LIMITS))
def test_a_limit_set_outside_keeps_fasthess_on_one_core(limit):
    setup, inside, env = LIMITS[limit]
    if limit == "threadpool_limits":  # a scope around the measured calls
        inside = "limiter = threadpool_limits(1)"
    threads, ratio = _run(setup, inside, env)
    assert threads == 1
    assert ratio <= 1.15, ratio


def test_a_dask_task_uses_the_thread_it_runs_on(monkeypatch):
    """A worker with two threads runs two tasks at once; each fasthess call in a task
    uses one thread (not every core plus helpers), and gets the lone call's bits."""
    distributed = pytest.importorskip("distributed")
    import numpy as np

    import fasthess as fh
    from fasthess import _runtime

    monkeypatch.setattr(_runtime, "_setting", [None])  # the default (see test_runtime)

    net = fh.TwoLayerNet.random(16, 16, rng=6)
    X = fh.gaussian_inputs(2 * net.n_params, 16, rng=7)
    expected = fh.hessian(net, X)

    def task(_):
        return fh.get_num_threads(), fh.hessian(net, X)

    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
                            dashboard_address=":0") as client:
        results = client.gather(client.map(task, range(4)))
    assert [n for n, _ in results] == [1] * 4
    assert all(np.array_equal(H, expected) for _, H in results)
