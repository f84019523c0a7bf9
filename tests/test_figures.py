"""Figures: each data function shows its claim at small sizes; the plots say what they show;
the registry holds one entry per figure; the CLI writes PNG + data.

The claims are checked from the numbers, with references written here rather than
read back from the module: the KS bound is recomputed from its derivation, the
dynamics' eigenvalues and quadratic model come from the einsum Jacobian of
tests/reference.py, the late slope is refitted, the predicted ranks are the closed
forms of THEORY.md.
"""
import dataclasses
import inspect
import math
import sys

import numpy as np
import pytest

import fasthess._config

from fasthess import figures
from fasthess.cli import build_parser
from fasthess.cli import main as cli_main
from fasthess.figures import (FIGURE_NAMES, FIGURES, FigureSpec, dynamics_data,
                              erf_spectrum_data, ks_distance, linear_density_data,
                              make_figures, population_data, population_dynamics_data,
                              quadratic_spectrum_data,
                              rank_vs_n_data, rank_vs_n_population_data)
from fasthess.network import TwoLayerNet
from fasthess.theory import effective_parameters, linear_cdf

from . import reference as ref

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EXPECTED_NAMES = ("linear_density", "dynamics", "quadratic_spectrum", "erf_spectrum",
                  "rank_vs_n", "population", "rank_vs_n_population", "population_dynamics")
# THEORY.md d: GD stops before the quadratic model reaches this loss.
LOSS_FLOOR = 1e-22
# The dynamics claim: measured late slope vs 2 log(1 - lr lambda_min).
RTOL_SLOPE = 0.05
# GD vs the quadratic model near the optimum (perturbation 1e-4: O(Delta) corrections).
RTOL_MODEL = 0.05
# A rank is trusted only inside a gap this wide (THEORY.md c).
MIN_GAP_DECADES = 8.0
# The quadratic model from independently computed eigenpairs vs the library's.
RTOL_MODEL_TWIN = 1e-6
# Colours a figure may use: the Okabe-Ito palette, black, white and greys.
OKABE_ITO_HEX = {"#000000", "#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2",
                 "#d55e00", "#cc79a7"}
# Words of the API that a figure's text must not use (a figure speaks of mathematics,
# not of function names).
API_WORDS = ("decay_rate", "theory.", "effective_parameters", "numerical_rank", "_data")
# Every data dict holds these, besides the figure's own keys.
COMMON_KEYS = {"claim_holds", "seed"}


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


def refit_slope(steps, loss, start, end):
    """Least-squares slope of log L over the records in [start, end]."""
    window = (steps >= start) & (steps <= end)
    return np.polyfit(steps[window].astype(float), np.log(loss[window]), 1)[0]


def assert_keys(data, keys):
    missing = (set(keys) | COMMON_KEYS) - set(data)
    assert not missing, f"missing keys {sorted(missing)}"


# ---------------------------------------------------------------------- claims
def check_linear_density(data):
    assert_keys(data, {"eigenvalues", "bin_edges", "histogram", "grid", "density",
                       "density_integral", "ks", "ks_bound", "n_in", "n_hidden", "n_samples",
                       "n_teachers"})
    n_teachers = int(data["n_teachers"])
    ev = np.asarray(data["eigenvalues"])
    ni, nh = int(data["n_in"]), int(data["n_hidden"])
    assert ev.size == n_teachers * ni
    assert np.all(ev > 0)
    assert int(data["n_samples"]) == ni  # whitened: P = Ni
    ks = ks_distance(ev, lambda x: linear_cdf(x, ni, nh))
    assert ks == pytest.approx(float(data["ks"]), abs=1e-12)
    assert float(data["ks_bound"]) == pytest.approx(linear_ks_bound(n_teachers), rel=1e-12)
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
    assert_keys(data, {"steps", "loss", "predicted", "decay_rate", "measured_slope",
                       "slope_rel_error", "fit_start", "fit_end", "lr", "lambda_min",
                       "lambda_max", "condition", "candidate_conditions", "chosen_candidate",
                       "model_max_rel_deviation", "n_steps", "diverged", "n_in", "n_hidden",
                       "n_samples", "teacher_w1", "teacher_w2", "inputs", "delta0"})
    assert not bool(data["diverged"])
    steps, loss = np.asarray(data["steps"]), np.asarray(data["loss"])
    assert steps[0] == 0 and steps[-1] == int(data["n_steps"])
    # the stored teacher and inputs reproduce everything, through the einsum Jacobian
    teacher = TwoLayerNet(np.asarray(data["teacher_w1"]), np.asarray(data["teacher_w2"]),
                          str(data["activation"]))
    X = np.asarray(data["inputs"])
    assert X.shape == (int(data["n_samples"]), int(data["n_in"]))
    lam, V = np.linalg.eigh(ref.hessian_at_optimum(teacher, X))
    nonzero = np.abs(lam) > lam.size * np.finfo(float).eps * lam[-1]
    lmin, lmax = lam[nonzero][0], lam[-1]
    lr = float(data["lr"])
    assert lr == pytest.approx(1.0 / lmax, rel=1e-10)
    assert float(data["lambda_min"]) == pytest.approx(lmin, rel=1e-8)
    # the representative teacher: the median of the candidates' lambda_min / lambda_max
    conds = np.asarray(data["candidate_conditions"])
    assert float(data["condition"]) == pytest.approx(lmin / lmax, rel=1e-8)
    assert float(data["condition"]) == np.sort(conds)[conds.size // 2]
    assert conds[int(data["chosen_candidate"])] == float(data["condition"])
    # lr = 1 / lambda_max: the slowest mode is lambda_min (THEORY.md d)
    rate = float(data["decay_rate"])
    assert rate == pytest.approx(2 * math.log(1 - lr * lmin), rel=1e-8)
    # GD starts at the stored student: its loss is the reference loss there
    delta = np.asarray(data["delta0"])
    Yt = ref.outputs(teacher, X)
    start = teacher.parameters() + delta
    assert loss[0] == pytest.approx(ref.loss_of_parameters(start, teacher, X, Yt), rel=1e-9)
    # the quadratic model from the twin's eigenpairs matches the library's curve
    c = V.T @ delta
    w = np.where(nonzero, 0.5 * lam * c * c, 0.0)
    f = np.where(nonzero, (1.0 - lr * lam) ** 2, 0.0)
    model = np.array([np.sum(w * f ** t) for t in steps])
    np.testing.assert_allclose(np.asarray(data["predicted"]), model, rtol=RTOL_MODEL_TWIN)
    # the fit window: the model's slope has settled to the rate there (within slope_rtol)
    start, end = int(data["fit_start"]), int(data["fit_end"])
    assert 0 < start < end == steps[-1]
    local = np.log(np.sum(w * f ** (start + 1)) / np.sum(w * f ** start))
    assert local / rate <= 1 + float(data["slope_rtol"]) + 1e-9
    # the plot ends above the floor: the loss is still falling at the slowest rate there
    assert loss.min() > LOSS_FLOOR / 10
    slope = refit_slope(steps, loss, start, end)
    assert slope == pytest.approx(float(data["measured_slope"]), rel=1e-9)
    assert abs(slope / rate - 1) <= RTOL_SLOPE
    # GD follows the quadratic model over the whole run
    deviation = np.max(np.abs(loss / model - 1))
    assert deviation == pytest.approx(float(data["model_max_rel_deviation"]), rel=1e-5)
    assert deviation <= RTOL_MODEL
    assert bool(data["claim_holds"])


def check_quadratic_spectrum(data):
    assert_keys(data, {"ns", "n_in", "n_hidden", "rank", "gap_decades", "rtol", "D",
                       "n_samples", "predicted", "effective_parameters", "method"})
    ns = [int(n) for n in data["ns"]]
    for i, n in enumerate(ns):
        ev = np.asarray(data[f"eigenvalues_{n}"])
        assert ev.size == n * n + n
        assert int(data["rank"][i]) == n * (n + 3) // 2
        assert int(data["predicted"][i]) == n * (n + 3) // 2
        assert float(data["gap_decades"][i]) > MIN_GAP_DECADES
    assert bool(data["claim_holds"])


def check_erf_spectrum(data):
    assert_keys(data, {"n_in", "n_hidden", "rank", "gap_decades", "rtol", "D", "n_samples",
                       "candidate_conditions", "smallest_relative", "method"})
    shapes = list(zip(np.asarray(data["n_in"]).tolist(), np.asarray(data["n_hidden"]).tolist()))
    for i, (ni, nh) in enumerate(shapes):
        D = nh * ni + nh
        assert int(data["rank"][i]) == D  # full rank
        key = f"eigenvalues_{ni}" if ni == nh else f"eigenvalues_{ni}x{nh}"
        ev = np.asarray(data[key])
        assert ev.size == D and ev.min() > 0
        assert float(data["smallest_relative"][i]) == pytest.approx(ev[0] / ev[-1], rel=1e-12)
        # the spectrum shown is the median-conditioned candidate's
        conds = np.sort(np.asarray(data["candidate_conditions"])[i])
        assert conds[conds.size // 2] == pytest.approx(ev[0] / ev[-1], rel=1e-12)
    assert str(data["method"]) == "svd"
    assert bool(data["claim_holds"])


def rank_closed_forms(n):
    """Closed forms of THEORY.md c at Ni = Nh = N, No = 1, P >= 2D + 20."""
    return {"linear": n, "quadratic": n * (n + 3) // 2, "cubic": min(math.comb(n + 2, 3), n * n),
            "erf": n * n + n, "relu": n * n}


def check_rank_vs_n(data):
    assert_keys(data, {"ns", "activations", "methods", "rank", "predicted", "gap_decades",
                       "D", "n_samples"})
    acts = [str(a) for a in data["activations"]]
    assert acts == ["linear", "quadratic", "cubic", "erf", "relu"]
    for j, n in enumerate(int(n) for n in data["ns"]):
        expected = rank_closed_forms(n)
        for a, name in enumerate(acts):
            assert int(data["rank"][a, j]) == expected[name], (name, n)
            assert int(data["predicted"][a, j]) == expected[name], (name, n)
            assert float(data["gap_decades"][a, j]) > MIN_GAP_DECADES, (name, n)
    assert bool(data["claim_holds"])


def check_population(data):
    assert_keys(data, {"population", "sampled", "sampled_rank", "n_samples", "distance",
                       "frobenius", "sigma", "fourth_moment", "frobenius_ratio", "slope",
                       "hoffman_wielandt_holds", "n", "D", "factors", "n_replicates"})
    n, D = int(data["n"]), int(data["D"])
    assert D == n * n + n
    Ps = np.asarray(data["n_samples"])
    np.testing.assert_array_equal(Ps, np.round(np.asarray(data["factors"]) * D).astype(int))
    population = np.asarray(data["population"])
    assert population.size == D and population.min() > 0  # erf: full rank
    # the first data set's distance is the one of its stored spectrum (both ascending)
    sampled = np.asarray(data["sampled"])
    for i in range(Ps.size):
        d = np.sqrt(np.sum((np.sort(sampled[i]) - np.sort(population)) ** 2))
        assert d == pytest.approx(float(data["distance"][i, 0]), rel=1e-10)
        assert int(data["sampled_rank"][i]) == min(int(Ps[i]), D)
    # Hoffman-Wielandt, and the exact mean-square law of the Frobenius distance
    distance, frob = np.asarray(data["distance"]), np.asarray(data["frobenius"])
    assert np.all(distance <= frob * (1 + 1e-10))
    ratio = np.sqrt(np.mean(Ps[:, None] * frob ** 2, axis=1)) / float(data["sigma"])
    np.testing.assert_allclose(np.asarray(data["frobenius_ratio"]), ratio, rtol=1e-12)
    assert np.all(np.abs(np.log(ratio)) <= math.log(1.25))
    slope = np.polyfit(np.log(Ps), np.log(np.sqrt(np.mean(distance ** 2, axis=1))), 1)[0]
    assert slope == pytest.approx(float(data["slope"]), rel=1e-10)
    assert abs(slope + 0.5) <= 0.25
    assert bool(data["claim_holds"])


def check_rank_vs_n_population(data):
    assert_keys(data, {"ns", "activations", "methods", "rank", "predicted", "gap_decades",
                       "resolved", "D", "min_gap_decades"})
    acts = [str(a) for a in data["activations"]]
    resolved = np.asarray(data["resolved"])
    np.testing.assert_array_equal(resolved, np.asarray(data["gap_decades"]) >= MIN_GAP_DECADES)
    for j, n in enumerate(int(n) for n in data["ns"]):
        expected = rank_closed_forms(n)  # P -> infinity: the same closed forms
        for a, name in enumerate(acts):
            assert int(data["predicted"][a, j]) == expected[name], (name, n)
            if resolved[a, j]:
                assert int(data["rank"][a, j]) == expected[name], (name, n)
    assert resolved.any()
    assert bool(data["claim_holds"])


def check_population_dynamics(data):
    assert_keys(data, {"alpha", "sim_loss", "sim_mean", "sim_spread", "ode_loss",
                       "symmetric_loss", "plateau_height", "plateau_start", "plateau_end",
                       "plateau_length", "gd_alpha", "gd_loss", "hessian_alpha",
                       "hessian_min_eigenvalue", "hessian_available", "n_in"})
    sim, ode = np.asarray(data["sim_loss"]), np.asarray(data["ode_loss"])
    # one student: at alpha = 0 the simulation and the ODE report the same closed form
    np.testing.assert_allclose(sim[:, 0], ode[0], rtol=1e-12)
    assert float(data["plateau_height"]) == float(np.asarray(data["symmetric_loss"])[-1])
    # the claim recomputed from the stored runs
    mean, sd = sim.mean(axis=0), sim.std(axis=0, ddof=1)
    within = np.all(np.abs(mean - ode) <= 3 * sd + 1.5 / math.sqrt(int(data["n_in"])) * ode)
    height = float(data["plateau_height"])
    on = np.abs(ode - height) <= 0.05 * height
    hess = np.asarray(data["hessian_min_eigenvalue"])
    saddle = bool(np.all(np.isfinite(hess)) and np.any(hess[1:-1] < 0) and hess[-1] > 0)
    assert bool(data["hessian_available"]) == bool(np.all(np.isfinite(hess)))
    assert bool(data["claim_holds"]) == bool(within and on.any() and
                                             float(data["plateau_length"]) > 0
                                             and (saddle or not data["hessian_available"]))
    assert data["claim_holds"] and data["hessian_available"]
    # the plateau lies between the fall and the specialisation: the loss leaves it
    assert ode[0] > 2 * height and ode[-1] < 0.01 * height


CHECKS = {"population_dynamics": check_population_dynamics, "population": check_population, "rank_vs_n_population": check_rank_vs_n_population,
          "linear_density": check_linear_density, "dynamics": check_dynamics,
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
    check_dynamics(dynamics_data(n_in=8, n_hidden=2, n_candidates=5, seed=0, progress=False))


def test_dynamics_claim_fails_when_the_floor_cuts_the_window(monkeypatch):
    # a floor just below the initial loss stops GD in the fast transient, before the
    # slowest mode dominates: no fit window, and the claim is not met
    monkeypatch.setattr(fasthess._config, "FIG_LOSS_FLOOR", 1e-9)
    data = dynamics_data(n_in=8, n_hidden=2, n_candidates=3, seed=0, progress=False)
    assert float(np.asarray(data["loss"])[0]) > 1e-9
    assert int(data["fit_start"]) == -1
    assert math.isnan(float(data["measured_slope"]))
    assert not bool(data["claim_holds"])


def test_dynamics_perturbation_below_the_floor():
    with pytest.raises(ValueError, match="perturbation"):
        dynamics_data(n_in=3, n_hidden=2, perturbation=1e-14, n_candidates=1, progress=False)


def test_dynamics_no_teacher_within_budget():
    with pytest.raises(RuntimeError, match="max_steps"):
        dynamics_data(n_in=3, n_hidden=2, max_steps=10, n_candidates=1, seed=0, progress=False)


def test_quadratic_spectrum_claim():
    data = quadratic_spectrum_data(ns=(2, 3, 4), seed=0, progress=False)
    check_quadratic_spectrum(data)
    assert np.array_equal(data["effective_parameters"], data["predicted"])


def test_erf_spectrum_claim_and_tiny_eigenvalues():
    data = erf_spectrum_data(ns=(2, 3), wide=((4, 20),), n_candidates=3, seed=0, progress=False)
    check_erf_spectrum(data)
    # the wide teacher has genuine eigenvalues far below a 1e-8 cutoff, yet full rank
    # inside the svd tolerance (D eps)^2 ~ 5e-28 (no gap: nothing dropped)
    assert float(data["smallest_relative"][-1]) < 1e-8
    assert math.isinf(float(data["gap_decades"][-1]))


def test_rank_vs_n_claim():
    data = rank_vs_n_data(ns=(2, 3, 4), seed=0, progress=False)
    check_rank_vs_n(data)
    for a, name in enumerate(data["activations"]):
        act = figures.rank_vs_n.rank_activation(str(name))
        for j, n in enumerate(data["ns"]):
            assert data["predicted"][a, j] == effective_parameters(
                act, int(n), int(n), 1, n_samples=int(data["n_samples"][a, j]))


def test_population_claim():
    check_population(population_data(n=6, n_replicates=8, n_monte_carlo=40_000, seed=0,
                                      progress=False))


def test_population_claim_fails_for_a_wrong_population_hessian(monkeypatch):
    # H_inf off by a fixed matrix: ||H_P - H_wrong||_F stops falling with P
    real = figures.population.hessian

    def shifted(net, X, *args, **kwargs):
        H = real(net, X, *args, **kwargs)
        return H + 0.05 * np.eye(H.shape[0]) if X is figures.population.POPULATION else H

    monkeypatch.setattr(figures.population, "hessian", shifted)
    data = population_data(n=4, factors=(2, 10, 50), n_replicates=2, n_monte_carlo=20_000,
                           progress=False)
    assert not bool(data["claim_holds"])


def test_population_bad_arguments():
    with pytest.raises(ValueError, match="factors"):
        population_data(n=3, factors=(2,), progress=False)
    with pytest.raises(ValueError, match="n_replicates"):
        population_data(n=3, n_replicates=0, progress=False)


def test_rank_vs_n_population_claim():
    data = rank_vs_n_population_data(ns=(2, 3, 4), seed=0, progress=False)
    check_rank_vs_n_population(data)
    for a, name in enumerate(data["activations"]):
        act = figures.rank_vs_n.rank_activation(str(name))
        for j, n in enumerate(data["ns"]):
            assert data["predicted"][a, j] == effective_parameters(act, int(n), int(n), 1,
                                                                   n_samples=None)


def test_rank_vs_n_population_unresolved_points_are_not_counted(monkeypatch):
    # a wider required gap leaves fewer points resolved, and never more matches
    monkeypatch.setattr(fasthess._config, "FIG_MIN_GAP_DECADES", 1e3)
    data = rank_vs_n_population_data(ns=(2, 3), activations=("quadratic",), progress=False)
    assert not np.asarray(data["resolved"]).any()
    assert not bool(data["claim_holds"])  # nothing resolved: nothing shown


def test_rank_vs_n_unknown_activation():
    with pytest.raises(ValueError, match="tanh"):
        rank_vs_n_data(ns=(2,), activations=("tanh",), progress=False)


def test_ks_distance_matches_scipy():
    from scipy import stats

    x = np.random.default_rng(0).random(50)
    ref_ks = stats.kstest(x, "uniform").statistic
    assert ks_distance(x, lambda t: np.clip(t, 0, 1)) == pytest.approx(ref_ks, abs=1e-15)


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


# ---------------------------------------------------------------------- the registry
def test_registry_one_entry_per_figure():
    assert FIGURE_NAMES == EXPECTED_NAMES == tuple(FIGURES)
    for name, spec in FIGURES.items():
        module = sys.modules[spec.data.__module__]
        assert isinstance(spec, FigureSpec) and spec.name == name
        # the module's entry is the registry's (rank_vs_n also holds its H_inf variant)
        assert spec in [v for v in vars(module).values() if isinstance(v, FigureSpec)]
        # the public names stay importable from fasthess.figures
        assert getattr(figures, f"{name}_data") is spec.data
        assert getattr(figures, f"plot_{name}") is spec.plot
        assert spec.claim


@pytest.mark.parametrize("name", EXPECTED_NAMES)
@pytest.mark.parametrize("quick", [True, False])
def test_registry_sizes_fit_the_data_function(name, quick):
    spec = FIGURES[name]
    params = inspect.signature(spec.data).parameters
    base = spec.kwargs(quick=quick)
    bigger = spec.kwargs(quick=quick, scale=2.0)
    for kwargs in (base, bigger, spec.kwargs(quick=quick, scale=0.01)):
        inspect.signature(spec.data).bind(seed=0, progress=False, **kwargs)
        assert "seed" in params and "progress" in params
    # scale enlarges at least one size and shrinks none
    assert bigger.keys() == base.keys()
    grew = False
    for key, value in base.items():
        a, b = np.asarray(value).ravel(), np.asarray(bigger[key]).ravel()
        if a.dtype.kind in "iu":
            assert b.max() >= a.max(), key
            grew |= bool(b.max() > a.max())
    assert grew


def test_registry_kwargs_are_fresh_copies():
    spec = FIGURES["dynamics"]
    kwargs = spec.kwargs(quick=True)
    kwargs["n_in"] = -1
    assert spec.kwargs(quick=True)["n_in"] != -1


# ---------------------------------------------------------------------- the plots
@pytest.fixture(scope="module")
def small_data():
    """Each figure's data at tiny sizes, made once for the plot tests."""
    return {
        "linear_density": linear_density_data(n_in=6, n_hidden=9, n_teachers=40,
                                              progress=False),
        "dynamics": dynamics_data(n_in=8, n_hidden=2, n_candidates=3, progress=False),
        "quadratic_spectrum": quadratic_spectrum_data(ns=(2, 3, 4), progress=False),
        "erf_spectrum": erf_spectrum_data(ns=(2, 3), wide=((3, 9),), n_candidates=3,
                                          progress=False),
        "rank_vs_n": rank_vs_n_data(ns=(2, 3, 4, 5), progress=False),
        "population": population_data(n=3, factors=(2, 10), n_replicates=2,
                                      n_monte_carlo=20_000, progress=False),
        "rank_vs_n_population": rank_vs_n_population_data(ns=(2, 3, 4, 5), progress=False),
        "population_dynamics": population_dynamics_data(n_in=300, n_seeds=2, alpha_max=40.0,
                                                        n_records=20, n_hessian=2,
                                                        progress=False),
    }


def figure_texts(fig):
    from matplotlib.text import Text

    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def hex_colors(fig):
    """Every colour an axes draws with (lines, markers, patches, collections)."""
    from matplotlib.colors import to_hex
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    colors = set()
    for ax in fig.axes:
        for artist in ax.findobj(Line2D):
            colors.add(to_hex(artist.get_color()))
            if artist.get_marker() not in (None, "None", ""):
                for c in (artist.get_markerfacecolor(), artist.get_markeredgecolor()):
                    if not (isinstance(c, str) and c == "none"):
                        colors.add(to_hex(c))
        for artist in ax.findobj(Patch):
            if artist is ax.patch or artist.get_facecolor()[3] == 0:
                continue
            colors.add(to_hex(artist.get_facecolor()))
    return colors


def is_grey(hex_color):
    r, g, b = hex_color[1:3], hex_color[3:5], hex_color[5:7]
    return r == g == b


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_plot_is_labelled_captioned_and_colour_blind_safe(name, small_data):
    pytest.importorskip("matplotlib")
    data = small_data[name]
    fig = FIGURES[name].plot(data)
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert "$" in ax.get_xlabel() + ax.get_ylabel()  # symbols on the axes
    assert ax.get_legend() is not None
    # the caption says what was computed: the seed and the sizes
    caption = fig.get_supxlabel()
    assert caption.startswith("Computed:") and f"seed {int(data['seed'])}" in caption
    # no API names anywhere in the figure
    for text in figure_texts(fig):
        assert not any(word in text for word in API_WORDS), (name, text)
    for color in hex_colors(fig):
        assert color in OKABE_ITO_HEX or is_grey(color), (name, color)


def test_plot_on_given_axes_adds_no_caption(small_data):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot()
    assert figures.plot_rank_vs_n(small_data["rank_vs_n"], ax=ax) is fig
    assert fig.get_supxlabel() == ""  # the caller's figure: no caption imposed


def test_linear_density_legend_gives_P_and_the_bound(small_data):
    pytest.importorskip("matplotlib")
    data = small_data["linear_density"]
    fig = figures.plot_linear_density(data)
    legend = " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    assert f"$P$ = {int(data['n_samples'])}" in legend
    explained = " ".join(figure_texts(fig))
    assert "DKW" in explained and "finite size" in explained


def test_dynamics_title_has_labelled_sizes(small_data):
    pytest.importorskip("matplotlib")
    data = small_data["dynamics"]
    title = figures.plot_dynamics(data).axes[0].get_title()
    for symbol, key in (("N_i", "n_in"), ("N_h", "n_hidden"), ("P", "n_samples")):
        assert f"${symbol}$ = {int(data[key])}" in title
    assert "(" not in title.split(":")[0]  # no unlabelled "(3, 2)"


def test_quadratic_legend_colours_match_the_rank_lines(small_data):
    pytest.importorskip("matplotlib")
    from matplotlib.colors import to_hex
    from matplotlib.lines import Line2D

    fig = figures.plot_quadratic_spectrum(small_data["quadratic_spectrum"])
    ax = fig.axes[0]
    drawn = [to_hex(line.get_color()) for line in ax.get_lines()
             if line.get_linestyle() == "--"]
    in_legend = [to_hex(line.get_color()) for line in ax.get_legend().findobj(Line2D)
                 if line.get_linestyle() == "--"]
    assert len(drawn) == 3 and in_legend == drawn
    # each rank line has its spectrum's colour
    points = [to_hex(line.get_color()) for line in ax.get_lines()
              if line.get_linestyle() == "None"]
    assert points == drawn


def test_erf_eigh_line_has_a_colour_of_its_own(small_data):
    pytest.importorskip("matplotlib")
    from matplotlib.colors import to_hex

    fig = figures.plot_erf_spectrum(small_data["erf_spectrum"])
    lines = fig.axes[0].get_lines()
    eigh = [to_hex(line.get_color()) for line in lines if line.get_linestyle() == "-."]
    series = {to_hex(line.get_color()) for line in lines if line.get_linestyle() == "None"}
    assert len(eigh) == 1 and eigh[0] not in series
    assert len(series) == len(small_data["erf_spectrum"]["D"])  # one colour per size


def test_rank_vs_n_cubic_and_relu_distinguishable(small_data):
    pytest.importorskip("matplotlib")
    data = small_data["rank_vs_n"]
    fig = figures.plot_rank_vs_n(data)
    markers = {line.get_marker(): line for line in fig.axes[0].get_lines()
               if line.get_linestyle() == "None"}
    cubic, relu = markers["D"], markers["v"]
    # equal ranks (N^2 for N >= 4) ...
    np.testing.assert_array_equal(cubic.get_ydata()[2:], relu.get_ydata()[2:])
    # ... drawn as a small filled marker inside a large open one
    assert relu.get_markerfacecolor() == "none"
    assert cubic.get_markersize() < 0.6 * relu.get_markersize()
    assert any("predicted effective parameters" in t for t in figure_texts(fig))


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
        fig = FIGURES[name].plot(data)
        assert fig.axes[0].get_xlabel() and fig.axes[0].get_ylabel()
        assert fig.axes[0].get_legend() is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.npz", f"{name}.png"]
    out = capsys.readouterr().out
    assert out.startswith(f"{name}: ok:")


def test_make_figures_keyword_api(tmp_path, capsys):
    code = make_figures(tmp_path / "new", quick=True, only=["quadratic_spectrum"], scale=0.5,
                        seed=3, progress=False)
    assert code == 0
    with np.load(tmp_path / "new" / "quadratic_spectrum.npz") as data:
        assert int(data["seed"]) == 3
        assert data["ns"].tolist() == [2, 3, 4, 6]  # quick sizes (3, 6, 9, 12) halved
        check_quadratic_spectrum(data)
    assert "1 figure in" in capsys.readouterr().out


def test_cli_unknown_name(tmp_path, capsys):
    assert run_cli(tmp_path, "linear_density", "spectrum") == 2
    err = capsys.readouterr().err
    assert "only" in err and "'spectrum'" in err
    for name in FIGURE_NAMES:
        assert name in err
    assert not any(tmp_path.iterdir())  # checked before any work


@pytest.mark.parametrize("scale", ["0", "-1", "nan", "inf"])
def test_cli_bad_scale(tmp_path, capsys, scale):
    assert run_cli(tmp_path, "rank_vs_n", extra=("--scale", scale)) == 2
    assert "scale" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_cli_help_points_to_measured_times():
    # a time typed into the help drifts from the code (it did, 2-12x); the README's
    # section written by bench/update_readme.py holds the measured ones
    from .test_readme import TIMING

    sub = build_parser()._subparsers._group_actions[0].choices["figures"]
    quick = next(a for a in sub._actions if "--quick" in a.option_strings)
    assert "README" in quick.help and TIMING.findall(quick.help) == []
    only = next(a for a in sub._actions if "--only" in a.option_strings)
    assert all(name in only.help for name in FIGURE_NAMES)


def test_interrupt_keeps_finished_figures(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")

    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setitem(FIGURES, "dynamics",
                        dataclasses.replace(FIGURES["dynamics"], data=interrupted))
    assert run_cli(tmp_path, "rank_vs_n", "dynamics", "erf_spectrum") == 130
    assert (tmp_path / "rank_vs_n.png").read_bytes()[:8] == PNG_MAGIC
    with np.load(tmp_path / "rank_vs_n.npz") as data:
        check_rank_vs_n(data)
    # nothing of the interrupted figure or the ones after it, no temporary files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank_vs_n.npz", "rank_vs_n.png"]
    assert "interrupted" in capsys.readouterr().err


def test_claim_not_met_is_reported(tmp_path, monkeypatch, capsys):
    spec = FIGURES["quadratic_spectrum"]

    def wrong(**kwargs):
        return {**spec.data(**kwargs), "claim_holds": False}

    monkeypatch.setitem(FIGURES, "quadratic_spectrum", dataclasses.replace(spec, data=wrong))
    assert run_cli(tmp_path, "quadratic_spectrum") == 1
    captured = capsys.readouterr()
    assert "quadratic_spectrum: CLAIM NOT MET" in captured.out
    assert "claim not met for quadratic_spectrum" in captured.err
    assert (tmp_path / "quadratic_spectrum.npz").exists()  # still written


def test_cli_without_matplotlib_writes_data_only(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "matplotlib" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert run_cli(tmp_path, "quadratic_spectrum") == 0
    assert [p.name for p in tmp_path.iterdir()] == ["quadratic_spectrum.npz"]
    assert "matplotlib is not installed" in capsys.readouterr().err


def _points_under_legends(fig):
    """(legend text, x, y) of every plotted line vertex that a legend box covers."""
    from matplotlib.legend import Legend

    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    covered = []
    for ax in fig.axes:
        legends = [a for a in ax.get_children() if isinstance(a, Legend)]
        for legend in legends:
            box = legend.get_window_extent(renderer)
            for line in ax.get_lines():
                xy = np.asarray(line.get_xydata(), dtype=float)
                xy = xy[np.all(np.isfinite(xy), axis=1)]
                if xy.size == 0:
                    continue
                for (x, y), (u, v) in zip(xy, ax.transData.transform(xy)):
                    if box.contains(u, v):
                        covered.append((legend.get_texts()[0].get_text(), x, y))
    return covered


def _ranks_at_full_size(like):
    """Data of a rank figure at its registry's full sizes, with the ranks the curves
    follow (linear N, z + z^2 N(N+3)/2, z^3 N^2, erf D, relu D - N): where the points
    lie, without the minutes of eigensolves."""
    ns = np.arange(2, 31)
    rows = {"linear": ns, "quadratic": ns * (ns + 3) // 2, "cubic": ns ** 2,
            "erf": ns * (ns + 1), "relu": ns * ns}
    names = [str(a) for a in np.asarray(like["activations"])]
    rank = np.array([rows[a] for a in names])
    data = {k: like[k] for k in like}
    data.update(ns=ns, rank=rank, predicted=rank, D=ns * (ns + 1),
                gap_decades=np.full(rank.shape, 12.0))
    if "resolved" in like:
        data["resolved"] = np.arange(rank.size).reshape(rank.shape) % 7 != 0
    return data


@pytest.mark.parametrize("name", ["rank_vs_n", "rank_vs_n_population"])
def test_rank_legends_cover_no_data(name, small_data):
    pytest.importorskip("matplotlib")
    for data in (small_data[name], _ranks_at_full_size(small_data[name])):
        fig = FIGURES[name].plot(data)
        assert _points_under_legends(fig) == []


def test_legend_check_sees_a_covered_point():
    # the check itself can fail: a legend drawn over the only point
    pytest.importorskip("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([0.5], [0.5], "o", label="a point under its legend")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="center")
    assert len(_points_under_legends(fig)) == 1
