"""Odd input gets the right answer, bad input a clear error: linear networks with
No*Ni > D, aliasing of weights and data, complex vectors, huge inputs and every
overflow guard, sizes and types checked before allocating, GD that leaves the
quadratic regime. Each test asserts the right value against an independent
reference, or the clear error (its type and the argument it names)."""
import numpy as np
import pytest

import fasthess as fh
from fasthess.dynamics import gradient_descent, perturb
from fasthess.quadratic_model import decay_rate, predicted_loss

from . import reference as ref
from .conftest import rel_err


# ---------------------------------------------------------------------- linear, No*Ni > D
@pytest.mark.parametrize("shape", [(6, 2, 4), (5, 1, 3), (8, 3, 5)])
def test_linear_route_when_n_out_times_n_in_exceeds_d(shape):
    n_in, n_hidden, n_out = shape
    net = fh.TwoLayerNet.random(n_in, n_hidden, n_out=n_out, activation="linear", rng=0)
    assert n_out * n_in > net.n_params
    X = fh.gaussian_inputs(50, n_in, rng=1)
    expected = np.linalg.eigvalsh(ref.hessian_at_optimum(net, X))
    spec = fh.eigenvalues(net, X)
    assert spec.method == "linear" and len(spec) == net.n_params
    assert np.max(np.abs(spec.eigenvalues - expected)) < 1e-12 * expected[-1]
    rank = fh.numerical_rank(spec).rank
    assert rank == fh.theory.effective_parameters("linear", n_in, n_hidden, n_out)
    small = fh.smallest_nonzero(net, X, k=2)
    nonzero = expected[expected > 1e-10 * expected[-1]]
    np.testing.assert_allclose(small, nonzero[:2], rtol=1e-10)


# ---------------------------------------------------------------------- aliasing
def test_network_owns_read_only_copies_of_its_weights():
    w1 = np.random.default_rng(0).standard_normal((3, 4))
    w2 = np.random.default_rng(1).standard_normal((1, 3))
    net = fh.TwoLayerNet(w1, w2, "erf")
    assert net.w1 is not w1 and not np.shares_memory(net.w1, w1)
    X = fh.gaussian_inputs(20, 4, rng=2)
    before = fh.hessian(net, X)
    w1 *= 2.0
    w2[:] = 0.0
    np.testing.assert_array_equal(fh.hessian(net, X), before)
    with pytest.raises(ValueError, match="read-only"):
        net.w1[0, 0] = 1.0


def test_operator_answers_for_the_data_it_was_built_from():
    net = fh.TwoLayerNet.random(4, 3, rng=0)
    X = fh.gaussian_inputs(30, 4, rng=1)
    H = ref.hessian_at_optimum(net, X)
    op = fh.hessian_operator(net, X)
    X *= 2.0
    v = np.random.default_rng(2).standard_normal(net.n_params)
    assert rel_err(op @ v, H @ v) < 1e-12


# ---------------------------------------------------------------------- complex vectors
@pytest.mark.parametrize("teacher_scale", [None, 0.2])
def test_complex_operands_give_the_complex_product(teacher_scale):
    net = fh.TwoLayerNet.random(4, 3, n_out=2, rng=0)
    X = fh.gaussian_inputs(25, 4, rng=1)
    teacher = None if teacher_scale is None else perturb(net, teacher_scale, rng=3)
    H = fh.hessian(net, X, teacher=teacher)
    rng = np.random.default_rng(2)
    v = rng.standard_normal(net.n_params) + 1j * rng.standard_normal(net.n_params)
    V = rng.standard_normal((net.n_params, 3)) + 1j * rng.standard_normal((net.n_params, 3))
    op = fh.hessian_operator(net, X, teacher=teacher)
    got = op @ v
    assert np.iscomplexobj(got)
    assert rel_err(got.real, H @ v.real) < 1e-12 and rel_err(got.imag, H @ v.imag) < 1e-12
    W = op.matmat(V)
    assert rel_err(W.real, H @ V.real) < 1e-12 and rel_err(W.imag, H @ V.imag) < 1e-12


# ---------------------------------------------------------------------- huge inputs
@pytest.mark.parametrize("activation", ["erf", "tanh"])
def test_huge_inputs_are_refused_naming_x_and_the_scale(activation):
    net = fh.TwoLayerNet.random(3, 2, activation=activation, rng=0)
    X = fh.gaussian_inputs(10, 3, rng=1) * 1e160
    student = perturb(net, 0.1, rng=2)
    calls = [lambda: fh.hessian(net, X), lambda: fh.hessian_blocks(net, X),
             lambda: fh.ntk(net, X), lambda: fh.trace(net, X), lambda: fh.eigenvalues(net, X),
             lambda: fh.hessian(student, X, teacher=net),
             lambda: decay_rate(net, X, 0.1),
             lambda: predicted_loss(net, X, np.zeros(net.n_params), 0.1, 3)]
    for call in calls:
        with pytest.raises(ValueError, match=r"X: entries up to 2\.7\de\+160 overflow float64"):
            call()


def test_huge_inputs_float32():
    net = fh.TwoLayerNet.random(3, 2, rng=0, dtype=np.float32)
    X = fh.gaussian_inputs(10, 3, rng=1, dtype=np.float32) * np.float32(1e20)
    with pytest.raises(ValueError, match=r"X: entries up to .*e\+20 overflow float32"):
        fh.hessian(net, X)


def _overflowing_points():
    """{cause: (net, X, the message naming it, a net and X just within the limits)},
    one per overflow guard, each a small problem (the one-call kernel's size)."""
    X = fh.gaussian_inputs(20, 3, rng=1)
    w1 = np.random.default_rng(2).standard_normal((2, 3))
    ones = np.ones((1, 2))
    erf = fh.TwoLayerNet(w1, ones, "erf")
    poly = fh.TwoLayerNet(w1, ones, fh.Polynomial([0] * 10 + [1]))
    return {
        # x_i x_l summed over P overflows
        "inputs": (erf, X * 1e160, r"X: entries up to .*e\+160 overflow float64", erf, X * 1e140),
        # X within scale, w1 @ x not finite
        "pre-activations": (fh.TwoLayerNet(w1 * 1e200, ones, "erf"), X * 1e150,
                            r"X: the pre-activations w1 @ x overflow float64",
                            fh.TwoLayerNet(w1 * 1e200, ones, "erf"), X * 1e100),
        # g = z^10 of finite z is inf
        "activation": (poly, X * 1e40,
                       r"net: the activation .* overflows: g\(w1 @ x\) is not finite", poly,
                       X * 1e10),
        # every factor finite, |w2 g' x| ~ 1e160: the sums over P of their squares not
        "entries": (fh.TwoLayerNet(w1, np.full((1, 2), 1e60), "linear"), X * 1e100,
                    r"net: Hessian entries would overflow float64 \(activation 'linear': .* "
                    r"up to .*e\+160 over 20 samples\)",
                    fh.TwoLayerNet(w1, np.full((1, 2), 1e40), "linear"), X * 1e100),
    }


@pytest.mark.parametrize("route", ["one call", "chunked"])
@pytest.mark.parametrize("cause", ["inputs", "pre-activations", "activation", "entries"])
def test_each_overflow_is_refused_naming_its_cause_on_every_route(monkeypatch, route, cause):
    """The one-call kernel applies the guards' own bounds to the maxima it finds and
    leaves the refusal to them: the same error as the general route, never a NaN H;
    just within the limits, the twin's finite H."""
    from fasthess import _config

    if route == "chunked":
        monkeypatch.setattr(_config, "SAMPLE_PARTS_BYTES", 0)
    net, X, message, net_ok, X_ok = _overflowing_points()[cause]
    for call in (fh.hessian, fh.hessian_blocks):
        with pytest.raises(ValueError, match=message):
            call(net, X)
    H = fh.hessian(net_ok, X_ok)
    with np.errstate(over="ignore"):  # the twin's z * z of saturated erf units is inf
        expected = ref.hessian_at_optimum(net_ok, X_ok)
    assert np.all(np.isfinite(H)) and rel_err(H, expected) < 1e-12


def test_loss_and_gradient_of_saturated_units_are_right_answers():
    # erf saturates: the loss and gradient exist and are exact, so they are returned
    net = fh.TwoLayerNet.random(3, 2, rng=0)
    X = fh.gaussian_inputs(10, 3, rng=1) * 1e160
    student = perturb(net, 0.1, rng=2)
    with np.errstate(over="ignore"):  # the twin squares h ~ 1e160 inside exp(-h^2 / 2)
        want_loss, want_grad = ref.loss(student, X, net), ref.gradient(student, X, net)
    assert fh.loss(student, X, net) == pytest.approx(want_loss, rel=1e-14)
    g = fh.gradient(student, X, net)
    assert np.all(g[:6] == 0)  # g'(h) = 0 exactly: the w1 block vanishes
    np.testing.assert_allclose(g, want_grad, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------- sizes
def test_step_counts_are_checked_before_allocating():
    teacher = fh.TwoLayerNet.random(3, 2, rng=0)
    X = fh.gaussian_inputs(20, 3, rng=1)
    student = perturb(teacher, 1e-3, rng=2)
    with pytest.raises(MemoryError, match=r"steps = 1000000000000 .* bytes"):
        gradient_descent(student, X, 0.1, 10**12, teacher=teacher)
    with pytest.raises(MemoryError, match=r"steps = 10000000000 .* bytes"):
        predicted_loss(teacher, X, np.zeros(teacher.n_params), 0.1, 10**10)
    with pytest.raises(ValueError, match="steps must be <="):
        gradient_descent(student, X, 0.1, 2**63, teacher=teacher)
    # a long run that records sparsely fits
    res = gradient_descent(student, X, 0.1, 10**4, record_every=10**4, teacher=teacher)
    assert list(res.steps) == [0, 10**4]


# ---------------------------------------------------------------------- types
@pytest.mark.parametrize("value", ["0.1", True, b"1", None, [0.1]])
def test_numbers_given_as_strings_or_bools_are_refused(value):
    teacher = fh.TwoLayerNet.random(3, 2, rng=0)
    X = fh.gaussian_inputs(20, 3, rng=1)
    student = perturb(teacher, 1e-3, rng=2)
    calls = {
        "lr": lambda: gradient_descent(student, X, value, 5, teacher=teacher),
        "divergence_factor": lambda: gradient_descent(student, X, 0.1, 5,
                                                      divergence_factor=value, teacher=teacher),
        "scale": lambda: perturb(teacher, value),
        "w1_std": lambda: fh.TwoLayerNet.random(3, 2, w1_std=value),
        "rtol": lambda: fh.numerical_rank([1.0, 2.0], rtol=value),
        "tol": lambda: fh.eigsh(teacher, X, k=1, tol=value),
    }
    for name, call in calls.items():
        if value is None and name in ("w1_std", "rtol", "divergence_factor"):
            continue  # None means the default there
        with pytest.raises(TypeError, match=f"{name} must be a real number"):
            call()


def test_return_eigenvectors_must_be_a_bool():
    net = fh.TwoLayerNet.random(3, 2, rng=0)
    X = fh.gaussian_inputs(20, 3, rng=1)
    with pytest.raises(TypeError, match="return_eigenvectors must be True or False"):
        fh.eigsh(net, X, k=1, return_eigenvectors="no")


@pytest.mark.parametrize("limit", ["inf", "1e400", "Infinity"])
def test_memory_limit_infinite_means_no_cap(monkeypatch, limit):
    monkeypatch.setenv("FASTHESS_MEMORY_LIMIT", limit)
    net = fh.TwoLayerNet.random(3, 2, rng=0)
    assert fh.hessian(net, fh.gaussian_inputs(10, 3, rng=1)).shape == (8, 8)


@pytest.mark.parametrize("limit", ["nan", "-5", "lots"])
def test_memory_limit_invalid_is_named(monkeypatch, limit):
    monkeypatch.setenv("FASTHESS_MEMORY_LIMIT", limit)
    net = fh.TwoLayerNet.random(3, 2, rng=0)
    with pytest.raises(ValueError, match="FASTHESS_MEMORY_LIMIT must be a number of bytes"):
        fh.hessian(net, fh.gaussian_inputs(10, 3, rng=1))


def test_perturbation_overflow_names_scale():
    net = fh.TwoLayerNet.random(10, 10, rng=0)  # 110 draws: some |z| > 1.8 overflows
    with pytest.raises(ValueError, match="scale = 1e\\+308 is too large"):
        perturb(net, 1e308, rng=1)
    assert np.all(np.isfinite(perturb(net, 1e300, rng=1).parameters()))


def test_masked_arrays_are_refused():
    net = fh.TwoLayerNet.random(3, 2, rng=0)
    X = np.ma.masked_array(fh.gaussian_inputs(10, 3, rng=1), mask=False)
    with pytest.raises(TypeError, match="X is a masked array"):
        fh.hessian(net, X)
    with pytest.raises(TypeError, match="w1 is a masked array"):
        fh.TwoLayerNet(np.ma.ones((2, 3)), np.ones((1, 2)))


# ---------------------------------------------------------------------- escaping GD
def test_gd_that_leaves_the_quadratic_regime_is_reported():
    teacher = fh.TwoLayerNet.random(4, 3, activation="erf", rng=0)
    X = fh.gaussian_inputs(60, 4, rng=1)
    lam = np.linalg.eigvalsh(ref.hessian_at_optimum(teacher, X))
    student = perturb(teacher, 1e-3, rng=2)
    lr = 3.0 / lam[-1]
    with pytest.warns(RuntimeWarning, match="unstable"):
        assert decay_rate(teacher, X, lr) > 0
    res = gradient_descent(student, X, lr, 400, teacher=teacher)
    assert not res.diverged  # erf is bounded: the loss wanders instead of blowing up
    assert res.escaped and res.escaped_at is not None
    assert res.loss[res.escaped_at] > 2 * res.loss[0]
    assert np.all(res.loss[:res.escaped_at] <= 2 * res.loss[0])
    assert "escaped" in repr(res)
    # a stable step stays in the quadratic regime
    calm = gradient_descent(student, X, 0.5 / lam[-1], 400, teacher=teacher)
    assert not calm.escaped and calm.escaped_at is None and calm.loss[-1] < calm.loss[0]
