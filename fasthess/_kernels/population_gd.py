"""Full-batch gradient descent on the population loss in the span coordinates of the
first-layer rows (THEORY.md g), erf and linear, in one compiled loop: each step's
expectations in closed form (:func:`fasthess._kernels.online.pair_expectations`)."""
from __future__ import annotations

import math

import numpy as np

from ._jit import kernel
from .online import pair_expectations


@kernel
def population_gd_closed(code, C, n_student, w2, w2t, lr, steps, record_every, train_w1,
                         train_w2, factor, floor, escape_factor, loss_out, step_out, prev_c,
                         prev_w2):
    """Full-batch GD on the population loss in span coordinates, erf or linear.

    C (n x r): the rows of student (first ``n_student``) and teacher W1 in an orthonormal
    basis of their span; the student rows and w2 are updated in place by
    C_j -= lr sum_u S_ju (c_ju C_j + a_ju C_u), w2 -= lr beta G[:, :K] (THEORY.md g).
    Records L_t at t = 0, record_every, ... and ``steps``. Divergence and escape as in
    ``dynamics._gd_loop`` (thresholds factor * (L_0 + floor), escape_factor * (L_0 +
    floor)); on divergence prev_c / prev_w2 hold step t - 1. Returns (n_rec,
    diverged_at or -1, use_prev, escaped_at or -1).
    """
    n, r = C.shape
    K = n_student
    M = n - K
    n_out = w2.shape[0]
    omega = np.empty((n, n))
    a = np.empty((n, n))
    c = np.empty((n, n))
    G = np.empty((n, n))
    beta = np.empty((n_out, n))
    grad = np.empty((K, r))
    n_rec = 0
    prev_loss = 0.0
    threshold = np.inf
    escape = np.inf
    escaped_at = -1
    for t in range(steps + 1):
        np.dot(C, C.T, omega)
        pair_expectations(code, omega, a, c, G)
        for m in range(n_out):
            for k in range(K):
                beta[m, k] = w2[m, k]
            for k in range(M):
                beta[m, K + k] = -w2t[m, k]
        s = 0.0
        for m in range(n_out):
            for u in range(n):
                for v in range(n):
                    s += beta[m, u] * G[u, v] * beta[m, v]
        loss = 0.5 * s
        if t == 0:
            threshold = factor * (loss + floor)
            escape = escape_factor * (loss + floor)
        if escaped_at < 0 and loss > escape:
            escaped_at = t
        if not (loss <= threshold):
            if math.isfinite(loss):
                loss_out[n_rec] = loss
                step_out[n_rec] = t
                n_rec += 1
                return n_rec, t, False, escaped_at
            if t > 0 and (n_rec == 0 or step_out[n_rec - 1] != t - 1):
                loss_out[n_rec] = prev_loss
                step_out[n_rec] = t - 1
                n_rec += 1
            return n_rec, t, t > 0, escaped_at
        if t % record_every == 0 or t == steps:
            loss_out[n_rec] = loss
            step_out[n_rec] = t
            n_rec += 1
        if t == steps:
            break
        prev_loss = loss
        prev_c[:, :] = C
        prev_w2[:, :] = w2
        S = np.dot(np.ascontiguousarray(w2.T), beta)
        if train_w1:
            for j in range(K):
                sc = 0.0
                for u in range(n):
                    sc += S[j, u] * c[j, u]
                for i in range(r):
                    acc = sc * C[j, i]
                    for u in range(n):
                        acc += S[j, u] * a[j, u] * C[u, i]
                    grad[j, i] = acc
        if train_w2:
            for m in range(n_out):
                for k in range(K):
                    acc = 0.0
                    for u in range(n):
                        acc += beta[m, u] * G[u, k]
                    w2[m, k] -= lr * acc
        if train_w1:
            for j in range(K):
                for i in range(r):
                    C[j, i] -= lr * grad[j, i]
    return n_rec, -1, False, escaped_at
