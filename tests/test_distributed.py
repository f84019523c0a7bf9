"""The sample-sharded Hessian operator on Dask, and that Dask stays optional.

The operator tests share one LocalCluster of 2 workers with processes=False
(threads): the shards' features and the products still go through the scheduler,
serialisation aside, and it starts in about a second instead of several.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse.linalg

import fasthess as fh

from .conftest import RTOL_EXACT, perturbed, rel_err


def _run_python(code):
    # from the repository root, so that an uninstalled checkout imports too
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, cwd=root)


# ---------------------------------------------------------------------- optional Dask
def test_import_does_not_load_dask():
    r = _run_python("""
        import sys
        import fasthess, fasthess.sweeps, fasthess.distributed
        fasthess.sweeps.read_grid  # touch the module
        loaded = sorted(m for m in ("dask", "distributed", "tqdm") if m in sys.modules)
        assert not loaded, loaded
    """)
    assert r.returncode == 0, r.stderr


def test_core_works_with_dask_blocked(tmp_path):
    store = tmp_path / "store"
    r = _run_python(f"""
        import sys
        sys.modules["dask"] = None          # as if dask were not installed
        sys.modules["distributed"] = None
        import numpy as np
        import fasthess as fh
        from fasthess import sweeps
        from fasthess.distributed import hessian_operator
        net = fh.TwoLayerNet.random(3, 2, rng=0)
        X = fh.gaussian_inputs(10, 3, rng=1)
        assert fh.hessian(net, X).shape == (8, 8)
        rec = sweeps.run_config({{"activation": "erf", "n": 2}}, "rank")
        assert rec["status"] == "ok", rec["traceback"]
        for call in (lambda: hessian_operator(net, X),
                     lambda: sweeps.sweep([{{"activation": "erf", "n": 2}}], "rank",
                                          {str(store)!r})):
            try:
                call()
            except ImportError as exc:
                assert "pip install fasthess[dist]" in str(exc), exc
            else:
                raise AssertionError("no ImportError without dask")
        print("ok")
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
    assert not store.exists()  # refused before touching the disk


# ---------------------------------------------------------------------- the operator
distributed = pytest.importorskip("distributed")
from fasthess.distributed import DistributedHessianOperator, hessian_operator  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with distributed.Client(n_workers=2, threads_per_worker=1, processes=False,
                            dashboard_address=":0") as c:
        yield c


@pytest.mark.parametrize("n_shards", [1, 3, 7, None])
@pytest.mark.parametrize("at_optimum", [True, False], ids=["optimum", "off_optimum"])
@pytest.mark.parametrize("n_out", [1, 2])
def test_agrees_with_local_operator(client, activation, n_shards, at_optimum, n_out):
    teacher = fh.TwoLayerNet.random(5, 4, n_out=n_out, activation=activation, rng=1)
    net = teacher if at_optimum else perturbed(teacher, 0.3, seed=2)
    X = fh.gaussian_inputs(53, 5, rng=3)  # 53 is prime: shards of unequal size
    local = fh.hessian_operator(net, X, teacher=teacher)
    with hessian_operator(net, X, client=client, n_shards=n_shards, teacher=teacher) as op:
        assert isinstance(op, scipy.sparse.linalg.LinearOperator)
        assert op.shape == local.shape and op.dtype == local.dtype
        assert op.at_optimum is at_optimum and op.n_samples == 53
        assert op.n_shards == (2 if n_shards is None else n_shards)
        V = np.random.default_rng(4).standard_normal((net.n_params, 3))
        assert rel_err(op @ V, local @ V) < RTOL_EXACT
        assert rel_err(op.matvec(V[:, 0]), local.matvec(V[:, 0])) < RTOL_EXACT
        assert rel_err(op.rmatvec(V[:, 1]), local.matvec(V[:, 1])) < RTOL_EXACT
        assert (op @ V[:, 0]).shape == (net.n_params,)


def test_products_are_deterministic(client):
    net = fh.TwoLayerNet.random(6, 5, rng=0)
    X = fh.gaussian_inputs(97, 6, rng=1)
    v = np.random.default_rng(2).standard_normal(net.n_params)
    with hessian_operator(net, X, client=client, n_shards=5) as op:
        first = op @ v
        for _ in range(3):
            np.testing.assert_array_equal(op @ v, first)


def test_large_vectors_are_scattered(client, monkeypatch):
    from fasthess import _config

    monkeypatch.setattr(_config, "SCATTER_BYTES", 0)  # every block takes the scatter path
    net = fh.TwoLayerNet.random(4, 3, rng=0)
    X = fh.gaussian_inputs(30, 4, rng=1)
    V = np.random.default_rng(2).standard_normal((net.n_params, 2))
    with hessian_operator(net, X, client=client, n_shards=2) as op:
        assert rel_err(op @ V, fh.hessian_operator(net, X) @ V) < RTOL_EXACT


def test_eigsh_on_the_distributed_operator(client):
    net = fh.TwoLayerNet.random(6, 5, activation="tanh", rng=0)
    X = fh.gaussian_inputs(2 * net.n_params, 6, rng=1)
    full = np.linalg.eigvalsh(fh.hessian(net, X))
    v0 = np.random.default_rng(0).standard_normal(net.n_params)
    with hessian_operator(net, X, client=client) as op:
        top = scipy.sparse.linalg.eigsh(op, k=3, which="LA", v0=v0, return_eigenvectors=False)
    np.testing.assert_allclose(np.sort(top), full[-3:], rtol=1e-10)


def test_spectrum_routines_take_the_distributed_operator(client):
    net = fh.TwoLayerNet.random(6, 5, activation="tanh", rng=0)
    X = fh.gaussian_inputs(2 * net.n_params, 6, rng=1)
    full = np.linalg.eigvalsh(fh.hessian(net, X))
    local = fh.spectral_density(net, X, n_probes=4, n_steps=15, rng=2)
    with hessian_operator(net, X, client=client, n_shards=3) as op:
        top, _ = fh.eigsh(net, X, k=3, operator=op, rng=0)
        sd = fh.spectral_density(net, X, n_probes=4, n_steps=15, rng=2, operator=op)
        hutchinson = fh.trace(net, X, method="hutchinson", n_probes=8, rng=3, operator=op)
    np.testing.assert_allclose(top, full[-3:], rtol=1e-10)
    # same seed, same probes: only the shards' summation order differs from the local run
    np.testing.assert_array_equal(sd.probe, local.probe)
    assert rel_err(sd.nodes, local.nodes) < 1e-10
    assert np.max(np.abs(sd.weights - local.weights)) < 1e-10
    assert rel_err(sd.density, local.density) < 1e-8
    local_trace = fh.trace(net, X, method="hutchinson", n_probes=8, rng=3)
    assert rel_err(hutchinson, local_trace) < 1e-10


def test_default_client_is_used(client):
    net = fh.TwoLayerNet.random(3, 2, rng=0)
    X = fh.gaussian_inputs(9, 3, rng=1)
    with hessian_operator(net, X) as op:  # the fixture's client is the default one
        assert op.client is client
        assert rel_err(op @ np.ones(8), fh.hessian(net, X) @ np.ones(8)) < RTOL_EXACT


def test_closed_operator_refuses_products(client):
    net = fh.TwoLayerNet.random(3, 2, rng=0)
    op = hessian_operator(net, fh.gaussian_inputs(9, 3, rng=1), client=client)
    assert isinstance(op, DistributedHessianOperator)
    op.close()
    with pytest.raises(ValueError, match="closed"):
        op @ np.ones(8)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"n_shards": 0}, ValueError, "n_shards must be >= 1"),
    ({"n_shards": 10}, ValueError, "n_shards must be <= the number of samples P = 9"),
    ({"n_shards": 2.0}, TypeError, "n_shards must be an integer"),
    ({"client": "tcp://127.0.0.1:8786"}, TypeError, "client must be a distributed.Client"),
    ({"teacher": fh.TwoLayerNet.random(4, 2, rng=0)}, ValueError, "teacher has shape"),
])
def test_bad_arguments(client, kwargs, error, match):
    net = fh.TwoLayerNet.random(3, 2, rng=0)
    kwargs.setdefault("client", client)
    with pytest.raises(error, match=match):
        hessian_operator(net, fh.gaussian_inputs(9, 3, rng=1), **kwargs)


def test_bad_inputs_raise_before_anything_is_scattered(client):
    net = fh.TwoLayerNet.random(3, 2, rng=0)
    with pytest.raises(ValueError, match="X must have shape"):
        hessian_operator(net, np.ones((9, 4)), client=client)


def test_no_client_running(monkeypatch):
    def no_client():
        raise ValueError("No clients found")

    monkeypatch.setattr(distributed, "get_client", no_client)
    net = fh.TwoLayerNet.random(3, 2, rng=0)
    with pytest.raises(ValueError, match="client: no Dask client is running"):
        hessian_operator(net, fh.gaussian_inputs(9, 3, rng=1))
