"""TwoLayerNet, activations, inputs: construction, metadata, bad input."""
import math

import numba
import numpy as np
import pytest

import fasthess as fh
from fasthess.activations import get_activation

from . import reference as ref
from .conftest import (ACTIVATION_AND_CUSTOM_IDS, ACTIVATIONS_AND_CUSTOM, RTOL_ACTIVATION,
                       RTOL_ACTIVATION_FD, RTOL_ACTIVATION_FLOAT32, RTOL_EXACT, RTOL_FLOAT32,
                       rel_err)


def test_random_shapes_defaults_and_seed():
    net = fh.TwoLayerNet.random(50, 40, n_out=3, activation="erf", rng=0)
    assert net.w1.shape == (40, 50) and net.w2.shape == (3, 40)
    assert net.n_params == 40 * 50 + 3 * 40 and net.shape == (50, 40, 3)
    # default scales 1/sqrt(n_in), 1/sqrt(n_hidden) (2000 and 120 draws)
    assert np.std(net.w1) == pytest.approx(1 / math.sqrt(50), rel=0.08)
    assert np.std(net.w2) == pytest.approx(1 / math.sqrt(40), rel=0.25)
    again = fh.TwoLayerNet.random(50, 40, n_out=3, activation="erf", rng=0)
    np.testing.assert_array_equal(net.w1, again.w1)
    custom = fh.TwoLayerNet.random(50, 40, w1_std=2.0, w2_std=0.5, rng=1)
    assert np.std(custom.w1) == pytest.approx(2.0, rel=0.08)


def test_parameters_roundtrip_and_order():
    net = fh.TwoLayerNet.random(3, 2, n_out=2, rng=0)
    theta = net.parameters()
    np.testing.assert_array_equal(theta[:6], net.w1.ravel())
    np.testing.assert_array_equal(theta[6:], net.w2.ravel())
    back = fh.TwoLayerNet.from_parameters(theta, like=net)
    np.testing.assert_array_equal(back.w1, net.w1)
    np.testing.assert_array_equal(back.w2, net.w2)
    theta[0] = 99.0  # parameters() is a copy
    assert net.w1[0, 0] != 99.0


@pytest.mark.parametrize("activation", ACTIVATIONS_AND_CUSTOM, ids=ACTIVATION_AND_CUSTOM_IDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_forward_matches_twin(activation, dtype):
    net = fh.TwoLayerNet.random(4, 3, n_out=2, activation=activation, rng=0, dtype=dtype)
    X = fh.gaussian_inputs(7, 4, rng=1, dtype=dtype)
    y = net.forward(X)
    assert y.shape == (7, 2) and y.dtype == dtype
    tol = RTOL_EXACT if dtype == np.float64 else RTOL_FLOAT32
    assert rel_err(y, ref.outputs(net, X)) < tol


# Points on both sides of 0 but never at relu's kink, and far enough out to see the tails.
Z = np.linspace(-3.5, 3.5, 57) + 0.013


@pytest.mark.parametrize("activation", ACTIVATIONS_AND_CUSTOM, ids=ACTIVATION_AND_CUSTOM_IDS)
def test_activation_kernel_matches_closed_form(activation):
    act = get_activation(activation)
    got = act.evaluate(Z)
    want = ref.activation_closed_form(act, Z)
    for label, g, w in zip(("g", "g'", "g''"), got, want):
        assert g.shape == (1, Z.size)
        assert rel_err(g.ravel(), w) < RTOL_ACTIVATION, label
    # float32 through the public kernel entry, as the float32 Hessian calls it
    pre = np.ascontiguousarray(Z.reshape(3, 19), dtype=np.float32)
    out = [np.empty_like(pre) for _ in range(3)]
    act.apply(pre, *out)
    want32 = ref.activation_closed_form(act, pre)
    for label, g, w in zip(("g", "g'", "g''"), out, want32):
        assert g.dtype == np.float32
        assert rel_err(g, w) < RTOL_ACTIVATION_FLOAT32, label


@pytest.mark.parametrize("activation", ACTIVATIONS_AND_CUSTOM, ids=ACTIVATION_AND_CUSTOM_IDS)
def test_twin_derivatives_match_finite_differences(activation):
    """The twins' closed-form g' and g'' are the derivatives of their g (checks the oracle)."""
    act = get_activation(activation)
    _, d1, d2 = ref.activation_closed_form(act, Z)
    h = 1e-5
    gp, d1p, _ = ref.activation_closed_form(act, Z + h)
    gm, d1m, _ = ref.activation_closed_form(act, Z - h)
    assert rel_err((gp - gm) / (2 * h), d1) < RTOL_ACTIVATION_FD
    if np.any(d2):
        assert rel_err((d1p - d1m) / (2 * h), d2) < RTOL_ACTIVATION_FD
    else:   # linear and relu: g' is piecewise constant
        assert np.max(np.abs(d1p - d1m)) == 0.0


def test_activation_metadata():
    assert get_activation("linear").powers == (1,) and get_activation("linear").degree == 1
    q = get_activation("quadratic")
    assert q.powers == (1, 2) and q.is_polynomial and q.homogeneous_degree is None
    assert not q.no_continuous_symmetry
    for name in ("erf", "tanh"):
        act = get_activation(name)
        assert act.no_continuous_symmetry and not act.is_polynomial
        assert act.degree is None and act.homogeneous_degree is None and act.powers == ()
    relu = get_activation("relu")
    assert relu.homogeneous_degree == 1 and not relu.no_continuous_symmetry
    assert not relu.is_polynomial
    cube = fh.Polynomial([0, 0, 0, 1])
    assert cube.homogeneous_degree == 3 and cube.powers == (3,)
    assert fh.Polynomial([0.5, 1, 1]).powers == (0, 1, 2)
    assert fh.Polynomial([1, 2, 0, 0]).degree == 1  # trailing zeros dropped
    assert fh.Quadratic(0.5).coeffs.tolist() == [0.0, 1.0, 0.5]
    assert fh.Quadratic(1.0) == get_activation("quadratic")
    for gone in ("is_odd", "is_homogeneous", "is_piecewise_linear"):   # nothing read them
        assert not hasattr(relu, gone)


def _jit(f):
    return numba.njit(f)


def test_custom_activation_declarations_are_checked():
    square = (_jit(lambda z: z * z), _jit(lambda z: 2.0 * z), _jit(lambda z: 2.0))
    act = fh.CustomActivation(*square, name="square", polynomial_coeffs=[0, 0, 1])
    assert act.is_polynomial and act.powers == (2,) and act.homogeneous_degree == 2
    assert act.coeffs.tolist() == [0.0, 0.0, 1.0] and act.degree == 2
    leaky = (_jit(lambda z: max(z, 0.1 * z)), _jit(lambda z: 1.0 if z > 0 else 0.1),
             _jit(lambda z: 0.0))
    act = fh.CustomActivation(*leaky, name="leaky", homogeneous_degree=1)
    assert act.homogeneous_degree == 1 and not act.is_polynomial
    assert fh.CustomActivation(*leaky, name="leaky", homogeneous_degree=1.0).homogeneous_degree == 1
    plain = fh.CustomActivation(*leaky, name="leaky")
    assert plain.homogeneous_degree is None and not plain.no_continuous_symmetry
    assert not plain.is_polynomial and plain.powers == () and plain.degree is None

    with pytest.raises(ValueError, match=r"polynomial_coeffs = \[0, 1, 1\] does not describe g"):
        fh.CustomActivation(*square, polynomial_coeffs=[0, 1, 1])
    with pytest.raises(ValueError, match="homogeneous_degree = 2 does not describe g"):
        fh.CustomActivation(*leaky, homogeneous_degree=2)
    with pytest.raises(ValueError, match="homogeneous_degree = 1 does not describe g"):
        fh.CustomActivation(*square, homogeneous_degree=1)
    with pytest.raises(ValueError, match="homogeneous_degree must be finite and > 0"):
        fh.CustomActivation(*leaky, homogeneous_degree=-1)
    with pytest.raises(ValueError, match="polynomial_coeffs: declare it alone"):
        fh.CustomActivation(*square, polynomial_coeffs=[0, 0, 1], homogeneous_degree=2)
    with pytest.raises(ValueError, match="contradict each other"):
        fh.CustomActivation(*leaky, homogeneous_degree=1, no_continuous_symmetry=True)
    with pytest.raises(TypeError, match="no_continuous_symmetry must be True or False"):
        fh.CustomActivation(*leaky, no_continuous_symmetry="yes")
    with pytest.raises(TypeError, match="dg must be a Numba-jitted function"):
        fh.CustomActivation(square[0], lambda z: 2 * z, square[2])


def test_polynomial_of_high_degree_evaluates_exactly():
    coeffs = [0.5, -1, 0.25, 0, 0.1, -0.03, 0.002]
    z = np.linspace(-2, 2, 9)
    act = fh.Polynomial(coeffs)
    for got, want in zip(act.evaluate(z), ref.activation_closed_form(act, z)):
        assert rel_err(got.ravel(), want) < RTOL_ACTIVATION


def test_gaussian_inputs():
    X = fh.gaussian_inputs(4000, 3, rng=0)
    assert X.shape == (4000, 3) and X.dtype == np.float64
    assert abs(X.mean()) < 0.05 and X.std() == pytest.approx(1, rel=0.03)
    assert fh.gaussian_inputs(3, 2, rng=0, dtype=np.float32).dtype == np.float32
    np.testing.assert_array_equal(fh.gaussian_inputs(5, 2, rng=3),
                                  fh.gaussian_inputs(5, 2, rng=3))
