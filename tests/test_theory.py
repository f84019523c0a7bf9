"""Tests of fasthess.theory against references written here, independently.

* Ranks: the finite-field rank (its own kernel), the closed forms of THEORY.md
  section c recomputed in this file, and floating-point SVD ranks of the twin
  Jacobians of tests/reference.py (einsum of the per-sample formulas), with a
  reported gap. Theory must answer from the activation's metadata: equal
  activations under other names, classes or kernels get the same answers.
* Densities: moments derived from Wishart identities, and KS distances to
  pooled eigenvalues of random linear teachers computed directly as
  lambda_a(W2 W2^T) + lambda_b(W1^T W1), never through the Hessian code.
"""
from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from scipy import integrate

from fasthess import _config
from fasthess.activations import CustomActivation, Polynomial, Quadratic, get_activation
from fasthess.network import TwoLayerNet
from fasthess.theory import (
    SPORADIC_DEFECTS,
    effective_parameters,
    exact_rank,
    linear_cdf,
    linear_density,
    linear_spectrum_exact,
    marchenko_pastur_pdf,
    scaled_chi2_pdf,
)

from . import reference as ref
from .conftest import (ATOL_CDF_TAIL, ATOL_CDF_VS_DENSITY, ATOL_QUAD, KS_BOUND,
                       KS_BOUND_TINY_HIDDEN, MIN_RANK_GAP_DECADES, RTOL_DENSITY_MOMENTS,
                       RTOL_DENSITY_VARIANCE, RTOL_EXACT, RTOL_ZERO_MODE)

GRID = [(ni, nh, no) for ni in range(2, 7) for nh in range(2, 7) for no in range(1, 4)]

ACTIVATIONS = {
    "linear": "linear",
    "quadratic": "quadratic",
    "z^2": Polynomial([0, 0, 1]),
    "z^3": Polynomial([0, 0, 0, 1]),
    "z+z^3": Polynomial([0, 1, 0, 1]),
    "z^2+z^3": Polynomial([0, 0, 1, 1]),
}


# ----------------------------------------------------------------------- references
def reference_generic_rank(powers, ni, nh, no):
    """THEORY.md c, recomputed: min(B, D - kappa) and the three special families."""
    r = min(ni, nh)
    if powers == (1,):
        return no * ni - max(no - nh, 0) * max(ni - nh, 0)
    if no == 1 and powers == (2,):
        return r * ni - r * (r - 1) // 2
    if no == 1 and powers == (1, 2):
        return r * (ni + 1) - r * (r - 1) // 2
    d = max(powers)
    b = no * sum(math.comb(ni + m - 1, m) for m in powers)
    low = [m for m in powers if m < d]
    kappa = nh if not low else max(nh - no * sum(math.comb(ni + m - 1, m) for m in low), 0)
    return min(b, nh * (ni + no) - kappa)


def output_cap(p, nh, no):
    """Tangent dimension of P x No matrices of rank <= Nh."""
    return p * no - max(no - nh, 0) * max(p - nh, 0)


def float_jacobian(w1, w2, X, activation):
    """The twin Jacobian (tests/reference.py) of the network (w1, w2, activation) on X."""
    return ref.jacobian(TwoLayerNet(w1, w2, activation), X)


def svd_rank(J):
    """Rank at the largest gap of the singular values, and that gap in decades."""
    s = np.linalg.svd(J, compute_uv=False)
    s = s[s > 0]
    if s.size < 2:
        return s.size, np.inf
    ratios = np.log10(s[:-1] / s[1:])
    k = int(np.argmax(ratios))
    if s[-1] > 1e-8 * s[0]:  # no zero singular values at all: full rank
        return min(J.shape), np.log10(s[0] / s[-1])
    return k + 1, ratios[k]


def pooled_linear_eigenvalues(ni, nh, no, n_teachers, seed, s1=None, s2=None):
    """lambda_a(W2 W2^T) + lambda_b(W1^T W1) of an ensemble, exact zeros removed."""
    s1 = 1 / math.sqrt(ni) if s1 is None else s1
    s2 = 1 / math.sqrt(nh) if s2 is None else s2
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_teachers):
        w1 = s1 * rng.standard_normal((nh, ni))
        w2 = s2 * rng.standard_normal((no, nh))
        ev = np.linalg.eigvalsh(w2 @ w2.T)[:, None] + np.linalg.eigvalsh(w1.T @ w1)[None, :]
        ev = np.sort(ev.ravel())
        n_zero = max(no - nh, 0) * max(ni - nh, 0)  # rank of V = W2 W1 is Nh
        out.append(ev[n_zero:])
    return np.sort(np.concatenate(out))


def ks_distance(sample, cdf):
    n = sample.size
    F = cdf(sample)
    return max(np.max(np.arange(1, n + 1) / n - F), np.max(F - np.arange(n) / n))


# ----------------------------------------------------------------------- ranks
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_effective_parameters_equals_exact_rank_on_grid(name):
    act = ACTIVATIONS[name]
    powers = {"linear": (1,), "quadratic": (1, 2)}.get(name) or act.powers
    for ni, nh, no in GRID:
        pred = effective_parameters(act, ni, nh, no)
        exact = exact_rank(act, ni, nh, no, rng=ni * 100 + nh * 10 + no)
        assert pred == exact, (name, ni, nh, no, pred, exact)
        generic = reference_generic_rank(powers, ni, nh, no)
        defect = (ni, nh, no) in SPORADIC_DEFECTS.get(powers, ())
        assert exact == generic - defect, (name, ni, nh, no, exact, generic)


@pytest.mark.parametrize("name", ["linear", "quadratic", "z^2", "z^3"])
def test_finite_data_cap(name):
    act = ACTIVATIONS[name]
    rng = np.random.default_rng(1)
    n_binding = 0
    for ni, nh, no in GRID:
        d = nh * (ni + no)
        rank_inf = effective_parameters(act, ni, nh, no)
        for p in sorted({1, 2, int(rng.integers(1, d + 1)), max(1, (d - 1) // no)}):
            pred = effective_parameters(act, ni, nh, no, n_samples=p)
            exact = exact_rank(act, ni, nh, no, n_samples=p, rng=p)
            assert pred == exact == min(rank_inf, output_cap(p, nh, no)), (name, ni, nh, no, p)
            assert exact <= min(d, p * no)
            n_binding += exact < rank_inf
    assert n_binding > 50  # the cap really binds in many of these cases


def test_sporadic_defects_are_one_below_the_generic_formula():
    for powers, configs in SPORADIC_DEFECTS.items():
        coeffs = np.zeros(max(powers) + 1)
        coeffs[list(powers)] = 1.0
        act = Polynomial(coeffs)
        for ni, nh, no in sorted(configs):
            generic = reference_generic_rank(powers, ni, nh, no)
            # the maximum over seeds: a finite-field rank can only fall short
            exact = max(exact_rank(act, ni, nh, no, rng=s) for s in (1, 2))
            assert exact == generic - 1, (powers, ni, nh, no, exact, generic)
            assert effective_parameters(act, ni, nh, no) == exact


def test_exact_rank_never_exceeds_d_or_p_no():
    rng = np.random.default_rng(2)
    for act in ACTIVATIONS.values():
        for _ in range(40):
            ni, nh, no = (int(v) for v in rng.integers(1, 7, size=3))
            p = int(rng.integers(1, 30))
            r = exact_rank(act, ni, nh, no, n_samples=p, rng=int(rng.integers(1 << 30)))
            assert 0 < r <= min(nh * (ni + no), p * no)


@pytest.mark.parametrize("ni,nh,no", [(3, 2, 1), (4, 3, 1), (3, 4, 2), (5, 3, 2), (4, 5, 3)])
def test_exact_rank_matches_float_svd_rank_for_z2(ni, nh, no):
    rng = np.random.default_rng(ni + 10 * nh + 100 * no)
    d = nh * (ni + no)
    X = rng.standard_normal((2 * d + 20, ni))
    w1 = rng.standard_normal((nh, ni)) / math.sqrt(ni)
    w2 = rng.standard_normal((no, nh)) / math.sqrt(nh)
    J = float_jacobian(w1, w2, X, Polynomial([0, 0, 1]))
    rank, gap = svd_rank(J)
    assert gap > MIN_RANK_GAP_DECADES, f"float rank {rank} of J is unclear: gap {gap:.1f} decades"
    assert rank == exact_rank(Polynomial([0, 0, 1]), ni, nh, no, rng=3)


def test_erf_finite_data_cap_with_more_outputs_than_hidden_units():
    # Y = A W2^T has rank <= Nh, so rank < min(D, P No) when No > Nh and P > Nh
    ni, nh, no, p = 6, 2, 3, 5
    rng = np.random.default_rng(4)
    w1 = rng.standard_normal((nh, ni)) / math.sqrt(ni)
    w2 = rng.standard_normal((no, nh)) / math.sqrt(nh)
    X = rng.standard_normal((p, ni))
    J = float_jacobian(w1, w2, X, "erf")
    rank, gap = svd_rank(J)
    assert gap > MIN_RANK_GAP_DECADES, gap
    assert rank == effective_parameters("erf", ni, nh, no, n_samples=p) == output_cap(p, nh, no)
    assert rank < min(nh * (ni + no), p * no)


def test_non_polynomial_closed_forms():
    for ni, nh, no in GRID:
        d = nh * (ni + no)
        assert effective_parameters("erf", ni, nh, no) == d
        assert effective_parameters("tanh", ni, nh, no) == d
        assert effective_parameters("relu", ni, nh, no) == d - nh
        assert effective_parameters("tanh", ni, nh, no, n_samples=1) == no


def test_constant_term_falls_back_to_exact_rank():
    act = Polynomial([0.5, 1.0, 1.0])
    for ni in range(2, 6):
        for nh in range(2, 6):
            r = effective_parameters(act, ni, nh)
            assert r == exact_rank(act, ni, nh, rng=7)
            # THEORY.md c: the rank of z + z^2, plus the constant output when Nh > Ni
            assert r == effective_parameters("quadratic", ni, nh) + (nh > ni)


def _custom(g, dg, d2g, name, **declared):
    return CustomActivation(numba.njit(g), numba.njit(dg), numba.njit(d2g), name=name,
                            **declared)


def _custom_polynomial(coeffs):
    """A CustomActivation evaluating the polynomial in plain Python, declaring its coefficients."""
    c = [float(v) for v in coeffs]

    def g(z):
        return sum(cm * z**m for m, cm in enumerate(c))

    def dg(z):
        return sum(m * cm * z ** (m - 1) for m, cm in enumerate(c) if m >= 1)

    def d2g(z):
        return sum(m * (m - 1) * cm * z ** (m - 2) for m, cm in enumerate(c) if m >= 2)

    return CustomActivation(numba.njit(g), numba.njit(dg), numba.njit(d2g),
                            name=f"custom{c}", polynomial_coeffs=c)


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
CUSTOM_RELU = _custom(lambda z: max(z, 0.0), lambda z: 1.0 if z > 0 else 0.0,
                      lambda z: 0.0, "my_relu", homogeneous_degree=1)
CUSTOM_LEAKY = _custom(lambda z: max(z, 0.1 * z), lambda z: 1.0 if z > 0 else 0.1,
                       lambda z: 0.0, "leaky_relu", homogeneous_degree=1)
CUSTOM_ABS = _custom(lambda z: abs(z), lambda z: 1.0 if z > 0 else -1.0,
                     lambda z: 0.0, "abs", homogeneous_degree=1)
CUSTOM_RELU_SQUARED = _custom(lambda z: max(z, 0.0) ** 2, lambda z: 2.0 * max(z, 0.0),
                              lambda z: 2.0 if z > 0 else 0.0, "relu^2", homogeneous_degree=2)
CUSTOM_ERF = _custom(lambda z: math.erf(z / math.sqrt(2.0)),
                     lambda z: _SQRT_2_OVER_PI * math.exp(-0.5 * z * z),
                     lambda z: -z * _SQRT_2_OVER_PI * math.exp(-0.5 * z * z), "my_erf",
                     no_continuous_symmetry=True)
CUSTOM_TANH = _custom(lambda z: math.tanh(z), lambda z: 1.0 - math.tanh(z) ** 2,
                      lambda z: -2.0 * math.tanh(z) * (1.0 - math.tanh(z) ** 2), "my_tanh",
                      no_continuous_symmetry=True)

# Each row: an activation and others that theory must treat identically (same metadata,
# different names, classes or kernels).
EQUIVALENT = {
    "quadratic": ("quadratic", [Polynomial([0, 1, 1]), Quadratic(1.0),
                                _custom_polynomial([0, 1, 1])]),
    "linear": ("linear", [Polynomial([0, 1]), Polynomial([0, 2.5]), _custom_polynomial([0, 1])]),
    "z^2": (Polynomial([0, 0, 1]), [_custom_polynomial([0, 0, 1])]),
    "z+z^3": (Polynomial([0, 1, 0, 1]), [_custom_polynomial([0, 1, 0, 1])]),
    "constant_term": (Polynomial([0.5, 1, 1]), [_custom_polynomial([0.5, 1, 1])]),
    "relu": ("relu", [CUSTOM_RELU, CUSTOM_LEAKY, CUSTOM_ABS, CUSTOM_RELU_SQUARED]),
    "erf": ("erf", ["tanh", CUSTOM_ERF, CUSTOM_TANH]),
}
EQUIVALENCE_GRID = [(ni, nh, no) for ni in (2, 3, 5) for nh in (2, 4, 6) for no in (1, 3)]


@pytest.mark.parametrize("name", list(EQUIVALENT))
def test_theory_dispatches_on_metadata_not_names(name):
    """A Polynomial equal to "quadratic", a CustomActivation declaring what relu or erf
    satisfy, ...: every theory function taking an activation gives the same answers."""
    base, others = EQUIVALENT[name]
    polynomial = get_activation(base).is_polynomial
    for ni, nh, no in EQUIVALENCE_GRID:
        for n_samples in (None, 1, 3, 2 * nh + 1):
            want = effective_parameters(base, ni, nh, no, n_samples=n_samples)
            exact = (exact_rank(base, ni, nh, no, n_samples=n_samples, rng=ni + nh + no)
                     if polynomial else None)
            for act in others:
                assert effective_parameters(act, ni, nh, no, n_samples=n_samples) == want, \
                    (act, ni, nh, no, n_samples)
                if polynomial:
                    assert exact_rank(act, ni, nh, no, n_samples=n_samples,
                                      rng=ni + nh + no) == exact, (act, ni, nh, no, n_samples)
    for act in [base, *others]:
        if not polynomial:
            with pytest.raises(ValueError, match="exact_rank needs a polynomial activation"):
                exact_rank(act, 3, 3)


def test_metadata_dispatch_beyond_the_verified_range():
    # the same warning and upper bound for a declared polynomial as for the Polynomial
    for act in (Polynomial([0, 0, 0, 1]), _custom_polynomial([0, 0, 0, 1])):
        with pytest.warns(UserWarning, match="upper bound"):
            assert effective_parameters(act, 40, 40) == reference_generic_rank((3,), 40, 40, 1)
    # (4, 5, 3) is a sporadic defect of z^2: a declared z^2 sees it too
    assert (effective_parameters(_custom_polynomial([0, 0, 1]), 4, 5, 3)
            == reference_generic_rank((2,), 4, 5, 3) - 1)


def test_undeclared_custom_activation_has_no_formula():
    plain = _custom(lambda z: math.sin(z), lambda z: math.cos(z), lambda z: -math.sin(z), "sin")
    with pytest.raises(ValueError, match="declares neither homogeneous_degree nor "
                                         "no_continuous_symmetry"):
        effective_parameters(plain, 3, 3)
    with pytest.raises(ValueError, match="exact_rank needs a polynomial activation, got 'sin'"):
        exact_rank(plain, 3, 3)


@pytest.mark.parametrize("act", ["relu", CUSTOM_LEAKY, CUSTOM_ABS, CUSTOM_RELU_SQUARED, CUSTOM_ERF],
                         ids=["relu", "leaky_relu", "abs", "relu^2", "custom_erf"])
@pytest.mark.parametrize("ni,nh,no", [(3, 2, 1), (4, 3, 2), (2, 5, 1), (5, 4, 2)])
def test_declared_metadata_rank_matches_float_rank(act, ni, nh, no):
    """D - Nh for positively homogeneous g, D for no continuous symmetry: the SVD rank of
    the twin Jacobian (the user's own functions, in plain Python), with a clear gap."""
    rng = np.random.default_rng(ni + 10 * nh + 100 * no)
    d = nh * (ni + no)
    net = TwoLayerNet(rng.standard_normal((nh, ni)) / math.sqrt(ni),
                      rng.standard_normal((no, nh)) / math.sqrt(nh), act)
    X = rng.standard_normal((max(4 * d + 50, 400), ni))
    J = ref.jacobian(net, X)
    predicted = effective_parameters(act, ni, nh, no)
    if get_activation(act).no_continuous_symmetry:
        assert predicted == d
        # full rank: the smallest singular value stands clear of round-off (eps s_max)
        s = np.linalg.svd(J, compute_uv=False)
        assert s[-1] / s[0] > np.finfo(np.float64).eps * 10**MIN_RANK_GAP_DECADES, s[-1] / s[0]
    else:
        assert predicted == d - nh
        rank, gap = svd_rank(J)
        assert gap > MIN_RANK_GAP_DECADES, (rank, gap)
        assert rank == predicted


def test_theory_reads_its_limits_from_config(monkeypatch):
    act = Polynomial([0.5, 1, 1])   # a constant term: the exact-rank fallback
    assert effective_parameters(act, 3, 3) == exact_rank(act, 3, 3, rng=_config.FALLBACK_SEED)
    monkeypatch.setattr(_config, "FALLBACK_MAX_PARAMS", 5)
    with pytest.raises(ValueError, match=r"fallback \(D <= 5\)"):
        effective_parameters(act, 3, 3)
    monkeypatch.setattr(_config, "EXACT_MAX_PARAMS", 10)
    with pytest.raises(ValueError, match="exceeds the exact-rank limit 10"):
        exact_rank(act, 3, 3)
    lam = np.linspace(0.5, 4.0, 9)
    fine = linear_density(lam, 4, 6)
    monkeypatch.setattr(_config, "QUAD_NODES", 3)
    monkeypatch.setattr(_config, "MAX_QUAD_NODES", 3)
    coarse = linear_density(lam, 4, 6)
    assert np.all(np.isfinite(coarse)) and np.max(np.abs(coarse - fine)) > 1e-3 * np.max(fine)


def test_exact_rank_samples_beyond_the_bound_are_not_drawn():
    # 10**9 samples would be 10**9 x Ni int64; the rank is that of bound + 2 samples
    assert (exact_rank("quadratic", 3, 3, n_samples=10**9, rng=1)
            == exact_rank("quadratic", 3, 3, rng=1) == 9)


def test_small_coefficient_is_not_rounded_away():
    # limit_denominator(10**6) maps 1e-9 to 0; the quadratic term must survive
    r = exact_rank(Polynomial([0, 1, 1e-9]), 4, 4, rng=0)
    assert r == exact_rank("quadratic", 4, 4, rng=0) > exact_rank("linear", 4, 4, rng=0)


def test_unverified_sizes_warn_and_return_the_upper_bound():
    with pytest.warns(UserWarning, match="upper bound"):
        r = effective_parameters(Polynomial([0, 0, 0, 1]), 40, 40)
    assert r == reference_generic_rank((3,), 40, 40, 1) == 40 * 40


def test_rank_argument_errors():
    with pytest.raises(ValueError, match="activation"):
        exact_rank("erf", 3, 3)
    with pytest.raises(ValueError, match="n_in"):
        effective_parameters("linear", -1, 3)
    with pytest.raises(ValueError, match="n_hidden"):
        exact_rank("linear", 3, 0)
    with pytest.raises(ValueError, match="n_out"):
        effective_parameters("erf", 3, 3, n_out=-2)
    with pytest.raises(ValueError, match="n_samples"):
        exact_rank("quadratic", 3, 3, n_samples=0)
    with pytest.raises(TypeError, match="n_in"):
        effective_parameters("linear", 2.5, 3)
    with pytest.raises(ValueError, match="exceeds"):
        exact_rank("quadratic", 100, 100)


# ----------------------------------------------------------------------- densities
def test_marchenko_pastur_mass_and_chi2_density():
    for q in (0.25, 1.0, 3.0):
        lo, hi = (1 - math.sqrt(q)) ** 2, (1 + math.sqrt(q)) ** 2
        mass, _ = integrate.quad(lambda x: marchenko_pastur_pdf(x, q), lo, hi, limit=200)
        assert abs(mass - min(1.0, 1.0 / q)) < ATOL_QUAD
        mean, _ = integrate.quad(lambda x: x * marchenko_pastur_pdf(x, q), lo, hi, limit=200)
        assert abs(mean - 1.0) < ATOL_QUAD  # the atom at 0 adds nothing to the mean
    assert marchenko_pastur_pdf(-1.0, 0.5) == 0.0
    for nh, s in ((5, None), (40, 0.3)):
        s2 = 1 / nh if s is None else s * s
        m0, _ = integrate.quad(lambda t: scaled_chi2_pdf(t, nh, s), 0, np.inf)
        m1, _ = integrate.quad(lambda t: t * scaled_chi2_pdf(t, nh, s), 0, np.inf)
        assert abs(m0 - 1) < ATOL_QUAD and abs(m1 - s2 * nh) < ATOL_QUAD * s2 * nh


def _moments(ni, nh, no, s1, s2):
    """Mean and variance of the pooled law, from Wishart identities (No <= Nh).

    eig(W2 W2^T) pooled: mean s2^2 Nh, variance s2^4 Nh (No + 1) (exact);
    eig(W1^T W1) in the MP limit: mean s1^2 Nh, variance s1^4 Nh Ni.
    """
    mean = (s2**2 + s1**2) * nh
    var = s2**4 * nh * (no + 1) + s1**4 * nh * ni
    return mean, var


@pytest.mark.parametrize("ni,nh,no,s1,s2", [
    (40, 60, 1, None, None), (60, 30, 1, None, None), (5, 200, 1, None, None),
    (30, 45, 1, 0.5, 2.0), (40, 60, 2, None, None), (5, 200, 2, None, None),
    (30, 45, 2, 0.5, 0.7)])
def test_linear_density_normalisation_and_moments(ni, nh, no, s1, s2):
    s1v = 1 / math.sqrt(ni) if s1 is None else s1
    s2v = 1 / math.sqrt(nh) if s2 is None else s2
    mean, var = _moments(ni, nh, no, s1v, s2v)
    sd = math.sqrt(var)
    lam = np.linspace(max(0.0, mean - 12 * sd), mean + 14 * sd, 6001)
    f = linear_density(lam, ni, nh, no, w1_std=s1, w2_std=s2)
    assert np.all(f >= 0)
    mass = integrate.simpson(f, x=lam)
    m1 = integrate.simpson(lam * f, x=lam)
    m2 = integrate.simpson((lam - m1) ** 2 * f, x=lam)
    assert abs(mass - 1) < RTOL_DENSITY_MOMENTS, mass
    assert abs(m1 - mean) < RTOL_DENSITY_MOMENTS * mean, (m1, mean)
    assert abs(m2 - var) < RTOL_DENSITY_VARIANCE * var, (m2, var)
    if s1 is None and s2 is None:
        assert abs(mean - (1 + nh / ni)) < RTOL_EXACT


def test_linear_density_concentrates_as_ni_over_nh_vanishes():
    # Ni / Nh -> 0 (defaults): mean 1 + Nh/Ni, sd sqrt(Nh/Ni + 2/Nh), so the
    # relative spread falls like sqrt(Ni/Nh); the 10-90% width of a near-Gaussian
    # law is about 2.56 sd
    spreads = []
    for ni, nh in ((20, 40), (5, 200), (2, 800)):
        mean, var = _moments(ni, nh, 1, 1 / math.sqrt(ni), 1 / math.sqrt(nh))
        lam = np.linspace(0, 2 * mean, 4001)
        F = linear_cdf(lam, ni, nh)
        q10, q90 = np.interp([0.1, 0.9], F, lam)
        assert q10 < mean < q90
        spreads.append((q90 - q10) / mean)
        assert 2.0 < spreads[-1] / (math.sqrt(var) / mean) < 3.0
    assert spreads[0] > spreads[1] > spreads[2]


def test_linear_cdf_shape_and_consistency_with_density():
    lam = np.linspace(-1, 12, 5001)
    for no in (1, 2, 3):
        F = linear_cdf(lam, 20, 10, no)
        assert F[0] == 0.0 and np.all(F[lam <= 0] == 0)
        assert abs(F[-1] - 1) < ATOL_CDF_TAIL
        assert np.all(np.diff(F) >= -1e-12)
        f = linear_density(lam, 20, 10, no)
        F_int = np.concatenate([[0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(lam))])
        assert np.max(np.abs(F_int - F)) < ATOL_CDF_VS_DENSITY
    assert np.ndim(linear_cdf(1.0, 20, 10)) == 0


@pytest.mark.parametrize("no", [1, 2, 3])
def test_linear_cdf_ks_against_random_teachers(no):
    ni, nh, n_teachers = 40, 60, 100
    sample = pooled_linear_eigenvalues(ni, nh, no, n_teachers, seed=10 + no)
    ks = ks_distance(sample, lambda x: linear_cdf(x, ni, nh, no))
    assert ks < KS_BOUND, ks
    # the bound has teeth: w2_std 15% too large (t's mean 1 -> 1.32) is caught
    ks_wrong = ks_distance(sample, lambda x: linear_cdf(x, ni, nh, no, w2_std=1.15 / math.sqrt(nh)))
    assert ks_wrong > 2 * KS_BOUND, ks_wrong


def test_linear_cdf_ks_with_zero_eigenvalues_removed():
    # No > Nh and Ni > Nh: (No-Nh)(Ni-Nh) exact zeros per teacher, excluded by both
    ni, nh, no, n_teachers = 30, 2, 3, 200
    sample = pooled_linear_eigenvalues(ni, nh, no, n_teachers, seed=5)
    ks = ks_distance(sample, lambda x: linear_cdf(x, ni, nh, no))
    # tiny Nh: finite-size MP error for W1^T W1 dominates (measured 0.02-0.03)
    assert ks < KS_BOUND_TINY_HIDDEN, ks


def test_density_argument_errors():
    with pytest.raises(ValueError, match="q"):
        marchenko_pastur_pdf(1.0, -1.0)
    with pytest.raises(ValueError, match="n_hidden"):
        scaled_chi2_pdf(1.0, 0)
    with pytest.raises(ValueError, match="w1_std"):
        linear_density(1.0, 4, 4, w1_std=0.0)
    with pytest.raises(ValueError, match="n_in"):
        linear_cdf(1.0, 0, 4)


# ----------------------------------------------------------------------- exact spectrum
def linear_hessian_eigenvalues(w1, w2, X):
    return ref.eigenvalues(TwoLayerNet(w1, w2, "linear"), X)


@pytest.mark.parametrize("ni,nh,no,p", [(5, 3, 1, 40), (4, 6, 2, 30), (7, 3, 2, 5),
                                        (5, 5, 2, 3), (6, 2, 1, 4)])
def test_linear_spectrum_exact_matches_dense_hessian(ni, nh, no, p):
    rng = np.random.default_rng(ni + nh + no + p)
    w1 = rng.standard_normal((nh, ni))
    w2 = rng.standard_normal((no, nh))
    X = rng.standard_normal((p, ni))
    ev = linear_spectrum_exact(w1, w2, X)
    assert ev.shape == (no * ni,) and np.all(np.diff(ev) >= 0)
    dense = linear_hessian_eigenvalues(w1, w2, X)
    top = dense[-no * ni:]  # the other D - No Ni eigenvalues of H are zero
    scale = dense[-1]
    assert np.max(np.abs(ev - top)) < RTOL_EXACT * scale
    assert np.max(np.abs(dense[:-no * ni])) < RTOL_ZERO_MODE * scale
    # the number of nonzero eigenvalues is the linear rank at this P
    assert np.sum(ev > 1e-10 * scale) == effective_parameters("linear", ni, nh, no, n_samples=p)


@pytest.mark.parametrize("no", [1, 2])
def test_linear_spectrum_exact_population_limit(no):
    rng = np.random.default_rng(no)
    ni, nh, p = 6, 4, 50
    w1 = rng.standard_normal((nh, ni))
    w2 = rng.standard_normal((no, nh))
    q, _ = np.linalg.qr(rng.standard_normal((p, ni)))
    X = math.sqrt(p) * q  # whitened: X^T X / P = I exactly
    pop = linear_spectrum_exact(w1, w2)
    assert np.max(np.abs(linear_spectrum_exact(w1, w2, X) - pop)) < RTOL_EXACT * pop[-1]
    sums = np.add.outer(np.linalg.eigvalsh(w2 @ w2.T), np.linalg.eigvalsh(w1.T @ w1)).ravel()
    assert np.max(np.abs(pop - np.sort(sums))) < RTOL_EXACT * pop[-1]
    if no == 1:
        # Ni - Nh copies of |a|^2
        assert np.allclose(pop[:ni - nh], w2 @ w2.T, rtol=RTOL_EXACT, atol=0)


def test_linear_spectrum_exact_argument_errors():
    w1 = np.ones((3, 4))
    with pytest.raises(ValueError, match="w2"):
        linear_spectrum_exact(w1, np.ones((1, 2)))
    with pytest.raises(ValueError, match="X"):
        linear_spectrum_exact(w1, np.ones(3), np.ones((5, 3)))
    with pytest.raises(TypeError, match="w1"):
        linear_spectrum_exact(np.ones((3, 4), dtype=complex), np.ones(3))
