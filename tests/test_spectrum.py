"""Spectra: every eigenvalue route and the matrix-free solvers against the eigenvalues of
the independent twin Hessian (tests/reference.py), the numerical rank against theory, SLQ
against exact spectra, and the trace."""
import math
import operator
import re

import numpy as np
import pytest
import scipy.sparse.linalg
from scipy.stats import wasserstein_distance

import fasthess as fh
from fasthess import theory
from fasthess.rank import RankResult
from fasthess.smallest import smallest_nonzero
from fasthess.extremes import eigsh
from fasthess.spectrum import METHODS, Spectrum, eigenvalues

numerical_rank, spectral_density, trace = fh.numerical_rank, fh.spectral_density, fh.trace

from . import reference as ref
from .conftest import (ACTIVATION_AND_CUSTOM_IDS, ACTIVATIONS_AND_CUSTOM, HUTCHINSON_SIGMAS,
                       MIN_RANK_GAP_DECADES, RTOL_EIGSH, RTOL_EIGSH_VECTORS, RTOL_FLOAT32,
                       RTOL_RITZ, RTOL_ROUTE, RTOL_TRACE, perturbed)

N_IN, N_HIDDEN = 4, 5


def _net(activation, n_out, seed=1):
    return fh.TwoLayerNet.random(N_IN, N_HIDDEN, n_out=n_out, activation=activation, rng=seed)


def _samples(net, regime):
    """P with P*No < D ("ntk" side) or P*No > D ("dense" side)."""
    d = net.n_params
    return 8 if regime == "small" else 2 * d // net.n_out + 10


def _dense_reference(net, X, teacher=None):
    """eigvalsh of the twin Hessian, never of the code under test."""
    return ref.eigenvalues(net, X, teacher)


def _is_linear(activation):
    return activation == "linear"


# ---------------------------------------------------------------------- exact routes
@pytest.mark.parametrize("regime", ["small", "large"])
@pytest.mark.parametrize("n_out", [1, 2])
@pytest.mark.parametrize("activation", ACTIVATIONS_AND_CUSTOM, ids=ACTIVATION_AND_CUSTOM_IDS)
def test_every_route_matches_dense_eigh(activation, n_out, regime):
    net = _net(activation, n_out)
    X = fh.gaussian_inputs(_samples(net, regime), N_IN, rng=2)
    expected = _dense_reference(net, X)
    top = expected[-1]
    routes = ["dense", "ntk", "svd", "auto"] + (["linear"] if _is_linear(activation) else [])
    for method in routes:
        s = eigenvalues(net, X, method=method)
        assert isinstance(s, Spectrum)
        assert len(s) == net.n_params
        assert np.all(np.diff(s.eigenvalues) >= 0), method
        err = np.max(np.abs(s.eigenvalues - expected)) / top
        assert err < RTOL_ROUTE, (method, err)
    auto = eigenvalues(net, X).method
    if _is_linear(activation):
        assert auto == "linear"
    else:
        assert auto == ("ntk" if regime == "small" else "dense")


@pytest.mark.parametrize("n_out", [1, 2])
@pytest.mark.parametrize("activation", ACTIVATIONS_AND_CUSTOM, ids=ACTIVATION_AND_CUSTOM_IDS)
def test_off_optimum_dense_and_auto(activation, n_out):
    teacher = _net(activation, n_out)
    student = perturbed(teacher, 0.3, seed=4)
    X = fh.gaussian_inputs(30, N_IN, rng=5)
    expected = _dense_reference(student, X, teacher)
    for method in ("dense", "auto"):
        s = eigenvalues(student, X, teacher=teacher, method=method)
        assert s.method == "dense"
        assert np.max(np.abs(s.eigenvalues - expected)) < RTOL_ROUTE * np.max(np.abs(expected))
    for method in ("ntk", "svd", "linear"):
        with pytest.raises(ValueError, match=f"method='{method}' is exact only at the optimum"):
            eigenvalues(student, X, teacher=teacher, method=method)


def test_auto_routes_documented_regimes():
    X = fh.gaussian_inputs(100, N_IN, rng=0)
    lin = _net("linear", 2)
    erf = _net("erf", 1)
    assert eigenvalues(lin, X).method == "linear"                       # any P
    assert eigenvalues(lin, X[:3]).method == "linear"
    assert eigenvalues(erf, X[:10]).method == "ntk"                     # 10 < D = 25
    assert eigenvalues(erf, X).method == "dense"                        # 100 > D
    assert eigenvalues(erf, X, teacher=perturbed(erf, 0.1, 0)).method == "dense"
    assert eigenvalues(lin, X, teacher=perturbed(lin, 0.1, 0)).method == "dense"
    # teacher equal to the student is the optimum
    assert eigenvalues(erf, X[:10], teacher=erf).method == "ntk"


def test_linear_route_pads_structural_zeros_and_scaled_linear():
    # g = 2 z is linear too: the route rescales the weights (J is 2x that of g = z)
    for act in ("linear", fh.Polynomial([0.0, 2.0])):
        net = fh.TwoLayerNet.random(3, 6, n_out=2, activation=act, rng=3)   # D = 30
        X = fh.gaussian_inputs(40, 3, rng=4)
        s = eigenvalues(net, X, method="linear")
        expected = _dense_reference(net, X)
        assert np.max(np.abs(s.eigenvalues - expected)) < RTOL_ROUTE * expected[-1]
        assert np.count_nonzero(s.eigenvalues) <= net.n_out * net.n_in


def test_spectrum_is_array_like_and_timed():
    net = _net("erf", 1)
    X = fh.gaussian_inputs(40, N_IN, rng=0)
    s = eigenvalues(net, X, method="dense")
    a = np.asarray(s)
    assert a is s.eigenvalues and a.shape == (net.n_params,)
    assert s[-1] == a[-1] and np.array_equal(s[:3], a[:3])
    assert np.asarray(s, dtype=np.float32).dtype == np.float32
    assert s.assembly_seconds >= 0 and s.solve_seconds >= 0
    assert "method='dense'" in repr(s)
    s32 = eigenvalues(net, X, method="auto", dtype=np.float32)
    assert s32.eigenvalues.dtype == np.float32
    expected = _dense_reference(net, X)
    assert np.max(np.abs(s32.eigenvalues - expected)) < RTOL_FLOAT32 * expected[-1]


def test_svd_route_resolves_eigenvalues_below_eigh_resolution():
    # erf with Nh >> Ni: full rank D (THEORY.md c), smallest eigenvalue ~1e-20 relative,
    # where eigh of H (resolution ~1e-16 relative) returns noise.
    net = fh.TwoLayerNet.random(2, 14, activation="erf", rng=0)        # D = 42
    X = fh.gaussian_inputs(4 * net.n_params, 2, rng=1)
    svd = eigenvalues(net, X, method="svd")
    dense = eigenvalues(net, X, method="dense")
    J = ref.jacobian(net, X)
    expected = np.sort(np.linalg.svd(J, compute_uv=False) ** 2 / X.shape[0])
    top = expected[-1]
    assert expected[0] < 1e-18 * top            # the case really is below eigh's reach
    # singular values carry absolute error ~eps * s_max, so an eigenvalue lambda has relative
    # error ~2 eps sqrt(lambda_max / lambda): 1e-6 at 1e-20 relative
    rel = np.abs(svd.eigenvalues - expected) / expected
    assert np.all(rel < 2e-5 + 4e-16 * np.sqrt(top / expected)), rel.max()
    assert np.abs(dense.eigenvalues[0] - expected[0]) > 10 * expected[0]
    # rank: svd sees all D with a clean gap; dense cannot
    r_svd = numerical_rank(svd)
    with pytest.warns(fh.UndeterminedRankWarning, match="method='svd'"):
        r_dense = numerical_rank(dense)      # and says so, with the remedy
    assert r_svd.rank == net.n_params == theory.effective_parameters("erf", 2, 14)
    assert r_svd.gap_decades == math.inf and not r_svd.undetermined
    assert r_dense.rank < net.n_params and r_dense.undetermined


def test_svd_rank_of_tiny_quadratic_coefficient_matches_theory():
    # g = z + 1e-10 z^2: the quadratic tangent directions have eigenvalues ~1e-20 relative,
    # invisible to eigh (rank Ni, as if linear) but not to the svd (rank Ni (Ni + 3) / 2)
    act = fh.Quadratic(1e-10)
    net = fh.TwoLayerNet.random(3, 3, activation=act, rng=0)
    X = fh.gaussian_inputs(4 * net.n_params, 3, rng=1)
    r_svd = numerical_rank(eigenvalues(net, X, method="svd"))
    assert r_svd.rank == theory.effective_parameters(act, 3, 3) == 9
    assert r_svd.gap_decades > MIN_RANK_GAP_DECADES
    assert numerical_rank(eigenvalues(net, X, method="dense")).rank < 9


# ---------------------------------------------------------------------- eigsh
@pytest.mark.parametrize("which", ["LA", "SA", "LM", "SM", "BE"])
@pytest.mark.parametrize("at_optimum", [True, False])
def test_eigsh_matches_dense(which, at_optimum):
    teacher = fh.TwoLayerNet.random(5, 6, n_out=2, activation="tanh", rng=7)   # D = 42
    student = teacher if at_optimum else perturbed(teacher, 0.4, seed=8)
    X = fh.gaussian_inputs(60, 5, rng=9)
    expected = _dense_reference(student, X, teacher)
    k = 4
    if which == "LA":
        want = expected[-k:]
    elif which == "SA":
        want = expected[:k]
    elif which == "LM":
        want = np.sort(expected[np.argsort(np.abs(expected))[-k:]])
    elif which == "SM":
        want = np.sort(expected[np.argsort(np.abs(expected))[:k]])
    else:  # "BE": k / 2 from each end (SciPy's definition)
        want = np.concatenate([expected[:k // 2], expected[-(k - k // 2):]])
    vals, vecs = eigsh(student, X, k=k, which=which, teacher=teacher, return_eigenvectors=True,
                       rng=0)
    scale = np.max(np.abs(expected))
    assert np.max(np.abs(vals - want)) < RTOL_EIGSH * scale
    assert np.all(np.diff(vals) >= 0)
    H = ref.hessian(student, X, None if at_optimum else teacher)
    assert np.max(np.abs(H @ vecs - vecs * vals)) < RTOL_EIGSH_VECTORS * scale
    # deterministic given an int rng
    again, again_vecs = eigsh(student, X, k=k, which=which, teacher=teacher, rng=0)
    assert np.array_equal(vals, again) and np.array_equal(vecs, again_vecs)
    # values only (SciPy's return_eigenvectors=False): the same eigenvalues
    only = eigsh(student, X, k=k, which=which, teacher=teacher, return_eigenvectors=False, rng=0)
    assert only.shape == (k,) and np.max(np.abs(only - want)) < RTOL_EIGSH * scale


# ---------------------------------------------------------------------- smallest nonzero
def _filter_nonzero(ev, k):
    tol = ev.size * np.finfo(ev.dtype).eps * np.max(np.abs(ev))
    nz = ev[np.abs(ev) > tol]
    return nz[np.argsort(np.abs(nz))[:k]]


@pytest.mark.parametrize("n_samples", [6, 100])
def test_smallest_nonzero_matches_dense_filtering(n_samples):
    # z + z^2, Ni = Nh = 4: rank 14 of D = 20 at large P; P = 6 < D goes through the NTK
    net = fh.TwoLayerNet.random(4, 4, activation="quadratic", rng=0)
    X = fh.gaussian_inputs(n_samples, 4, rng=1)
    ev = _dense_reference(net, X)
    got = smallest_nonzero(net, X, k=3)
    want = _filter_nonzero(ev, 3)
    assert np.max(np.abs(got - want)) < RTOL_ROUTE * ev[-1]
    assert np.all(np.diff(got) >= 0)
    assert got[0] > 1e-8 * ev[-1]   # a genuine eigenvalue, not a zero mode


def test_smallest_nonzero_off_optimum_orders_by_magnitude():
    teacher = _net("erf", 1)
    student = perturbed(teacher, 0.5, seed=2)
    X = fh.gaussian_inputs(40, N_IN, rng=3)
    ev = _dense_reference(student, X, teacher)
    assert ev[0] < 0   # indefinite away from the optimum
    got = smallest_nonzero(student, X, k=4, teacher=teacher)
    assert np.max(np.abs(got - _filter_nonzero(ev, 4))) < RTOL_ROUTE * np.max(np.abs(ev))
    assert np.all(np.diff(np.abs(got)) >= 0)


def test_smallest_nonzero_refuses_more_than_the_rank():
    net = fh.TwoLayerNet.random(4, 5, activation="linear", rng=0)     # rank 4 of 25
    X = fh.gaussian_inputs(50, 4, rng=1)
    assert smallest_nonzero(net, X, k=4).shape == (4,)
    with pytest.raises(ValueError, match=r"k = 5 but only 4 eigenvalue\(s\)"):
        smallest_nonzero(net, X, k=5)


# ---------------------------------------------------------------------- numerical rank
@pytest.mark.parametrize("n_out", [1, 2])
@pytest.mark.parametrize("n_in,n_hidden", [(4, 4), (4, 6), (3, 7)])
def test_rank_linear_network_is_no_times_ni(n_in, n_hidden, n_out):
    net = fh.TwoLayerNet.random(n_in, n_hidden, n_out=n_out, activation="linear", rng=2)
    X = fh.gaussian_inputs(2 * net.n_params, n_in, rng=3)
    for method in ("linear", "dense"):
        r = numerical_rank(eigenvalues(net, X, method=method))
        assert r.rank == n_out * n_in == theory.effective_parameters("linear", n_in, n_hidden,
                                                                      n_out)
        assert r.gap_decades > MIN_RANK_GAP_DECADES, (method, r)


@pytest.mark.parametrize("n", [3, 5])
def test_rank_quadratic_is_n_times_n_plus_3_over_2(n):
    net = fh.TwoLayerNet.random(n, n, activation="quadratic", rng=4)
    X = fh.gaussian_inputs(2 * net.n_params, n, rng=5)
    r = numerical_rank(eigenvalues(net, X))
    assert r.rank == n * (n + 3) // 2 == theory.effective_parameters("quadratic", n, n)
    assert r.gap_decades > MIN_RANK_GAP_DECADES


def test_rank_result_semantics():
    ev = np.array([-1e-17, 0.0, 1e-17, 1e-3, 0.5, 2.0])
    r = numerical_rank(ev)
    assert isinstance(r, RankResult)
    assert r.rtol == 6 * np.finfo(np.float64).eps
    assert r.tolerance == r.rtol * 2.0
    assert int(r) == 3 == r.rank and operator.index(r) == 3 and r == 3 and r != 4
    assert [0, 1, 2, 3][r] == 3
    assert r.gap_decades == pytest.approx(14.0)
    assert numerical_rank(ev, rtol=1e-2).rank == 2
    assert numerical_rank(ev, rtol=0).rank == 5     # exact zeros only are dropped
    assert numerical_rank([1.0, 2.0]).gap_decades == math.inf
    assert numerical_rank([0.0, 1.0]).gap_decades == math.inf   # dropped are exactly zero
    assert math.isnan(numerical_rank(np.zeros(3)).gap_decades)
    assert numerical_rank(np.zeros(3)).rank == 0
    # float32 eigenvalues use float32's eps
    assert numerical_rank(ev.astype(np.float32)).rtol == pytest.approx(
        6 * float(np.finfo(np.float32).eps))
    assert not r.undetermined


def test_float32_rank_without_a_gap_is_undetermined_and_warns():
    # erf is full rank (THEORY.md c) with genuine eigenvalues far below float32's
    # round-off: in float32 they run through the cut with no gap
    net = fh.TwoLayerNet.random(8, 8, rng=0)
    X = fh.gaussian_inputs(2 * net.n_params, 8, rng=1)
    spec32 = eigenvalues(net, X, dtype=np.float32)
    with pytest.warns(fh.UndeterminedRankWarning) as caught:
        r32 = numerical_rank(spec32)
    assert r32.undetermined and "undetermined" in r32.gap_summary
    message = str(caught[0].message)
    for advice in ("float64", "method='svd'", "exact_rank", "float32"):
        assert advice in message
    # float64 separates them: no warning (the suite turns warnings into errors)
    r64 = numerical_rank(eigenvalues(net, X))
    assert not r64.undetermined and r64.rank == net.n_params
    # warn=False: the flag, without the warning
    assert numerical_rank(spec32, warn=False).undetermined


@pytest.mark.parametrize("values, undetermined", [
    ([3e-15, 1.0], True),          # full rank, the smallest 7x the tolerance (4.4e-16)
    ([1e-13, 1.0], False),         # full rank, 2.4 decades above the tolerance
    ([2e-16, 1.0], False),         # a round-off zero just below the cut, 15.7 decades under
    ([2e-15, 1e-14, 1.0], True),   # dropped 2e-15, kept 1e-14: 0.7 decades apart
    ([1e-20, 1e-10, 1.0], False),  # cut in a gap of 10 decades
    ([0.0, 0.0, 1.0], False),      # exact zeros
])
def test_undetermined_means_no_gap_of_a_decade_at_the_cut(values, undetermined):
    r = numerical_rank(values, warn=False)
    a = np.abs(np.asarray(values))
    kept, dropped = a[a > r.tolerance], a[a <= r.tolerance]
    if dropped.size and dropped.max() > 0:
        no_gap = kept.min() / dropped.max() < 10
    else:
        no_gap = dropped.size == 0 and kept.min() < 10 * r.tolerance
    assert no_gap == undetermined == r.undetermined


# ---------------------------------------------------------------------- density
def test_slq_matches_exact_spectrum_in_wasserstein_distance():
    net = fh.TwoLayerNet.random(12, 16, activation="erf", rng=3)    # D = 208
    X = fh.gaussian_inputs(100, 12, rng=4)
    ev = _dense_reference(net, X)
    d = ev.size
    n_probes, n_steps = 20, 60
    sd = spectral_density(net, X, n_probes=n_probes, n_steps=n_steps, rng=0)
    assert sd.nodes.shape == sd.weights.shape == sd.probe.shape
    assert sd.weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert set(np.unique(sd.probe)) == set(range(n_probes))
    w1 = wasserstein_distance(sd.nodes, ev, u_weights=sd.weights)
    # Bound = Gauss-rule error + probe error.
    # Gauss: each probe's rule matches 2 n_steps - 1 moments of its spectral measure, so for
    # a 1-Lipschitz f the error is <= 2 E_{2m-1}(f) <= pi (b - a) / (4 m) (Jackson's theorem).
    # Probes: F_est(x) - F(x) is a mean of n_probes i.i.d. zero-mean terms; for Rademacher z,
    # Var z^T P_S z / D <= 2 min(|S|, D - |S|) / D^2, so E|dF(x)| <= sqrt(2 min(F, 1-F) / (n D))
    # and E W1 <= integral of that; 3x margin for one draw.
    F = np.arange(1, d) / d
    probe_term = np.sum(np.diff(ev) * np.sqrt(2 * np.minimum(F, 1 - F) / (n_probes * d)))
    gauss_term = math.pi * (ev[-1] - ev[0]) / (4 * n_steps)
    assert w1 < gauss_term + 3 * probe_term, (w1, gauss_term, probe_term)
    # and the bound has teeth: a wrong measure (uniform weights on the Ritz values) breaks it
    assert wasserstein_distance(sd.nodes, ev) > 2 * (gauss_term + 3 * probe_term)


def test_density_integrates_to_one_on_padded_grid():
    net = _net("tanh", 2)
    X = fh.gaussian_inputs(30, N_IN, rng=1)
    sd = spectral_density(net, X, n_probes=5, n_steps=15, rng=2)
    assert np.trapezoid(sd.density, sd.grid) == pytest.approx(1.0, abs=1e-8)
    assert sd.grid[0] <= sd.nodes.min() - 5 * sd.sigma
    assert sd.grid[-1] >= sd.nodes.max() + 5 * sd.sigma
    assert sd.sigma == pytest.approx(0.01 * np.ptp(sd.nodes))
    # explicit grid and sigma are used as given
    grid = np.linspace(-1, 3, 101)
    sd2 = spectral_density(net, X, n_probes=5, n_steps=15, rng=2, grid=grid, sigma=0.05)
    assert np.array_equal(sd2.grid, grid) and sd2.sigma == 0.05
    assert np.array_equal(sd2.nodes, sd.nodes)       # same seed, same probes


def test_lanczos_stops_on_invariant_subspace():
    # D = 15 < n_steps: every probe's Krylov space is exhausted; the rule is then exact
    net = fh.TwoLayerNet.random(4, 3, activation="erf", rng=0)
    X = fh.gaussian_inputs(50, 4, rng=1)
    ev = _dense_reference(net, X)
    sd = spectral_density(net, X, n_probes=3, n_steps=40, rng=0)
    for p in range(3):
        nodes = sd.nodes[sd.probe == p]
        assert nodes.size <= net.n_params
        # each Ritz value is an eigenvalue (converged) when the Krylov space is invariant
        heavy = nodes[sd.weights[sd.probe == p] > 1e-10]
        assert np.all(np.min(np.abs(heavy[:, None] - ev[None, :]), axis=1) < RTOL_RITZ * ev[-1])


# ---------------------------------------------------------------------- trace
@pytest.mark.parametrize("at_optimum", [True, False])
@pytest.mark.parametrize("activation", ACTIVATIONS_AND_CUSTOM, ids=ACTIVATION_AND_CUSTOM_IDS)
def test_trace_exact_is_sum_of_eigenvalues(activation, at_optimum):
    teacher = _net(activation, 2)
    student = teacher if at_optimum else perturbed(teacher, 0.3, seed=6)
    X = fh.gaussian_inputs(30, N_IN, rng=7)
    ev = _dense_reference(student, X, teacher)
    got = trace(student, X, teacher=teacher)
    assert abs(got - ev.sum()) < RTOL_TRACE * np.sum(np.abs(ev))
    assert abs(got - ref.trace(student, X, teacher)) < RTOL_TRACE * np.sum(np.abs(ev))
    assert trace(student, X, teacher=teacher, return_stderr=True) == (got, 0.0)


@pytest.mark.parametrize("at_optimum", [True, False])
def test_trace_hutchinson_within_standard_errors(at_optimum):
    teacher = _net("erf", 2)
    student = teacher if at_optimum else perturbed(teacher, 0.3, seed=6)
    X = fh.gaussian_inputs(30, N_IN, rng=7)
    exact = trace(student, X, teacher=teacher)
    est, stderr = trace(student, X, teacher=teacher, method="hutchinson", n_probes=200,
                        rng=1, return_stderr=True)
    assert abs(est - exact) < HUTCHINSON_SIGMAS * stderr
    # Rademacher probes: Var(z^T H z) = 2 sum_{i != j} H_ij^2 exactly; the sample
    # standard error of 200 probes is within ~10% of it (25% allowed)
    H = ref.hessian(student, X, None if at_optimum else teacher)
    expected = np.sqrt(2 * (np.sum(H**2) - np.sum(np.diag(H) ** 2)) / 200)
    assert abs(stderr / expected - 1) < 0.25


# ---------------------------------------------------------------------- operator=
@pytest.mark.parametrize("at_optimum", [True, False], ids=["optimum", "off_optimum"])
def test_given_operator_gives_the_default_results(at_optimum):
    # the local operator through operator= runs the same products as the default path
    teacher = fh.TwoLayerNet.random(5, 4, n_out=2, activation="tanh", rng=7)   # D = 28
    student = teacher if at_optimum else perturbed(teacher, 0.4, seed=8)
    X = fh.gaussian_inputs(40, 5, rng=9)
    op = fh.hessian_operator(student, X, teacher=teacher)
    vals, vecs = eigsh(student, X, k=3, teacher=teacher, return_eigenvectors=True, rng=0)
    vals_op, vecs_op = eigsh(student, None, k=3, operator=op, return_eigenvectors=True, rng=0)
    np.testing.assert_array_equal(vals_op, vals)
    np.testing.assert_array_equal(vecs_op, vecs)
    sd = spectral_density(student, X, teacher=teacher, n_probes=5, n_steps=12, rng=3)
    sd_op = spectral_density(student, None, n_probes=5, n_steps=12, rng=3, operator=op)
    for name in ("grid", "density", "nodes", "weights", "probe"):
        np.testing.assert_array_equal(getattr(sd_op, name), getattr(sd, name), err_msg=name)
    assert (sd_op.sigma, sd_op.n_probes, sd_op.n_steps) == (sd.sigma, sd.n_probes, sd.n_steps)
    hutch = trace(student, X, teacher=teacher, method="hutchinson", n_probes=40, rng=1,
                  return_stderr=True)
    assert trace(student, None, method="hutchinson", n_probes=40, rng=1, return_stderr=True,
                 operator=op) == hutch


def test_float32_operator_sets_the_lanczos_dtype():
    net = _net("erf", 1)
    X = fh.gaussian_inputs(30, N_IN, rng=1)
    op32 = fh.hessian_operator(net, X, dtype=np.float32)
    sd = spectral_density(net, X, n_probes=3, n_steps=10, rng=0)
    sd32 = spectral_density(net, X, n_probes=3, n_steps=10, rng=0, operator=op32)
    np.testing.assert_allclose(sd32.nodes, sd.nodes, atol=1e-4 * np.max(np.abs(sd.nodes)))


def test_bad_operator_is_refused(small):
    net, X = small
    d = net.n_params
    wrong = fh.hessian_operator(fh.TwoLayerNet.random(N_IN + 1, 3, rng=0),
                                fh.gaussian_inputs(20, N_IN + 1, rng=0))
    shape = re.escape(f"operator must have shape (D, D) = ({d}, {d})")
    for call in (lambda op: eigsh(net, X, k=2, operator=op),
                 lambda op: spectral_density(net, X, n_probes=2, n_steps=4, operator=op),
                 lambda op: trace(net, X, method="hutchinson", operator=op)):
        with pytest.raises(ValueError, match=shape):
            call(wrong)
        with pytest.raises(TypeError, match="operator must be a scipy.sparse.linalg.Linear"):
            call(np.eye(d))
        with pytest.raises(ValueError, match="operator must have dtype float32 or float64"):
            call(scipy.sparse.linalg.aslinearoperator(np.eye(d, dtype=np.complex128)))
    op = fh.hessian_operator(net, X)
    other = perturbed(net, 0.1, seed=1)
    with pytest.raises(ValueError, match="teacher: not used with operator="):
        eigsh(net, X, k=2, teacher=other, operator=op)
    with pytest.raises(ValueError, match="operator: only method='hutchinson'"):
        trace(net, X, operator=op)
    # the student as its own teacher is the optimum, not a second point: accepted
    assert eigsh(net, X, k=2, teacher=net, operator=op)[0].shape == (2,)


# ---------------------------------------------------------------------- bad input
@pytest.fixture
def small():
    return _net("erf", 1), fh.gaussian_inputs(20, N_IN, rng=0)


def test_unknown_or_inapplicable_method(small):
    net, X = small
    assert METHODS == ("auto", "dense", "ntk", "linear", "svd", "reduced")
    with pytest.raises(ValueError, match="method must be one of 'auto', 'dense'.*got 'eigh'"):
        eigenvalues(net, X, method="eigh")
    with pytest.raises(ValueError, match="method='linear' needs a linear activation.*'erf'"):
        eigenvalues(net, X, method="linear")
    with pytest.raises(ValueError, match="method must be one of 'exact', 'hutchinson'"):
        trace(net, X, method="dense")
    with pytest.raises(TypeError, match="net must be a fasthess.TwoLayerNet"):
        eigenvalues(np.eye(3), X)


def test_eigsh_bad_arguments(small):
    net, X = small
    d = net.n_params
    with pytest.raises(ValueError, match=f"k must be < D = {d}.*fasthess.eigenvalues"):
        eigsh(net, X, k=d)
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        eigsh(net, X, k=0)
    with pytest.raises(TypeError, match="k must be an integer"):
        eigsh(net, X, k=2.5)
    with pytest.raises(ValueError,
                       match="which must be one of 'LM', 'SM', 'LA', 'SA', 'BE', got 'LR'"):
        eigsh(net, X, which="LR")
    with pytest.raises(ValueError, match="tol must be finite and >= 0"):
        eigsh(net, X, tol=-1)
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        smallest_nonzero(net, X, k=0)


def test_rank_and_density_bad_arguments(small):
    net, X = small
    with pytest.raises(ValueError, match="rtol must be finite and >= 0, got -1"):
        numerical_rank([1.0, 2.0], rtol=-1)
    with pytest.raises(ValueError, match="eigenvalues must be 1-dimensional"):
        numerical_rank(np.eye(2))
    with pytest.raises(ValueError, match="eigenvalues contains 1 non-finite"):
        numerical_rank([1.0, np.nan])
    with pytest.raises(ValueError, match="n_probes must be >= 1"):
        spectral_density(net, X, n_probes=0)
    with pytest.raises(ValueError, match="sigma must be finite and > 0"):
        spectral_density(net, X, sigma=-0.1)
    with pytest.raises(ValueError, match="n_probes must be >= 2"):
        trace(net, X, method="hutchinson", n_probes=1)


def test_dense_spectrum_too_large_refused_before_allocating():
    big = fh.TwoLayerNet.random(3000, 3000, rng=0)   # D = 9.003e6: the Hessian is 648 TB
    X = fh.gaussian_inputs(2, 3000, rng=1)
    with pytest.raises(MemoryError) as info:
        eigenvalues(big, X, method="dense")
    msg = str(info.value)
    needed = int(re.search(r"needs ([\d,]+) bytes", msg).group(1).replace(",", ""))
    assert 8 * big.n_params**2 <= needed <= 2 * 8 * big.n_params**2
    assert "fasthess.eigsh" in msg and "fasthess.spectral_density" in msg


def test_ntk_and_svd_routes_refuse_before_allocating(monkeypatch):
    monkeypatch.setenv("FASTHESS_MEMORY_LIMIT", "1000000")
    net = fh.TwoLayerNet.random(3, 2, rng=0)
    X = fh.gaussian_inputs(2000, 3, rng=1)          # K is 32 MB, J is 0.2 MB
    with pytest.raises(MemoryError, match="NTK Gram matrix.*fasthess.eigsh"):
        eigenvalues(net, X, method="ntk")
    X = fh.gaussian_inputs(20000, 3, rng=1)         # J (20000 x 8) is 1.28 MB
    with pytest.raises(MemoryError, match=r"Jacobian \(20000 x 8, float64\) needs 1,280,000"):
        eigenvalues(net, X, method="svd")
