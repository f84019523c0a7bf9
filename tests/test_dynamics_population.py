"""Population gradient descent in the span, trained layers, and gradient flow.

References: the same GD in the full n_in-dimensional space on fasthess's population
gradient (checked against finite differences of the population loss in
test_population.py); a plain NumPy GD loop of tests/reference.py's gradient; the
closed-form solution of the flow of W2 alone (the loss is quadratic in W2:
W2(t) = W2_inf + (W2(0) - W2_inf) expm(-G t)), with G written out here.
"""
import math

import numpy as np
import pytest
from scipy.linalg import expm

import fasthess as fh

from . import reference as ref

# Span route vs full-space route: the same float64 steps in r instead of n_in
# coordinates (seen <= 2e-15 after 30 steps).
RTOL_SPAN = 1e-12
# Gradient flow (rtol 1e-10) vs its closed form.
RTOL_FLOW_CLOSED = 1e-7
# GD with step lr is a first-order method for the flow: the gap halves with lr.
GAP_RATIO = (1.8, 2.2)


def nets(activation, n_in=50, n_hidden=2, n_out=1, seed=0):
    t = fh.TwoLayerNet.random(n_in, n_hidden, n_out=n_out, activation=activation, rng=seed)
    s = fh.TwoLayerNet.random(n_in, n_hidden, n_out=n_out, activation=activation, rng=seed + 1)
    return s, t


def full_space_gd(student, teacher, lr, steps, train):
    """GD with fasthess's population gradient in all n_in coordinates."""
    n1 = student.w1.size
    mask = np.ones(student.n_params)
    if train == "w1":
        mask[n1:] = 0
    elif train == "w2":
        mask[:n1] = 0
    theta = student.parameters().astype(np.float64)
    losses = []
    for t in range(steps + 1):
        net = fh.TwoLayerNet.from_parameters(theta, like=student)
        losses.append(fh.loss(net, fh.POPULATION, teacher))
        if t < steps:
            theta = theta - lr * mask * fh.gradient(net, fh.POPULATION, teacher)
    return np.array(losses), theta


@pytest.mark.parametrize("activation,train,n_out,steps", [
    ("erf", "both", 1, 30), ("erf", "w1", 2, 30), ("erf", "w2", 1, 30),
    ("linear", "both", 2, 30), ("relu", "both", 1, 30), ("quadratic", "w1", 1, 20),
    ("tanh", "both", 1, 3)])
def test_population_gd_in_the_span_equals_the_full_space(activation, train, n_out, steps):
    student, teacher = nets(activation, n_out=n_out, seed=2)
    lr = 0.3 if activation in ("linear", "quadratic") else 0.8
    res = fh.gradient_descent(student, fh.POPULATION, lr, steps, teacher=teacher, train=train)
    losses, theta = full_space_gd(student, teacher, lr, steps, train)
    assert res.steps.tolist() == list(range(steps + 1))
    np.testing.assert_allclose(res.loss, losses, rtol=RTOL_SPAN, atol=0)
    assert np.max(np.abs(res.student.parameters() - theta)) <= RTOL_SPAN * np.max(np.abs(theta))
    assert res.loss[-1] < res.loss[0]
    frozen = {"w1": res.student.w2, "w2": res.student.w1}.get(train)
    if frozen is not None:
        assert np.array_equal(frozen, student.w2 if train == "w1" else student.w1)


def test_population_gd_cost_does_not_grow_with_n_in():
    """Ni = 1e5 is the same run as Ni = 50 once the rows span the same plane."""
    small_s, small_t = nets("erf", n_in=6, seed=4)
    big_w1 = np.zeros((2, 100_000))
    big_t1 = np.zeros((2, 100_000))
    big_w1[:, :6], big_t1[:, :6] = small_s.w1, small_t.w1
    big_s = fh.TwoLayerNet(big_w1, small_s.w2, "erf")
    big_t = fh.TwoLayerNet(big_t1, small_t.w2, "erf")
    a = fh.gradient_descent(small_s, fh.POPULATION, 0.5, 200, teacher=small_t)
    b = fh.gradient_descent(big_s, fh.POPULATION, 0.5, 200, teacher=big_t)
    np.testing.assert_allclose(a.loss, b.loss, rtol=RTOL_SPAN)


@pytest.mark.parametrize("train", ["w1", "w2"])
def test_sampled_gd_trains_only_the_chosen_layer(train):
    student, teacher = nets("tanh", n_in=3, seed=5)
    X = fh.gaussian_inputs(20, 3, rng=6)
    res = fh.gradient_descent(student, X, 0.2, 15, teacher=teacher, train=train)
    theta = student.parameters().astype(np.float64)
    n1 = student.w1.size
    mask = np.ones(theta.size)
    mask[n1:] = 0 if train == "w1" else 1
    mask[:n1] = 0 if train == "w2" else 1
    for _ in range(15):
        net = ref.network_from_parameters(theta, student)
        theta = theta - 0.2 * mask * ref.gradient(net, X, teacher)
    np.testing.assert_allclose(res.student.parameters(), theta, rtol=1e-11, atol=1e-14)


# ---------------------------------------------------------------------- gradient flow
def _erf_gram(A, B):
    """E[g(a.x) g(b.x)] for the library's erf, rows of A against rows of B (twin)."""
    na = 1 + np.sum(A * A, axis=1)
    nb = 1 + np.sum(B * B, axis=1)
    return 2 / math.pi * np.arcsin(A @ B.T / np.sqrt(np.outer(na, nb)))


@pytest.mark.parametrize("activation", ["erf", "linear"])
def test_population_flow_of_w2_has_its_closed_form(activation):
    student, teacher = nets(activation, n_in=20, n_out=2, seed=7)
    gram = _erf_gram if activation == "erf" else (lambda A, B: A @ B.T)
    G = gram(student.w1, student.w1)
    Gst = gram(student.w1, teacher.w1)
    w2_inf = teacher.w2 @ Gst.T @ np.linalg.inv(G)
    t_eval = np.array([0.0, 0.5, 2.0, 6.0])
    res = fh.gradient_flow(student, fh.POPULATION, 6.0, teacher=teacher, t_eval=t_eval,
                           train="w2", rtol=1e-11, atol=1e-13)
    want = w2_inf + (student.w2 - w2_inf) @ expm(-G * 6.0)
    assert np.max(np.abs(res.student.w2 - want)) <= RTOL_FLOW_CLOSED * np.max(np.abs(want))
    np.testing.assert_allclose(res.student.w1, student.w1, rtol=1e-14, atol=1e-15)


def test_sampled_linear_flow_of_w2_has_its_closed_form():
    student, teacher = nets("linear", n_in=4, n_out=2, seed=8)
    X = fh.gaussian_inputs(25, 4, rng=9)
    A = X @ student.w1.T
    G = A.T @ A / 25
    w2_inf = np.linalg.solve(G, A.T @ (X @ teacher.w1.T @ teacher.w2.T) / 25).T
    res = fh.gradient_flow(student, X, 3.0, teacher=teacher, t_eval=[0.0, 3.0], train="w2",
                           rtol=1e-11, atol=1e-13)
    want = w2_inf + (student.w2 - w2_inf) @ expm(-G * 3.0)
    assert np.max(np.abs(res.student.w2 - want)) <= RTOL_FLOW_CLOSED * np.max(np.abs(want))
    assert res.jacobian.startswith("minus the exact Hessian")


@pytest.mark.parametrize("population", [False, True])
def test_gd_converges_to_the_flow_at_first_order(population):
    student, teacher = nets("erf", n_in=4, seed=10)
    X = fh.POPULATION if population else fh.gaussian_inputs(30, 4, rng=11)
    flow = fh.gradient_flow(student, X, 1.0, teacher=teacher, t_eval=[0.0, 1.0], rtol=1e-11,
                            atol=1e-13)
    target = flow.student.parameters()
    change = np.max(np.abs(target - student.parameters()))
    gaps = []
    for lr in (2e-3, 1e-3):
        gd = fh.gradient_descent(student, X, lr, int(round(1.0 / lr)), teacher=teacher)
        gaps.append(np.max(np.abs(gd.student.parameters() - target)))
    assert gaps[1] < 1e-2 * change
    assert GAP_RATIO[0] < gaps[0] / gaps[1] < GAP_RATIO[1], gaps


def test_flow_refusals():
    student, teacher = nets("erf", n_in=3)
    with pytest.raises(ValueError, match="train"):
        fh.gradient_flow(student, fh.POPULATION, 1.0, teacher=teacher, train="w3")
    with pytest.raises(ValueError, match="t_eval"):
        fh.gradient_flow(student, fh.POPULATION, 1.0, teacher=teacher, t_eval=[2.0])
    with pytest.raises(ValueError, match="train"):
        fh.gradient_descent(student, fh.POPULATION, 0.1, 3, teacher=teacher, train="none")


@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_population_gd_teacher_of_another_width(activation):
    """K = 3 students learning an M = 2 teacher: span route vs the full space."""
    teacher = fh.TwoLayerNet.random(20, 2, activation=activation, rng=12)
    student = fh.TwoLayerNet.random(20, 3, activation=activation, rng=13)
    res = fh.gradient_descent(student, fh.POPULATION, 0.5, 20, teacher=teacher)
    losses, theta = full_space_gd(student, teacher, 0.5, 20, "both")
    np.testing.assert_allclose(res.loss, losses, rtol=RTOL_SPAN, atol=0)
    assert np.max(np.abs(res.student.parameters() - theta)) <= RTOL_SPAN * np.max(np.abs(theta))
