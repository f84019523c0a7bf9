"""Kernels for dense Hessian / NTK assembly.

The w1w1 block entry ((j,i),(j',i')) is (W2^T W2)_{jj'} S[{j,j'},{i,i'}] / P with
S[{j,j'},{i,i'}] = sum_mu G'_{mu j} G'_{mu j'} x_{mu i} x_{mu i'}: it depends only on
the unordered pairs. The caller builds the per-sample factors of a chunk of samples
with :func:`chunk_factors`, lets BLAS contract them (S = Upairs^T Xpairs, ~P Nh^2 Ni^2 / 4
multiply-adds, half a syrk of the explicit Jacobian), then writes H with
:func:`scatter_w1w1`, :func:`write_w1w2` and :func:`write_w2w2`.

These kernels run between BLAS calls and are memory-bound: they are serial, so
that they never compete for the cores with BLAS threads that are still spinning
after a call (DESIGN.md, "Threads"). :func:`contract_samples` calls single-threaded
BLAS itself, block after block of samples whose factors are still in cache, so one
call contracts a thread's whole share of the samples.

Pair (a, b), a <= b, of n items has index a*n - a*(a-1)/2 + (b - a).
"""
from __future__ import annotations

import numpy as np

from ._jit import inline_kernel, kernel
from .activation import hessian_entry_bound, input_products_bound
from .features import feature_rows
from .blas import gemm_nt


@inline_kernel
def pair_index(a, b, n):
    if a > b:
        a, b = b, a
    return a * n - (a * (a - 1)) // 2 + (b - a)


@inline_kernel
def _pair_rows(VT, out, p0, p1):
    """out[pair_index(a, b), p] = VT[a, p] * VT[b, p] for all pairs a <= b, p0 <= p < p1.

    np.multiply on row slices: LLVM vectorises it, not the equivalent loop over p
    (measured 0.27 against 0.92 ns per entry at N = 30)."""
    n = VT.shape[0]
    row = 0
    for a in range(n):
        for b in range(a, n):
            np.multiply(VT[a, p0:p1], VT[b, p0:p1], out[row, p0:p1])
            row += 1


@kernel
def chunk_factors(X, G1, A, G2, residual, w2, s0, by_inputs, xt, gt, rhst, g2t,
                  upairs, xpairs, rows, p0, p1):
    """The per-sample factors of samples s0 + p0 .. s0 + p1 of one dense-assembly chunk.

    Every output is stored samples last (one row per factor, c samples along it),
    so each loop below runs over the samples, contiguously, and BLAS contracts
    the rows: S += upairs xpairs^T, T += rows rhst^T (``by_inputs``) or
    T += xt rows^T. Only columns p0 .. p1 - 1 are written (callers split a chunk
    into column ranges, one per thread).

    Inputs: X (P, Ni), G1, A (P, Nh); G2 (P, Nh) and residual (P, No) off the
    optimum, else shape (0, 0); w2 (No, Nh). Outputs (c = xt.shape[1]):

    - xt (Ni, c), gt (Nh, c), rhst (Nh [+ No], c), g2t (Nh or 0, c): the chunk's
      x, G', [A | r] and G'' transposed;
    - upairs (m_h [+ Nh], c): G'_j G'_j' for pairs j <= j', then off the optimum
      (r_mu . b_j) G''_{mu j} (the R11 coefficient, contracted with the same xpairs);
    - xpairs (m_in, c): x_i x_i' for pairs i <= i';
    - rows: by_inputs (Nh*Ni, c) = G'_j x_i, otherwise (Nh*(Nh [+ No]), c) = G'_j [A | r]_c'.
    """
    n_in = xt.shape[0]
    n_hidden = G1.shape[1]
    n_out = w2.shape[0]
    m_hidden = n_hidden * (n_hidden + 1) // 2
    off_optimum = residual.shape[0] > 0
    n_rhs = rhst.shape[0]
    for p in range(p0, p1):
        mu = s0 + p
        for i in range(n_in):
            xt[i, p] = X[mu, i]
        for j in range(n_hidden):
            gt[j, p] = G1[mu, j]
            rhst[j, p] = A[mu, j]
        if off_optimum:
            for k in range(n_out):
                rhst[n_hidden + k, p] = residual[mu, k]
            for j in range(n_hidden):
                g2t[j, p] = G2[mu, j]
    _pair_rows(gt, upairs, p0, p1)
    _pair_rows(xt, xpairs, p0, p1)
    if off_optimum:
        for j in range(n_hidden):
            for p in range(p0, p1):
                upairs[m_hidden + j, p] = 0.0
            for k in range(n_out):
                b = w2[k, j]
                for p in range(p0, p1):
                    upairs[m_hidden + j, p] += rhst[n_hidden + k, p] * b
            for p in range(p0, p1):
                upairs[m_hidden + j, p] *= g2t[j, p]
    if by_inputs:  # (np.multiply on row slices: vectorised, as in _pair_rows)
        for j in range(n_hidden):
            for i in range(n_in):
                np.multiply(gt[j, p0:p1], xt[i, p0:p1], rows[j * n_in + i, p0:p1])
    else:
        for j in range(n_hidden):
            for t in range(n_rhs):
                np.multiply(gt[j, p0:p1], rhst[t, p0:p1], rows[j * n_rhs + t, p0:p1])


@inline_kernel
def _write_tile(S, srow, q, j, jp, n_in, pairs, out):
    """Tiles (j, j') and (j', j) of w1w1 (equal: S is symmetric in (i, i')):
    q * S[srow, pair(i, i')], through the pair indices ``pairs`` (a gather: computing
    them here took 2.7x longer at N = 20)."""
    s_row = S[srow]
    c0 = jp * n_in
    c1 = j * n_in
    for i in range(n_in):
        row = out[j * n_in + i]
        mirror = out[jp * n_in + i]
        index = pairs[i]
        for ip in range(n_in):
            v = q * s_row[index[ip]]
            row[c0 + ip] = v
            mirror[c1 + ip] = v


@inline_kernel
def pair_table(n):
    """pairs[i, i'] = pair_index(i, i', n)."""
    pairs = np.empty((n, n), dtype=np.int64)
    for i in range(n):
        for ip in range(n):
            pairs[i, ip] = pair_index(i, ip, n)
    return pairs


@kernel
def copy_late_rows(S, late, u0, n_hidden, off_optimum, q0, q1):
    """Rows q0 .. q1 - 1 of ``late``: the rows of S that the late tiles overwrite.

    Late pairs (j <= j', j' >= u0) in the order j' = u0 .., j = 0 .. j', then, off
    the optimum and when S lives in the output (u0 < Nh), the Nh rows of R11
    coefficients. See :func:`scatter_w1w1`.
    """
    m_hidden = n_hidden * (n_hidden + 1) // 2
    m_in = S.shape[1]
    q = 0
    for jp in range(u0, n_hidden):
        for j in range(jp + 1):
            if q0 <= q < q1:
                srow = pair_index(j, jp, n_hidden)
                for t in range(m_in):
                    late[q, t] = S[srow, t]
            q += 1
    if off_optimum and u0 < n_hidden:
        for j in range(n_hidden):
            if q0 <= q + j < q1:
                for t in range(m_in):
                    late[q + j, t] = S[m_hidden + j, t]


@kernel
def write_tiles(S, late, u0, Q, scale, n_in, late_phase, q0, q1, out):
    """Tiles q0 .. q1 - 1 of one phase of :func:`scatter_w1w1` (tiles own disjoint
    parts of ``out``, so ranges of them may be written by different threads).

    Early phase: pairs j <= j' < u0 in j-major order, from S. Late phase: pairs
    j <= j', j' >= u0 in the order of :func:`copy_late_rows`, from ``late``.
    """
    n_hidden = Q.shape[0]
    pairs = pair_table(n_in)
    q = 0
    if not late_phase:
        for j in range(u0):
            for jp in range(j, u0):
                if q0 <= q < q1:
                    _write_tile(S, pair_index(j, jp, n_hidden), Q[j, jp] * scale, j, jp, n_in,
                                pairs, out)
                q += 1
    else:
        for jp in range(u0, n_hidden):
            for j in range(jp + 1):
                if q0 <= q < q1:
                    _write_tile(late, q, Q[j, jp] * scale, j, jp, n_in, pairs, out)
                q += 1


@kernel
def add_residual_blocks(coef, row0, scale, n_in, out, j0, j1):
    """R11 for hidden units j0 .. j1 - 1: out[(j,i),(j,i')] += scale * coef[row0 + j, pair(i,i')],
    coef[row0 + j] = sum_mu (r_mu . b_j) G''_{mu j} x_mu pairs (THEORY.md a)."""
    for j in range(j0, j1):
        for i in range(n_in):
            for ip in range(n_in):
                out[j * n_in + i, j * n_in + ip] += scale * coef[row0 + j, pair_index(i, ip, n_in)]


@kernel
def scatter_w1w1(S, late, u0, Q, scale, n_in, off_optimum, out):
    """Write the w1w1 block (Gauss-Newton and, off the optimum, residual) into out[:D1, :D1].

    S: (m_h [+ Nh], m_in), the contraction of :func:`chunk_factors`' upairs with
    xpairs: row pair_index(j, j') for hidden pairs, then (off the optimum) row
    m_h + j holds the R11 coefficients of unit j. S may live inside ``out``, in the
    rows of hidden units >= u0 (see ``assembly.w1w1_layout``): the tiles that write
    those rows (j' >= u0) are written last, from ``late``, a buffer of
    (n_late [+ Nh], m_in) rows into which they are first copied. Pass u0 = Nh when
    S does not overlap ``out``. Q: (Nh, Nh) = W2^T W2. The same steps as the
    callers that run them in pieces: :func:`copy_late_rows`, :func:`write_tiles`
    (early, then late), :func:`add_residual_blocks`.
    """
    n_hidden = Q.shape[0]
    m_hidden = n_hidden * (n_hidden + 1) // 2
    n_late = (n_hidden * (n_hidden + 1) - u0 * (u0 + 1)) // 2
    copy_late_rows(S, late, u0, n_hidden, off_optimum, 0, late.shape[0])
    write_tiles(S, late, u0, Q, scale, n_in, False, 0, u0 * (u0 + 1) // 2, out)
    write_tiles(S, late, u0, Q, scale, n_in, True, 0, n_late, out)
    if off_optimum:
        if u0 < n_hidden:
            add_residual_blocks(late, n_late, scale, n_in, out, 0, n_hidden)
        else:
            add_residual_blocks(S, m_hidden, scale, n_in, out, 0, n_hidden)


@kernel
def write_w1w2(T, by_inputs, n_in, w2, scale, off_optimum, out, col0, mirror):
    """out[(j,i), col0 + (k,j')] = (W2[k,j] T[(j,i),j'] + delta_jj' R[(j,i),k]) * scale.

    T[(j,i), c] = sum_mu G'_{mu j} x_{mu i} [A | r]_{mu c}, stored as (Nh*Ni, n_rhs)
    when ``by_inputs``, else as (Ni, Nh*n_rhs) (n_rhs = Nh [+ No]). The residual
    columns (c >= Nh) give R12 off the optimum. ``mirror``: also write the
    transposed block at out[col0 + (k,j'), (j,i)] (the w2w1 block of a full H).
    """
    n_out, n_hidden = w2.shape
    n_rhs = n_hidden + (n_out if off_optimum else 0)
    for j in range(n_hidden):
        for i in range(n_in):
            r = j * n_in + i
            for k in range(n_out):
                b = w2[k, j]
                for jp in range(n_hidden):
                    if by_inputs:
                        v = b * T[r, jp]
                    else:
                        v = b * T[i, j * n_rhs + jp]
                    if off_optimum and jp == j:
                        if by_inputs:
                            v += T[r, n_hidden + k]
                        else:
                            v += T[i, j * n_rhs + n_hidden + k]
                    v *= scale
                    out[r, col0 + k * n_hidden + jp] = v
                    if mirror:
                        out[col0 + k * n_hidden + jp, r] = v


@kernel
def write_w2w2(gram, scale, n_out, out, offset):
    """out[offset + (k,j), offset + (k',j')] = delta_kk' gram[j, j'] * scale.

    That is I_No (x) A^T A / P, the w2w2 block (gram = A^T A, scale = 1 / P).
    """
    n_hidden = gram.shape[0]
    for k in range(n_out):
        for j in range(n_hidden):
            r = offset + k * n_hidden + j
            for kp in range(n_out):
                for jp in range(n_hidden):
                    v = gram[j, jp] * scale if k == kp else 0.0
                    out[r, offset + kp * n_hidden + jp] = v


@kernel
def ntk_combine(K, XX, AA, n_out, scale):
    """In place: K[(mu,k),(nu,k')] = scale * (K * XX[mu,nu] + delta_kk' AA[mu,nu]).

    On entry K = Ustack Ustack^T with Ustack[(mu,k)] = G'[mu] * W2[k].
    """
    n = K.shape[0]
    for r in range(n):
        mu = r // n_out
        k = r - mu * n_out
        for c in range(n):
            nu = c // n_out
            kp = c - nu * n_out
            v = K[r, c] * XX[mu, nu]
            if k == kp:
                v += AA[mu, nu]
            K[r, c] = scale * v


@kernel
def contract_samples(X, G1, A, G2, residual, w2, s0, s1, block, by_inputs, work, heights, S, T,
                     gram):
    """S, T and A^T A (the contractions of the dense assembly) of samples s0 .. s1 - 1,
    overwritten: blocks of ``block`` samples, each one's factors written to ``work``
    and contracted by BLAS into the sums (:func:`gemm_nt`) while they are in cache.

    ``work``: a flat buffer of at least block * sum(heights) elements for the factors,
    laid out as :func:`factor_heights` says (callers keep it between calls: fresh pages
    cost a fault each). Threads may run disjoint sample ranges into outputs and
    buffers of their own.
    """
    n_hidden = G1.shape[1]
    if s1 <= s0:
        S[:] = 0.0
        T[:] = 0.0
        gram[:] = 0.0
        return
    offsets = np.cumsum(np.array(heights))
    beta = 0.0
    for b0 in range(s0, s1, block):
        c = min(block, s1 - b0)
        ends = offsets * c
        xt = work[:ends[0]].reshape(heights[0], c)
        gt = work[ends[0]:ends[1]].reshape(heights[1], c)
        rhst = work[ends[1]:ends[2]].reshape(heights[2], c)
        g2t = work[ends[2]:ends[3]].reshape(heights[3], c)
        upairs = work[ends[3]:ends[4]].reshape(heights[4], c)
        xpairs = work[ends[4]:ends[5]].reshape(heights[5], c)
        rows = work[ends[5]:ends[6]].reshape(heights[6], c)
        chunk_factors(X, G1, A, G2, residual, w2, b0, by_inputs, xt, gt, rhst, g2t,
                      upairs, xpairs, rows, 0, c)
        gemm_nt(upairs, xpairs, beta, S)
        if by_inputs:
            gemm_nt(rows, rhst, beta, T)
        else:
            gemm_nt(xt, rows, beta, T)
        at = rhst[:n_hidden]
        gemm_nt(at, at, beta, gram)
        beta = 1.0


def factor_heights(n_in, n_hidden, n_out, off_optimum, by_inputs):
    """Rows per sample of each factor of :func:`chunk_factors`, in the order they are
    stored (x, G', [A | r], G'', the hidden pairs [and R11 coefficients], the input
    pairs, the w1w2 rows): the one description of that layout."""
    n_rhs = n_hidden + (n_out if off_optimum else 0)
    g2 = n_hidden if off_optimum else 0
    s_rows = n_hidden * (n_hidden + 1) // 2 + g2
    width = n_hidden * n_in if by_inputs else n_hidden * n_rhs
    return (n_in, n_hidden, n_rhs, g2, s_rows, n_in * (n_in + 1) // 2, width)


@inline_kernel
def _assemble_in_one_call(X, G1, A, G2, residual, w2, scale, by_inputs, block, work, heights,
                          out_w1w1, out_w1w2, col0, mirror, out_w2w2, offset):
    """The whole dense assembly of a small problem on one thread, in one call:
    :func:`contract_samples` of all samples, then :func:`scatter_w1w1`,
    :func:`write_w1w2` and :func:`write_w2w2` (no Python between the steps, which is
    most of the time at N ~ 10). S, T and A^T A are apart from the outputs (S is
    ~1/4 of the w1w1 block: small problems only). Arguments as in
    :func:`contract_samples` and the writers.
    """
    n_samples, n_in = X.shape
    n_out, n_hidden = w2.shape
    off_optimum = residual.shape[0] > 0
    m_in = n_in * (n_in + 1) // 2
    s_rows = n_hidden * (n_hidden + 1) // 2 + (n_hidden if off_optimum else 0)
    n_rhs = n_hidden + (n_out if off_optimum else 0)
    dt = X.dtype
    S = np.empty((s_rows, m_in), dt)
    T = np.empty((n_hidden * n_in, n_rhs) if by_inputs else (n_in, n_hidden * n_rhs), dt)
    gram = np.empty((n_hidden, n_hidden), dt)
    contract_samples(X, G1, A, G2, residual, w2, 0, n_samples, block, by_inputs, work, heights,
                     S, T, gram)
    Q = np.dot(w2.T, w2)
    scatter_w1w1(S, S[:0], n_hidden, Q, scale, n_in, off_optimum, out_w1w1)
    write_w1w2(T, by_inputs, n_in, w2, scale, off_optimum, out_w1w2, col0, mirror)
    write_w2w2(gram, scale, n_out, out_w2w2, offset)


@kernel
def assemble_in_one_call(X, G1, A, G2, residual, w2, scale, by_inputs, block, work, heights,
                         out_w1w1, out_w1w2, col0, mirror, out_w2w2, offset):
    """The dense assembly of features of a small problem on one thread, in one call (its
    steps are shared with :func:`assemble_with_features`)."""
    _assemble_in_one_call(X, G1, A, G2, residual, w2, scale, by_inputs, block, work, heights,
                          out_w1w1, out_w1w2, col0, mirror, out_w2w2, offset)


@kernel
def assemble_with_features(code, coeffs, X, w1, w2, pre, A, G1, G2, maxima, limit, scale,
                           by_inputs, block, work, heights, out_w1w1, out_w1w2, col0, mirror,
                           out_w2w2, offset):
    """:func:`~fasthess._kernels.activation.feature_rows` of all samples, then
    :func:`assemble_in_one_call`'s steps at the optimum: a small problem in one call.

    Returns False, without assembling, when a maximum is not finite or an overflow
    bound (those of the guards, :func:`input_products_bound` and
    :func:`hessian_entry_bound`) exceeds ``limit``: the caller's guards then name
    the argument and the scale.
    """
    n_samples = X.shape[0]
    feature_rows(code, coeffs, X, w1, pre, A, G1, G2, 0, n_samples, maxima)
    for k in range(maxima.shape[0]):
        if not np.isfinite(maxima[k]):
            return False
    w2_max = 0.0
    for k in range(w2.shape[0]):
        for j in range(w2.shape[1]):
            w2_max = max(w2_max, abs(w2[k, j]))
    bound, _ = hessian_entry_bound(n_samples, maxima[4], maxima[1], maxima[2], 0.0, w2_max, 0.0)
    if input_products_bound(n_samples, maxima[4]) > limit or bound > limit:
        return False
    empty = np.empty((0, 0), X.dtype)
    _assemble_in_one_call(X, G1, A, empty, empty, w2, scale, by_inputs, block, work, heights,
                          out_w1w1, out_w1w2, col0, mirror, out_w2w2, offset)
    return True
