"""Shared fixtures and the named tolerances used across the suite."""
import numpy as np
import pytest

import fasthess as fh

# Closed-form kernels vs einsum references in float64 (pure round-off, summed over P).
RTOL_EXACT = 1e-12
# Finite differences: central difference of the loss, eps = 1e-4 for second
# differences (truncation ~eps^2, cancellation ~1e-16/eps^2): ~1e-7 relative.
RTOL_FD_HESSIAN = 2e-6
# Central differences of the loss for the gradient, eps = 1e-6: ~1e-9 relative.
RTOL_FD_GRADIENT = 1e-7
# float32 assembly against float64 (24-bit mantissa accumulated over P samples):
# measured <= 4e-7; the library promises 1e-4, the tests hold it to 1e-5.
RTOL_FLOAT32 = 1e-5

ACTIVATIONS = ["linear", "quadratic", "erf", "tanh", "relu", fh.Polynomial([0.3, 1.0, 0.5, -0.2])]
ACTIVATION_IDS = ["linear", "quadratic", "erf", "tanh", "relu", "cubic_poly"]


def rel_err(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.fixture(params=ACTIVATIONS, ids=ACTIVATION_IDS)
def activation(request):
    return request.param


def perturbed(net, scale, seed):
    rng = np.random.default_rng(seed)
    theta = net.parameters() + scale * rng.standard_normal(net.n_params)
    return fh.TwoLayerNet.from_parameters(theta, like=net)


@pytest.fixture(scope="session")
def custom_tanh():
    """tanh as a user activation from Numba-jitted g, g', g'' (compare with "tanh")."""
    import math

    import numba

    g = numba.njit(lambda z: math.tanh(z))
    dg = numba.njit(lambda z: 1.0 - math.tanh(z) ** 2)
    d2g = numba.njit(lambda z: -2.0 * math.tanh(z) * (1.0 - math.tanh(z) ** 2))
    return fh.CustomActivation(g, dg, d2g, name="my_tanh", odd=True)
