"""Shared fixtures, activations, and every named tolerance of the suite (one place)."""
import math

import numba
import numpy as np
import pytest

import fasthess as fh

# ---------------------------------------------------------------------- tolerances
# Library vs the float64 twins of tests/reference.py (round-off of sums over P and D,
# relative to the largest entry; seen <= 1e-14).
RTOL_EXACT = 1e-12
# Finite differences: central difference of the loss, eps = 1e-4 for second
# differences (truncation ~eps^2, cancellation ~1e-16/eps^2): ~1e-7 relative.
RTOL_FD_HESSIAN = 2e-6
# Central differences of the loss for the gradient, eps = 1e-6: ~1e-9 relative.
RTOL_FD_GRADIENT = 1e-7
# Central differences of the outputs for the Jacobian, eps = 1e-6: truncation
# ~eps^2 |y'''|, cancellation ~1e-16 |y| / eps: ~1e-10 relative to the largest entry.
RTOL_FD_JACOBIAN = 1e-7
# float32 results against the float64 twins (24-bit mantissa accumulated over P samples):
# measured <= 4e-7; the library promises 1e-4, the tests hold it to 1e-5.
RTOL_FLOAT32 = 1e-5
# Loss, a scalar: library vs twin in float64.
RTOL_LOSS = 1e-13
# Activation values g, g', g'' of a kernel vs their closed forms (a few flops each).
RTOL_ACTIVATION = 1e-14
# ... in float32 (half an ulp of float32 per operation, a few operations).
RTOL_ACTIVATION_FLOAT32 = 1e-6
# Central differences of the twins' own g and g' (step 1e-5): truncation ~1e-10,
# cancellation ~1e-11, relative to O(1) values.
RTOL_ACTIVATION_FD = 1e-8
# Every exact eigenvalue route vs eigvalsh of the twin Hessian: backward-stable solvers
# of matrices equal to round-off agree to ~D * eps * lambda_max (seen: <= 3e-15).
RTOL_ROUTE = 1e-10
# trace: closed form vs the sum of the twin's eigenvalues (sum of D round-off errors).
RTOL_TRACE = 1e-12
# eigsh with tol=0 (ARPACK to machine precision) vs the twin's eigenvalues.
RTOL_EIGSH = 1e-10
# eigsh eigenvectors: residual ||H v - lambda v|| relative to max |lambda|
# (ARPACK's Ritz vectors converge as the square root of its eigenvalue accuracy).
RTOL_EIGSH_VECTORS = 1e-8
# Ritz values of an exhausted Krylov space vs the exact eigenvalues, relative to lambda_max.
RTOL_RITZ = 1e-8
# Hutchinson: the estimate is a mean of n_probes i.i.d. samples; 4 standard errors.
HUTCHINSON_SIGMAS = 4.0
# Zero modes of H at the optimum, relative to lambda_max: round-off of a Gram matrix.
RTOL_ZERO_MODE = 1e-12
# A floating-point rank counts only when the gap across the cut exceeds this (decades):
# genuine eigenvalues of erf and degree >= 3 polynomials go down to 1e-11 (THEORY.md c).
MIN_RANK_GAP_DECADES = 8.0
# scipy.integrate.quad of the closed-form densities (MP, scaled chi-square): quad's
# own error estimates are <= 1.3e-8 here (seen errors <= 3e-12); absolute, masses are O(1).
ATOL_QUAD = 1e-7
# Mass and mean of linear_density by Simpson on a 6001-point grid (measured within
# 2e-9), and its variance (measured within 1e-7): relative.
RTOL_DENSITY_MOMENTS = 1e-6
RTOL_DENSITY_VARIANCE = 1e-5
# linear_cdf at 12 (far in the tail) against 1, and against the trapezoid integral
# of linear_density on a grid of spacing 2.6e-3 (the trapezoid error near the edges).
ATOL_CDF_TAIL = 1e-9
ATOL_CDF_VS_DENSITY = 2e-3
# KS distance of linear_cdf to pooled eigenvalues of 100 random linear teachers at
# (Ni, Nh) = (40, 60): the pooled sample has n = T Ni = 4000 eigenvalues per
# output; eigenvalues of one Wishart matrix are more regular than iid draws, so
# the iid 99% KS quantile 1.63 / sqrt(4000) = 0.026 bounds the W1 part; the
# per-teacher shift t (sd sqrt(2/Nh) = 0.18 against an overall sd 1.2) adds
# about f_max sd_t / sqrt(T) = 0.005, and MP's finite-size error at (40, 60) is
# about 0.005-0.01 (THEORY.md b). Measured over 5 seeds: 0.008-0.020.
KS_BOUND = 0.04
# The same at Nh = 2, where the finite-size MP error of W1^T W1 dominates
# (measured 0.02-0.03).
KS_BOUND_TINY_HIDDEN = 0.06

# The off-optimum population Hessian against central differences (step 1e-5) of the
# closed-form population gradient: truncation ~1e-10, cancellation ~1e-11 relative to
# the largest entry (seen <= 3e-10 for erf, relu, tanh, polynomials, a custom softplus).
RTOL_FD_POPULATION = 1e-7
# The population Hessian's spectrum by the span reduction against eigh of the dense
# H_inf: two backward-stable eigensolves of matrices equal to round-off (seen <= 2.4e-15).
RTOL_POP_REDUCED = 1e-13
# H_inf against a teacher computing the same function with its units permuted: the
# residual term is a sum of round-off (seen <= 1.7e-15 of the largest entry, tanh's
# quadrature; closed forms <= 3e-16). An equal teacher gives H_inf bit for bit.
RTOL_POP_SAME_FUNCTION = 1e-14

# ---------------------------------------------------------------------- activations
ACTIVATIONS = ["linear", "quadratic", "erf", "tanh", "relu", fh.Polynomial([0.3, 1.0, 0.5, -0.2])]
ACTIVATION_IDS = ["linear", "quadratic", "erf", "tanh", "relu", "cubic_poly"]


def _softplus(z):
    return math.log1p(math.exp(-abs(z))) + max(z, 0.0)


def _sigmoid(z):
    return 0.5 * (1.0 + math.tanh(0.5 * z))


def _sigmoid_derivative(z):
    s = 0.5 * (1.0 + math.tanh(0.5 * z))
    return s * (1.0 - s)


# A user activation unlike every built-in (smooth, neither odd nor even, g'' != 0):
# its twin is the user's own Python functions, so it checks the custom kernel path.
SOFTPLUS = fh.CustomActivation(numba.njit(_softplus), numba.njit(_sigmoid),
                               numba.njit(_sigmoid_derivative), name="softplus",
                               no_continuous_symmetry=True)
ACTIVATIONS_AND_CUSTOM = ACTIVATIONS + [SOFTPLUS]
ACTIVATION_AND_CUSTOM_IDS = ACTIVATION_IDS + ["custom_softplus"]


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
    g = numba.njit(lambda z: math.tanh(z))
    dg = numba.njit(lambda z: 1.0 - math.tanh(z) ** 2)
    d2g = numba.njit(lambda z: -2.0 * math.tanh(z) * (1.0 - math.tanh(z) ** 2))
    return fh.CustomActivation(g, dg, d2g, name="my_tanh", no_continuous_symmetry=True)
