"""The benchmark harness (bench/harness.py, `python -m bench.compare`) runs and its routes agree.

Timings are not asserted (machines are shared); the routes' results are, inside
``compare`` itself, and the reported figures must be well-formed ratios.
"""
import numpy as np
import pytest

import fasthess as fh
from bench import harness as B
from fasthess.cli import main


def test_naive_routes_agree_with_fasthess():
    net, X = B._problem("tanh", 5, 2.0)
    H = fh.hessian(net, X)
    for method in ("numpy_jtj", "jacobian_syrk"):
        got = np.asarray(B._route(method, net, X)())
        if method == "jacobian_syrk":  # syrk fills the upper triangle only
            got = np.triu(got) + np.triu(got, 1).T
        np.testing.assert_allclose(got, H, rtol=1e-12, atol=1e-14)


def _is_spread(s):
    return (set(s) == {"min", "median", "max"} and 0 < s["min"] <= s["median"] <= s["max"]
            and np.isfinite(s["max"]))


def test_compare_rows_and_table():
    rows = B.compare("erf", [4], 2.0, repeat=2, memory=True, memory_min_n=0, log=lambda s: None)
    (row,) = rows
    assert row["D"] == 20 and row["P"] == 40
    assert set(row["speedup"]) == {"numpy_jtj", "jacobian_syrk"}
    assert all(_is_spread(v) for v in row["speedup"].values())
    assert _is_spread(row["dgemm_fraction"]) and row["dgemm_fraction"]["max"] < 10
    assert _is_spread(row["fasthess_s"]) and _is_spread(row["eig_speedup"])
    assert row["traced_peak_over_H"] > 0.9  # at least H itself is allocated
    assert row["peak_over_H"]["fasthess"] is not None
    table = B.markdown_table(rows)
    assert table.count("\n") == 2 and "| erf | 4 | 20 | 40 |" in table
    # every ratio is printed with its spread: median (min-max)
    assert table.count("x (") == 2


def test_small_sizes_skip_the_memory_processes():
    (row,) = B.compare("erf", [3], 2.0, repeat=1, memory=True, memory_min_n=30,
                       log=lambda s: None)
    assert "peak_over_H" not in row
    assert "| - | - |" in B.markdown_table([row])


def test_interleaved_times_rounds_and_order():
    import time

    slow = B.interleaved_times({"fast": lambda: None, "slow": lambda: time.sleep(0.003)},
                               repeat=3, settle=0.0, min_sample=0.001)
    assert set(slow) == {"fast", "slow"} and all(len(t) == 3 for t in slow.values())
    assert np.all(slow["slow"] >= 0.003) and np.all(slow["fast"] < 0.003)


def test_spread_and_format():
    s = B.spread([3.0, 1.0, 2.0])
    assert s == {"min": 1.0, "median": 2.0, "max": 3.0}
    assert B.format_spread(s, suffix="x") == "2.00x (1.00x-3.00x)"


def test_product_row_checks_and_reports_a_fraction():
    row = B.product_row("erf", 4, 2.0, columns=3, repeat=2, log=lambda s: None)
    assert row["columns"] == 3 and _is_spread(row["dgemm_fraction"])
    assert B.product_macs(4, 4, row["P"], 3) == 2 * row["P"] * 16 * 3


def test_under_load_stops_its_busy_loop(monkeypatch):
    import subprocess

    started = []
    real_popen = subprocess.Popen

    def recording_popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    row = B.under_load("erf", 3, 2.0, repeat=2, log=lambda s: None)
    assert _is_spread(row["all_over_one"]) and row["threads"] >= 1
    (busy,) = started
    assert busy.poll() is not None  # the busy loop was stopped


def test_import_order_runs_both_orders():
    row = B.import_order("erf", 3, 2.0, rounds=1, calls=1, log=lambda s: None)
    assert _is_spread(row["numpy_first_over_fasthess_first"])
    assert _is_spread(row["numpy_first_s"]) and _is_spread(row["fasthess_first_s"])


def test_measure_in_child_imports_numpy_first_and_reports_failures():
    assert B._child_code("pass").startswith("import numpy\n")
    result = B.measure_in_child(activation="tanh", sizes=[3], factor=2.0, repeat=1,
                                memory=False, products=[3])
    assert result["rows"][0]["n"] == 3 and result["products"][0]["n"] == 3
    with pytest.raises(RuntimeError, match="benchmark process failed"):
        B.measure_in_child(activation="no-such-activation", sizes=[3], repeat=1, memory=False,
                           products=[])


def test_eigen_savings_reports_route():
    net, X = B._problem("linear", 6, 2.0)
    e = B.eigen_savings(net, X, repeat=1)
    assert e["method"] == "linear" and _is_spread(e["speedup"])


def test_peak_memory_reports_out_of_memory_under_a_cap():
    peak, note = B.peak_memory("numpy_jtj", "erf", 30, 2.0, memory_limit=2 * 2**20)
    assert peak is None and ("out of memory" in note or "failed" in note)


def test_compare_command_runs(capsys):
    from bench.compare import run

    assert run(["--n", "3", "--repeat", "1", "--no-memory"]) == 0
    out = capsys.readouterr().out
    assert "fraction of DGEMM rate" in out and "| erf | 3 |" in out
    assert "hessian_operator @ V (20 columns)" in out


def test_peer_module_adds_routes(tmp_path, monkeypatch):
    """Extra routes come from a module's PEERS dict (how bench.peers adds jax/torch);
    a builder returning None (framework absent) is skipped, not an error."""
    mod = tmp_path / "fake_peers.py"
    mod.write_text(
        "import fasthess as fh\n"
        "PEERS = {'again': lambda net, X: (lambda: fh.hessian(net, X)),\n"
        "         'absent': lambda net, X: None}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    (row,) = B.compare("tanh", [3], 2.0, peer_module="fake_peers", repeat=1, memory_min_n=0,
                       log=lambda s: None)
    assert "again" in row["speedup"] and "absent" not in row["speedup"]
    assert row["peak_notes"]["absent"] == "not installed"


def test_package_never_imports_an_autodiff_framework():
    import subprocess
    import sys

    code = ("import sys, fasthess, fasthess.cli; "
            "print(any(m in sys.modules for m in ('jax', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_harness_is_not_in_the_package_and_fasthess_bench_says_where_it_went(capsys):
    from pathlib import Path

    assert not (Path(fh.__file__).parent / "benchmarking.py").exists()  # not in the wheel
    assert main(["bench", "--n", "20"]) == 2
    err = capsys.readouterr().err
    assert "python -m bench.compare" in err and "not part of the installed package" in err


def test_one_numpy_twin_the_test_suites():
    # the harness times the test suite's reference Jacobian, not a twin of its own
    from tests import reference

    net, X = B._problem("erf", 4, 2.0)
    np.testing.assert_array_equal(B._explicit_jacobian(net, X), reference.jacobian(net, X))
    assert not hasattr(B, "_numpy_activation")
