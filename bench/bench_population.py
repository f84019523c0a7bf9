"""The population Hessian (P -> infinity, THEORY.md f): coefficients, dense assembly,
the structured product at N = Ni = Nh = 100, 300, 1000 (it should grow as N^3), its
fraction of the DGEMM rate, and eigsh / Lanczos on it at D ~ 1e6.

numpy is imported first, as in a user's script (DESIGN.md "Speed as users get it").
"""
import numpy as np

import fasthess as fh
from fasthess.population import population_coefficients
from fasthess.population_hessian import assemble_dense, hessian_matmat

from .common import THREADS
from .harness import spread, timed_with_dgemm_limit

PRODUCT_SIZES = [100, 300, 1000]


def _network(activation, n, n_out=1):
    fh.set_num_threads(THREADS)
    return fh.TwoLayerNet.random(n, n, n_out=n_out, activation=activation, rng=0)


def product_macs(n_in, n_hidden, n_out):
    """Multiply-adds of the GEMMs of one column: three Nh x Nh x Ni, four Nh x Nh x No."""
    return n_hidden * n_hidden * (3 * n_in + 4 * n_out)


class PopulationProduct:
    """H_inf @ v and H_inf @ V (4 columns), matrix-free, erf."""

    params = (["erf"], PRODUCT_SIZES)
    param_names = ["activation", "n"]
    timeout = 600

    def setup(self, activation, n):
        self.net = _network(activation, n)
        self.coefs = population_coefficients(self.net)
        rng = np.random.default_rng(1)
        self.v = rng.standard_normal(self.net.n_params)
        self.V = rng.standard_normal((self.net.n_params, 4))
        hessian_matmat(self.coefs, self.net, self.v)  # compile / load from cache

    def time_matvec(self, activation, n):
        hessian_matmat(self.coefs, self.net, self.v)

    def time_matmat_4(self, activation, n):
        hessian_matmat(self.coefs, self.net, self.V)

    def peakmem_matvec(self, activation, n):
        hessian_matmat(self.coefs, self.net, self.v)


class PopulationProductGemmFraction:
    """Achieved fraction of the DGEMM rate of one product on its GEMM multiply-adds."""

    params = (["erf"], PRODUCT_SIZES)
    param_names = ["activation", "n"]
    unit = "fraction of DGEMM rate"
    timeout = 600

    def setup(self, activation, n):
        self.net = _network(activation, n)
        self.coefs = population_coefficients(self.net)
        self.v = np.random.default_rng(1).standard_normal(self.net.n_params)

    def track_gemm_fraction(self, activation, n):
        macs = product_macs(*self.net.shape)
        times, ref_macs = timed_with_dgemm_limit(
            {"product": lambda: hessian_matmat(self.coefs, self.net, self.v)}, repeat=3)
        return spread(macs * times["dgemm"] / ref_macs / times["product"])["median"]


class PopulationCoefficients:
    """The Nh x Nh pair coefficients (closed forms, exact polynomial quadrature)."""

    params = (["erf", "relu", "quadratic"], PRODUCT_SIZES)
    param_names = ["activation", "n"]
    timeout = 600

    def setup(self, activation, n):
        self.net = _network(activation, n)
        population_coefficients(_network(activation, 3))  # compile / load from cache

    def time_coefficients(self, activation, n):
        population_coefficients(self.net)

    def peakmem_coefficients(self, activation, n):
        population_coefficients(self.net)


class PopulationQuadrature:
    """tanh: 2-D Gauss-Hermite with the node count doubled until converged."""

    params = (["tanh"], [30, 100])
    param_names = ["activation", "n"]
    timeout = 600

    def setup(self, activation, n):
        self.net = _network(activation, n)
        population_coefficients(_network(activation, 3))

    def time_coefficients(self, activation, n):
        population_coefficients(self.net)


class PopulationDense:
    """The dense D x D H_inf: O(D^2) writes from the coefficients."""

    params = (["erf", "relu"], [20, 40])
    param_names = ["activation", "n"]

    def setup(self, activation, n):
        self.net = _network(activation, n, n_out=2)
        self.coefs = population_coefficients(self.net)
        self.out = np.empty((self.net.n_params,) * 2)
        assemble_dense(self.coefs, self.net, self.out)

    def time_assemble_dense(self, activation, n):
        assemble_dense(self.coefs, self.net, self.out)


class PopulationEigsh:
    """scipy eigsh (k = 3, largest) on the matrix-free H_inf, accuracy checked in the call."""

    params = (["erf"], [100, 1000])
    param_names = ["activation", "n"]
    timeout = 600
    number = 1
    repeat = 1
    rounds = 1
    warmup_time = 0

    def setup(self, activation, n):
        from scipy.sparse.linalg import LinearOperator

        self.net = _network(activation, n)
        self.coefs = population_coefficients(self.net)
        D = self.net.n_params
        self.op = LinearOperator((D, D), dtype=np.float64,
                                 matvec=lambda v: hessian_matmat(self.coefs, self.net, v),
                                 matmat=lambda V: hessian_matmat(self.coefs, self.net, V))
        self.v0 = np.random.default_rng(2).standard_normal(D)

    def time_eigsh_k3(self, activation, n):
        from scipy.sparse.linalg import eigsh

        w, v = eigsh(self.op, k=3, which="LA", v0=self.v0)
        residual = np.linalg.norm(self.op.matmat(v) - v * w, axis=0)
        assert np.all(residual <= 1e-8 * w.max())


class PopulationReducedSpectrum:
    """All D eigenvalues of H_inf by the span reduction (THEORY.md g), erf, Nh = 100, No = 1:
    D = 100 Ni + 100, up to 1e8. Off the optimum (a teacher of 100 units) r = 200."""

    params = ([1_000, 10_000, 100_000, 1_000_000], [False, True])
    param_names = ["n_in", "teacher"]
    timeout = 1200
    number = 1
    repeat = 1
    rounds = 1
    warmup_time = 0

    def setup(self, n_in, teacher):
        fh.set_num_threads(THREADS)
        self.net = fh.TwoLayerNet.random(n_in, 100, rng=0)
        self.teacher = fh.TwoLayerNet.random(n_in, 100, rng=1) if teacher else None
        fh.eigenvalues(fh.TwoLayerNet.random(20, 3, rng=0), fh.POPULATION)  # compile

    def time_eigenvalues(self, n_in, teacher):
        spec = fh.eigenvalues(self.net, fh.POPULATION, teacher=self.teacher)
        assert spec.method == "reduced" and len(spec) == self.net.n_params

    def peakmem_eigenvalues(self, n_in, teacher):
        fh.eigenvalues(self.net, fh.POPULATION, teacher=self.teacher)


class PopulationOffOptimumProduct:
    """H_inf @ v off the optimum (teacher of Nh units) against at the optimum, Ni = Nh = n."""

    params = ([100, 300, 1000], [False, True])
    param_names = ["n", "teacher"]
    timeout = 600

    def setup(self, n, teacher):
        self.net = _network("erf", n)
        other = fh.TwoLayerNet.random(n, n, rng=1) if teacher else None
        self.op = fh.hessian_operator(self.net, fh.POPULATION, teacher=other)
        self.v = np.random.default_rng(1).standard_normal(self.net.n_params)
        self.op @ self.v  # compile / load from cache

    def time_matvec(self, n, teacher):
        self.op @ self.v


class SmallestNonzeroPopulation:
    """fh.smallest_nonzero(net, POPULATION, k=3) past the matrix-free threshold (D >= 3000):
    LOBPCG on the operator. A return to the dense route shows as a jump in time (D^3)
    and in peak memory (8 D^2 bytes: 107 MB at N = 60, 0.8 GB at N = 99);
    ``python bench/smallest_scale.py --method dense`` times that route."""

    params = (["erf"], [60, 99])
    param_names = ["activation", "n"]
    timeout = 600

    def setup(self, activation, n):
        self.net = _network(activation, n)
        small = _network(activation, 12)
        fh.smallest_nonzero(small, fh.POPULATION, k=3, method="lobpcg", rng=0)  # compile

    def time_smallest_nonzero(self, activation, n):
        fh.smallest_nonzero(self.net, fh.POPULATION, k=3, rng=0)

    def peakmem_smallest_nonzero(self, activation, n):
        fh.smallest_nonzero(self.net, fh.POPULATION, k=3, rng=0)
