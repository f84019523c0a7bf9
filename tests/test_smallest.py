"""fasthess.smallest: the nonzero eigenvalues closest to zero, exact and matrix-free (LOBPCG)."""
from __future__ import annotations

import numpy as np
import pytest

import fasthess as fh
import fasthess.smallest as smallest_module
from fasthess import _config
from fasthess._features import check_point
from fasthess.smallest import hessian_diagonal, known_null_directions, smallest_nonzero

from . import reference as ref

P = fh.POPULATION
# LOBPCG's eigenvalues against eigh's: each is certified to tol * max|lambda| =
# 2.2e-11 max|lambda| by its residual, against eigenvalues ~1e-6..1e-8 of max|lambda|
RTOL_LOBPCG = 1e-4


def _nonzero_reference(net, X):
    """The nonzero eigenvalues of the reference dense H, ascending (rtol = D eps)."""
    H = fh.hessian(net, X) if X is P else ref.hessian(net, X)
    ev = np.linalg.eigvalsh(H)
    return ev[np.abs(ev) > ev.size * np.finfo(float).eps * np.abs(ev).max()]


@pytest.mark.parametrize("activation, n_in, n_hidden", [
    ("erf", 10, 8), ("tanh", 8, 10), ("relu", 10, 8),
])
@pytest.mark.parametrize("population", [True, False], ids=["population", "sampled"])
def test_lobpcg_finds_the_smallest_nonzero_of_dense_eigh(activation, n_in, n_hidden,
                                                         population):
    net = fh.TwoLayerNet.random(n_in, n_hidden, activation=activation, rng=1)
    X = P if population else fh.gaussian_inputs(3 * net.n_params, n_in, rng=2)
    want = _nonzero_reference(net, X)[:3]
    got = smallest_nonzero(net, X, k=3, method="lobpcg", rng=0)
    np.testing.assert_allclose(got, want, rtol=RTOL_LOBPCG)
    # an eigenvalue, not a zero mode: relu's Nh zeros were held out as constraints
    assert got[0] > 1e3 * net.n_params * np.finfo(float).eps * want[-1]


@pytest.mark.parametrize("activation", ["erf", "relu", "tanh", "quadratic", "linear",
                                        fh.Polynomial([0.3, 1.0, 0.5, -0.2])])
@pytest.mark.parametrize("where", ["population", "optimum", "off_optimum"])
def test_hessian_diagonal_is_that_of_the_dense_hessian(activation, where):
    net = fh.TwoLayerNet.random(5, 4, n_out=2, activation=activation, rng=0)
    teacher = fh.perturb(net, 0.3, rng=3) if where == "off_optimum" else None
    X = P if where == "population" else fh.gaussian_inputs(40, 5, rng=1)
    point = check_point(net, X, teacher)
    H = fh.hessian(net, X) if X is P else ref.hessian(net, X, teacher)
    np.testing.assert_allclose(hessian_diagonal(point), np.diag(H), rtol=1e-12,
                               atol=1e-14 * np.abs(H).max())


@pytest.mark.parametrize("activation, count", [
    ("relu", 4), ("linear", 4), (fh.Polynomial([0, 0, 0, 1]), 4), ("erf", 0),
    ("quadratic", 0),  # z + z^2 is not homogeneous
])
def test_known_null_directions_are_null(activation, count):
    net = fh.TwoLayerNet.random(5, 4, n_out=2, activation=activation, rng=0)
    X = fh.gaussian_inputs(60, 5, rng=1)
    Y = known_null_directions(net)
    assert Y.shape == (net.n_params, count)
    if count:
        J = ref.jacobian(net, X)
        assert np.abs(J @ Y).max() < 1e-13 * np.abs(J).max() * np.abs(Y).max()
        assert np.linalg.matrix_rank(Y) == count


def test_auto_goes_matrix_free_on_the_population_from_the_threshold(monkeypatch):
    net = fh.TwoLayerNet.random(8, 10, activation="erf", rng=1)  # Nh >= Ni: no span reduction
    want = _nonzero_reference(net, P)[:2]

    def no_exact_route(*args, **kwargs):
        raise AssertionError("the exact (dense) route was taken")

    monkeypatch.setattr(_config, "SMALLEST_MATRIX_FREE_MIN_D", net.n_params)
    monkeypatch.setattr(smallest_module, "eigenvalues", no_exact_route)
    np.testing.assert_allclose(smallest_nonzero(net, P, k=2, rng=0), want, rtol=RTOL_LOBPCG)
    # below the threshold, and for samples while the dense route fits: the exact route
    monkeypatch.setattr(_config, "SMALLEST_MATRIX_FREE_MIN_D", net.n_params + 1)
    with pytest.raises(AssertionError, match="exact"):
        smallest_nonzero(net, P, k=2)
    with pytest.raises(AssertionError, match="exact"):
        smallest_nonzero(net, fh.gaussian_inputs(400, 8, rng=2), k=2)


def test_auto_goes_matrix_free_when_the_exact_route_does_not_fit(monkeypatch):
    net = fh.TwoLayerNet.random(10, 8, activation="relu", rng=1)
    X = fh.gaussian_inputs(300, 10, rng=2)
    want = _nonzero_reference(net, X)[:2]
    d = net.n_params
    # room for the operator and LOBPCG's block, not for a D x D matrix
    monkeypatch.setenv("FASTHESS_MEMORY_LIMIT", str(6 * d * d))
    with pytest.raises(MemoryError):
        fh.eigenvalues(net, X)
    np.testing.assert_allclose(smallest_nonzero(net, X, k=2, rng=0), want, rtol=RTOL_LOBPCG)


def test_auto_falls_back_to_the_exact_route_when_lobpcg_does_not_converge(monkeypatch):
    net = fh.TwoLayerNet.random(8, 10, activation="erf", rng=1)  # Nh >= Ni: no span reduction
    monkeypatch.setattr(_config, "SMALLEST_MATRIX_FREE_MIN_D", net.n_params)
    monkeypatch.setattr(_config, "SMALLEST_MAX_ITERATIONS", 2)
    # the exact route's answer, to the bit
    np.testing.assert_array_equal(smallest_nonzero(net, P, k=2, rng=0),
                                  smallest_nonzero(net, P, k=2, method="dense"))
    with pytest.raises(RuntimeError, match=r"did not converge.*above tol"):
        smallest_nonzero(net, P, k=2, method="lobpcg", rng=0)


def test_lobpcg_refusals():
    net = fh.TwoLayerNet.random(10, 8, activation="erf", rng=1)
    X = fh.gaussian_inputs(300, 10, rng=2)
    with pytest.raises(ValueError, match="needs the optimum"):
        smallest_nonzero(net, X, teacher=fh.perturb(net, 0.1, rng=3), method="lobpcg")
    quadratic = fh.TwoLayerNet.random(10, 10, activation="quadratic", rng=1)  # 45 zeros
    with pytest.raises(ValueError, match="null space of this Hessian is not known to be small"):
        smallest_nonzero(quadratic, P, method="lobpcg")
    for kwargs, error, message in [({"method": "arpack"}, ValueError, "method must be one of"),
                                   ({"tol": 0.0}, ValueError, "tol must be finite and > 0"),
                                   ({"maxiter": 0}, ValueError, "maxiter must be >= 1"),
                                   ({"rtol": -1.0}, ValueError, "rtol must be finite and >= 0")]:
        with pytest.raises(error, match=message):
            smallest_nonzero(net, X, **kwargs)


@pytest.mark.parametrize("activation", ["erf", "relu", "tanh"])
def test_population_preconditioner_inverts_the_block_diagonal(activation):
    net = fh.TwoLayerNet.random(6, 4, n_out=2, activation=activation, rng=0)
    H = fh.hessian(net, P)
    d1 = net.n_hidden * net.n_in
    B = np.zeros_like(H)  # the Ni x Ni tile of each unit, and the w2w2 block
    for j in range(net.n_hidden):
        s = slice(j * net.n_in, (j + 1) * net.n_in)
        B[s, s] = H[s, s]
    B[d1:, d1:] = H[d1:, d1:]
    point = check_point(net, P)
    apply = smallest_module._preconditioner(point, fh.hessian_operator(net, P), np.float64)
    V = np.random.default_rng(1).standard_normal((net.n_params, 3))
    np.testing.assert_allclose(apply(B @ V), V, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(apply(B @ V[:, 0]), V[:, 0], rtol=1e-9, atol=1e-9)


def test_reduced_population_spectrum_is_never_expanded(monkeypatch):
    # Nh < Ni: the exact "reduced" route (values with multiplicities); the k smallest
    # nonzero count multiplicities, as the dense spectrum lists them
    net = fh.TwoLayerNet.random(12, 3, activation="erf", rng=0)
    want = _nonzero_reference(net, P)[:8]
    monkeypatch.setattr(fh.Spectrum, "eigenvalues",
                        property(lambda self: pytest.fail("expanded to D values")))
    got = smallest_nonzero(net, P, k=8)
    np.testing.assert_allclose(got, want, rtol=1e-9)
    assert np.unique(np.round(got / want[0], 6)).size < 8   # some values repeat
