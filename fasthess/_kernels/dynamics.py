"""Full-batch gradient descent on the teacher-student loss, the whole loop in one kernel.

One step at theta_t = (w1, w2), with X (P x Ni), teacher outputs Yt (P x No):

    pre = X w1^T,  A = g(pre),  G1 = g'(pre)          (P x Nh)
    R = A w2^T - Yt,  L_t = |R|^2 / (2P)              (P x No)
    grad w2 = R^T A / P,  grad w1 = ((R w2) * G1)^T X / P
    w1 -= lr grad w1,  w2 -= lr grad w2

The loss of theta_t comes out of the same forward pass as its gradient, so
recording it costs nothing. The five matrix products go to BLAS through
``np.dot(a, b, out)`` (Numba calls BLAS for contiguous float arrays, transposed
views included); the elementwise work is serial, because a parallel region
between BLAS calls fights BLAS's own threads for the cores.

``_gd_loop`` is written once and calls the activation through the module
global ``_act(code, coeffs, z) -> (g, g', g'')``. For built-in activations
``_act`` is :func:`activate` and the loop is compiled as the disk-cached
:func:`gd_builtin`. A user's activation gets a copy of the same function object
whose globals bind ``_act`` to a closure over the user's g, g' (see
:func:`make_custom_gd`), compiled without the disk cache. Passing the activation
as a function *argument* instead would not do: Numba cannot disk-cache a
function that receives or forwards a function value.
"""
from __future__ import annotations

import math
import types

import numpy as np

from ._jit import kernel
from .activation import activate


def _gd_loop(code, coeffs, X, Yt, w1, w2, lr, steps, record_every, factor, floor,
             escape_factor, loss_out, step_out, prev_w1, prev_w2, train_w1, train_w2):
    """Run up to ``steps`` GD updates of (w1, w2) in place; record the loss.

    Shapes: X (P, Ni), Yt (P, No), w1 (Nh, Ni), w2 (No, Nh), prev_w1/prev_w2 like
    w1/w2 (workspace: the parameters one step back), loss_out float64 and step_out
    int64 of length >= steps // record_every + 2.

    Records L_t at t = 0, record_every, 2 record_every, ... and at t = steps.
    Divergence at step t: L_t non-finite, L_t > factor * (L_0 + floor), or a
    non-finite weight. Then the loop stops; if L_t and the weights are finite,
    (t, L_t) is the last record and (w1, w2) hold theta_t; otherwise the last
    record is (t-1, L_{t-1}) and prev_w1/prev_w2 hold theta_{t-1}.

    Escape: the first step t whose L_t exceeds escape_factor * L_0 (the run left the
    quadratic regime; it goes on). ``train_w1`` / ``train_w2``: which layers update.

    The activation is the global ``_act`` (module docstring).
    Returns (n_recorded, diverged_at or -1, use_prev, escaped_at or -1).
    """
    n_samples, n_in = X.shape
    n_hidden = w1.shape[0]
    n_out = w2.shape[0]
    dt = X.dtype
    inv_p = 1.0 / n_samples
    step = lr * inv_p
    pre = np.empty((n_samples, n_hidden), dtype=dt)
    A = np.empty((n_samples, n_hidden), dtype=dt)
    G1 = np.empty((n_samples, n_hidden), dtype=dt)
    B = np.empty((n_samples, n_hidden), dtype=dt)
    Y = np.empty((n_samples, n_out), dtype=dt)
    R = np.empty((n_samples, n_out), dtype=dt)
    gw1 = np.empty((n_hidden, n_in), dtype=dt)
    gw2 = np.empty((n_out, n_hidden), dtype=dt)

    n_rec = 0
    diverged_at = -1
    escaped_at = -1
    use_prev = False
    threshold = np.inf
    escape_threshold = np.inf
    prev_loss = 0.0
    for t in range(steps + 1):
        # forward pass at theta_t
        np.dot(X, w1.T, pre)
        for mu in range(n_samples):
            for j in range(n_hidden):
                g, d1, _ = _act(code, coeffs, pre[mu, j])
                A[mu, j] = g
                G1[mu, j] = d1
        np.dot(A, w2.T, Y)
        s = 0.0
        for mu in range(n_samples):
            for k in range(n_out):
                R[mu, k] = Y[mu, k] - Yt[mu, k]
                r = np.float64(R[mu, k])  # accumulate in float64 whatever the dtype
                s += r * r
        loss = 0.5 * s * inv_p

        weights_finite = True
        if t > 0:
            for j in range(n_hidden):
                for i in range(n_in):
                    if not math.isfinite(w1[j, i]):
                        weights_finite = False
            for k in range(n_out):
                for j in range(n_hidden):
                    if not math.isfinite(w2[k, j]):
                        weights_finite = False
        else:
            threshold = factor * (loss + floor)
            escape_threshold = escape_factor * (loss + floor)
        if escaped_at < 0 and loss > escape_threshold:
            escaped_at = t

        # "not <=" so that NaN counts as divergence
        if not (loss <= threshold) or not weights_finite:
            diverged_at = t
            if math.isfinite(loss) and weights_finite:
                loss_out[n_rec] = loss
                step_out[n_rec] = t
                n_rec += 1
            elif t > 0:
                use_prev = True
                if n_rec == 0 or step_out[n_rec - 1] != t - 1:
                    loss_out[n_rec] = prev_loss
                    step_out[n_rec] = t - 1
                    n_rec += 1
            break

        if t % record_every == 0 or t == steps:
            loss_out[n_rec] = loss
            step_out[n_rec] = t
            n_rec += 1
        if t == steps:
            break

        # keep theta_t: if theta_{t+1} blows up, theta_t is the last finite point
        prev_loss = loss
        prev_w1[:, :] = w1
        prev_w2[:, :] = w2

        # gradient at theta_t and update
        np.dot(R.T, A, gw2)
        np.dot(R, w2, B)
        for mu in range(n_samples):
            for j in range(n_hidden):
                B[mu, j] *= G1[mu, j]
        np.dot(B.T, X, gw1)
        if train_w1:
            for j in range(n_hidden):
                for i in range(n_in):
                    w1[j, i] -= step * gw1[j, i]
        if train_w2:
            for k in range(n_out):
                for j in range(n_hidden):
                    w2[k, j] -= step * gw2[k, j]
    return n_rec, diverged_at, use_prev, escaped_at


_act = activate
gd_builtin = kernel(_gd_loop)


def make_custom_gd(g, dg):
    """The GD loop for user-jitted scalar g, g' (uncached; compiles on first call).

    Same signature as :func:`gd_builtin` (``code`` and ``coeffs`` are ignored).
    The caller keeps one per activation so it compiles once per process.
    """
    @kernel(cache=False)
    def act(code, coeffs, z):
        return g(z), dg(z), 0.0

    # the same code object, its global ``_act`` bound to the user's activation
    loop = types.FunctionType(_gd_loop.__code__, {**_gd_loop.__globals__, "_act": act},
                              "gd_custom")
    return kernel(loop, cache=False)
