"""Tests of fasthess.population (the P -> infinity Hessian, THEORY.md f).

Independent references, all written here:

* ``reference_hessian``: the population Hessian tile by tile in the *projected* form
  E[f(h) x x^T] = E[f] (I - V V^T) + V E[f z z^T] V^T, V an orthonormal basis (SVD)
  of span(w_j, w_k), with a tensor Gauss-Hermite rule over z in that plane (no Stein
  identities, no closed forms); for relu, whose integrands jump, the same projected
  form integrated in polar coordinates (Gauss-Legendre between the wedge edges) with
  the exact radial moments.
* Monte Carlo: J^T J / P from sampled inputs (fasthess.hessian), whose error must fall
  like P^{-1/2} (a bias in H_inf would flatten the slope).
* Closed forms: bivariate Gaussian moments (Isserlis) for polynomials, the linear
  spectrum eig(W2 W2^T) + eig(W1^T W1), and the effective-parameter counts.
"""
from __future__ import annotations

import itertools
import math

import numba
import numpy as np
import pytest
from scipy.special import roots_hermitenorm, roots_legendre

import fasthess as fh
from fasthess import _config
from fasthess.population import population_coefficients
from fasthess.population_hessian import (
    assemble_dense,
    dense_bytes,
    hessian_matmat,
    population_trace,
)
from fasthess.population_objective import population_gradient, population_loss
from fasthess.theory import effective_parameters, linear_spectrum_exact

# Named tolerances (relative to the largest entry of the compared array).
# Exact routes (closed forms, exact polynomial quadrature) against a converged
# reference: round-off of sums of O(Nh Ni) terms.
RTOL_EXACT = 1e-13
# tanh / custom activations: the doubling rule promises 1e-12 relative.
RTOL_QUADRATURE = 1e-12
# The structured product against dense H @ V (both exact, different summation order).
RTOL_PRODUCT = 1e-13
# float32 results against float64 (24-bit mantissa; O(Nh) terms per entry).
RTOL_FLOAT32 = 1e-5

# Gauss-Hermite nodes per axis of the reference: tanh(|w| z) needs ~n = 60 |w|^2 for
# 1e-13 (measured: |w| = 1: 256 nodes, |w| = 2.3: 1024), the test weights have |w| < 3;
# erf integrands (entire functions) converge to 1e-15 by 150 nodes at |w| < 3.
QUAD_NODES_REFERENCE = 2048
QUAD_NODES_REFERENCE_ERF = 300
# Tensor nodes with weight below this are left out (outside |z| ~ 13.6, mass e^{-92}).
REFERENCE_WEIGHT_FLOOR = 1e-40


def _custom(name):
    """User activations (Numba-jitted g, g', g'') for the quadrature route."""
    if name == "tanh":
        g = numba.njit(lambda z: math.tanh(z))
        dg = numba.njit(lambda z: 1.0 - math.tanh(z) ** 2)
        d2g = numba.njit(lambda z: -2.0 * math.tanh(z) * (1.0 - math.tanh(z) ** 2))
        return fh.CustomActivation(g, dg, d2g, name="my_tanh")
    if name == "erf":
        s = 1.0 / math.sqrt(2.0)
        c = math.sqrt(2.0 / math.pi)
        g = numba.njit(lambda z: math.erf(z * s))
        dg = numba.njit(lambda z: c * math.exp(-0.5 * z * z))
        d2g = numba.njit(lambda z: -z * c * math.exp(-0.5 * z * z))
        return fh.CustomActivation(g, dg, d2g, name="my_erf")
    if name == "abs":  # a kink: Gauss-Hermite cannot converge to 1e-12
        g = numba.njit(lambda z: abs(z))
        dg = numba.njit(lambda z: 1.0 if z > 0 else -1.0)
        d2g = numba.njit(lambda z: 0.0)
        return fh.CustomActivation(g, dg, d2g, name="abs")
    raise ValueError(name)


ACTIVATIONS = {
    "linear": "linear",
    "quadratic": "quadratic",
    "z^2": fh.Polynomial([0, 0, 1]),
    "cubic": fh.Polynomial([0.3, 1.0, 0.5, -0.2]),
    "erf": "erf",
    "tanh": "tanh",
    "relu": "relu",
    "custom_tanh": "custom_tanh",
}


def _activation(key):
    act = ACTIVATIONS[key]
    return _custom("tanh") if act == "custom_tanh" else act


def _rtol(key):
    return RTOL_QUADRATURE if key in ("tanh", "custom_tanh", "relu") else RTOL_EXACT


# ----------------------------------------------------------------------- references
def _plane(wj, wk):
    """An orthonormal basis (Ni x r, r = min(2, Ni)) of a plane containing wj and wk."""
    u, _, _ = np.linalg.svd(np.stack([wj, wk], axis=1), full_matrices=True)
    return u[:, : min(2, wj.size)]


def _gauss_hermite(n, dim):
    x, w = roots_hermitenorm(n)
    w = w / w.sum()
    grids = np.meshgrid(*([x] * dim), indexing="ij")
    weights = np.prod(np.meshgrid(*([w] * dim), indexing="ij"), axis=0).ravel()
    keep = weights >= REFERENCE_WEIGHT_FLOOR
    return np.stack([g.ravel()[keep] for g in grids], axis=1), weights[keep]


def _pair_moments_gh(act, a, b, n):
    """E over z ~ N(0, I_r) of the pair integrands, by a tensor Gauss-Hermite rule.

    h_j = a . z, h_k = b . z. Returns E[f], E[f z z^T] (f = g'_j g'_k), E[g'_j g_k z],
    E[g_j g_k].
    """
    z, w = _gauss_hermite(n, a.size)
    hj, hk = z @ a, z @ b
    g0j, g1j, _ = (v.ravel() for v in act.evaluate(hj[None, :]))
    g0k, g1k, _ = (v.ravel() for v in act.evaluate(hk[None, :]))
    f = w * g1j * g1k
    return f.sum(), (z * f[:, None]).T @ z, z.T @ (w * g1j * g0k), np.sum(w * g0j * g0k)


def _pair_moments_relu(a, b):
    """The same moments for relu in polar coordinates (quad over the angle).

    Every relu integrand here is positively homogeneous in z of degree p (p = 0 for
    1 1, p = 2 for 1 1 z z^T, 1 relu z and relu relu), so E[F] = M_p / (2 pi) int F(e)
    dphi with the radial moments M_0 = 1, M_2 = int r^3 e^{-r^2/2} dr = 2.
    """
    edges = []
    for v in (a, b):
        if np.linalg.norm(v) > 0:
            t = math.atan2(v[1], v[0])
            edges += [(t + s * math.pi / 2) % (2 * math.pi) for s in (-1, 1)]
    bounds = sorted([0.0, 2 * math.pi] + edges)
    nodes, weights = roots_legendre(24)

    def mean(fun, degree):
        # between the edges the integrand is a trigonometric polynomial of degree <= 4:
        # 24-point Gauss-Legendre on each piece is exact to round-off
        radial = 1.0 if degree == 0 else 2.0
        val = 0.0
        for lo, hi in itertools.pairwise(bounds):
            half = 0.5 * (hi - lo)
            val += half * sum(w * fun(lo + half * (1 + t)) for t, w in zip(nodes, weights))
        return radial * val / (2 * math.pi)

    def e(phi):
        return np.array([math.cos(phi), math.sin(phi)])

    def on(v, phi):
        return 1.0 if v @ e(phi) > 0 else 0.0

    ef = mean(lambda p: on(a, p) * on(b, p), 0)
    ezz = np.array([[mean(lambda p, r=r, s=s: on(a, p) * on(b, p) * e(p)[r] * e(p)[s], 2)
                     for s in range(2)] for r in range(2)])
    egz = np.array([mean(lambda p, r=r: on(a, p) * max(b @ e(p), 0.0) * e(p)[r], 2)
                    for r in range(2)])
    egg = mean(lambda p: max(a @ e(p), 0.0) * max(b @ e(p), 0.0), 2)
    return ef, ezz, egz, egg


def reference_hessian(net, n_nodes=None):
    """The dense population Hessian from the projected form (module docstring)."""
    w1 = net.w1.astype(np.float64)
    w2 = net.w2.astype(np.float64)
    n_hidden, n_in = w1.shape
    n_out = w2.shape[0]
    act = net.activation
    if n_nodes is None:
        n_nodes = QUAD_NODES_REFERENCE_ERF if act.name == "erf" else QUAD_NODES_REFERENCE
    d1 = n_hidden * n_in
    H = np.zeros((net.n_params, net.n_params))
    Q = w2.T @ w2
    for j in range(n_hidden):
        for k in range(n_hidden):
            V = _plane(w1[j], w1[k])
            a, b = V.T @ w1[j], V.T @ w1[k]
            if act.name == "relu":
                ef, ezz, egz, egg = _pair_moments_relu(a, b)
            else:
                n = act.degree + 2 if act.is_polynomial and act.code >= 0 else n_nodes
                ef, ezz, egz, egg = _pair_moments_gh(act, a, b, n)
            tile = ef * (np.eye(n_in) - V @ V.T) + V @ ezz @ V.T
            H[j * n_in:(j + 1) * n_in, k * n_in:(k + 1) * n_in] = Q[j, k] * tile
            vec = V @ egz  # E[g'(h_j) g(h_k) x]
            for m in range(n_out):
                H[j * n_in:(j + 1) * n_in, d1 + m * n_hidden + k] = w2[m, j] * vec
                H[d1 + m * n_hidden + k, j * n_in:(j + 1) * n_in] = w2[m, j] * vec
                H[d1 + m * n_hidden + j, d1 + m * n_hidden + k] = egg
    return H


def rel_err(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def dense(net, dtype=np.float64):
    coefs = population_coefficients(net, dtype=dtype)
    return assemble_dense(coefs, net, np.empty((net.n_params,) * 2, dtype=dtype)), coefs


def make_net(key, n_in, n_hidden, n_out, seed=0):
    return fh.TwoLayerNet.random(n_in, n_hidden, n_out=n_out, activation=_activation(key),
                                 rng=seed)


# ----------------------------------------------------------------------- dense vs references
@pytest.mark.parametrize("shape", [(5, 3, 1), (3, 4, 2), (4, 4, 1)])
def test_erf_closed_form_matches_projected_quadrature(shape):
    net = make_net("erf", *shape, seed=1)
    H, coefs = dense(net)
    assert coefs.method == "closed form (erf)"
    assert rel_err(H, reference_hessian(net)) <= RTOL_EXACT


@pytest.mark.parametrize("key", list(ACTIVATIONS))
@pytest.mark.parametrize("n_out", [1, 3])
def test_dense_matches_reference(key, n_out):
    net = make_net(key, 4, 3, n_out, seed=2)
    H, _ = dense(net)
    assert rel_err(H, reference_hessian(net)) <= _rtol(key)


def test_erf_quadrature_route_matches_closed_form():
    """A CustomActivation equal to erf goes through the doubling quadrature."""
    net = make_net("erf", 4, 5, 2, seed=3)
    custom = fh.TwoLayerNet(net.w1, net.w2, _custom("erf"))
    H, _ = dense(net)
    Hq, coefs = dense(custom)
    assert coefs.quadrature_nodes is not None and coefs.quadrature_change <= _config.POP_QUAD_RTOL
    assert rel_err(Hq, H) <= RTOL_QUADRATURE


def test_polynomial_moments_closed_form():
    """z + z^2: the coefficients are bivariate Gaussian moments (Isserlis)."""
    net = make_net("quadratic", 5, 4, 1, seed=4)
    coefs = population_coefficients(net)
    C = net.w1 @ net.w1.T
    d = np.diag(C)
    scale = np.max(np.abs(C))
    # g' = 1 + 2z, g'' = 2, g''' = 0
    np.testing.assert_allclose(coefs.a, 1 + 4 * C, rtol=0, atol=1e-14 * 5 * scale)
    np.testing.assert_allclose(coefs.c, np.broadcast_to(2 * d[None, :], C.shape), rtol=0,
                               atol=1e-14 * scale)
    G = C + np.outer(d, d) + 2 * C**2  # E[(h_j + h_j^2)(h_k + h_k^2)]
    np.testing.assert_allclose(coefs.G, G, rtol=0, atol=1e-14 * np.max(np.abs(G)))
    np.testing.assert_allclose(coefs.m12, 4.0, rtol=0, atol=1e-13)
    np.testing.assert_allclose(coefs.m11, 0.0, rtol=0, atol=1e-13)


def test_relu_closed_forms_match_polar_reference_per_pair():
    """The relu pair coefficients against quad in polar coordinates, a range of angles."""
    rng = np.random.default_rng(5)
    for theta in [0.0, 1e-9, 1e-4, 0.3, 1.5, 2.9, math.pi - 1e-6, math.pi]:
        a = np.array([1.3, 0.0])
        b = 0.7 * np.array([math.cos(theta), math.sin(theta)])
        rot = np.linalg.qr(rng.standard_normal((2, 2)))[0]
        net = fh.TwoLayerNet(np.stack([rot @ a, rot @ b]), np.array([[0.6, -1.1]]), "relu")
        H, _ = dense(net)
        assert np.all(np.isfinite(H))
        assert rel_err(H, reference_hessian(net)) <= RTOL_QUADRATURE, theta


# ----------------------------------------------------------------------- product
@pytest.mark.parametrize("key", list(ACTIVATIONS))
@pytest.mark.parametrize("n_out", [1, 3])
def test_product_matches_dense(key, n_out):
    net = make_net(key, 6, 5, n_out, seed=6)
    H, coefs = dense(net)
    rng = np.random.default_rng(7)
    V = rng.standard_normal((net.n_params, 4))
    assert rel_err(hessian_matmat(coefs, net, V), H @ V) <= RTOL_PRODUCT
    v = rng.standard_normal(net.n_params)
    hv = hessian_matmat(coefs, net, v)
    assert hv.shape == (net.n_params,)
    assert rel_err(hv, H @ v) <= RTOL_PRODUCT


def test_product_blocks_over_columns(monkeypatch):
    """Blocking over columns (small work budget) gives the same product."""
    net = make_net("erf", 7, 6, 2, seed=8)
    H, coefs = dense(net)
    V = np.random.default_rng(9).standard_normal((net.n_params, 7))
    monkeypatch.setattr(_config, "POP_PRODUCT_BLOCK_BYTES", 2 * 6 * 6 * 8 * 3)  # 3 columns a block
    assert rel_err(hessian_matmat(coefs, net, V), H @ V) <= RTOL_PRODUCT
    assert rel_err(hessian_matmat(coefs, net, np.asfortranarray(V)), H @ V) <= RTOL_PRODUCT


def test_product_larger_network():
    net = make_net("erf", 30, 25, 2, seed=10)
    H, coefs = dense(net)
    V = np.random.default_rng(11).standard_normal((net.n_params, 3))
    assert rel_err(hessian_matmat(coefs, net, V), H @ V) <= RTOL_PRODUCT


# ----------------------------------------------------------------------- structure
@pytest.mark.parametrize("key", list(ACTIVATIONS))
def test_symmetric_psd_and_trace(key):
    net = make_net(key, 5, 4, 2, seed=12)
    H, coefs = dense(net)
    assert np.array_equal(H, H.T)
    ev = np.linalg.eigvalsh(H)
    assert ev[0] >= -1e-14 * ev[-1]
    tr = np.trace(H)
    assert abs(population_trace(coefs, net) - tr) <= 1e-13 * abs(tr)
    assert abs(population_trace(None, net) - tr) <= 1e-13 * abs(tr)


def test_hidden_unit_permutation():
    """Permuting the hidden units permutes the rows/columns of H_inf accordingly."""
    net = make_net("tanh", 4, 5, 2, seed=13)
    perm = np.array([3, 0, 4, 1, 2])
    pnet = fh.TwoLayerNet(net.w1[perm], net.w2[:, perm], "tanh")
    H, _ = dense(net)
    Hp, _ = dense(pnet)
    n_in, n_hidden, n_out = net.shape
    idx = np.concatenate([(perm[:, None] * n_in + np.arange(n_in)).ravel(),
                          (n_hidden * n_in + np.arange(n_out)[:, None] * n_hidden
                           + perm[None, :]).ravel()])
    assert rel_err(Hp, H[np.ix_(idx, idx)]) <= RTOL_QUADRATURE


# ----------------------------------------------------------------------- degenerate pairs
def _degenerate_w1(n_in, angles, seed):
    """Rows: a base row, rows at the given angles from it, its duplicate, its negative,
    one nearly antiparallel row and a zero row."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal(n_in) / math.sqrt(n_in)
    perp = rng.standard_normal(n_in)
    perp -= (perp @ base) / (base @ base) * base
    perp *= np.linalg.norm(base) / np.linalg.norm(perp)
    rows = [base] + [1.3 * (math.cos(t) * base + math.sin(t) * perp) for t in angles]
    rows += [0.8 * base, -base, -(math.cos(1e-7) * base + math.sin(1e-7) * perp),
             np.zeros(n_in)]
    return np.array(rows)


@pytest.mark.parametrize("key", ["erf", "relu", "tanh", "quadratic", "linear"])
def test_degenerate_pairs_are_accurate(key):
    """j = k, (anti)parallel, nearly parallel and zero rows: finite and accurate."""
    w1 = _degenerate_w1(4, [1e-12, 1e-7, 3e-3, 0.5], seed=14)
    w2 = np.random.default_rng(15).standard_normal((2, w1.shape[0]))
    net = fh.TwoLayerNet(w1, w2, _activation(key))
    H, coefs = dense(net)
    assert np.all(np.isfinite(H))
    assert rel_err(H, reference_hessian(net)) <= _rtol(key)
    V = np.random.default_rng(16).standard_normal((net.n_params, 3))
    assert rel_err(hessian_matmat(coefs, net, V), H @ V) <= RTOL_PRODUCT
    if key == "relu":  # nearly parallel relu pairs take the orthonormal-basis route
        assert coefs.par_indices.size > 0


def test_nearly_parallel_is_continuous():
    """H_inf at angle t differs from H_inf at angle 0 by O(t) (no 1/t blow-up)."""
    for key in ["relu", "erf", "tanh"]:
        mats = []
        for t in [0.0, 1e-10]:
            w1 = _degenerate_w1(3, [t], seed=17)[:2]
            mats.append(dense(fh.TwoLayerNet(w1, np.array([[0.5, -0.9]]), key))[0])
        assert rel_err(mats[1], mats[0]) <= 1e-9, key


# ----------------------------------------------------------------------- Monte Carlo
MC_SIZES = [1_000, 10_000, 100_000, 1_000_000]
# Independent sample sets per size, so that the mean squared error at each size has
# a small relative spread (the last size dominates the noise of the slope).
MC_REPLICATES = [64, 16, 4, 2]
# Slope band: the slope fitted this way (2 networks x 15 seeds per activation,
# measured once) had means -0.50 to -0.51, standard deviations 0.02 (erf, tanh) to
# 0.05 (z + z^2, whose features have heavy tails), extremes -0.60 and -0.40; the band
# is at least 4 standard deviations wide on each side. A relative bias b in H_inf
# adds b^2 to every squared error and flattens the slope: b = 1e-2 gives about -0.25.
MC_SLOPE_BAND = (-0.7, -0.3)


@pytest.mark.parametrize("key", ["erf", "relu", "quadratic", "tanh"])
def test_monte_carlo_converges_like_inverse_sqrt(key):
    """||J^T J / P - H_inf||_F / ||H_inf||_F falls like P^{-1/2} over P = 1e3 .. 1e6."""
    net = make_net(key, 4, 3, 2, seed=18)
    H_inf, _ = dense(net)
    rng = np.random.default_rng(19)
    mean_sq = []
    for p, reps in zip(MC_SIZES, MC_REPLICATES):
        sq = [np.linalg.norm(fh.hessian(net, rng.standard_normal((p, 4))) - H_inf) ** 2
              for _ in range(reps)]
        mean_sq.append(np.mean(sq) / np.linalg.norm(H_inf) ** 2)
    slope = np.polyfit(np.log(MC_SIZES), 0.5 * np.log(mean_sq), 1)[0]
    assert MC_SLOPE_BAND[0] <= slope <= MC_SLOPE_BAND[1], (slope, np.sqrt(mean_sq))


# ----------------------------------------------------------------------- ranks and spectra
RANK_CASES = [("quadratic", n, n, 1) for n in range(5, 9)] + [
    ("z^2", 5, 5, 1), ("z^2", 4, 6, 1), ("linear", 6, 3, 1), ("linear", 4, 6, 2),
    ("relu", 4, 3, 1), ("relu", 5, 4, 2), ("erf", 5, 5, 1), ("erf", 3, 4, 2),
]


@pytest.mark.parametrize("key,n_in,n_hidden,n_out", RANK_CASES)
def test_rank_equals_effective_parameters(key, n_in, n_hidden, n_out):
    net = make_net(key, n_in, n_hidden, n_out, seed=20)
    H, _ = dense(net)
    ev = np.linalg.eigvalsh(H)
    result = fh.numerical_rank(ev)
    predicted = effective_parameters(_activation(key), n_in, n_hidden, n_out, n_samples=None)
    assert result.rank == predicted
    if predicted < net.n_params:
        # zero modes come out at ~1e-16 lambda_max (eigh's backward error); the smallest
        # genuine eigenvalues are >= 1e-8 lambda_max here (measured gaps 8.3-15.5 decades)
        assert result.gap_decades >= 6, result
    else:  # full rank: the smallest eigenvalue sits far above round-off
        assert ev[0] >= 1e-9 * ev[-1], ev[0] / ev[-1]


@pytest.mark.parametrize("shape", [(5, 3, 1), (4, 6, 2), (6, 2, 3)])
def test_linear_spectrum_closed_form(shape):
    net = make_net("linear", *shape, seed=21)
    H, _ = dense(net)
    ev = np.linalg.eigvalsh(H)
    exact = linear_spectrum_exact(net.w1, net.w2, None)
    expected = np.sort(np.concatenate([np.zeros(net.n_params - exact.size), exact]))
    assert np.max(np.abs(ev - expected)) <= 1e-13 * ev[-1]


# ----------------------------------------------------------------------- quadrature rule
def test_quadrature_node_count_is_converged_and_needed(monkeypatch):
    net = make_net("tanh", 4, 6, 1, seed=22)
    coefs = population_coefficients(net)
    n = coefs.quadrature_nodes
    assert coefs.quadrature_change <= _config.POP_QUAD_RTOL
    # twice the nodes changes nothing beyond the tolerance ...
    monkeypatch.setattr(_config, "POP_QUAD_START_NODES", 2 * n)
    finer = population_coefficients(net)
    assert finer.quadrature_nodes == 2 * n
    H, _ = dense(net)
    Hf = assemble_dense(finer, net, np.empty_like(H))
    assert rel_err(H, Hf) <= RTOL_QUADRATURE
    # ... and half the nodes was not enough (the doubling really ran)
    assert n > 32
    monkeypatch.setattr(_config, "POP_QUAD_START_NODES", n // 2)
    monkeypatch.setattr(_config, "POP_QUAD_MAX_NODES", n)
    with pytest.raises(ValueError, match="did not converge"):
        population_coefficients(net)


def test_custom_equals_builtin_tanh():
    net = make_net("tanh", 5, 4, 2, seed=23)
    custom = fh.TwoLayerNet(net.w1, net.w2, _custom("tanh"))
    H, _ = dense(net)
    Hc, _ = dense(custom)
    assert rel_err(Hc, H) <= 1e-14


def test_non_smooth_custom_activation_refused(monkeypatch):
    monkeypatch.setattr(_config, "POP_QUAD_MAX_NODES", 128)
    net = fh.TwoLayerNet.random(3, 2, activation=_custom("abs"), rng=24)
    with pytest.raises(ValueError, match="'abs'.*did not converge"):
        population_coefficients(net)


# ----------------------------------------------------------------------- precision
@pytest.mark.parametrize("key", ["erf", "relu", "tanh"])
def test_float32(key):
    net = make_net(key, 5, 4, 3, seed=25)
    H64, c64 = dense(net)
    H32, c32 = dense(net, np.float32)
    assert c32.dtype == np.float32 and H32.dtype == np.float32
    np.testing.assert_array_equal(c32.a, c64.a.astype(np.float32))
    assert rel_err(H32, H64) <= RTOL_FLOAT32
    V = np.random.default_rng(26).standard_normal((net.n_params, 2))
    out = hessian_matmat(c32, net, V)
    assert out.dtype == np.float32
    assert rel_err(out, H64 @ V) <= RTOL_FLOAT32
    net32 = fh.TwoLayerNet(net.w1.astype(np.float32), net.w2.astype(np.float32), key)
    assert rel_err(dense(net32)[0], H64) <= RTOL_FLOAT32  # float32 weights, float64 math


# ----------------------------------------------------------------------- errors
def test_bad_input_errors():
    net = make_net("erf", 3, 2, 1)
    other = make_net("erf", 4, 2, 1)
    coefs = population_coefficients(net)
    D = net.n_params
    with pytest.raises(TypeError, match="net must be a fasthess.TwoLayerNet"):
        population_coefficients(np.eye(3))
    with pytest.raises(TypeError, match="dtype"):
        population_coefficients(net, dtype=np.int32)
    with pytest.raises(ValueError, match="coefs belong to a network of shape"):
        hessian_matmat(coefs, other, np.ones(other.n_params))
    with pytest.raises(TypeError, match="coefs must be PopulationCoefficients"):
        assemble_dense(None, net, np.empty((D, D)))
    with pytest.raises(ValueError, match=r"out must have shape \(D, D\)"):
        assemble_dense(coefs, net, np.empty((D, D + 1)))
    with pytest.raises(TypeError, match="out must have the coefficients' dtype"):
        assemble_dense(coefs, net, np.empty((D, D), dtype=np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        assemble_dense(coefs, net, np.empty((D, D), order="F"))
    with pytest.raises(ValueError, match=r"V must have shape \(D,\) or \(D, m\)"):
        hessian_matmat(coefs, net, np.ones(D + 1))
    with pytest.raises(ValueError, match="V contains non-finite"):
        hessian_matmat(coefs, net, np.full(D, np.nan))
    with pytest.raises(TypeError, match="V must hold real floating-point"):
        hessian_matmat(coefs, net, np.ones(D, dtype=int))
    assert dense_bytes(net, np.float32) == D * D * 4


def test_overflowing_activation_refused():
    # exp(z^4) overflows at |z| > 5.1, inside the nodes' range
    exp = fh.CustomActivation(numba.njit(lambda z: math.exp(z**4)),
                              numba.njit(lambda z: 4 * z**3 * math.exp(z**4)),
                              numba.njit(lambda z: (12 * z**2 + 16 * z**6) * math.exp(z**4)),
                              name="expsq")
    net = fh.TwoLayerNet.random(3, 2, activation=exp, rng=27)
    with pytest.raises(ValueError, match="'expsq'.*not all finite"):
        population_coefficients(net)


# ----------------------------------------------------------------------- off the optimum
OFF_OPTIMUM_KEYS = ["erf", "relu", "tanh", "cubic", "linear"]


def _student_teacher_pair(key, seed):
    teacher = make_net(key, 4, 3, 2, seed=seed)
    rng = np.random.default_rng(seed + 1)
    theta = teacher.parameters() + 0.3 * rng.standard_normal(teacher.n_params)
    return fh.TwoLayerNet.from_parameters(theta, like=teacher), teacher


@pytest.mark.parametrize("key", OFF_OPTIMUM_KEYS)
def test_population_loss_and_gradient_match_monte_carlo(key):
    """Within 5 standard errors of the sample means (standard errors from 20 batches)."""
    student, teacher = _student_teacher_pair(key, seed=40)
    X = fh.gaussian_inputs(400_000, 4, rng=41)
    batches = np.split(X, 20)
    losses = np.array([fh.loss(student, Xb, teacher) for Xb in batches])
    grads = np.array([fh.gradient(student, Xb, teacher) for Xb in batches])
    loss = population_loss(student, teacher)
    grad = population_gradient(student, teacher)
    assert loss > 0
    assert abs(losses.mean() - loss) <= 5 * losses.std(ddof=1) / math.sqrt(20)
    z = np.abs(grads.mean(axis=0) - grad) / (grads.std(axis=0, ddof=1) / math.sqrt(20))
    assert np.max(z) <= 5, z


@pytest.mark.parametrize("key", OFF_OPTIMUM_KEYS)
def test_population_gradient_is_the_derivative_of_the_loss(key):
    """Central differences of population_loss (step 1e-5: error ~1e-10 relative)."""
    student, teacher = _student_teacher_pair(key, seed=42)
    grad = population_gradient(student, teacher)
    theta = student.parameters()
    eps = 1e-5
    fd = np.empty_like(theta)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = eps
        plus = fh.TwoLayerNet.from_parameters(theta + e, like=student)
        minus = fh.TwoLayerNet.from_parameters(theta - e, like=student)
        fd[i] = (population_loss(plus, teacher) - population_loss(minus, teacher)) / (2 * eps)
    assert rel_err(grad, fd) <= 1e-8


def test_population_loss_linear_closed_form():
    """Linear networks: L = 1/2 ||W2_s W1_s - W2_t W1_t||_F^2 exactly."""
    student, teacher = _student_teacher_pair("linear", seed=43)
    V = student.w2 @ student.w1 - teacher.w2 @ teacher.w1
    assert abs(population_loss(student, teacher) - 0.5 * np.sum(V**2)) <= 1e-14 * np.sum(V**2)
    grad = np.concatenate([(student.w2.T @ V).ravel(), (V @ student.w1.T).ravel()])
    assert rel_err(population_gradient(student, teacher), grad) <= 1e-14


def test_population_loss_at_the_optimum_and_refusals():
    net = make_net("erf", 4, 3, 2)
    assert population_loss(net, None) == 0.0 == population_loss(net, net)
    assert not np.any(population_gradient(net, fh.TwoLayerNet(net.w1, net.w2, "erf")))
    with pytest.raises(NotImplementedError, match="POPULATION.*activation"):
        population_loss(net, fh.TwoLayerNet(net.w1, net.w2, "tanh"))
    with pytest.raises(ValueError, match="teacher has shape.*n_in and n_out must match"):
        population_gradient(net, make_net("erf", 5, 3, 2))
    with pytest.raises(ValueError, match="teacher has shape.*n_in and n_out must match"):
        population_loss(net, make_net("erf", 4, 3, 1))
    with pytest.raises(TypeError, match="teacher must be"):
        population_loss(net, "teacher")
