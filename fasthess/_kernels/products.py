"""The per-sample middle of the matrix-free product H V (between its two GEMMs).

For a chunk of samples the caller computes xv[mu, (j, c)] = sum_i x_{mu i} V1[j, i, c]
with one GEMM, this kernel turns it in place into the factor that the second GEMM
contracts with X (the w1 rows of H V), and accumulates the w2 rows, which are
small. Serial: it runs between BLAS calls, on a chunk that stays in cache.
"""
from __future__ import annotations

from ._jit import inline_kernel, kernel


@inline_kernel
def _middle_one_column(xv, s0, G1, A, G2, residual, w2, V2, u, out2):
    """:func:`hvp_middle` for m = 1, with the innermost loops over hidden units instead
    (same operations in the same order, so a column's result does not depend on m)."""
    c = xv.shape[0]
    n_out, n_hidden = w2.shape
    off_optimum = residual.shape[0] > 0
    for p in range(c):
        mu = s0 + p
        for k in range(n_out):
            u[k, 0] = 0.0
            t = u[k, 0]  # a local of the working dtype, as u is
            for j in range(n_hidden):
                t += w2[k, j] * G1[mu, j] * xv[p, j] + A[mu, j] * V2[k, j, 0]
            u[k, 0] = t
        for k in range(n_out):
            uk = u[k, 0]
            for j in range(n_hidden):
                out2[k, j, 0] += A[mu, j] * uk
            if off_optimum:
                r = residual[mu, k]
                for j in range(n_hidden):
                    out2[k, j, 0] += (r * G1[mu, j]) * xv[p, j]
        if off_optimum:
            for j in range(n_hidden):
                rb = 0.0
                for k in range(n_out):
                    rb += residual[mu, k] * w2[k, j]
                xv[p, j] *= rb * G2[mu, j]
        else:
            for j in range(n_hidden):
                xv[p, j] = 0.0
        for k in range(n_out):
            uk = u[k, 0]
            if off_optimum:
                r = residual[mu, k]
                for j in range(n_hidden):
                    xv[p, j] += (w2[k, j] * G1[mu, j]) * uk + (r * G1[mu, j]) * V2[k, j, 0]
            else:
                for j in range(n_hidden):
                    xv[p, j] += (w2[k, j] * G1[mu, j]) * uk


@kernel
def hvp_middle(xv, s0, G1, A, G2, residual, w2, V2, u, out2):
    """Turn xv (c, Nh*m) into the w1 factor of H V and add the w2 rows into out2.

    Shapes: G1, A (P, Nh); G2 (P, Nh) and residual (P, No) off the optimum, else
    (0, 0); w2 (No, Nh); V2 (No, Nh, m), the w2 part of V; u (No, m) scratch;
    out2 (No, Nh, m), accumulated. Row p of xv is sample s0 + p. With
    u_k = sum_j W2[k,j] G'_j xv_j + A_j V2[k,j] (the Jacobian product J V):

        xv_j  <-  G'_j sum_k W2[k,j] u_k                      (Gauss-Newton, J^T J V)
                  + (r . b_j) G''_j xv_j + G'_j sum_k r_k V2[k,j]   (R11 V1 + R12 V2)
        out2[k,j] += A_j u_k  +  r_k G'_j xv_j                 (J^T J V and R21 V1)

    (THEORY.md a; the 1/P factor is left to the caller).
    """
    c = xv.shape[0]
    n_out, n_hidden = w2.shape
    m = u.shape[1]
    off_optimum = residual.shape[0] > 0
    if m == 1:
        _middle_one_column(xv, s0, G1, A, G2, residual, w2, V2, u, out2)
        return
    # every innermost loop runs over the m columns, contiguous in xv, V2, u and out2
    for p in range(c):
        mu = s0 + p
        for k in range(n_out):
            for col in range(m):
                u[k, col] = 0.0
        for j in range(n_hidden):
            g = G1[mu, j]
            a = A[mu, j]
            base = j * m
            for k in range(n_out):
                wg = w2[k, j] * g
                for col in range(m):
                    u[k, col] += wg * xv[p, base + col] + a * V2[k, j, col]
        for j in range(n_hidden):
            g = G1[mu, j]
            a = A[mu, j]
            base = j * m
            rb = 0.0
            for k in range(n_out):
                for col in range(m):
                    out2[k, j, col] += a * u[k, col]
                if off_optimum:
                    rg = residual[mu, k] * g
                    rb += residual[mu, k] * w2[k, j]
                    for col in range(m):
                        out2[k, j, col] += rg * xv[p, base + col]
            # xv_j <- (r . b_j) G''_j xv_j (R11 V1; zero at the optimum), then the sums over k
            if off_optimum:
                rb *= G2[mu, j]
            for col in range(m):
                xv[p, base + col] *= rb
            for k in range(n_out):
                wg = w2[k, j] * g
                if off_optimum:
                    rg = residual[mu, k] * g
                    for col in range(m):
                        xv[p, base + col] += wg * u[k, col] + rg * V2[k, j, col]
                else:
                    for col in range(m):
                        xv[p, base + col] += wg * u[k, col]
