"""Dense assembly: the Hessian (at and away from the optimum), its blocks, the NTK Gram.

Conventions (DESIGN.md): theta = concat(w1.ravel(), w2.ravel()), D = Nh*Ni + No*Nh,
L = 1/(2P) sum_mu ||y_student(x_mu) - y_teacher(x_mu)||^2. The Hessian is the
Gauss-Newton part J^T J / P plus, away from the optimum, the residual term
(THEORY.md section a). Each public function validates once (:func:`check_point`),
refuses what will not fit before allocating, and calls an ``assemble_*`` function
that the spectral routes reuse without repeating the checks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _config
from ._features import Features, Point, check_point, features, refuse_if_too_large

__all__ = ["hessian", "hessian_blocks", "HessianBlocks", "ntk", "assemble_hessian",
           "assemble_ntk", "ntk_size", "ntk_overhead", "w1w1_layout", "assemble_w1w1"]


# ---------------------------------------------------------------------- blocks
@dataclass
class HessianBlocks:
    """The result of :func:`hessian_blocks`: the three blocks of H as separate arrays.

    With D1 = Nh*Ni and D2 = No*Nh, ``H = [[w1w1, w1w2], [w1w2.T, w2w2]]``; the
    w2w1 block is ``w1w2.T``.

    Attributes
    ----------
    w1w1 : ndarray, shape (D1, D1)
        Second derivatives with respect to the first-layer weights.
    w1w2 : ndarray, shape (D1, D2)
        Mixed second derivatives (w1 rows, w2 columns).
    w2w2 : ndarray, shape (D2, D2)
        Second derivatives with respect to the second-layer weights.

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> net = fh.TwoLayerNet.random(4, 3, rng=0); X = fh.gaussian_inputs(20, 4, rng=1)
    >>> b = fh.hessian_blocks(net, X)
    >>> b
    HessianBlocks(w1w1=(12, 12), w1w2=(12, 3), w2w2=(3, 3), dtype=float64)
    >>> bool(np.allclose(b.full(), fh.hessian(net, X)))
    True
    """

    w1w1: np.ndarray
    w1w2: np.ndarray
    w2w2: np.ndarray

    def full(self) -> np.ndarray:
        """Assemble the blocks into the full Hessian.

        Returns
        -------
        ndarray, shape (D1 + D2, D1 + D2)
            ``[[w1w1, w1w2], [w1w2.T, w2w2]]``, a new array.

        Examples
        --------
        >>> import fasthess as fh
        >>> net = fh.TwoLayerNet.random(4, 3, rng=0)
        >>> fh.hessian_blocks(net, fh.gaussian_inputs(20, 4, rng=1)).full().shape
        (15, 15)
        """
        return np.block([[self.w1w1, self.w1w2], [self.w1w2.T, self.w2w2]])

    def __repr__(self):
        # shapes only: the blocks hold D^2 numbers
        return (f"HessianBlocks(w1w1={self.w1w1.shape}, w1w2={self.w1w2.shape}, "
                f"w2w2={self.w2w2.shape}, dtype={self.w1w1.dtype})")


def _drop_unneeded(f: Features) -> None:
    """Free what the w1w1 pass does not read, before H is allocated (peak memory)."""
    f.A = None
    if f.residual is None:
        f.G2 = None


def hessian(net, X, teacher=None, dtype=None):
    """Assemble the dense D x D Hessian of the loss with Numba kernels and BLAS.

    Parameters
    ----------
    net : TwoLayerNet
        The student (the point at which H is taken).
    X : array_like, shape (P, n_in)
        Inputs, one sample per row (integers and booleans are upcast to float64).
    teacher : TwoLayerNet or None
        None (or ``net`` itself): the optimum, H = J^T J / P exactly. Otherwise the
        full Hessian, Gauss-Newton plus the residual (second-derivative) term.
    dtype : float64 or float32, optional
        Working and output precision; default the network's dtype (float64 unless
        it was built in float32). X and the weights are cast to it.

    Returns
    -------
    ndarray, shape (D, D)
        H, symmetric, in theta order (w1 row-major, then w2 row-major).

    Raises
    ------
    MemoryError
        Before allocating, if D x D does not fit in available memory.

    Examples
    --------
    >>> import fasthess as fh
    >>> net = fh.TwoLayerNet.random(4, 3, rng=0)
    >>> H = fh.hessian(net, fh.gaussian_inputs(50, 4, rng=1))
    >>> H.shape
    (15, 15)
    """
    point = check_point(net, X, teacher, dtype, what="fasthess.hessian")
    refuse_if_too_large(net.n_params, point.dtype)
    return assemble_hessian(point)


def assemble_hessian(point: Point) -> np.ndarray:
    """:func:`hessian` of a validated point whose size was checked (no checks repeated)."""
    if point.population:
        return _population_hessian(point)
    f = features(point)
    net = point.net
    d1 = net.n_hidden * net.n_in
    H = np.empty((net.n_params, net.n_params), dtype=point.dtype)
    w1w2, w2w2 = _small_blocks(f, scratch=H.reshape(-1))
    _drop_unneeded(f)
    assemble_w1w1(f, H)
    H[:d1, d1:] = w1w2
    H[d1:, :d1] = w1w2.T
    H[d1:, d1:] = w2w2
    return H


def hessian_blocks(net, X, teacher=None, dtype=None) -> HessianBlocks:
    """Assemble the blocks w1w1, w1w2, w2w2 of :func:`hessian` as separate arrays.

    The w1w2 and w2w2 blocks are small (D1 x D2, D2 x D2 with D1 = Nh*Ni,
    D2 = No*Nh); only w1w1 (D1 x D1) is refused when it does not fit.

    Parameters
    ----------
    net : TwoLayerNet
        The student (the point at which H is taken).
    X : array_like, shape (P, n_in), or fasthess.POPULATION
        Inputs, one sample per row (integers and booleans are upcast to float64); the
        population (x ~ N(0, I), P -> infinity, at the optimum) splits H_inf.
    teacher : TwoLayerNet or None
        None (or ``net`` itself): the optimum. Otherwise the full Hessian's blocks.
    dtype : float64 or float32, optional
        Working and output precision; default the network's dtype.

    Returns
    -------
    HessianBlocks
        ``.w1w1``, ``.w1w2``, ``.w2w2``; ``.full()`` assembles H.

    Raises
    ------
    MemoryError
        Before allocating, if the w1w1 block does not fit in available memory.

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> net = fh.TwoLayerNet.random(4, 3, rng=0); X = fh.gaussian_inputs(20, 4, rng=1)
    >>> b = fh.hessian_blocks(net, X)
    >>> b.w1w1.shape, b.w1w2.shape, b.w2w2.shape
    ((12, 12), (12, 3), (3, 3))
    >>> bool(np.allclose(b.full(), fh.hessian(net, X)))
    True
    """
    point = check_point(net, X, teacher, dtype, what="fasthess.hessian_blocks")
    if point.population:
        # the tiles are written into one D x D matrix, then split
        refuse_if_too_large(net.n_params, point.dtype, "the population Hessian", overhead=2.0)
        H = _population_hessian(point)
        d1 = net.n_hidden * net.n_in
        return HessianBlocks(H[:d1, :d1].copy(), H[:d1, d1:].copy(), H[d1:, d1:].copy())
    refuse_if_too_large(net.n_hidden * net.n_in, point.dtype, "the w1w1 block")
    f = features(point)
    d1 = net.n_hidden * net.n_in
    w1w1 = np.empty((d1, d1), dtype=point.dtype)
    w1w2, w2w2 = _small_blocks(f, scratch=w1w1.reshape(-1))
    _drop_unneeded(f)
    assemble_w1w1(f, w1w1)
    return HessianBlocks(w1w1, w1w2, w2w2)


def _population_hessian(point: Point) -> np.ndarray:
    """H_inf written tile by tile from the Nh x Nh pair coefficients (no samples)."""
    from .population import assemble_dense, population_coefficients

    d = point.net.n_params
    coefs = population_coefficients(point.net, dtype=point.dtype)
    return assemble_dense(coefs, point.net, np.empty((d, d), dtype=point.dtype))


def _chunk_workspace(scratch, n_samples: int, width: int, dtype):
    """(samples per chunk, flat buffer of chunk * width) for per-sample factor rows.

    The buffer is ``scratch`` (not-yet-written output memory) when it holds chunks
    of at least 64 samples (GEMM efficiency); otherwise a small separate buffer.
    """
    chunk = (0 if scratch is None
             else min(n_samples, _config.MAX_CHUNK_SAMPLES, scratch.size // width))
    if chunk < min(n_samples, _config.MIN_CHUNK_SAMPLES):
        chunk = min(n_samples, max(_config.MIN_CHUNK_SAMPLES,
                                   _config.CHUNK_BYTES // (np.dtype(dtype).itemsize * width)))
        scratch = np.empty(chunk * width, dtype=dtype)
    return chunk, scratch


def _accumulate_at_b(gemm, a, b, out, beta=1.0):
    """out = beta*out + a^T b for C-ordered a (c x m), b (c x n), out (m x n), in place.

    BLAS sees C arrays as transposed Fortran ones: out^T (n x m) += b^T a, i.e.
    gemm(a=b.T, b=a.T, trans_b) with no copies and no temporary.
    """
    res = gemm(1.0, b.T, a.T, beta=beta, c=out.T, trans_b=1, overwrite_c=1)
    if not np.shares_memory(res, out):  # BLAS wrapper copied: keep the result anyway
        out[...] = res.T


def w1w1_layout(n_in: int, n_hidden: int, row_width: int):
    """Where the pair contraction S lives inside the output while it is built.

    S (Nh(Nh+1)/2 x Ni(Ni+1)/2, ~1/4 of the w1w1 block) is stored in the rows of the
    last hidden units, from row ``u0 * Ni`` on; the rows above are free until the
    scatter, so the sample-chunk factors live there. Returns (u0, row0).
    """
    m_hidden = n_hidden * (n_hidden + 1) // 2
    m_in = n_in * (n_in + 1) // 2
    rows_needed = -(-m_hidden * m_in // row_width)  # ceil
    units_needed = -(-rows_needed // n_in)
    u0 = max(n_hidden - units_needed, 0)
    return u0, u0 * n_in


def assemble_w1w1(f: Features, out: np.ndarray) -> None:
    """Write the w1w1 block (Gauss-Newton + residual) into out[:D1, :D1].

    All workspace is carved out of ``out`` itself (see :func:`w1w1_layout`): the
    GEMM S = Upairs^T Xpairs accumulates in place over sample chunks, then the
    tiles of hidden pairs that do not touch S's rows are scattered from it; the
    rest (~0.44 S, ~H/9) is first copied out. Peak memory: H plus that copy.
    """
    from scipy.linalg.blas import get_blas_funcs

    from ._kernels.assembly import add_diagonal_blocks, pair_products, scatter_w1w1

    X, G1 = f.X, f.G1
    n_samples, n_in = X.shape
    n_hidden = G1.shape[1]
    dt = X.dtype
    m_in = n_in * (n_in + 1) // 2
    m_hidden = n_hidden * (n_hidden + 1) // 2
    width = out.shape[1]
    flat = out.reshape(-1)  # out is C-contiguous: a view
    u0, row0 = w1w1_layout(n_in, n_hidden, width)
    S = flat[row0 * width: row0 * width + m_hidden * m_in].reshape(m_hidden, m_in)

    per_sample = m_hidden + m_in
    chunk, work = _chunk_workspace(flat[: row0 * width], n_samples, per_sample, dt)
    gemm = get_blas_funcs("gemm", dtype=dt)
    coef = None
    if f.residual is not None:
        # R11: diagonal blocks sum_mu (r_mu . b_j) G''_{mu j} x_mu x_mu^T / P
        coef = np.ascontiguousarray((f.residual @ f.w2) * f.G2)
        rpairs = np.zeros((n_hidden, m_in), dtype=dt)
    for s0 in range(0, n_samples, chunk):
        c = min(chunk, n_samples - s0)
        up = work[: c * m_hidden].reshape(c, m_hidden)
        xp = work[c * m_hidden: c * per_sample].reshape(c, m_in)
        pair_products(X[s0:s0 + c], xp)
        pair_products(G1[s0:s0 + c], up)
        _accumulate_at_b(gemm, up, xp, S, beta=0.0 if s0 == 0 else 1.0)
        if coef is not None:
            _accumulate_at_b(gemm, coef[s0:s0 + c], xp, rpairs)

    Q = f.w2.T @ f.w2
    scale = 1.0 / n_samples
    first, second = np.triu_indices(n_hidden)  # hidden pairs in S's row order
    late = second >= u0  # tiles in S's rows: scatter these last, from a copy
    late_rows = np.flatnonzero(late)
    early_rows = np.flatnonzero(~late)
    S_late = S[late_rows]
    scatter_w1w1(S, early_rows, first[early_rows], second[early_rows], Q, scale, n_in, out)
    scatter_w1w1(S_late, np.arange(late_rows.size), first[late_rows], second[late_rows], Q,
                 scale, n_in, out)
    if coef is not None:
        add_diagonal_blocks(rpairs, scale, n_in, out)


def _small_blocks(f: Features, scratch: np.ndarray | None = None):
    """The w1w2 (D1 x D2) and w2w2 (D2 x D2) blocks.

    ``scratch``: a flat array not yet in use (the output H before its w1w1 pass)
    that hosts the chunk factors, so the contraction runs as a few large GEMMs
    without extra memory. Few large BLAS calls also matter for speed: between
    many small ones, BLAS worker threads spin and slow the Numba kernels.
    """
    from scipy.linalg.blas import get_blas_funcs

    from ._kernels.assembly import outer_rows

    X, A, G1 = f.X, f.A, f.G1
    n_samples, n_in = X.shape
    n_hidden = A.shape[1]
    n_out = f.w2.shape[0]
    dt = X.dtype
    d1 = n_hidden * n_in
    scale = 1.0 / n_samples
    gemm = get_blas_funcs("gemm", dtype=dt)
    rhs = A if f.residual is None else np.concatenate([A, f.residual], axis=1)
    # T[(j,i), c] = sum_mu G'_{mu j} x_{mu i} rhs_{mu c}, rhs = [A, r]. Two equivalent
    # GEMMs; the one with the narrower per-sample product row moves less memory:
    # rows G' (x) x against rhs, or rows G' (x) rhs against x.
    n_rhs = rhs.shape[1]
    width = min(d1, n_hidden * n_rhs)
    by_inputs = d1 < n_hidden * n_rhs  # on a tie the x side measured faster
    acc = np.zeros((d1, n_rhs) if by_inputs else (n_in, n_hidden * n_rhs), dtype=dt)
    chunk, scratch = _chunk_workspace(scratch, n_samples, width, dt)
    for s0 in range(0, n_samples, chunk):
        c = min(chunk, n_samples - s0)
        rows = scratch[: c * width].reshape(c, width)
        if by_inputs:
            outer_rows(G1[s0:s0 + c], X[s0:s0 + c], rows)
            _accumulate_at_b(gemm, rows, rhs[s0:s0 + c], acc)
        else:
            outer_rows(G1[s0:s0 + c], rhs[s0:s0 + c], rows)
            _accumulate_at_b(gemm, X[s0:s0 + c], rows, acc)
    T = acc if by_inputs else (acc.reshape(n_in, n_hidden, n_rhs).transpose(1, 0, 2)
                               .reshape(d1, n_rhs))
    w1w2 = np.empty((n_hidden, n_in, n_out, n_hidden), dtype=dt)
    # H12[(j,i),(k,j')] = W2[k,j] T[(j,i),j'] / P
    np.multiply(f.w2.T[:, None, :, None], T[:, :n_hidden].reshape(n_hidden, n_in, 1, n_hidden),
                out=w1w2)
    w1w2 *= scale
    if f.residual is not None:
        # R12[(j,i),(k,j)] = sum_mu r_{mu k} G'_{mu j} x_{mu i} / P
        j = np.arange(n_hidden)
        w1w2[j, :, :, j] += T[:, n_hidden:].reshape(n_hidden, n_in, n_out) * scale
    gram = (A.T @ A) * scale
    w2w2 = np.zeros((n_out * n_hidden, n_out * n_hidden), dtype=dt)
    for k in range(n_out):
        w2w2[k * n_hidden:(k + 1) * n_hidden, k * n_hidden:(k + 1) * n_hidden] = gram
    return w1w2.reshape(d1, n_out * n_hidden), w2w2


def ntk(net, X, dtype=None) -> np.ndarray:
    """Assemble the empirical NTK Gram matrix K = J J^T / P.

    Closed form (THEORY.md a): K = [(A A^T) (x) I_No + (U U^T) o (X X^T (x) 1)] / P with
    U[(mu,k)] = G'[mu] * w2[k]; the Jacobian is never formed. Its nonzero
    eigenvalues are those of the Hessian at the optimum.

    Parameters
    ----------
    net : TwoLayerNet
        The network (the NTK does not depend on a teacher).
    X : array_like, shape (P, n_in)
        Inputs, one sample per row (integers and booleans are upcast to float64).
    dtype : float64 or float32, optional
        Working and output precision; default the network's dtype.

    Returns
    -------
    ndarray, shape (P * n_out, P * n_out)
        K, symmetric positive semi-definite, rows and columns (mu, k) mu-major.

    Raises
    ------
    MemoryError
        Before allocating, if K does not fit in available memory.

    See Also
    --------
    jacobian : J itself.

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> net = fh.TwoLayerNet.random(4, 3, n_out=2, rng=0); X = fh.gaussian_inputs(5, 4, rng=1)
    >>> K = fh.ntk(net, X)
    >>> K.shape
    (10, 10)
    >>> J = fh.jacobian(net, X)
    >>> bool(np.allclose(K, J @ J.T / 5))
    True
    """
    point = check_point(net, X, None, dtype, population=False,
                        what="fasthess.ntk (the P*n_out x P*n_out Gram matrix of the samples)")
    refuse_if_too_large(ntk_size(point), point.dtype, "the NTK Gram matrix",
                        overhead=ntk_overhead(net.n_out))
    return assemble_ntk(point)


def ntk_size(point: Point) -> int:
    """P * n_out, the side of the NTK Gram matrix."""
    return point.X.shape[0] * point.net.n_out


def ntk_overhead(n_out: int) -> float:
    """Peak bytes of :func:`ntk` relative to K: K plus the P x P factors X X^T and A A^T."""
    return 1.0 + 2.0 / n_out**2


def assemble_ntk(point: Point) -> np.ndarray:
    """:func:`ntk` of a validated sampled point whose size was checked."""
    from ._kernels.assembly import ntk_combine

    f = features(point)
    n = ntk_size(point)
    n_out = point.net.n_out
    U = (f.G1[:, None, :] * f.w2[None, :, :]).reshape(n, -1)
    K = U @ U.T
    ntk_combine(K, f.X @ f.X.T, f.A @ f.A.T, n_out, 1.0 / f.n_samples)
    return K
