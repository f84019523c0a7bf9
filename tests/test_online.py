"""Online SGD in the high-dimensional limit: the ODEs and the simulation (THEORY.md g).

References: finite differences of fasthess's population loss in weight space (the
O(lr) drift); tests/reference.py's full tensor Gauss-Hermite rule and Monte Carlo
(I4, and the whole right-hand side, noise and weight decay included); and the
simulation kernel itself (the ODE is its Ni -> infinity limit).
"""
import math

import numba
import numpy as np
import pytest

import fasthess as fh
from fasthess.order_parameters import generalisation_error, ode_rhs, order_parameters

from . import reference as ref

# Drift vs central differences of the population loss (step 1e-6, O(1) weights):
# truncation ~1e-12, cancellation ~1e-16 / 1e-6 = 1e-10, relative to the largest entry.
RTOL_FD_DRIFT = 1e-7
# erf's closed-form I4 vs the tensor Gauss-Hermite rule of 36 nodes per axis at
# variances below ~1 (seen <= 1e-13; at variances ~2 the rule itself is off by 1e-8).
RTOL_I4_QUADRATURE = 1e-10
# Monte Carlo: a mean of iid draws, this many standard errors (per entry; the grids
# below have a few dozen entries, so a 5-sigma miss has probability ~1e-5).
MC_SIGMAS = 5.0
# The generic route (population gradient + Gauss-Hermite I4, doubling to
# ONLINE_QUAD_RTOL = 1e-6 of the lr^2 term) vs the closed form, on erf as a user activation.
RTOL_GENERIC = 1e-6
# ODE vs simulation: the mean of the seeds within this many standard errors of the
# mean, plus the O(1/Ni) bias of finite Ni, bounded by BIAS_PER_INV_NI / Ni relative.
SIM_SIGMAS = 4.0
BIAS_PER_INV_NI = 20.0


def erf_as_custom():
    sq = 1.0 / math.sqrt(2.0)
    c = math.sqrt(2.0 / math.pi)
    return fh.CustomActivation(numba.njit(lambda z: math.erf(z * sq)),
                               numba.njit(lambda z: c * math.exp(-0.5 * z * z)),
                               numba.njit(lambda z: -z * c * math.exp(-0.5 * z * z)),
                               name="erf_custom", no_continuous_symmetry=True)


ERF_CUSTOM = erf_as_custom()


def pair(activation, n_in=30, K=2, M=2, n_out=1, seed=0):
    """A random student and teacher; tanh's first layers at half scale (pre-activation
    variances <= 1), where the Gauss-Hermite rule of the lr^2 term converges fast."""
    teacher = fh.TwoLayerNet.random(n_in, M, n_out=n_out, activation=activation, rng=seed)
    student = fh.TwoLayerNet.random(n_in, K, n_out=n_out, activation=activation, rng=seed + 1)
    if activation == "tanh":
        teacher = fh.TwoLayerNet(0.5 * teacher.w1, teacher.w2, activation)
        student = fh.TwoLayerNet(0.5 * student.w1, student.w2, activation)
    return student, teacher


def fd_population_gradient(student, teacher, eps=1e-6):
    """Central differences of fasthess's population loss in weight space."""
    theta = student.parameters().astype(np.float64)
    grad = np.empty_like(theta)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = eps
        up = fh.TwoLayerNet.from_parameters(theta + e, like=student)
        down = fh.TwoLayerNet.from_parameters(theta - e, like=student)
        grad[i] = (fh.loss(up, fh.POPULATION, teacher) - fh.loss(down, fh.POPULATION, teacher)) \
            / (2 * eps)
    n1 = student.w1.size
    return grad[:n1].reshape(student.w1.shape), grad[n1:].reshape(student.w2.shape)


def rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(np.max(np.abs(b)), 1e-300))


# ---------------------------------------------------------------------- drift
@pytest.mark.parametrize("activation,n_out", [
    ("erf", 1), ("erf", 2), ("linear", 1), ("linear", 2), ("quadratic", 1), ("quadratic", 2),
    ("tanh", 1), (ERF_CUSTOM, 1)], ids=["erf-1", "erf-2", "linear-1", "linear-2",
                                        "quadratic-1", "quadratic-2", "tanh-1", "custom_erf-1"])
def test_drift_is_minus_the_population_gradient(activation, n_out):
    """O(lr) part of dQ, dR and the dW2 equation against FD of the population loss."""
    student, teacher = pair(activation, n_in=4, K=2, M=2, n_out=n_out, seed=3)
    gw1, gw2 = fd_population_gradient(student, teacher)
    w1, w1t = student.w1, teacher.w1
    # f(lr) = lr D + lr^2 E in the first layer: D = 2 f(1) - f(2) / 2
    one = ode_rhs(student, teacher=teacher, lr=1.0, lr2=0.7)
    two = ode_rhs(student, teacher=teacher, lr=2.0, lr2=0.7)
    dQ = 2 * one[0] - two[0] / 2
    dR = 2 * one[1] - two[1] / 2
    assert rel(dQ, -(gw1 @ w1.T + w1 @ gw1.T)) < RTOL_FD_DRIFT
    assert rel(dR, -(gw1 @ w1t.T)) < RTOL_FD_DRIFT
    assert rel(one[2], -0.7 * gw2) < RTOL_FD_DRIFT
    assert rel(two[2], one[2]) < 1e-15  # no lr in the second layer's equation


# ---------------------------------------------------------------------- I4
def _i4_cases():
    rng = np.random.default_rng(7)
    cases = []
    for _ in range(4):
        A = rng.standard_normal((4, 4)) / 3
        cases.append(A @ A.T + 0.1 * np.eye(4))
    B = rng.standard_normal((4, 3)) / 3
    C = B @ B.T  # rank 3
    cases.append(C)
    D = cases[0].copy()  # j = k: a repeated unit
    D[1, :] = D[0, :]
    D[:, 1] = D[:, 0]
    cases.append(D)
    return cases


@pytest.mark.parametrize("case", range(6))
def test_i4_erf_closed_form_vs_quadrature_and_monte_carlo(case):
    from fasthess._kernels.activation import ERF
    from fasthess._kernels.online import i4_closed

    C = _i4_cases()[case]
    erf = fh.TwoLayerNet.random(2, 2, rng=0).activation

    def integrand(h):
        _, d0, _ = ref.activation_closed_form(erf, h[:, 0])
        _, d1, _ = ref.activation_closed_form(erf, h[:, 1])
        g2, _, _ = ref.activation_closed_form(erf, h[:, 2])
        g3, _, _ = ref.activation_closed_form(erf, h[:, 3])
        return d0 * d1 * g2 * g3

    got = i4_closed(ERF, np.ascontiguousarray(C), 0, 1, 2, 3)
    quad = ref.gauss_hermite_expectation(integrand, C, 36)
    assert abs(got - quad) <= RTOL_I4_QUADRATURE * max(abs(quad), 1e-3)
    mean, err = ref.monte_carlo_expectation(integrand, C, 200_000, np.random.default_rng(case))
    assert abs(got - mean) <= MC_SIGMAS * err


# ---------------------------------------------------------------------- whole RHS
@pytest.mark.parametrize("activation,K,M,n_out", [
    ("erf", 2, 3, 1), ("erf", 3, 2, 2), ("linear", 2, 2, 1), ("tanh", 2, 1, 1),
    ("quadratic", 2, 2, 1)])
def test_rhs_vs_monte_carlo_of_the_increments(activation, K, M, n_out):
    """All terms (drift, lr^2 I4, noise, weight decay, lr2) against Monte Carlo."""
    student, teacher = pair(activation, n_in=20, K=K, M=M, n_out=n_out, seed=5)
    kw = dict(lr=0.8, lr2=0.3, noise=0.6, weight_decay=0.05)
    got = ode_rhs(student, teacher=teacher, **kw)
    Q, R, T = order_parameters(student, teacher)
    means, errors = ref.online_increments_monte_carlo(
        student.activation, Q, R, T, student.w2, teacher.w2, kw["lr"], kw["lr2"], kw["noise"],
        kw["weight_decay"], True, 400_000, np.random.default_rng(11))
    for g, m, e in zip(got, means, errors):
        assert np.all(np.abs(g - m) <= MC_SIGMAS * e + 1e-12), (g, m, e)


def test_train_w1_keeps_the_second_layer():
    student, teacher = pair("erf", seed=2)
    res = fh.online_sgd_ode(student, 2.0, teacher=teacher, lr=1.0, train="w1",
                            alpha_eval=[0.0, 2.0])
    assert np.array_equal(res.w2[-1], student.w2)
    sim = fh.online_sgd(student, 60, teacher=teacher, lr=1.0, train="w1", rng=0)
    assert np.array_equal(sim.student.w2, student.w2)


def test_generic_route_matches_the_closed_form():
    """erf as a user activation (population gradient + quadrature) vs erf closed form."""
    student, teacher = pair("erf", n_in=10, K=2, M=2, seed=4)
    custom_s = fh.TwoLayerNet(student.w1, student.w2, ERF_CUSTOM)
    custom_t = fh.TwoLayerNet(teacher.w1, teacher.w2, ERF_CUSTOM)
    kw = dict(lr=1.2, noise=0.3)
    for a, b in zip(ode_rhs(custom_s, teacher=custom_t, **kw),
                    ode_rhs(student, teacher=teacher, **kw)):
        assert rel(a, b) < RTOL_GENERIC
    ra = fh.online_sgd_ode(custom_s, 0.5, teacher=custom_t, alpha_eval=[0.5], rtol=1e-8, **kw)
    rb = fh.online_sgd_ode(student, 0.5, teacher=teacher, alpha_eval=[0.5], rtol=1e-8, **kw)
    assert rel(ra.loss, rb.loss) < RTOL_GENERIC
    assert min(ra.quadrature_nodes) >= 8 and ra.quadrature_change <= 1e-6
    assert rb.quadrature_nodes is None and "closed form" in rb.method


def test_generalisation_error_is_the_population_loss():
    for act in ["erf", "linear", "tanh", "quadratic"]:
        student, teacher = pair(act, n_in=7, seed=9)
        Q, R, T = order_parameters(student, teacher)
        got = generalisation_error(student.activation, Q, R, T, student.w2, teacher.w2)
        assert rel(got, fh.loss(student, fh.POPULATION, teacher)) < 1e-13


# ---------------------------------------------------------------------- ODE vs simulation
def _sim_vs_ode(n_in, seeds, alpha, lr=1.0):
    teacher = fh.TwoLayerNet.random(n_in, 2, rng=100)
    student = fh.TwoLayerNet.random(n_in, 2, rng=101)
    steps = int(alpha * n_in)
    runs = [fh.online_sgd(student, steps, teacher=teacher, lr=lr, record_every=steps // 4,
                          rng=s) for s in seeds]
    alphas = runs[0].alpha
    ode = fh.online_sgd_ode(student, alpha, teacher=teacher, lr=lr, alpha_eval=alphas)
    losses = np.array([r.loss for r in runs])
    return ode.loss, losses


def test_ode_vs_simulation_within_spread_and_gap_shrinks():
    alpha = 4.0
    seeds = range(6)
    gaps = []
    for n_in in (500, 4000):
        ode, losses = _sim_vs_ode(n_in, seeds, alpha)
        mean = losses.mean(axis=0)
        err = losses.std(axis=0, ddof=1) / math.sqrt(len(seeds))
        tol = SIM_SIGMAS * err + BIAS_PER_INV_NI / n_in * ode
        assert np.all(np.abs(mean - ode) <= tol), (n_in, mean, ode, err)
        gaps.append(float(np.sqrt(np.mean((losses - ode) ** 2))))
    # fluctuations of one run fall like Ni^-1/2: 8x the inputs, ~2.8x smaller
    assert gaps[1] < gaps[0] / 1.5, gaps


def test_simulation_reproducible_and_records():
    student, teacher = pair("erf", n_in=50, seed=1)
    a = fh.online_sgd(student, 120, teacher=teacher, lr=0.5, record_every=50, rng=4,
                      noise=0.2, weight_decay=0.01)
    b = fh.online_sgd(student, 120, teacher=teacher, lr=0.5, record_every=50, rng=4,
                      noise=0.2, weight_decay=0.01)
    assert a.steps.tolist() == [0, 50, 100, 120]
    assert np.array_equal(a.loss, b.loss)
    assert a.loss[0] == pytest.approx(fh.loss(student, fh.POPULATION, teacher), rel=1e-13)
    Q, R, _ = order_parameters(a.student, teacher)
    assert rel(a.Q[-1], Q) < 1e-12 and rel(a.R[-1], R) < 1e-12


def test_simulation_one_step_by_hand():
    """One step of the kernel against the update written out with the same sample."""
    student, teacher = pair("tanh", n_in=9, K=2, M=3, n_out=2, seed=6)
    lr, lr2, wd = 0.7, 0.4, 0.1
    res = fh.online_sgd(student, 1, teacher=teacher, lr=lr, lr2=lr2, weight_decay=wd,
                        rng=np.random.default_rng(3))
    x = np.random.default_rng(3).standard_normal(9)
    act = student.activation
    gs, ds, _ = ref.activation_closed_form(act, student.w1 @ x)
    gt, _, _ = ref.activation_closed_form(act, teacher.w1 @ x)
    r = student.w2 @ gs - teacher.w2 @ gt
    d = ds * (student.w2.T @ r)
    w1 = (1 - wd / 9) * student.w1 - lr / 9 * np.outer(d, x)
    w2 = (1 - wd / 9) * student.w2 - lr2 / 9 * np.outer(r, gs)
    assert rel(res.student.w1, w1) < 1e-13 and rel(res.student.w2, w2) < 1e-13


# ---------------------------------------------------------------------- errors
def test_refusals():
    student, teacher = pair("erf")
    with pytest.raises(TypeError, match="teacher"):
        fh.online_sgd_ode(student, 1.0, teacher=None, lr=1.0)
    with pytest.raises(ValueError, match="lr"):
        fh.online_sgd_ode(student, 1.0, teacher=teacher, lr=-1.0)
    with pytest.raises(ValueError, match="train"):
        fh.online_sgd(student, 10, teacher=teacher, lr=1.0, train="w2")
    with pytest.raises(ValueError, match="alpha_eval"):
        fh.online_sgd_ode(student, 1.0, teacher=teacher, lr=1.0, alpha_eval=[0.5, 0.2])
    relu_s, relu_t = pair("relu")
    with pytest.raises(NotImplementedError, match="relu"):
        fh.online_sgd_ode(relu_s, 1.0, teacher=relu_t, lr=1.0)
    other = fh.TwoLayerNet.random(31, 2, rng=0)
    with pytest.raises(ValueError, match="n_in"):
        fh.online_sgd(student, 10, teacher=other, lr=1.0)
