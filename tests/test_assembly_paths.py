"""Every route through dense assembly against the independent twin: by sample parts
(one part: the one-call kernel, with the features in the same call at the optimum;
several parts on several threads; blocks down to one sample), the chunked route with
its workspace inside H (extreme shapes where S barely fits, many chunks, the
separate-buffer fallback), and products in pieces and in blocks of columns; at and
off the optimum, float64 and float32, No > 1."""
import numpy as np
import pytest

import fasthess as fh
from fasthess import _config

from . import reference as ref
from .conftest import RTOL_EXACT, RTOL_FLOAT32, perturbed, rel_err

ROUTES = {
    "one_call": {},
    # one part, each sample a block of its own: the sums accumulate across 61 blocks
    "blocks": {"SAMPLE_BLOCK_BYTES": 1, "MIN_BLOCK_SAMPLES": 1},
    "chunked": {"SAMPLE_PARTS_BYTES": 0},
    "many_chunks": {"SAMPLE_PARTS_BYTES": 0, "MAX_CHUNK_SAMPLES": 7},
    # H too small for a whole chunk, and no partial one accepted: a separate buffer
    "separate_buffer": {"SAMPLE_PARTS_BYTES": 0, "MIN_CHUNK_SAMPLES": 10**6, "CHUNK_BYTES": 1},
    "pieces": {"SAMPLE_PARTS_BYTES": 0, "MIN_MACS_PER_THREAD": 1, "MIN_WRITES_PER_THREAD": 1,
               "MIN_ACTIVATIONS_PER_THREAD": 1},
    # several threads: a part of the samples each, summed
    "sample_parts": {"MIN_MACS_PER_THREAD": 1, "MIN_WRITES_PER_THREAD": 1,
                     "MIN_ACTIVATIONS_PER_THREAD": 1},
    # and blocks of 1 to 3 samples in each part
    "sample_part_blocks": {"MIN_MACS_PER_THREAD": 1, "MIN_WRITES_PER_THREAD": 1,
                           "MIN_ACTIVATIONS_PER_THREAD": 1, "SAMPLE_BLOCK_BYTES": 1000,
                           "MIN_BLOCK_SAMPLES": 1},
}


def _use(monkeypatch, route):
    """Set the route's tunables; returns a record of what the calls then did."""
    import importlib

    from fasthess import _runtime

    for name, value in ROUTES[route].items():
        monkeypatch.setattr(_config, name, value)
    kernels = importlib.import_module("fasthess._kernels.assembly")
    assembly = importlib.import_module("fasthess.assembly")
    seen = {"one_call": 0, "fused": 0, "separate_buffer": 0, "chunks": 0, "pieces": 0,
            "blocks": 0}

    def spy(name, real, count):
        def wrapper(*args, **kwargs):
            result = real(*args, **kwargs)
            count(args, result)
            return result
        return wrapper

    def count_buffer(args, result):
        seen["chunks"] += -(-args[1] // result[0])
        seen["separate_buffer"] += not np.shares_memory(result[1], args[0])

    def count_blocks(args, result):  # the most blocks of one part in the plans made
        if result.parts:
            seen["blocks"] = max(seen["blocks"], -(-args[0] // result.parts // result.block))

    def count_pieces(args, result):
        seen["pieces"] += args[1] > 1

    monkeypatch.setattr(kernels, "assemble_in_one_call",
                        spy("one", kernels.assemble_in_one_call,
                            lambda a, r: seen.__setitem__("one_call", seen["one_call"] + 1)))
    monkeypatch.setattr(kernels, "assemble_with_features",
                        spy("fused", kernels.assemble_with_features,
                            lambda a, r: seen.__setitem__("fused", seen["fused"] + r)))
    monkeypatch.setattr(assembly, "_layout", spy("layout", assembly._layout, count_blocks))
    monkeypatch.setattr(assembly, "_chunk_workspace",
                        spy("workspace", assembly._chunk_workspace, count_buffer))
    for module in (_runtime, assembly):  # features' and assembly's own reference
        monkeypatch.setattr(module, "run_pieces", spy("pieces", module.run_pieces, count_pieces))
    return seen


def _check_route(route, seen, at_optimum=True):
    if route == "one_call":  # the features in the same call at the optimum only
        assert seen["one_call"] > 0 and seen["chunks"] == 0
        assert (seen["fused"] > 0) == at_optimum
    elif route == "blocks":  # larger than one block: not in one call
        assert seen["one_call"] == seen["fused"] == seen["chunks"] == 0
        assert seen["blocks"] >= 61
    elif route.startswith("sample_part"):
        assert seen["one_call"] == seen["fused"] == seen["chunks"] == 0 and seen["pieces"] > 0
    else:
        assert seen["one_call"] == seen["fused"] == 0 and seen["chunks"] > 0
    if route == "sample_part_blocks":
        assert seen["blocks"] >= 2
    if route == "many_chunks":
        assert seen["chunks"] >= 2 * (61 // 7)
    if route == "separate_buffer":
        assert seen["separate_buffer"] > 0
    if route == "pieces":
        assert seen["pieces"] > 0


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 6, 2), (6, 1, 1), (2, 9, 1), (9, 2, 3),
                                   (5, 5, 2), (7, 9, 2)])
def test_every_route_matches_the_twin(monkeypatch, route, shape):
    n_in, n_hidden, n_out = shape
    net = fh.TwoLayerNet.random(n_in, n_hidden, n_out=n_out, activation="tanh", rng=3)
    teacher = perturbed(net, 0.2, seed=4)
    X = fh.gaussian_inputs(61, n_in, rng=5)
    seen = _use(monkeypatch, route)
    for t in (None, teacher):
        expected = ref.hessian(net, X, t)
        if t is not None:  # off the optimum for real: the residual term matters
            assert rel_err(expected, ref.hessian_at_optimum(net, X)) > 1e-3
        assert rel_err(fh.hessian(net, X, teacher=t), expected) < RTOL_EXACT
        blocks = fh.hessian_blocks(net, X, teacher=t)
        assert rel_err(blocks.full(), expected) < RTOL_EXACT
        H32 = fh.hessian(net.astype(np.float32), X.astype(np.float32),
                         teacher=None if t is None else t.astype(np.float32))
        assert H32.dtype == np.float32
        expected32 = ref.hessian(net.astype(np.float32), X.astype(np.float32),
                                 None if t is None else t.astype(np.float32))
        assert rel_err(H32, expected32) < RTOL_FLOAT32
    _check_route(route, seen)


@pytest.mark.parametrize("route", ["one_call", "chunked", "pieces", "sample_parts"])
def test_routes_agree_on_a_larger_problem(monkeypatch, route):
    """N = 12, P = 2D, erf, No = 2: each route against the twin (the one-call kernel is
    taken by default at this size, the others are forced)."""
    net = fh.TwoLayerNet.random(12, 12, n_out=2, activation="erf", rng=6)
    teacher = perturbed(net, 0.1, seed=7)
    X = fh.gaussian_inputs(2 * net.n_params, 12, rng=8)
    seen = _use(monkeypatch, route)
    assert rel_err(fh.hessian(net, X, teacher=teacher), ref.hessian(net, X, teacher)) < RTOL_EXACT
    _check_route(route, seen, at_optimum=False)
    assert rel_err(fh.ntk(net, X[:40]), ref.ntk(net, X[:40])) < RTOL_EXACT


@pytest.mark.parametrize("route", ["default", "pieces", "column_blocks"])
@pytest.mark.parametrize("columns", [1, 5])
def test_products_in_blocks_match_the_twin(monkeypatch, route, columns):
    net = fh.TwoLayerNet.random(6, 7, n_out=2, activation="erf", rng=9)
    teacher = perturbed(net, 0.2, seed=10)
    X = fh.gaussian_inputs(500, 6, rng=11)
    V = np.random.default_rng(12).standard_normal((net.n_params, columns))
    if route == "pieces":  # several pieces of samples, each of several chunks
        monkeypatch.setattr(_config, "MIN_MACS_PER_THREAD", 1)
        monkeypatch.setattr(_config, "MIN_PRODUCT_CHUNK", 1)
        monkeypatch.setattr(_config, "PRODUCT_CHUNK_BYTES", 8 * 7 * columns * 13)
    if route == "column_blocks":  # one or two columns a block, chunks of 13 samples
        monkeypatch.setattr(_config, "MIN_PRODUCT_CHUNK", 13)
        monkeypatch.setattr(_config, "PRODUCT_CHUNK_BYTES", 8 * 7 * 2 * 13)
    for t in (None, teacher):
        expected = ref.hessian(net, X, t) @ V
        got = fh.hessian_operator(net, X, teacher=t) @ V
        assert rel_err(got, expected) < RTOL_EXACT


@pytest.mark.parametrize("off_optimum", [False, True])
def test_peak_memory_stays_within_the_assembly_overhead(off_optimum):
    """N = 36 (H is 10.7 MB): what NumPy allocates during fh.hessian and
    fh.hessian_blocks (tracemalloc sees its buffers) stays within
    _config.ASSEMBLY_OVERHEAD x 8 D^2, the bound checked before allocating."""
    import tracemalloc

    net = fh.TwoLayerNet.random(36, 36, activation="erf", rng=13)
    X = fh.gaussian_inputs(2 * net.n_params, 36, rng=14)
    teacher = perturbed(net, 0.1, seed=15) if off_optimum else None
    fh.hessian(net, X[:50], teacher=None if teacher is None else teacher)  # compile first
    bound = _config.ASSEMBLY_OVERHEAD * 8 * net.n_params**2
    for assemble in (fh.hessian, fh.hessian_blocks):
        tracemalloc.start()
        try:
            assemble(net, X, teacher=teacher)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert 8 * net.w1.size**2 < peak < bound, (assemble.__name__, peak / bound)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gemm_called_from_kernels_adds_to_its_output(dtype):
    """The GEMM the blocked contraction calls from its kernel: out = beta out + a b^T on
    row slices of larger arrays (leading dimensions wider than the rows), beta = 0
    ignoring what out held (NaN included), beta = 1 adding to it; no columns (k = 0)."""
    from fasthess._kernels.blas import gemm_nt

    rng = np.random.default_rng(16)
    a_big, b_big = (rng.standard_normal((m, 9)).astype(dtype) for m in (5, 4))
    a, b = a_big[:, :7], b_big[:, :7]
    out_big = np.full((5, 6), np.nan, dtype=dtype)
    out = out_big[:, :4]
    tol = 1e-14 if dtype == np.float64 else 1e-5
    gemm_nt(a, b, 0.0, out)
    np.testing.assert_allclose(out, a.astype(float) @ b.T.astype(float), rtol=tol, atol=tol)
    gemm_nt(a, b, 1.0, out)
    np.testing.assert_allclose(out, 2 * (a.astype(float) @ b.T.astype(float)), rtol=tol,
                               atol=tol)
    assert np.isnan(out_big[:, 4:]).all()  # nothing written beyond the slice
    before = out.copy()
    gemm_nt(a[:, :0], b[:, :0], 1.0, out)
    np.testing.assert_array_equal(out, before)
    gemm_nt(a[:, :0], b[:, :0], 0.0, out)
    np.testing.assert_array_equal(out, 0.0)
