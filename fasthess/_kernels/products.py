"""The per-sample middle of the matrix-free product H V (between its GEMMs).

For a chunk of c samples the caller computes, with one GEMM,
xvt[(j, col), p] = sum_i V1[j, i, col] x_{mu i} (samples last, mu = s0 + p); this
kernel turns it in place into the factor whose product with X gives the w1 rows of
H V, and leaves in ``ut`` the Jacobian products u = J V (whose product with A gives
the w2 rows). Every loop runs over the chunk's samples, contiguously; the kernel is
serial: it runs between BLAS calls, on a chunk that stays in cache.
"""
from __future__ import annotations

from ._jit import kernel


@kernel
def hvp_middle(xvt, s0, G1, A, G2, residual, w2, V2, gt, at, rt, g2t, ut, out2):
    """Turn xvt (Nh*m, c) into the w1 factor of H V; u = J V into ut (No*m, c).

    Shapes: G1, A (P, Nh); G2 (P, Nh) and residual (P, No) off the optimum, else
    (0, 0); w2 (No, Nh); V2 (No, Nh, m), the w2 part of V. Scratch: gt, at (Nh, c),
    rt (No or 0, c) receive the chunk's G', A, r transposed, g2t (Nh or 0, c) the
    R11 coefficients (r . b_j) G''_j.
    out2 (No, Nh, m) accumulates the residual part of the w2 rows (R21 V1). With
    u_k = sum_j W2[k,j] G'_j xv_j + A_j V2[k,j]:

        xv_j  <-  (r . b_j) G''_j xv_j + sum_k (W2[k,j] G'_j) u_k + (r_k G'_j) V2[k,j]
        out2[k,j] += sum_mu (r_k G'_j) xv_j

    i.e. Gauss-Newton J^T J V and the residual terms R11 V1 + R12 V2, R21 V1
    (THEORY.md a); the caller adds A^T u to the w2 rows and divides by P.
    """
    c = xvt.shape[1]
    n_out, n_hidden = w2.shape
    m = V2.shape[2]
    off_optimum = residual.shape[0] > 0
    for p in range(c):
        mu = s0 + p
        for j in range(n_hidden):
            gt[j, p] = G1[mu, j]
            at[j, p] = A[mu, j]
        if off_optimum:
            for k in range(n_out):
                rt[k, p] = residual[mu, k]
            # the R11 coefficient (r . b_j) G''_j, summed over k in a fixed order
            for j in range(n_hidden):
                rb = residual[mu, 0] * w2[0, j]
                for k in range(1, n_out):
                    rb += residual[mu, k] * w2[k, j]
                g2t[j, p] = rb * G2[mu, j]
    for k in range(n_out):
        for col in range(m):
            row = k * m + col
            for p in range(c):
                ut[row, p] = 0.0
            for j in range(n_hidden):
                b = w2[k, j]
                v = V2[k, j, col]
                x = j * m + col
                for p in range(c):
                    ut[row, p] += b * gt[j, p] * xvt[x, p] + v * at[j, p]
    for j in range(n_hidden):
        for col in range(m):
            x = j * m + col
            if off_optimum:
                for k in range(n_out):
                    acc = out2[k, j, col]
                    for p in range(c):
                        acc += rt[k, p] * gt[j, p] * xvt[x, p]
                    out2[k, j, col] = acc
                for p in range(c):
                    xvt[x, p] *= g2t[j, p]
                for k in range(n_out):
                    b = w2[k, j]
                    v = V2[k, j, col]
                    row = k * m + col
                    for p in range(c):
                        xvt[x, p] += b * gt[j, p] * ut[row, p] + rt[k, p] * gt[j, p] * v
            else:
                row = col
                b = w2[0, j]
                for p in range(c):
                    xvt[x, p] = b * gt[j, p] * ut[row, p]
                for k in range(1, n_out):
                    b = w2[k, j]
                    row = k * m + col
                    for p in range(c):
                        xvt[x, p] += b * gt[j, p] * ut[row, p]
