"""The conventions of the SciPy ecosystem: eigsh as SciPy's, rng per SPEC 7,
one argument order, the public Jacobian, short reprs and integer inputs."""
import inspect
import re

import numpy as np
import pytest
import scipy.sparse.linalg

import fasthess as fh
import fasthess.operators
from fasthess import theory
from fasthess._validation import check_rng

from . import reference as ref
from .conftest import (ACTIVATION_AND_CUSTOM_IDS, ACTIVATIONS_AND_CUSTOM, RTOL_EIGSH,
                       RTOL_EIGSH_VECTORS, RTOL_EXACT, RTOL_FD_JACOBIAN, RTOL_FLOAT32,
                       perturbed, rel_err)


@pytest.fixture(scope="module")
def small():
    net = fh.TwoLayerNet.random(4, 5, n_out=2, activation="tanh", rng=0)   # D = 30
    return net, fh.gaussian_inputs(25, 4, rng=1)


# ---------------------------------------------------------------------- 1. eigsh is SciPy's
def test_eigsh_has_scipys_names_and_defaults():
    ours = inspect.signature(fh.eigsh).parameters
    theirs = inspect.signature(scipy.sparse.linalg.eigsh).parameters
    for name in ("k", "which", "v0", "ncv", "maxiter", "tol", "return_eigenvectors"):
        assert ours[name].default == theirs[name].default, name
    assert ours["return_eigenvectors"].default is True and ours["which"].default == "LM"


def test_eigsh_returns_pairs_like_scipy(small):
    net, X = small
    H = ref.hessian(net, X)
    d = net.n_params
    v0 = np.random.default_rng(5).standard_normal(d)
    w, v = fh.eigsh(net, X, k=4, v0=v0)
    sw, sv = scipy.sparse.linalg.eigsh(H, k=4, v0=v0)
    scale = np.max(np.abs(sw))
    assert w.shape == (4,) and v.shape == (d, 4)
    assert np.max(np.abs(w - np.sort(sw))) < RTOL_EIGSH * scale
    assert np.max(np.abs(H @ v - v * w)) < RTOL_EIGSH_VECTORS * scale
    # unit eigenvectors, each one SciPy's up to sign
    np.testing.assert_allclose(np.linalg.norm(v, axis=0), 1.0, rtol=1e-12)
    overlap = np.abs(np.sum(v * sv[:, np.argsort(sw)], axis=0))
    np.testing.assert_allclose(overlap, 1.0, atol=1e-8)
    only = fh.eigsh(net, X, k=4, v0=v0, return_eigenvectors=False)
    assert isinstance(only, np.ndarray) and only.shape == (4,)
    assert np.max(np.abs(only - w)) < RTOL_EIGSH * scale


def test_eigsh_v0_ncv_maxiter_reach_arpack(small):
    net, X = small
    d = net.n_params
    v0 = np.random.default_rng(3).standard_normal(d)
    w, _ = fh.eigsh(net, X, k=3, v0=v0, ncv=12)
    # a given v0 makes rng irrelevant: the same start, the same iterations
    w_other, _ = fh.eigsh(net, X, k=3, v0=v0, ncv=12, rng=99)
    np.testing.assert_array_equal(w, w_other)
    # maxiter reaches ARPACK: one restart with 4 Lanczos vectors cannot converge
    with pytest.raises(scipy.sparse.linalg.ArpackNoConvergence):
        fh.eigsh(net, X, k=3, which="SM", v0=v0, ncv=4, maxiter=1)
    # a float32 v0 is cast to the operator's dtype (the Hessian's)
    w32, _ = fh.eigsh(net, X, k=3, v0=v0.astype(np.float32), ncv=12)
    assert w32.dtype == np.float64


@pytest.mark.parametrize("kwargs, error, message", [
    ({"ncv": 3}, ValueError, "ncv must be >= 4, got 3"),
    ({"ncv": 31}, ValueError, "ncv must be <= 30, got 31"),
    ({"ncv": 7.0}, TypeError, "ncv must be an integer"),
    ({"maxiter": 0}, ValueError, "maxiter must be >= 1, got 0"),
    ({"v0": np.ones(29)}, ValueError, r"v0 must have length D = 30 \(net.n_params\), got 29"),
    ({"v0": np.zeros(30)}, ValueError, "v0 is the zero vector"),
    ({"v0": np.ones((30, 1))}, ValueError, "v0 must be 1-dimensional"),
    ({"v0": np.ones(30) * 1j}, TypeError, "v0 must hold real numbers"),
    ({"which": "LR"}, ValueError, "which must be one of 'LM', 'SM', 'LA', 'SA', 'BE'"),
])
def test_eigsh_bad_scipy_arguments(small, kwargs, error, message, monkeypatch):
    net, X = small
    # every argument is checked before the operator (and its O(P D) features) is built
    def never(*args, **kw):
        raise AssertionError("the features were computed before the arguments were checked")

    monkeypatch.setattr(fasthess.operators, "features", never)
    with pytest.raises(error, match=message):
        fh.eigsh(net, X, k=3, **kwargs)


@pytest.mark.parametrize("k", [0, 30, 31])
def test_eigsh_checks_k_before_the_features(small, k, monkeypatch):
    net, X = small
    def never(*args, **kw):
        raise AssertionError("the features were computed before k was checked")

    monkeypatch.setattr(fasthess.operators, "features", never)
    with pytest.raises(ValueError, match="k must be"):
        fh.eigsh(net, X, k=k)


def test_eigsh_options_are_keyword_only_after_k(small):
    # SciPy's third positional argument is M: a positional "LM" here must not be misread
    net, X = small
    with pytest.raises(TypeError, match="positional"):
        fh.eigsh(net, X, 3, "LM")


# ---------------------------------------------------------------------- 2. rng per SPEC 7
def test_check_rng_follows_spec7():
    a, b = check_rng(None), check_rng(None)
    assert a.integers(1 << 62) != b.integers(1 << 62)      # None: fresh entropy each time
    assert check_rng(7).integers(1 << 62) == check_rng(7).integers(1 << 62)
    g = np.random.default_rng(1)
    assert check_rng(g) is g                                # a Generator is used as is
    seq = np.random.SeedSequence(4)
    assert check_rng(seq).integers(1 << 62) == np.random.default_rng(4).integers(1 << 62)
    assert check_rng(np.int64(3)).integers(10**9) == np.random.default_rng(3).integers(10**9)
    with pytest.raises(TypeError, match="RandomState is not accepted"):
        check_rng(np.random.RandomState(0))
    with pytest.raises(TypeError, match="rng must be None, an int seed or a numpy.random"):
        check_rng(True)
    with pytest.raises(TypeError, match="rng must be None, an int seed or a numpy.random"):
        check_rng(1.5)
    with pytest.raises(ValueError, match="rng must be a non-negative int seed, got -1"):
        check_rng(-1)


def _draws(small):
    """Each randomised public function as a function of rng, returning a comparable array."""
    net, X = small
    return {
        "TwoLayerNet.random": lambda rng: fh.TwoLayerNet.random(3, 2, rng=rng).parameters(),
        "gaussian_inputs": lambda rng: fh.gaussian_inputs(4, 3, rng=rng),
        "perturb": lambda rng: fh.perturb(net, 0.1, rng=rng).parameters(),
        "spectral_density": lambda rng: fh.spectral_density(net, X, n_probes=2, n_steps=4,
                                                            rng=rng).nodes,
        "trace": lambda rng: np.array(fh.trace(net, X, method="hutchinson", n_probes=4,
                                               rng=rng)),
        # the default v0 is drawn from rng: stopped early (tol = 1e-2), the Ritz vector
        # still carries the start
        "eigsh": lambda rng: _ritz_vector(fh.eigsh(net, X, k=1, ncv=3, tol=1e-2, rng=rng)),
    }


def _ritz_vector(pair):
    v = pair[1][:, 0]
    return v * np.sign(v[0])  # an eigenvector's sign is arbitrary


@pytest.mark.parametrize("name", ["TwoLayerNet.random", "gaussian_inputs", "perturb",
                                  "spectral_density", "trace", "eigsh"])
def test_every_random_function_takes_rng(small, name):
    draw = _draws(small)[name]
    # an int reproduces, a Generator is the same stream as that int
    np.testing.assert_array_equal(draw(3), draw(3))
    np.testing.assert_array_equal(draw(np.random.default_rng(3)), draw(3))
    # None is fresh entropy: two calls differ (not seed 0, as it was)
    assert not np.array_equal(draw(None), draw(None))
    # a shared Generator advances between calls
    g = np.random.default_rng(3)
    assert not np.array_equal(draw(g), draw(g))


def test_eigsh_default_v0_is_drawn_from_rng(small):
    net, X = small
    v0 = np.random.default_rng(11).standard_normal(net.n_params)
    w_v0, v_v0 = fh.eigsh(net, X, k=2, v0=v0)
    w_rng, v_rng = fh.eigsh(net, X, k=2, rng=11)
    np.testing.assert_array_equal(w_rng, w_v0)
    np.testing.assert_array_equal(v_rng, v_v0)


def test_gaussian_inputs_is_the_generators_standard_normal():
    np.testing.assert_array_equal(fh.gaussian_inputs(5, 3, rng=7),
                                  np.random.default_rng(7).standard_normal((5, 3)))


def test_exact_rank_takes_rng():
    a = theory.exact_rank("quadratic", 4, 3, rng=np.random.default_rng(2))
    assert a == theory.exact_rank("quadratic", 4, 3, rng=2) == theory.exact_rank(
        "quadratic", 4, 3) == theory.effective_parameters("quadratic", 4, 3)


@pytest.mark.parametrize("call", [
    lambda net, X: fh.TwoLayerNet.random(3, 2, seed=0),
    lambda net, X: fh.gaussian_inputs(3, 2, seed=0),
    lambda net, X: fh.perturb(net, 0.1, seed=0),
    lambda net, X: fh.eigsh(net, X, k=2, seed=0),
    lambda net, X: fh.spectral_density(net, X, seed=0),
    lambda net, X: fh.trace(net, X, method="hutchinson", seed=0),
    lambda net, X: theory.exact_rank("linear", 3, 2, seed=0),
], ids=["random", "gaussian_inputs", "perturb", "eigsh", "spectral_density", "trace",
        "exact_rank"])
def test_seed_keyword_is_gone(small, call):
    net, X = small
    with pytest.raises(TypeError, match="seed"):
        call(net, X)


# ---------------------------------------------------------------------- 3. argument order
TAKES_X = [fh.hessian, fh.hessian_blocks, fh.hessian_operator, fh.ntk, fh.jacobian,
           fh.jacobian_operator, fh.eigenvalues, fh.eigsh, fh.smallest_nonzero,
           fh.spectral_density, fh.trace, fh.loss, fh.gradient, fh.gradient_descent,
           fh.predicted_loss, fh.decay_rate]


@pytest.mark.parametrize("func", TAKES_X, ids=lambda f: f.__name__)
def test_one_argument_order(func):
    params = inspect.signature(func).parameters
    assert list(params)[:2] == ["net", "X"]
    if "teacher" in params:
        assert params["teacher"].default is None


def test_gradient_descent_teacher_is_keyword_only(small):
    assert (inspect.signature(fh.gradient_descent).parameters["teacher"].kind
            is inspect.Parameter.KEYWORD_ONLY)


def test_old_gradient_descent_order_explains_the_new_one():
    teacher = fh.TwoLayerNet.random(3, 2, rng=0)
    student = fh.perturb(teacher, 0.1, rng=1)
    X = fh.gaussian_inputs(10, 3, rng=2)
    # the order of earlier versions: (student, teacher, X, lr, steps)
    with pytest.raises(TypeError, match=re.escape("(net, X, ...)")) as info:
        fh.gradient_descent(student, teacher, X, 0.1, 5)
    assert "teacher=teacher" in str(info.value)
    res = fh.gradient_descent(student, X, 0.1, 5, teacher=teacher)
    assert res.loss[0] == pytest.approx(fh.loss(student, X, teacher=teacher), rel=RTOL_EXACT)


@pytest.mark.parametrize("call", [
    lambda s, t, X: fh.loss(s, t),
    lambda s, t, X: fh.gradient(s, t),
    lambda s, t, X: fh.hessian(s, t),
    lambda s, t, X: fh.eigenvalues(s, t),
    lambda s, t, X: fh.trace(s, t),
    lambda s, t, X: fh.jacobian(s, t),
    lambda s, t, X: fh.predicted_loss(s, t, np.zeros(s.n_params), 0.1, 3),
], ids=["loss", "gradient", "hessian", "eigenvalues", "trace", "jacobian", "predicted_loss"])
def test_a_network_where_X_goes_is_refused_with_the_order(call):
    teacher = fh.TwoLayerNet.random(3, 2, rng=0)
    student = fh.perturb(teacher, 0.1, rng=1)
    X = fh.gaussian_inputs(10, 3, rng=2)
    with pytest.raises(TypeError, match=re.escape("X is a TwoLayerNet, not inputs: fasthess "
                                                  "takes (net, X, ...)")):
        call(student, teacher, X)


def test_loss_and_gradient_take_teacher_by_keyword_or_position():
    teacher = fh.TwoLayerNet.random(3, 2, rng=0)
    student = fh.perturb(teacher, 0.1, rng=1)
    X = fh.gaussian_inputs(10, 3, rng=2)
    want = ref.loss(student, X, teacher)
    assert fh.loss(student, X, teacher=teacher) == pytest.approx(want, rel=RTOL_EXACT)
    assert fh.loss(student, X, teacher) == fh.loss(student, X, teacher=teacher)
    assert fh.loss(student, X) == 0.0                       # no teacher: the optimum
    np.testing.assert_array_equal(fh.gradient(student, X, teacher=teacher),
                                  fh.gradient(student, X, teacher))
    assert not np.any(fh.gradient(student, X))


# ---------------------------------------------------------------------- 4. the Jacobian
@pytest.mark.parametrize("n_out", [1, 3])
@pytest.mark.parametrize("activation", ACTIVATIONS_AND_CUSTOM, ids=ACTIVATION_AND_CUSTOM_IDS)
def test_jacobian_matches_twin_and_finite_differences(activation, n_out):
    net = fh.TwoLayerNet.random(3, 4, n_out=n_out, activation=activation, rng=2)
    X = fh.gaussian_inputs(7, 3, rng=3)
    J = fh.jacobian(net, X)
    assert J.shape == (7 * n_out, net.n_params) and J.dtype == np.float64
    assert rel_err(J, ref.jacobian(net, X)) < RTOL_EXACT
    assert rel_err(J, ref.fd_jacobian(net, X)) < RTOL_FD_JACOBIAN
    # rows (sample, output), sample-major: row mu * n_out + k is d y_k(x_mu) / d theta
    theta = net.parameters()
    e = np.zeros_like(theta)
    e[5] = 1e-6
    dy = (ref.outputs_of_parameters(theta + e, net, X)
          - ref.outputs_of_parameters(theta - e, net, X)) / 2e-6
    np.testing.assert_allclose(J[:, 5].reshape(7, n_out), dy, rtol=0,
                               atol=RTOL_FD_JACOBIAN * np.max(np.abs(J)))


def test_jacobian_float32_and_integer_inputs():
    net = fh.TwoLayerNet.random(3, 4, n_out=2, activation="erf", rng=4)
    X = fh.gaussian_inputs(9, 3, rng=5)
    J32 = fh.jacobian(net, X, dtype=np.float32)
    assert J32.dtype == np.float32
    assert rel_err(J32, ref.jacobian(net, X)) < RTOL_FLOAT32
    assert fh.jacobian(net.astype(np.float32), X).dtype == np.float32
    Xi = np.arange(18).reshape(9, 2).repeat([1, 2], axis=1) % 3 - 1   # integers -1, 0, 1
    assert rel_err(fh.jacobian(net, Xi), ref.jacobian(net, Xi.astype(np.float64))) < RTOL_EXACT


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_jacobian_operator_products_match_the_twin(dtype):
    net = fh.TwoLayerNet.random(3, 4, n_out=2, activation="quadratic", rng=6)
    X = fh.gaussian_inputs(8, 3, rng=7)
    J = ref.jacobian(net, X)
    op = fh.jacobian_operator(net, X, dtype=dtype)
    assert op.shape == J.shape == (16, net.n_params) and op.dtype == dtype
    tol = RTOL_EXACT if dtype == np.float64 else RTOL_FLOAT32
    rng = np.random.default_rng(8)
    v = rng.standard_normal(J.shape[1])
    u = rng.standard_normal(J.shape[0])
    V = rng.standard_normal((J.shape[1], 3))
    U = rng.standard_normal((J.shape[0], 3))
    checks = {
        "matvec": (op.matvec(v), J @ v), "@": (op @ v, J @ v),
        "matmat": (op.matmat(V), J @ V), "rmatvec": (op.rmatvec(u), J.T @ u),
        "rmatmat": (op.rmatmat(U), J.T @ U), ".T": (op.T @ u, J.T @ u),
        ".H": (op.H.matmat(U), J.T @ U), ".T.T": (op.T.T @ v, J @ v),
        "J^T J / P": ((op.T @ (op @ V)) / 8, ref.hessian(net, X) @ V),
    }
    for name, (got, want) in checks.items():
        assert got.shape == want.shape, name
        assert rel_err(got, want) < tol, name
    assert op.T.shape == (net.n_params, 16)


def test_jacobian_operator_complex_operands():
    net = fh.TwoLayerNet.random(3, 4, n_out=2, activation="tanh", rng=9)
    X = fh.gaussian_inputs(6, 3, rng=10)
    J = ref.jacobian(net, X)
    op = fh.jacobian_operator(net, X)
    rng = np.random.default_rng(11)
    v = rng.standard_normal(J.shape[1]) + 1j * rng.standard_normal(J.shape[1])
    u = rng.standard_normal(J.shape[0]) - 2j * rng.standard_normal(J.shape[0])
    jv, jtu = op @ v, op.rmatvec(u)
    assert np.iscomplexobj(jv) and np.iscomplexobj(jtu)
    assert _complex_rel_err(jv, J @ v) < RTOL_EXACT
    # J is real, so J^H u = J^T u
    assert _complex_rel_err(jtu, J.T @ u) < RTOL_EXACT
    assert _complex_rel_err(op.matmat(np.stack([v, 2 * v], axis=1)),
                            J @ np.stack([v, 2 * v], axis=1)) < RTOL_EXACT
    with pytest.raises(TypeError, match="V must hold numbers"):
        op.matmat(np.array([["a"]] * net.n_params))


def _complex_rel_err(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_jacobian_operator_owns_a_copy_of_X():
    net = fh.TwoLayerNet.random(3, 4, rng=12)
    X = fh.gaussian_inputs(6, 3, rng=13)
    op = fh.jacobian_operator(net, X)
    v = np.ones(net.n_params)
    before = op @ v
    X *= 3.0
    np.testing.assert_array_equal(op @ v, before)
    assert op.n_samples == 6 and op.net is net


def test_jacobian_refuses_the_population_and_oversize():
    net = fh.TwoLayerNet.random(3, 4, rng=0)
    for func in (fh.jacobian, fh.jacobian_operator):
        with pytest.raises(ValueError, match="POPULATION .* has no finite Jacobian"):
            func(net, fh.POPULATION)
        with pytest.raises(ValueError, match="X must have shape"):
            func(net, fh.gaussian_inputs(3, 4, rng=1))
        with pytest.raises(TypeError, match="net must be a fasthess.TwoLayerNet"):
            func(np.eye(3), fh.gaussian_inputs(3, 3, rng=1))


def test_jacobian_refused_before_allocating(monkeypatch):
    monkeypatch.setenv("FASTHESS_MEMORY_LIMIT", "100000")
    net = fh.TwoLayerNet.random(3, 4, rng=0)                 # D = 16
    X = fh.gaussian_inputs(1000, 3, rng=1)                   # J is 128,000 bytes
    with pytest.raises(MemoryError, match=r"Jacobian \(1000 x 16, float64\) needs 128,000 "
                                          r"bytes.*fasthess.jacobian_operator"):
        fh.jacobian(net, X)
    assert fh.jacobian_operator(net, X).shape == (1000, 16)  # matrix-free still works


# ---------------------------------------------------------------------- 5. integer inputs
def test_integer_inputs_are_upcast_everywhere_and_documented():
    net = fh.TwoLayerNet.random(2, 3, n_out=2, activation="erf", rng=0)
    Xi = np.array([[1, 0], [0, 1], [1, 1], [2, -1], [-1, 2], [0, 2]])
    Xf = Xi.astype(np.float64)
    teacher = perturbed(net, 0.2, seed=1)
    same = {
        "hessian": lambda X: fh.hessian(net, X, teacher=teacher),
        "eigenvalues": lambda X: fh.eigenvalues(net, X).eigenvalues,
        "trace": lambda X: fh.trace(net, X, teacher=teacher),
        "loss": lambda X: fh.loss(net, X, teacher=teacher),
        "gradient": lambda X: fh.gradient(net, X, teacher=teacher),
        "jacobian": lambda X: fh.jacobian(net, X),
        "forward": lambda X: net.forward(X),
        "gradient_descent": lambda X: fh.gradient_descent(net, X, 0.1, 3,
                                                          teacher=teacher).loss,
    }
    for name, f in same.items():
        np.testing.assert_array_equal(f(Xi), f(Xf), err_msg=name)


# ---------------------------------------------------------------------- 6. reprs
def _reprs():
    net = fh.TwoLayerNet.random(6, 5, n_out=2, activation="erf", rng=0)
    X = fh.gaussian_inputs(50, 6, rng=1)
    teacher = perturbed(net, 0.1, seed=2)
    return {
        "Spectrum": (fh.eigenvalues(net, X), ["D=40", "method='dense'", "min=", "max="]),
        "SpectralDensity": (fh.spectral_density(net, X, n_probes=5, n_steps=30, rng=0),
                            ["n_probes=5", "n_steps=30", "nodes=150", "sigma=", "points"]),
        "RankResult": (fh.numerical_rank(fh.eigenvalues(net, X)),
                       ["rank=40 of 40", "tolerance=", "full rank: no gap"]),
        "HessianBlocks": (fh.hessian_blocks(net, X),
                          ["w1w1=(30, 30)", "w1w2=(30, 10)", "w2w2=(10, 10)", "float64"]),
        "GDResult": (fh.gradient_descent(net, X, 0.1, 20, teacher=teacher),
                     ["20 steps", "lr=0.1", "loss", "stayed near the optimum"]),
        "HessianOperator": (fh.hessian_operator(net, X, teacher=teacher),
                            ["D=40", "P=50", "at_optimum=False", "'erf'", "float64"]),
        "JacobianOperator": (fh.jacobian_operator(net, X),
                             ["P=50", "n_out=2", "D=40", "'erf'", "float64"]),
        "TwoLayerNet": (net, ["n_in=6", "n_hidden=5", "n_out=2", "'erf'"]),
        "POPULATION": (fh.POPULATION, ["POPULATION"]),
    }


def test_result_reprs_are_short_and_say_what_they_hold():
    for name, (obj, fields) in _reprs().items():
        text = repr(obj)
        assert text.startswith(name) or name == "POPULATION", text
        assert len(text) <= 120, (name, len(text), text)
        assert "\n" not in text, name
        for field in fields:
            assert field in text, (name, field, text)


def test_spectral_density_repr_does_not_grow_with_the_grid():
    net = fh.TwoLayerNet.random(6, 5, rng=0)
    X = fh.gaussian_inputs(50, 6, rng=1)
    sd = fh.spectral_density(net, X, n_probes=5, n_steps=30, rng=0, sigma=1e-4)
    assert sd.grid.size > 10_000 and len(repr(sd)) < 120


def test_rank_repr_and_gap_summary_cover_every_case():
    cases = {
        (1e-17, 0.5, 2.0): ("RankResult(rank=2 of 3", "gap=16.7 decades", "gap 16.7 decades"),
        (0.5, 2.0): ("rank=2 of 2", "full rank: no gap", "full rank: no gap"),
        (0.0, 0.0, 1.0): ("rank=1 of 3", "dropped eigenvalues are exactly 0",
                          "the dropped eigenvalues are exactly 0: no gap"),
        (0.0, 0.0): ("rank=0 of 2", "all eigenvalues are 0", "all eigenvalues are 0: no gap"),
    }
    for values, (head, in_repr, summary) in cases.items():
        r = fh.numerical_rank(np.array(values))
        assert head in repr(r) and in_repr in repr(r), repr(r)
        assert r.gap_summary == summary


def test_submodules_load_on_first_attribute_access():
    # `fh.distributed.hessian_operator` as the README spells it, after `import fasthess as
    # fh` alone, without importing Dask or matplotlib for every user of fasthess
    import subprocess
    import sys

    code = ("import sys, fasthess as fh\n"
            "assert 'fasthess.distributed' not in sys.modules\n"
            "assert 'dask' not in sys.modules and 'matplotlib' not in sys.modules\n"
            "assert callable(fh.distributed.hessian_operator)\n"
            "assert fh.figures.FIGURE_NAMES\n"
            "assert {'distributed', 'figures'} <= set(dir(fh))\n"
            "try:\n"
            "    fh.no_such_name\n"
            "except AttributeError as e:\n"
            "    assert 'no_such_name' in str(e)\n"
            "else:\n"
            "    raise SystemExit('no AttributeError')\n")
    subprocess.run([sys.executable, "-c", code], check=True)
