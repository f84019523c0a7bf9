"""The nonzero eigenvalues of H closest to zero: an exact route, or LOBPCG matrix-free.

:func:`smallest_nonzero` takes one of two kinds of route:

* exact: all D eigenvalues by a route of :func:`fasthess.eigenvalues` ("dense", "ntk",
  "linear", "svd"), those above the zero tolerance of :func:`fasthess.numerical_rank`
  kept. Cost that of the route (dense: ~ P D^2 / 4 + D^3, memory 8 D^2 bytes).
* ``"lobpcg"``: :func:`scipy.sparse.linalg.lobpcg` on the Hessian operator, never
  forming H: a block of the smallest eigenpairs, preconditioned by the inverse of
  H's diagonal blocks (population) or of its diagonal (samples; :func:`hessian_diagonal`),
  both in closed form, with the null directions that theory gives explicitly held out
  as constraints
  (:func:`known_null_directions`). Each iteration costs one product with the block;
  memory O(D m) for a block of m vectors. Every returned eigenvalue is certified by
  its residual (see :func:`smallest_nonzero`).

Why the preconditioner: the smallest genuine eigenvalues of erf, tanh and relu
Hessians are ~1e-8 of the largest, far closer together than to the top of the
spectrum; unpreconditioned LOBPCG did not find them in 4000 iterations (erf,
Ni = Nh = 30, population: eigenvalues off by 30-500 %), with H's diagonal it got them
to 1e-11 relative, and at N = 99 the diagonal blocks did better still (see
``_preconditioner``).
"""
from __future__ import annotations

import numpy as np

from . import _config
from ._features import check_point, features
from ._validation import check_choice, check_int, check_progress, check_real, check_rng
from .operators import check_operator, with_progress
from .rank import numerical_rank
from .spectrum import METHODS, eigenvalues

__all__ = ["smallest_nonzero", "SMALLEST_METHODS", "hessian_diagonal",
           "known_null_directions"]

#: Routes of :func:`smallest_nonzero`: the exact ones of :func:`fasthess.eigenvalues`
#: and the matrix-free ``"lobpcg"``.
SMALLEST_METHODS = METHODS + ("lobpcg",)


def smallest_nonzero(net, X, k=1, teacher=None, rtol=None, method="auto", *, tol=None,
                     maxiter=None, rng=None, progress=None):
    """Find the k nonzero eigenvalues of H closest to zero.

    "Nonzero" means ``|lambda| > tolerance`` with the tolerance of :func:`numerical_rank`
    (default rtol = D * eps of the working dtype, tolerance = rtol * max|lambda|; for
    method "svd" rtol = (D * eps)^2).

    Parameters
    ----------
    net : TwoLayerNet
        The student, the point where H is taken.
    X : array_like, shape (P, n_in), or fasthess.POPULATION
        Inputs, one sample per row (integers are upcast to float64).
        ``fasthess.POPULATION``: the P -> infinity Hessian (x ~ N(0, I)) at the optimum
        or, with ``teacher``, at any point: the reduced spectrum where the span of the
        first-layer rows is smaller than n_in (O(Nh^3 (r + No)^3), values with
        multiplicities), else LOBPCG on the population operator from D = 3000
        (O(Nh^2 (Ni + No)) a product), else dense H_inf and eigh (O(D^3), 8 D^2 bytes).
    k : int, default 1
        How many, >= 1.
    teacher : TwoLayerNet or None, default None
        None (or ``net``) for the optimum; otherwise the full Hessian (exact routes).
    rtol : float, optional
        The zero tolerance relative to max|lambda|, as in :func:`numerical_rank`.
    method : {"auto", "dense", "ntk", "linear", "svd", "lobpcg"}, default "auto"
        * "dense", "ntk", "linear", "svd": all eigenvalues by that route of
          :func:`fasthess.eigenvalues`, the zeros dropped. "svd" resolves genuine
          eigenvalues below 1e-16 of the largest (erf, tanh, cubic polynomials:
          THEORY.md c).
        * "lobpcg" (optimum only): matrix-free, see the module docstring. Needs the
          number of zero eigenvalues that theory cannot write down explicitly to be
          small (:func:`fasthess.theory.effective_parameters` minus
          :func:`known_null_directions`): the block holds them, k, and
          ``_config.SMALLEST_GUARD_VECTORS`` more, at most
          ``_config.SMALLEST_MAX_BLOCK`` vectors. So erf, tanh and relu qualify, and
          polynomials only where their null space is small.
        * "auto": at the optimum, "lobpcg" for ``fasthess.POPULATION`` when
          D >= ``_config.SMALLEST_MATRIX_FREE_MIN_D`` (products there cost
          O(Nh^2 (Ni + No)) per column against the dense route's D^3), Nh >= Ni (with
          Nh < Ni the exact "reduced" route of :func:`fasthess.eigenvalues` is
          cheaper still) and the activation qualifies, or whenever the exact route
          does not fit in memory;
          otherwise the exact route :func:`fasthess.eigenvalues` would take. A
          sampled product costs O(P D) per column, as much as a column of the dense
          assembly, so for samples the exact route is cheaper while it fits. If
          LOBPCG does not reach ``tol`` within ``maxiter``, "auto" falls back to the
          exact route (when it fits).
    tol : float, optional
        "lobpcg" only: each eigenvalue returned has a unit Ritz vector v with
        ``||H v - lambda v|| <= tol * max|lambda|``, so H has an eigenvalue within
        ``tol * max|lambda|`` of it (within ``(tol * max|lambda|)^2 / gap`` when the
        others are ``gap`` away). Default ``_config.SMALLEST_RESIDUAL_EPS`` x eps
        of the working dtype (2.2e-11 in float64). What no iterative method
        certifies: that no eigenvalue below those found was missed (the block starts
        from a random draw, which misses one with probability zero).
    maxiter : int, optional
        "lobpcg" only: the most iterations, >= 1; default
        ``_config.SMALLEST_MAX_ITERATIONS``.
    rng : None, int or numpy.random.Generator, optional
        "lobpcg" only: source of the starting block (SPEC 7).
    progress : bool or None, default None
        "lobpcg" only: a progress bar of the products on stderr (tqdm, when
        installed); None: only when stderr is a terminal.

    Returns
    -------
    ndarray, shape (k,)
        Ordered by |lambda| ascending (ascending at the optimum, where H >= 0).

    Raises
    ------
    ValueError
        If fewer than k eigenvalues are nonzero, an unknown ``method``, "lobpcg" off
        the optimum or with a null space too large for its block.
    RuntimeError
        method "lobpcg": when the returned eigenvalues do not meet ``tol`` within
        ``maxiter`` (the message gives the residuals; use an exact route).

    Examples
    --------
    >>> import fasthess as fh
    >>> net = fh.TwoLayerNet.random(4, 4, activation="quadratic", rng=0)
    >>> X = fh.gaussian_inputs(100, 4, rng=1)
    >>> fh.smallest_nonzero(net, X, k=2).shape    # rank 14 of D = 20: 6 zeros skipped
    (2,)
    >>> import numpy as np
    >>> relu = fh.TwoLayerNet.random(8, 6, activation="relu", rng=0)
    >>> exact = fh.smallest_nonzero(relu, fh.POPULATION, k=2, method="dense")
    >>> free = fh.smallest_nonzero(relu, fh.POPULATION, k=2, method="lobpcg", rng=0)
    >>> bool(np.allclose(free, exact, rtol=1e-6))
    True
    """
    k = check_int(k, "k", minimum=1)
    check_choice(method, "method", SMALLEST_METHODS)
    if rtol is not None:
        rtol = check_real(rtol, "rtol", nonnegative=True)
    if maxiter is not None:
        maxiter = check_int(maxiter, "maxiter", minimum=1)
    if tol is not None:
        tol = check_real(tol, "tol", positive=True)
    progress = check_progress(progress)
    generator = check_rng(rng)
    point = check_point(net, X, teacher, what="fasthess.smallest_nonzero")
    if method == "lobpcg":
        return _lobpcg_smallest(point, k, rtol, tol, maxiter, generator, progress)
    if method != "auto" or not point.at_optimum:
        return _exact_smallest(point, k, rtol, method)
    # "auto" at the optimum; _block_size reads the theory, so only where it may matter.
    # With Nh < Ni the population spectrum reduces exactly to the span of W1's rows
    # (THEORY.md g, the "reduced" route of fasthess.eigenvalues): cheaper than any solver.
    if point.population and net.n_hidden >= net.n_in \
            and net.n_params >= _config.SMALLEST_MATRIX_FREE_MIN_D \
            and _block_size(point, k) is not None:
        try:
            return _lobpcg_smallest(point, k, rtol, tol, maxiter, generator, progress)
        except _NotConverged as exc:
            try:
                return _exact_smallest(point, k, rtol, method)  # if it fits
            except MemoryError:
                raise exc from None  # its advice (maxiter, tol) is the one that helps
    try:
        return _exact_smallest(point, k, rtol, method)
    except MemoryError:  # refused before allocating: matrix-free, if the theory allows
        if _block_size(point, k) is None:
            raise
        return _lobpcg_smallest(point, k, rtol, tol, maxiter, generator, progress)


class _NotConverged(RuntimeError):
    """LOBPCG did not certify the eigenvalues within maxiter (the message says by how much)."""


def _exact_smallest(point, k, rtol, method):
    spec = eigenvalues(point.net, point.X, teacher=point.teacher, method=method,
                       dtype=point.dtype)
    rank = numerical_rank(spec, rtol, warn=False)
    # distinct values with multiplicities (the "reduced" route): never expanded to D
    return _k_nonzero(spec.values, spec.multiplicities, rank.tolerance, rank.rtol, k,
                      "or use method='svd' to resolve smaller eigenvalues")


def _k_nonzero(values, multiplicities, tolerance, rtol, k, advice):
    """The k eigenvalues of smallest |lambda| above ``tolerance``, multiplicities counted."""
    keep = np.abs(values) > tolerance
    vals, counts = values[keep], multiplicities[keep]
    found = int(counts.sum())
    if found < k:
        raise ValueError(
            f"k = {k} but only {found} eigenvalue(s) exceed the zero tolerance "
            f"{tolerance:.3g} (rtol = {rtol:.3g}); lower k, or rtol, {advice}")
    order = np.argsort(np.abs(vals), kind="stable")
    vals, counts = vals[order], counts[order]
    upto = int(np.searchsorted(np.cumsum(counts), k)) + 1
    return np.repeat(vals[:upto], counts[:upto])[:k]


# ---------------------------------------------------------------------- matrix-free
def known_null_directions(net) -> np.ndarray:
    """The null vectors of H at the optimum that theory writes down, as columns (D, m).

    For a positively homogeneous g of degree d (``activation.homogeneous_degree``:
    relu, z^d, the linear network), the output is unchanged by w_j -> c w_j,
    W2[:, j] -> c^-d W2[:, j] for each hidden unit j, so J v_j = 0 (hence H v_j = 0 at
    the optimum, for any data) for v_j = (w_j in row j of w1, -d W2[:, j]). Other
    activations: none (m = 0). The columns are not orthonormal.

    Parameters
    ----------
    net : TwoLayerNet

    Returns
    -------
    ndarray, shape (D, m), the network's dtype

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> from fasthess.smallest import known_null_directions
    >>> net = fh.TwoLayerNet.random(4, 3, activation="relu", rng=0)
    >>> Y = known_null_directions(net); Y.shape
    (15, 3)
    >>> X = fh.gaussian_inputs(50, 4, rng=1)
    >>> bool(np.abs(fh.hessian(net, X) @ Y).max() < 1e-14)
    True
    >>> known_null_directions(fh.TwoLayerNet.random(4, 3, rng=0)).shape   # erf: none
    (15, 0)
    """
    degree = net.activation.homogeneous_degree
    n_hidden, n_in = net.w1.shape
    if degree is None:
        return np.zeros((net.n_params, 0), dtype=net.w1.dtype)
    Y = np.zeros((net.n_params, n_hidden), dtype=net.w1.dtype)
    units = np.arange(n_hidden)
    Y[:n_hidden * n_in].reshape(n_hidden, n_in, n_hidden)[units, :, units] = net.w1
    Y[n_hidden * n_in:].reshape(net.n_out, n_hidden, n_hidden)[:, units, units] = (
        -degree * net.w2)
    return Y


def hessian_diagonal(point, coefficients=None) -> np.ndarray:
    """The diagonal of H at a validated point, in closed form, never forming H.

    Sampled (THEORY.md a): diag over (j, i) of w1 is (1/P) sum_mu [Q_jj g'(h_mu j)^2 +
    (r_mu . W2[:, j]) g''(h_mu j)] x_mu i^2 (the r term off the optimum only), one
    GEMM of O(P Nh Ni); over (m, j) of w2, (1/P) sum_mu g(h_mu j)^2. Population
    (THEORY.md f): Q_jj (a_jj + 2 (m11 + m12)_jj w_ji^2) and G_jj.

    Parameters
    ----------
    point : the validated (net, X, teacher) of ``fasthess._features.check_point``
    coefficients : PopulationCoefficients, optional
        For the population: those already computed (e.g. an operator's), else computed.

    Returns
    -------
    ndarray, shape (D,), float64

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> from fasthess._features import check_point
    >>> from fasthess.smallest import hessian_diagonal
    >>> net = fh.TwoLayerNet.random(4, 3, rng=0); X = fh.gaussian_inputs(30, 4, rng=1)
    >>> bool(np.allclose(hessian_diagonal(check_point(net, X)), np.diag(fh.hessian(net, X))))
    True
    """
    net = point.net
    n_out = net.n_out
    if point.population:
        if not point.at_optimum:
            raise ValueError("hessian_diagonal: the population diagonal is implemented at "
                             "the optimum only (teacher None or the student)")
        from .population import population_coefficients

        c = coefficients if coefficients is not None else population_coefficients(net)
        units = np.arange(net.n_hidden)
        w1 = np.asarray(net.w1, dtype=np.float64)
        w2 = np.asarray(net.w2, dtype=np.float64)
        q = np.einsum("mj,mj->j", w2, w2)
        m = 2.0 * (c.m11[units, units] + c.m12[units, units]).astype(np.float64)
        d1 = q[:, None] * (c.a[units, units].astype(np.float64)[:, None] + m[:, None] * w1 * w1)
        return np.concatenate([d1.ravel(), np.tile(c.G[units, units].astype(np.float64), n_out)])
    f = features(point)
    p = f.n_samples
    q = np.einsum("mj,mj->j", f.w2, f.w2)
    coef = (f.G1 * f.G1 * q).astype(np.float64)
    if f.residual is not None:
        coef += (f.residual @ f.w2) * f.G2
    X = f.X.astype(np.float64)
    d1 = coef.T @ (X * X) / p
    d2 = np.einsum("pj,pj->j", f.A, f.A, dtype=np.float64) / p
    return np.concatenate([d1.ravel(), np.tile(d2, n_out)])


def _preconditioner(point, op, dt):
    """V -> approximately H^-1 V: the inverse of H's diagonal blocks, or of its diagonal.

    Population: H's block diagonal is known in closed form and cheap to invert, a
    Ni x Ni tile per hidden unit, Q_jj (a_jj I + b_jj w_j w_j^T) with b = 2 (m11 +
    m12) (Sherman-Morrison), and the w2w2 block I_No (x) G; measured at N = 99 (erf,
    D = 9900) it certified the three smallest eigenvalues to 7e-12 in 3000
    iterations (15 s), where H's diagonal alone left the third at 3e-8 (LOBPCG gave
    up after 1900). Sampled: the inverse of H's diagonal (:func:`hessian_diagonal`).
    A unit with a zero block (a dead unit: a zero row of H) is left unscaled.
    """
    if not point.population:
        diagonal = hessian_diagonal(point).astype(dt)
        inverse = np.where(diagonal > 0, 1.0 / np.where(diagonal > 0, diagonal, 1.0), 1.0)
        return lambda V: V * (inverse[:, None] if V.ndim == 2 else inverse)
    net, c = point.net, op.coefficients
    n_hidden, n_in = net.w1.shape
    units = np.arange(n_hidden)
    w1 = np.asarray(net.w1, dtype=np.float64)
    w2 = np.asarray(net.w2, dtype=np.float64)
    scale = np.einsum("mj,mj->j", w2, w2) * c.a[units, units]  # Q_jj a_jj
    live = scale > 0
    scale = np.where(live, scale, 1.0)
    beta = np.where(live, 2.0 * (c.m11[units, units] + c.m12[units, units])
                    / np.where(live, c.a[units, units], 1.0), 0.0)
    shrink = beta / (1.0 + beta * np.einsum("ji,ji->j", w1, w1))  # Sherman-Morrison
    vals, vecs = np.linalg.eigh(np.asarray(c.G, dtype=np.float64))
    floor = max(float(vals[-1]), 0.0) * np.finfo(np.float64).eps * n_hidden
    g_inverse = (vecs / np.maximum(vals, floor if floor > 0 else 1.0)) @ vecs.T
    w1, g_inverse = w1.astype(dt), g_inverse.astype(dt)
    scale, shrink = scale.astype(dt), shrink.astype(dt)
    d1 = n_hidden * n_in

    def precondition(V):
        V2 = V.reshape(V.shape[0], -1)
        out = np.empty_like(V2)
        V1 = V2[:d1].reshape(n_hidden, n_in, -1)
        along = np.einsum("ji,jim->jm", w1, V1)  # w_j . v_j
        out[:d1] = ((V1 - (shrink[:, None] * along)[:, None, :] * w1[:, :, None])
                    / scale[:, None, None]).reshape(d1, -1)
        out[d1:] = (g_inverse @ V2[d1:].reshape(net.n_out, n_hidden, -1)).reshape(
            net.n_out * n_hidden, -1)
        return out.reshape(V.shape)

    return precondition


def _block_size(point, k):
    """The LOBPCG block for k nonzero eigenvalues, or None when the null space is too big.

    The block holds the zero eigenvalues that are not known explicitly (D - rank,
    rank from theory, minus the known null directions), the k wanted, and
    SMALLEST_GUARD_VECTORS more (LOBPCG's last vectors converge slowest).
    """
    unknown = _unknown_zeros(point)
    if unknown is None:
        return None
    m = unknown + k + _config.SMALLEST_GUARD_VECTORS
    d = point.net.n_params - known_null_directions(point.net).shape[1]
    # below 5 m SciPy's lobpcg turns to a dense eigensolver (which takes no constraints)
    if m > _config.SMALLEST_MAX_BLOCK or 5 * m > d:
        return None
    return m


def _unknown_zeros(point):
    """D - rank - (known null directions), or None where theory has no cheap rank."""
    import warnings

    from .theory import effective_parameters

    net = point.net
    act = net.activation
    if act.is_polynomial and net.n_params > _config.FALLBACK_MAX_PARAMS:
        # beyond the certified range the formula is an upper bound (with a warning) and
        # polynomial null spaces are large (z^2: about half of D): not worth a block
        return None
    n_samples = None if point.population else point.n_samples
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            rank = effective_parameters(act, net.n_in, net.n_hidden, net.n_out, n_samples)
    except (ValueError, UserWarning):
        return None  # no formula for this activation (a CustomActivation declaring none)
    known = known_null_directions(net).shape[1]
    return max(net.n_params - rank - known, 0)


def _lobpcg_smallest(point, k, rtol, tol, maxiter, generator, progress):
    import scipy.sparse.linalg

    if not point.at_optimum:
        raise ValueError("method='lobpcg' needs the optimum (teacher None or the student): "
                         "away from it H is indefinite and its eigenvalues closest to zero "
                         "are not the smallest; use method='dense' or 'auto'")
    m = _block_size(point, k)
    if m is None:
        raise ValueError(
            f"method='lobpcg': the null space of this Hessian is not known to be small "
            f"(activation {point.net.activation.name!r}, D = {point.net.n_params}), so a "
            f"block of at most {_config.SMALLEST_MAX_BLOCK} vectors cannot hold its zero "
            f"eigenvalues; use method='auto' or 'dense'")
    op = check_operator(None, point.net, point.X)
    dt = np.dtype(op.dtype)
    d = point.net.n_params
    if tol is None:
        tol = _config.SMALLEST_RESIDUAL_EPS * float(np.finfo(dt).eps)
    if maxiter is None:
        maxiter = _config.SMALLEST_MAX_ITERATIONS
    # max|lambda| sets the zero tolerance and the residual scale; a loose tol suffices
    top = float(abs(scipy.sparse.linalg.eigsh(
        op, k=1, which="LM", v0=generator.standard_normal(d).astype(dt),
        tol=_config.SMALLEST_TOP_RTOL, return_eigenvectors=False)[0]))
    precondition = _preconditioner(point, op, dt)
    Y = known_null_directions(point.net).astype(dt)
    Y = Y[:, np.linalg.norm(Y, axis=0) > 0]  # a dead unit's direction is 0: no constraint
    Y = np.linalg.qr(Y)[0] if Y.shape[1] else None
    start = generator.standard_normal((d, m)).astype(dt)
    with np.errstate(all="ignore"):  # LOBPCG's own ill-conditioning is checked below
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "not reaching the requested tolerance"
            with with_progress(op, "fasthess smallest_nonzero", enabled=progress) as counted:
                vals, vecs = scipy.sparse.linalg.lobpcg(
                    counted, start, M=precondition, Y=Y, largest=False, tol=tol * top,
                    maxiter=maxiter)
    order = np.argsort(vals)
    vals, vecs = vals[order], vecs[:, order]
    # numerical_rank's rule on the whole spectrum: rtol = D eps by default
    used_rtol = d * float(np.finfo(dt).eps) if rtol is None else rtol
    zero_tol = used_rtol * top
    keep = np.flatnonzero(np.abs(vals) > zero_tol)[:k]
    if keep.size < k:
        raise ValueError(
            f"k = {k} but LOBPCG found only {keep.size} eigenvalue(s) above the zero "
            f"tolerance {zero_tol:.3g} (rtol = {used_rtol:.3g}) among the {m} smallest; "
            f"lower k or rtol, or use an exact route (method='dense')")
    V = vecs[:, keep]
    residuals = np.linalg.norm(op.matmat(V) - V * vals[keep], axis=0) / np.linalg.norm(V, axis=0)
    worst = float(residuals.max()) / top
    if not worst <= tol:
        raise _NotConverged(
            f"method='lobpcg' did not converge: the largest residual of the k = {k} "
            f"eigenvalues is {worst:.3g} of max|lambda| after at most {maxiter} "
            f"iterations, above tol = {tol:.3g}; raise maxiter or tol, or use an exact "
            f"route (method='dense')")
    return vals[keep]
