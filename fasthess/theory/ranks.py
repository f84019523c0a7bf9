"""Rank of the Hessian at a generic optimum: closed forms and an exact finite-field rank.

:func:`effective_parameters` predicts the rank (the effective number of parameters)
from the activation's metadata; :func:`exact_rank` computes the generic rank over a
finite field, certifying it without a tolerance. The mathematics, with what has been
verified and how, is in THEORY.md c.
"""
from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np

from .. import _config
from .._validation import check_int, check_rng
from ..activations import get_activation

__all__ = ["effective_parameters", "exact_rank", "SPORADIC_DEFECTS"]

# --------------------------------------------------------------------------- ranks

#: Configurations (n_in, n_hidden, n_out) where the generic polynomial formula
#: min(B, D - kappa) is one too large, keyed by the degree set (powers of z with
#: a nonzero coefficient). Complete for 1 <= n_in, n_hidden <= 8, 1 <= n_out <= 3
#: and the degree sets in ``_VERIFIED_POWERS`` (checked with :func:`exact_rank`;
#: (3, 5, 1) for z^4 is the Alexander-Hirschowitz case (Ni, d, Nh) = (3, 4, 5)).
SPORADIC_DEFECTS: dict[tuple[int, ...], frozenset[tuple[int, int, int]]] = {
    (2,): frozenset({(4, 5, 3), (6, 8, 3)}),
    (3,): frozenset({(3, 5, 2), (5, 7, 1)}),
    (4,): frozenset({(3, 5, 1)}),
    (1, 3): frozenset({(2, 3, 2), (3, 5, 2), (5, 7, 1)}),
    (2, 3): frozenset({(2, 4, 3), (3, 8, 3), (4, 6, 1)}),
    (1, 4): frozenset({(2, 4, 3), (3, 5, 1)}),
    (2, 4): frozenset({(2, 5, 3), (3, 5, 1)}),
    (1, 5): frozenset({(2, 5, 3)}),
}

# Degree sets whose closed form (with the list above) was checked against the
# finite-field rank on the whole verified range, for every n_samples as well.
_VERIFIED_POWERS = frozenset({(1,), (2,), (1, 2), (3,), (4,), (5,), (1, 3), (2, 3), (1, 4),
                              (2, 4), (3, 4), (1, 5), (1, 2, 3), (1, 2, 4), (1, 2, 3, 4)})
_VERIFIED_MAX = (8, 8, 3)  # n_in, n_hidden, n_out


def _check_sizes(n_in, n_hidden, n_out, n_samples):
    n_in = check_int(n_in, "n_in", minimum=1)
    n_hidden = check_int(n_hidden, "n_hidden", minimum=1)
    n_out = check_int(n_out, "n_out", minimum=1)
    if n_samples is not None:
        n_samples = check_int(n_samples, "n_samples", minimum=1)
    return n_in, n_hidden, n_out, n_samples


def _pos(v):
    return v if v > 0 else 0


def _output_cap(n_samples, n_hidden, n_out):
    """Dimension of the tangent space of P x No matrices of rank <= Nh.

    The outputs on the data, Y = g(X W1^T) W2^T, always have rank <= Nh, so this
    bounds rank(J) for every activation.
    """
    return n_samples * n_out - _pos(n_out - n_hidden) * _pos(n_samples - n_hidden)


def _degree_bound(powers, n_in, n_out):
    """B = No sum_{m in M} C(Ni+m-1, m): dimension of R^No-valued polynomials of degrees M."""
    return n_out * sum(math.comb(n_in + m - 1, m) for m in powers)


def _generic_polynomial_rank(powers, n_in, n_hidden, n_out):
    """min(B, D - kappa): a proven upper bound, exact up to the sporadic defects.

    kappa counts combinations of the per-unit scalings (w_j -> c w_j,
    b_j -> c^-d b_j) that leave the lower-degree parts unchanged; each lower
    degree m imposes No C(Ni+m-1, m) linear conditions, so kappa is a lower bound
    on the kernel dimension and D - kappa an upper bound on the rank.
    """
    d = max(powers)
    lower = [m for m in powers if m < d]
    if lower:
        kappa = _pos(n_hidden - _degree_bound(lower, n_in, n_out))
    else:
        kappa = n_hidden
    n_params = n_hidden * (n_in + n_out)
    return min(_degree_bound(powers, n_in, n_out), n_params - kappa)


def _linear_rank(n_in, n_hidden, n_out, n_samples):
    m = n_in if n_samples is None else min(n_samples, n_in)
    return n_out * m - _pos(n_out - n_hidden) * _pos(m - n_hidden)


def effective_parameters(activation, n_in, n_hidden, n_out=1, n_samples=None) -> int:
    """Predict the rank of the Hessian at a generic optimum (effective parameters).

    At the optimum H = J^T J / P, so rank(H) = rank(J): the dimension of the
    space of functions the network can represent near the teacher (THEORY.md c).

    The formula is chosen from the activation's metadata, never its name
    (:class:`~fasthess.activations.Activation`): ``Polynomial([0, 1, 1])`` gets the
    answers of ``"quadratic"``, and a :class:`~fasthess.CustomActivation` those of
    the built-in its declarations match.

    Parameters
    ----------
    activation : str or Activation
        A name or an object; only its metadata is read.
    n_in, n_hidden, n_out : int
        Ni, Nh, No >= 1.
    n_samples : int or None
        P, the number of data points; None for P -> infinity.

    Returns
    -------
    int
        With D = Nh (Ni + No), r = min(Nh, Ni) and M the powers of a polynomial g
        (``is_polynomial``, ``powers``):

        * linear (M = {1}, any g = c z): No m - (No - Nh)_+ (m - Nh)_+, m = min(P, Ni);
        * M = {2}, No = 1: r Ni - r (r - 1) / 2; M = {1, 2}, No = 1: r (Ni + 1) - r (r - 1) / 2;
        * other polynomials: min(B, D - kappa), minus one on the configurations of
          :data:`SPORADIC_DEFECTS`, where B = No sum_{m in M} C(Ni+m-1, m) and
          kappa = Nh if M = {d}, else (Nh - No sum_{m in M, m < d} C(Ni+m-1, m))_+;
        * a non-polynomial g with a ``homogeneous_degree`` (relu): D - Nh, one
          rescaling symmetry per hidden unit (finite P: a conjecture, see below);
        * a non-polynomial g with ``no_continuous_symmetry`` (erf, tanh): D.

        At finite P the result is capped by the tangent dimension of rank <= Nh
        output matrices, P No - (No - Nh)_+ (P - Nh)_+ (verified for polynomials
        and erf/tanh; for relu the rank also depends on how the data fall in the
        activation sectors and can be lower at small P: a conjecture there).

    Raises
    ------
    ValueError
        For a non-polynomial activation that declares neither
        ``homogeneous_degree`` nor ``no_continuous_symmetry`` (no formula), or a
        polynomial with a constant term beyond the exact-rank fallback.

    Notes
    -----
    The three families above hold at every size (linear and z^2: tangent spaces
    of rank <= Nh matrices and symmetric matrices; z + eps z^2 checked with
    :func:`exact_rank` up to Ni = 17, Nh = 20). The general polynomial formula
    was verified against :func:`exact_rank` for the degree sets {2}, {1,2}, {3},
    {4}, {5}, {1,3}, {2,3}, {1,4}, {2,4}, {3,4}, {1,5}, {1,2,3}, {1,2,4},
    {1,2,3,4}, all 1 <= Ni, Nh <= 8, 1 <= No <= 3, and the finite-P cap for every
    P up to the rank (two-term degree sets do not depend on the coefficients,
    by rescaling z; the longer ones were checked with random coefficients).
    Outside that (another degree set, larger sizes, a constant term c0 != 0),
    where unknown sporadic defects may exist, the result is :func:`exact_rank`
    with a fixed seed. If D > 1200 that would be slow, so instead the generic
    formula, a proven upper bound, is returned with a ``UserWarning``
    (a constant term then raises ``ValueError``).
    D - Nh for positively homogeneous g was checked with floating-point
    Jacobian ranks (gaps above 10 decades, P = max(4 D + 50, 400)) for relu,
    leaky relu max(z, z / 10) and |z| (degree 1) and relu(z)^2 (degree 2) at
    Ni, Nh in 2..6, No in 1, 2.

    Examples
    --------
    >>> from fasthess.theory import effective_parameters
    >>> effective_parameters("quadratic", 10, 10)   # N(N+3)/2 of D = 110
    65
    >>> effective_parameters("linear", 6, 4)
    6
    >>> effective_parameters("erf", 5, 4, n_samples=3)
    3
    """
    act = get_activation(activation)
    n_in, n_hidden, n_out, n_samples = _check_sizes(n_in, n_hidden, n_out, n_samples)
    n_params = n_hidden * (n_in + n_out)
    cap = n_params if n_samples is None else _output_cap(n_samples, n_hidden, n_out)

    if not act.is_polynomial:
        if act.homogeneous_degree is not None:
            # one rescaling symmetry per hidden unit, w_j -> c w_j, b_j -> c^-d b_j
            return min(n_params - n_hidden, cap)
        if act.no_continuous_symmetry:
            return min(n_params, cap)
        raise ValueError(
            f"activation: no rank formula for the non-polynomial activation {act.name!r}, "
            f"which declares neither homogeneous_degree nor no_continuous_symmetry; "
            f"measure the rank numerically (fasthess.numerical_rank of the eigenvalues), "
            f"or declare what holds when building the CustomActivation (polynomial_coeffs, "
            f"homogeneous_degree or no_continuous_symmetry)")

    powers = act.powers
    if 0 not in powers:
        if powers == (1,):
            return _linear_rank(n_in, n_hidden, n_out, n_samples)
        r = min(n_hidden, n_in)
        if n_out == 1 and powers == (2,):
            return min(r * n_in - r * (r - 1) // 2, cap)
        if n_out == 1 and powers == (1, 2):
            return min(r * (n_in + 1) - r * (r - 1) // 2, cap)
        in_range = (n_in <= _VERIFIED_MAX[0] and n_hidden <= _VERIFIED_MAX[1]
                    and n_out <= _VERIFIED_MAX[2])
        if powers in _VERIFIED_POWERS and in_range:
            rank = _generic_polynomial_rank(powers, n_in, n_hidden, n_out)
            if (n_in, n_hidden, n_out) in SPORADIC_DEFECTS.get(powers, ()):
                rank -= 1
            return min(rank, cap)

    if n_params <= _config.FALLBACK_MAX_PARAMS:
        return exact_rank(act, n_in, n_hidden, n_out, n_samples, rng=_config.FALLBACK_SEED)
    if 0 in powers:
        raise ValueError(
            f"activation: {act.name!r} has a constant term, for which there is no closed "
            f"form, and D = {n_params} parameters is beyond the automatic exact-rank "
            f"fallback (D <= {_config.FALLBACK_MAX_PARAMS}); call exact_rank directly "
            f"(D <= {_config.EXACT_MAX_PARAMS})")
    bound = min(_generic_polynomial_rank(powers, n_in, n_hidden, n_out), cap)
    warnings.warn(
        f"effective_parameters: the closed form for {act.name!r} at (n_in, n_hidden, n_out) = "
        f"({n_in}, {n_hidden}, {n_out}) is unverified (sporadic defects may lower it); "
        f"returning the proven upper bound {bound}. exact_rank certifies it for "
        f"D <= {_config.EXACT_MAX_PARAMS}.", UserWarning, stacklevel=2)
    return bound


def _to_field(c, prime):
    """A float coefficient as an element of F_p (see exact_rank)."""
    frac = Fraction(float(c)).limit_denominator(10**6)
    if frac == 0 and c != 0:
        frac = Fraction(float(c))  # tiny but nonzero: keep it nonzero, exactly
    value = (frac.numerator % prime) * pow(frac.denominator % prime, prime - 2, prime) % prime
    if value == 0 and c != 0:
        raise ValueError(f"activation: coefficient {c!r} is 0 modulo p = {prime}; "
                         f"rescale the activation")
    return value


def exact_rank(activation, n_in, n_hidden, n_out=1, n_samples=None, rng=None) -> int:
    """Compute the generic rank of the Jacobian exactly, over the finite field F_p.

    All weights and inputs are drawn uniformly from F_p, p = 2^31 - 1, and the
    rank of J (rows (mu, k), columns theta = [w1 row-major, w2 row-major]) is
    found by Gaussian elimination mod p, with no tolerance. J's entries are
    polynomials with integer coefficients in the weights and inputs, so the
    result never exceeds the generic rank over the rationals and equals it with
    probability at least 1 - 2 d rank / p (Schwartz-Zippel: a minor of size
    rank has degree <= 2 d rank, d = degree of g), 1 - 2e-5 for d = 5 at D = 4000.

    Parameters
    ----------
    activation : str or Activation
        Must be a polynomial. Coefficients are mapped to F_p exactly as
        ``Fraction(c).limit_denominator(10**6)``, numerator times the inverse of
        the denominator mod p, so 0.5 is 1/2 and 0.1 is 1/10. The rank computed
        is that of the polynomial with these rational coefficients.
    n_in, n_hidden, n_out : int
        Ni, Nh, No >= 1, with D = Nh (Ni + No) <= 4000.
    n_samples : int or None
        P. None means enough samples that the data do not limit the rank
        (P = min(D, B) + 2, where B bounds the rank; P generic points separate
        any space of functions of dimension <= P). A larger P cannot change the
        rank and is computed as min(D, B) + 2.
    rng : None, int or numpy.random.Generator, optional
        Source of the random field elements (SPEC 7): None draws fresh entropy,
        an int seeds a new Generator, a Generator is used as is. The rank is the
        generic one with probability >= 1 - 2e-5 whatever the draw.

    Returns
    -------
    int
        The rank of J over F_p: the generic rank of the Jacobian (and of H at the
        optimum), with the probability above.

    Raises
    ------
    ValueError
        For a non-polynomial activation (use a floating-point numerical rank:
        ``fasthess.numerical_rank`` of the eigenvalues, e.g. from the "svd"
        eigenvalue route), or D > 4000.

    Examples
    --------
    >>> from fasthess import Polynomial
    >>> from fasthess.theory import exact_rank
    >>> exact_rank(Polynomial([0, 0, 1]), 4, 2, rng=0)   # r Ni - r(r-1)/2, r = 2
    7
    >>> exact_rank("linear", 6, 2, n_out=3, rng=0)      # 18 - (3-2)(6-2)
    14
    """
    from .._kernels.modp import PRIME, jacobian_rank_modp

    act = get_activation(activation)
    n_in, n_hidden, n_out, n_samples = _check_sizes(n_in, n_hidden, n_out, n_samples)
    generator = check_rng(rng)
    if not act.is_polynomial:
        raise ValueError(
            f"activation: exact_rank needs a polynomial activation, got {act.name!r}; "
            f"for it measure a floating-point rank instead (fasthess.numerical_rank of "
            f"the eigenvalues, with the 'svd' eigenvalue route), which reports the gap")
    n_params = n_hidden * (n_in + n_out)
    if n_params > _config.EXACT_MAX_PARAMS:
        raise ValueError(
            f"n_in, n_hidden, n_out: D = n_hidden * (n_in + n_out) = {n_params} parameters "
            f"exceeds the exact-rank limit {_config.EXACT_MAX_PARAMS} (memory and time grow as D^2 "
            f"and D^3); use effective_parameters or a numerical rank")
    coeffs = np.array([_to_field(c, PRIME) for c in act.coeffs], dtype=np.int64)
    dcoeffs = np.array([(m * int(coeffs[m])) % PRIME for m in range(1, coeffs.size)] or [0],
                       dtype=np.int64)
    bound = min(n_params, _degree_bound(act.powers, n_in, n_out))
    # bound + 2 generic points already separate the <= bound tangent functions, so more
    # samples cannot raise the rank: never draw (or allocate) more than that
    n_samples = bound + 2 if n_samples is None else min(n_samples, bound + 2)
    max_rank = min(bound, n_samples * n_out)

    w1 = generator.integers(0, PRIME, size=(n_hidden, n_in), dtype=np.int64)
    w2 = generator.integers(0, PRIME, size=(n_out, n_hidden), dtype=np.int64)
    X = generator.integers(0, PRIME, size=(n_samples, n_in), dtype=np.int64)
    return int(jacobian_rank_modp(w1, w2, X, coeffs, dcoeffs, max_rank))
