"""Bad input: every public entry point raises a clear error naming the argument."""
import re

import numpy as np
import pytest

import fasthess as fh

from . import reference as ref
from .conftest import RTOL_EXACT


@pytest.fixture
def net():
    return fh.TwoLayerNet.random(3, 2, n_out=2, activation="erf", rng=0)


@pytest.fixture
def X():
    return fh.gaussian_inputs(10, 3, rng=1)


def test_wrong_weight_shapes():
    with pytest.raises(ValueError, match="w1 must be 2-dimensional"):
        fh.TwoLayerNet(np.ones(3), np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"w2 must have shape \(n_out, n_hidden\)"):
        fh.TwoLayerNet(np.ones((2, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="w1 is empty"):
        fh.TwoLayerNet(np.ones((0, 3)), np.ones((1, 0)))


def test_non_finite_weights_and_inputs(net, X):
    w1 = net.w1.copy()
    w1[0, 1] = np.nan
    with pytest.raises(ValueError, match="w1 contains 1 non-finite"):
        fh.TwoLayerNet(w1, net.w2)
    bad = X.copy()
    bad[3, 0] = np.inf
    for f in (fh.hessian, fh.hessian_operator, fh.ntk, fh.hessian_blocks):
        with pytest.raises(ValueError, match="X contains 1 non-finite"):
            f(net, bad)


@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.uint16, bool])
def test_integer_and_bool_inputs_are_upcast_like_numpy(net, dtype):
    X = np.arange(12).reshape(4, 3) % 3 - 1
    Xi = X.astype(dtype) if dtype is not bool else X > 0
    H = fh.hessian(net, Xi)
    assert H.dtype == np.float64
    np.testing.assert_array_equal(H, fh.hessian(net, Xi.astype(np.float64)))
    w1 = np.array([[1, 0, 1], [0, 1, 1]], dtype=dtype)
    wnet = fh.TwoLayerNet(w1, np.ones((1, 2), dtype=dtype))
    assert wnet.dtype == np.float64 and np.array_equal(wnet.w1, w1.astype(np.float64))


@pytest.mark.parametrize("dtype", [np.complex128, object])
def test_complex_and_object_arrays_refused(net, dtype):
    with pytest.raises(TypeError, match="w1 must hold real numbers"):
        fh.TwoLayerNet(np.ones((2, 3), dtype=dtype), np.ones((1, 2)))
    with pytest.raises(TypeError, match="X must hold real numbers"):
        fh.hessian(net, np.ones((4, 3), dtype=dtype))


@pytest.mark.parametrize("dtype", [np.int64, np.complex128, bool])
def test_dtype_argument_must_be_a_float_dtype(net, dtype):
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        fh.hessian(net, fh.gaussian_inputs(4, 3), dtype=dtype)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        fh.gaussian_inputs(4, 3, dtype=dtype)


def test_mismatched_n_in(net):
    with pytest.raises(ValueError, match=r"X must have shape \(n_samples, n_in\) with n_in = 3"):
        fh.hessian(net, fh.gaussian_inputs(10, 4))
    with pytest.raises(ValueError, match="X must be 2-dimensional"):
        fh.hessian(net, np.ones(3))
    with pytest.raises(ValueError, match="X is empty"):
        fh.hessian(net, np.ones((0, 3)))


def test_teacher_shape_mismatch(net, X):
    other = fh.TwoLayerNet.random(3, 4, n_out=1, rng=2)
    for f in (fh.hessian, fh.hessian_blocks, fh.hessian_operator):
        with pytest.raises(ValueError, match=r"teacher has shape .* n_in and n_out must match"):
            f(net, X, teacher=other)
    # another number of hidden units is a valid teacher: only its outputs enter
    wider = fh.TwoLayerNet.random(3, 4, n_out=2, rng=2)
    np.testing.assert_allclose(fh.hessian(net, X, teacher=wider),
                               ref.hessian(net, X, wider), rtol=0,
                               atol=RTOL_EXACT * np.max(np.abs(ref.hessian(net, X, wider))))
    with pytest.raises(ValueError, match="teacher has shape"):
        fh.loss(net, X, other)
    with pytest.raises(TypeError, match="teacher must be a fasthess.TwoLayerNet"):
        fh.hessian(net, X, teacher=np.ones(3))
    with pytest.raises(TypeError, match="net must be a fasthess.TwoLayerNet"):
        fh.hessian("net", X)


def test_sizes_below_one():
    with pytest.raises(ValueError, match="n_samples must be >= 1, got 0"):
        fh.gaussian_inputs(0, 3)
    with pytest.raises(ValueError, match="n_hidden must be >= 1"):
        fh.TwoLayerNet.random(3, 0)
    with pytest.raises(TypeError, match="n_in must be an integer"):
        fh.TwoLayerNet.random(3.5, 2)
    with pytest.raises(ValueError, match="w1_std must be finite and > 0"):
        fh.TwoLayerNet.random(3, 2, w1_std=-1)


def test_unknown_activation():
    with pytest.raises(ValueError, match=r"activation: unknown name 'sigmoid'.*erf"):
        fh.TwoLayerNet.random(3, 2, activation="sigmoid")
    with pytest.raises(TypeError, match="activation must be a name"):
        fh.TwoLayerNet.random(3, 2, activation=3)
    with pytest.raises(ValueError, match="coeffs are all zero"):
        fh.Polynomial([0, 0])
    with pytest.raises(TypeError, match="g must be a Numba-jitted function"):
        fh.CustomActivation(lambda z: z, lambda z: 1.0, lambda z: 0.0)


def test_from_parameters_length(net):
    with pytest.raises(ValueError, match=r"theta must have length n_params = 10 for a \(3, 2, 2\) network, got 7"):
        fh.TwoLayerNet.from_parameters(np.ones(7), like=net)


def test_dense_hessian_too_large_refused_before_allocating():
    big = fh.TwoLayerNet.random(3000, 3000, rng=0)  # D = 9.003e6: 648 TB dense
    X = fh.gaussian_inputs(2, 3000, rng=1)
    with pytest.raises(MemoryError) as info:
        fh.hessian(big, X)
    msg = str(info.value)
    needed = int(re.search(r"needs ([\d,]+) bytes", msg).group(1).replace(",", ""))
    assert 8 * big.n_params**2 <= needed <= 2 * 8 * big.n_params**2
    assert "hessian_operator" in msg
    with pytest.raises(MemoryError, match="w1w1 block"):
        fh.hessian_blocks(big, X)
    # the matrix-free route works at this size
    op = fh.hessian_operator(big, X)
    assert op.matvec(np.ones(big.n_params)).shape == (big.n_params,)


def test_ntk_too_large_refused(monkeypatch):
    monkeypatch.setenv("FASTHESS_MEMORY_LIMIT", "1000000")
    net = fh.TwoLayerNet.random(3, 2, rng=0)
    X = fh.gaussian_inputs(1000, 3, rng=1)  # K is 8 MB
    # K (8 MB) plus the X X^T and A A^T factors (8 MB each)
    with pytest.raises(MemoryError, match="NTK Gram matrix .* 24,000,000 bytes"):
        fh.ntk(net, X)


def test_w1w1_layout_fits_s_inside_the_block():
    import importlib

    h = importlib.import_module("fasthess.assembly")
    for n_in in range(1, 25):
        for n_hidden in range(1, 25):
            d1 = n_in * n_hidden
            for width in (d1, d1 + 3 * n_hidden):
                u0, row0 = h.w1w1_layout(n_in, n_hidden, width)
                s_entries = (n_hidden * (n_hidden + 1) // 2) * (n_in * (n_in + 1) // 2)
                assert 0 <= u0 < n_hidden and row0 == u0 * n_in
                assert row0 * width + s_entries <= d1 * width  # S ends inside the block
                # and u0 is as large as possible: one more unit would not fit
                assert (row0 + n_in) * width + s_entries > d1 * width


def test_ntk_of_a_non_network():
    with pytest.raises(TypeError, match="net must be a fasthess.TwoLayerNet"):
        fh.ntk(np.eye(3), fh.gaussian_inputs(4, 3))


def test_thread_and_memory_settings_validated(monkeypatch):
    for bad in ("2", 2.7, 0, True):
        with pytest.raises((TypeError, ValueError), match="n must be"):
            fh.set_num_threads(bad)
    monkeypatch.setenv("FASTHESS_MEMORY_LIMIT", "1GB")
    with pytest.raises(ValueError, match="FASTHESS_MEMORY_LIMIT must be a number of bytes"):
        fh.hessian(fh.TwoLayerNet.random(2, 2, rng=0), fh.gaussian_inputs(3, 2))
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "import fasthess"], capture_output=True,
                         text=True, env={**__import__("os").environ,
                                         "FASTHESS_NUM_THREADS": "two"})
    assert out.returncode != 0 and "FASTHESS_NUM_THREADS must be an integer" in out.stderr
