"""TwoLayerNet, activations, inputs: construction, metadata, bad input."""
import math

import numpy as np
import pytest
from scipy.special import erf

import fasthess as fh


def test_random_shapes_defaults_and_seed():
    net = fh.TwoLayerNet.random(50, 40, n_out=3, activation="erf", seed=0)
    assert net.w1.shape == (40, 50) and net.w2.shape == (3, 40)
    assert net.n_params == 40 * 50 + 3 * 40 and net.shape == (50, 40, 3)
    # default scales 1/sqrt(n_in), 1/sqrt(n_hidden) (2000 and 120 draws)
    assert np.std(net.w1) == pytest.approx(1 / math.sqrt(50), rel=0.08)
    assert np.std(net.w2) == pytest.approx(1 / math.sqrt(40), rel=0.25)
    again = fh.TwoLayerNet.random(50, 40, n_out=3, activation="erf", seed=0)
    np.testing.assert_array_equal(net.w1, again.w1)
    custom = fh.TwoLayerNet.random(50, 40, w1_std=2.0, w2_std=0.5, seed=1)
    assert np.std(custom.w1) == pytest.approx(2.0, rel=0.08)


def test_parameters_roundtrip_and_order():
    net = fh.TwoLayerNet.random(3, 2, n_out=2, seed=0)
    theta = net.parameters()
    np.testing.assert_array_equal(theta[:6], net.w1.ravel())
    np.testing.assert_array_equal(theta[6:], net.w2.ravel())
    back = fh.TwoLayerNet.from_parameters(theta, like=net)
    np.testing.assert_array_equal(back.w1, net.w1)
    np.testing.assert_array_equal(back.w2, net.w2)
    theta[0] = 99.0  # parameters() is a copy
    assert net.w1[0, 0] != 99.0


def test_forward_matches_formula(activation):
    net = fh.TwoLayerNet.random(4, 3, n_out=2, activation=activation, seed=0)
    X = fh.gaussian_inputs(7, 4, seed=1)
    h = X @ net.w1.T
    name = getattr(activation, "name", activation)
    g = {"linear": lambda z: z, "quadratic": lambda z: z + z**2,
         "erf": lambda z: erf(z / math.sqrt(2)), "tanh": np.tanh,
         "relu": lambda z: np.maximum(z, 0)}.get(
        name, lambda z: 0.3 + z + 0.5 * z**2 - 0.2 * z**3)
    np.testing.assert_allclose(net.forward(X), g(h) @ net.w2.T, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", ["linear", "quadratic", "erf", "tanh", "relu"])
def test_activation_derivatives_match_finite_differences(name):
    act = fh.TwoLayerNet.random(1, 1, activation=name).activation
    z = np.linspace(-2.5, 2.5, 41) + 0.013  # avoid relu's kink at 0
    g, d1, d2 = act.evaluate(z)
    h = 1e-5
    gp, d1p, _ = act.evaluate(z + h)
    gm, d1m, _ = act.evaluate(z - h)
    np.testing.assert_allclose(d1, (gp - gm) / (2 * h), rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(d2, (d1p - d1m) / (2 * h), rtol=1e-7, atol=1e-8)


def test_activation_metadata():
    get = fh.activations.get_activation
    assert get("linear").powers == (1,) and get("linear").degree == 1
    q = get("quadratic")
    assert q.powers == (1, 2) and q.is_polynomial and not q.is_odd and not q.is_homogeneous
    assert get("erf").is_odd and not get("erf").is_polynomial and get("erf").degree is None
    relu = get("relu")
    assert relu.is_piecewise_linear and relu.is_homogeneous and relu.homogeneous_degree == 1
    cube = fh.Polynomial([0, 0, 0, 1])
    assert cube.is_odd and cube.homogeneous_degree == 3 and cube.powers == (3,)
    assert fh.Polynomial([0.5, 1, 1]).powers == (0, 1, 2)
    assert fh.Polynomial([1, 2, 0, 0]).degree == 1  # trailing zeros dropped
    assert fh.Quadratic(0.5).coeffs.tolist() == [0.0, 1.0, 0.5]
    assert fh.Quadratic(1.0) == get("quadratic")


def test_polynomial_of_high_degree_evaluates_exactly():
    coeffs = [0.5, -1, 0.25, 0, 0.1, -0.03, 0.002]
    z = np.linspace(-2, 2, 9)
    g, d1, d2 = fh.Polynomial(coeffs).evaluate(z)
    p = np.polynomial.Polynomial(coeffs)
    np.testing.assert_allclose(g.ravel(), p(z), rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(d1.ravel(), p.deriv()(z), rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(d2.ravel(), p.deriv(2)(z), rtol=1e-14, atol=1e-14)


def test_gaussian_inputs():
    X = fh.gaussian_inputs(4000, 3, seed=0)
    assert X.shape == (4000, 3) and X.dtype == np.float64
    assert abs(X.mean()) < 0.05 and X.std() == pytest.approx(1, rel=0.03)
    assert fh.gaussian_inputs(3, 2, seed=0, dtype=np.float32).dtype == np.float32
    np.testing.assert_array_equal(fh.gaussian_inputs(5, 2, seed=3), fh.gaussian_inputs(5, 2, seed=3))
