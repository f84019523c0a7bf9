"""Exact rank of the network Jacobian over the prime field F_p, p = 2^31 - 1.

All values are int64 residues in [0, p). A product of two residues is below
2^62 and a residue plus such a product below 2^63, so every operation fits in
int64 without overflow; reductions use ``%`` on non-negative operands only.
"""
from __future__ import annotations

import numpy as np

from ._jit import inline_kernel, kernel

PRIME = 2147483647  # 2^31 - 1 (a Mersenne prime)


@inline_kernel
def inverse_mod(a):
    """a^(p-2) mod p: the inverse of a nonzero residue (Fermat)."""
    result = 1
    base = a % PRIME
    e = PRIME - 2
    while e > 0:
        if e & 1:
            result = (result * base) % PRIME
        base = (base * base) % PRIME
        e >>= 1
    return result


@inline_kernel
def _horner_mod(coeffs, z):
    acc = 0
    for m in range(coeffs.shape[0] - 1, -1, -1):
        acc = (acc * z + coeffs[m]) % PRIME
    return acc


@kernel
def jacobian_rank_modp(w1, w2, X, coeffs, dcoeffs, max_rank):
    """Rank of J (rows (mu, k), columns theta = [w1 row-major, w2 row-major]) mod p.

    ``w1`` (Nh x Ni), ``w2`` (No x Nh), ``X`` (P x Ni): residues. ``coeffs`` and
    ``dcoeffs``: residues of the coefficients of g and g' (index = power).
    Rows are generated one at a time and reduced against an echelon basis, so
    memory is max_rank x D; elimination stops once the rank reaches ``max_rank``
    (a proven upper bound supplied by the caller).
    """
    n_hidden, n_in = w1.shape
    n_out = w2.shape[0]
    n_samples = X.shape[0]
    d1 = n_hidden * n_in
    n_params = d1 + n_out * n_hidden
    basis = np.zeros((max(max_rank, 1), n_params), dtype=np.int64)
    pivot_row = np.full(n_params, -1, dtype=np.int64)
    row = np.zeros(n_params, dtype=np.int64)
    g = np.empty(n_hidden, dtype=np.int64)
    gd = np.empty(n_hidden, dtype=np.int64)
    rank = 0
    if max_rank <= 0:
        return 0
    for mu in range(n_samples):
        for j in range(n_hidden):
            h = 0
            for i in range(n_in):
                h = (h + w1[j, i] * X[mu, i]) % PRIME
            g[j] = _horner_mod(coeffs, h)
            gd[j] = _horner_mod(dcoeffs, h)
        for k in range(n_out):
            # dy_k/dW1[j,i] = W2[k,j] g'(h_j) x_i ; dy_k/dW2[k',j] = delta_kk' g(h_j)
            for j in range(n_hidden):
                s = (w2[k, j] * gd[j]) % PRIME
                for i in range(n_in):
                    row[j * n_in + i] = (s * X[mu, i]) % PRIME
            for c in range(d1, n_params):
                row[c] = 0
            for j in range(n_hidden):
                row[d1 + k * n_hidden + j] = g[j]
            # forward reduction in column order: basis row b has zeros left of its pivot
            for c in range(n_params):
                v = row[c]
                if v == 0:
                    continue
                b = pivot_row[c]
                if b < 0:
                    inv = inverse_mod(v)
                    for cc in range(c, n_params):
                        basis[rank, cc] = (row[cc] * inv) % PRIME
                    pivot_row[c] = rank
                    rank += 1
                    break
                f = PRIME - v  # row -= v * basis[b], kept non-negative
                for cc in range(c, n_params):
                    bv = basis[b, cc]
                    if bv != 0:
                        row[cc] = (row[cc] + f * bv) % PRIME
            if rank >= max_rank:
                return rank
    return rank
