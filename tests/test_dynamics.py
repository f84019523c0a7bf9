"""Gradient descent near the optimum against independent references and the quadratic theory.

References: fasthess.gradient / fasthess.loss (checked against finite differences
elsewhere) and a plain NumPy GD loop written here from THEORY.md's formulas.
Theory checks follow THEORY.md section d: lr = 1 / lambda_max, P = 200,
Delta_0 = scale * N(0, I), slope fitted over the second half of the window where
L > 1e-22.
"""

import numpy as np
import pytest

import fasthess as fh
from fasthess.dynamics import GDResult, gradient_descent, perturb
from fasthess.quadratic_model import decay_rate, predicted_loss

# GD kernel vs fasthess.gradient / fasthess.loss / the NumPy loop: same float64
# operations in a different order, a few ulps per step.
RTOL_EXACT = 1e-11
# Whole simulated curve vs the quadratic model for full-rank activations. The
# deviation is the cubic term, linear in the perturbation: measured max rel. error
# ~1.8 x scale (erf, tanh; 1.8e-4 at scale 1e-4, as THEORY.md d saw 3e-4).
CURVE_RTOL_PER_SCALE = 5.0
# Late-time log-slope vs decay_rate (measured < 4e-3 on the grid below).
RTOL_SLOPE = 0.05
# THEORY.md d: the window ends where the loss reaches this (round-off beyond).
LOSS_FLOOR = 1e-22
N_SAMPLES = 200

# (activation, n_in, n_hidden, seed): teachers whose slowest rate at lr = 1/lambda_max
# is >= 1e-2 per step, so the whole window takes a few thousand steps.
SLOPE_CASES = [
    ("linear", 6, 4, 1),
    ("erf", 2, 2, 6),
    ("tanh", 2, 2, 6),
    ("quadratic", 3, 2, 1),
    ("relu", 3, 2, 1),
]
FULL_RANK = [c for c in SLOPE_CASES if c[0] in ("erf", "tanh")]


def rel_err(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def setup_case(activation, n_in, n_hidden, n_out, seed):
    teacher = fh.TwoLayerNet.random(n_in, n_hidden, n_out=n_out, activation=activation, rng=seed)
    X = fh.gaussian_inputs(N_SAMPLES, n_in, rng=100 + seed)
    lam = np.linalg.eigvalsh(fh.hessian(teacher, X))
    return teacher, X, lam


def window(result):
    """Indices of the records before the loss first reaches LOSS_FLOOR."""
    below = np.flatnonzero(result.loss <= LOSS_FLOOR)
    return np.arange(below[0] if below.size else result.loss.size)


def late_slope(result):
    idx = window(result)
    assert idx.size >= 20, "window too short to fit a slope"
    half = idx[idx.size // 2:]
    return np.polyfit(result.steps[half], np.log(result.loss[half]), 1)[0]


def numpy_gd(student, teacher, X, lr, steps):
    """Plain NumPy full-batch GD (THEORY.md a: dy/dW1 = W2 g'(h) x, dy/dW2 = g(h))."""
    w1 = student.w1.astype(np.float64).copy()
    w2 = student.w2.astype(np.float64).copy()
    Yt = teacher.forward(X)
    P = X.shape[0]
    for _ in range(steps):
        A, G1, _ = student.activation.evaluate(X @ w1.T)
        R = A @ w2.T - Yt
        g2 = R.T @ A / P
        g1 = ((R @ w2) * G1).T @ X / P
        w1 -= lr * g1
        w2 -= lr * g2
    return fh.TwoLayerNet(w1, w2, student.activation)


# ---------------------------------------------------------------------- exactness
@pytest.mark.parametrize("activation", ["linear", "quadratic", "erf", "tanh", "relu"])
@pytest.mark.parametrize("n_out", [1, 2])
def test_first_step_is_theta_minus_lr_gradient(activation, n_out):
    teacher = fh.TwoLayerNet.random(4, 3, n_out=n_out, activation=activation, rng=0)
    student = perturb(teacher, 0.1, rng=1)
    X = fh.gaussian_inputs(30, 4, rng=2)
    theta0 = student.parameters()
    res = gradient_descent(student, X, lr=0.3, steps=1, teacher=teacher)
    expected = theta0 - 0.3 * fh.gradient(student, X, teacher)
    assert rel_err(res.student.parameters(), expected) < RTOL_EXACT
    assert np.array_equal(student.parameters(), theta0), "the student must not be modified"
    assert res.loss[0] == pytest.approx(fh.loss(student, X, teacher), rel=RTOL_EXACT)
    assert res.loss[1] == pytest.approx(fh.loss(res.student, X, teacher), rel=RTOL_EXACT)


@pytest.mark.parametrize("n_out", [1, 2])
def test_loss_record_is_the_loss_of_the_students_it_passed(n_out):
    teacher = fh.TwoLayerNet.random(3, 4, n_out=n_out, activation="erf", rng=3)
    student = perturb(teacher, 0.2, rng=4)
    X = fh.gaussian_inputs(25, 3, rng=5)
    res = gradient_descent(student, X, lr=0.5, steps=7, record_every=3, teacher=teacher)
    assert list(res.steps) == [0, 3, 6, 7]
    for t, L in zip(res.steps, res.loss):
        ref = numpy_gd(student, teacher, X, 0.5, int(t))
        assert L == pytest.approx(fh.loss(ref, X, teacher), rel=RTOL_EXACT)
    assert rel_err(res.student.parameters(), numpy_gd(student, teacher, X, 0.5, 7).parameters()) \
        < RTOL_EXACT
    assert isinstance(res, GDResult) and res.lr == 0.5
    assert res.loss.dtype == np.float64 and res.steps.dtype == np.int64


@pytest.mark.parametrize("steps, record_every, expected", [
    (10, 1, list(range(11))),
    (10, 5, [0, 5, 10]),            # divides: steps // record_every + 1 records
    (10, 3, [0, 3, 6, 9, 10]),      # does not divide: the last step is recorded too
    (3, 10, [0, 3]),
])
def test_record_every_semantics(steps, record_every, expected):
    teacher = fh.TwoLayerNet.random(2, 2, rng=0)
    X = fh.gaussian_inputs(10, 2, rng=1)
    res = gradient_descent(perturb(teacher, 0.1, rng=2), X, 0.1, steps, record_every,
                           teacher=teacher)
    assert list(res.steps) == expected
    assert res.loss.shape == (len(expected),)
    assert not res.diverged and res.diverged_at is None


def test_student_at_the_optimum_stays_there():
    teacher = fh.TwoLayerNet.random(3, 2, rng=0)
    X = fh.gaussian_inputs(10, 3, rng=1)
    res = gradient_descent(teacher, X, 0.5, 5, teacher=teacher)
    assert np.all(res.loss == 0.0) and not res.diverged
    assert np.array_equal(res.student.parameters(), teacher.parameters())


def test_custom_activation_matches_builtin(custom_tanh):
    custom = custom_tanh
    teacher = fh.TwoLayerNet.random(3, 2, n_out=2, activation="tanh", rng=0)
    student = perturb(teacher, 0.1, rng=1)
    X = fh.gaussian_inputs(20, 3, rng=2)
    ref = gradient_descent(student, X, 0.4, 20, record_every=4, teacher=teacher)
    student_c = fh.TwoLayerNet(student.w1, student.w2, custom)
    res = gradient_descent(student_c, X, 0.4, 20, record_every=4, teacher=teacher)
    assert res.student.activation is custom
    assert np.array_equal(res.steps, ref.steps)
    assert rel_err(res.loss, ref.loss) < RTOL_EXACT
    assert rel_err(res.student.parameters(), ref.student.parameters()) < RTOL_EXACT


def test_float32_follows_float64():
    teacher = fh.TwoLayerNet.random(3, 3, n_out=2, activation="erf", rng=0)
    student = perturb(teacher, 0.1, rng=1)
    X = fh.gaussian_inputs(40, 3, rng=2)
    ref = gradient_descent(student, X, 0.5, 30, record_every=10, teacher=teacher)
    res = gradient_descent(student.astype(np.float32), X.astype(np.float32), 0.5, 30,
                           record_every=10, teacher=teacher.astype(np.float32))
    assert res.student.dtype == np.float32
    assert res.loss.dtype == np.float64
    assert rel_err(res.loss, ref.loss) < 1e-5  # 24-bit mantissa over 30 steps (seen 1e-7)


# ---------------------------------------------------------------------- theory
@pytest.mark.parametrize("scale", [1e-4, 1e-3])
@pytest.mark.parametrize("n_out", [1, 2])
@pytest.mark.parametrize("case", FULL_RANK, ids=[c[0] for c in FULL_RANK])
def test_whole_curve_matches_quadratic_model_full_rank(case, n_out, scale):
    name, n_in, n_hidden, seed = case
    teacher, X, lam = setup_case(name, n_in, n_hidden, n_out, seed)
    lr = 1.0 / lam[-1]
    steps = int(40 / abs(decay_rate(teacher, X, lr)))
    student = perturb(teacher, scale, rng=seed + 1)
    res = gradient_descent(student, X, lr, steps, teacher=teacher)
    pred = predicted_loss(teacher, X, student, lr, steps)
    idx = window(res)
    assert idx.size > steps // 2, "the run should cover most of the decay"
    err = np.max(np.abs(res.loss[idx] / pred[res.steps[idx]] - 1))
    assert err < CURVE_RTOL_PER_SCALE * scale


@pytest.mark.parametrize("n_out", [1, 2])
@pytest.mark.parametrize("case", SLOPE_CASES, ids=[c[0] for c in SLOPE_CASES])
def test_late_slope_matches_decay_rate(case, n_out):
    name, n_in, n_hidden, seed = case
    teacher, X, lam = setup_case(name, n_in, n_hidden, n_out, seed)
    lr = 1.0 / lam[-1]
    rate = decay_rate(teacher, X, lr)
    steps = int(40 / abs(rate))
    res = gradient_descent(perturb(teacher, 1e-4, rng=seed + 1), X, lr, steps, teacher=teacher)
    assert not res.diverged
    assert late_slope(res) == pytest.approx(rate, rel=RTOL_SLOPE)


@pytest.mark.parametrize("activation, n_in, n_hidden", [
    ("linear", 2, 4),                       # Nh > Ni: rank 2 of D = 12
    (fh.Polynomial([0, 0, 1]), 3, 3),       # z^2: rank 6 of 12
    ("quadratic", 3, 2),                    # z + z^2: rank 7 of 8
], ids=["linear_wide", "z2", "quadratic"])
def test_slope_with_zero_modes(activation, n_in, n_hidden):
    # THEORY.md d: with zero modes GD lands on a nearby optimum, so only the slope
    # (not the prefactor) is predicted; decay_rate must skip the zero modes.
    teacher, X, lam = setup_case(activation, n_in, n_hidden, 1, seed=1)
    tol = lam.size * np.finfo(float).eps * lam[-1]
    assert np.sum(lam <= tol) > 0, "this case must have zero modes"
    lr = 1.0 / lam[-1]
    rate = decay_rate(teacher, X, lr)
    nonzero = lam[lam > tol]
    assert rate == pytest.approx(2 * np.log(1 - lr * nonzero[0]), rel=1e-12)
    steps = min(int(40 / abs(rate)), 20000)
    res = gradient_descent(perturb(teacher, 1e-4, rng=2), X, lr, steps, teacher=teacher)
    assert late_slope(res) == pytest.approx(rate, rel=RTOL_SLOPE)


def test_decay_rate_rtol_decides_the_zero_modes():
    teacher, X, lam = setup_case("linear", 2, 4, 1, seed=1)
    lr = 1.0 / lam[-1]
    # with a tolerance below round-off every eigenvalue counts: the ~1e-17 "zero
    # modes" are then the slowest, and the rate is ~0
    assert abs(decay_rate(teacher, X, lr, rtol=1e-300)) < 1e-10
    assert decay_rate(teacher, X, lr) < -1e-2
    with pytest.raises(ValueError, match="rtol"):
        decay_rate(teacher, X, lr, rtol=-1.0)


def test_decay_rate_is_positive_above_the_stability_edge():
    teacher, X, lam = setup_case("erf", 2, 2, 1, seed=6)
    lr = 2.5 / lam[-1]
    with pytest.warns(RuntimeWarning, match=r"lr = .* >= 2 / lambda_max"):
        assert decay_rate(teacher, X, lr) == pytest.approx(2 * np.log(1.5), rel=1e-10)


# ---------------------------------------------------------------------- divergence
@pytest.mark.parametrize("lr_factor", [2.5, 1e4])
def test_divergence_is_reported_with_finite_records(lr_factor):
    teacher, X, lam = setup_case("erf", 2, 2, 1, seed=6)
    student = perturb(teacher, 1e-4, rng=7)
    res = gradient_descent(student, X, lr_factor / lam[-1], 2000, record_every=7, teacher=teacher)
    assert res.diverged and res.diverged_at is not None
    assert 0 < res.diverged_at < 2000
    assert np.all(np.isfinite(res.loss)) and np.all(np.isfinite(res.student.parameters()))
    assert res.steps[-1] in (res.diverged_at, res.diverged_at - 1)
    assert res.loss[-1] == pytest.approx(fh.loss(res.student, X, teacher), rel=RTOL_EXACT)
    assert np.all(np.diff(res.steps) > 0)
    if res.steps[-1] == res.diverged_at:
        assert res.loss[-1] > 1e6 * res.loss[0]


def test_stable_just_below_the_edge():
    teacher, X, lam = setup_case("erf", 2, 2, 1, seed=6)
    res = gradient_descent(perturb(teacher, 1e-4, rng=7), X, 1.9 / lam[-1], 500, teacher=teacher)
    assert not res.diverged and res.loss[-1] < res.loss[0]


# ---------------------------------------------------------------------- perturb, predicted_loss
def test_perturb():
    net = fh.TwoLayerNet.random(4, 3, n_out=2, rng=0)
    a = perturb(net, 0.5, rng=1)
    b = perturb(net, 0.5, rng=1)
    assert np.array_equal(a.parameters(), b.parameters())
    assert a.shape == net.shape and a.activation == net.activation
    z = (a.parameters() - net.parameters()) / 0.5
    assert np.allclose(z, np.random.default_rng(1).standard_normal(net.n_params), rtol=1e-12)
    assert np.array_equal(perturb(net, 0.0).parameters(), net.parameters())
    assert perturb(net.astype(np.float32), 0.1, rng=0).dtype == np.float32


def test_predicted_loss_start_and_inputs():
    teacher, X, _ = setup_case("erf", 2, 2, 1, seed=6)
    student = perturb(teacher, 1e-3, rng=1)
    delta = student.parameters() - teacher.parameters()
    H = fh.hessian(teacher, X)
    L = predicted_loss(teacher, X, delta, lr=0.5, steps=10)
    assert L.shape == (11,)
    assert L[0] == pytest.approx(0.5 * delta @ H @ delta, rel=1e-10)
    assert np.array_equal(L, predicted_loss(teacher, X, student, lr=0.5, steps=10))
    assert np.all(np.diff(L) < 0)
    with pytest.raises(ValueError, match="delta0"):
        predicted_loss(teacher, X, delta[:-1], lr=0.5, steps=10)
    with pytest.raises(ValueError, match="delta0"):
        predicted_loss(teacher, X, fh.TwoLayerNet.random(3, 2, rng=0), lr=0.5, steps=10)
    with pytest.raises(ValueError, match="lr"):
        predicted_loss(teacher, X, delta, lr=0.0, steps=10)
    with pytest.raises(ValueError, match="steps"):
        predicted_loss(teacher, X, delta, lr=0.5, steps=-1)


# ---------------------------------------------------------------------- bad input
@pytest.fixture
def pair():
    teacher = fh.TwoLayerNet.random(3, 2, rng=0)
    return teacher, perturb(teacher, 0.1, rng=1), fh.gaussian_inputs(10, 3, rng=2)


@pytest.mark.parametrize("kwargs, error, name", [
    (dict(lr=0.0), ValueError, "lr"),
    (dict(lr=-1.0), ValueError, "lr"),
    (dict(lr="fast"), TypeError, "lr"),
    (dict(steps=0), ValueError, "steps"),
    (dict(steps=2.5), TypeError, "steps"),
    (dict(record_every=0), ValueError, "record_every"),
    (dict(divergence_factor=0.0), ValueError, "divergence_factor"),
])
def test_bad_scalars(pair, kwargs, error, name):
    teacher, student, X = pair
    args = dict(lr=0.1, steps=5)
    args.update(kwargs)
    with pytest.raises(error, match=name):
        gradient_descent(student, X, **args, teacher=teacher)


def test_bad_networks_and_inputs(pair):
    teacher, student, X = pair
    # a student wider than its teacher is valid (only the teacher's outputs enter)
    wide = gradient_descent(fh.TwoLayerNet.random(3, 4, rng=0), X, 0.1, 5, teacher=teacher)
    assert wide.student.n_hidden == 4 and wide.loss[-1] < wide.loss[0]
    with pytest.raises(ValueError, match="teacher"):
        gradient_descent(student, X, 0.1, 5,
                         teacher=fh.TwoLayerNet.random(3, 2, n_out=2, rng=0))
    with pytest.raises(TypeError, match="net must be a fasthess.TwoLayerNet"):
        gradient_descent(student.parameters(), X, 0.1, 5, teacher=teacher)
    with pytest.raises(TypeError, match="teacher must be a fasthess.TwoLayerNet or None"):
        gradient_descent(student, X, 0.1, 5, teacher="the teacher")
    with pytest.raises(ValueError, match="X"):
        gradient_descent(student, fh.gaussian_inputs(10, 4, rng=0), 0.1, 5, teacher=teacher)
    with pytest.raises(ValueError, match="X"):
        gradient_descent(student, X[0], 0.1, 5, teacher=teacher)
    with pytest.raises(ValueError, match="scale"):
        perturb(teacher, -0.1)
    with pytest.raises(TypeError, match="net"):
        perturb(teacher.parameters(), 0.1)
