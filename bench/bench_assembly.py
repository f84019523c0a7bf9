"""Dense assembly, blocks, matrix-free products and the NTK: time, peak memory,
fraction of the DGEMM rate, and first-call (compile) time."""
import numpy as np

import fasthess as fh
from fasthess.benchmarking import dgemm_fraction

from .common import ACTIVATIONS, SAMPLE_RULES, SIZES, problem


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
    """Achieved fraction of the DGEMM rate on the unique-entry FLOP count."""

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
