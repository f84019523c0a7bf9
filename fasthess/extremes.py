"""A few extreme eigenpairs of the Hessian, matrix-free: :func:`eigsh` (ARPACK).

SciPy's :func:`scipy.sparse.linalg.eigsh` on the Hessian operator, with SciPy's names
and defaults; every argument is checked before the operator (and its per-sample
features) is built. All eigenvalues by an exact route: :mod:`fasthess.spectrum`.
"""
from __future__ import annotations

import numpy as np

from ._features import check_net
from ._validation import (check_bool, check_choice, check_float_array, check_int,
                          check_progress, check_real, check_rng)
from .operators import check_operator, with_progress

__all__ = ["eigsh", "WHICH"]

#: ``which`` values of :func:`eigsh`: those of :func:`scipy.sparse.linalg.eigsh`.
WHICH = ("LM", "SM", "LA", "SA", "BE")


def eigsh(net, X, k=6, *, which="LM", v0=None, ncv=None, maxiter=None, tol=0,
          return_eigenvectors=True, teacher=None, rng=None, operator=None, progress=None):
    """Find k eigenvalues and eigenvectors of the Hessian, matrix-free (ARPACK).

    :func:`scipy.sparse.linalg.eigsh` on :func:`fasthess.hessian_operator`, with
    SciPy's names and defaults for ``k``, ``which``, ``v0``, ``ncv``, ``maxiter``,
    ``tol`` and ``return_eigenvectors`` (see
    https://docs.scipy.org/doc/scipy/reference/generated/scipy.sparse.linalg.eigsh.html).
    The Hessian is never formed: memory O(P (Ni + Nh) + D ncv), each product
    O(P D). SciPy's ``M``, ``sigma``, ``Minv``, ``OPinv`` and ``mode`` (generalised
    and shift-invert problems) need solves with H and are not offered.

    Parameters
    ----------
    net : TwoLayerNet
        The student, the point where H is taken.
    X : array_like, shape (P, n_in), or fasthess.POPULATION
        Inputs (integers are upcast to float64); not used (may be None) with
        ``operator``. ``fasthess.POPULATION`` (x ~ N(0, I), P -> infinity, at any
        point: pass ``teacher`` off the optimum): products with H_inf from Nh x Nh
        pair coefficients, computed once, O(Nh (Nh + M) (Ni + No)) per product and
        memory O(Nh^2 + D ncv), never D^2: the route to D ~ 1e6; ``which="SA"``
        finds the negative eigenvalues of a saddle.
    k : int, default 6
        How many eigenpairs, 1 <= k < D.
    which : {"LM", "SM", "LA", "SA", "BE"}, default "LM"
        As in SciPy: largest / smallest magnitude, largest / smallest algebraic,
        or half from each end. At the optimum H is positive semi-definite, so
        "LM" and "LA" select the same eigenvalues. "SM" converges slowly when H
        is singular (every optimum with fewer effective parameters than D).
    v0 : array_like, shape (D,), optional
        Starting vector of the iteration. Default: drawn from ``rng`` (standard
        normal), so an int ``rng`` makes the result reproducible.
    ncv : int, optional
        Number of Lanczos vectors, k < ncv <= D; SciPy's default
        min(D, max(2 k + 1, 20)).
    maxiter : int, optional
        Maximum number of Arnoldi update iterations, >= 1; SciPy's default 10 D.
    tol : float, default 0
        Relative accuracy of the eigenvalues; 0 means machine precision.
    return_eigenvectors : bool, default True
        Return the eigenvectors too, as SciPy does.
    teacher : TwoLayerNet or None, default None
        None (or ``net``) for the optimum; otherwise the full Hessian with its
        residual term.
    rng : None, int or numpy.random.Generator, optional
        Source of the default ``v0`` (SPEC 7): None draws fresh entropy, an int
        seeds a new Generator, a Generator is used as is. Not used when ``v0`` is
        given.
    operator : scipy.sparse.linalg.LinearOperator, optional
        The Hessian of ``net`` as a (D, D) operator to use instead of building
        :func:`fasthess.hessian_operator` here; pass
        ``fasthess.distributed.hessian_operator(net, X, client=...)`` to run the
        products on a Dask cluster. ``X`` is then not used (it may be None) and
        ``teacher`` must be None (or ``net``): the operator holds its own data and point.
    progress : bool or None, default None
        A progress bar of the products on stderr (tqdm, when installed); None: only
        when stderr is a terminal.

    Returns
    -------
    w : ndarray, shape (k,)
        The eigenvalues, ascending (as SciPy returns them).
    v : ndarray, shape (D, k)
        The unit eigenvectors, ``v[:, i]`` that of ``w[i]``; only when
        ``return_eigenvectors`` is True.

    Raises
    ------
    ValueError
        ``k`` not in [1, D), an unknown ``which``, ``ncv`` not in (k, D], ``v0``
        not of length D or zero, or an ``operator`` not of shape (D, D) or not
        real (float32/float64).
    TypeError
        ``operator`` not a LinearOperator, or an argument of the wrong type.
    scipy.sparse.linalg.ArpackNoConvergence
        When ARPACK does not converge within ``maxiter`` (as in SciPy; the
        exception carries the converged eigenpairs).

    See Also
    --------
    eigenvalues : All D eigenvalues by an exact dense route.
    smallest_nonzero : The nonzero eigenvalues closest to zero.

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> net = fh.TwoLayerNet.random(5, 4, rng=0); X = fh.gaussian_inputs(60, 5, rng=1)
    >>> w, v = fh.eigsh(net, X, k=2, rng=0)
    >>> w.shape, v.shape
    ((2,), (24, 2))
    >>> full = fh.eigenvalues(net, X, method="dense")
    >>> bool(abs(w[-1] - full[-1]) < 1e-10 * full[-1])
    True
    >>> H = fh.hessian(net, X)
    >>> bool(np.allclose(H @ v, v * w, atol=1e-8 * w[-1]))
    True
    >>> fh.eigsh(net, X, k=2, which="LA", return_eigenvectors=False, rng=0).shape
    (2,)
    """
    import scipy.sparse.linalg

    # every argument is checked before the operator is built: building it computes the
    # per-sample features, O(P D), which a wrong k or v0 should not cost
    d = check_net(net).n_params
    k = check_int(k, "k", minimum=1)
    if k >= d:
        raise ValueError(f"k must be < D = {d} for the iterative solver, got k = {k}; "
                         f"for all eigenvalues use fasthess.eigenvalues(net, X)")
    check_choice(which, "which", WHICH)
    tol = check_real(tol, "tol", nonnegative=True)
    return_eigenvectors = check_bool(return_eigenvectors, "return_eigenvectors")
    if maxiter is not None:
        maxiter = check_int(maxiter, "maxiter", minimum=1)
    if ncv is not None:
        ncv = check_int(ncv, "ncv", minimum=k + 1, maximum=d)
    if v0 is not None:
        v0 = check_float_array(v0, "v0", ndim=1)
        if v0.size != d:
            raise ValueError(f"v0 must have length D = {d} (net.n_params), got {v0.size}")
        if not np.any(v0):
            raise ValueError("v0 is the zero vector; ARPACK needs a nonzero starting vector "
                             "(or leave v0=None to draw one from rng)")
    progress = check_progress(progress)
    generator = check_rng(rng) if v0 is None else None
    op = check_operator(operator, net, X, teacher)
    if v0 is None:
        v0 = generator.standard_normal(d)
    v0 = np.ascontiguousarray(v0, dtype=op.dtype)
    with with_progress(op, "fasthess eigsh", enabled=progress) as counted:
        result = scipy.sparse.linalg.eigsh(counted, k=k, which=which, v0=v0, ncv=ncv,
                                           maxiter=maxiter, tol=tol,
                                           return_eigenvectors=return_eigenvectors)
    if not return_eigenvectors:
        return np.sort(result)
    vals, vecs = result
    order = np.argsort(vals)
    return vals[order], vecs[:, order]
