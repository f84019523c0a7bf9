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
    """H V for V (D, m), never forming H: Gauss-Newton J^T J V / P plus the residual term."""
    n_samples, n_in = f.X.shape
    n_hidden = f.A.shape[1]
    d1 = n_hidden * n_in
    jv, xv = jvp(f, V)
    out = vjp(f, jv)
    if f.residual is not None:
        r = f.residual
        m = V.shape[1]
        V2 = V[d1:].reshape(-1, n_hidden, m)
        # R11 V1 + R12 V2 (w1 rows); R21 V1 (w2 rows); THEORY.md section a
        rb = r @ f.w2                                              # (P, Nh): r_mu . b_j
        w1_coef = xv * (rb * f.G2)[:, :, None]                     # (P, Nh, m)
        w1_coef += np.einsum("pk,kjm->pjm", r, V2, optimize=True) * f.G1[:, :, None]
        out[:d1] += np.einsum("pjm,pi->jim", w1_coef, f.X, optimize=True).reshape(d1, m)
        out[d1:] += np.einsum("pk,pjm->kjm", r, xv * f.G1[:, :, None],
                              optimize=True).reshape(-1, m)
    out /= n_samples
    return out
