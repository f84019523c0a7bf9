"""Dense Hessian, blocks, loss, gradient, operator, Jacobian and NTK against the
independent twins of tests/reference.py (and the twins against finite differences)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fasthess as fh
import fasthess._config

from . import reference as ref
from .conftest import (ACTIVATION_AND_CUSTOM_IDS, ACTIVATIONS_AND_CUSTOM, RTOL_EXACT,
                       RTOL_FD_GRADIENT, RTOL_FD_HESSIAN, RTOL_FLOAT32, RTOL_LOSS, RTOL_ZERO_MODE,
                       perturbed, rel_err)

every_activation = pytest.mark.parametrize("activation", ACTIVATIONS_AND_CUSTOM,
                                           ids=ACTIVATION_AND_CUSTOM_IDS)


@every_activation
@pytest.mark.parametrize("n_out", [1, 3])
def test_hessian_at_optimum_matches_twin(activation, n_out):
    net = fh.TwoLayerNet.random(4, 3, n_out=n_out, activation=activation, rng=1)
    X = fh.gaussian_inputs(23, 4, rng=2)
    H = fh.hessian(net, X)
    assert H.shape == (net.n_params, net.n_params)
    assert rel_err(H, ref.hessian(net, X)) < RTOL_EXACT


@every_activation
@pytest.mark.parametrize("n_out", [1, 2])
def test_off_optimum_hessian_matches_twin_and_second_differences(activation, n_out):
    teacher = fh.TwoLayerNet.random(3, 2, n_out=n_out, activation=activation, rng=3)
    student = perturbed(teacher, 0.3, seed=4)
    X = fh.gaussian_inputs(9, 3, rng=5)
    # relu's loss is piecewise: keep every pre-activation far from a kink the stencil could cross
    assert np.min(np.abs(X @ student.w1.T)) > 1e-3
    H = fh.hessian(student, X, teacher=teacher)
    twin = ref.hessian(student, X, teacher)
    assert rel_err(H, twin) < RTOL_EXACT
    # the twin itself against a formula-free check
    assert rel_err(twin, ref.fd_hessian(student, X, teacher)) < RTOL_FD_HESSIAN
    # the residual term must be a sizeable part of H here, or the check has no teeth
    assert rel_err(H, ref.hessian_at_optimum(student, X)) > 1e-3


def test_residual_term_linear_network_is_only_cross_block():
    # For g(z) = z, g'' = 0 so R11 = 0, but R12 != 0 off the optimum.
    teacher = fh.TwoLayerNet.random(3, 2, activation="linear", rng=0)
    student = perturbed(teacher, 0.5, seed=1)
    X = fh.gaussian_inputs(30, 3, rng=2)
    b = fh.hessian_blocks(student, X, teacher=teacher)
    gn = ref.hessian_at_optimum(student, X)
    d1 = 6
    assert rel_err(b.w1w1, gn[:d1, :d1]) < RTOL_EXACT
    assert rel_err(b.w1w2, gn[:d1, d1:]) > 1e-3
    assert rel_err(b.w1w2, ref.hessian_blocks(student, X, teacher)["w1w2"]) < RTOL_EXACT


@every_activation
@pytest.mark.parametrize("n_out", [1, 2])
def test_loss_and_gradient_match_twin_and_central_differences(activation, n_out):
    teacher = fh.TwoLayerNet.random(4, 3, n_out=n_out, activation=activation, rng=6)
    student = perturbed(teacher, 0.2, seed=7)
    X = fh.gaussian_inputs(15, 4, rng=8)
    g = fh.gradient(student, X, teacher)
    assert g.shape == (student.n_params,)
    twin = ref.gradient(student, X, teacher)
    assert rel_err(g, twin) < RTOL_EXACT
    assert rel_err(twin, ref.fd_gradient(student, X, teacher)) < RTOL_FD_GRADIENT
    expected_loss = ref.loss(student, X, teacher)
    assert expected_loss > 1e-4   # far enough from the optimum to mean something
    assert fh.loss(student, X, teacher) == pytest.approx(expected_loss, rel=RTOL_LOSS)


def test_loss_and_gradient_vanish_at_optimum(activation):
    net = fh.TwoLayerNet.random(3, 4, n_out=2, activation=activation, rng=0)
    X = fh.gaussian_inputs(10, 3, rng=1)
    assert fh.loss(net, X, net) == 0.0
    assert not np.any(fh.gradient(net, X, net))
    # an equal but distinct teacher object is the optimum too
    twin = fh.TwoLayerNet(net.w1.copy(), net.w2.copy(), net.activation)
    np.testing.assert_array_equal(fh.hessian(net, X, teacher=twin), fh.hessian(net, X))


@pytest.mark.parametrize("n_out", [1, 2])
def test_hessian_symmetric_psd_at_optimum(activation, n_out):
    net = fh.TwoLayerNet.random(5, 4, n_out=n_out, activation=activation, rng=9)
    X = fh.gaussian_inputs(40, 5, rng=10)
    H = fh.hessian(net, X)
    np.testing.assert_array_equal(H, H.T)
    ev = ref.eigenvalues(net, X)
    assert ev[0] > -RTOL_ZERO_MODE * ev[-1]   # the twin: PSD by construction (a Gram matrix)
    assert rel_err(np.linalg.eigvalsh(H), ev) < RTOL_EXACT


@every_activation
@pytest.mark.parametrize("n_out", [1, 3])
def test_blocks_match_twin_and_assemble_to_hessian(activation, n_out):
    teacher = fh.TwoLayerNet.random(4, 3, n_out=n_out, activation=activation, rng=11)
    student = perturbed(teacher, 0.1, seed=12)
    X = fh.gaussian_inputs(20, 4, rng=13)
    for t in (None, teacher):
        b = fh.hessian_blocks(student, X, teacher=t)
        expected = ref.hessian_blocks(student, X, t)
        d1, d2 = 12, 3 * n_out
        assert b.w1w1.shape == (d1, d1) and b.w1w2.shape == (d1, d2) and b.w2w2.shape == (d2, d2)
        scale = np.max(np.abs(ref.hessian(student, X, t)))
        for name in ("w1w1", "w1w2", "w2w2"):
            err = np.max(np.abs(getattr(b, name) - expected[name])) / scale
            assert err < RTOL_EXACT, (name, err)
        np.testing.assert_array_equal(b.full(), fh.hessian(student, X, teacher=t))


def test_w2w2_block_is_kronecker_of_activation_gram():
    net = fh.TwoLayerNet.random(3, 4, n_out=3, activation="tanh", rng=0)
    X = fh.gaussian_inputs(17, 3, rng=1)
    A, _, _ = ref.activation_values(net, X)
    expected = np.kron(np.eye(3), A.T @ A / 17)
    assert rel_err(fh.hessian_blocks(net, X).w2w2, expected) < RTOL_EXACT


@every_activation
@pytest.mark.parametrize("teacher_offset", [None, 0.2])
@pytest.mark.parametrize("n_out", [1, 2])
def test_float32_matches_float64_twin(activation, n_out, teacher_offset):
    net = fh.TwoLayerNet.random(6, 5, n_out=n_out, activation=activation, rng=14)
    teacher = None if teacher_offset is None else perturbed(net, teacher_offset, seed=15)
    X = fh.gaussian_inputs(200, 6, rng=16)
    H32 = fh.hessian(net, X, teacher=teacher, dtype=np.float32)
    assert H32.dtype == np.float32
    # the twin sees the float32-rounded weights and data the float32 run starts from
    net32 = net.astype(np.float32)
    X32 = X.astype(np.float32)
    teacher32 = None if teacher is None else teacher.astype(np.float32)
    assert rel_err(H32, ref.hessian(net32, X32, teacher32)) < RTOL_FLOAT32
    H32_net = fh.hessian(net32, X32, teacher=teacher32)
    assert H32_net.dtype == np.float32
    assert rel_err(H32_net, ref.hessian(net32, X32, teacher32)) < RTOL_FLOAT32
    if teacher is not None:
        g32 = fh.gradient(net32, X32, teacher32)
        assert g32.dtype == np.float32
        assert rel_err(g32, ref.gradient(net32, X32, teacher32)) < RTOL_FLOAT32


@pytest.mark.parametrize("max_chunk", [1, 7, 64])
def test_chunked_assembly_matches_twin(monkeypatch, max_chunk):
    """Many sample chunks (and the separate-buffer path for chunk < 64) give the same H."""
    net = fh.TwoLayerNet.random(7, 9, n_out=2, activation="erf", rng=17)
    teacher = perturbed(net, 0.1, seed=18)
    X = fh.gaussian_inputs(301, 7, rng=19)
    expected = ref.hessian(net, X, teacher)
    assert rel_err(expected, ref.hessian_at_optimum(net, X)) > 1e-3  # off-optimum for real
    monkeypatch.setattr(fasthess._config, "MAX_CHUNK_SAMPLES", max_chunk)
    monkeypatch.setattr(fasthess._config, "CHUNK_BYTES", 1)
    assert rel_err(fh.hessian(net, X, teacher=teacher), expected) < RTOL_EXACT
    assert rel_err(fh.hessian(net, X), ref.hessian(net, X)) < RTOL_EXACT


@pytest.mark.parametrize("n_in,n_hidden", [(1, 1), (1, 6), (6, 1), (2, 9), (9, 2), (5, 5)])
def test_in_place_workspace_for_extreme_shapes(n_in, n_hidden):
    """S is carved out of H's own rows; shapes where it barely fits must still be exact."""
    net = fh.TwoLayerNet.random(n_in, n_hidden, n_out=2, activation="tanh", rng=3)
    X = fh.gaussian_inputs(50, n_in, rng=4)
    assert rel_err(fh.hessian(net, X), ref.hessian_at_optimum(net, X)) < RTOL_EXACT
    assert rel_err(fh.hessian_blocks(net, X).full(), ref.hessian_at_optimum(net, X)) < RTOL_EXACT


@every_activation
@pytest.mark.parametrize("n_out", [1, 2])
def test_operator_products_match_twin(activation, n_out):
    teacher = fh.TwoLayerNet.random(5, 4, n_out=n_out, activation=activation, rng=20)
    student = perturbed(teacher, 0.2, seed=21)
    X = fh.gaussian_inputs(31, 5, rng=22)
    rng = np.random.default_rng(23)
    for t in (None, teacher):
        H = ref.hessian(student, X, t)
        op = fh.hessian_operator(student, X, teacher=t)
        assert op.shape == H.shape
        v = rng.standard_normal(student.n_params)
        V = rng.standard_normal((student.n_params, 4))
        assert rel_err(op.matvec(v), H @ v) < RTOL_EXACT
        assert rel_err(op.matmat(V), H @ V) < RTOL_EXACT
        assert rel_err(op.rmatvec(v), H @ v) < RTOL_EXACT


@every_activation
@pytest.mark.parametrize("n_out", [1, 3])
def test_jacobian_and_its_products_match_twin(activation, n_out):
    from fasthess._features import check_point, features
    from fasthess.products import jacobian_from_features, jvp, vjp

    net = fh.TwoLayerNet.random(4, 3, n_out=n_out, activation=activation, rng=40)
    X = fh.gaussian_inputs(11, 4, rng=41)
    J = ref.jacobian(net, X)
    f = features(check_point(net, X))
    assert J.shape == (11 * n_out, net.n_params)
    assert rel_err(jacobian_from_features(f), J) < RTOL_EXACT
    rng = np.random.default_rng(42)
    V = rng.standard_normal((net.n_params, 3))
    U = rng.standard_normal((11, n_out, 3))
    jv, _ = jvp(f, V)
    assert rel_err(jv.reshape(11 * n_out, 3), J @ V) < RTOL_EXACT
    assert rel_err(vjp(f, U), J.T @ U.reshape(11 * n_out, 3)) < RTOL_EXACT


@every_activation
@pytest.mark.parametrize("n_out", [1, 3])
def test_ntk_matches_twin_and_shares_nonzero_spectrum(activation, n_out):
    net = fh.TwoLayerNet.random(4, 5, n_out=n_out, activation=activation, rng=24)
    X = fh.gaussian_inputs(6, 4, rng=25)
    K = fh.ntk(net, X)
    assert K.shape == (6 * n_out, 6 * n_out)
    assert rel_err(K, ref.ntk(net, X)) < RTOL_EXACT
    # nonzero eig(J J^T / P) = nonzero eig(J^T J / P): the NTK route's premise
    ek = np.sort(np.linalg.eigvalsh(K))[::-1]
    eh = ref.eigenvalues(net, X)[::-1]
    n = min(ek.size, eh.size)
    assert np.max(np.abs(ek[:n] - eh[:n])) < RTOL_EXACT * eh[0]
    assert np.all(np.abs(eh[n:]) < RTOL_ZERO_MODE * eh[0])


@pytest.mark.parametrize("n_in,n_hidden,n_out", [(3, 3, 1), (4, 6, 1), (3, 5, 2), (2, 4, 3)])
def test_linear_network_rank_is_n_out_times_n_in(n_in, n_hidden, n_out):
    net = fh.TwoLayerNet.random(n_in, n_hidden, n_out=n_out, activation="linear", rng=26)
    D = net.n_params
    X = fh.gaussian_inputs(2 * D + 20, n_in, rng=27)
    ev = np.linalg.eigvalsh(fh.hessian(net, X))[::-1]
    rank = n_out * n_in
    # a gap of many decades separates the rank from the zero modes
    assert ev[rank - 1] > 1e-6 * ev[0]
    assert np.all(np.abs(ev[rank:]) < RTOL_ZERO_MODE * ev[0])


@settings(max_examples=25, deadline=None)
@given(n_in=st.integers(1, 5), n_hidden=st.integers(1, 5), n_out=st.integers(1, 3),
       n_samples=st.integers(1, 12), seed=st.integers(0, 2**31 - 1),
       act=st.sampled_from(["linear", "quadratic", "erf", "tanh", "relu"]))
def test_property_hessian_equals_jacobian_gram(n_in, n_hidden, n_out, n_samples, seed, act):
    net = fh.TwoLayerNet.random(n_in, n_hidden, n_out=n_out, activation=act, rng=seed)
    X = fh.gaussian_inputs(n_samples, n_in, rng=seed + 1)
    H = fh.hessian(net, X)
    expected = ref.hessian(net, X)
    if np.max(np.abs(expected)) == 0:  # e.g. relu with every unit off on these samples
        np.testing.assert_array_equal(H, 0)
    else:
        assert rel_err(H, expected) < RTOL_EXACT


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), act=st.sampled_from(["quadratic", "erf", "tanh"]))
def test_property_hidden_unit_permutation_permutes_hessian(seed, act):
    """Relabelling hidden units permutes theta and so H: a symmetry the kernels must respect."""
    net = fh.TwoLayerNet.random(3, 4, n_out=2, activation=act, rng=seed)
    X = fh.gaussian_inputs(11, 3, rng=seed + 1)
    perm = np.random.default_rng(seed).permutation(4)
    permuted = fh.TwoLayerNet(net.w1[perm], net.w2[:, perm], act)
    idx = np.arange(net.n_params)
    w1_idx = idx[:12].reshape(4, 3)[perm].ravel()
    w2_idx = idx[12:].reshape(2, 4)[:, perm].ravel()
    order = np.concatenate([w1_idx, w2_idx])
    H = fh.hessian(net, X)
    assert rel_err(fh.hessian(permuted, X), H[np.ix_(order, order)]) < RTOL_EXACT


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), c=st.floats(0.2, 5.0))
def test_property_relu_rescaling_is_a_zero_mode(seed, c):
    """For relu, (w_j, b_j) -> (c w_j, b_j / c) leaves the function unchanged: the
    tangent (w_j, -b_j) is in the kernel of H at the optimum."""
    net = fh.TwoLayerNet.random(3, 3, n_out=2, activation="relu", rng=seed)
    X = fh.gaussian_inputs(25, 3, rng=seed + 1)
    H = fh.hessian(net, X)
    v1 = np.zeros((3, 3))
    v2 = np.zeros((2, 3))
    v1[1] = net.w1[1]
    v2[:, 1] = -net.w2[:, 1]
    v = np.concatenate([v1.ravel(), v2.ravel()])
    assert np.linalg.norm(H @ v) < 1e-12 * np.linalg.norm(H) * np.linalg.norm(v)
    scaled = fh.TwoLayerNet(net.w1 * np.array([[1], [c], [1]]), net.w2 / np.array([1, c, 1]),
                            "relu")
    np.testing.assert_allclose(scaled.forward(X), net.forward(X), rtol=1e-12, atol=1e-14)


def test_custom_activation_matches_builtin(custom_tanh):
    custom = custom_tanh
    builtin = fh.TwoLayerNet.random(3, 4, n_out=2, activation="tanh", rng=0)
    net = fh.TwoLayerNet(builtin.w1, builtin.w2, custom)
    X = fh.gaussian_inputs(13, 3, rng=1)
    teacher = perturbed(builtin, 0.1, seed=2)
    assert rel_err(fh.hessian(net, X), fh.hessian(builtin, X)) < RTOL_EXACT
    assert rel_err(fh.hessian(net, X, teacher=teacher),
                   fh.hessian(builtin, X, teacher=teacher)) < RTOL_EXACT
    # and both against the twin, which evaluates the user's functions in plain Python
    assert rel_err(fh.hessian(net, X, teacher=teacher), ref.hessian(net, X, teacher)) < RTOL_EXACT


def test_thread_count_changes_results_by_round_off_only():
    """Kernels own disjoint outputs, whatever the threads that run them; BLAS blocks its
    sums differently on 1 thread and on several: the Hessian agrees to 16 eps max|H|."""
    net = fh.TwoLayerNet.random(9, 11, n_out=2, activation="erf", rng=30)
    teacher = perturbed(net, 0.1, seed=31)
    X = fh.gaussian_inputs(700, 9, rng=32)
    H_all = fh.hessian(net, X, teacher=teacher)
    with fh.threads(1):
        assert fh.get_num_threads() == 1
        H_one = fh.hessian(net, X, teacher=teacher)
    assert np.max(np.abs(H_one - H_all)) <= 16 * np.finfo(float).eps * np.max(np.abs(H_all))


def test_overflow_is_a_clear_error_not_nan():
    w1 = np.full((3, 2), 30.0, dtype=np.float32)
    net = fh.TwoLayerNet(w1, np.ones((1, 3), dtype=np.float32), fh.Polynomial([0] * 10 + [1]))
    X = np.full((4, 2), 10.0, dtype=np.float32)  # (600)^10 overflows float32
    for f in (fh.hessian, fh.ntk, fh.hessian_operator, fh.trace, fh.eigenvalues):
        with pytest.raises(ValueError, match="overflow"):
            f(net, X)
    # the loss itself does not overflow (it accumulates in float64): a right answer
    teacher = fh.TwoLayerNet(w1 * 0.5, net.w2, net.activation)
    expected = 0.5 * np.mean(np.sum((net.astype(np.float64)(X.astype(np.float64))
                                     - teacher.astype(np.float64)(X.astype(np.float64))) ** 2,
                                    axis=1))
    assert fh.loss(net, X, teacher) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="overflow"):
        fh.gradient(net, X, teacher)


def test_equivalent_activations_are_equal_and_recognised_as_the_optimum():
    assert fh.Polynomial([0, 1]) == fh.activations.get_activation("linear")
    assert fh.Polynomial([0, 1, 1]) == fh.activations.get_activation("quadratic")
    assert hash(fh.Polynomial([0, 1, 1])) == hash(fh.Quadratic(1.0))
    assert fh.Polynomial([0, 1, 2]) != fh.activations.get_activation("quadratic")
    net = fh.TwoLayerNet.random(3, 4, activation="linear", rng=0)
    twin = fh.TwoLayerNet(net.w1, net.w2, fh.Polynomial([0, 1]))
    X = fh.gaussian_inputs(20, 3, rng=1)
    assert fh.eigenvalues(net, X, teacher=twin).method == "linear"
