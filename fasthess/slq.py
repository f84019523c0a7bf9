"""Eigenvalue density of the Hessian by stochastic Lanczos quadrature (SLQ), matrix-free."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _config
from ._resources import available_memory, check_fits
from ._validation import check_float_array, check_int, check_progress, check_real, check_rng
from .data import rademacher
from .operators import check_operator, with_progress

__all__ = ["spectral_density", "SpectralDensity", "lanczos_block"]


@dataclass(frozen=True, eq=False)
class SpectralDensity:
    """The result of :func:`spectral_density`: an SLQ estimate of the density of H.

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
    n_probes : int
        Number of probes.
    n_steps : int
        Lanczos steps per probe (at most D).

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> net = fh.TwoLayerNet.random(4, 3, rng=0); X = fh.gaussian_inputs(30, 4, rng=1)
    >>> sd = fh.spectral_density(net, X, n_probes=3, n_steps=5, rng=0)
    >>> round(float(sd.weights.sum()), 12), sd.nodes.shape, sd.n_steps
    (1.0, (15,), 5)
    """

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    probe: np.ndarray
    sigma: float
    n_probes: int
    n_steps: int

    def __repr__(self):
        # the arrays are summarised: the grid alone has thousands of points
        return (f"SpectralDensity(n_probes={self.n_probes}, n_steps={self.n_steps}, "
                f"nodes={self.nodes.size}, sigma={self.sigma:.4g}, "
                f"grid=[{self.grid[0]:.4g}, {self.grid[-1]:.4g}] ({self.grid.size} points))")


def spectral_density(net, X, teacher=None, n_probes=20, n_steps=60, rng=None, grid=None,
                     sigma=None, operator=None, progress=None) -> SpectralDensity:
    """Estimate the eigenvalue density of H by stochastic Lanczos quadrature, matrix-free.

    For each Rademacher probe z (|z|^2 = D), ``n_steps`` Lanczos steps with full
    reorthogonalisation on H and z / sqrt(D) give a tridiagonal T; its eigenvalues
    (Ritz values) are Gauss nodes, the squared first components of its eigenvectors
    the weights. The rule integrates polynomials of degree <= 2 n_steps - 1 exactly
    against the probe's spectral measure sum_j (z.u_j)^2 / D delta(lambda_j), whose
    mean over probes is the spectral measure of H. Cost: n_probes * n_steps
    products, O(P D) each, plus O(n_steps^2 D) reorthogonalisation per probe.

    Parameters
    ----------
    net : TwoLayerNet
        The student, the point where H is taken.
    X : array_like, shape (P, n_in), or fasthess.POPULATION
        Inputs (integers are upcast to float64); not used (may be None) with
        ``operator``. ``fasthess.POPULATION`` (x ~ N(0, I), P -> infinity, at the
        optimum or, with ``teacher``, at any point): the density of H_inf, each product O(Nh^2 (Ni + No)) from
        pair coefficients computed once; memory O(D n_steps) for the Lanczos
        vectors, so it reaches D ~ 1e6.
    teacher : TwoLayerNet or None, default None
        None (or ``net``) for the optimum; otherwise the full Hessian.
    n_probes : int, default 20
        Number of Rademacher probes, >= 1.
    n_steps : int, default 60
        Lanczos steps per probe, >= 1 (capped at D). A probe stops early when its
        Krylov space is invariant.
    rng : None, int or numpy.random.Generator, optional
        Source of the probes (SPEC 7): None draws fresh entropy (a different
        estimate on every call), an int seeds a new Generator (the same probes
        every time), a Generator is used as is.
    grid : array_like, optional
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
        int ``rng``, same probes: the result differs from the local one only by the
        round-off of the products.
    progress : bool or None, default None
        A progress bar of the n_probes x n_steps products on stderr (tqdm, when
        installed); None: only when stderr is a terminal.

    Returns
    -------
    SpectralDensity
        ``.grid``, ``.density``, flattened ``.nodes`` / ``.weights`` (sum 1) /
        ``.probe``, ``.sigma``.

    See Also
    --------
    eigenvalues : The exact spectrum, when D x D fits.

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> net = fh.TwoLayerNet.random(6, 5, rng=0); X = fh.gaussian_inputs(80, 6, rng=1)
    >>> sd = fh.spectral_density(net, X, n_probes=4, n_steps=20, rng=0)
    >>> round(float(np.trapezoid(sd.density, sd.grid)), 6)
    1.0
    >>> sd                                                  # doctest: +ELLIPSIS
    SpectralDensity(n_probes=4, n_steps=20, nodes=80, sigma=..., grid=[...] (... points))
    """
    n_probes = check_int(n_probes, "n_probes", minimum=1)
    n_steps = check_int(n_steps, "n_steps", minimum=1)
    if sigma is not None:
        sigma = check_real(sigma, "sigma", positive=True)
    if grid is not None:
        grid = check_float_array(grid, "grid", ndim=1).astype(np.float64)
    progress = check_progress(progress)
    generator = check_rng(rng)
    op = check_operator(operator, net, X, teacher)
    dt = np.dtype(op.dtype)
    d = net.n_params
    m = min(n_steps, d)
    itemsize = dt.itemsize
    check_fits(m * d * itemsize, f"the Lanczos basis of one probe ({m} x {d})",
               "lower n_steps")
    # probes share each product (one block product per step), as many as fit in the
    # basis budget and in a quarter of the memory available
    budget = min(_config.SLQ_BASIS_BYTES, available_memory() // 4)
    batch = int(max(1, min(n_probes, budget // (m * d * itemsize))))
    nodes, weights, probe = [], [], []
    with with_progress(op, "fasthess spectral_density", total=n_probes * m,
                       enabled=progress) as counted:
        for start in range(0, n_probes, batch):
            b = min(batch, n_probes - start)
            Z = rademacher(generator, (d, b), dt)
            alphas, betas, lengths = lanczos_block(counted.matmat, Z / math.sqrt(d), m)
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
        sigma = _config.SIGMA_FRACTION * width if width > 0 else 1e-3 * max(abs(hi), 1.0)
    if grid is None:
        a, b_ = lo - _config.GRID_PAD * sigma, hi + _config.GRID_PAD * sigma
        n_grid = int(math.ceil((b_ - a) * _config.GRID_PER_SIGMA / sigma)) + 1
        if n_grid > _config.GRID_MAX_POINTS:
            raise ValueError(
                f"sigma = {sigma:.3g} is too small for the node range [{lo:.3g}, {hi:.3g}]: the "
                f"default grid would need {n_grid} points; pass a larger sigma or a grid")
        grid = np.linspace(a, b_, max(n_grid, 2))
    density = _gaussian_mixture(grid, nodes, weights, sigma)
    return SpectralDensity(grid, density, nodes, weights, probe, float(sigma), n_probes, m)


def lanczos_block(matmat, Q0, m):
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
        stop = active & (beta[j] <= _config.LANCZOS_BREAKDOWN * anorm)
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
