"""fork (multiprocessing and joblib on Linux, pytest-xdist): after sampled, population and
eigsh calls, and while a computation runs in another thread, a forked child computes
the same results, its BLAS thread counts are the parent's, and Pool.map completes."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")

_SCRIPT = r"""
import multiprocessing as mp, sys, threading
import numpy as np
import fasthess as fh
from threadpoolctl import threadpool_info

def blas_counts():
    return sorted((i["filepath"], i["num_threads"]) for i in threadpool_info()
                  if i["user_api"] == "blas" and "scipy_openblas32" not in i["filepath"])

net = fh.TwoLayerNet.random(12, 10, n_out=2, rng=0)
X = fh.gaussian_inputs(2 * net.n_params, 12, rng=1)
big = fh.TwoLayerNet.random(30, 30, rng=2)
Xbig = fh.gaussian_inputs(2 * big.n_params, 30, rng=3)
v0 = np.ones(net.n_params)

def compute(_=None):
    return (fh.hessian(net, X), fh.hessian(big, Xbig), fh.hessian(net, fh.POPULATION),
            fh.hessian_operator(big, fh.POPULATION) @ np.ones((big.n_params, 2)),
            fh.eigsh(net, X, k=3, v0=v0)[0], blas_counts(), fh.get_num_threads())

expected = compute()  # sampled, population and eigsh before the fork
stop = threading.Event()

def busy():  # a computation running in another thread while the children are forked
    while not stop.is_set():
        fh.hessian(big, Xbig)
        fh.hessian_operator(big, fh.POPULATION) @ np.ones((big.n_params, 3))

if sys.argv[1] == "while-computing":
    t = threading.Thread(target=busy)
    t.start()
with mp.get_context("fork").Pool(2) as pool:
    results = pool.map(compute, range(4))
stop.set()
for got in results:
    for a, b in zip(got[:5], expected[:5]):
        assert np.array_equal(a, b)
    assert got[5] == expected[5], (got[5], expected[5])  # the child's BLAS counts
    assert got[6] == expected[6]
print("OK", len(results))
"""


@pytest.mark.parametrize("when", ["after-calls", "while-computing"])
def test_forked_children_compute_the_parents_results(when):
    run = subprocess.run([sys.executable, "-c", _SCRIPT, when], capture_output=True, text=True,
                         cwd=ROOT, timeout=600,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(
                             filter(None, [ROOT, os.environ.get("PYTHONPATH")]))})
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == ["OK", "4"]
