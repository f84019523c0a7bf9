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

# Bytes of sample-chunk factors held at once during assembly (bounded workspace).
# The w1w1 chunk buffers and each block of the pair contraction S (S whole is ~H/4)
# may take this fraction of H's bytes, between the floor and the cap: peak memory
# stays near 1.3 x H while the GEMMs stay large enough to run near the BLAS rate.
_WORKSPACE_FRACTION = 0.1
_WORKSPACE_FLOOR = 1 * 2**20
_CHUNK_BYTES = 16 * 2**20
# Chunks that are written and immediately re-read by BLAS: about an L2/L3 slice.
_CACHE_CHUNK_BYTES = 2 * 2**20
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
    A: np.ndarray
    G1: np.ndarray
    G2: np.ndarray
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
    residual = None
    if teacher is not None:
        residual = A @ w2.T - teacher.astype(dt).forward(X)
    return Features(X, A, G1, G2, residual, w1, w2)


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
    f = features(student, X, teacher)
    if f.residual is None:
        return np.zeros(student.n_params, dtype=f.X.dtype)
    return gradient_from_features(f)


def gradient_from_features(f: Features) -> np.ndarray:
    r = f.residual
    inv_p = 1.0 / f.n_samples
    g_w1 = ((r @ f.w2) * f.G1).T @ f.X * inv_p
    g_w2 = r.T @ f.A * inv_p
    return np.concatenate([g_w1.ravel(), g_w2.ravel()])


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
    w1w2, w2w2 = _small_blocks(f)
    _drop_unneeded(f)
    H = np.empty((net.n_params, net.n_params), dtype=dt)
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
    w1w2, w2w2 = _small_blocks(f)
    _drop_unneeded(f)
    w1w1 = np.empty((d1, d1), dtype=dt)
    _assemble_w1w1(f, w1w1)
    return HessianBlocks(w1w1, w1w2, w2w2)


def _workspace_budget(h_bytes: int) -> int:
    return int(min(max(_WORKSPACE_FRACTION * h_bytes, _WORKSPACE_FLOOR), _CHUNK_BYTES))


def _chunks(n_samples: int, bytes_per_sample: int, budget: int | None = None):
    """Sample ranges of at least 64 samples (GEMM efficiency) within the byte budget."""
    budget = _CHUNK_BYTES if budget is None else budget
    size = int(np.clip(budget // max(bytes_per_sample, 1), 64, max(n_samples, 1)))
    return [(s, min(s + size, n_samples)) for s in range(0, n_samples, size)]


def _hidden_row_blocks(n_hidden: int, n_in_pairs: int, itemsize: int, h_bytes: int):
    """Split first hidden index j into ranges whose S block stays small.

    Row j holds Nh - j pairs; blocks are contiguous in j so their pairs are too.
    """
    budget = _workspace_budget(h_bytes)
    max_pairs = max(int(budget // (itemsize * n_in_pairs)), 1)
    blocks, start, count = [], 0, 0
    for j in range(n_hidden):
        count += n_hidden - j
        if count >= max_pairs or j == n_hidden - 1:
            blocks.append((start, j + 1, count))
            start, count = j + 1, 0
    return blocks


def _accumulate_at_b(gemm, a, b, out):
    """out += a^T b for C-ordered a (c x m), b (c x n), out (m x n), in place.

    BLAS sees C arrays as transposed Fortran ones: out^T (n x m) += b^T a, i.e.
    gemm(a=b.T, b=a.T, trans_b) with no copies and no temporary.
    """
    res = gemm(1.0, b.T, a.T, beta=1.0, c=out.T, trans_b=1, overwrite_c=1)
    if not np.shares_memory(res, out):  # BLAS wrapper copied: keep the result anyway
        out[...] = res.T


def _assemble_w1w1(f: Features, out: np.ndarray) -> None:
    """Write the w1w1 block (Gauss-Newton + residual) into out[:D1, :D1]."""
    from scipy.linalg.blas import get_blas_funcs

    from ._kernels.assembly import add_diagonal_blocks, pair_products, scatter_w1w1

    X, G1 = f.X, f.G1
    n_samples, n_in = X.shape
    n_hidden = G1.shape[1]
    dt = X.dtype
    itemsize = dt.itemsize
    m_in = n_in * (n_in + 1) // 2
    scale = 1.0 / n_samples
    gemm = get_blas_funcs("gemm", dtype=dt)
    Q = f.w2.T @ f.w2
    first, second = np.triu_indices(n_hidden)  # hidden pairs in the global pair order
    blocks = _hidden_row_blocks(n_hidden, m_in, itemsize, out.nbytes)
    max_pairs = max(b[2] for b in blocks)
    chunks = _chunks(n_samples, itemsize * (max_pairs + m_in), _workspace_budget(out.nbytes))
    # one set of chunk buffers, reused: fresh large allocations would page-fault each time
    chunk = chunks[0][1]
    xp_buf = np.empty((chunk, m_in), dtype=dt)
    up_buf = np.empty((chunk, max_pairs), dtype=dt)
    s_buf = np.empty(max_pairs * m_in, dtype=dt)
    offset = 0
    for j0, j1, n_pairs in blocks:
        S = s_buf[: n_pairs * m_in].reshape(n_pairs, m_in)
        S[...] = 0
        for s0, s1 in chunks:
            xp = xp_buf[: s1 - s0]
            up = up_buf.ravel()[: (s1 - s0) * n_pairs].reshape(s1 - s0, n_pairs)
            pair_products(X[s0:s1], 0, n_in, xp)
            pair_products(G1[s0:s1], j0, j1, up)
            _accumulate_at_b(gemm, up, xp, S)  # S += Upairs^T Xpairs
        block = slice(offset, offset + n_pairs)
        scatter_w1w1(S, Q, scale, first[block], second[block], n_in, out)
        offset += n_pairs
    if f.residual is not None:
        # R11: diagonal blocks sum_mu (r_mu . b_j) G''_{mu j} x_mu x_mu^T / P
        coef = np.ascontiguousarray((f.residual @ f.w2) * f.G2)
        rpairs = np.zeros((n_hidden, m_in), dtype=dt)
        for s0, s1 in chunks:
            xp = xp_buf[: s1 - s0]
            pair_products(X[s0:s1], 0, n_in, xp)
            _accumulate_at_b(gemm, coef[s0:s1], xp, rpairs)
        add_diagonal_blocks(rpairs, scale, n_in, out)


def _small_blocks(f: Features):
    """The w1w2 (D1 x D2) and w2w2 (D2 x D2) blocks."""
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
    # T[(j,i), :] = sum_mu G'_{mu j} x_{mu i} [A_mu, r_mu]; chunks small enough that
    # the Jacobian-like rows z stay in cache between their writing and the GEMM
    T = np.zeros((d1, rhs.shape[1]), dtype=dt)
    chunks = _chunks(n_samples, dt.itemsize * d1, budget=_CACHE_CHUNK_BYTES)
    z_buf = np.empty((chunks[0][1], d1), dtype=dt)
    for s0, s1 in chunks:
        z = z_buf[: s1 - s0]
        outer_rows(G1[s0:s1], X[s0:s1], z)
        _accumulate_at_b(gemm, z, rhs[s0:s1], T)
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
