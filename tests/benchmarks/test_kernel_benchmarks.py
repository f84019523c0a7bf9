"""pytest-benchmark micro-benchmarks of the hot kernels.

Timed:   python -m pytest tests/benchmarks --benchmark-enable --benchmark-only
In CI they run once, untimed (``--benchmark-disable`` is in the default options),
so CI proves they still run; each also checks its result, so a fast wrong kernel fails.
"""

import numpy as np
import pytest

import fasthess as fh
from fasthess._features import check_point, features
from fasthess._kernels.activation import ERF, apply_activation
from fasthess._kernels.assembly import chunk_factors, ntk_combine, scatter_w1w1
from fasthess._kernels.products import hvp_middle

from .. import reference

N = 30


@pytest.fixture(scope="module")
def problem():
    net = fh.TwoLayerNet.random(N, N, activation="erf", rng=0)
    X = fh.gaussian_inputs(2 * net.n_params, N, rng=1)
    return net, X


def test_bench_chunk_factors(benchmark, problem):
    """A chunk's factors, samples last: pairs of G' and of x, and the w1w2 rows."""
    net, X = problem
    f = features(check_point(net, X))
    c, m = 256, N * (N + 1) // 2
    xt, gt, rhst, g2t = np.empty((N, c)), np.empty((N, c)), np.empty((N, c)), np.empty((0, c))
    up, xp, rows = np.empty((m, c)), np.empty((m, c)), np.empty((N * N, c))
    empty = np.empty((0, 0))
    s0 = 100
    benchmark(chunk_factors, X, f.G1, f.A, empty, empty, f.w2, s0, True, xt, gt, rhst, g2t,
              up, xp, rows, 0, c)
    a, b = np.triu_indices(N)
    Xc, Gc = X[s0:s0 + c], f.G1[s0:s0 + c]
    np.testing.assert_array_equal(xp, (Xc[:, a] * Xc[:, b]).T)
    np.testing.assert_array_equal(up, (Gc[:, a] * Gc[:, b]).T)
    np.testing.assert_array_equal(rows, (Gc[:, :, None] * Xc[:, None, :]).reshape(c, -1).T)
    np.testing.assert_array_equal(rhst, f.A[s0:s0 + c].T)


def test_bench_scatter_w1w1(benchmark, problem):
    net, _ = problem
    m = N * (N + 1) // 2
    rng = np.random.default_rng(0)
    S = rng.standard_normal((m, m))
    Q = net.w2.T @ net.w2
    out = np.empty((N * N, N * N))
    benchmark(scatter_w1w1, S, np.empty((0, 0)), N, Q, 1.0, N, False, out)
    np.testing.assert_array_equal(out, out.T)
    ia, ib = np.triu_indices(N)
    pair = np.empty((N, N), dtype=np.int64)
    pair[ia, ib] = np.arange(m)
    pair[ib, ia] = np.arange(m)
    for j, jp, i, ip in [(2, 5, 3, 1), (7, 7, 0, 29), (29, 0, 4, 4)]:
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


def test_bench_hvp_middle(benchmark, problem):
    """The per-sample middle of H V at the optimum: xv -> G' (W2^T u), u = J V."""
    net, X = problem
    f = features(check_point(net, X))
    m, c = 20, 128
    rng = np.random.default_rng(1)
    xv0 = rng.standard_normal((c, N, m))
    xvt0 = np.ascontiguousarray(xv0.transpose(1, 2, 0).reshape(N * m, c))
    V2 = rng.standard_normal((1, N, m))
    empty = np.empty((0, 0))
    gt, at, rt, g2t = np.empty((N, c)), np.empty((N, c)), np.empty((0, c)), np.empty((0, c))
    xvt, ut, out2 = xvt0.copy(), np.empty((m, c)), np.zeros((1, N, m))

    def run():
        xvt[...] = xvt0
        hvp_middle(xvt, 0, f.G1, f.A, empty, empty, f.w2, V2, gt, at, rt, g2t, ut, out2)

    benchmark(run)
    G1, A, b = f.G1[:c], f.A[:c], net.w2[0]
    u_ref = np.einsum("pj,pjm->pm", G1 * b, xv0) + A @ V2[0]
    np.testing.assert_allclose(ut.T, u_ref, rtol=1e-12, atol=1e-12)
    back = (G1 * b)[:, :, None] * u_ref[:, None, :]
    np.testing.assert_allclose(xvt, back.transpose(1, 2, 0).reshape(N * m, c),
                               rtol=1e-12, atol=1e-12)
    assert not out2.any()  # the residual part is zero at the optimum


def test_bench_operator_matvec(benchmark, problem):
    net, X = problem
    op = fh.hessian_operator(net, X)
    v = np.ones(net.n_params)
    y = benchmark(op.matvec, v)
    H = reference.hessian_at_optimum(net, X)
    np.testing.assert_allclose(y, H @ v, rtol=0, atol=1e-12 * np.max(np.abs(H @ v)))


def test_bench_operator_matmat_20(benchmark, problem):
    net, X = problem
    op = fh.hessian_operator(net, X)
    V = np.random.default_rng(2).standard_normal((net.n_params, 20))
    Y = benchmark(op.matmat, V)
    H = reference.hessian_at_optimum(net, X)
    np.testing.assert_allclose(Y, H @ V, rtol=0, atol=1e-12 * np.max(np.abs(H @ V)))
