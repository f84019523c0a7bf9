"""Kernels of the population Hessian H_inf = E_x[J^T J], x ~ N(0, I) (THEORY.md f).

Every entry of H_inf is an expectation over one pair of pre-activations
(h_j, h_k) = (w_j . x, w_k . x). A pair is described by the norms s_j = |w_j|,
s_k = |w_k| and the angle between w_j and w_k (its cosine and sine); then
h_j = s_j z1 and h_k = s_k (cos z1 + sin z2) with z ~ N(0, I_2).

Per pair the kernels produce nine numbers (the "pair coefficients"):

    a   = E[g'(h_j) g'(h_k)]          G   = E[g(h_j) g(h_k)]
    cjk = E[g''(h_j) g(h_k)]          ckj = E[g''(h_k) g(h_j)]
    m11 = E[g'''(h_j) g'(h_k)]        m12 = E[g''(h_j) g''(h_k)]       m22 = E[g'(h_j) g'''(h_k)]
    ajk = E[g''''(h_j) g(h_k)]        akj = E[g''''(h_k) g(h_j)]

so that the w1w1 tile is Q_jk (a I + U M U^T), U = [w_j, w_k], M = [[m11, m12], [m12, m22]]
(second-order Stein), and the w1w2 column vector is w_j cjk + w_k a (first-order Stein).
g''' never appears: by Stein's lemma for the pair, E[h_j g''_j g'_k] = C_jj m11 + C_jk m12,
so m11 = (E[h_j g''_j g'_k] - C_jk m12) / C_jj needs only g, g', g''. The last two
serve the residual term off the optimum (THEORY.md g): E[g''(h_j) g(h_k) x x^T] =
cjk I + U [[ajk, m11], [m11, m12]] U^T; they come the same way, from
E[h_j^2 g''_j g_k] = C_jj (cjk + E[h_j g'''_j g_k]) + C_jk E[h_j g''_j g'_k] and
E[h_j g'''_j g_k] = C_jj ajk + C_jk m11.

Nearly parallel pairs: the sine comes from the angle computed from the rows themselves
(Kahan: theta = 2 atan2(|u - v|, |u + v|) of the unit vectors) when the Gram cosine is
close to +-1, where sqrt(1 - cos^2) would lose half the digits.

The relu tile has M ~ 1/sin (U is nearly singular), so pairs with sin below a threshold
carry their tile in the orthonormal basis e1 = w_j/|w_j|, e2 = (w_k/|w_k| - cos e1)/sin,
where it is (1/2pi) [[cos sin, sin^2], [sin^2, -cos sin]] (bounded, smooth at sin = 0);
these pairs are listed in CSR form (indptr, indices, cos, sin) per row j.
"""
from __future__ import annotations

import math


from ._jit import inline_kernel, kernel

_TWO_OVER_PI = 2.0 / math.pi
_INV_TWO_PI = 1.0 / (2.0 * math.pi)


# ---------------------------------------------------------------------- geometry
@inline_kernel
def _kahan_angle(W1, j, k, norm_j, norm_k):
    """Angle between rows j and k of W1, accurate also when they are nearly parallel."""
    diff = 0.0
    summ = 0.0
    for i in range(W1.shape[1]):
        u = W1[j, i] / norm_j
        v = W1[k, i] / norm_k
        diff += (u - v) * (u - v)
        summ += (u + v) * (u + v)
    return 2.0 * math.atan2(math.sqrt(diff), math.sqrt(summ))


@kernel
def pair_geometry(W1, gram, norms, pj, pk, refine_cos, cos_out, sin_out):
    """Cosine and sine of the angle between rows pj[p] and pk[p] of W1 (Nh x Ni).

    gram = W1 W1^T, norms = sqrt(diag(gram)). Where |cos| > refine_cos the angle is
    recomputed from the rows (O(Ni) per pair). A pair with a zero row, or j = k,
    gets cos = 1, sin = 0 (any unit pair describes it: h = 0 or h_k = h_j).
    """
    for p in range(pj.shape[0]):
        j = pj[p]
        k = pk[p]
        nj = norms[j]
        nk = norms[k]
        if j == k or nj == 0.0 or nk == 0.0:
            c = 1.0
            s = 0.0
        else:
            c = gram[j, k] / (nj * nk)
            if abs(c) > refine_cos:
                theta = _kahan_angle(W1, j, k, nj, nk)
                c = math.cos(theta)
                s = math.sin(theta)
            else:
                s = math.sqrt((1.0 - c) * (1.0 + c))
        cos_out[p] = c
        sin_out[p] = s


# ---------------------------------------------------------------------- closed forms
@kernel
def erf_pairs(pj, pk, norms, cosines, sines, out):
    """Pair coefficients of g(z) = erf(z / sqrt 2) in closed form (THEORY.md f).

    out: (n_pairs, 9) columns a, G, cjk, ckj, m11, m12, m22, ajk, akj. With C the 2x2
    covariance of the pair and Delta = det(I + C) = 1 + C_jj + C_kk + C_jj C_kk sin^2 (no
    cancellation): a = (2/pi)/sqrt(Delta), M = -a (I + C)^{-1},
    G = (2/pi) asin(C_jk / sqrt((1+C_jj)(1+C_kk))), cjk = -a C_jk / (1 + C_jj), and
    ajk = 2 d cjk / d C_jj = a C_jk (2 / (1 + C_jj)^2 + (1 + C_kk) / ((1 + C_jj) Delta)).
    """
    for p in range(pj.shape[0]):
        j = pj[p]
        k = pk[p]
        cjj = norms[j] * norms[j]
        ckk = norms[k] * norms[k]
        s = sines[p]
        cjk = norms[j] * norms[k] * cosines[p]
        delta = 1.0 + cjj + ckk + cjj * ckk * s * s
        a = _TWO_OVER_PI / math.sqrt(delta)
        r = cjk / math.sqrt((1.0 + cjj) * (1.0 + ckk))
        r = min(1.0, max(-1.0, r))  # |r| < 1 mathematically; rounding can touch 1
        out[p, 0] = a
        out[p, 1] = _TWO_OVER_PI * math.asin(r)
        out[p, 2] = -a * cjk / (1.0 + cjj)
        out[p, 3] = -a * cjk / (1.0 + ckk)
        out[p, 4] = -a * (1.0 + ckk) / delta
        out[p, 5] = a * cjk / delta
        out[p, 6] = -a * (1.0 + cjj) / delta
        bj = 1.0 + cjj
        bk = 1.0 + ckk
        out[p, 7] = a * cjk * (2.0 / (bj * bj) + bk / (bj * delta))
        out[p, 8] = a * cjk * (2.0 / (bk * bk) + bj / (bk * delta))


@inline_kernel
def relu_wedge(c, s):
    """(b11, b12, b22): E[1 1 z z^T] - E[1 1] I_2 for relu in the orthonormal pair basis.

    The active wedge has angle pi - theta; (1/pi) int e e^T over it, minus its mass.
    """
    return _INV_TWO_PI * c * s, _INV_TWO_PI * s * s, -_INV_TWO_PI * c * s


@kernel
def relu_pairs(pj, pk, norms, cosines, sines, min_sine, out):
    """Pair coefficients of relu in closed form (polar coordinates, THEORY.md f).

    theta = atan2(sin, cos); a = (pi - theta)/(2 pi);
    G = s_j s_k (sin + (pi - theta) cos) / (2 pi); cjk = s_k sin / (2 pi s_j)
    (E[delta(h_j) relu(h_k)]); M = (1/(2 pi sin)) [[-cos/s_j^2, 1/(s_j s_k)],
    [1/(s_j s_k), -cos/s_k^2]]; ajk = s_k (cos^2 - sin^2) / (2 pi s_j^3 sin), from
    E[delta(h_j) relu(h_k) x x^T] = p_{h_j}(0) E[relu(h_k) x x^T | h_j = 0]. M, ajk and
    akj are left 0 where sin < min_sine: those pairs carry their tile in the orthonormal
    basis instead (see the module docstring). A zero row (h = 0, relu'(0) = 0)
    contributes nothing.
    """
    for p in range(pj.shape[0]):
        j = pj[p]
        k = pk[p]
        nj = norms[j]
        nk = norms[k]
        for q in range(9):
            out[p, q] = 0.0
        if nj == 0.0 or nk == 0.0:
            continue
        c = cosines[p]
        s = sines[p]
        theta = math.atan2(s, c)
        out[p, 0] = (math.pi - theta) * _INV_TWO_PI
        out[p, 1] = nj * nk * (s + (math.pi - theta) * c) * _INV_TWO_PI
        out[p, 2] = nk * s * _INV_TWO_PI / nj
        out[p, 3] = nj * s * _INV_TWO_PI / nk
        if s >= min_sine:
            f = _INV_TWO_PI / s
            out[p, 4] = -f * c / (nj * nj)
            out[p, 5] = f / (nj * nk)
            out[p, 6] = -f * c / (nk * nk)
            out[p, 7] = f * nk * (c * c - s * s) / (nj * nj * nj)
            out[p, 8] = f * nj * (c * c - s * s) / (nk * nk * nk)


# ---------------------------------------------------------------------- quadrature
@kernel
def quadrature_points(pk, norms, cosines, sines, z1, z2, out):
    """h_k = s_k (cos z1 + sin z2) at every node of every pair: out (n_pairs, n_nodes)."""
    n_nodes = z1.shape[0]
    for p in range(pk.shape[0]):
        k = pk[p]
        sc = norms[k] * cosines[p]
        ss = norms[k] * sines[p]
        for t in range(n_nodes):
            out[p, t] = sc * z1[t] + ss * z2[t]


@kernel
def quadrature_pairs(pj, pk, norms, cosines, node_1d, weights, unit_g0, unit_g1, unit_g2,
                     unit_h, hk, g0, g1, g2, out):
    """Pair coefficients by a 2-D quadrature rule (Gauss-Hermite tensor nodes).

    node_1d[t] indexes the z1 coordinate of node t in the 1-D rule; unit_gX[j, a] is
    g^(X)(s_j z1_a) and unit_h[j, a] = s_j z1_a (per hidden unit); hk, g0, g1, g2
    (n_pairs, n_nodes) hold h_k and g^(X)(h_k) at the nodes; weights (n_nodes,) sum
    to 1. out (n_pairs, 9) as in erf_pairs; m11, m22, ajk, akj via Stein (module docstring).
    """
    n_nodes = weights.shape[0]
    for p in range(pj.shape[0]):
        j = pj[p]
        k = pk[p]
        s_a = 0.0
        s_g = 0.0
        s_cjk = 0.0
        s_ckj = 0.0
        s_ej = 0.0
        s_m12 = 0.0
        s_ek = 0.0
        s_qj = 0.0
        s_qk = 0.0
        for t in range(n_nodes):
            a = node_1d[t]
            w = weights[t]
            fj0 = unit_g0[j, a]
            fj1 = unit_g1[j, a]
            fj2 = unit_g2[j, a]
            gk0 = g0[p, t]
            gk1 = g1[p, t]
            gk2 = g2[p, t]
            s_a += w * (fj1 * gk1)
            s_g += w * (fj0 * gk0)
            s_cjk += w * (fj2 * gk0)
            s_ckj += w * (gk2 * fj0)
            s_m12 += w * (fj2 * gk2)
            s_ej += w * (unit_h[j, a] * fj2 * gk1)
            s_ek += w * (hk[p, t] * gk2 * fj1)
            s_qj += w * (unit_h[j, a] * unit_h[j, a] * fj2 * gk0)
            s_qk += w * (hk[p, t] * hk[p, t] * gk2 * fj0)
        cjj = norms[j] * norms[j]
        ckk = norms[k] * norms[k]
        cjk = norms[j] * norms[k] * cosines[p]
        out[p, 0] = s_a
        out[p, 1] = s_g
        out[p, 2] = s_cjk
        out[p, 3] = s_ckj
        # m11 multiplies w_j w_j^T: any value serves a zero row
        out[p, 4] = (s_ej - cjk * s_m12) / cjj if cjj > 0.0 else 0.0
        out[p, 5] = s_m12
        out[p, 6] = (s_ek - cjk * s_m12) / ckk if ckk > 0.0 else 0.0
        # ajk multiplies w_j w_j^T, as m11 does
        out[p, 7] = (((s_qj - cjj * s_cjk - cjk * s_ej) / cjj - cjk * out[p, 4]) / cjj
                     if cjj > 0.0 else 0.0)
        out[p, 8] = (((s_qk - ckk * s_ckj - cjk * s_ek) / ckk - cjk * out[p, 6]) / ckk
                     if ckk > 0.0 else 0.0)


# ---------------------------------------------------------------------- dense assembly
@kernel
def _write_tile(out, n_in, j, k, W1, diag, b11, b12, b22):
    """Tiles (j, k) and (k, j) of w1w1: diag I + [w_j w_k] [[b11 b12] [b12 b22]] [w_j w_k]^T.

    The tile is a symmetric matrix, and its entry formula is symmetric under i <-> l
    in floating point too (products commute, x + y = y + x), so the assembled H is
    exactly symmetric.
    """
    for i in range(n_in):
        x1 = W1[j, i]
        x2 = W1[k, i]
        r = j * n_in + i
        rk = k * n_in + i
        for l in range(n_in):
            y1 = W1[j, l]
            y2 = W1[k, l]
            v = b11 * (x1 * y1) + b12 * (x1 * y2 + x2 * y1) + b22 * (x2 * y2)
            if i == l:
                v += diag
            out[r, k * n_in + l] = v
            out[rk, j * n_in + l] = v


@kernel
def dense_w1w1(W1, norms, Q, qa, qm11, qm12, qm22, par_indptr, par_indices, par_cos, par_sin,
               out):
    """The w1w1 block of H_inf into out[:Nh Ni, :Nh Ni] (out may be all of H).

    Tiles (j, k), j <= k, written to both (j, k) and (k, j) (the tile is a symmetric
    matrix); rows p and Nh-1-p go to one thread so the triangle is balanced. Pairs
    listed in the CSR arrays (relu, nearly parallel) use the orthonormal basis.
    """
    n_hidden = W1.shape[0]
    for p in range((n_hidden + 1) // 2):
        _tile_row(p, W1, norms, Q, qa, qm11, qm12, qm22, par_indptr, par_indices, par_cos,
                  par_sin, out)
        if n_hidden - 1 - p != p:
            _tile_row(n_hidden - 1 - p, W1, norms, Q, qa, qm11, qm12, qm22, par_indptr,
                      par_indices, par_cos, par_sin, out)


@kernel
def _tile_row(j, W1, norms, Q, qa, qm11, qm12, qm22, par_indptr, par_indices, par_cos, par_sin,
              out):
    """Tiles (j, k) for k >= j (and their mirrors (k, j))."""
    n_hidden, n_in = W1.shape
    for k in range(j, n_hidden):
        _write_tile(out, n_in, j, k, W1, qa[j, k], qm11[j, k], qm12[j, k], qm22[j, k])
    # nearly parallel pairs (k > j) in the orthonormal basis, added on top
    for q in range(par_indptr[j], par_indptr[j + 1]):
        kk = par_indices[q]
        if kk > j:
            _add_parallel_tile(out, n_in, j, kk, W1, norms, Q[j, kk], par_cos[q], par_sin[q])


@kernel
def _add_parallel_tile(out, n_in, j, k, W1, norms, q, c, s):
    b11, b12, b22 = relu_wedge(c, s)
    for i in range(n_in):
        e1i = W1[j, i] / norms[j]
        e2i = (W1[k, i] / norms[k] - c * e1i) / s
        r = j * n_in + i
        rk = k * n_in + i
        for l in range(n_in):
            e1l = W1[j, l] / norms[j]
            e2l = (W1[k, l] / norms[k] - c * e1l) / s
            v = q * (b11 * (e1i * e1l) + b12 * (e1i * e2l + e2i * e1l) + b22 * (e2i * e2l))
            out[r, k * n_in + l] += v
            out[rk, j * n_in + l] += v


@kernel
def dense_w1w2_w2w2(W1, W2, a, cmat, G, out):
    """The w1w2, w2w1 and w2w2 blocks of H_inf (out is all of H, D x D).

    H[(j,i), (m,k)] = W2[m,j] (cjk w_j[i] + a_jk w_k[i]); H22 = I_No (x) G.
    """
    n_hidden, n_in = W1.shape
    n_out = W2.shape[0]
    d1 = n_hidden * n_in
    for j in range(n_hidden):
        for i in range(n_in):
            r = j * n_in + i
            for m in range(n_out):
                col = d1 + m * n_hidden
                for k in range(n_hidden):
                    v = W2[m, j] * (cmat[j, k] * W1[j, i] + a[j, k] * W1[k, i])
                    out[r, col + k] = v
                    out[col + k, r] = v
        for m in range(n_out):
            row = d1 + m * n_hidden + j
            for mp in range(n_out):
                col = d1 + mp * n_hidden
                for k in range(n_hidden):
                    out[row, col + k] = G[j, k] if m == mp else 0.0


# ---------------------------------------------------------------------- product
@kernel
def gather_diagonal(K, d):
    """d[k, c] = K[k, c, k]: d_k = w_k . v_k for every column c. K: (Nh, m, Nh)."""
    n_hidden, n_cols, _ = K.shape
    for k in range(n_hidden):
        for c in range(n_cols):
            d[k, c] = K[k, c, k]


@kernel
def product_hadamard(K, T, d, a, cmat, qm11, qm12, qm22, r):
    """The Nh x Nh elementwise part of the structured product, in place.

    K[j, c, k] = w_j . v_k, T[j, c, k] = sum_m W2[m, j] V2[m, k], d[k, c] = w_k . v_k.
    On return T holds B = Q o (m12 o K + m22 d^T) + a o T (multiplies W1 from the left),
    K holds a o K (gives the a-part of the w2 output), and
    r[j, c] = sum_k Q o (m11 o K + m12 d^T) + cmat o T (multiplies w_j).
    Each thread owns the rows j of its outputs.
    """
    n_hidden, n_cols, _ = K.shape
    for j in range(n_hidden):
        for c in range(n_cols):
            acc = 0.0
            for k in range(n_hidden):
                kv = K[j, c, k]
                dk = d[k, c]
                t = T[j, c, k]
                acc += qm11[j, k] * kv + qm12[j, k] * dk + cmat[j, k] * t
                T[j, c, k] = qm12[j, k] * kv + qm22[j, k] * dk + a[j, k] * t
                K[j, c, k] = a[j, k] * kv
            r[j, c] = acc


@kernel
def add_w1_terms(out1, BW, r, W1):
    """out1[j, i, c] += BW[j, c, i] + r[j, c] W1[j, i]. out1: (Nh, Ni, m), BW: (Nh, m, Ni)."""
    n_hidden, n_in, n_cols = out1.shape
    for j in range(n_hidden):
        for i in range(n_in):
            w = W1[j, i]
            for c in range(n_cols):
                out1[j, i, c] += BW[j, c, i] + r[j, c] * w


@kernel
def parallel_pairs_product(W1, norms, Q, par_indptr, par_indices, par_cos, par_sin, V1, out1):
    """out1 += the orthonormal-basis tiles of the listed pairs applied to V1 (Nh, Ni, m)."""
    n_hidden, n_in, n_cols = V1.shape
    for j in range(n_hidden):
        for q in range(par_indptr[j], par_indptr[j + 1]):
            k = par_indices[q]
            c = par_cos[q]
            s = par_sin[q]
            b11, b12, b22 = relu_wedge(c, s)
            qjk = Q[j, k]
            for col in range(n_cols):
                alpha = 0.0
                beta = 0.0
                for i in range(n_in):
                    e1 = W1[j, i] / norms[j]
                    e2 = (W1[k, i] / norms[k] - c * e1) / s
                    alpha += e1 * V1[k, i, col]
                    beta += e2 * V1[k, i, col]
                f1 = qjk * (b11 * alpha + b12 * beta)
                f2 = qjk * (b12 * alpha + b22 * beta)
                for i in range(n_in):
                    e1 = W1[j, i] / norms[j]
                    e2 = (W1[k, i] / norms[k] - c * e1) / s
                    out1[j, i, col] += f1 * e1 + f2 * e2


@kernel
def scatter_pairs(pj, pk, values, out):
    """Nh x Nh matrices from per-pair values: out[q] (j,k) = values[:, q] ...

    values (n_pairs, 9) as in erf_pairs; out (6, Nh, Nh) receives a, G, cmat, m11, m12,
    alpha with the (k, j) entries from the swapped roles (cmat_kj = ckj, m11_kj = m22_jk,
    alpha_kj = akj).
    """
    for p in range(pj.shape[0]):
        j = pj[p]
        k = pk[p]
        out[0, j, k] = values[p, 0]
        out[0, k, j] = values[p, 0]
        out[1, j, k] = values[p, 1]
        out[1, k, j] = values[p, 1]
        out[2, j, k] = values[p, 2]
        out[2, k, j] = values[p, 3]
        out[3, j, k] = values[p, 4]
        out[3, k, j] = values[p, 6]
        out[4, j, k] = values[p, 5]
        out[4, k, j] = values[p, 5]
        out[5, j, k] = values[p, 7]
        out[5, k, j] = values[p, 8]

