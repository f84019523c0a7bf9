"""Kernels for dense Hessian / NTK assembly.

The w1w1 block entry ((j,i),(j',i')) is (W2^T W2)_{jj'} S[{j,j'},{i,i'}] / P with
S[{j,j'},{i,i'}] = sum_mu G'_{mu j} G'_{mu j'} x_{mu i} x_{mu i'}: it depends only on
the unordered pairs. The caller builds pair products of sample chunks with these
kernels, lets BLAS contract them (S = Upairs^T Xpairs, ~P Nh^2 Ni^2 / 4
multiply-adds, half a syrk of the explicit Jacobian), then scatters S into H.

Pair (a, b), a <= b, of n items has index a*n - a*(a-1)/2 + (b - a).
"""
from __future__ import annotations

import numba

from ._jit import inline_kernel, kernel


@inline_kernel
def pair_index(a, b, n):
    if a > b:
        a, b = b, a
    return a * n - (a * (a - 1)) // 2 + (b - a)


@kernel(parallel=True)
def pair_products(V, out):
    """out[mu, pair_index(a, b)] = V[mu, a] * V[mu, b] for all pairs a <= b.

    V: (c, n); out: (c, n(n+1)/2).
    """
    n_rows, n = V.shape
    for r in numba.prange(n_rows):
        col = 0
        for a in range(n):
            va = V[r, a]
            for b in range(a, n):
                out[r, col] = va * V[r, b]
                col += 1


@kernel(parallel=True)
def scatter_w1w1(S, rows, pair_first, pair_second, Q, scale, n_in, out):
    """Write the w1w1 tiles of the hidden pairs (pair_first[p], pair_second[p]).

    S: (., Ni(Ni+1)/2), row rows[p] the contraction for hidden pair p of the list;
    Q: (Nh, Nh) = W2^T W2; out: the (D1 x D1) top-left block of H (or the w1w1 array).
    The tile of (j, j') is symmetric in (i, i'), so tiles (j, j') and (j', j) are the
    same matrix: each pair writes both, row by row (contiguous), and pairs own
    disjoint tiles, so threads never share an output.
    """
    n_pairs = pair_first.shape[0]
    for p in numba.prange(n_pairs):
        j = pair_first[p]
        jp = pair_second[p]
        srow = rows[p]
        q = Q[j, jp] * scale
        for i in range(n_in):
            r = j * n_in + i
            rm = jp * n_in + i
            base = i * n_in - (i * (i - 1)) // 2
            # columns i' >= i read S row contiguously; i' < i come from earlier rows
            for ip in range(i):
                v = q * S[srow, ip * n_in - (ip * (ip - 1)) // 2 + (i - ip)]
                out[r, jp * n_in + ip] = v
                out[rm, j * n_in + ip] = v
            for ip in range(i, n_in):
                v = q * S[srow, base + (ip - i)]
                out[r, jp * n_in + ip] = v
                out[rm, j * n_in + ip] = v


@kernel(parallel=True)
def add_diagonal_blocks(Rpairs, scale, n_in, out):
    """out[(j,i),(j,i')] += scale * Rpairs[j, pair(i,i')] (the residual term of w1w1)."""
    n_hidden = Rpairs.shape[0]
    for j in numba.prange(n_hidden):
        for i in range(n_in):
            for ip in range(n_in):
                out[j * n_in + i, j * n_in + ip] += scale * Rpairs[j, pair_index(i, ip, n_in)]


@kernel(parallel=True)
def outer_rows(U, X, out):
    """out[mu, j*Ni + i] = U[mu, j] * X[mu, i]: rows of the w1 part of the Jacobian (up to W2)."""
    n_rows, n_hidden = U.shape
    n_in = X.shape[1]
    for r in numba.prange(n_rows):
        for j in range(n_hidden):
            u = U[r, j]
            for i in range(n_in):
                out[r, j * n_in + i] = u * X[r, i]


@kernel(parallel=True)
def ntk_combine(K, XX, AA, n_out, scale):
    """In place: K[(mu,k),(nu,k')] = scale * (K * XX[mu,nu] + delta_kk' AA[mu,nu]).

    On entry K = Ustack Ustack^T with Ustack[(mu,k)] = G'[mu] * W2[k].
    """
    n = K.shape[0]
    for r in numba.prange(n):
        mu = r // n_out
        k = r - mu * n_out
        for c in range(n):
            nu = c // n_out
            kp = c - nu * n_out
            v = K[r, c] * XX[mu, nu]
            if k == kp:
                v += AA[mu, nu]
            K[r, c] = scale * v
