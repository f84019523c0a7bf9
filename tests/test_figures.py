"""Figures: each data function shows its claim at small sizes; the CLI writes PNG + data.

The claims are checked from the numbers, with references written here rather than
read back from the module: the KS bound is recomputed from its derivation, the
late slope is refitted, the predicted ranks are the closed forms of THEORY.md.
"""
import math
import sys

import numpy as np
import pytest

from fasthess import figures
from fasthess.cli import main as cli_main
from fasthess.figures import (FIGURE_NAMES, dynamics_data, erf_spectrum_data, ks_distance,
                              linear_density_data, quadratic_spectrum_data, rank_vs_n_data)
from fasthess.theory import effective_parameters, linear_cdf

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# THEORY.md d: the slope window ends where the loss reaches this.
LOSS_FLOOR = 1e-22
# The dynamics claim: measured late slope vs decay_rate.
RTOL_SLOPE = 0.05
# A rank is trusted only inside a gap this wide (THEORY.md c).
MIN_GAP_DECADES = 8.0


def linear_ks_bound(n_teachers):
    """Bound on the KS distance of pooled linear spectra to theory.linear_cdf.

    Sampling: the pooled empirical CDF is the mean of n_teachers independent
    per-teacher CDFs, each [0, 1]-valued, so its variance at any x is at most that
    of one sample per teacher; DKW with failure probability 1e-3 then gives
    sqrt(ln(2 / 1e-3) / (2 n_teachers)). Finite size: the law is the large-N limit;
    THEORY.md b measured KS <= 0.030 down to min(Ni, Nh) = 30, and with 4000
    teachers at (12, 18), where sampling is ~0.01, the distance was 0.010; 0.03
    covers it.
    """
    return 0.03 + math.sqrt(math.log(2 / 1e-3) / (2 * n_teachers))


def refit_slope(steps, loss):
    """Slope of log L over the second half of the window where L > 1e-22 (THEORY.md d)."""
    last = np.nonzero(loss > LOSS_FLOOR)[0][-1]
    s, l = steps[:last + 1].astype(float), loss[:last + 1]
    half = s >= s[-1] / 2
    return np.polyfit(s[half], np.log(l[half]), 1)[0]


# ---------------------------------------------------------------------- claims
def check_linear_density(data):
    n_teachers = int(data["n_teachers"])
    ev = np.asarray(data["eigenvalues"])
    assert ev.size == n_teachers * int(data["n_in"])
    assert np.all(ev > 0)
    ni, nh = int(data["n_in"]), int(data["n_hidden"])
    ks = ks_distance(ev, lambda x: linear_cdf(x, ni, nh))
    assert ks == pytest.approx(float(data["ks"]), abs=1e-12)
    assert ks <= linear_ks_bound(n_teachers)
    # the histogram and the theory are both densities on the plotted range
    grid, dens = np.asarray(data["grid"]), np.asarray(data["density"])
    assert np.trapezoid(dens, grid) == pytest.approx(1.0, abs=1e-3)
    edges = np.asarray(data["bin_edges"])
    assert np.sum(np.asarray(data["histogram"]) * np.diff(edges)) == pytest.approx(1.0)
    assert grid[0] == 0.0 and grid[-1] >= ev.max()
    assert bool(data["claim_holds"])
    return ks


def check_dynamics(data):
    assert not bool(data["diverged"])
    rate = float(data["decay_rate"])
    # lr = 1 / lambda_max: the slowest mode is lambda_min (THEORY.md d)
    lr, lmin = float(data["lr"]), float(data["lambda_min"])
    assert lr == pytest.approx(1.0 / float(data["lambda_max"]))
    assert rate == pytest.approx(2 * math.log(1 - lr * lmin), rel=1e-10)
    slope = refit_slope(np.asarray(data["steps"]), np.asarray(data["loss"]))
    assert slope == pytest.approx(float(data["measured_slope"]), rel=1e-9)
    assert abs(slope / rate - 1) <= RTOL_SLOPE
    # the quadratic model follows GD over the fitted window, where the slowest mode rules
    steps = np.asarray(data["steps"])
    window = (steps >= int(data["fit_start"])) & (steps <= int(data["fit_end"]))
    loss = np.asarray(data["loss"])[window]
    np.testing.assert_allclose(np.asarray(data["predicted"])[window], loss, rtol=1e-2)
    np.testing.assert_allclose(np.asarray(data["asymptote"])[window], loss, rtol=1e-2)
    assert bool(data["claim_holds"])


def check_quadratic_spectrum(data):
    ns = [int(n) for n in data["ns"]]
    for i, n in enumerate(ns):
        ev = np.asarray(data[f"eigenvalues_{n}"])
        assert ev.size == n * n + n
        assert int(data["rank"][i]) == n * (n + 3) // 2
        assert float(data["gap_decades"][i]) > MIN_GAP_DECADES
    assert bool(data["claim_holds"])


def check_erf_spectrum(data):
    for i, n in enumerate(int(n) for n in data["ns"]):
        assert int(data["rank"][i]) == n * n + n  # full rank D
        ev = np.asarray(data[f"eigenvalues_{n}"])
        assert ev.min() > 0
    assert str(data["method"]) == "svd"
    assert bool(data["claim_holds"])


def check_rank_vs_n(data):
    acts = [str(a) for a in data["activations"]]
    assert acts == ["linear", "quadratic", "cubic", "erf", "relu"]
    ns = [int(n) for n in data["ns"]]
    for j, n in enumerate(ns):
        # closed forms of THEORY.md c at Ni = Nh = N, No = 1, P >= 2D + 20
        expected = {"linear": n, "quadratic": n * (n + 3) // 2,
                    "cubic": min(math.comb(n + 2, 3), n * n), "erf": n * n + n,
                    "relu": n * n}
        for a, name in enumerate(acts):
            assert int(data["rank"][a, j]) == expected[name], (name, n)
            assert int(data["predicted"][a, j]) == expected[name], (name, n)
            assert float(data["gap_decades"][a, j]) > MIN_GAP_DECADES, (name, n)
    assert bool(data["claim_holds"])


CHECKS = {"linear_density": check_linear_density, "dynamics": check_dynamics,
          "quadratic_spectrum": check_quadratic_spectrum, "erf_spectrum": check_erf_spectrum,
          "rank_vs_n": check_rank_vs_n}


# ---------------------------------------------------------------------- data functions
def test_linear_density_claim_and_discrimination():
    data = linear_density_data(n_in=12, n_hidden=18, n_teachers=300, seed=0, progress=False)
    check_linear_density(data)
    # the bound has teeth: the law of the swapped shape (Ni, Nh) = (18, 12) is rejected
    wrong = ks_distance(data["eigenvalues"], lambda x: linear_cdf(x, 18, 12))
    assert wrong > linear_ks_bound(300)


def test_dynamics_claim():
    check_dynamics(dynamics_data(n_in=3, n_hidden=2, max_steps=50_000, seed=0, progress=False))


def test_dynamics_no_teacher_within_budget():
    with pytest.raises(RuntimeError, match="max_steps"):
        dynamics_data(n_in=3, n_hidden=2, max_steps=10, max_teachers=2, seed=0, progress=False)


def test_quadratic_spectrum_claim():
    data = quadratic_spectrum_data(ns=(2, 3, 4), seed=0, progress=False)
    check_quadratic_spectrum(data)
    assert np.array_equal(data["effective_parameters"], data["predicted"])


def test_erf_spectrum_claim():
    check_erf_spectrum(erf_spectrum_data(ns=(2, 3, 4), seed=0, progress=False))


def test_rank_vs_n_claim():
    data = rank_vs_n_data(ns=(2, 3, 4), seed=0, progress=False)
    check_rank_vs_n(data)
    for a, name in enumerate(data["activations"]):
        act = figures._activation(str(name))
        for j, n in enumerate(data["ns"]):
            assert data["predicted"][a, j] == effective_parameters(
                act, int(n), int(n), 1, n_samples=int(data["n_samples"][a, j]))


def test_rank_vs_n_unknown_activation():
    with pytest.raises(ValueError, match="tanh"):
        rank_vs_n_data(ns=(2,), activations=("tanh",), progress=False)


def test_ks_distance_matches_scipy():
    from scipy import stats

    x = np.random.default_rng(0).random(50)
    ref = stats.kstest(x, "uniform").statistic
    assert ks_distance(x, lambda t: np.clip(t, 0, 1)) == pytest.approx(ref, abs=1e-15)


def test_data_functions_need_no_matplotlib(monkeypatch):
    # None in sys.modules makes "import matplotlib" raise ImportError
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    data = rank_vs_n_data(ns=(2,), activations=("linear", "erf"), progress=False)
    assert bool(data["claim_holds"])


def test_progress_bar_and_fallback(monkeypatch, capsys):
    pytest.importorskip("tqdm")
    quadratic_spectrum_data(ns=(2, 3), progress=True)
    assert "quadratic_spectrum" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "tqdm", None)  # not installed: silently no bar
    data = quadratic_spectrum_data(ns=(2, 3), progress=True)
    assert capsys.readouterr().err == ""
    assert bool(data["claim_holds"])


# ---------------------------------------------------------------------- the command
def run_cli(out, *names, extra=()):
    argv = ["figures", "--out", str(out), "--quick", "--no-progress", *extra]
    for name in names:
        argv += ["--only", name]
    return cli_main(argv)


@pytest.mark.parametrize("name", FIGURE_NAMES)
def test_cli_writes_png_and_data(name, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert run_cli(tmp_path, name) == 0
    png = (tmp_path / f"{name}.png").read_bytes()
    assert png[:8] == PNG_MAGIC and len(png) > 1024
    with np.load(tmp_path / f"{name}.npz") as data:
        CHECKS[name](data)
        # the saved data redraw: plot functions accept what np.load returns
        fig = getattr(figures, f"plot_{name}")(data)
        assert fig.axes[0].get_xlabel() and fig.axes[0].get_ylabel()
        assert fig.axes[0].get_legend() is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.npz", f"{name}.png"]
    out = capsys.readouterr().out
    assert out.startswith(f"{name}: ok:")


def test_cli_unknown_name(tmp_path, capsys):
    assert run_cli(tmp_path, "linear_density", "spectrum") == 2
    err = capsys.readouterr().err
    assert "only" in err and "'spectrum'" in err
    for name in FIGURE_NAMES:
        assert name in err
    assert not any(tmp_path.iterdir())  # checked before any work


def test_cli_bad_scale(tmp_path, capsys):
    assert run_cli(tmp_path, "rank_vs_n", extra=("--scale", "0")) == 2
    assert "scale" in capsys.readouterr().err


def test_interrupt_keeps_finished_figures(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")

    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(figures, "dynamics_data", interrupted)
    assert run_cli(tmp_path, "rank_vs_n", "dynamics", "erf_spectrum") == 130
    assert (tmp_path / "rank_vs_n.png").read_bytes()[:8] == PNG_MAGIC
    with np.load(tmp_path / "rank_vs_n.npz") as data:
        check_rank_vs_n(data)
    # nothing of the interrupted figure or the ones after it, no temporary files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank_vs_n.npz", "rank_vs_n.png"]
    assert "interrupted" in capsys.readouterr().err


def test_cli_without_matplotlib_writes_data_only(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "matplotlib" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert run_cli(tmp_path, "quadratic_spectrum") == 0
    assert [p.name for p in tmp_path.iterdir()] == ["quadratic_spectrum.npz"]
    assert "matplotlib is not installed" in capsys.readouterr().err
