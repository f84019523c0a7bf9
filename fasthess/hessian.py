"""Dense Hessian assembly (at and away from the optimum), its blocks, loss and gradient.

Conventions (DESIGN.md): theta = concat(w1.ravel(), w2.ravel()), D = Nh*Ni + No*Nh,
L = 1/(2P) sum_mu ||y_student(x_mu) - y_teacher(x_mu)||^2. The Hessian is the
Gauss-Newton part J^T J / P plus, away from the optimum, the residual term
(THEORY.md section a).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._resources import check_fits
from ._validation import check_dtype
from .network import TwoLayerNet, _activations

__all__ = ["hessian", "hessian_blocks", "HessianBlocks", "loss", "gradient"]

# Samples per chunk of the w1w1 pass: enough for GEMM efficiency and few passes
# over S; the chunk factors live in the not-yet-written part of H itself.
_MAX_CHUNK_SAMPLES = 2048
# Bytes of a separately allocated chunk buffer (outputs too small to host it).
_CHUNK_BYTES = 8 * 2**20
# Peak bytes of dense assembly relative to the output (checked before allocating).
_ASSEMBLY_OVERHEAD = 1.3


# ---------------------------------------------------------------------- features
@dataclass
class Features:
    """Per-sample quantities every Hessian route needs (all P x Nh unless noted).

    X (P x Ni), A = g(X w1^T), G1 = g'(.), G2 = g''(.), residual (P x No) or None
    at the optimum, and the student's w1, w2 cast to the working dtype.
    """

    X: np.ndarray
    A: np.ndarray | None  # None once the w1w1 pass no longer needs it (peak memory)
    G1: np.ndarray
    G2: np.ndarray | None  # None at the optimum during dense assembly
    residual: np.ndarray | None
    w1: np.ndarray
    w2: np.ndarray

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def at_optimum(self) -> bool:
        return self.residual is None


def check_teacher(student: TwoLayerNet, teacher) -> TwoLayerNet | None:
    """The teacher to use, or None when it is the student itself (the optimum)."""
    if not isinstance(student, TwoLayerNet):
        raise TypeError(f"net must be a fasthess.TwoLayerNet, got {type(student).__name__}")
    if teacher is None or teacher is student:
        return None
    if not isinstance(teacher, TwoLayerNet):
        raise TypeError(f"teacher must be a fasthess.TwoLayerNet or None, got "
                        f"{type(teacher).__name__}")
    if teacher.shape != student.shape:
        raise ValueError(
            f"teacher has shape (n_in, n_hidden, n_out) = {teacher.shape} but the student has "
            f"{student.shape}; they must match")
    if (teacher.activation == student.activation and np.array_equal(teacher.w1, student.w1)
            and np.array_equal(teacher.w2, student.w2)):
        return None
    return teacher


def features(student: TwoLayerNet, X, teacher=None, dtype=None) -> Features:
    """Validate the inputs once and compute the per-sample factors."""
    teacher = check_teacher(student, teacher)
    dt = check_dtype(dtype if dtype is not None else student.dtype)
    X = student.check_inputs(X, dtype=dt)
    w1 = np.ascontiguousarray(student.w1, dtype=dt)
    w2 = np.ascontiguousarray(student.w2, dtype=dt)
    pre = X @ w1.T
    A, G1, G2 = _activations(student.activation, pre)
    _check_finite_activations(student, dt, A, G1, G2)
    residual = None
    if teacher is not None:
        residual = A @ w2.T - teacher.astype(dt).forward(X)
        if not np.all(np.isfinite(residual)):
            raise ValueError(
                "teacher: the residuals y_student - y_teacher overflow in "
                f"{dt}; reduce the weight or input scale, or use float64")
    f = Features(X, A, G1, G2, residual, w1, w2)
    _check_no_overflow(f, student)
    return f


def _check_finite_activations(net, dtype, *arrays):
    """Overflow of g, g', g'' (large polynomial degree, weights or inputs, float32)
    would otherwise surface as NaN eigenvalues or a LAPACK error far from the cause."""
    for name, a in zip(("g", "g'", "g''"), arrays):
        if not np.all(np.isfinite(a)):
            raise ValueError(
                f"net: the activation {net.activation.name!r} overflows: {name}(w1 @ x) is "
                f"not finite in {np.dtype(dtype)} for some samples; reduce the weight or "
                "input scale, or use float64")


def _check_no_overflow(f: Features, net) -> None:
    """Refuse before assembling if a Hessian entry could overflow the dtype.

    Each entry is a sum over P samples of products of Jacobian factors (|g| or
    |w2 g' x|) and, off the optimum, |r w2 g'' x x|; bounding them by their maxima
    is cheap (O(P Nh)) and only refuses what is within a factor P of overflow.
    """
    big = float(np.finfo(f.X.dtype).max)

    def amax(a):
        return float(np.max(np.abs(a))) if a is not None and a.size else 0.0

    with np.errstate(over="ignore"):
        factor = max(amax(f.A), amax(f.G1) * amax(f.X) * max(amax(f.w2), 1.0))
        bound = f.n_samples * factor * factor
        if f.residual is not None:
            bound += (f.n_samples * amax(f.residual) * amax(f.w2) * amax(f.G2)
                      * amax(f.X) ** 2)
    if not np.isfinite(bound) or bound > big / 16:
        raise ValueError(
            f"net: Hessian entries would overflow {f.X.dtype} (activation "
            f"{net.activation.name!r}: |g| or |w2 g'(w1 x) x| up to {factor:.3g} over "
            f"{f.n_samples} samples); reduce the weight or input scale, or use float64")


# ---------------------------------------------------------------------- loss, gradient
def loss(student, X, teacher):
    """L = 1/(2P) sum_mu ||student(x_mu) - teacher(x_mu)||^2.

    Examples
    --------
    >>> import fasthess as fh
    >>> t = fh.TwoLayerNet.random(3, 2, seed=0); X = fh.gaussian_inputs(10, 3, seed=1)
    >>> fh.loss(t, X, t)
    0.0
    """
    f = features(student, X, teacher)
    if f.residual is None:
        return 0.0
    return float(0.5 * np.sum(f.residual.astype(np.float64) ** 2) / f.n_samples)


def gradient(student, X, teacher):
    """dL/dtheta, flat in theta order (w1 row-major, then w2 row-major)."""
    from .operators import vjp

    f = features(student, X, teacher)
    if f.residual is None:
        return np.zeros(student.n_params, dtype=f.X.dtype)
    return vjp(f, f.residual[:, :, None])[:, 0] / f.n_samples  # J^T r / P


# ---------------------------------------------------------------------- blocks
@dataclass
class HessianBlocks:
    """The three blocks of H: ``w1w1`` (D1 x D1), ``w1w2`` (D1 x D2), ``w2w2`` (D2 x D2),
    D1 = Nh*Ni, D2 = No*Nh. The w2w1 block is ``w1w2.T``."""

    w1w1: np.ndarray
    w1w2: np.ndarray
    w2w2: np.ndarray

    def full(self) -> np.ndarray:
        return np.block([[self.w1w1, self.w1w2], [self.w1w2.T, self.w2w2]])


def _drop_unneeded(f: Features) -> None:
    """Free what the w1w1 pass does not read, before H is allocated (peak memory)."""
    f.A = None
    if f.residual is None:
        f.G2 = None


def _dense_bytes(n: int, dtype) -> int:
    return int(n) * int(n) * np.dtype(dtype).itemsize


def _refuse_if_too_large(n: int, dtype, what="the dense Hessian", overhead=_ASSEMBLY_OVERHEAD):
    """MemoryError before allocating an n x n matrix (times the assembly overhead)."""
    check_fits(int(overhead * _dense_bytes(n, dtype)), f"{what} ({n} x {n}, {np.dtype(dtype)})",
               "use fasthess.hessian_operator(net, X) for matrix-free products, "
               "fasthess.eigsh for a few eigenvalues, or fasthess.ntk when P*n_out < D")


def hessian(net, X, teacher=None, dtype=None):
    """The dense D x D Hessian of the loss, assembled by Numba kernels and BLAS.

    Parameters
    ----------
    net : TwoLayerNet
        The student (the point at which H is taken).
    X : array (P, n_in)
    teacher : TwoLayerNet or None
        None (or ``net`` itself): the optimum, H = J^T J / P exactly. Otherwise the
        full Hessian, Gauss-Newton plus the residual (second-derivative) term.
    dtype : float64 or float32, optional
        Working and output precision; default the network's dtype (float64 unless
        it was built in float32). X and the weights are cast to it.

    Returns
    -------
    ndarray (D, D), symmetric.

    Raises
    ------
    MemoryError
        Before allocating, if D x D does not fit in available memory.

    Examples
    --------
    >>> import fasthess as fh
    >>> net = fh.TwoLayerNet.random(4, 3, seed=0)
    >>> H = fh.hessian(net, fh.gaussian_inputs(50, 4, seed=1))
    >>> H.shape
    (15, 15)
    """
    check_teacher(net, teacher)
    dt = check_dtype(dtype if dtype is not None else net.dtype)
    _refuse_if_too_large(net.n_params, dt)
    f = features(net, X, teacher, dt)
    d1 = net.n_hidden * net.n_in
    H = np.empty((net.n_params, net.n_params), dtype=dt)
    w1w2, w2w2 = _small_blocks(f, scratch=H.reshape(-1))
    _drop_unneeded(f)
    _assemble_w1w1(f, H)
    H[:d1, d1:] = w1w2
    H[d1:, :d1] = w1w2.T
    H[d1:, d1:] = w2w2
    return H


def hessian_blocks(net, X, teacher=None, dtype=None) -> HessianBlocks:
    """The blocks w1w1, w1w2, w2w2 of :func:`hessian` as separate arrays."""
    check_teacher(net, teacher)
    dt = check_dtype(dtype if dtype is not None else net.dtype)
    _refuse_if_too_large(net.n_hidden * net.n_in, dt, "the w1w1 block")
    f = features(net, X, teacher, dt)
    d1 = net.n_hidden * net.n_in
    w1w1 = np.empty((d1, d1), dtype=dt)
    w1w2, w2w2 = _small_blocks(f, scratch=w1w1.reshape(-1))
    _drop_unneeded(f)
    _assemble_w1w1(f, w1w1)
    return HessianBlocks(w1w1, w1w2, w2w2)


def _chunk_workspace(scratch, n_samples: int, width: int, dtype):
    """(samples per chunk, flat buffer of chunk * width) for per-sample factor rows.

    The buffer is ``scratch`` (not-yet-written output memory) when it holds chunks
    of at least 64 samples (GEMM efficiency); otherwise a small separate buffer.
    """
    chunk = 0 if scratch is None else min(n_samples, _MAX_CHUNK_SAMPLES, scratch.size // width)
    if chunk < min(n_samples, 64):
        chunk = min(n_samples, max(64, _CHUNK_BYTES // (np.dtype(dtype).itemsize * width)))
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


def _assemble_w1w1(f: Features, out: np.ndarray) -> None:
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
