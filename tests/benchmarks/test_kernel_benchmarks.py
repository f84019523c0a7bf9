"""pytest-benchmark micro-benchmarks of the hot kernels.

Timed:   python -m pytest tests/benchmarks --benchmark-enable --benchmark-only
In CI they run once, untimed (``--benchmark-disable`` is in the default options),
so CI proves they still run; each also checks its result, so a fast wrong kernel fails.
"""
import importlib

import numpy as np
import pytest

import fasthess as fh
from fasthess._features import check_point, features
from fasthess._kernels.activation import ERF, apply_activation
from fasthess._kernels.assembly import ntk_combine, outer_rows, pair_products, scatter_w1w1

from .. import reference

N = 30


@pytest.fixture(scope="module")
def problem():
    net = fh.TwoLayerNet.random(N, N, activation="erf", rng=0)
    X = fh.gaussian_inputs(2 * net.n_params, N, rng=1)
    return net, X


def test_bench_pair_products(benchmark, problem):
    _, X = problem
    out = np.empty((X.shape[0], N * (N + 1) // 2))
    benchmark(pair_products, X, out)
    a, b = np.triu_indices(N)
    np.testing.assert_array_equal(out, X[:, a] * X[:, b])


def test_bench_outer_rows(benchmark, problem):
    net, X = problem
    U = X @ net.w1.T
    out = np.empty((X.shape[0], N * N))
    benchmark(outer_rows, U, X, out)
    np.testing.assert_array_equal(out, (U[:, :, None] * X[:, None, :]).reshape(X.shape[0], -1))


def test_bench_scatter_w1w1(benchmark, problem):
    net, _ = problem
    m = N * (N + 1) // 2
    rng = np.random.default_rng(0)
    S = rng.standard_normal((m, m))
    Q = net.w2.T @ net.w2
    first, second = np.triu_indices(N)
    out = np.empty((N * N, N * N))
    benchmark(scatter_w1w1, S, np.arange(m), first, second, Q, 1.0, N, out)
    np.testing.assert_array_equal(out, out.T)
    ia, ib = np.triu_indices(N)
    pair = np.empty((N, N), dtype=np.int64)
    pair[ia, ib] = np.arange(m)
    pair[ib, ia] = np.arange(m)
    j, jp, i, ip = 2, 5, 3, 1
    assert out[j * N + i, jp * N + ip] == Q[j, jp] * S[pair[j, jp], pair[i, ip]]


def test_bench_activation_erf(benchmark, problem):
    net, X = problem
    pre = X @ net.w1.T
    outs = [np.empty_like(pre) for _ in range(3)]
    benchmark(apply_activation, ERF, np.zeros(1), pre, *outs)
    from scipy.special import erf

    np.testing.assert_allclose(outs[0], erf(pre / np.sqrt(2)), rtol=1e-14, atol=1e-15)


def test_bench_ntk_combine(benchmark, problem):
    net, X = problem
    Xs = X[:400]
    K0 = np.ones((400, 400))
    XX, AA = Xs @ Xs.T, np.eye(400)

    def run():
        K = K0.copy()
        ntk_combine(K, XX, AA, 1, 0.5)
        return K

    K = benchmark(run)
    np.testing.assert_allclose(K, 0.5 * (XX + AA))


def test_bench_dense_hessian(benchmark, problem):
    net, X = problem
    H = benchmark(fh.hessian, net, X)
    np.testing.assert_allclose(H, reference.hessian_at_optimum(net, X), rtol=0,
                               atol=1e-12 * np.max(np.abs(H)))


def test_bench_w1w1_pass(benchmark, problem):
    net, X = problem
    h = importlib.import_module("fasthess.assembly")
    f = features(check_point(net, X))
    out = np.empty((N * N, N * N))
    benchmark(h.assemble_w1w1, f, out)
    expected = reference.hessian_at_optimum(net, X)[: N * N, : N * N]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12 * np.max(np.abs(expected)))


def test_bench_operator_matvec(benchmark, problem):
    net, X = problem
    op = fh.hessian_operator(net, X)
    v = np.ones(net.n_params)
    y = benchmark(op.matvec, v)
    H = reference.hessian_at_optimum(net, X)
    np.testing.assert_allclose(y, H @ v, rtol=0, atol=1e-12 * np.max(np.abs(H @ v)))
