"""Spectral laws of linear networks: exact spectra and the large-size pooled density.

:func:`linear_spectrum_exact` gives the exact reduced spectrum of a linear network
(THEORY.md b); :func:`linear_density` and :func:`linear_cdf` the pooled eigenvalue
density of random linear teachers, built from the Marchenko-Pastur law
(:func:`marchenko_pastur_pdf`) and a scaled chi-square (:func:`scaled_chi2_pdf`).
"""
from __future__ import annotations

import math

import numpy as np

from .. import _config
from .._validation import check_int, check_real
from ..network import TwoLayerNet

__all__ = ["marchenko_pastur_pdf", "scaled_chi2_pdf", "linear_density", "linear_cdf",
           "linear_spectrum_exact", "linear_spectrum"]


# ----------------------------------------------------------------- spectral laws


def _as_float_array(x, name):
    """Evaluation points of a density: real numbers of any shape (integers welcome, inf allowed)."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be real numbers, got {type(x).__name__} of dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN")
    return arr


def _scalar_or_array(out):
    return out[()] if out.ndim == 0 else out


def _mp_edges(q):
    sq = math.sqrt(q)
    return (1.0 - sq) ** 2, (1.0 + sq) ** 2


def _mp_pdf(x, q):
    lo, hi = _mp_edges(q)
    out = np.zeros_like(x)
    inside = (x > lo) & (x < hi)
    xi = x[inside]
    out[inside] = np.sqrt((hi - xi) * (xi - lo)) / (2.0 * np.pi * q * xi)
    return out


def _mp_cdf(x, q):
    """Mass of the continuous part of MP(q) below x, divided by its total min(1, 1/q).

    Closed form of int sin^2 / (A + B cos) in the substitution
    x = 1 + q + 2 sqrt(q) cos(phi), which is decreasing in phi.
    """
    sq = math.sqrt(q)
    phi = np.arccos(np.clip((x - 1.0 - q) / (2.0 * sq), -1.0, 1.0))
    t = abs(1.0 - sq) / (1.0 + sq)

    def antiderivative(psi):
        half = np.minimum(psi, np.pi) / 2.0
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            at = np.where(half >= np.pi / 2.0, np.pi / 2.0, np.arctan(t * np.tan(half)))
        return -np.sin(psi) / (2.0 * sq) + (1.0 + q) * psi / (4.0 * q) - abs(1.0 - q) / (2.0 * q) * at

    mass = (2.0 / np.pi) * (antiderivative(np.pi) - antiderivative(phi))
    return np.clip(mass / min(1.0, 1.0 / q), 0.0, 1.0)


def _mp_nodes(q, n):
    """Midpoint nodes/weights in phi for the continuous part of MP(q), weights summing to 1.

    In phi the integrand rho_q dx = 2 sin^2(phi) / (pi x) dphi is smooth (no
    square-root edges), so the midpoint rule converges fast.
    """
    phi = (np.arange(n) + 0.5) * (np.pi / n)
    x = 1.0 + q + 2.0 * math.sqrt(q) * np.cos(phi)
    w = np.sin(phi) ** 2 / x
    return x, w / w.sum()


def _wishart2_pdf(x, dof):
    """Pooled eigenvalue density of a 2 x 2 real Wishart matrix, ``dof`` >= 2, scale I.

    Marginal of p(l1, l2) ~ (l1 l2)^a e^{-(l1+l2)/2} |l1 - l2|, a = (dof - 3)/2;
    the |l1 - l| integral is done with regularized incomplete gammas P, and the
    normalisation uses E|X - Y| = 4 Gamma(a + 3/2) / (sqrt(pi) Gamma(a + 1)) for
    X, Y iid Gamma(a + 1, scale 2).
    """
    from scipy import special

    a = 0.5 * (dof - 3)
    out = np.zeros_like(x)
    pos = x >= 0 if a >= 0 else x > 0  # dof = 2 diverges at 0
    xp = x[pos]
    bracket = (2.0 * xp * special.gammainc(a + 1, xp / 2) - 4.0 * (a + 1) * special.gammainc(a + 2, xp / 2)
               + 2.0 * (a + 1) - xp)
    log_norm = ((a + 1) * math.log(2.0) + special.gammaln(a + 1)
                + math.log(4.0) + special.gammaln(a + 1.5) - 0.5 * math.log(math.pi)
                - special.gammaln(a + 1))
    out[pos] = np.exp(special.xlogy(a, xp) - xp / 2 - log_norm) * np.maximum(bracket, 0.0)
    return out


def _chi2_pdf(x, k):
    # scipy.special directly: scipy.stats' per-call overhead dominates on big grids
    from scipy import special

    out = np.zeros_like(x)
    pos = x >= 0 if k >= 2 else x > 0  # k = 1 diverges at 0
    xp = x[pos]
    out[pos] = np.exp(special.xlogy(0.5 * k - 1.0, xp) - 0.5 * xp
                      - 0.5 * k * math.log(2.0) - special.gammaln(0.5 * k))
    return out


def _chi2_cdf(x, k):
    from scipy import special

    return special.gammainc(0.5 * k, 0.5 * np.maximum(x, 0.0))


class _GramLaw:
    """Pooled eigenvalue law of G = A A^T, A (n_rows x dof) with iid N(0, s^2) entries.

    ``atom`` is the fraction of exactly-zero eigenvalues ((n_rows - dof)_+ / n_rows);
    ``pdf``/``cdf`` describe the nonzero ones (normalised to 1). The nonzero
    eigenvalues are s^2 times those of an n x n Wishart with m dof, n = min, m = max:
    exact for n = 1 (chi-square) and n = 2 (closed form), the Marchenko-Pastur
    limit (ratio n / m, scale s^2 m) for n >= 3.

    The exact laws are tabulated once in u = sqrt(x), where their densities are
    bounded (even x^-1/2 at the origin for m - n <= 1) and about equally wide for
    every m, and then interpolated: the convolutions evaluate them millions of
    times, and incomplete gamma functions are slow.
    """

    _TABLE = 20001

    def __init__(self, n_rows, dof, s2):
        from scipy import stats

        n, m = min(n_rows, dof), max(n_rows, dof)
        self.atom = max(n_rows - dof, 0) / n_rows
        self.scale = s2
        self.mean = s2 * m
        self.sd = s2 * math.sqrt(m * (n + 1))  # exact pooled variance m (n + 1)
        if n <= 2:
            hi = math.sqrt(stats.chi2.isf(1e-17, n * m))  # an eigenvalue <= trace ~ chi2_nm
            lo = math.sqrt(stats.chi2.ppf(1e-17, m)) if n == 1 else 0.0
            u = np.linspace(lo, hi, self._TABLE)
            if n == 1:
                dens_u = 2.0 * u * _chi2_pdf(u * u, m)
                cdf = _chi2_cdf(u * u, m)
                if m == 1:
                    dens_u[0] = 2.0 / math.sqrt(2.0 * math.pi)  # limit of 2u f(u^2)
            else:
                dens_u = 2.0 * u * _wishart2_pdf(u * u, m)
                if m == 2:
                    dens_u[0] = dens_u[1]  # bounded limit at u = 0
                cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens_u[1:] + dens_u[:-1]) * np.diff(u))])
                cdf /= cdf[-1]
            self._u, self._dens_u, self._cdf_u = u, dens_u, cdf
            self._mp = None
        else:
            self._mp = (n / m, float(m))
            lo, hi = _mp_edges(n / m)
            self._x = np.linspace(lo, hi, self._TABLE)
            self._cdf_x = _mp_cdf(self._x, n / m)

    def pdf(self, t):
        x = t / self.scale
        if self._mp is not None:
            q, m = self._mp
            return _mp_pdf(x / m, q) / (m * self.scale)
        out = np.zeros_like(x)
        pos = x > 0
        u = np.sqrt(x[pos])
        out[pos] = np.interp(u, self._u, self._dens_u, left=0.0, right=0.0) / (2.0 * u * self.scale)
        return out

    def cdf(self, t):
        x = t / self.scale
        if self._mp is not None:
            q, m = self._mp
            return np.interp(x / m, self._x, self._cdf_x, left=0.0, right=1.0)
        return np.interp(np.sqrt(np.maximum(x, 0.0)), self._u, self._cdf_u, left=0.0, right=1.0)


def marchenko_pastur_pdf(x, q):
    """Evaluate the continuous part of the Marchenko-Pastur law with ratio q (unit variance).

    rho_q(x) = sqrt((x_+ - x)(x - x_-)) / (2 pi q x) on [x_-, x_+],
    x_pm = (1 pm sqrt q)^2, zero outside. Its mass is min(1, 1/q): for q > 1
    the law has in addition an atom 1 - 1/q at x = 0, which is not included.
    It is the large-size eigenvalue law of W^T W / n for W (n x p) with iid
    unit-variance entries and q = p / n.

    Parameters
    ----------
    x : array_like
        Points at which to evaluate.
    q : float
        Ratio > 0.

    Returns
    -------
    ndarray or float
        The density rho_q(x), of x's shape (a float for a scalar x).

    Examples
    --------
    >>> import numpy as np
    >>> from fasthess.theory import marchenko_pastur_pdf
    >>> bool(np.isclose(marchenko_pastur_pdf(2.0, 1.0), 1 / (2 * np.pi)))
    True
    """
    q = check_real(q, "q", positive=True)
    x = _as_float_array(x, "x")
    return _scalar_or_array(_mp_pdf(x, q))


def scaled_chi2_pdf(t, n_hidden, w2_std=None):
    """Evaluate the density of t = |a|^2 for a ~ N(0, w2_std^2 I_Nh): chi2.pdf(t / s^2; Nh) / s^2.

    Parameters
    ----------
    t : array_like
        Points at which to evaluate.
    n_hidden : int
        Nh >= 1, the degrees of freedom.
    w2_std : float, optional
        The scale s; default 1 / sqrt(Nh), so that t has mean 1 and variance 2 / Nh.

    Returns
    -------
    ndarray or float
        The density at t, of t's shape (a float for a scalar t).

    Examples
    --------
    >>> from fasthess.theory import scaled_chi2_pdf
    >>> round(float(scaled_chi2_pdf(1.0, 2, w2_std=1.0)), 6)   # exp(-1/2) / 2
    0.303265
    """
    n_hidden = check_int(n_hidden, "n_hidden", minimum=1)
    s = 1.0 / math.sqrt(n_hidden) if w2_std is None else check_real(w2_std, "w2_std", positive=True)
    t = _as_float_array(t, "t")
    return _scalar_or_array(_chi2_pdf(t / s**2, n_hidden) / s**2)


def _linear_law(n_in, n_hidden, n_out, w1_std, w2_std):
    n_in = check_int(n_in, "n_in", minimum=1)
    n_hidden = check_int(n_hidden, "n_hidden", minimum=1)
    n_out = check_int(n_out, "n_out", minimum=1)
    s1 = 1.0 / math.sqrt(n_in) if w1_std is None else check_real(w1_std, "w1_std", positive=True)
    s2 = 1.0 / math.sqrt(n_hidden) if w2_std is None else check_real(w2_std, "w2_std", positive=True)
    q = n_in / n_hidden
    v_scale = s1**2 * n_hidden  # eig(W1^T W1) = v_scale * MP(q)
    u = _GramLaw(n_out, n_hidden, s2**2)  # eig(W2 W2^T)
    # the largest spacing of the shifts, pi R / n (R = half-width), must stay below
    # u's width sd: a midpoint sum of a bump of width sd at spacing 2 sd / 3 is
    # exact to ~exp(-2 pi^2 (3/2)^2) = 1e-19 relative
    half_width = 2.0 * math.sqrt(q) * v_scale
    wanted = math.ceil(1.5 * math.pi * half_width / u.sd)
    n_nodes = int(min(_config.MAX_QUAD_NODES, max(_config.QUAD_NODES, wanted)))
    x, w = _mp_nodes(q, n_nodes)
    v0 = max(1.0 - n_hidden / n_in, 0.0)
    return u, v0, v_scale * x, w, v_scale, q


def _linear_eval(lam, n_in, n_hidden, n_out, w1_std, w2_std, which):
    u, v0, shifts, w, v_scale, q = _linear_law(n_in, n_hidden, n_out, w1_std, w2_std)
    lam = _as_float_array(lam, "x")
    flat = lam.ravel()
    u_part = u.pdf if which == "pdf" else u.cdf
    conv = np.empty_like(flat)
    chunk = max(1, 4_000_000 // shifts.size)  # bound the (points x nodes) temporary
    for start in range(0, flat.size, chunk):
        block = flat[start:start + chunk, None] - shifts[None, :]
        conv[start:start + chunk] = u_part(block) @ w
    if which == "pdf":
        v_only = _mp_pdf(flat / v_scale, q) / (v_scale * min(1.0, 1.0 / q))
    else:
        v_only = _mp_cdf(flat / v_scale, q)
    u0 = u.atom
    out = ((1 - u0) * v0 * u_part(flat) + u0 * (1 - v0) * v_only
           + (1 - u0) * (1 - v0) * conv) / (1 - u0 * v0)
    if which == "pdf":
        out[flat <= 0] = 0.0
    else:
        out = np.clip(np.where(flat <= 0, 0.0, out), 0.0, 1.0)
    return _scalar_or_array(out.reshape(lam.shape))


def linear_density(x, n_in, n_hidden, n_out=1, w1_std=None, w2_std=None):
    """Evaluate the large-size pooled density of the nonzero Hessian eigenvalues (linear nets).

    At the optimum with P -> infinity the eigenvalues of one teacher are
    lambda_a(W2 W2^T) + lambda_b(W1^T W1), a <= No, b <= Ni (THEORY.md b), with
    W1 ~ N(0, s1^2), W2 ~ N(0, s2^2) independent, so the law pooled over
    teachers is the convolution of the two pooled eigenvalue laws:

    * eig(W1^T W1) = s1^2 Nh MP(q), q = Ni / Nh: the Marchenko-Pastur limit,
      with an atom w0 = (1 - Nh/Ni)_+ at 0 (then Ni - Nh eigenvalues equal
      those of W2 W2^T exactly);
    * eig(W2 W2^T): for No = 1, t = |a|^2 ~ s2^2 chi^2_Nh exactly; in general
      s2^2 times the eigenvalues of an n x n real Wishart matrix with m degrees
      of freedom, n = min(No, Nh), m = max(No, Nh), plus a fraction
      (No - Nh)_+ / No of zeros: exact for n <= 2, its Marchenko-Pastur limit
      (ratio n / m) for n >= 3.

    The convolution with the continuous MP part is a midpoint rule in phi,
    x = (1 + q) + 2 sqrt(q) cos(phi), with 800 nodes (more when the law of
    W2 W2^T is narrower than the node spacing). The exact zero eigenvalues
    (No > Nh and Ni > Nh: (No - Nh)(Ni - Nh) per teacher) are excluded and the
    rest renormalised, so the density integrates to 1.

    Parameters
    ----------
    x : array_like
        Eigenvalues at which to evaluate.
    n_in, n_hidden, n_out : int
        Ni, Nh, No >= 1 of the teachers.
    w1_std, w2_std : float, optional
        The scales s1, s2; defaults 1 / sqrt(Ni), 1 / sqrt(Nh). The mean is
        (s1^2 + s2^2) Nh (1 + Nh/Ni by default) when there are no exact zeros.

    Returns
    -------
    ndarray or float
        The density at x, of x's shape (a float for a scalar x).

    Notes
    -----
    The error is the finite-size effect of the MP limits. KS distances of
    :func:`linear_cdf` to the pooled eigenvalues of 200 random teachers
    (mean over 5 ensembles): No = 1: 0.009 at (Ni, Nh) = (40, 60), 0.021 at
    (60, 30); No = 2: 0.008-0.025 from (8, 4) to (40, 60); No = 3 (MP for
    W2 W2^T): 0.011 at (40, 60), 0.03-0.05 at (20, 10), (8, 4). Small Nh
    (e.g. (30, 1), (10, 3)) gives about 0.05 for every No.

    Examples
    --------
    >>> import numpy as np
    >>> from fasthess.theory import linear_density
    >>> lam = np.linspace(0, 8, 4001)
    >>> f = linear_density(lam, 40, 60)
    >>> round(float(np.trapezoid(f, lam)), 4), round(float(np.trapezoid(lam * f, lam)), 3)
    (1.0, 2.5)
    """
    return _linear_eval(x, n_in, n_hidden, n_out, w1_std, w2_std, "pdf")


def linear_cdf(x, n_in, n_hidden, n_out=1, w1_std=None, w2_std=None):
    """Evaluate the cumulative distribution of the law of :func:`linear_density`.

    Same model, parameters and accuracy; the chi-square, 2 x 2 Wishart and MP
    CDFs enter the same quadrature. 0 for x <= 0, rising to 1.

    Parameters
    ----------
    x : array_like
        Eigenvalues at which to evaluate.
    n_in, n_hidden, n_out : int
        Ni, Nh, No >= 1 of the teachers.
    w1_std, w2_std : float, optional
        The scales s1, s2; defaults 1 / sqrt(Ni), 1 / sqrt(Nh).

    Returns
    -------
    ndarray or float
        P(lambda <= x), of x's shape (a float for a scalar x).

    Examples
    --------
    >>> from fasthess.theory import linear_cdf
    >>> float(linear_cdf(0.0, 40, 60)), round(float(linear_cdf(50.0, 40, 60)), 6)
    (0.0, 1.0)
    """
    return _linear_eval(x, n_in, n_hidden, n_out, w1_std, w2_std, "cdf")


def linear_spectrum_exact(w1, w2, X=None):
    """Compute all No*Ni eigenvalues of the reduced linear-network Hessian at the optimum.

    For g(z) = z, H = M^T (I_No (x) C) M with M M^T = S = (W2 W2^T) (x) I_Ni +
    I_No (x) (W1^T W1) and C = X^T X / P, so the nonzero eigenvalues of H are
    those of (I (x) C^{1/2}) S (I (x) C^{1/2}) (THEORY.md b). The remaining
    D - No Ni eigenvalues of H are zero.

    Parameters
    ----------
    w1 : array, shape (n_hidden, n_in)
        First-layer weights, float32 or float64 (computed in float64).
    w2 : array, shape (n_out, n_hidden)
        Second-layer weights; a 1-d array is one output.
    X : array_like, shape (n_samples, n_in), optional
        Data (integers are upcast to float64); None means P -> infinity with C = I,
        where the eigenvalues are
        lambda_a(W2 W2^T) + lambda_b(W1^T W1) exactly.

    Returns
    -------
    ndarray of length No*Ni, ascending, float64
        Includes the No*Ni - rank(H) (numerical) zeros.

    Notes
    -----
    C^{1/2} is never formed: with X / sqrt(P) = Q R, C = R^T R and the spectrum
    is that of (I (x) R) S (I (x) R^T) = (W2 W2^T) (x) (R R^T) + I (x) (R W1^T W1 R^T),
    padded with No (Ni - min(P, Ni)) exact zeros. This keeps the full relative
    accuracy (a square root of a singular C would cost half the digits).

    Examples
    --------
    >>> import numpy as np
    >>> from fasthess.theory import linear_spectrum_exact
    >>> w1 = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]); w2 = np.array([[1.0, 1.0]])
    >>> linear_spectrum_exact(w1, w2)    # |w2|^2 + {0, 1, 4}
    array([2., 3., 6.])
    """
    # the network's own checks of w1, w2 and X (one place for the shape rules)
    net = TwoLayerNet(w1, w2, "linear")
    return linear_spectrum(net.w1, net.w2, None if X is None
                           else net.check_inputs(X, dtype=np.float64))


def linear_spectrum(w1, w2, X=None) -> np.ndarray:
    """:func:`linear_spectrum_exact` of validated arrays (float, matching shapes; X of
    shape (P, n_in) or None): what fasthess.eigenvalues' "linear" route calls after
    validating its arguments once."""
    w1 = np.asarray(w1, dtype=np.float64)
    w2 = np.asarray(w2, dtype=np.float64)
    n_hidden, n_in = w1.shape
    n_out = w2.shape[0]
    gram2 = w2 @ w2.T
    gram1 = w1.T @ w1
    if X is None:
        ev = (np.linalg.eigvalsh(gram2)[:, None] + np.linalg.eigvalsh(gram1)[None, :]).ravel()
        return np.sort(ev)
    X = np.asarray(X, dtype=np.float64)
    r = np.linalg.qr(X / math.sqrt(X.shape[0]), mode="r")  # (min(P, Ni), Ni)
    rw = r @ w1.T  # R W1^T: R W1^T W1 R^T = rw rw^T, symmetric by construction
    k = r.shape[0]
    reduced = np.kron(gram2, r @ r.T) + np.kron(np.eye(n_out), rw @ rw.T)
    ev = np.linalg.eigvalsh(0.5 * (reduced + reduced.T))
    ev = np.concatenate([np.zeros(n_out * (n_in - k)), ev])
    return np.sort(ev)
