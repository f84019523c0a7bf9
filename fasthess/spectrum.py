"""Eigenvalues of the Hessian: exact routes, a few matrix-free, numerical rank, density, trace.

Exact spectra (:func:`eigenvalues`) go through the cheapest exact route:

* ``"dense"``: assemble H (:func:`fasthess.hessian`) and ``scipy.linalg.eigh``; any point.
* ``"ntk"``: at the optimum H = J^T J / P and K = J J^T / P (:func:`fasthess.ntk`) share
  their nonzero eigenvalues (THEORY.md a), so a (P No x P No) problem replaces a D x D one.
* ``"linear"``: linear activation at the optimum; the No Ni eigenvalues of the reduced
  matrix of THEORY.md b (:func:`fasthess.theory.linear_spectrum_exact`), the rest are zeros.
* ``"svd"``: singular values of the explicit Jacobian, squared / P. Slower, but resolves
  eigenvalues down to ~1e-30 of the largest instead of ~1e-16 (see :func:`numerical_rank`).

Matrix-free: :func:`eigsh` (a few extreme eigenvalues), :func:`spectral_density`
(stochastic Lanczos quadrature), :func:`trace` (closed form or Hutchinson).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ._resources import check_fits
from ._validation import check_dtype, check_float_array, check_int, check_positive_float
from .hessian import _ASSEMBLY_OVERHEAD, check_teacher, features, hessian
from .operators import hessian_operator, hessian_vector_products, jacobian_from_features, ntk

__all__ = [
    "eigenvalues", "Spectrum", "METHODS", "eigsh", "smallest_nonzero",
    "numerical_rank", "RankResult", "spectral_density", "SpectralDensity", "trace",
]

#: Routes accepted by :func:`eigenvalues` (``"auto"`` picks one of the others).
METHODS = ("auto", "dense", "ntk", "linear", "svd")

# LAPACK driver for eigenvalues only. For values only, syevd and syevr do the same
# work (sytrd tridiagonal reduction, then sterf), and measured the same within noise
# (D = 300..2000, 2 cores); syevr is also the driver of subset_by_index.
_EIGH_DRIVER = "evr"

_MATRIX_FREE_HINT = ("for large D use the matrix-free routes: fasthess.eigsh(net, X, k) for a "
                     "few eigenvalues, fasthess.spectral_density(net, X) for the density")

# Lanczos stops a probe when beta falls below sqrt(eps) * ||T||: the Krylov space is then
# invariant to working accuracy, and the weight lost is O(eps).
_LANCZOS_BREAKDOWN = math.sqrt(np.finfo(np.float64).eps)
# Bytes of Lanczos bases (n_steps x D per probe) held at once; probes run in batches.
_SLQ_BASIS_BYTES = 256 * 2**20
# Default density grid: +-_GRID_PAD sigma beyond the extreme nodes (mass outside ~1e-9)
# with spacing sigma / _GRID_PER_SIGMA (trapezoid on a Gaussian is then exact to ~1e-100).
_GRID_PAD = 6.0
_GRID_PER_SIGMA = 5.0
_GRID_MAX_POINTS = 1_000_000
# Default smoothing: this fraction of the node range.
_SIGMA_FRACTION = 0.01
# Hutchinson probes per operator product (bounds the (P, Nh, batch) workspace).
_HUTCHINSON_BATCH = 32


def _rng(seed):
    # None means seed 0: every stochastic routine here is reproducible by default.
    return np.random.default_rng(0 if seed is None else seed)


# ---------------------------------------------------------------------- result types
@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays has no single truth value
class Spectrum:
    """All D eigenvalues of the Hessian, ascending, and how they were obtained.

    Array-like: ``np.asarray(s)``, ``len(s)`` and ``s[i]`` act on ``eigenvalues``.

    Attributes
    ----------
    eigenvalues : ndarray (D,)
        Ascending; structural zeros (e.g. padding of the "ntk" and "linear" routes)
        included, so the length is always D.
    method : str
        The route taken: "dense", "ntk", "linear" or "svd" (never "auto").
    assembly_seconds, solve_seconds : float
        Wall time building the matrix (H, K or J) and decomposing it. The "linear"
        route builds its small reduced matrix inside the solve.
    """

    eigenvalues: np.ndarray
    method: str
    assembly_seconds: float
    solve_seconds: float

    def __array__(self, dtype=None, copy=None):
        a = self.eigenvalues
        if dtype is not None and np.dtype(dtype) != a.dtype:
            if copy is False:
                raise ValueError("Spectrum: converting the eigenvalues to another dtype "
                                 "needs a copy, but copy=False was requested")
            return a.astype(dtype)
        return a.copy() if copy else a

    def __len__(self):
        return self.eigenvalues.shape[0]

    def __getitem__(self, index):
        return self.eigenvalues[index]

    def __repr__(self):
        ev = self.eigenvalues
        return (f"Spectrum(D={ev.size}, method={self.method!r}, min={ev[0]:.6g}, "
                f"max={ev[-1]:.6g}, assembly_seconds={self.assembly_seconds:.3g}, "
                f"solve_seconds={self.solve_seconds:.3g})")


@dataclass(frozen=True, eq=False)
class RankResult:
    """A numerical rank with its tolerance and the gap that supports it.

    Attributes
    ----------
    rank : int
        Number of eigenvalues with ``|lambda| > tolerance``.
    tolerance : float
        ``rtol * max|lambda|``.
    rtol : float
    gap_decades : float
        log10(smallest kept |lambda| / largest dropped |lambda|): how many decades
        separate "nonzero" from "zero". ``inf`` when nothing is dropped or every dropped
        eigenvalue is exactly 0; ``nan`` when nothing is kept (all eigenvalues are 0).
        Trust a rank only with a wide gap (> 8 decades, THEORY.md c).

    ``int(r)`` and ``operator.index(r)`` give the rank; ``r == 7`` compares the rank.
    """

    rank: int
    tolerance: float
    rtol: float
    gap_decades: float

    def __int__(self):
        return self.rank

    def __index__(self):
        return self.rank

    def __eq__(self, other):
        if isinstance(other, RankResult):
            return (self.rank, self.tolerance, self.rtol) == (other.rank, other.tolerance,
                                                              other.rtol)
        if isinstance(other, (int, np.integer)) and not isinstance(other, bool):
            return self.rank == int(other)
        return NotImplemented

    def __hash__(self):
        return hash(self.rank)


@dataclass(frozen=True, eq=False)
class SpectralDensity:
    """Stochastic Lanczos quadrature estimate of the eigenvalue density of H.

    Attributes
    ----------
    grid : ndarray (G,)
        Where ``density`` is evaluated.
    density : ndarray (G,)
        sum_i weights[i] * N(grid; nodes[i], sigma^2). On the default grid it integrates
        to 1 within 1e-8 (``np.trapezoid(density, grid)``).
    nodes, weights : ndarray (n,)
        The Gauss quadrature rule of all probes, flattened: nodes are the Ritz values
        of each probe's Lanczos tridiagonal matrix, weights the squared first components
        of its eigenvectors divided by ``n_probes``, so ``weights.sum() == 1``. The
        discrete measure sum_i weights[i] delta(nodes[i]) estimates the spectral measure
        (1/D) sum_j delta(lambda_j).
    probe : ndarray of int (n,)
        Which probe each node belongs to (a probe has fewer than ``n_steps`` nodes when
        its Krylov space became invariant early).
    sigma : float
        Standard deviation of the Gaussian smoothing.
    n_probes, n_steps : int
    """

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    probe: np.ndarray
    sigma: float
    n_probes: int
    n_steps: int


# ---------------------------------------------------------------------- routes
def _linear_coefficient(activation):
    """c if g(z) = c z, else None."""
    if activation.is_polynomial and activation.powers == (1,):
        return float(activation.coeffs[1])
    return None


def _route_costs(n_in, n_hidden, n_out, n_samples):
    """Flop models of the two general exact routes (documented in :func:`eigenvalues`)."""
    d = n_hidden * (n_in + n_out)
    n = n_samples * n_out
    return {"ntk": float(n) ** 2 * n_hidden + float(n) ** 3,
            "dense": n_samples * float(d) ** 2 / 4 + float(d) ** 3}


def _choose_route(net, n_samples, at_optimum, method):
    """Validate ``method`` against the point and the activation; resolve "auto"."""
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, "
                         f"got {method!r}")
    is_linear = _linear_coefficient(net.activation) is not None
    if method == "auto":
        if not at_optimum:
            return "dense"
        if is_linear:
            return "linear"
        n = n_samples * net.n_out
        costs = _route_costs(net.n_in, net.n_hidden, net.n_out, n_samples)
        if n < net.n_params and costs["ntk"] < costs["dense"]:
            return "ntk"
        return "dense"
    if method != "dense" and not at_optimum:
        raise ValueError(
            f"method={method!r} is exact only at the optimum (teacher None or equal to the "
            f"student), where H = J^T J / P; away from it H has a residual term. "
            f"Use method='dense' (or 'auto')")
    if method == "linear" and not is_linear:
        raise ValueError(
            f"method='linear' needs a linear activation (g(z) = c z), but the network's "
            f"activation is {net.activation.name!r}; use method='auto'")
    return method


def _square_bytes(n, dtype, overhead=1.0):
    # eigh and svd here work in place with O(n) workspace: the peak is the build's
    return int(overhead * int(n) * int(n) * np.dtype(dtype).itemsize)


def eigenvalues(net, X, teacher=None, method="auto", dtype=None) -> Spectrum:
    """All D eigenvalues of the Hessian, ascending, by the cheapest exact route.

    Parameters
    ----------
    net : TwoLayerNet
        The student, the point where H is taken.
    X : array (P, n_in)
    teacher : TwoLayerNet or None
        None (or equal to ``net``): the optimum. Otherwise only "dense" applies.
    method : {"auto", "dense", "ntk", "linear", "svd"}
        * "dense": H assembled, ``scipy.linalg.eigh(eigvals_only=True)``. Any point.
          Cost ~ P D^2 / 4 (assembly) + D^3 (solve), memory 8 D^2 bytes.
        * "ntk" (optimum only): eigenvalues of K = J J^T / P (P No x P No), the
          min(P No, D) largest kept and padded with zeros to D.
          Cost ~ (P No)^2 Nh + (P No)^3.
        * "linear" (linear activation, optimum only): the No Ni eigenvalues of
          THEORY.md b with C = X^T X / P, padded with D - No Ni zeros. Cost ~ (No Ni)^3.
        * "svd" (optimum only): singular values s of the explicit Jacobian J
          (P No x D), eigenvalues s^2 / P, padded with zeros to D. Cost ~
          P No D min(P No, D), memory 8 P No D bytes. Resolves eigenvalues down to
          ~1e-30 of the largest; the others stop near 1e-16 (see :func:`numerical_rank`).
        * "auto": "dense" away from the optimum. At the optimum: "linear" for a
          linear activation; else "ntk" if P No < D and its cost model above is below
          that of "dense"; else "dense".
    dtype : float64 or float32, optional
        Working precision; default the network's dtype.

    Returns
    -------
    Spectrum
        ``.eigenvalues`` (D,), ``.method`` (route taken), ``.assembly_seconds``,
        ``.solve_seconds``; ``np.asarray(result)`` is the eigenvalue array.

    Raises
    ------
    ValueError
        Unknown ``method``, or one that does not apply here (named, with the reason).
    MemoryError
        Before allocating, when the matrix of the route does not fit in memory; the
        message names the bytes and the matrix-free alternatives
        (:func:`eigsh`, :func:`spectral_density`).

    Examples
    --------
    >>> import fasthess as fh
    >>> net = fh.TwoLayerNet.random(4, 3, seed=0); X = fh.gaussian_inputs(6, 4, seed=1)
    >>> s = fh.eigenvalues(net, X)           # P*No = 6 < D = 15: the NTK side
    >>> s.method, len(s)
    ('ntk', 15)
    >>> s2 = fh.eigenvalues(net, X, method="dense")
    >>> bool(abs(s2[-1] - s[-1]) < 1e-12 * s[-1])
    True
    """
    teacher_ = check_teacher(net, teacher)
    dt = check_dtype(dtype if dtype is not None else net.dtype)
    X = net.check_inputs(X, dtype=dt)
    n_samples = X.shape[0]
    route = _choose_route(net, n_samples, teacher_ is None, method)
    d = net.n_params
    if route == "dense":
        check_fits(_square_bytes(d, dt, _ASSEMBLY_OVERHEAD),
                   f"the dense Hessian ({d} x {d}, {dt})", _MATRIX_FREE_HINT)
        t0 = time.perf_counter()
        H = hessian(net, X, teacher_, dtype=dt)
        t1 = time.perf_counter()
        # H is symmetric, so H.T is the same matrix in Fortran order: LAPACK works in place
        vals = _eigh_values(H.T)
        del H
        t2 = time.perf_counter()
    elif route == "ntk":
        n = n_samples * net.n_out
        # K plus its X X^T and A A^T factors (P x P each), as fasthess.ntk allocates
        check_fits(_square_bytes(n, dt, 1.0 + 2.0 / net.n_out**2),
                   f"the NTK Gram matrix ({n} x {n}, {dt})", _MATRIX_FREE_HINT)
        t0 = time.perf_counter()
        K = ntk(net, X, dtype=dt)
        t1 = time.perf_counter()
        vals = _eigh_values(K.T)[-min(n, d):]  # K's extra P*No - D eigenvalues are zeros
        del K
        t2 = time.perf_counter()
    elif route == "linear":
        from .theory import linear_spectrum_exact

        c = _linear_coefficient(net.activation)
        t0 = t1 = time.perf_counter()
        # g = c z: J is c times the linear network's, i.e. that of weights (c w1, c w2)
        vals = np.asarray(linear_spectrum_exact(c * net.w1.astype(dt), c * net.w2.astype(dt),
                                                X), dtype=dt)
        t2 = time.perf_counter()
    else:  # svd
        n = n_samples * net.n_out
        check_fits(n * d * dt.itemsize, f"the Jacobian ({n} x {d}, {dt})",
                   "method='svd' needs the explicit Jacobian; use method='auto' (eigh, "
                   "resolves ~1e-16 of the largest eigenvalue), or " + _MATRIX_FREE_HINT)
        t0 = time.perf_counter()
        J = jacobian_from_features(features(net, X, None, dt))
        t1 = time.perf_counter()
        vals = _singular_values(J) ** 2 / n_samples
        del J
        t2 = time.perf_counter()
    out = np.zeros(d, dtype=dt)
    out[:vals.size] = vals
    out.sort()
    return Spectrum(out, route, t1 - t0, t2 - t1)


def _eigh_values(A):
    import scipy.linalg

    return scipy.linalg.eigh(A, eigvals_only=True, driver=_EIGH_DRIVER, overwrite_a=True,
                             check_finite=False)


def _singular_values(J):
    import scipy.linalg

    # J.T is Fortran-ordered, so gesdd works in place; same singular values as J
    return scipy.linalg.svd(J.T, compute_uv=False, overwrite_a=True, check_finite=False)


# ---------------------------------------------------------------------- a few eigenvalues
_WHICH = ("LA", "SA", "LM")


def _check_operator(operator, net, teacher):
    """``operator`` validated as the Hessian of ``net``: a real (D, D) LinearOperator.

    The operator carries its own point, data and teacher, so a ``teacher`` other than
    the student is refused rather than silently ignored.
    """
    from scipy.sparse.linalg import LinearOperator

    d = net.n_params
    if not isinstance(operator, LinearOperator):
        raise TypeError(f"operator must be a scipy.sparse.linalg.LinearOperator (e.g. "
                        f"fasthess.distributed.hessian_operator(...)) or None, got "
                        f"{type(operator).__name__}")
    if tuple(operator.shape) != (d, d):
        raise ValueError(f"operator must have shape (D, D) = ({d}, {d}) for this network "
                         f"(D = net.n_params), got {tuple(operator.shape)}")
    dt = np.dtype(operator.dtype) if operator.dtype is not None else None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"operator must have dtype float32 or float64 (the Hessian is "
                         f"real), got {dt}")
    if check_teacher(net, teacher) is not None:
        raise ValueError("teacher: not used with operator=, which was built at its own point; "
                         "pass the teacher to the function that built the operator")
    return operator


def eigsh(net, X, k=6, which="LA", teacher=None, tol=0, return_eigenvectors=False,
          seed=None, operator=None):
    """A few extreme eigenvalues, matrix-free (ARPACK on :func:`fasthess.hessian_operator`).

    Memory O(P (Ni + Nh) + D k); each product costs O(P D).

    Parameters
    ----------
    net, X, teacher
        As in :func:`eigenvalues`; away from the optimum the full Hessian is used.
    k : int
        How many, 1 <= k < D.
    which : {"LA", "SA", "LM"}
        Largest algebraic, smallest algebraic, largest magnitude.
    tol : float
        ARPACK relative accuracy; 0 means machine precision.
    return_eigenvectors : bool
    seed : int, numpy Generator or None
        Seeds the starting vector v0 (None means 0), so results are reproducible.
    operator : scipy.sparse.linalg.LinearOperator, optional
        The Hessian of ``net`` as a (D, D) operator to use instead of building
        :func:`fasthess.hessian_operator` here; pass
        ``fasthess.distributed.hessian_operator(net, X, client=...)`` to run the
        products on a Dask cluster. ``X`` is then not used (it may be None) and
        ``teacher`` must be None (or ``net``): the operator holds its own data and point.

    Returns
    -------
    ndarray (k,) ascending, or (values, vectors) with vectors (D, k) in the same order.

    Raises
    ------
    ValueError
        ``k`` not in [1, D), an unknown ``which``, or an ``operator`` not of shape
        (D, D) or not real (float32/float64).
    TypeError
        ``operator`` not a LinearOperator.

    Examples
    --------
    >>> import fasthess as fh
    >>> net = fh.TwoLayerNet.random(5, 4, seed=0); X = fh.gaussian_inputs(60, 5, seed=1)
    >>> top = fh.eigsh(net, X, k=2)
    >>> full = fh.eigenvalues(net, X, method="dense")
    >>> bool(abs(top[-1] - full[-1]) < 1e-10 * full[-1])
    True
    """
    import scipy.sparse.linalg

    check_teacher(net, teacher)
    k = check_int(k, "k", minimum=1)
    if not isinstance(which, str) or which not in _WHICH:
        raise ValueError(f"which must be one of {', '.join(map(repr, _WHICH))}, got {which!r}")
    tol = check_positive_float(tol, "tol", allow_zero=True)
    d = net.n_params
    if k >= d:
        raise ValueError(f"k must be < D = {d} for the iterative solver, got k = {k}; "
                         f"for all eigenvalues use fasthess.eigenvalues(net, X)")
    if operator is None:
        op = hessian_operator(net, X, teacher)
    else:
        op = _check_operator(operator, net, teacher)
    v0 = _rng(seed).standard_normal(d).astype(op.dtype)
    vals, vecs = scipy.sparse.linalg.eigsh(op, k=k, which=which, tol=tol, v0=v0,
                                           return_eigenvectors=True)
    order = np.argsort(vals)
    if return_eigenvectors:
        return vals[order], vecs[:, order]
    return vals[order]


def smallest_nonzero(net, X, k=1, teacher=None, rtol=None, method="auto"):
    """The k nonzero eigenvalues of H closest to zero.

    "Nonzero" means ``|lambda| > tolerance`` with the tolerance of :func:`numerical_rank`
    (default rtol = D * eps of the working dtype, tolerance = rtol * max|lambda|; for
    method "svd" rtol = (D * eps)^2).

    The spectrum comes from :func:`eigenvalues` with ``method`` ("auto": the linear
    route, the NTK side when P No < D at the optimum, else dense). The whole spectrum
    is computed: the tolerance needs the largest eigenvalue and the number of zeros is
    not known in advance, and for eigenvalues only the tridiagonal reduction (the
    O(n^3) part) is the same whether one eigenvalue or all are extracted, so
    ``subset_by_index`` would save nothing.

    Parameters
    ----------
    net, X, teacher
        As in :func:`eigenvalues`.
    k : int
        How many, >= 1.
    rtol : float or None
        As in :func:`numerical_rank`.
    method : str
        A route of :func:`eigenvalues`; "svd" resolves genuine eigenvalues below
        1e-16 of the largest (erf, tanh, cubic polynomials: THEORY.md c).

    Returns
    -------
    ndarray (k,)
        Ordered by |lambda| ascending (ascending at the optimum, where H >= 0).

    Raises
    ------
    ValueError
        If fewer than k eigenvalues are nonzero.

    Examples
    --------
    >>> import fasthess as fh
    >>> net = fh.TwoLayerNet.random(4, 4, activation="quadratic", seed=0)
    >>> X = fh.gaussian_inputs(100, 4, seed=1)
    >>> fh.smallest_nonzero(net, X, k=2).shape    # rank 14 of D = 20: 6 zeros skipped
    (2,)
    """
    k = check_int(k, "k", minimum=1)
    spec = eigenvalues(net, X, teacher=teacher, method=method)
    rank = numerical_rank(spec, rtol)
    ev = spec.eigenvalues
    nonzero = ev[np.abs(ev) > rank.tolerance]
    if nonzero.size < k:
        raise ValueError(
            f"k = {k} but only {nonzero.size} eigenvalue(s) exceed the zero tolerance "
            f"{rank.tolerance:.3g} (rtol = {rank.rtol:.3g}); lower k, or rtol, or use "
            f"method='svd' to resolve smaller eigenvalues")
    order = np.argsort(np.abs(nonzero), kind="stable")
    return nonzero[order[:k]]


# ---------------------------------------------------------------------- rank
def numerical_rank(eigenvalues, rtol=None) -> RankResult:
    """Number of eigenvalues that are nonzero to working precision, with the gap.

    Like :func:`numpy.linalg.matrix_rank`: an eigenvalue counts when
    ``|lambda| > tolerance = rtol * max|lambda|``.

    Parameters
    ----------
    eigenvalues : array (n,) or Spectrum
    rtol : float >= 0 or None
        Default n * eps of the eigenvalues' dtype (n = D for a full spectrum). For a
        :class:`Spectrum` from method "svd" the default is (n * eps)^2: there the
        error is eps * s_max on each singular value s, i.e. eps^2 * lambda_max on the
        eigenvalue scale (the matrix_rank rule applied to J).

    Returns
    -------
    RankResult
        ``.rank``, ``.tolerance``, ``.rtol`` and ``.gap_decades``, the log10 ratio of
        the smallest kept to the largest dropped |lambda|: a rank is trustworthy only
        when it sits in a wide gap.

    Notes
    -----
    When to use ``method="svd"``: eigh of H resolves eigenvalues down to about 1e-16
    of the largest (backward error eps * ||H||), and zero modes come out at that
    level. Genuine eigenvalues can be smaller: erf and tanh networks, and cubic (or
    higher) polynomials at Nh >> Ni, have eigenvalues near 1e-10 relative and below
    (THEORY.md c), and a tiny coefficient (g = z + 1e-10 z^2) gives 1e-20. Singular
    values of J have absolute error eps * s_max, i.e. eigenvalues are resolved down
    to ~1e-30 relative, and zero modes come out near 1e-32. If the gap from eigh is
    small (a few decades) or the rank disagrees with
    :func:`fasthess.theory.effective_parameters`, recompute with
    ``eigenvalues(net, X, method="svd")``.

    Examples
    --------
    >>> import fasthess as fh
    >>> net = fh.TwoLayerNet.random(4, 5, activation="linear", seed=0)
    >>> r = fh.numerical_rank(fh.eigenvalues(net, fh.gaussian_inputs(100, 4, seed=1)))
    >>> int(r), bool(r.gap_decades > 8)       # No * Ni = 4 of D = 25
    (4, True)
    """
    svd = False
    if isinstance(eigenvalues, Spectrum):
        svd = eigenvalues.method == "svd"
        ev = check_float_array(eigenvalues.eigenvalues, "eigenvalues", ndim=1)
    else:
        ev = np.asarray(eigenvalues)
        if ev.dtype.kind in "iub":
            ev = ev.astype(np.float64)
        ev = check_float_array(ev, "eigenvalues", ndim=1)
    n = ev.size
    eps = float(np.finfo(ev.dtype).eps)
    if rtol is None:
        rtol = n * eps
        if svd:
            rtol = rtol * rtol
    else:
        rtol = check_positive_float(rtol, "rtol", allow_zero=True)
    a = np.abs(ev.astype(np.float64))
    top = float(a.max())
    tol = rtol * top
    kept = a > tol
    rank = int(np.count_nonzero(kept))
    if rank == 0:
        gap = math.nan
    elif rank == n:
        gap = math.inf
    else:
        small, big = float(a[kept].min()), float(a[~kept].max())
        gap = math.inf if big == 0.0 else math.log10(small / big)
    return RankResult(rank, tol, rtol, gap)


# ---------------------------------------------------------------------- density
def spectral_density(net, X, teacher=None, n_probes=20, n_steps=60, seed=None, grid=None,
                     sigma=None, operator=None) -> SpectralDensity:
    """Eigenvalue density of H by stochastic Lanczos quadrature, matrix-free.

    For each Rademacher probe z (|z|^2 = D), ``n_steps`` Lanczos steps with full
    reorthogonalisation on H and z / sqrt(D) give a tridiagonal T; its eigenvalues
    (Ritz values) are Gauss nodes, the squared first components of its eigenvectors
    the weights. The rule integrates polynomials of degree <= 2 n_steps - 1 exactly
    against the probe's spectral measure sum_j (z.u_j)^2 / D delta(lambda_j), whose
    mean over probes is the spectral measure of H. Cost: n_probes * n_steps
    products, O(P D) each, plus O(n_steps^2 D) reorthogonalisation per probe.

    Parameters
    ----------
    net, X, teacher
        As in :func:`eigenvalues` (any point).
    n_probes : int >= 1
    n_steps : int >= 1
        Lanczos steps per probe (capped at D). A probe stops early when its Krylov
        space is invariant.
    seed : int, numpy Generator or None
        For the probes (None means 0).
    grid : array or None
        Where to evaluate the density. Default: from min(nodes) - 6 sigma to
        max(nodes) + 6 sigma, spacing sigma / 5.
    sigma : float or None
        Gaussian smoothing width. Default 1% of max(nodes) - min(nodes).
    operator : scipy.sparse.linalg.LinearOperator, optional
        The Hessian of ``net`` as a (D, D) operator whose ``matmat`` does the
        products, instead of the local ones; pass
        ``fasthess.distributed.hessian_operator(net, X, client=...)`` to run them on
        a Dask cluster. ``X`` is then not used (it may be None), ``teacher`` must be
        None (or ``net``), and the Lanczos vectors take the operator's dtype. Same
        seed, same probes: the result differs from the local one only by the
        round-off of the products.

    Returns
    -------
    SpectralDensity
        ``.grid``, ``.density``, flattened ``.nodes`` / ``.weights`` (sum 1) /
        ``.probe``, ``.sigma``.

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> net = fh.TwoLayerNet.random(6, 5, seed=0); X = fh.gaussian_inputs(80, 6, seed=1)
    >>> sd = fh.spectral_density(net, X, n_probes=4, n_steps=20)
    >>> round(float(np.trapezoid(sd.density, sd.grid)), 6)
    1.0
    """
    check_teacher(net, teacher)
    n_probes = check_int(n_probes, "n_probes", minimum=1)
    n_steps = check_int(n_steps, "n_steps", minimum=1)
    if sigma is not None:
        sigma = check_positive_float(sigma, "sigma")
    if grid is not None:
        grid = check_float_array(grid, "grid", ndim=1).astype(np.float64)
    matmat, dt = _products(net, X, teacher, operator)
    d = net.n_params
    m = min(n_steps, d)
    rng = _rng(seed)
    itemsize = dt.itemsize
    check_fits(m * d * itemsize, f"the Lanczos basis of one probe ({m} x {d})",
               "lower n_steps")
    batch = int(max(1, min(n_probes, _SLQ_BASIS_BYTES // (m * d * itemsize))))
    nodes, weights, probe = [], [], []
    for start in range(0, n_probes, batch):
        b = min(batch, n_probes - start)
        Z = (2.0 * rng.integers(0, 2, size=(d, b)) - 1.0).astype(dt)
        alphas, betas, lengths = _lanczos_block(matmat, Z / math.sqrt(d), m)
        for p in range(b):
            theta, tau = _gauss_rule(alphas[:lengths[p], p], betas[:lengths[p] - 1, p])
            nodes.append(theta)
            weights.append(tau / n_probes)
            probe.append(np.full(theta.size, start + p))
    nodes = np.concatenate(nodes)
    weights = np.concatenate(weights)
    probe = np.concatenate(probe)
    lo, hi = float(nodes.min()), float(nodes.max())
    if sigma is None:
        width = hi - lo
        sigma = _SIGMA_FRACTION * width if width > 0 else 1e-3 * max(abs(hi), 1.0)
    if grid is None:
        a, b_ = lo - _GRID_PAD * sigma, hi + _GRID_PAD * sigma
        n_grid = int(math.ceil((b_ - a) * _GRID_PER_SIGMA / sigma)) + 1
        if n_grid > _GRID_MAX_POINTS:
            raise ValueError(
                f"sigma = {sigma:.3g} is too small for the node range [{lo:.3g}, {hi:.3g}]: the "
                f"default grid would need {n_grid} points; pass a larger sigma or a grid")
        grid = np.linspace(a, b_, max(n_grid, 2))
    density = _gaussian_mixture(grid, nodes, weights, sigma)
    return SpectralDensity(grid, density, nodes, weights, probe, float(sigma), n_probes, m)


def _products(net, X, teacher, operator):
    """``(matmat, dtype)``: H V for a (D, b) block V, and the dtype to work in.

    Local: the per-sample factors are computed once and every product reuses them.
    With ``operator``: its ``matmat`` (e.g. one round of tasks on a Dask cluster).
    """
    if operator is not None:
        op = _check_operator(operator, net, teacher)
        return op.matmat, np.dtype(op.dtype)
    f = features(net, X, teacher)
    return (lambda V: hessian_vector_products(f, V)), f.X.dtype


def _lanczos_block(matmat, Q0, m):
    """Lanczos on b unit starting vectors at once (columns of Q0, D x b).

    ``matmat(V)`` returns H V for a (D, b) block; all b probes share each call, so a
    product's fixed cost (a pass over the samples, a round trip to a cluster) is paid
    once per step, not once per probe. Full reorthogonalisation (classical
    Gram-Schmidt, twice) keeps the Ritz values free of ghost copies. Returns alpha
    (m, b), beta (m, b) and each probe's length.
    """
    d, b = Q0.shape
    Q = np.zeros((m, d, b), dtype=Q0.dtype)
    Q[0] = Q0
    alpha = np.zeros((m, b))
    beta = np.zeros((m, b))
    lengths = np.full(b, m)
    active = np.ones(b, dtype=bool)
    anorm = np.zeros(b)
    for j in range(m):
        w = np.array(matmat(Q[j]), dtype=Q0.dtype)  # a copy: updated in place below
        alpha[j] = np.einsum("dp,dp->p", Q[j], w)
        w -= alpha[j] * Q[j]
        if j > 0:
            w -= beta[j - 1] * Q[j - 1]
        for _ in range(2):
            c = np.einsum("sdp,dp->sp", Q[:j + 1], w)
            w -= np.einsum("sdp,sp->dp", Q[:j + 1], c)
        beta[j] = np.linalg.norm(w, axis=0)
        anorm = np.maximum(anorm, np.abs(alpha[j]) + beta[j] + (beta[j - 1] if j else 0.0))
        if j == m - 1:
            break
        stop = active & (beta[j] <= _LANCZOS_BREAKDOWN * anorm)
        lengths[stop] = j + 1
        active &= ~stop
        if not active.any():
            break
        scale = np.where(active, 1.0 / np.where(active, beta[j], 1.0), 0.0)
        Q[j + 1] = w * scale  # stopped probes continue as zero vectors, ignored
    return alpha, beta, lengths


def _gauss_rule(alpha, beta):
    """Nodes and weights of the Gauss rule of a Jacobi matrix (Golub-Welsch)."""
    import scipy.linalg

    if alpha.size == 1:
        return alpha.copy(), np.ones(1)
    theta, vecs = scipy.linalg.eigh_tridiagonal(alpha, beta)
    return theta, vecs[0] ** 2


def _gaussian_mixture(grid, nodes, weights, sigma):
    out = np.zeros(grid.size)
    norm = 1.0 / (sigma * math.sqrt(2.0 * math.pi))
    chunk = max(1, 4_000_000 // max(grid.size, 1))  # bounded (chunk x grid) workspace
    for s in range(0, nodes.size, chunk):
        z = (grid[None, :] - nodes[s:s + chunk, None]) / sigma
        out += weights[s:s + chunk] @ np.exp(-0.5 * z * z)
    return out * norm


# ---------------------------------------------------------------------- trace
_TRACE_METHODS = ("exact", "hutchinson")


def trace(net, X, teacher=None, method="exact", n_probes=100, seed=None,
          return_stderr=False, operator=None):
    """Trace of the Hessian, without forming it.

    Parameters
    ----------
    net, X, teacher
        As in :func:`eigenvalues` (any point).
    method : {"exact", "hutchinson"}
        "exact": the closed-form diagonal (THEORY.md a), O(P (Ni + No Nh)):

            tr H = (1/P) sum_{mu,j} [ (W2^T W2)_jj G'_{mu j}^2 + (r_mu . b_j) G''_{mu j} ] |x_mu|^2
                 + (No/P) sum_{mu,j} A_{mu j}^2

        (the G'' term is the residual part, absent at the optimum).
        "hutchinson": mean of z^T H z over Rademacher probes z, matrix-free.
    n_probes : int >= 2
        Hutchinson probes.
    seed : int, numpy Generator or None
        For the probes (None means 0).
    return_stderr : bool
        Also return the standard error (0.0 for "exact").
    operator : scipy.sparse.linalg.LinearOperator, optional
        Only with method "hutchinson": the Hessian of ``net`` as a (D, D) operator
        whose ``matmat`` does the products; pass
        ``fasthess.distributed.hessian_operator(net, X, client=...)`` to run them on
        a Dask cluster. ``X`` is then not used and ``teacher`` must be None (or ``net``).

    Returns
    -------
    float, or (float, float) with the standard error.

    Raises
    ------
    ValueError
        An unknown ``method``, ``operator`` with method "exact", or an ``operator``
        not of shape (D, D).

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> net = fh.TwoLayerNet.random(4, 3, seed=0); X = fh.gaussian_inputs(30, 4, seed=1)
    >>> bool(np.isclose(fh.trace(net, X), np.trace(fh.hessian(net, X))))
    True
    """
    check_teacher(net, teacher)
    if not isinstance(method, str) or method not in _TRACE_METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, _TRACE_METHODS))}, "
                         f"got {method!r}")
    if method == "exact":
        if operator is not None:
            raise ValueError("operator: only method='hutchinson' uses an operator; the "
                             "'exact' trace is a closed form of the local data")
        f = features(net, X, teacher)
        xx = np.einsum("pi,pi->p", f.X, f.X)
        q = np.einsum("kj,kj->j", f.w2, f.w2)
        coef = f.G1 * f.G1 * q
        if f.residual is not None:
            coef += (f.residual @ f.w2) * f.G2
        value = float((xx @ coef).sum() + net.n_out * np.sum(f.A * f.A)) / f.n_samples
        return (value, 0.0) if return_stderr else value
    n_probes = check_int(n_probes, "n_probes", minimum=2)
    matmat, dt = _products(net, X, teacher, operator)
    d = net.n_params
    rng = _rng(seed)
    samples = np.empty(n_probes)
    for s in range(0, n_probes, _HUTCHINSON_BATCH):
        b = min(_HUTCHINSON_BATCH, n_probes - s)
        Z = (2.0 * rng.integers(0, 2, size=(d, b)) - 1.0).astype(dt)
        samples[s:s + b] = np.einsum("dp,dp->p", Z, matmat(Z))
    value = float(samples.mean())
    stderr = float(samples.std(ddof=1) / math.sqrt(n_probes))
    return (value, stderr) if return_stderr else value
