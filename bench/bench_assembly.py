"""Dense assembly, blocks, matrix-free products and the NTK: time, peak memory,
fraction of the DGEMM rate, and first-call (compile) time."""
import numpy as np

import fasthess as fh
from .harness import dgemm_fraction, product_dgemm_fraction

from .common import ACTIVATIONS, SAMPLE_RULES, SIZES, SMALL_SIZES, problem


class Assembly:
    params = (ACTIVATIONS, SIZES, SAMPLE_RULES)
    param_names = ["activation", "n", "samples"]
    timeout = 600

    def setup(self, activation, n, rule):
        self.net, self.X = problem(activation, n, rule)
        fh.hessian(self.net, self.X[:8])  # compile / load from cache

    def time_hessian(self, activation, n, rule):
        fh.hessian(self.net, self.X)

    def peakmem_hessian(self, activation, n, rule):
        fh.hessian(self.net, self.X)

    def time_hessian_blocks(self, activation, n, rule):
        fh.hessian_blocks(self.net, self.X)


class SmallAssembly:
    """Small networks (sweeps run thousands): per-call overhead, and the plain NumPy
    J^T J / P a user would write instead (J from broadcasting), in the same process."""

    params = (["erf"], SMALL_SIZES, ["2D"])
    param_names = ["activation", "n", "samples"]
    def setup(self, activation, n, rule):
        from .harness import _route

        self.net, self.X = problem(activation, n, rule)
        self.numpy_jtj = _route("numpy_jtj", self.net, self.X)
        # no NumPy call here: asv runs setup before each sample, and a multithreaded
        # NumPy product leaves its OpenBLAS worker polling a core for ~0.1 s, in which
        # fh.hessian read 3.95 ms at N = 20 and 24.5 ms at N = 30 (one thread's speed)
        fh.hessian(self.net, self.X)

    def time_hessian(self, activation, n, rule):
        fh.hessian(self.net, self.X)

    def time_numpy_jtj(self, activation, n, rule):
        self.numpy_jtj()


class AssemblyOffOptimum:
    params = (["erf"], SIZES, ["2D"])
    param_names = ["activation", "n", "samples"]

    def setup(self, activation, n, rule):
        self.net, self.X = problem(activation, n, rule)
        self.teacher = fh.perturb(self.net, 0.1, rng=3)
        fh.hessian(self.net, self.X[:8], teacher=self.teacher)

    def time_hessian_with_residual(self, activation, n, rule):
        fh.hessian(self.net, self.X, teacher=self.teacher)


class DgemmFraction:
    """Achieved fraction of the DGEMM rate on the unique-entry FLOP count.

    At N = 20 the asv run before fasthess ran its own threads read 0.05 (0.68 at N = 40). The
    benchmark timed fh.hessian right after its NumPy reference DGEMM, whose BLAS
    threads kept spinning for ~0.1 s, while fasthess then ran two Numba (OpenMP)
    threads and two SciPy BLAS threads on the same two cores: measured with that
    code, N = 20 took 105 ms right after a NumPy 1000^3 GEMM against 7.9 ms warm, and
    this benchmark read 0.025 (0.66 at N = 40, where a call outlasts the spinning).
    Now fasthess runs its own pieces on single-threaded BLAS, and each method is
    timed warm, after 0.2 s of untimed calls (the same code then read 0.41 at N = 20
    and 0.90 at N = 40 on a loaded machine). Later, `asv run --quick` read 0.28, 0.76
    and 0.98 at N = 20, 40, 60: at N = 20 the unique-entry multiply-adds are about a
    third of the call, the rest is work that does not shrink with them (activations,
    per-sample factors, the scatter into H, thread handoffs). Since N up to ~40 is
    contracted by sample parts in cache-sized blocks (`asv run --python=same -b
    DgemmFraction -a processes=1`): 0.49, 0.77 and 0.87 at N = 20, 40, 60.
    """

    params = (["erf"], [20, 40, 60], ["2D"])
    param_names = ["activation", "n", "samples"]
    unit = "fraction of DGEMM rate"

    def setup(self, activation, n, rule):
        self.net, self.X = problem(activation, n, rule)
        fh.hessian(self.net, self.X[:8])

    def track_dgemm_fraction(self, activation, n, rule):
        return dgemm_fraction(self.net, self.X, repeat=5)


class MatrixFree:
    params = (ACTIVATIONS, SIZES, SAMPLE_RULES)
    param_names = ["activation", "n", "samples"]

    def setup(self, activation, n, rule):
        self.net, self.X = problem(activation, n, rule)
        self.op = fh.hessian_operator(self.net, self.X)
        self.v = np.ones(self.net.n_params)
        self.V = np.ones((self.net.n_params, 8))
        self.op.matvec(self.v)

    def time_matvec(self, activation, n, rule):
        self.op.matvec(self.v)

    def time_matmat_8(self, activation, n, rule):
        self.op.matmat(self.V)

    def peakmem_operator_and_matvec(self, activation, n, rule):
        fh.hessian_operator(self.net, self.X).matvec(self.v)


class MatrixFreeProducts:
    """hessian_operator @ V with 20 columns (the block size of eigsh / SLQ batches):
    time and fraction of the DGEMM rate on its 4 P Ni Nh FLOPs per column."""

    params = (["erf"], [20, 40], ["2D"])
    param_names = ["activation", "n", "samples"]

    def setup(self, activation, n, rule):
        self.net, self.X = problem(activation, n, rule)
        self.op = fh.hessian_operator(self.net, self.X)
        self.V = np.random.default_rng(0).standard_normal((self.net.n_params, 20))
        self.op @ self.V

    def time_matmat_20(self, activation, n, rule):
        self.op @ self.V

    def track_product_dgemm_fraction(self, activation, n, rule):
        return product_dgemm_fraction(self.net, self.X, columns=20, repeat=5)

    track_product_dgemm_fraction.unit = "fraction of DGEMM rate"


class NTK:
    params = (ACTIVATIONS, SIZES, ["D/4"])
    param_names = ["activation", "n", "samples"]

    def setup(self, activation, n, rule):
        self.net, self.X = problem(activation, n, rule)
        fh.ntk(self.net, self.X[:4])

    def time_ntk(self, activation, n, rule):
        fh.ntk(self.net, self.X)

    def peakmem_ntk(self, activation, n, rule):
        fh.ntk(self.net, self.X)


class FirstCall:
    """Compile time: a fresh interpreter with an empty Numba cache, first hessian call.

    Compared with ``Assembly.time_hessian`` (steady state) this is what a user pays
    once per installation; with the disk cache warm, see ``timeraw_cached_call``.
    """

    timeout = 600

    def timeraw_first_call_compile(self):
        return """
import os, tempfile
os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp()
import fasthess as fh
net = fh.TwoLayerNet.random(10, 10, activation="erf", rng=0)
X = fh.gaussian_inputs(50, 10, rng=1)
fh.hessian(net, X)
"""

    def timeraw_cached_call(self):
        return """
import fasthess as fh
net = fh.TwoLayerNet.random(10, 10, activation="erf", rng=0)
X = fh.gaussian_inputs(50, 10, rng=1)
fh.hessian(net, X)
"""
