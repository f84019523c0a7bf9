"""Elementwise activation kernels: g, g', g'' of the pre-activations.

Built-in activations are selected by an integer code so that one compiled kernel
serves them all (few specialisations keep first-call compile time low).
"""
from __future__ import annotations

import math


from ._jit import inline_kernel, kernel

LINEAR, POLYNOMIAL, ERF, TANH, RELU = 0, 1, 2, 3, 4

_SQRT_HALF = 1.0 / math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


@inline_kernel
def activate(code, coeffs, z):
    """Return (g(z), g'(z), g''(z)) for the built-in activation ``code``.

    ``coeffs[m]`` multiplies z**m (only read for POLYNOMIAL).
    """
    if code == LINEAR:
        return z, 1.0, 0.0
    if code == ERF:
        # g(z) = erf(z / sqrt 2): the Gaussian CDF scaled to (-1, 1)
        d1 = _SQRT_2_OVER_PI * math.exp(-0.5 * z * z)
        return math.erf(z * _SQRT_HALF), d1, -z * d1
    if code == TANH:
        t = math.tanh(z)
        d1 = 1.0 - t * t
        return t, d1, -2.0 * t * d1
    if code == RELU:
        if z > 0.0:
            return z, 1.0, 0.0
        return 0.0, 0.0, 0.0
    # POLYNOMIAL: Horner for g, g', g'' at once
    n = coeffs.shape[0]
    g = 0.0
    d1 = 0.0
    d2 = 0.0
    for m in range(n - 1, -1, -1):
        d2 = d2 * z + 2.0 * d1
        d1 = d1 * z + g
        g = g * z + coeffs[m]
    return g, d1, d2


@kernel
def apply_activation(code, coeffs, pre, out_g, out_d1, out_d2):
    """g, g', g'' of ``pre`` (P x Nh) into the three (P x Nh) outputs."""
    n_rows, n_cols = pre.shape
    for r in range(n_rows):
        for c in range(n_cols):
            g, d1, d2 = activate(code, coeffs, pre[r, c])
            out_g[r, c] = g
            out_d1[r, c] = d1
            out_d2[r, c] = d2


@inline_kernel
def input_products_bound(n_samples, x_max):
    """A bound on the sums over P samples of products x_i x_l (in H, the NTK, the
    trace), from max |X|. Python calls ``.py_func``: the guards and the kernels read
    one formula."""
    return n_samples * x_max * x_max


@inline_kernel
def hessian_entry_bound(n_samples, x_max, g_max, d1_max, d2_max, w2_max, r_max):
    """(bound, factor): a bound on |H entries| and the largest Jacobian factor in it.

    Each entry is a sum over P samples of products of Jacobian factors (|g| or
    |w2 g' x|) and, off the optimum, |r w2 g'' x x| (r_max = 0 at the optimum); the
    maxima are finite. A product that overflows is inf, beyond any limit, as it
    should be; inf * 0 is NaN only where a factor is 0, and then so is the true
    term, which the comparisons leave out. Python calls ``.py_func``.
    """
    factor = g_max
    scaled = d1_max * x_max * max(w2_max, 1.0)
    if scaled > factor:
        factor = scaled
    bound = n_samples * factor * factor
    residual = n_samples * r_max * w2_max * d2_max * x_max * x_max
    if residual > bound:
        bound = residual
    return bound, factor


@kernel
def apply_activation_value(code, coeffs, pre, out_g):
    """g of ``pre`` only (forward passes)."""
    n_rows, n_cols = pre.shape
    for r in range(n_rows):
        for c in range(n_cols):
            g, _, _ = activate(code, coeffs, pre[r, c])
            out_g[r, c] = g


def make_custom_applier(g, dg, d2g):
    """A kernel for user-jitted scalar functions g, g', g'' (not disk-cached:
    Numba cannot key a disk cache on functions captured from a user's session)."""
    @kernel(cache=False)
    def apply_custom(pre, out_g, out_d1, out_d2):
        n_rows, n_cols = pre.shape
        for r in range(n_rows):
            for c in range(n_cols):
                z = pre[r, c]
                out_g[r, c] = g(z)
                out_d1[r, c] = dg(z)
                out_d2[r, c] = d2g(z)

    return apply_custom
