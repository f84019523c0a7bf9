"""Eigen-routes side by side, so the "auto" choice is justified by numbers."""
import numpy as np

import fasthess as fh

from .common import ACTIVATIONS, SAMPLE_RULES, SIZES, problem


class Eigenvalues:
    params = (ACTIVATIONS, SIZES, SAMPLE_RULES, ["auto", "dense", "ntk", "linear"])
    param_names = ["activation", "n", "samples", "method"]
    timeout = 600

    def setup(self, activation, n, rule, method):
        if method == "linear" and activation != "linear":
            raise NotImplementedError("the linear route applies to linear networks only")
        self.net, self.X = problem(activation, n, rule)
        if method == "ntk" and self.X.shape[0] >= self.net.n_params:
            raise NotImplementedError("the NTK route is only the cheaper side when P < D")
        fh.eigenvalues(self.net, self.X[:8], method=method if method != "ntk" else "dense")

    def time_eigenvalues(self, activation, n, rule, method):
        fh.eigenvalues(self.net, self.X, method=method)

    def peakmem_eigenvalues(self, activation, n, rule, method):
        fh.eigenvalues(self.net, self.X, method=method)


class Svd:
    params = (["erf"], [10, 20, 40], ["2D"])
    param_names = ["activation", "n", "samples"]

    def setup(self, activation, n, rule):
        self.net, self.X = problem(activation, n, rule)
        fh.eigenvalues(self.net, self.X[:8], method="svd")

    def time_svd_route(self, activation, n, rule):
        fh.eigenvalues(self.net, self.X, method="svd")


class FewEigenvalues:
    params = (["erf", "quadratic"], SIZES, SAMPLE_RULES)
    param_names = ["activation", "n", "samples"]
    timeout = 600

    def setup(self, activation, n, rule):
        self.net, self.X = problem(activation, n, rule)
        fh.hessian_operator(self.net, self.X[:8]).matvec(np.ones(self.net.n_params))

    def time_eigsh_top6(self, activation, n, rule):
        ev = fh.eigsh(self.net, self.X, k=6, which="LA", return_eigenvectors=False, rng=0)
        assert np.all(ev > 0)  # accuracy is part of the timed contract

    def time_smallest_nonzero(self, activation, n, rule):
        fh.smallest_nonzero(self.net, self.X, k=1)


class Density:
    params = (["erf"], SIZES, ["2D"])
    param_names = ["activation", "n", "samples"]
    timeout = 600

    def setup(self, activation, n, rule):
        self.net, self.X = problem(activation, n, rule)
        fh.spectral_density(self.net, self.X[:8], n_probes=2, n_steps=5, rng=0)

    def time_slq_density(self, activation, n, rule):
        d = fh.spectral_density(self.net, self.X, n_probes=10, n_steps=40, rng=0)
        assert abs(np.trapezoid(d.density, d.grid) - 1) < 1e-2

    def peakmem_slq_density(self, activation, n, rule):
        fh.spectral_density(self.net, self.X, n_probes=10, n_steps=40, rng=0)
