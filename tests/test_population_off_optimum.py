"""The population Hessian off the optimum and its exact span reduction (THEORY.md g).

References (tests/reference.py): central differences of the closed-form population
gradient (itself checked against differences of the population loss and Monte Carlo in
tests/test_population.py), the sampled twin Hessian J^T J / P + residual at growing P,
and eigh of the dense matrix for the reduction.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import fasthess as fh
from fasthess.population_hessian import dense_hessian, population_hessian, population_matmat
from fasthess.population_objective import population_gradient
from fasthess.population_span import span_reduction

from . import reference as ref
from .conftest import (RTOL_FD_POPULATION, RTOL_FLOAT32, RTOL_POP_REDUCED,
                       RTOL_POP_SAME_FUNCTION, SOFTPLUS, rel_err)

P = fh.POPULATION
KEYS = {"erf": "erf", "relu": "relu", "tanh": "tanh", "quadratic": "quadratic",
        "cubic": fh.Polynomial([0.3, 1.0, 0.5, -0.2]), "linear": "linear",
        "softplus": SOFTPLUS}


def _pair(key, n_in=4, n_hidden=3, n_teacher=2, n_out=2, seed=0):
    """A student and a teacher with another number of hidden units."""
    act = KEYS[key]
    teacher = fh.TwoLayerNet.random(n_in, n_teacher, n_out=n_out, activation=act, rng=seed)
    student = fh.TwoLayerNet.random(n_in, n_hidden, n_out=n_out, activation=act, rng=seed + 1)
    return student, teacher


def _fd(student, teacher):
    return ref.fd_jacobian_of(
        lambda th: population_gradient(fh.TwoLayerNet.from_parameters(th, like=student),
                                       teacher), student.parameters())


@pytest.mark.parametrize("key", list(KEYS))
def test_matches_differences_of_the_population_gradient(key):
    # the tanh and custom quadratures converge per call: keep D small for them
    small = key in ("tanh", "softplus")
    student, teacher = _pair(key, n_in=3 if small else 4, seed=3)
    H = fh.hessian(student, P, teacher=teacher)
    fd = _fd(student, teacher)
    assert rel_err(H, fd) <= RTOL_FD_POPULATION
    np.testing.assert_array_equal(H, H.T)
    # the residual term is a sizeable part of H here: the check has teeth
    at_optimum = population_hessian(student, None)
    gn = dense_hessian(at_optimum)
    assert np.max(np.abs(H - gn)) >= 1e-2 * np.max(np.abs(H))


def test_more_teacher_units_and_one_output():
    student, teacher = _pair("erf", n_in=5, n_hidden=2, n_teacher=4, n_out=1, seed=5)
    assert rel_err(fh.hessian(student, P, teacher=teacher), _fd(student, teacher)) \
        <= RTOL_FD_POPULATION


def test_relu_with_a_nearly_parallel_teacher_unit():
    # the pairs below _config.POP_PARALLEL_SINE take the orthonormal-basis form
    student, teacher = _pair("relu", n_in=4, n_hidden=2, n_teacher=2, seed=6)
    w1t = teacher.w1.copy()
    w1t[0] = student.w1[0] * 1.3 + 1e-3 * np.array([0.0, 1.0, -0.5, 0.2])
    teacher = fh.TwoLayerNet(w1t, teacher.w2, "relu")
    ph = population_hessian(student, teacher)
    assert ph.residual.par, "no nearly parallel pair was exercised"
    H = dense_hessian(ph)
    assert rel_err(H, _fd(student, teacher)) <= RTOL_FD_POPULATION
    V = np.random.default_rng(7).standard_normal((student.n_params, 3))
    assert rel_err(population_matmat(ph, V), H @ V) <= 1e-13


@pytest.mark.parametrize("key", ["erf", "relu", "tanh", "cubic"])
def test_same_function_teacher_gives_the_optimum(key):
    student, _ = _pair(key, seed=8)
    H0 = fh.hessian(student, P)
    # an equal copy is the optimum itself: bit for bit
    copy = fh.TwoLayerNet(student.w1.copy(), student.w2.copy(), student.activation)
    np.testing.assert_array_equal(fh.hessian(student, P, teacher=copy), H0)
    # the same function with its units permuted: the residual term is round-off
    perm = [2, 0, 1]
    permuted = fh.TwoLayerNet(student.w1[perm], student.w2[:, perm], student.activation)
    assert rel_err(fh.hessian(student, P, teacher=permuted), H0) <= RTOL_POP_SAME_FUNCTION


@pytest.mark.parametrize("key", ["erf", "tanh", "relu"])
def test_monte_carlo_converges_like_inverse_sqrt(key):
    """The twin J^T J / P + residual over P Gaussian samples -> H_inf, error ~ P^{-1/2}.

    relu: a sampled Hessian has g'' = 0 almost surely, so its mean misses the w1w1
    residual block E[(r . b_j) delta(h_j) x x^T] of the population loss's Hessian (the
    expectation and the second derivative do not commute at the kink): it converges to
    H_inf without that block.
    """
    student, teacher = _pair(key, n_in=3, n_hidden=2, n_teacher=3, n_out=2, seed=9)
    H_inf = fh.hessian(student, P, teacher=teacher)
    if key == "relu":
        d1 = student.n_hidden * student.n_in
        R = H_inf - fh.hessian(student, P)
        assert np.max(np.abs(R[:d1, :d1])) > 1e-2 * np.max(np.abs(H_inf))
        H_inf = H_inf.copy()
        H_inf[:d1, :d1] -= R[:d1, :d1]
    rng = np.random.default_rng(10)
    sizes, reps = [1_000, 10_000, 100_000], [16, 8, 2]
    mean_sq = []
    for p, r in zip(sizes, reps):
        errs = [np.linalg.norm(ref.monte_carlo_hessian(student, teacher, p, rng) - H_inf) ** 2
                for _ in range(r)]
        mean_sq.append(np.mean(errs) / np.linalg.norm(H_inf) ** 2)
    slope = np.polyfit(np.log(sizes), 0.5 * np.log(mean_sq), 1)[0]
    # a relative bias b in H_inf adds b^2 to every squared error and flattens the slope
    assert -0.7 <= slope <= -0.3, (slope, np.sqrt(mean_sq))
    assert math.sqrt(mean_sq[-1]) <= 0.05


@pytest.mark.parametrize("key", ["erf", "relu", "tanh"])
def test_float32(key):
    student, teacher = _pair(key, seed=11)
    H64 = fh.hessian(student, P, teacher=teacher)
    H32 = fh.hessian(student, P, teacher=teacher, dtype=np.float32)
    assert H32.dtype == np.float32 and rel_err(H32, H64) <= RTOL_FLOAT32
    np.testing.assert_array_equal(H32, H32.T)
    op = fh.hessian_operator(student, P, teacher=teacher, dtype=np.float32)
    V = np.random.default_rng(12).standard_normal((student.n_params, 2))
    out = op @ V
    assert out.dtype == np.float32 and rel_err(out, H64 @ V) <= RTOL_FLOAT32


def _plateau():
    """erf, Nh = M = 2, orthonormal teacher rows, teacher w2 = (1, 1); the student's two
    units start identical and stay so under population gradient descent, which ends on
    the symmetric fixed point (the plateau of online learning)."""
    n_in = 5
    teacher = fh.TwoLayerNet(np.eye(n_in)[:2], np.array([[1.0, 1.0]]), "erf")
    w = 0.3 * np.random.default_rng(13).standard_normal(n_in)
    student = fh.TwoLayerNet(np.stack([w, w]), np.array([[0.3, 0.3]]), "erf")
    theta = student.parameters()
    for _ in range(20_000):
        grad = population_gradient(fh.TwoLayerNet.from_parameters(theta, like=student),
                                   teacher)
        theta = theta - grad
        if np.linalg.norm(grad) < 1e-12:
            break
    return fh.TwoLayerNet.from_parameters(theta, like=student), teacher, grad


def test_the_plateau_is_a_saddle():
    student, teacher, grad = _plateau()
    assert np.linalg.norm(grad) < 1e-12
    np.testing.assert_array_equal(student.w1[0], student.w1[1])  # still symmetric
    assert fh.loss(student, P, teacher) > 1e-3  # not the optimum
    spec = fh.eigenvalues(student, P, teacher=teacher)
    ev = np.linalg.eigvalsh(fh.hessian(student, P, teacher=teacher))
    assert spec.method == "reduced"
    assert np.max(np.abs(spec.eigenvalues - ev)) <= RTOL_POP_REDUCED * np.max(np.abs(ev))
    # a clearly negative eigenvalue: a few percent of the largest (measured -6.7 %)
    assert spec[0] < -0.02 * spec[-1]
    w, v = fh.eigsh(student, P, k=1, which="SA", teacher=teacher, rng=0)
    assert w[0] == pytest.approx(spec[0], rel=1e-10)
    # the descent direction lowers the population loss
    step = 1e-3 * v[:, 0]
    moved = fh.TwoLayerNet.from_parameters(student.parameters() + step, like=student)
    assert fh.loss(moved, P, teacher) < fh.loss(student, P, teacher)


# ---------------------------------------------------------------------- the reduction
REDUCTION_CASES = [("erf", None), ("relu", None), ("tanh", None), ("quadratic", None),
                   ("linear", None), ("erf", 2), ("relu", 3), ("tanh", 2), ("cubic", 2)]


@pytest.mark.parametrize("key, n_teacher", REDUCTION_CASES)
def test_reduced_spectrum_equals_the_dense_one(key, n_teacher):
    act = KEYS[key]
    student = fh.TwoLayerNet.random(9, 3, n_out=2, activation=act, rng=14)
    teacher = None if n_teacher is None else fh.TwoLayerNet.random(
        9, n_teacher, n_out=2, activation=act, rng=15)
    spec = fh.eigenvalues(student, P, teacher=teacher)
    ev = np.linalg.eigvalsh(fh.hessian(student, P, teacher=teacher))
    assert spec.method == "reduced" and len(spec) == student.n_params
    assert spec.values.size < student.n_params
    assert np.max(np.abs(spec.eigenvalues - ev)) <= RTOL_POP_REDUCED * np.max(np.abs(ev))


@pytest.mark.parametrize("key", ["erf", "relu", "tanh"])
def test_reduction_with_rank_deficient_w1(key):
    # two student rows equal, one a combination of the teacher's, one equal to a teacher
    # row: r = 3 < Nh + M = 6
    rng = np.random.default_rng(16)
    t1 = rng.standard_normal((2, 8)) / math.sqrt(8)
    s1 = np.stack([t1[0] + t1[1], rng.standard_normal(8) / 3, rng.standard_normal(8) / 3,
                   t1[1]])
    s1[2] = s1[1]
    teacher = fh.TwoLayerNet(t1, np.array([[1.0, -0.5]]), key)
    student = fh.TwoLayerNet(s1, np.array([[0.4, 0.7, -0.2, 0.3]]), key)
    assert span_reduction(student, teacher).rank == 3
    spec = fh.eigenvalues(student, P, teacher=teacher)
    ev = np.linalg.eigvalsh(fh.hessian(student, P, teacher=teacher))
    assert np.max(np.abs(spec.eigenvalues - ev)) <= RTOL_POP_REDUCED * np.max(np.abs(ev))


def test_reduction_against_eigsh_on_the_operator():
    student = fh.TwoLayerNet.random(1000, 8, activation="erf", rng=17)
    teacher = fh.TwoLayerNet.random(1000, 4, activation="erf", rng=18)
    spec = fh.eigenvalues(student, P, teacher=teacher)
    w = fh.eigsh(student, P, k=3, teacher=teacher, which="LA", rng=0,
                 return_eigenvectors=False)
    np.testing.assert_allclose(w, spec[[-3, -2, -1]], rtol=1e-10)
    w = fh.eigsh(student, P, k=2, teacher=teacher, which="SA", rng=0,
                 return_eigenvectors=False)
    np.testing.assert_allclose(w, spec[[0, 1]], rtol=0, atol=1e-10 * spec[-1])


@pytest.mark.parametrize("activation, n_in, n_hidden, n_out", [
    ("quadratic", 7, 3, 1), (fh.Polynomial([0, 0, 1]), 6, 2, 1), ("linear", 8, 3, 2),
    (fh.Polynomial([0, 1, 0, 1]), 5, 2, 1)])
def test_rank_from_the_reduction_equals_the_exact_rank(activation, n_in, n_hidden, n_out):
    """rank H_inf = rank(H_S) + (Ni - r) rank(Bp) = the finite-field rank of J."""
    net = fh.TwoLayerNet.random(n_in, n_hidden, n_out=n_out, activation=activation, rng=19)
    spec = fh.eigenvalues(net, P)
    assert spec.method == "reduced"
    r = fh.numerical_rank(spec)
    assert r.gap_decades > 8, r
    assert r.rank == fh.theory.exact_rank(activation, n_in, n_hidden, n_out, rng=0)
    assert r.rank == fh.numerical_rank(np.linalg.eigvalsh(fh.hessian(net, P))).rank


def test_spectrum_with_multiplicities_acts_like_its_expansion():
    spec = fh.eigenvalues(fh.TwoLayerNet.random(40, 3, n_out=2, rng=20), P)
    full = spec.eigenvalues
    assert len(spec) == full.size == 3 * 42 and int(spec.multiplicities.sum()) == len(spec)
    np.testing.assert_array_equal(np.asarray(spec), full)
    np.testing.assert_array_equal(np.diff(full) >= 0, True)
    for i in (0, 1, 7, 50, -1, -4):
        assert spec[i] == full[i]
    np.testing.assert_array_equal(spec[[3, -2, 0]], full[[3, -2, 0]])
    np.testing.assert_array_equal(spec[10:20], full[10:20])
    with pytest.raises(IndexError, match="out of bounds"):
        spec[len(spec)]
    assert "stored values" in repr(spec)
    with pytest.raises(ValueError, match="multiplicities must be positive"):
        fh.Spectrum(np.zeros(2), "reduced", 0.0, 0.0, np.array([1, 0]))


def test_decay_rate_on_the_reduced_spectrum():
    net = fh.TwoLayerNet.random(30, 3, activation="erf", rng=21)
    ev = np.linalg.eigvalsh(fh.hessian(net, P))
    lr = 1.0 / ev[-1]
    nonzero = ev[np.abs(ev) > fh.numerical_rank(ev).tolerance]
    expected = 2 * np.log(np.max(np.abs(1 - lr * nonzero)))
    assert fh.decay_rate(net, P, lr) == pytest.approx(expected, rel=1e-10)


def test_dense_refusal_names_the_reduced_and_matrix_free_routes():
    big = fh.TwoLayerNet.random(1000, 1000, rng=0)  # D ~ 1e6: H_inf would be 8 TB
    other = fh.TwoLayerNet.random(1000, 10, rng=1)
    for call in (lambda: fh.hessian(big, P, teacher=other),
                 lambda: fh.hessian_blocks(big, P, teacher=other)):
        with pytest.raises(MemoryError, match="method='reduced'.*fasthess.hessian_operator"):
            call()


def test_errors_are_clear():
    net = fh.TwoLayerNet.random(6, 3, rng=22)
    with pytest.raises(ValueError, match="n_in and n_out must match"):
        fh.hessian(net, P, teacher=fh.TwoLayerNet.random(5, 3, rng=23))
    with pytest.raises(ValueError, match="n_in and n_out must match"):
        fh.eigenvalues(net, P, teacher=fh.TwoLayerNet.random(6, 3, n_out=2, rng=23))
    with pytest.raises(NotImplementedError, match="teacher.*activation"):
        fh.hessian(net, P, teacher=fh.TwoLayerNet.random(6, 3, activation="tanh", rng=23))
    with pytest.raises(ValueError, match="method='reduced'.*span all n_in = 2"):
        fh.eigenvalues(fh.TwoLayerNet.random(2, 3, rng=24), P, method="reduced")
    with pytest.raises(ValueError, match="method='reduced' is the exact reduction"):
        fh.eigenvalues(net, fh.gaussian_inputs(10, 6, rng=25), method="reduced")


def test_predicted_loss_on_the_reduced_spectrum():
    net = fh.TwoLayerNet.random(12, 3, n_out=2, activation="erf", rng=26)
    delta = 1e-3 * np.random.default_rng(27).standard_normal(net.n_params)
    lam, V = np.linalg.eigh(fh.hessian(net, P))
    lr = 1.0 / lam[-1]
    c = V.T @ delta
    t = np.arange(8)
    want = 0.5 * np.sum(lam[:, None] * c[:, None] ** 2 * (1 - lr * lam[:, None]) ** (2 * t),
                        axis=0)
    np.testing.assert_allclose(fh.predicted_loss(net, P, delta, lr, 7), want, rtol=1e-10)
