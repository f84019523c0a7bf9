"""Kernels of online SGD in the high-dimensional limit (THEORY.md g): the order-parameter
ODEs' right-hand sides, their Gaussian expectations, and the simulation loop.

Units: the K student units and the M teacher units stacked, n = K + M; their
pre-activations h = (W1 x, W1* x) are centred Gaussians with covariance
Omega = [[Q, R], [R^T, T]] (n x n). beta = [W2, -W2*] (No x n) gives the residual
r(x) = beta g(h) (minus the teacher's output noise), S = W2^T beta (K x n), and the
back-propagated error of student unit j is d_j = g'(h_j) (W2[:, j] . r) =
sum_u S_ju g'(h_j) g(h_u).

Expectations (the literature's names, for g(z) = erf(z / sqrt 2) and linear g):

    a_uv  = E[g'(h_u) g'(h_v)]   (J2)        G_uv = E[g(h_u) g(h_v)]   (I2)
    c_uv  = E[g''(h_u) g(h_v)]               I3(j, w, u) = E[g'(h_j) h_w g(h_u)]
                                                         = Omega_wj c_ju + Omega_wu a_ju
    I4(j, k, u, v) = E[g'(h_j) g'(h_k) g(h_u) g(h_v)]

(I3 by first-order Stein; erf's I4 is Saad and Solla's closed form.) The ODEs in
alpha = steps / Ni, with D_jw = E[d_j h_w] = sum_u S_ju I3(j, w, u):

    dQ_jk / dalpha = -lr (D_jk + D_kj) + lr^2 (sum_uv S_ju S_kv I4(j,k,u,v)
                      + sigma^2 (W2^T W2)_jk a_jk) - 2 wd Q_jk
    dR_jm / dalpha = -lr D_j,K+m - wd R_jm
    dW2 / dalpha   = -lr2 beta G[:, :K] - wd W2          (when the second layer trains)

Other activations: the same expectations by tensor Gauss-Hermite rules in the Cholesky
coordinates of each 2 x 2 (:func:`pairs_quadrature`) and 4 x 4 covariance
(:func:`i4_term_quadrature`); a zero direction (j = k, a zero row) drops its axis. The
activation comes through the module global ``_act`` as in ``dynamics.py`` (a user's
activation rebinds it).
"""
from __future__ import annotations

import math
import types

import numpy as np

from ._jit import inline_kernel, kernel
from .activation import LINEAR, activate

_TWO_OVER_PI = 2.0 / math.pi
_FOUR_OVER_PI2 = 4.0 / (math.pi * math.pi)


# ---------------------------------------------------------------------- closed forms
@inline_kernel
def _clip_unit(x):
    return min(1.0, max(-1.0, x))


@kernel
def pair_expectations(code, omega, a, c, G):
    """a, c, G (n x n) of the covariance ``omega`` (n x n), erf or linear (module doc).

    erf: a = (2/pi) / sqrt((1 + O_uu)(1 + O_vv) - O_uv^2), c_uv = -a_uv O_uv / (1 + O_uu),
    G = (2/pi) asin(O_uv / sqrt((1 + O_uu)(1 + O_vv))). Linear: a = 1, c = 0, G = omega.
    """
    n = omega.shape[0]
    for u in range(n):
        for v in range(n):
            o = omega[u, v]
            if code == LINEAR:
                a[u, v] = 1.0
                c[u, v] = 0.0
                G[u, v] = o
            else:
                pu = 1.0 + omega[u, u]
                pv = 1.0 + omega[v, v]
                av = _TWO_OVER_PI / math.sqrt(max(pu * pv - o * o, 1.0))
                a[u, v] = av
                c[u, v] = -av * o / pu
                G[u, v] = _TWO_OVER_PI * math.asin(_clip_unit(o / math.sqrt(pu * pv)))


@inline_kernel
def i4_erf(c00, c11, c22, c33, c01, c02, c03, c12, c13, c23):
    """E[g'(h0) g'(h1) g(h2) g(h3)], g = erf(z / sqrt 2), covariance entries c_ab
    (Saad and Solla 1995; nn2pp's I4)."""
    lam4 = (1.0 + c00) * (1.0 + c11) - c01 * c01
    lam0 = (lam4 * c23 - c12 * c13 * (1.0 + c00) - c02 * c03 * (1.0 + c11)
            + c01 * c02 * c13 + c01 * c03 * c12)
    lam1 = (lam4 * (1.0 + c22) - c12 * c12 * (1.0 + c00) - c02 * c02 * (1.0 + c11)
            + 2.0 * c01 * c02 * c12)
    lam2 = (lam4 * (1.0 + c33) - c13 * c13 * (1.0 + c00) - c03 * c03 * (1.0 + c11)
            + 2.0 * c01 * c03 * c13)
    return _FOUR_OVER_PI2 / math.sqrt(lam4) * math.asin(_clip_unit(lam0 / math.sqrt(lam1 * lam2)))


@kernel
def i4_closed(code, omega, j, k, u, v):
    """I4(j, k, u, v) of the units' covariance ``omega``: erf closed form, linear O_uv."""
    if code == LINEAR:
        return omega[u, v]
    return i4_erf(omega[j, j], omega[k, k], omega[u, u], omega[v, v], omega[j, k],
                  omega[j, u], omega[j, v], omega[k, u], omega[k, v], omega[u, v])


@kernel
def i4_term_closed(code, omega, n_student, S, out):
    """out[j, k] = sum_uv S_ju S_kv I4(j, k, u, v) (K x K), erf or linear, closed form."""
    n = omega.shape[0]
    for j in range(n_student):
        for k in range(j, n_student):
            acc = 0.0
            for u in range(n):
                for v in range(u, n):
                    w = S[j, u] * S[k, v]
                    if v != u:
                        w += S[j, v] * S[k, u]
                    if w != 0.0:
                        acc += w * i4_closed(code, omega, j, k, u, v)
            out[j, k] = acc
            out[k, j] = acc


# ---------------------------------------------------------------------- right-hand side
@kernel
def drift(omega, n_student, S, a, c, out):
    """D_jw = E[d_j h_w] = sum_u S_ju (Omega_wj c_ju + Omega_wu a_ju): out (K x n)."""
    n = omega.shape[0]
    for j in range(n_student):
        sc = 0.0
        for u in range(n):
            sc += S[j, u] * c[j, u]
        for w in range(n):
            acc = sc * omega[w, j]
            for u in range(n):
                acc += S[j, u] * a[j, u] * omega[w, u]
            out[j, w] = acc


@kernel
def assemble_rhs(omega, n_student, w2, D, T4, a, gw2, lr, lr2, noise_var, wd, train_w2, out):
    """The ODEs' right-hand side, flat [Q (K x K), R (K x M), W2 (No x K)], into out.

    D (K x n): the drift E[d_j h_w]; T4 (K x K): sum_uv S_ju S_kv I4; a: E[g'_j g'_k]
    (at least K x K); gw2 (No x K): beta G[:, :K], the population gradient of W2.
    """
    n = omega.shape[0]
    K = n_student
    M = n - K
    n_out = w2.shape[0]
    pos = 0
    for j in range(K):
        for k in range(K):
            q2 = 0.0
            for m in range(n_out):
                q2 += w2[m, j] * w2[m, k]
            out[pos] = (-lr * (D[j, k] + D[k, j]) + lr * lr * (T4[j, k] + noise_var * q2 * a[j, k])
                        - 2.0 * wd * omega[j, k])
            pos += 1
    for j in range(K):
        for m in range(M):
            out[pos] = -lr * D[j, K + m] - wd * omega[j, K + m]
            pos += 1
    for m in range(n_out):
        for k in range(K):
            if train_w2:
                out[pos] = -lr2 * gw2[m, k] - wd * w2[m, k]
            else:
                out[pos] = 0.0
            pos += 1


@kernel
def rhs_closed(code, omega, n_student, w2, beta, lr, lr2, noise_var, wd, train_w2, out):
    """The whole right-hand side for erf or linear (closed forms), into out (flat)."""
    n = omega.shape[0]
    K = n_student
    S = np.dot(np.ascontiguousarray(w2.T), beta)
    a = np.empty((n, n))
    c = np.empty((n, n))
    G = np.empty((n, n))
    pair_expectations(code, omega, a, c, G)
    D = np.empty((K, n))
    drift(omega, K, S, a, c, D)
    T4 = np.zeros((K, K))
    if lr != 0.0:
        i4_term_closed(code, omega, K, S, T4)
    gw2 = np.dot(beta, np.ascontiguousarray(G[:, :K]))
    assemble_rhs(omega, K, w2, D, T4, a, gw2, lr, lr2, noise_var, wd, train_w2, out)


# ---------------------------------------------------------------------- quadrature
@inline_kernel
def _cholesky4(C, L, active, rtol):
    """Lower Cholesky factor of the 4 x 4 PSD matrix C; a direction whose remaining
    variance is <= rtol * max diag is dropped (its column of L is zero, active = 0)."""
    top = 0.0
    for i in range(4):
        top = max(top, C[i, i])
    for i in range(4):
        for m in range(4):
            L[i, m] = 0.0
    for i in range(4):
        d = C[i, i]
        for m in range(i):
            d -= L[i, m] * L[i, m]
        if d <= rtol * top or d <= 0.0:
            active[i] = 0
            continue
        active[i] = 1
        L[i, i] = math.sqrt(d)
        for r in range(i + 1, 4):
            s = C[r, i]
            for m in range(i):
                s -= L[r, m] * L[i, m]
            L[r, i] = s / L[i, i]


def _gauss4(code, coeffs, C, nodes, weights, rtol):
    """E[g'(h0) g'(h1) g(h2) g(h3)] for h ~ N(0, C) by the tensor rule (nodes, weights of
    N(0, 1)) in Cholesky coordinates h = L z: h0 depends on z0, h1 on z0, z1, ... so each
    activation is evaluated once per node of the axes it depends on."""
    L = np.empty((4, 4))
    active = np.zeros(4, dtype=np.int64)
    _cholesky4(C, L, active, rtol)
    n = nodes.shape[0]
    n0 = n if active[0] else 1
    n1 = n if active[1] else 1
    n2 = n if active[2] else 1
    n3 = n if active[3] else 1
    total = 0.0
    for i0 in range(n0):
        z0 = nodes[i0] if active[0] else 0.0
        w0 = weights[i0] if active[0] else 1.0
        _, f0, _ = _act(code, coeffs, L[0, 0] * z0)
        if f0 == 0.0:
            continue
        s1 = 0.0
        for i1 in range(n1):
            z1 = nodes[i1] if active[1] else 0.0
            w1 = weights[i1] if active[1] else 1.0
            _, f1, _ = _act(code, coeffs, L[1, 0] * z0 + L[1, 1] * z1)
            if f1 == 0.0:
                continue
            s2 = 0.0
            for i2 in range(n2):
                z2 = nodes[i2] if active[2] else 0.0
                w2 = weights[i2] if active[2] else 1.0
                f2, _, _ = _act(code, coeffs, L[2, 0] * z0 + L[2, 1] * z1 + L[2, 2] * z2)
                base3 = L[3, 0] * z0 + L[3, 1] * z1 + L[3, 2] * z2
                s3 = 0.0
                for i3 in range(n3):
                    z3 = nodes[i3] if active[3] else 0.0
                    w3 = weights[i3] if active[3] else 1.0
                    f3, _, _ = _act(code, coeffs, base3 + L[3, 3] * z3)
                    s3 += w3 * f3
                s2 += w2 * f2 * s3
            s1 += w1 * f1 * s2
        total += w0 * f0 * s1
    return total


def _i4_term_quadrature(code, coeffs, omega, n_student, S, nodes, weights, rtol, out_t4):
    """out_t4[j, k] = sum_uv S_ju S_kv I4(j, k, u, v) (K x K) by :func:`_gauss4`."""
    n = omega.shape[0]
    C = np.empty((4, 4))
    idx = np.empty(4, dtype=np.int64)
    for j in range(n_student):
        for k in range(j, n_student):
            acc = 0.0
            for u in range(n):
                for v in range(u, n):
                    w = S[j, u] * S[k, v]
                    if v != u:
                        w += S[j, v] * S[k, u]
                    if w == 0.0:
                        continue
                    idx[0] = j
                    idx[1] = k
                    idx[2] = u
                    idx[3] = v
                    for p in range(4):
                        for q in range(4):
                            C[p, q] = omega[idx[p], idx[q]]
                    acc += w * _gauss4(code, coeffs, C, nodes, weights, rtol)
            out_t4[j, k] = acc
            out_t4[k, j] = acc


def _pairs_quadrature(code, coeffs, omega, nodes, weights, rtol, a, c, G):
    """a, c, G (n x n) of the covariance ``omega`` by the 2-D rule in Cholesky coordinates
    (the same nodes as the I4 rule; a zero direction drops its axis)."""
    n = omega.shape[0]
    m = nodes.shape[0]
    for u in range(n):
        for v in range(u, n):
            cuu = omega[u, u]
            cvv = omega[v, v]
            top = max(cuu, cvv)
            l00 = math.sqrt(cuu) if cuu > rtol * top and cuu > 0.0 else 0.0
            l10 = omega[u, v] / l00 if l00 > 0.0 else 0.0
            rest = cvv - l10 * l10
            l11 = math.sqrt(rest) if rest > rtol * top and rest > 0.0 else 0.0
            n0 = m if l00 > 0.0 else 1
            n1 = m if l11 > 0.0 else 1
            s_a = 0.0
            s_g = 0.0
            s_cuv = 0.0
            s_cvu = 0.0
            for i0 in range(n0):
                z0 = nodes[i0] if l00 > 0.0 else 0.0
                w0 = weights[i0] if l00 > 0.0 else 1.0
                gu, du, d2u = _act(code, coeffs, l00 * z0)
                for i1 in range(n1):
                    z1 = nodes[i1] if l11 > 0.0 else 0.0
                    w = w0 * (weights[i1] if l11 > 0.0 else 1.0)
                    gv, dv, d2v = _act(code, coeffs, l10 * z0 + l11 * z1)
                    s_a += w * du * dv
                    s_g += w * gu * gv
                    s_cuv += w * d2u * gv
                    s_cvu += w * d2v * gu
            a[u, v] = s_a
            a[v, u] = s_a
            G[u, v] = s_g
            G[v, u] = s_g
            c[u, v] = s_cuv
            c[v, u] = s_cvu


# ---------------------------------------------------------------------- simulation
@inline_kernel
def _dot(a, b):
    """a . b of two 1-d arrays with four partial sums: a plain loop is one dependent
    add per cycle, and BLAS ddot may wake threads for every one of millions of calls."""
    n = a.shape[0]
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    m = n - n % 4
    for i in range(0, m, 4):
        s0 += a[i] * b[i]
        s1 += a[i + 1] * b[i + 1]
        s2 += a[i + 2] * b[i + 2]
        s3 += a[i + 3] * b[i + 3]
    for i in range(m, n):
        s0 += a[i] * b[i]
    return (s0 + s1) + (s2 + s3)


def _sgd_loop(code, coeffs, rng, w1, w2, w1t, w2t, lr_n, lr2_n, wd_n, noise, train_w2, steps,
              record_every, rec_q, rec_r, rec_w2, rec_steps):
    """``steps`` online SGD updates of (w1, w2) in place, one fresh x ~ N(0, I) each.

    lr_n, lr2_n, wd_n: the rates divided by Ni. Per step (O((K + M) Ni)):
    h = w1 x, h* = w1t x, r = w2 g(h) - w2t g(h*) - noise zeta,
    w1_j <- (1 - wd_n) w1_j - lr_n g'(h_j) (w2[:, j] . r) x,
    w2 <- (1 - wd_n) w2 - lr2_n r g(h)^T (if train_w2). Records Q = w1 w1^T,
    R = w1 w1t^T and w2 at steps 0, record_every, ... and at ``steps``.
    Returns the number of records.
    """
    K, n_in = w1.shape
    M = w1t.shape[0]
    n_out = w2.shape[0]
    x = np.empty(n_in)
    h = np.empty(K)
    gs = np.empty(K)
    ds = np.empty(K)
    ht = np.empty(M)
    r = np.empty(n_out)
    n_rec = 0
    for t in range(steps + 1):
        if t % record_every == 0 or t == steps:
            for j in range(K):
                for k in range(j, K):
                    s = _dot(w1[j], w1[k])
                    rec_q[n_rec, j, k] = s
                    rec_q[n_rec, k, j] = s
                for m in range(M):
                    rec_r[n_rec, j, m] = _dot(w1[j], w1t[m])
            rec_w2[n_rec, :, :] = w2
            rec_steps[n_rec] = t
            n_rec += 1
        if t == steps:
            break
        for i in range(n_in):
            x[i] = rng.standard_normal()
        for j in range(K):
            s = _dot(w1[j], x)
            h[j] = s
            g, d1, _ = _act(code, coeffs, s)
            gs[j] = g
            ds[j] = d1
        for m in range(M):
            g, _, _ = _act(code, coeffs, _dot(w1t[m], x))
            ht[m] = g
        for o in range(n_out):
            s = 0.0
            for j in range(K):
                s += w2[o, j] * gs[j]
            for m in range(M):
                s -= w2t[o, m] * ht[m]
            if noise != 0.0:
                s -= noise * rng.standard_normal()
            r[o] = s
        decay = 1.0 - wd_n
        for j in range(K):
            back = 0.0
            for o in range(n_out):
                back += w2[o, j] * r[o]
            f = lr_n * ds[j] * back
            if wd_n != 0.0:
                for i in range(n_in):
                    w1[j, i] = decay * w1[j, i] - f * x[i]
            else:
                for i in range(n_in):
                    w1[j, i] -= f * x[i]
        if train_w2:
            for o in range(n_out):
                for j in range(K):
                    w2[o, j] = decay * w2[o, j] - lr2_n * r[o] * gs[j]
    return n_rec


_act = activate
i4_term_quadrature = kernel(_i4_term_quadrature)
pairs_quadrature = kernel(_pairs_quadrature)
sgd_builtin = kernel(_sgd_loop)


def make_custom(g, dg, d2g):
    """(i4_term_quadrature, pairs_quadrature, sgd loop) for a user's jitted g, g', g''
    (uncached; compiled on first call). Same signatures as the built-in kernels;
    ``code`` and ``coeffs`` are ignored."""
    @kernel(cache=False)
    def act(code, coeffs, z):
        return g(z), dg(z), d2g(z)

    glb = {**_sgd_loop.__globals__, "_act": act}
    # the helper the I4 rule calls must see the user's activation too
    glb["_gauss4"] = kernel(types.FunctionType(_gauss4.py_func.__code__, glb, "gauss4"),
                            cache=False)
    return tuple(kernel(types.FunctionType(func.__code__, glb, name), cache=False)
                 for func, name in ((_i4_term_quadrature, "i4_custom"),
                                    (_pairs_quadrature, "pairs_custom"),
                                    (_sgd_loop, "sgd_custom")))


# the built-in helper, compiled against the module's _act
_gauss4 = kernel(_gauss4)
