"""Jacobian products without forming J: J V, J^T U, and H V = J^T J V / P (+ residual).

Also the explicit Jacobian J (P No x D), for the routes that need it ("svd").
Rows of J are (mu, k), mu-major; columns follow theta = [w1 row-major, w2 row-major]
(THEORY.md a). Every function here takes validated :class:`~fasthess._features.Features`.
"""
from __future__ import annotations

import numpy as np

from ._features import Features

__all__ = ["jvp", "vjp", "jacobian_from_features", "hessian_vector_products"]


def jvp(f: Features, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """J V for V of shape (D, m): returns (P, No, m), rows (mu, k) of the Jacobian,
    and the (P, Nh, m) input projections X V1^T that the residual term reuses."""
    n_in = f.X.shape[1]
    n_hidden = f.A.shape[1]
    n_out = f.w2.shape[0]
    d1 = n_hidden * n_in
    m = V.shape[1]
    V1 = V[:d1].reshape(n_hidden, n_in, m)
    V2 = V[d1:].reshape(n_out, n_hidden, m)
    # (X V1^T)_{mu j}, per column: shape (P, Nh, m)
    xv = np.einsum("pi,jim->pjm", f.X, V1, optimize=True)
    out = np.einsum("kj,pjm->pkm", f.w2, xv * f.G1[:, :, None], optimize=True)
    out += np.einsum("pj,kjm->pkm", f.A, V2, optimize=True)
    return out, xv


def vjp(f: Features, U: np.ndarray) -> np.ndarray:
    """J^T U for U of shape (P, No, m): returns (D, m)."""
    m = U.shape[2]
    back = np.einsum("pkm,kj->pjm", U, f.w2, optimize=True) * f.G1[:, :, None]
    g1 = np.einsum("pjm,pi->jim", back, f.X, optimize=True)
    g2 = np.einsum("pkm,pj->kjm", U, f.A, optimize=True)
    return np.concatenate([g1.reshape(-1, m), g2.reshape(-1, m)], axis=0)


def jacobian_from_features(f: Features) -> np.ndarray:
    """J (P No x D), rows (mu, k) mu-major, columns theta (THEORY.md a), vectorised.

    dy_k/dW1[j,i] = W2[k,j] g'(h_j) x_i ;  dy_k/dW2[k',j] = delta_kk' g(h_j).
    """
    X, A, G1, w2 = f.X, f.A, f.G1, f.w2
    n_samples, n_in = X.shape
    n_out, n_hidden = w2.shape
    d1 = n_hidden * n_in
    J = np.zeros((n_samples, n_out, d1 + n_out * n_hidden), dtype=X.dtype)
    # splitting an axis of a strided view is always a view, so this writes into J
    J1 = J[:, :, :d1].reshape(n_samples, n_out, n_hidden, n_in)
    np.multiply((G1[:, None, :] * w2[None, :, :])[:, :, :, None], X[:, None, None, :], out=J1)
    for k in range(n_out):
        J[:, k, d1 + k * n_hidden:d1 + (k + 1) * n_hidden] = A
    return J.reshape(n_samples * n_out, -1)


def hessian_vector_products(f: Features, V: np.ndarray) -> np.ndarray:
    """H V for V (D, m), never forming H: Gauss-Newton J^T J V / P plus the residual term.

    Sample-chunked: for each chunk, one GEMM gives the input projections
    xv = X V1^T (chunk x Nh m), a serial kernel turns them in place into the w1
    factor (and accumulates the small w2 rows), and a second GEMM adds X^T of it to
    the w1 rows. The chunk's (chunk x Nh m) block stays in cache between the two,
    so nothing of size P x Nh x m is streamed through memory. Both GEMMs go to
    SciPy's BLAS, with the threads their work is worth.
    """
    from scipy.linalg.blas import get_blas_funcs

    from . import _config
    from ._kernels.products import hvp_middle
    from ._resources import ComputeThreads, threads_for_work

    X = f.X
    dt = X.dtype
    n_samples, n_in = X.shape
    n_out, n_hidden = f.w2.shape
    d1 = n_hidden * n_in
    V = np.ascontiguousarray(V, dtype=dt)
    m = V.shape[1]
    off_optimum = f.residual is not None
    empty = np.empty((0, 0), dtype=dt)
    G2 = f.G2 if off_optimum else empty
    residual = f.residual if off_optimum else empty
    # V1 as (Ni, Nh m): xv[mu, (j, c)] = sum_i x_mu_i V1[j, i, c] is one GEMM with X
    V1 = np.ascontiguousarray(V[:d1].reshape(n_hidden, n_in, m).transpose(1, 0, 2))
    V1 = V1.reshape(n_in, n_hidden * m)
    V2 = V[d1:].reshape(n_out, n_hidden, m)
    out1 = np.zeros((n_in, n_hidden * m), dtype=dt)  # w1 rows, (i, (j, c)) order
    out2 = np.zeros((n_out, n_hidden, m), dtype=dt)
    u = np.empty((n_out, m), dtype=dt)
    width = n_hidden * m
    chunk = max(1, min(n_samples, _config.PRODUCT_CHUNK_BYTES // (width * dt.itemsize)))
    xv_buffer = np.empty(chunk * width, dtype=dt)
    gemm = get_blas_funcs("gemm", dtype=dt)
    with ComputeThreads() as scope:
        scope.blas(threads_for_work(chunk * width * n_in, scope.budget))
        for s0 in range(0, n_samples, chunk):
            c = min(chunk, n_samples - s0)
            xs = X[s0:s0 + c]
            xv = xv_buffer[:c * width].reshape(c, width)
            # xv = xs V1 (C order): xv^T = V1^T xs^T in BLAS's column-major view
            res = gemm(1.0, V1.T, xs.T, c=xv.T, overwrite_c=1)
            if not np.shares_memory(res, xv):  # BLAS wrapper copied: keep the result
                xv[...] = res.T
            hvp_middle(xv, s0, f.G1, f.A, G2, residual, f.w2, V2, u, out2)
            res = gemm(1.0, xv.T, xs.T, beta=1.0, c=out1.T, trans_b=1, overwrite_c=1)
            if not np.shares_memory(res, out1):
                out1[...] = res.T
    out = np.empty((d1 + n_out * n_hidden, m), dtype=dt)
    scale = 1.0 / n_samples
    np.multiply(out1.reshape(n_in, n_hidden, m).transpose(1, 0, 2),
                scale, out=out[:d1].reshape(n_hidden, n_in, m))
    np.multiply(out2.reshape(-1, m), scale, out=out[d1:])
    return out
