"""The residual term of the population Hessian off the optimum (THEORY.md g).

R = E[sum_k r_k d^2 y_k / dtheta^2], described by
:class:`fasthess.population_objective.ResidualCoefficients`: added to a dense matrix
(:func:`add_residual_dense`), folded into the GEMMs of the at-optimum structured
product (:func:`fused_matmat`), and its trace (:func:`residual_trace`).
"""
from __future__ import annotations

import numpy as np

from . import _config
from ._runtime import compute_budget, pieces_for, plan_budget, planned_threads
from .population_objective import ResidualCoefficients
from .gemm import gemm_into

__all__ = ["add_residual_dense", "fused_matmat", "residual_trace", "check_columns"]


def check_columns(V, n: int) -> np.ndarray:
    """``V`` as an array of shape (n,) or (n, m), real floating point and finite."""
    V = np.asarray(V)
    if V.dtype.kind != "f":
        raise TypeError(f"V must hold real floating-point numbers, got dtype {V.dtype}")
    if V.ndim not in (1, 2) or V.shape[0] != n:
        raise ValueError(f"V must have shape (D,) or (D, m) with D = n_params = {n}, "
                         f"got {V.shape}")
    if not np.all(np.isfinite(V)):
        raise ValueError("V contains non-finite values (NaN or inf)")
    return V


def _relu_basis(rows, j, u, cos, sin):
    """(e1, e2): the orthonormal basis of span(w_j, w_u) used for nearly parallel relu pairs."""
    e1 = rows[j] / np.linalg.norm(rows[j])
    e2 = (rows[u] / np.linalg.norm(rows[u]) - cos * e1) / sin
    return e1, e2


def add_residual_dense(res: ResidualCoefficients, n_in: int, n_out: int, out) -> None:
    """out += R (the residual term, D x D; computed in float64, exactly symmetric)."""
    W = res.rows
    n_hidden = res.n_hidden
    d1 = n_hidden * n_in
    par = {}
    for j, u, kappa, cos, sin in res.par:
        par.setdefault(j, []).append((u, kappa, cos, sin))
    for j in range(n_hidden):
        wj = W[j]
        p = res.sb[j] @ W
        T = (W.T * res.sg[j]) @ W + res.A[j] * np.outer(wj, wj) + np.outer(wj, p)
        T += np.outer(p, wj)
        for u, kappa, cos, sin in par.get(j, ()):
            e1, e2 = _relu_basis(W, j, u, cos, sin)
            T += kappa * (np.outer(e2, e2) - np.outer(e1, e1))
        T = 0.5 * (T + T.T)
        T[np.diag_indices(n_in)] += res.rho[j]
        out[j * n_in:(j + 1) * n_in, j * n_in:(j + 1) * n_in] += T
        # R12: column (m, j) of the w2 part, for every output m
        vec = (res.beta @ res.c[j])[:, None] * wj[None, :] + (res.beta * res.a[j]) @ W
        cols = d1 + np.arange(n_out) * n_hidden + j
        out[j * n_in:(j + 1) * n_in, cols] += vec.T
        out[cols, j * n_in:(j + 1) * n_in] += vec


def fused_matmat(net, coefs, res: ResidualCoefficients, V) -> np.ndarray:
    """H_inf @ V off the optimum: the product of :func:`hessian_matmat` with the residual
    term folded into its GEMMs (THEORY.md g).

    Per column, with K[j, u] = w_u . v_j over the stacked units u, d_j = K[j, j] and
    T[j, u] = sum_m V2[m, j] beta[m, u]:
    (R v)_{w1, j} = rho_j v_j + (A_j d_j + sum_u (sb o K + c o T)_ju) w_j
    + sum_u (sg o K + sb d + a o T)_ju w_u, (R v)_{w2, (m, k)} = sum_u beta[m, u]
    (c_ku d_k + a_ku K_ku). The student part of K is the transpose of the at-optimum
    product's W1 V1^T, rho joins Q o a, and the student part of sum_u (.) w_u joins its
    B W1: the residual adds two GEMMs of Nh x M x Ni (M: the teacher's hidden units) to
    the three of Nh x Nh x Ni, split into row pieces as those of
    :func:`fasthess.population_hessian.hessian_matmat`.
    """
    from .gemm import gemm_into

    from ._kernels.population import (
        add_w1_terms,
        gather_diagonal,
        parallel_pairs_product,
        product_hadamard,
    )

    dt = coefs.dtype
    V = check_columns(V, net.n_params)
    n = net.n_params
    nh, ni, no = net.n_hidden, net.n_in, net.n_out
    d1 = nh * ni
    V2d = V.reshape(n, -1)
    n_cols = V2d.shape[1]
    w1 = np.ascontiguousarray(net.w1, dtype=dt)
    w2 = np.ascontiguousarray(net.w2, dtype=dt)
    wt = np.ascontiguousarray(res.rows[nh:], dtype=dt)  # the teacher's rows (M x Ni)
    beta, a, c, sb, sg, A = (x.astype(dt, copy=False) for x in (
        res.beta, res.a, res.c, res.sb, res.sg, res.A))
    qa_rho = coefs.qa + np.diag(res.rho).astype(dt)
    n_all = beta.shape[1]
    out = np.empty((n, n_cols), dtype=dt)
    block = int(max(1, min(n_cols, _config.POP_PRODUCT_BLOCK_BYTES
                           // ((2 * nh * nh + 3 * nh * n_all) * dt.itemsize))))
    planned = planned_threads(nh * n_all * ni * block, plan_budget())
    threads = min(planned, compute_budget())

    def gemm(dst, x, y, transposed=False, beta=0.0):  # dst = beta dst + x @ y (or y.T)
        gemm_into(dst, x, y, b_transposed=transposed, beta=beta,
                  pieces=pieces_for(planned, dst.shape[0]), threads=threads)
        return dst

    for c0 in range(0, n_cols, block):
        c1 = min(n_cols, c0 + block)
        m = c1 - c0
        Vb = np.ascontiguousarray(V2d[:, c0:c1], dtype=dt)
        V1 = Vb[:d1].reshape(nh, ni, m)
        V2 = Vb[d1:].reshape(no, nh, m)
        # K[j, c, k] = w_j . v_k ; T[j, c, k] = sum_m W2[m, j] V2[m, k, c]
        K = gemm(np.empty((nh, m * nh), dtype=dt), w1,
                 np.ascontiguousarray(V1.transpose(1, 2, 0)).reshape(ni, m * nh))
        T = w2.T @ np.ascontiguousarray(V2.transpose(0, 2, 1)).reshape(no, m * nh)
        K3, T3 = K.reshape(nh, m, nh), T.reshape(nh, m, nh)
        # the residual's K over the stacked units, before the Hadamard pass overwrites K
        rows_jc = np.ascontiguousarray(V1.transpose(0, 2, 1)).reshape(nh * m, ni)
        Kt = gemm(np.empty((nh * m, wt.shape[0]), dtype=dt), rows_jc, wt, transposed=True)
        Kr = np.concatenate([K3.transpose(2, 1, 0), Kt.reshape(nh, m, -1)], axis=2)
        d = np.empty((nh, m), dtype=dt)
        gather_diagonal(K3, d)
        Tr = np.einsum("kjc,ku->jcu", V2, beta)
        E = sg[:, None, :] * Kr + sb[:, None, :] * d[:, :, None] + a[:, None, :] * Tr
        coef = A[:, None] * d + np.einsum("ju,jcu->jc", sb, Kr) + np.einsum("ju,jcu->jc", c, Tr)
        out2r = ((beta @ c.T)[:, :, None] * d[None]
                 + np.einsum("mu,kcu->mkc", beta, a[:, None, :] * Kr))
        del Tr
        r = np.empty((nh, m), dtype=dt)
        product_hadamard(K3, T3, d, coefs.a, coefs.c, coefs.qm11, coefs.qm12, coefs.qm22, r)
        r += coef
        out1 = out[:d1, c0:c1].reshape(nh, ni * m) if m == n_cols else np.empty(
            (nh, ni * m), dtype=dt)
        gemm(out1, qa_rho, Vb[:d1].reshape(nh, ni * m))
        T3 += E[:, :, :nh]
        BW = gemm(np.empty((nh * m, ni), dtype=dt), T.reshape(nh * m, nh), w1)
        gemm(BW, np.ascontiguousarray(E[:, :, nh:]).reshape(nh * m, -1), wt, beta=1.0)
        add_w1_terms(out1.reshape(nh, ni, m), BW.reshape(nh, m, ni), r, w1)
        o1 = out1.reshape(nh, ni, m)
        if coefs.par_indices.size:
            parallel_pairs_product(w1, coefs.norms, coefs.Q, coefs.par_indptr,
                                   coefs.par_indices, coefs.par_cos, coefs.par_sin, V1, o1)
        for j, u, kappa, cos, sin in res.par:
            e1, e2 = (e.astype(dt) for e in _relu_basis(res.rows, j, u, cos, sin))
            o1[j] += kappa * (np.outer(e2, e2 @ V1[j]) - np.outer(e1, e1 @ V1[j]))
        if m != n_cols:
            out[:d1, c0:c1] = out1.reshape(d1, m)
        # w2 part: sum_j W2[m', j] (c_jk d_j + a_jk K_kj) + (V2 G)[m', k], plus the residual's
        aKW = (K.reshape(nh * m, nh) @ w2.T).reshape(nh, m, no)
        dW2 = (w2[None, :, :] * d.T[:, None, :]).reshape(m * no, nh)
        cterm = (dW2 @ coefs.c).reshape(m, no, nh)
        gterm = coefs.G @ np.ascontiguousarray(V2.transpose(1, 0, 2)).reshape(nh, no * m)
        out[d1:, c0:c1] = (aKW.transpose(2, 0, 1) + cterm.transpose(1, 2, 0)
                           + gterm.reshape(nh, no, m).transpose(1, 0, 2) + out2r).reshape(
                               no * nh, m)
    return out.reshape(n) if V.ndim == 1 else out


def residual_trace(res: ResidualCoefficients, n_in: int) -> float:
    """tr R = sum_j [Ni rho_j + A_j |w_j|^2 + 2 sum_u sb_ju w_j.w_u + sum_u sg_ju |w_u|^2]
    (the relu pairs' e2 e2^T - e1 e1^T is traceless)."""
    W = res.rows
    nh = res.n_hidden
    gram = np.empty((nh, W.shape[0]))
    gemm_into(gram, np.ascontiguousarray(W[:nh], dtype=gram.dtype),
              np.ascontiguousarray(W, dtype=gram.dtype), b_transposed=True, beta=0.0)
    sq = np.einsum("ui,ui->u", W, W)
    return float(n_in * res.rho.sum() + np.sum(res.A * sq[:nh]) + 2 * np.sum(res.sb * gram)
                 + np.sum(res.sg * sq[None, :]))
