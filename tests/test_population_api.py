"""fh.POPULATION through the public API.

The population mathematics itself (closed forms vs quadrature, Monte Carlo convergence,
the structured product vs the dense matrix) is tested in tests/test_population.py; here
every public entry point that takes X is checked to give the population answer, or to
refuse clearly where the population has no meaning.
"""
import re

import numpy as np
import pytest

import fasthess as fh
from fasthess.dynamics import perturb
from fasthess.quadratic_model import decay_rate, predicted_loss

P = fh.POPULATION
ACTS = ["erf", "tanh", "relu", "linear", "quadratic", fh.Polynomial([0.0, 0.5, 0.0, 0.3])]
ACT_IDS = ["erf", "tanh", "relu", "linear", "quadratic", "cubic"]


def _dense(net):
    from fasthess.population import population_coefficients
    from fasthess.population_hessian import assemble_dense

    d = net.n_params
    return assemble_dense(population_coefficients(net), net, np.empty((d, d)))


@pytest.mark.parametrize("activation", ACTS, ids=ACT_IDS)
@pytest.mark.parametrize("n_out", [1, 3])
def test_public_routes_agree_with_the_population_hessian(activation, n_out):
    net = fh.TwoLayerNet.random(5, 4, n_out=n_out, activation=activation, rng=0)
    H = _dense(net)
    scale = np.max(np.abs(H))
    np.testing.assert_array_equal(fh.hessian(net, P), H)
    blocks = fh.hessian_blocks(net, P)
    np.testing.assert_array_equal(blocks.full(), H)
    ev = np.linalg.eigvalsh(H)
    spec = fh.eigenvalues(net, P)
    assert spec.method == "reduced"  # Ni = 5 > rank w1 = 4 (THEORY.md g)
    assert np.max(np.abs(spec.eigenvalues - ev)) < 1e-12 * ev[-1]
    op = fh.hessian_operator(net, P)
    assert op.shape == H.shape and op.n_samples == float("inf")
    V = np.random.default_rng(1).standard_normal((net.n_params, 4))
    assert np.max(np.abs(op @ V - H @ V)) < 1e-13 * scale * np.max(np.abs(V)) * net.n_params
    w, v = fh.eigsh(net, P, k=3)
    np.testing.assert_allclose(w, ev[-3:], rtol=1e-10)
    np.testing.assert_allclose(np.abs(np.einsum("dk,dk->k", v, H @ v)), w, rtol=1e-10)
    assert fh.trace(net, P) == pytest.approx(np.trace(H), rel=1e-13)
    assert fh.trace(net, P, method="hutchinson", n_probes=400, rng=0) == pytest.approx(
        np.trace(H), rel=0.1)


def test_linear_population_spectrum_is_the_closed_form():
    # THEORY.md b with C = I: eig = lambda_a(W2 W2^T) + lambda_b(W1^T W1), plus zeros
    net = fh.TwoLayerNet.random(6, 3, n_out=2, activation="linear", rng=4)
    expected = np.sort(np.concatenate([
        (np.linalg.eigvalsh(net.w2 @ net.w2.T)[:, None]
         + np.linalg.eigvalsh(net.w1.T @ net.w1)[None, :]).ravel(),
        np.zeros(net.n_params - 12)]))
    spec = fh.eigenvalues(net, P, method="linear")
    np.testing.assert_allclose(spec.eigenvalues, expected, rtol=0, atol=1e-12 * expected[-1])
    reduced = fh.eigenvalues(net, P)
    assert reduced.method == "reduced"
    np.testing.assert_allclose(reduced.eigenvalues, expected, rtol=0, atol=1e-12 * expected[-1])
    dense = fh.eigenvalues(net, P, method="dense").eigenvalues
    np.testing.assert_allclose(dense, expected, rtol=0, atol=1e-12 * expected[-1])


@pytest.mark.parametrize("activation, n_in, n_hidden, n_out", [
    ("linear", 6, 3, 1), ("linear", 4, 6, 2), ("quadratic", 5, 5, 1), ("quadratic", 6, 6, 1),
    (fh.Polynomial([0, 0, 1]), 5, 5, 1), (fh.Polynomial([0, 0, 1]), 4, 6, 1),
    ("relu", 4, 3, 1), ("erf", 5, 5, 1), ("erf", 3, 4, 2)])
def test_population_rank_is_the_effective_number_of_parameters(activation, n_in, n_hidden,
                                                                n_out):
    net = fh.TwoLayerNet.random(n_in, n_hidden, n_out=n_out, activation=activation, rng=2)
    r = fh.numerical_rank(fh.eigenvalues(net, P))
    assert r.rank == fh.theory.effective_parameters(activation, n_in, n_hidden, n_out,
                                                    n_samples=None)
    assert r.gap_decades > 8


def test_smallest_nonzero_and_density_on_the_population():
    net = fh.TwoLayerNet.random(5, 5, activation="quadratic", rng=3)
    ev = np.linalg.eigvalsh(_dense(net))
    nonzero = ev[ev > net.n_params * np.finfo(float).eps * ev[-1]]
    np.testing.assert_allclose(fh.smallest_nonzero(net, P, k=2), nonzero[:2], rtol=1e-10)
    sd = fh.spectral_density(net, P, n_probes=4, n_steps=30, rng=0)
    assert np.sum(sd.weights) == pytest.approx(1.0)
    assert sd.nodes.min() > ev[0] - 1e-8 and sd.nodes.max() < ev[-1] + 1e-8
    # the mean of the SLQ measure is tr H / D, estimated from 4 probes
    assert np.sum(sd.weights * sd.nodes) == pytest.approx(np.mean(ev), rel=0.2)


def test_dynamics_prediction_on_the_population_loss():
    net = fh.TwoLayerNet.random(4, 3, activation="erf", rng=5)
    lam, V = np.linalg.eigh(_dense(net))
    lr = 1.0 / lam[-1]
    assert decay_rate(net, P, lr) == pytest.approx(2 * np.log(1 - lr * lam[0]), rel=1e-10)
    delta = perturb(net, 1e-3, rng=6).parameters() - net.parameters()
    c = V.T @ delta
    t = np.arange(6)
    want = 0.5 * np.sum(lam[:, None] * c[:, None] ** 2 * (1 - lr * lam[:, None]) ** (2 * t),
                        axis=0)
    np.testing.assert_allclose(predicted_loss(net, P, delta, lr, 5), want, rtol=1e-10)


def test_optimum_loss_and_gradient_are_zero():
    net = fh.TwoLayerNet.random(3, 2, rng=0)
    assert fh.loss(net, P, teacher=net) == 0.0
    assert np.all(fh.gradient(net, P) == 0)


def test_population_loss_and_gradient_off_the_optimum():
    # the closed forms are checked against Monte Carlo in tests/test_population.py
    from fasthess.population_objective import population_gradient, population_loss

    net = fh.TwoLayerNet.random(4, 3, n_out=2, rng=0)
    teacher = perturb(net, 0.2, rng=1)
    assert fh.loss(net, P, teacher=teacher) == population_loss(net, teacher) > 0
    np.testing.assert_array_equal(fh.gradient(net, P, teacher=teacher),
                                  population_gradient(net, teacher))
    X = fh.gaussian_inputs(200_000, 4, rng=2)
    assert fh.loss(net, X, teacher=teacher) == pytest.approx(fh.loss(net, P, teacher=teacher),
                                                             rel=0.05)


def test_population_without_meaning_is_refused_clearly():
    net = fh.TwoLayerNet.random(3, 2, rng=0)
    with pytest.raises(ValueError, match=r"POPULATION .* has no meaning for fasthess.ntk"):
        fh.ntk(net, P)
    with pytest.raises(ValueError, match="POPULATION .* has no outputs"):
        net.forward(P)
    for method in ("ntk", "svd"):
        with pytest.raises(ValueError, match=f"method='{method}' works on the samples"):
            fh.eigenvalues(net, P, method=method)


@pytest.mark.parametrize("activation", ["erf", "relu", "tanh"])
def test_public_routes_off_the_optimum(activation):
    # student of 3 units, teacher of 2 (M != Nh), No = 2: every route on one dense matrix
    teacher = fh.TwoLayerNet.random(7, 2, n_out=2, activation=activation, rng=7)
    student = fh.TwoLayerNet.random(7, 3, n_out=2, activation=activation, rng=8)
    H = fh.hessian(student, P, teacher=teacher)
    np.testing.assert_array_equal(H, H.T)
    np.testing.assert_array_equal(fh.hessian_blocks(student, P, teacher=teacher).full(), H)
    ev = np.linalg.eigvalsh(H)
    op = fh.hessian_operator(student, P, teacher=teacher)
    assert not op.at_optimum
    V = np.random.default_rng(9).standard_normal((student.n_params, 3))
    assert np.max(np.abs(op @ V - H @ V)) <= 1e-13 * np.max(np.abs(H @ V))
    spec = fh.eigenvalues(student, P, teacher=teacher)
    assert spec.method == "reduced" and len(spec) == student.n_params
    assert np.max(np.abs(spec.eigenvalues - ev)) <= 1e-13 * np.max(np.abs(ev))
    dense = fh.eigenvalues(student, P, teacher=teacher, method="dense")
    assert np.max(np.abs(dense.eigenvalues - ev)) <= 1e-13 * np.max(np.abs(ev))
    w = fh.eigsh(student, P, k=2, which="SA", teacher=teacher, rng=0,
                 return_eigenvectors=False)
    np.testing.assert_allclose(w, ev[:2], rtol=0, atol=1e-10 * np.max(np.abs(ev)))
    assert fh.trace(student, P, teacher=teacher) == pytest.approx(np.trace(H), rel=1e-13)


def test_dense_population_too_large_names_the_operator_route(monkeypatch):
    big = fh.TwoLayerNet.random(1000, 1000, rng=0)  # D ~ 1e6: H_inf would be 8 TB
    with pytest.raises(MemoryError) as info:
        fh.hessian(big, P)
    msg = str(info.value)
    needed = int(re.search(r"needs ([\d,]+) bytes", msg).group(1).replace(",", ""))
    assert needed >= 8 * big.n_params**2
    assert "fasthess.hessian_operator" in msg and "fasthess.eigsh" in msg
    assert "method='reduced'" in msg
    with pytest.raises(MemoryError, match="fasthess.eigsh"):
        fh.eigenvalues(big, P)


@pytest.mark.parametrize("func", [fh.hessian, fh.eigenvalues, fh.eigsh, fh.trace,
                                  fh.spectral_density, fh.smallest_nonzero],
                         ids=lambda f: f.__name__)
def test_docstring_says_what_population_means_its_cost_and_limit(func):
    # a user reading help(fh.eigsh) learns that X may be fh.POPULATION, what it costs,
    # and that it holds at the optimum only
    from numpydoc.docscrape import FunctionDoc

    (x,) = [p for p in FunctionDoc(func)["Parameters"] if p.name.startswith("X")]
    text = " ".join(" ".join(x.desc).split())
    assert "fasthess.POPULATION" in x.type
    assert "fasthess.POPULATION" in text and "O(" in text, text
    assert "optimum" in text, text
