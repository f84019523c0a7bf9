"""Sweeps: grid files, keys, the store, and faults on a real LocalCluster (processes).

One module-scoped LocalCluster of 2 worker processes serves every test that needs
Dask; two tests start the default cluster of :func:`fasthess.sweep` itself. The
store's own faults without Dask are in test_sweep_store.py.
"""
import errno
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import fasthess as fh
from fasthess import _io, sweeps
from fasthess.sweeps import (FORMAT_VERSION, StoreVersionError, load_sweep, read_grid,
                             record_key, resolve_n_samples, run_config, sweep)
from fasthess.sweeps import records as records_module
from fasthess.sweeps.store import Store
from fasthess.sweeps.task import Problem

distributed = pytest.importorskip("distributed")


# ---------------------------------------------------------------------- measures
# Module-level so that workers import them by reference (tests is a package).
def top_eigenvalue(net, X, seed):
    """The dense Hessian's spectrum by NumPy: independent of fasthess.spectrum."""
    ev = np.linalg.eigvalsh(fh.hessian(net, X))
    return {"top": ev[-1], "ev": ev, "seed_used": seed}


def dense_hessian_norm(net, X, seed):
    """Assembles the dense Hessian: refuses (MemoryError) when D x D cannot fit."""
    return {"norm": float(np.linalg.norm(fh.hessian(net, X)))}


class DieOnce:
    """Kills its worker process the first time it runs the config with ``seed``.

    The marker file makes the second attempt (after Dask reschedules it) succeed, and
    records which process died.
    """

    name = "die_once"

    def __init__(self, marker, seed):
        self.marker = str(marker)
        self.seed = seed

    def __call__(self, net, X, seed):
        if seed == sweeps.measure_seed(self.seed, self.name) and not os.path.exists(self.marker):
            with open(self.marker, "w") as f:
                f.write(str(os.getpid()))
            os._exit(1)
        return {"pid_ok": os.getpid()}


def die_on_seed_1(net, X, seed):
    """Kills its worker on every attempt of the config with seed 1."""
    if seed == sweeps.measure_seed(1, "tests.test_sweeps:die_on_seed_1"):
        os._exit(1)
    return {"alive": True}


def die_on_seed_0_slowly(net, X, seed):
    """Kills its worker on every attempt of the config with seed 0, after the worker
    has been sent the next task too (so that Dask counts the death against it)."""
    if seed == sweeps.measure_seed(0, "tests.test_sweeps:die_on_seed_0_slowly"):
        time.sleep(0.5)
        os._exit(1)
    return {"alive": True}


class LogRuns:
    """Appends each run's seed to a log file (on the worker) and takes a while."""

    name = "log_runs"

    def __init__(self, log, seconds):
        self.log, self.seconds = str(log), seconds

    def __call__(self, net, X, seed):
        with open(self.log, "a") as f:  # O_APPEND: lines from two workers do not mix
            f.write(f"{seed}\n")
        time.sleep(self.seconds)
        return {"ran": True}


def _config(**kw):
    base = {"activation": "erf", "n": 3, "n_samples": "D", "seed": 0}
    base.update(kw)
    return base


def _json_records(store):
    return sorted(p for p in os.listdir(os.path.join(store, "records"))
                  if p.endswith(".json"))


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def client():
    import dask

    # allowed-failures: how many worker deaths a task survives (the kill test needs 1);
    # lost-worker-timeout: how long the cluster waits for a killed worker's restart
    # before giving it up for good (slow on busy CI machines; read when a worker dies)
    with dask.config.set({"distributed.scheduler.allowed-failures": 1,
                          "distributed.deploy.lost-worker-timeout": "10 minutes"}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                           processes=True, dashboard_address=":0",
                                           env=sweeps.WORKER_ENV)
        with cluster, distributed.Client(cluster) as c:
            yield c


# ---------------------------------------------------------------------- configurations
@pytest.mark.parametrize("spec, expected", [
    (37, 37), ("2D", 60), ("D", 30), ("D/4", 8), ("0.5D", 15), ("0.1D", 3),
    ("2D+20", 80), ("2*D-1", 59), (" D / 3 ", 10),
])
def test_n_samples_relative_to_D(spec, expected):
    assert resolve_n_samples(spec, 30) == expected


@pytest.mark.parametrize("spec", ["2E", "D**2", "", "D/0", 2.5, None, "two D"])
def test_n_samples_bad_spec_names_argument(spec):
    with pytest.raises(ValueError, match="n_samples"):
        resolve_n_samples(spec, 30)


def test_key_is_canonical():
    k = record_key(_config(), "rank")
    # defaults spelled out, n spelled as n_in/n_hidden, key order: same key
    same = {"seed": 0, "n_out": 1, "n_samples": "D", "n_hidden": 3, "n_in": 3,
            "activation": "ERF"}
    assert record_key(same, ["rank"]) == k
    assert record_key(_config(), ["rank", "eigenvalues"]) == \
        record_key(_config(), ["eigenvalues", "rank", "rank"])
    assert record_key(_config(seed=1), "rank") != k
    assert record_key(_config(), "eigenvalues") != k
    assert record_key(_config(n_samples=30), "rank") != k  # as given, not as resolved
    assert record_key(_config(n_samples="2 * D"), "rank") == record_key(_config(n_samples="2D"),
                                                                       "rank")
    # measure parameters with their defaults filled in are part of the key
    assert record_key(_config(), "dynamics") == record_key(_config(lr=0.01), "dynamics")
    assert record_key(_config(), "dynamics") != record_key(_config(lr=0.02), "dynamics")


def test_key_depends_on_format_version(monkeypatch):
    k = record_key(_config(), "rank")
    monkeypatch.setattr(records_module, "FORMAT_VERSION", FORMAT_VERSION + 1)
    assert record_key(_config(), "rank") != k


@pytest.mark.parametrize("config, measure, match", [
    ({"activation": "erf", "n": 3, "colour": 1}, "rank", "unknown key.*'colour'"),
    ({"activation": "erf", "n_in": 3}, "rank", "missing key 'n_hidden'"),
    ({"activation": "erf", "n": 3, "n_in": 3}, "rank", "either n"),
    ({"activation": "sigmoid", "n": 3}, "rank", "activation: unknown name 'sigmoid'"),
    ({"activation": "erf", "n": 3, "k": 2}, "rank", "'k' is a parameter of measure "
                                                   "'smallest_nonzero'"),
    ({"activation": "erf", "n": 3}, "spectrum", "measure: unknown name 'spectrum'"),
    ({"activation": "erf", "n": 3}, lambda net, X, seed: {}, "module level"),
    ({"activation": "erf", "n": 3}, [], "at least one measure"),
])
def test_bad_config_is_refused_before_any_work(config, measure, match):
    with pytest.raises(ValueError, match=match):
        record_key(config, measure)


@pytest.mark.parametrize("config, match", [
    ({"activation": "erf", "n": 3.0}, "n_in must be an integer"),
    ({"activation": "erf", "n": 3, "seed": True}, "seed must be an integer"),
    ({"activation": "erf", "n": 3, "lr": "fast"}, "lr must be a real number"),
])
def test_bad_config_types_name_the_key(config, match):
    with pytest.raises(TypeError, match=match):
        record_key(config, "dynamics")


def test_product_grid_toml(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text('measure = ["eigenvalues", "rank"]\n'
                    'activation = ["erf", "linear"]\n'
                    'n = [4, 5]\n'
                    'n_samples = "2D"\n'
                    'seeds = 3\n')
    configs, measure = read_grid(path)
    assert measure == ["eigenvalues", "rank"]
    assert len(configs) == 12
    # fixed order: activation outermost, seed innermost
    assert configs[0] == {"activation": "erf", "n": 4, "n_samples": "2D", "seed": 0}
    assert configs[2]["seed"] == 2 and configs[3]["n"] == 5
    assert configs[-1] == {"activation": "linear", "n": 5, "n_samples": "2D", "seed": 2}


def test_explicit_grid_json_with_defaults(tmp_path):
    path = tmp_path / "grid.json"
    path.write_text(json.dumps({
        "measure": "smallest_nonzero", "n_samples": "D", "k": 2,
        "configs": [{"activation": "erf", "n_in": 4, "n_hidden": 2},
                    {"activation": {"polynomial": [0, 1, 0.5]}, "n": 3, "seed": 7, "k": 3}]}))
    configs, measure = read_grid(path)
    assert measure == "smallest_nonzero"
    assert configs == [
        {"n_samples": "D", "k": 2, "activation": "erf", "n_in": 4, "n_hidden": 2},
        {"n_samples": "D", "k": 3, "activation": {"polynomial": [0, 1, 0.5]}, "n": 3,
         "seed": 7}]


def test_explicit_grid_repeated_over_seeds():
    configs, _ = sweeps.expand_grid({"measure": "rank", "seeds": 2, "configs": [
        {"activation": "erf", "n": 3}, {"activation": "relu", "n": 4}]})
    assert [(c["activation"], c["seed"]) for c in configs] == [
        ("erf", 0), ("erf", 1), ("relu", 0), ("relu", 1)]
    with pytest.raises(ValueError, match="remove 'seed'"):
        sweeps.expand_grid({"measure": "rank", "seeds": 2,
                            "configs": [{"activation": "erf", "n": 3, "seed": 1}]})


def test_example_grid_file_parses():
    here = os.path.dirname(__file__)
    configs, measure = read_grid(os.path.join(here, os.pardir, "examples", "sweep_small.toml"))
    assert len(configs) > 0 and measure


@pytest.mark.parametrize("text, match", [
    ('activation = "erf"\nn = 3\n', "missing key 'measure'"),
    ('measure = "rank"\nactivation = "erf"\nn = 3\nsize = 2\n', r"unknown key\(s\) \['size'\]"),
    ('measure = "rank"\nactivation = "erf"\nn = 3\nseed = 1\nseeds = 2\n', "not both"),
    ('measure = "rank"\nn = [3, 4]\n[[configs]]\nactivation = "erf"\n', "single-valued"),
    ('measure = "rank"\nactivation = []\nn = 3\n', "empty list"),
    ('measure = "rank"\nactivation = "erf"\nn = 3\nn_samples = "3X"\n', "n_samples"),
    ('measure = "rank"\nactivation = "erf"\nn = [3\n', "cannot read"),
])
def test_bad_grid_file_names_file_and_key(tmp_path, text, match):
    path = tmp_path / "g.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        read_grid(path)
    assert str(path) in str(info.value)


def test_grid_file_suffix_and_existence(tmp_path):
    with pytest.raises(ValueError, match=r"\.toml or \.json"):
        read_grid(tmp_path / "grid.yaml")
    with pytest.raises(ValueError, match="no such file"):
        read_grid(tmp_path / "missing.toml")


def frobenius(problem):
    """A measure with a parameter, registered by the test below."""
    return {"frobenius": problem.config["scale"] * float(
        np.linalg.norm(fh.hessian(problem.net, problem.X)))}, {}


def test_a_measure_is_one_registry_entry():
    from fasthess.sweeps.measures import REGISTRY, Parameter, register

    register("frobenius", "the Frobenius norm of H, scaled",
             scale=Parameter(float, 1.0, "a factor"))(frobenius)
    try:
        # the grammar, the grid, the key and the task all read the new entry
        assert sweeps.normalize_config(_config(), "frobenius")["scale"] == 1.0
        configs, _ = sweeps.expand_grid({"measure": "frobenius", "activation": "erf", "n": 3,
                                         "scale": [1.0, 2.0]})
        assert [c["scale"] for c in configs] == [1.0, 2.0]
        assert record_key(_config(), "frobenius") == record_key(_config(scale=1.0),
                                                                "frobenius")
        assert record_key(_config(), "frobenius") != record_key(_config(scale=2.0),
                                                                "frobenius")
        with pytest.raises(ValueError, match="'scale' is a parameter of measure 'frobenius'"):
            sweeps.normalize_config(_config(scale=2.0), "rank")
        with pytest.raises(TypeError, match="scale must be a real number"):
            sweeps.normalize_config(_config(scale="2"), "frobenius")
        r = run_config(_config(scale=2.0), "frobenius")
        p = Problem(sweeps.normalize_config(_config(), "frobenius"))
        assert r["status"] == "ok", r["traceback"]
        np.testing.assert_allclose(r["frobenius"], 2 * np.linalg.norm(fh.hessian(p.net, p.X)),
                                   rtol=1e-14)
        with pytest.raises(ValueError, match="already registered"):
            register("frobenius", "again")(frobenius)
        with pytest.raises(ValueError, match="'scale' already belongs to measure 'frobenius'"):
            register("other", "clash", scale=Parameter(float, 1.0, "x"))(frobenius)
    finally:
        del REGISTRY["frobenius"]
    register("shadow", "a parameter named like a base key",
             seed=Parameter(int, 0, "x"))(frobenius)
    try:
        with pytest.raises(ValueError, match="'seed' shadows the configuration key"):
            sweeps.normalize_config(_config(), "rank")
    finally:
        del REGISTRY["shadow"]
    assert "frobenius" not in REGISTRY and "scale" not in sweeps.configuration.config_keys()


# ---------------------------------------------------------------------- one configuration
def test_run_config_reproducible_from_seed_alone():
    a = run_config(_config(seed=5), top_eigenvalue)
    b = run_config(_config(seed=5), top_eigenvalue)
    c = run_config(_config(seed=6), top_eigenvalue)
    assert a["status"] == "ok" and a["error"] is None
    np.testing.assert_array_equal(a["ev"], b["ev"])
    assert a["seed_used"] == b["seed_used"] != c["seed_used"]
    assert not np.array_equal(a["ev"], c["ev"])
    assert (a["D"], a["P"]) == (12, 12)


def test_same_seed_same_teacher_and_data_across_activations():
    p = Problem(sweeps.normalize_config(_config(activation="erf"), "rank"))
    q = Problem(sweeps.normalize_config(_config(activation="tanh"), "rank"))
    np.testing.assert_array_equal(p.net.w1, q.net.w1)
    np.testing.assert_array_equal(p.X, q.X)


def test_run_config_records_failure_instead_of_raising():
    r = run_config(_config(n=0), top_eigenvalue)
    assert r["status"] == "failed"
    assert r["error"] == "ValueError: n_in must be >= 1, got 0"
    assert "Traceback" in r["traceback"]


def complex_output(net, X, seed):
    return {"z": 1j}


def list_output(net, X, seed):
    return [1.0]


def mixed_output(net, X, seed):
    return {"i": np.int64(3), "x": 2.5, "flag": np.bool_(True), "name": "a", "none": None,
            "vector": [1.0, 2.0]}


def test_measure_outputs_are_checked_on_the_worker():
    r = run_config(_config(), [complex_output])
    assert r["status"] == "failed"
    assert r["error"].startswith("TypeError: measure 'tests.test_sweeps:complex_output': 'z'")
    r = run_config(_config(), list_output)
    assert r["error"] == ("TypeError: measure 'tests.test_sweeps:list_output' must return a "
                          "dict, got list")
    r = run_config(_config(), mixed_output)
    assert r["status"] == "ok"
    assert (r["i"], r["x"], r["flag"], r["name"], r["none"]) == (3, 2.5, True, "a", None)
    assert type(r["i"]) is int and type(r["flag"]) is bool
    np.testing.assert_array_equal(r["vector"], [1.0, 2.0])


def test_builtin_measures_against_direct_calls():
    spectrum = pytest.importorskip("fasthess.spectrum")
    theory = pytest.importorskip("fasthess.theory")
    cfg = _config(activation="tanh", n=4, n_samples="2D", seed=3, k=2, n_probes=3,
                  n_steps=10)
    r = run_config(cfg, ["eigenvalues", "rank", "smallest_nonzero", "density"])
    assert r["status"] == "ok", r["traceback"]
    p = Problem(sweeps.normalize_config(cfg, ["smallest_nonzero", "density"]))
    np.testing.assert_allclose(r["eigenvalues"], np.linalg.eigvalsh(fh.hessian(p.net, p.X)),
                               rtol=0, atol=1e-12 * r["eigenvalues"][-1])
    assert r["rank"] == fh.numerical_rank(r["eigenvalues"]).rank
    assert r["rank_undetermined"] is fh.numerical_rank(r["eigenvalues"], warn=False).undetermined
    assert r["effective_parameters"] == theory.effective_parameters("tanh", 4, 4, 1, n_samples=40)
    np.testing.assert_array_equal(r["smallest_nonzero"],
                                  fh.smallest_nonzero(p.net, p.X, k=2))
    assert r["smallest_nonzero"].shape == (2,)
    np.testing.assert_allclose(r["density_weights"].sum(), 1.0, rtol=1e-12)
    assert r["density"].shape == r["density_grid"].shape


def test_builtin_dynamics_measure():
    pytest.importorskip("fasthess.dynamics")
    r = run_config(_config(n=4, n_samples="2D", steps=50, lr=0.1), "dynamics")
    assert r["status"] == "ok", r["traceback"]
    assert r["diverged"] is False
    loss = r["dynamics_loss"]
    assert loss.shape == (51,) and loss[-1] < loss[0]
    assert r["final_loss"] == loss[-1]


# ---------------------------------------------------------------------- store
def test_store_of_another_version_is_refused(tmp_path):
    store = tmp_path / "old"
    (store / "records").mkdir(parents=True)
    (store / "manifest.json").write_text(json.dumps(
        {"kind": "fasthess-sweep-store", "format_version": 0, "created_by": "fasthess 0.0.1"}))
    msg = rf"format version 0 \(fasthess 0.0.1\).*format version {FORMAT_VERSION}"
    with pytest.raises(StoreVersionError, match=msg):
        sweep([_config()], top_eigenvalue, store)
    with pytest.raises(StoreVersionError, match=msg):
        load_sweep(store)


def test_directory_that_is_not_a_store_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a fasthess sweep store"):
        sweep([_config()], top_eigenvalue, tmp_path)
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        load_sweep(tmp_path / "nowhere")


def test_records_are_readable_as_the_umask_allows(tmp_path):
    old_umask = os.umask(0o022)
    try:
        st = Store(tmp_path / "s", create=True)
        st.write({"key": "k", "arrays": ["a"]}, {"a": np.ones(2)})
    finally:
        os.umask(old_umask)
    for name in ("k.json", "k.npz"):
        assert os.stat(st.records / name).st_mode & 0o777 == 0o644
    assert os.stat(st.path / "manifest.json").st_mode & 0o777 == 0o644


def test_leftover_temporaries_are_ignored_then_removed(tmp_path):
    st = Store(tmp_path / "s", create=True)
    old, fresh = st.records / ".tmp-old.json", st.records / ".tmp-fresh.json"
    old.write_text("{")   # a crash mid-write leaves a torn temporary, never a record
    fresh.write_text("{")
    os.utime(old, (0, 0))
    assert load_sweep(st.path) == []
    Store(st.path, create=True)
    assert not old.exists() and fresh.exists()  # fresh: maybe another sweep's live write


def test_load_sweep_as_frame_needs_pandas(tmp_path):
    st = Store(tmp_path / "s", create=True)
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install pandas"):
            load_sweep(st.path, as_frame=True)
    else:
        assert len(load_sweep(st.path, as_frame=True)) == 0


# ---------------------------------------------------------------------- sweeps on Dask
def test_sweep_stores_one_record_per_config_and_resumes(client, tmp_path):
    store = tmp_path / "s"
    configs = [_config(activation=a, seed=s) for a in ("erf", "linear") for s in range(3)]
    report = sweep(configs + configs[:2], top_eigenvalue, store, client=client,
                   progress=False)
    assert (report.n_run, report.n_skipped, report.n_failed) == (6, 0, 0)
    assert len(report.keys) == 8 and len(set(report.keys)) == 6
    assert len(_json_records(store)) == 6
    recs = {r["key"]: r for r in load_sweep(store)}
    assert set(recs) == set(report.keys)
    workers = {r["worker"] for r in recs.values()}
    assert workers <= set(client.scheduler_info(n_workers=-1)["workers"])
    for cfg, key in zip(configs, report.keys):
        r = recs[key]
        assert r["status"] == "ok" and r["seed"] == cfg["seed"]
        # on a worker exactly as in this process: reproducible from the seed alone
        local = run_config(cfg, top_eigenvalue)
        np.testing.assert_array_equal(r["ev"], local["ev"])
        assert r["time_total"] > 0
    mtimes = {p: os.stat(store / "records" / p).st_mtime_ns for p in _json_records(store)}
    again = sweep(configs, top_eigenvalue, store, client=client, progress=False)
    assert (again.n_run, again.n_skipped) == (0, 6)
    assert {p: os.stat(store / "records" / p).st_mtime_ns
            for p in _json_records(store)} == mtimes
    bigger = sweep(configs + [_config(seed=9)], top_eigenvalue, store, client=client,
                   progress=False)
    assert (bigger.n_run, bigger.n_skipped) == (1, 6)


def test_failing_configs_are_recorded_and_the_sweep_goes_on(client, tmp_path):
    store = tmp_path / "s"
    configs = [_config(seed=0),
               _config(n=0),                                       # bad size
               {"activation": "erf", "n": 2000, "n_samples": 4},   # D x D cannot fit
               _config(seed=1)]
    report = sweep(configs, dense_hessian_norm, store, client=client, progress=False)
    assert (report.n_run, report.n_failed) == (4, 2)
    recs = {r["key"]: r for r in load_sweep(store)}
    status = [recs[k]["status"] for k in report.keys]
    assert status == ["ok", "failed", "failed", "ok"]
    assert recs[report.keys[1]]["error"] == "ValueError: n_in must be >= 1, got 0"
    big = recs[report.keys[2]]
    assert big["error"].startswith("MemoryError: the dense Hessian (4002000 x 4002000")
    assert "hessian_operator" in big["error"] and big["D"] == 4002000
    assert [e for _, e in report.failed] == [recs[report.keys[i]]["error"] for i in (1, 2)]
    # failed records count as present; rerun_failed runs them again
    assert sweep(configs, dense_hessian_norm, store, client=client, progress=False).n_run == 0
    again = sweep(configs, dense_hessian_norm, store, client=client, progress=False,
                  rerun_failed=True)
    assert (again.n_run, again.n_failed, again.n_skipped) == (2, 2, 2)
    assert len(_json_records(store)) == 4


def test_interrupted_sweep_keeps_what_finished(client, tmp_path, monkeypatch):
    store = tmp_path / "s"
    configs = [_config(seed=s) for s in range(6)]
    real_write = Store.write
    calls = []

    def write_then_interrupt(self, record, arrays):
        real_write(self, record, arrays)
        calls.append(record["key"])
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C while results arrive

    monkeypatch.setattr(Store, "write", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        sweep(configs, top_eigenvalue, store, client=client, progress=False)
    monkeypatch.undo()
    assert sorted(p[:-5] for p in _json_records(store)) == sorted(calls)
    assert not [p for p in os.listdir(store / "records") if p.startswith(".tmp-")]
    kept = load_sweep(store)
    assert all(r["status"] == "ok" and r["ev"].shape == (12,) for r in kept)
    report = sweep(configs, top_eigenvalue, store, client=client, progress=False)
    assert (report.n_run, report.n_skipped) == (4, 2)
    assert len(_json_records(store)) == 6


def test_damaged_records_are_run_again(client, tmp_path):
    store = tmp_path / "s"
    configs = [_config(seed=s) for s in range(4)]
    first = sweep(configs, top_eigenvalue, store, client=client, progress=False)
    records = store / "records"
    path = {s: records / f"{k}.json" for s, k in enumerate(first.keys)}
    path[0].write_text(path[0].read_text()[:40])                   # truncated
    body = json.loads(path[1].read_text())
    del body["status"]
    path[1].write_text(json.dumps(body))                           # no "status"
    npz = records / f"{first.keys[2]}.npz"
    npz.write_bytes(b"PK\x03\x04")                                 # arrays damaged
    # --rerun-failed reads every status: a record without one is damaged, no KeyError
    again = sweep(configs, top_eigenvalue, store, client=client, progress=False,
                  rerun_failed=True)
    assert (again.n_run, again.n_skipped, again.n_failed) == (3, 1, 0)
    assert sorted(d.split(" ")[0] for d in again.damaged) == sorted(
        [str(path[0]), str(path[1]), str(npz)])  # each damaged file named
    recs = {r["seed"]: r for r in load_sweep(store)}  # whole again: no warning
    assert sorted(recs) == [0, 1, 2, 3]
    for cfg in configs:
        assert recs[cfg["seed"]]["status"] == "ok"
        np.testing.assert_array_equal(recs[cfg["seed"]]["ev"],
                                      run_config(cfg, top_eigenvalue)["ev"])


CLAIM_AND_WAIT = """
import sys, time
from fasthess.sweeps.store import Store
claims = Store(sys.argv[1], create=True).claims().__enter__()
assert claims.claim(sys.argv[2])
print("claimed", flush=True)
time.sleep(600)
"""


def _python(code, *args, **kwargs):
    """A Python process from the repository root (so this checkout is imported)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)


def test_config_claimed_by_a_live_sweep_is_left_to_it_until_it_dies(client, tmp_path):
    store = tmp_path / "s"
    configs = [_config(seed=s) for s in range(3)]
    holder = _python(CLAIM_AND_WAIT, store, record_key(configs[1], top_eigenvalue))
    try:
        assert holder.stdout.readline().strip() == "claimed", holder.stderr.read()
        report = sweep(configs, top_eigenvalue, store, client=client, progress=False)
        assert (report.n_run, report.n_skipped, report.n_elsewhere) == (2, 0, 1)
        assert sorted(r["seed"] for r in load_sweep(store)) == [0, 2]
    finally:
        holder.kill()  # as kill -9: no chance to release its claim
        holder.communicate()
    # the operating system dropped its lock with it: the claim is stale, taken over
    report = sweep(configs, top_eigenvalue, store, client=client, progress=False)
    assert (report.n_run, report.n_skipped, report.n_elsewhere) == (1, 2, 0)
    assert sorted(r["seed"] for r in load_sweep(store)) == [0, 1, 2]
    assert set(os.listdir(store / "claims")) <= {"takeover.lock"}


SWEEP_WHEN_TOLD = """
import glob, json, os, sys, time
from distributed import Client
from fasthess.sweeps import sweep
from tests.test_sweeps import LogRuns, _config
address, store, log, wait_for_claims = sys.argv[1:]
with Client(address) as client:
    deadline = time.monotonic() + 120
    while wait_for_claims == "yes" and not glob.glob(os.path.join(store, "claims", "*.claim")):
        assert time.monotonic() < deadline, "the other sweep never claimed anything"
        time.sleep(0.01)
    r = sweep([_config(seed=s) for s in range(8)], LogRuns(log, 1.0), store, client=client,
              progress=False)
print(json.dumps([r.n_run, r.n_skipped, r.n_elsewhere]))
"""


def test_two_sweeps_on_one_store_at_once_run_each_config_once(client, tmp_path):
    """The second starts once the first has claimed: the two overlap for sure."""
    store, log = tmp_path / "s", tmp_path / "runs.log"
    procs = [_python(SWEEP_WHEN_TOLD, client.scheduler.address, store, log, wait)
             for wait in ("no", "yes")]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    (run_a, skipped_a, elsewhere_a), (run_b, skipped_b, elsewhere_b) = [
        json.loads(out.splitlines()[-1]) for out, _ in outs]
    runs = log.read_text().split()
    assert len(runs) == 8 == len(set(runs))  # every configuration measured exactly once
    assert run_a + run_b == 8 and elsewhere_b >= 1
    assert run_b + skipped_b + elsewhere_b == 8
    assert sorted(r["status"] for r in load_sweep(store)) == ["ok"] * 8


def test_disk_full_mid_sweep_stops_and_leaves_only_whole_records(client, tmp_path,
                                                                 monkeypatch):
    store = tmp_path / "s"
    configs = [_config(seed=s) for s in range(5)]
    real, records = _io.atomic_write, []

    def disk_full_at_third_record(path, write, sync_dir=True):
        if str(path).endswith(".json") and os.path.basename(os.path.dirname(path)) == "records":
            records.append(path)
            if len(records) == 3:  # half of it written, then the disk is full
                def half_then_full(f):
                    class Full:
                        def write(self, data):
                            f.write(bytes(data)[: len(data) // 2])
                            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

                    write(Full())

                return real(path, half_then_full, sync_dir=sync_dir)
        return real(path, write, sync_dir=sync_dir)

    monkeypatch.setattr(_io, "atomic_write", disk_full_at_third_record)
    with pytest.raises(OSError) as info:
        sweep(configs, top_eigenvalue, store, client=client, progress=False)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(records[2])
    # the two records written before are whole; of the third nothing is left
    assert sorted(os.listdir(store / "records")) == sorted(
        os.path.basename(p)[:-5] + ext for p in records[:2] for ext in (".json", ".npz"))
    assert set(os.listdir(store / "claims")) <= {"takeover.lock"}  # claims given up
    assert len(load_sweep(store)) == 2
    report = sweep(configs, top_eigenvalue, store, client=client, progress=False)
    assert (report.n_run, report.n_skipped) == (3, 2)


def test_cli_main_with_scheduler(client, tmp_path):
    """`fasthess sweep --scheduler ADDRESS` from another process, as a user runs it
    (a second client in the test process itself would share its event loop)."""
    import subprocess
    import sys

    grid = tmp_path / "g.toml"
    store = tmp_path / "s"

    def cli(*extra):
        cmd = [sys.executable, "-m", "fasthess", "sweep", "--grid", str(grid), "--store",
               str(store), "--scheduler", client.scheduler.address, "--no-progress", *extra]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    grid.write_text('measure = "top"\n')  # user functions are not available in grid files
    out = cli()
    assert out.returncode == 2 and "measure: unknown name 'top'" in out.stderr
    grid.write_text('measure = "eigenvalues"\nactivation = ["linear", "erf"]\nn = [2, 3]\n'
                    'n_samples = "D"\n')
    out = cli()
    assert out.returncode == 0, out.stderr
    assert "4 run (0 failed), 0 already in the store" in out.stdout
    assert len(load_sweep(store)) == 4
    out = cli()
    assert out.returncode == 0 and "0 run (0 failed), 4 already in the store" in out.stdout
    out = cli("--workers", "2")
    assert out.returncode == 2 and "--workers" in out.stderr


def test_worker_killed_mid_sweep_loses_and_duplicates_nothing(client, tmp_path):
    store = tmp_path / "s"
    marker = tmp_path / "died"
    measure = DieOnce(marker, seed=2)
    configs = [_config(seed=s) for s in range(6)]
    report = sweep(configs, measure, store, client=client, progress=False, retries=2)
    assert marker.exists(), "the worker was not killed: the test proves nothing"
    died = int(marker.read_text())
    assert (report.n_run, report.n_failed) == (6, 0)
    records = load_sweep(store)
    assert len(_json_records(store)) == 6 == len(records)
    assert sorted(r["seed"] for r in records) == list(range(6))
    assert all(r["status"] == "ok" for r in records)
    killed = [r for r in records if r["seed"] == 2][0]
    assert killed["pid"] != died and killed["pid_ok"] == killed["pid"]
    client.wait_for_workers(2, timeout=120)  # the nanny restarts it; leave the cluster whole


def test_config_that_keeps_killing_workers_is_recorded_as_failed(client, tmp_path):
    store = tmp_path / "s"
    configs = [_config(seed=s) for s in range(3)]
    report = sweep(configs, die_on_seed_1, store, client=client, progress=False)
    assert (report.n_run, report.n_failed) == (3, 1)
    recs = {r["seed"]: r for r in load_sweep(store)}
    assert recs[0]["status"] == recs[2]["status"] == "ok"
    # the fixture's scheduler allows 1 worker death per task; the second gives up
    assert recs[1]["status"] == "failed" and recs[1]["error"].startswith("KilledWorker")
    client.wait_for_workers(2, timeout=120)


def test_default_local_cluster(tmp_path):
    report = sweep([_config(seed=s) for s in range(2)], top_eigenvalue, tmp_path / "s",
                   n_workers=1, progress=True)
    assert (report.n_run, report.n_failed) == (2, 0)
    recs = load_sweep(tmp_path / "s", arrays=False)
    assert all(r["worker"].startswith("tcp://") and "ev" not in r for r in recs)
    assert len({r["pid"] for r in recs} - {os.getpid()}) == 1  # one worker process


def test_innocent_config_on_a_killed_worker_is_not_blamed(tmp_path):
    """One worker holds two tasks (Dask's default worker saturation), so the
    innocent config queued behind the killer dies with it, with a KilledWorker
    of its own: it must run again alone and be recorded as ok."""
    configs = [_config(seed=s) for s in range(3)]
    report = sweep(configs, die_on_seed_0_slowly, tmp_path / "s", n_workers=1, retries=0,
                   progress=False)
    assert (report.n_run, report.n_failed) == (3, 1)
    recs = load_sweep(tmp_path / "s")
    assert len(recs) == 3
    status = {r["seed"]: (r["status"], (r["error"] or "").split(":")[0]) for r in recs}
    assert status == {0: ("failed", "KilledWorker"), 1: ("ok", ""), 2: ("ok", "")}


def test_sweep_argument_errors(client, tmp_path):
    with pytest.raises(ValueError, match="n_workers applies"):
        sweep([_config()], top_eigenvalue, tmp_path, client=client, n_workers=2)
    with pytest.raises(ValueError, match="retries must be >= 0"):
        sweep([_config()], top_eigenvalue, tmp_path, client=client, retries=-1)
    with pytest.raises(TypeError, match="client must be a distributed.Client"):
        sweep([_config()], top_eigenvalue, tmp_path, client="tcp://localhost:1")


# ---------------------------------------------------------------------- the main guard
_SCRIPT = """
import fasthess as fh
configs = [{"activation": "erf", "n": 2}]
def run():
    return fh.sweep(configs, "rank", STORE, progress=False)
BODY
"""


@pytest.mark.parametrize("body, guarded", [
    ("run()", False),
    ("report = fh.sweep(configs, 'rank', STORE, progress=False)", False),
    ("if __name__ == '__main__':\n    print(run().n_run)", True),
    ("if '__main__' == __name__:\n    print(run().n_run)", True),
])
def test_a_script_without_a_main_guard_gets_one_clear_error(tmp_path, body, guarded):
    pytest.importorskip("distributed")
    script = tmp_path / "script.py"
    store = tmp_path / "store"
    script.write_text(_SCRIPT.replace("BODY", body).replace("STORE", repr(str(store))))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": os.getcwd()})
    if guarded:
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "1"
    else:
        assert out.returncode != 0
        # one error, before any worker process started: no multiprocessing traceback wall
        assert out.stderr.count("RuntimeError: fasthess.sweep starts worker processes") == 1
        assert 'if __name__ == "__main__":' in out.stderr
        assert "bootstrapping" not in out.stderr and not store.exists()


def test_a_worker_reimporting_the_script_refuses_to_sweep(monkeypatch):
    import types

    from fasthess.sweeps import runner

    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__mp_main__"))
    with pytest.raises(RuntimeError, match="if __name__ == \"__main__\":"):
        fh.sweep([{"activation": "erf", "n": 2}], "rank", "unused-store", progress=False)
    assert runner.MAIN_GUARD_ADVICE.startswith("fasthess.sweep starts worker processes")
