"""The side-by-side comparison (`fasthess bench`) runs and its routes agree.

Timings are not asserted (machines are shared); the routes' results are, inside
``compare`` itself, and the reported figures must be well-formed ratios.
"""
import numpy as np

import fasthess as fh
from fasthess import benchmarking as B
from fasthess.cli import main


def test_naive_routes_agree_with_fasthess():
    net, X = B._problem("tanh", 5, 2.0)
    H = fh.hessian(net, X)
    for method in ("numpy_jtj", "jacobian_syrk"):
        got = np.asarray(B._route(method, net, X)())
        if method == "jacobian_syrk":  # syrk fills the upper triangle only
            got = np.triu(got) + np.triu(got, 1).T
        np.testing.assert_allclose(got, H, rtol=1e-12, atol=1e-14)


def test_compare_rows_and_table():
    rows = B.compare("erf", [4], 2.0, repeat=1, memory=True, log=lambda s: None)
    (row,) = rows
    assert row["D"] == 20 and row["P"] == 40
    assert set(row["speedup"]) == {"numpy_jtj", "jacobian_syrk"}
    assert all(v > 0 and np.isfinite(v) for v in row["speedup"].values())
    assert 0 < row["dgemm_fraction"] < 10
    assert row["traced_peak_over_H"] > 0.9  # at least H itself is allocated
    assert row["peak_over_H"]["fasthess"] is not None
    table = B.markdown_table(rows)
    assert table.count("\n") == 2 and "| erf | 4 | 20 | 40 |" in table


def test_eigen_savings_reports_route():
    net, X = B._problem("linear", 6, 2.0)
    e = B.eigen_savings(net, X, repeat=1)
    assert e["method"] == "linear" and e["speedup"] > 0


def test_peak_memory_reports_out_of_memory_under_a_cap():
    peak, note = B.peak_memory("numpy_jtj", "erf", 30, 2.0, memory_limit=2 * 2**20)
    assert peak is None and ("out of memory" in note or "failed" in note)


def test_cli_bench_runs(capsys):
    assert main(["bench", "--n", "3", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "% of DGEMM rate" in out and "| erf | 3 |" in out


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
    (row,) = B.compare("tanh", [3], 2.0, peer_module="fake_peers", repeat=1,
                       log=lambda s: None)
    assert "again" in row["speedup"] and "absent" not in row["speedup"]
    assert row["peak_notes"]["absent"] == "not installed"


def test_package_never_imports_an_autodiff_framework():
    import subprocess
    import sys

    code = ("import sys, fasthess, fasthess.benchmarking, fasthess.cli; "
            "print(any(m in sys.modules for m in ('jax', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
