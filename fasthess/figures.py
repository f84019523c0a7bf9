"""The paper's figures: one function returning the data, one drawing it, per figure.

Each figure has a data function ``<name>_data(...) -> dict`` (numpy arrays and
scalars only, so ``numpy.savez(path, **data)`` stores it whole) and a plotting
function ``plot_<name>(data, ax=None) -> matplotlib.figure.Figure``. The data
dict always holds ``claim_holds`` (bool): whether the numbers show what the
figure claims (THEORY.md b-d), so a figure that does not is never silent.

=====================  ==================================================  =====================
name                   what it shows                                       claim checked
=====================  ==================================================  =====================
linear_density         pooled nonzero eigenvalues of linear teachers at    KS distance to
                       the optimum (whitened data) against                 theory.linear_cdf
                       theory.linear_density                               <= ks_bound
dynamics               GD loss near the optimum against the quadratic      late slope within 5%
                       model and the slowest-mode exponential              of decay_rate
quadratic_spectrum     spectrum of z + z^2 teachers, Ni = Nh = N: zero     rank == N(N+3)/2
                       modes and the rank
erf_spectrum           spectrum of erf teachers, Ni = Nh = N (svd route)   rank == D
rank_vs_n              numerical rank against theory.effective_parameters  rank == prediction
                       for five activations as N grows                     for every point
=====================  ==================================================  =====================

:func:`main` is the ``fasthess figures`` command. The core needs no matplotlib:
it is imported inside the plotting functions, which draw on a
:class:`matplotlib.figure.Figure` with the Agg canvas and never touch pyplot's
global backend (so they are safe inside a notebook or a GUI session).
"""
from __future__ import annotations

import importlib.util
import math
import sys
import time
from pathlib import Path

import numpy as np

from . import _io

__all__ = [
    "FIGURE_NAMES",
    "linear_density_data", "plot_linear_density",
    "dynamics_data", "plot_dynamics",
    "quadratic_spectrum_data", "plot_quadratic_spectrum",
    "erf_spectrum_data", "plot_erf_spectrum",
    "rank_vs_n_data", "plot_rank_vs_n",
    "ks_distance", "ks_bound",
    "make_figure", "main",
]

#: The figures, in the order :func:`main` makes them (also the CLI names).
FIGURE_NAMES = ("linear_density", "dynamics", "quadratic_spectrum", "erf_spectrum", "rank_vs_n")

# Allowance for the finite-size error of the large-N law in linear_density (it uses
# the Marchenko-Pastur limit for W1^T W1): THEORY.md b measured KS distances up to
# 0.030 at min(Ni, Nh) = 30, and 0.010 at (Ni, Nh) = (20, 30) and (12, 18) with 4000
# teachers, where the sampling error is ~0.01.
KS_FINITE_SIZE = 0.03
# Failure probability of the sampling part of ks_bound.
KS_ALPHA = 1e-3
# THEORY.md d: the slope-fit window ends where the loss reaches this (round-off beyond).
LOSS_FLOOR = 1e-22
# Relative tolerance of the dynamics claim (measured slope vs decay_rate).
SLOPE_RTOL = 0.05
# Records kept per GD run (the loss every steps // this steps).
_GD_RECORDS = 2000
# Eigenvalues at or below this fraction of the largest are drawn at it on log axes
# (exact zeros have no logarithm); svd zero modes sit near 1e-32, above it.
_PLOT_FLOOR = 1e-34
_DPI = 120

# activations of rank_vs_n (names are the plot labels); built lazily (fasthess import)
_RANK_ACTIVATIONS = ("linear", "quadratic", "cubic", "erf", "relu")
# eigenvalue route per activation. cubic and erf have genuine eigenvalues 1e-10 of the
# largest and below (THEORY.md c), which eigh cannot separate from its 1e-16 round-off:
# the svd route resolves them (zero modes at ~1e-32). z + z^2 and relu get it too: with
# eigh the z + z^2 gap fell to 5.8 decades at N = 8 (smallest genuine ~1e-10), too
# narrow to trust; with svd every gap is > 20 decades. linear: its exact route.
_RANK_METHODS = {"linear": "linear", "quadratic": "svd", "cubic": "svd", "erf": "svd",
                 "relu": "svd"}
# relu's rank needs data in every activation sector (THEORY.md c). At Ni = 2 two units
# leave a wedge of random angle theta that no point hits with probability ~1 / (P + 1)
# on average: P = 2D + 20 = 32 gave rank D - Nh - 1 for one N = 2 teacher; THEORY.md c
# met D - Nh at P = 2000 on its misses. So relu uses at least this many samples.
_RELU_MIN_SAMPLES = 1000


# ---------------------------------------------------------------------- helpers
def _activation(name):
    import fasthess as fh

    if name == "cubic":
        return fh.Polynomial([0.0, 0.0, 0.0, 1.0])
    return name


def _samples_for(n_params, samples_factor, extra_samples):
    # P well above D, so the data do not cap the rank (THEORY.md c: P = 2D + 20)
    return int(math.ceil(samples_factor * n_params)) + int(extra_samples)


def ks_distance(sample, cdf) -> float:
    """Kolmogorov-Smirnov distance between a sample's empirical CDF and ``cdf``.

    Parameters
    ----------
    sample : array_like (n,)
    cdf : callable
        Vectorised CDF of the reference law.

    Returns
    -------
    float
        sup_x |F_n(x) - F(x)|, attained at a sample point from one side or the other.

    Examples
    --------
    >>> import numpy as np
    >>> from fasthess.figures import ks_distance
    >>> ks_distance([0.5], lambda x: np.clip(x, 0, 1))   # uniform law: F = 0.5 at 0.5
    0.5
    """
    x = np.sort(np.asarray(sample, dtype=np.float64).ravel())
    n = x.size
    if n == 0:
        raise ValueError("sample is empty")
    F = np.asarray(cdf(x), dtype=np.float64)
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - F), np.max(F - (i - 1) / n)))


def ks_bound(n_teachers, alpha=KS_ALPHA, finite_size=KS_FINITE_SIZE) -> float:
    """Bound on the KS distance of ``n_teachers`` pooled linear spectra to the law.

    The pooled empirical CDF is the mean of ``n_teachers`` independent per-teacher
    CDFs F_k, each [0, 1]-valued with mean F(x), so Var F_k(x) <= F (1 - F): no
    more than one independent sample's. Counting each teacher as one sample (its
    eigenvalues share the shift |a|^2 and are strongly correlated), the
    Dvoretzky-Kiefer-Wolfowitz inequality bounds the sampling part by
    sqrt(ln(2 / alpha) / (2 n_teachers)) with probability 1 - alpha. The law
    itself is the large-size limit; ``finite_size`` allows for that
    (:data:`KS_FINITE_SIZE`, measured in THEORY.md b for min(Ni, Nh) >= 12).

    Parameters
    ----------
    n_teachers : int
    alpha : float
        Failure probability of the sampling part.
    finite_size : float

    Returns
    -------
    float
    """
    return float(finite_size + math.sqrt(math.log(2.0 / alpha) / (2.0 * n_teachers)))


def _late_slope(steps, loss, floor=LOSS_FLOOR):
    """Least-squares slope of log(loss) over the second half of the window above ``floor``.

    Returns (slope, first step, last step) of the fit (THEORY.md d).
    """
    above = np.nonzero(loss > floor)[0]
    if above.size < 4:
        return float("nan"), 0, 0
    last = above[-1]
    s, l = steps[:last + 1].astype(np.float64), loss[:last + 1]
    half = s >= s[-1] / 2
    if half.sum() < 2 or np.any(l[half] <= 0):
        return float("nan"), 0, 0
    slope = np.polyfit(s[half], np.log(l[half]), 1)[0]
    return float(slope), int(s[half][0]), int(s[-1])


# ---------------------------------------------------------------------- linear_density
def linear_density_data(n_in=40, n_hidden=60, n_teachers=200, n_bins=60, seed=0,
                        progress=None) -> dict:
    """Pooled Hessian eigenvalues of linear teachers at the optimum, and the theory.

    For each of ``n_teachers`` teachers (default weights, one output) the nonzero
    eigenvalues come from :func:`fasthess.spectrum.eigenvalues` with
    ``method="linear"`` on whitened data (X^T X / P = I exactly, P = Ni), i.e. the
    P -> infinity spectrum {|a|^2 + lambda_b(W1^T W1)} of THEORY.md b. They are
    pooled and compared with :func:`fasthess.theory.linear_density` and
    :func:`fasthess.theory.linear_cdf`.

    Parameters
    ----------
    n_in, n_hidden : int
        Ni, Nh.
    n_teachers : int
        Ensemble size.
    n_bins : int
        Histogram bins.
    seed : int
        Seeds teachers and data.
    progress : bool or None
        tqdm bar over the teachers (None: when stderr is a terminal).

    Returns
    -------
    dict
        ``eigenvalues`` (pooled, sorted, n_teachers * Ni), ``bin_edges``,
        ``histogram`` (density), ``grid`` and ``density`` (theory on the plotted
        range [0, ``grid[-1]``], which holds all but <= 1e-6 of the law's mass),
        ``density_integral`` (trapezoid of ``density`` over ``grid``),
        ``ks`` (:func:`ks_distance` to ``linear_cdf``), ``ks_bound``
        (:func:`ks_bound`), ``n_in``, ``n_hidden``, ``n_teachers``, ``claim_holds``
        (``ks <= ks_bound``).
    """
    import fasthess as fh
    from fasthess.rank import numerical_rank
    from fasthess.spectrum import eigenvalues
    from fasthess.theory import linear_cdf, linear_density

    rng = np.random.default_rng(seed)
    # whitened inputs: X = sqrt(P) Q with Q orthogonal, so C = X^T X / P = I exactly
    q, _ = np.linalg.qr(rng.standard_normal((n_in, n_in)))
    X = math.sqrt(n_in) * q
    pooled = []
    for _ in _io.progress(range(n_teachers), n_teachers, "linear_density", progress,
                          leave=False):
        net = fh.TwoLayerNet.random(n_in, n_hidden, activation="linear", seed=rng)
        spec = eigenvalues(net, X, method="linear")
        ev = spec.eigenvalues
        pooled.append(ev[np.abs(ev) > numerical_rank(spec).tolerance])
    pooled = np.sort(np.concatenate(pooled))

    def cdf(x):
        return linear_cdf(x, n_in, n_hidden)

    # extend the range until the law's mass beyond it is negligible (the chi-square tail)
    hi = 1.05 * float(pooled[-1])
    while float(cdf(hi)) < 1.0 - 1e-6:
        hi *= 1.1
    edges = np.linspace(0.0, hi, n_bins + 1)
    hist, _ = np.histogram(pooled, bins=edges, density=True)
    grid = np.linspace(0.0, hi, 2001)
    dens = np.asarray(linear_density(grid, n_in, n_hidden))
    ks = ks_distance(pooled, cdf)
    bound = ks_bound(n_teachers)
    return {
        "eigenvalues": pooled, "bin_edges": edges, "histogram": hist,
        "grid": grid, "density": dens,
        "density_integral": float(np.trapezoid(dens, grid)),
        "ks": ks, "ks_bound": bound,
        "n_in": int(n_in), "n_hidden": int(n_hidden), "n_teachers": int(n_teachers),
        "claim_holds": bool(ks <= bound),
    }


def _new_figure(ax, figsize=(6.4, 4.4)):
    """(figure, axes): ``ax``'s figure, or a new Agg-backed Figure (no pyplot)."""
    if ax is not None:
        return ax.figure, ax
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _scalar(data, key):
    # np.load gives 0-d arrays for scalars; dicts from the data functions give Python ones
    return np.asarray(data[key]).item()


def plot_linear_density(data, ax=None):
    """Histogram of the pooled eigenvalues with the theory density over it.

    Parameters
    ----------
    data : mapping
        From :func:`linear_density_data` (or ``numpy.load`` of its saved file).
    ax : matplotlib Axes, optional
        Draw here; default a new Figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = _new_figure(ax)
    edges = np.asarray(data["bin_edges"])
    ni, nh, nt = (_scalar(data, k) for k in ("n_in", "n_hidden", "n_teachers"))
    n_ev = np.asarray(data["eigenvalues"]).size
    ax.stairs(np.asarray(data["histogram"]), edges, fill=True, color="tab:blue", alpha=0.45,
              label=f"measured: {n_ev} eigenvalues of {nt} teachers")
    ax.plot(data["grid"], data["density"], color="tab:red", lw=2,
            label=r"theory: $\chi^2_{N_h}$ $\ast$ Marchenko-Pastur")
    ax.set_xlim(0.0, edges[-1])
    ax.set_ylim(bottom=0.0)
    ax.set_xlabel(r"Hessian eigenvalue $\lambda$")
    ax.set_ylabel("density")
    ax.set_title(f"Linear teacher at the optimum, $N_i$ = {ni}, $N_h$ = {nh}")
    ax.legend(loc="upper right", frameon=False)
    ax.text(0.98, 0.72, f"KS distance {_scalar(data, 'ks'):.3f}\n"
            f"(bound {_scalar(data, 'ks_bound'):.3f})",
            transform=ax.transAxes, ha="right", va="top")
    return fig


# ---------------------------------------------------------------------- dynamics
def dynamics_data(activation="erf", n_in=3, n_hidden=2, n_samples=200, perturbation=1e-4,
                  max_steps=200_000, n_nats=40.0, max_teachers=200, seed=0,
                  progress=None) -> dict:
    """GD from a perturbed teacher against the quadratic model and its slowest mode.

    A teacher and data are drawn; lr = 1 / lambda_max; the student is
    ``perturb(teacher, perturbation)``. :func:`fasthess.dynamics.decay_rate`
    gives the late slope of log L per step, 2 log(1 - lr lambda_min) (THEORY.md d),
    and the run lasts ``ceil(n_nats / |rate|)`` steps, so that the slowest mode
    alone falls by e^-n_nats and outlasts the others. Teachers whose run would
    exceed ``max_steps`` (erf teachers often have lambda_min / lambda_max below
    1e-6) are skipped, up to ``max_teachers`` draws: the number tried is
    recorded. The measured slope is a least-squares fit of log L over the second
    half of the window where L > 1e-22.

    Parameters
    ----------
    activation : str or Activation
    n_in, n_hidden : int
    n_samples : int
        P.
    perturbation : float
        Standard deviation of the initial displacement.
    max_steps : int
    n_nats : float
    max_teachers : int
    seed : int
    progress : bool or None
        tqdm bar over the teacher draws.

    Returns
    -------
    dict
        ``steps``, ``loss`` (GD, recorded every ``steps[1]`` steps), ``predicted``
        (:func:`fasthess.dynamics.predicted_loss` at ``steps``), ``asymptote``
        (the slowest mode alone, 1/2 lambda_s c_s^2 (1 - lr lambda_s)^(2t), with
        c = V^T Delta_0), ``decay_rate``, ``measured_slope``, ``slope_rel_error``,
        ``fit_start``, ``fit_end``, ``lr``, ``lambda_min``, ``lambda_max``,
        ``n_steps``, ``teachers_tried``, ``activation`` (name), ``n_in``,
        ``n_hidden``, ``n_samples``, ``claim_holds``
        (``slope_rel_error <= 0.05``).

    Raises
    ------
    RuntimeError
        If no teacher among ``max_teachers`` decays within ``max_steps``.
    """
    import fasthess as fh
    from fasthess.dynamics import decay_rate, gradient_descent, perturb, predicted_loss
    from fasthess.rank import numerical_rank

    rng = np.random.default_rng(seed)
    X = fh.gaussian_inputs(n_samples, n_in, seed=rng)
    chosen = None
    for tried in _io.progress(range(1, max_teachers + 1), max_teachers, "dynamics", progress,
                              leave=False):
        teacher = fh.TwoLayerNet.random(n_in, n_hidden, activation=activation, seed=rng)
        lam, V = np.linalg.eigh(fh.hessian(teacher, X))
        lr = 1.0 / lam[-1]
        rate = decay_rate(teacher, X, lr)
        if rate < 0 and n_nats / -rate <= max_steps:
            chosen = (teacher, lam, V, lr, rate, tried)
            break
    if chosen is None:
        raise RuntimeError(
            f"dynamics: none of {max_teachers} {activation} teachers ({n_in}, {n_hidden}) "
            f"decays by e^-{n_nats:g} within max_steps = {max_steps}; raise max_steps")
    teacher, lam, V, lr, rate, tried = chosen
    n_steps = int(math.ceil(n_nats / -rate))
    student = perturb(teacher, perturbation, seed=rng)
    res = gradient_descent(student, teacher, X, lr, n_steps,
                           record_every=max(1, n_steps // _GD_RECORDS))
    predicted = predicted_loss(teacher, X, student, lr, n_steps)[res.steps]
    # the slowest mode: largest |1 - lr lambda| among nonzero eigenvalues (decay_rate's rule)
    nonzero = np.abs(lam) > numerical_rank(lam).tolerance
    idx = np.nonzero(nonzero)[0]
    s = idx[np.argmax(np.abs(1.0 - lr * lam[idx]))]
    delta = student.parameters() - teacher.parameters()
    c = float(V[:, s] @ delta)
    asymptote = 0.5 * lam[s] * c * c * (1.0 - lr * lam[s]) ** (2.0 * res.steps)
    slope, start, end = _late_slope(res.steps, res.loss)
    rel = abs(slope / rate - 1.0) if np.isfinite(slope) else float("inf")
    return {
        "steps": res.steps, "loss": res.loss, "predicted": predicted, "asymptote": asymptote,
        "decay_rate": float(rate), "measured_slope": slope, "slope_rel_error": float(rel),
        "fit_start": start, "fit_end": end, "lr": float(lr),
        "lambda_min": float(lam[idx[0]]), "lambda_max": float(lam[-1]),
        "n_steps": n_steps, "teachers_tried": int(tried), "diverged": bool(res.diverged),
        "activation": str(teacher.activation.name), "n_in": int(n_in),
        "n_hidden": int(n_hidden), "n_samples": int(n_samples),
        "claim_holds": bool(rel <= SLOPE_RTOL and not res.diverged),
    }


def plot_dynamics(data, ax=None):
    """Loss against step (log scale): GD, the quadratic model, the slowest mode.

    Parameters
    ----------
    data : mapping
        From :func:`dynamics_data` (or ``numpy.load`` of its saved file).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = _new_figure(ax)
    steps = np.asarray(data["steps"])
    loss = np.asarray(data["loss"])
    shown = loss > 0  # log axis: an exact zero (never seen near the optimum) is left out
    rate = _scalar(data, "decay_rate")
    ax.plot(steps[shown], loss[shown], color="tab:blue", lw=2.5, label="gradient descent")
    ax.plot(steps, data["predicted"], color="tab:orange", ls="--", lw=1.5,
            label=r"quadratic model $\frac{1}{2}\sum_i \lambda_i c_i^2 (1-\eta\lambda_i)^{2t}$")
    ax.plot(steps, data["asymptote"], color="k", ls=":", lw=1.5,
            label=r"slowest mode $\propto (1-\eta\lambda_{\min})^{2t}$")
    ax.axvspan(_scalar(data, "fit_start"), _scalar(data, "fit_end"), color="0.9", zorder=0,
               label=f"fit: slope {_scalar(data, 'measured_slope'):.4g} / step")
    ax.axhline(LOSS_FLOOR, color="0.6", lw=0.8, label="end of the fit window")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.1 * float(np.min(loss[shown])))
    ax.set_xlabel(r"GD step $t$ ($\eta = 1/\lambda_{\max}$)")
    ax.set_ylabel(r"loss $L_t$")
    ax.set_title(f"{_scalar(data, 'activation')} teacher ({_scalar(data, 'n_in')}, "
                 f"{_scalar(data, 'n_hidden')}), P = {_scalar(data, 'n_samples')}: "
                 f"decay_rate {rate:.4g} / step")
    ax.legend(loc="upper right", frameon=False, fontsize="small")
    return fig


# ---------------------------------------------------------------------- spectra
def _spectra(activation, ns, method, samples_factor, extra_samples, seed, progress, desc):
    """Spectrum, numerical rank and gap of one teacher per N (Ni = Nh = N, No = 1)."""
    import fasthess as fh
    from fasthess.rank import numerical_rank
    from fasthess.spectrum import eigenvalues

    rng = np.random.default_rng(seed)
    out = {"ns": np.asarray(ns, dtype=np.int64)}
    ranks, gaps, dims, samples, tols = [], [], [], [], []
    for n in _io.progress(ns, len(ns), desc, progress, leave=False):
        net = fh.TwoLayerNet.random(n, n, activation=activation, seed=rng)
        P = _samples_for(net.n_params, samples_factor, extra_samples)
        X = fh.gaussian_inputs(P, n, seed=rng)
        spec = eigenvalues(net, X, method=method)
        r = numerical_rank(spec)
        out[f"eigenvalues_{n}"] = spec.eigenvalues
        ranks.append(r.rank)
        gaps.append(r.gap_decades)
        dims.append(net.n_params)
        samples.append(P)
        tols.append(r.rtol)
        out["method"] = spec.method
    out.update(rank=np.array(ranks), gap_decades=np.array(gaps), D=np.array(dims),
               n_samples=np.array(samples), rtol=np.array(tols))
    return out


def quadratic_spectrum_data(ns=(5, 10, 20, 30), method="svd", samples_factor=2.0,
                            extra_samples=20, seed=0, progress=None) -> dict:
    """Spectra of quadratic teachers (g = z + z^2), Ni = Nh = N: zero modes and rank.

    The rank is the effective number of parameters N(N+3)/2 of D = N^2 + N
    (THEORY.md c): the other N(N-1)/2 eigenvalues are zero modes.

    Parameters
    ----------
    ns : sequence of int
        The sizes N.
    method : str
        Route of :func:`fasthess.spectrum.eigenvalues`; "svd" puts zero modes near
        1e-32 of the largest (eigh: 1e-16), so the gap is unmistakable.
    samples_factor, extra_samples : float, int
        P = ceil(samples_factor D) + extra_samples.
    seed : int
    progress : bool or None
        tqdm bar over the sizes.

    Returns
    -------
    dict
        ``ns``, ``eigenvalues_<N>`` (ascending, D each), ``rank`` (numerical,
        :func:`fasthess.spectrum.numerical_rank`), ``gap_decades``, ``rtol``, ``D``,
        ``n_samples``, ``predicted`` (N(N+3)/2), ``effective_parameters``
        (:func:`fasthess.theory.effective_parameters` at that P), ``method``,
        ``claim_holds`` (every rank == N(N+3)/2).
    """
    from fasthess.theory import effective_parameters

    ns = [int(n) for n in ns]
    out = _spectra("quadratic", ns, method, samples_factor, extra_samples, seed, progress,
                   "quadratic_spectrum")
    predicted = np.array([n * (n + 3) // 2 for n in ns])
    eff = np.array([effective_parameters("quadratic", n, n, 1, n_samples=int(p))
                    for n, p in zip(ns, out["n_samples"])])
    out.update(predicted=predicted, effective_parameters=eff,
               claim_holds=bool(np.array_equal(out["rank"], predicted)))
    return out


def erf_spectrum_data(ns=(5, 10, 20, 30), method="svd", samples_factor=2.0, extra_samples=20,
                      seed=0, progress=None) -> dict:
    """Spectra of erf teachers, Ni = Nh = N: full rank, with tiny genuine eigenvalues.

    The svd route resolves eigenvalues down to ~1e-30 of the largest, so the
    smallest (often 1e-7 to 1e-11 relative) are measured, not lost in eigh's
    1e-16 round-off (THEORY.md c).

    Parameters
    ----------
    ns, method, samples_factor, extra_samples, seed, progress
        As in :func:`quadratic_spectrum_data`.

    Returns
    -------
    dict
        As :func:`quadratic_spectrum_data` without the prediction keys, plus
        ``smallest_relative`` (smallest / largest eigenvalue per N) and
        ``claim_holds`` (every rank == D).
    """
    ns = [int(n) for n in ns]
    out = _spectra("erf", ns, method, samples_factor, extra_samples, seed, progress,
                   "erf_spectrum")
    smallest = np.array([out[f"eigenvalues_{n}"][0] / out[f"eigenvalues_{n}"][-1] for n in ns])
    out.update(smallest_relative=smallest,
               claim_holds=bool(np.array_equal(out["rank"], out["D"])))
    return out


def _plot_spectra(data, ax, title, predicted=None):
    fig, ax = _new_figure(ax)
    ns = [int(n) for n in np.asarray(data["ns"])]
    colors = [f"C{i % 10}" for i in range(len(ns))]
    method = _scalar(data, "method")
    for i, n in enumerate(ns):
        ev = np.asarray(data[f"eigenvalues_{n}"])[::-1]
        rel = np.maximum(ev / ev[0], _PLOT_FLOOR)
        k = np.arange(1, ev.size + 1)
        rank = int(np.asarray(data["rank"])[i])
        ax.plot(k, rel, ".", ms=3, color=colors[i],
                label=f"N = {n}: rank {rank} of D = {ev.size}")
        if predicted is not None:
            ax.axvline(predicted[i] + 0.5, color=colors[i], ls="--", lw=1)
        rtol = float(np.asarray(data["rtol"])[i])
        if i == len(ns) - 1:
            ax.axhline(rtol, color="0.5", ls=":", lw=1,
                       label=f"rank tolerance ({method}, largest N)")
    if predicted is not None:
        ax.plot([], [], color="k", ls="--", lw=1, label=r"predicted rank $N(N+3)/2$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(_PLOT_FLOOR / 10, 10)
    ax.set_xlabel(r"eigenvalue index $k$ (descending)")
    ax.set_ylabel(r"$\lambda_k / \lambda_{\max}$")
    ax.set_title(title)
    ax.legend(loc="center left", frameon=False, fontsize="small")
    return fig


def plot_quadratic_spectrum(data, ax=None):
    """Descending eigenvalues per N (log-log), predicted ranks N(N+3)/2 dashed.

    Parameters
    ----------
    data : mapping
        From :func:`quadratic_spectrum_data` (or ``numpy.load`` of its file).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    return _plot_spectra(data, ax, r"Quadratic teacher $z + z^2$, $N_i = N_h = N$",
                         predicted=[int(p) for p in np.asarray(data["predicted"])])


def plot_erf_spectrum(data, ax=None):
    """Descending eigenvalues per N (log-log): all D above the tolerance.

    Parameters
    ----------
    data : mapping
        From :func:`erf_spectrum_data` (or ``numpy.load`` of its file).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = _plot_spectra(data, ax, r"erf teacher, $N_i = N_h = N$: full rank")
    ax = fig.axes[0] if ax is None else ax
    D = np.asarray(data["D"])
    # where eigh's round-off would put zero modes: why the svd route is needed here
    eps = float(np.finfo(np.float64).eps)
    ax.axhline(float(D.max()) * eps, color="tab:red", ls="-.", lw=1,
               label=r"eigh resolution $D\,\epsilon$ (largest N)")
    # between the eigh line (~1e-13) and the svd tolerance (~1e-27): nothing drawn there
    ax.legend(loc="center left", bbox_to_anchor=(0.0, 0.42), frameon=False, fontsize="small")
    return fig


# ---------------------------------------------------------------------- rank_vs_n
def rank_vs_n_data(ns=tuple(range(2, 17)), activations=_RANK_ACTIVATIONS, samples_factor=2.0,
                   extra_samples=20, seed=0, progress=None) -> dict:
    """Numerical rank against the effective number of parameters as N grows.

    For each activation and N (Ni = Nh = N, No = 1) one teacher, P = 2D + 20 samples
    by default (at least 1000 for relu, whose rank needs points in every activation
    sector), the rank of :func:`fasthess.spectrum.numerical_rank` on the spectrum
    from the svd route (the exact "linear" route for linear): genuine eigenvalues
    of cubic and erf teachers reach 1e-10 of the largest and below, which eigh
    cannot separate from its round-off (THEORY.md c). The ranks are compared with
    :func:`fasthess.theory.effective_parameters` at that P.

    Parameters
    ----------
    ns : sequence of int
    activations : sequence of str
        Among "linear", "quadratic" (z + z^2), "cubic" (z^3), "erf", "relu".
    samples_factor, extra_samples : float, int
        P = ceil(samples_factor D) + extra_samples.
    seed : int
    progress : bool or None
        tqdm bar over the (activation, N) pairs.

    Returns
    -------
    dict
        ``ns``, ``activations`` (names), ``methods`` (route per activation),
        ``rank``, ``predicted``, ``gap_decades``, ``n_samples`` (shape
        (activations, ns)), ``D`` (per N), ``claim_holds`` (rank == predicted
        everywhere).
    """
    import fasthess as fh
    from fasthess.rank import numerical_rank
    from fasthess.spectrum import eigenvalues
    from fasthess.theory import effective_parameters

    ns = [int(n) for n in ns]
    activations = list(activations)
    unknown = [a for a in activations if a not in _RANK_METHODS]
    if unknown:
        raise ValueError(f"activations: unknown {unknown}; choose from {list(_RANK_METHODS)}")
    rng = np.random.default_rng(seed)
    shape = (len(activations), len(ns))
    rank = np.zeros(shape, dtype=np.int64)
    predicted = np.zeros(shape, dtype=np.int64)
    gaps = np.zeros(shape)
    dims = np.array([n * (n + 1) for n in ns])
    samples = np.zeros(shape, dtype=np.int64)
    pairs = [(a, j) for a in range(len(activations)) for j in range(len(ns))]
    for a, j in _io.progress(pairs, len(pairs), "rank_vs_n", progress, leave=False):
        name, n = activations[a], ns[j]
        P = _samples_for(int(dims[j]), samples_factor, extra_samples)
        if name == "relu":
            P = max(P, _RELU_MIN_SAMPLES)
        samples[a, j] = P
        act = _activation(name)
        net = fh.TwoLayerNet.random(n, n, activation=act, seed=rng)
        X = fh.gaussian_inputs(P, n, seed=rng)
        r = numerical_rank(eigenvalues(net, X, method=_RANK_METHODS[name]))
        rank[a, j] = r.rank
        gaps[a, j] = r.gap_decades
        predicted[a, j] = effective_parameters(act, n, n, 1, n_samples=P)
    return {
        "ns": np.array(ns), "activations": np.array(activations),
        "methods": np.array([_RANK_METHODS[a] for a in activations]),
        "rank": rank, "predicted": predicted, "gap_decades": gaps, "D": dims,
        "n_samples": samples, "claim_holds": bool(np.array_equal(rank, predicted)),
    }


def plot_rank_vs_n(data, ax=None):
    """Measured ranks (markers) on the predicted ones (lines), D for reference.

    Parameters
    ----------
    data : mapping
        From :func:`rank_vs_n_data` (or ``numpy.load`` of its file).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = _new_figure(ax)
    ns = np.asarray(data["ns"])
    labels = {"linear": "linear", "quadratic": r"$z + z^2$", "cubic": r"$z^3$",
              "erf": "erf", "relu": "relu"}
    markers = "osD^v"
    for a, name in enumerate(np.asarray(data["activations"]).tolist()):
        color = f"C{a % 10}"
        ax.plot(ns, np.asarray(data["predicted"])[a], "-", color=color, lw=1.2)
        ax.plot(ns, np.asarray(data["rank"])[a], markers[a % len(markers)], color=color,
                mfc="none", ms=7, label=f"{labels.get(name, name)} "
                f"[{np.asarray(data['methods'])[a]} route]")
    ax.plot(ns, data["D"], "k--", lw=1.5, label=r"$D = N^2 + N$")
    ax.plot([], [], "-", color="0.4", lw=1.2, label="theory.effective_parameters")
    from matplotlib.ticker import LogFormatter, NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ns if len(ns) <= 8 else ns[::max(1, len(ns) // 8)])
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    # plain numbers (not 4 x 10^1); LogFormatter labels only a few minor ticks
    ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
    ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 1)))
    ax.set_xlabel(r"$N = N_i = N_h$")
    ax.set_ylabel("rank of the Hessian at the optimum")
    gaps = np.asarray(data["gap_decades"])
    ax.set_title(f"Numerical rank (markers) vs effective parameters; "
                 f"min gap {np.min(gaps):.1f} decades", fontsize="medium")
    ax.legend(loc="upper left", frameon=False, fontsize="small")
    return fig


# ---------------------------------------------------------------------- command
def _configs(quick, scale):
    """Keyword arguments of each data function at --quick or full size, times ``scale``."""
    def size(v, minimum=2):
        return max(minimum, int(round(v * scale)))

    def sizes(ns):
        return sorted({size(n) for n in ns})

    if quick:
        return {
            "linear_density": dict(n_in=size(20), n_hidden=size(30), n_teachers=size(200, 1)),
            "dynamics": dict(n_in=3, n_hidden=2, n_samples=size(200, 1), max_steps=50_000),
            "quadratic_spectrum": dict(ns=sizes((2, 3, 4, 6))),
            "erf_spectrum": dict(ns=sizes((2, 3, 4, 6))),
            "rank_vs_n": dict(ns=list(range(2, size(6) + 1))),
        }
    return {
        "linear_density": dict(n_in=size(40), n_hidden=size(60), n_teachers=size(200, 1)),
        "dynamics": dict(n_in=3, n_hidden=2, n_samples=size(200, 1), max_steps=200_000),
        "quadratic_spectrum": dict(ns=sizes((5, 10, 20, 30))),
        "erf_spectrum": dict(ns=sizes((5, 10, 20, 30))),
        "rank_vs_n": dict(ns=list(range(2, size(16) + 1))),
    }


def _summary(name, data):
    """One line of the numbers that carry the figure's claim."""
    if name == "linear_density":
        return (f"KS {data['ks']:.4f} <= bound {data['ks_bound']:.4f} "
                f"({data['eigenvalues'].size} eigenvalues, {data['n_teachers']} teachers, "
                f"Ni={data['n_in']}, Nh={data['n_hidden']}); density integral over the "
                f"plotted range {data['density_integral']:.6f}")
    if name == "dynamics":
        return (f"slope {data['measured_slope']:.5g} vs decay_rate {data['decay_rate']:.5g} "
                f"per step (rel. error {data['slope_rel_error']:.1e}; {data['n_steps']} steps, "
                f"lr {data['lr']:.3g}, teacher {data['teachers_tried']} tried)")
    if name == "quadratic_spectrum":
        return (f"N {data['ns'].tolist()}: rank {data['rank'].tolist()} vs N(N+3)/2 "
                f"{data['predicted'].tolist()} of D {data['D'].tolist()} "
                f"(min gap {np.min(data['gap_decades']):.1f} decades, {data['method']})")
    if name == "erf_spectrum":
        small = ", ".join(f"{v:.1e}" for v in data["smallest_relative"])
        return (f"N {data['ns'].tolist()}: rank {data['rank'].tolist()} vs D "
                f"{data['D'].tolist()}; smallest/largest eigenvalue {small} ({data['method']})")
    if name == "rank_vs_n":
        agree = int(np.sum(data["rank"] == data["predicted"]))
        return (f"rank == effective_parameters for {agree}/{data['rank'].size} "
                f"(activation, N), N = {data['ns'][0]}..{data['ns'][-1]}; min gap "
                f"{np.min(data['gap_decades']):.1f} decades")
    raise ValueError(f"no summary for figure {name!r}")


def _resolve_names(only):
    if not only:
        return list(FIGURE_NAMES)
    unknown = [n for n in only if n not in FIGURE_NAMES]
    if unknown:
        raise ValueError(f"only: unknown figure name{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(map(repr, unknown))}; valid names: "
                         f"{', '.join(FIGURE_NAMES)}")
    return list(dict.fromkeys(only))  # the user's order, each once


def make_figure(name, out, quick=False, scale=1.0, seed=0, progress=None, plot=True):
    """Compute one figure and write ``out/<name>.npz`` and ``out/<name>.png``.

    Parameters
    ----------
    name : str
        One of :data:`FIGURE_NAMES`.
    out : str or Path
        Existing folder.
    quick, scale, seed, progress
        As for :func:`main`.
    plot : bool
        False: the data file only (no matplotlib needed).

    Returns
    -------
    dict
        The figure's data.
    """
    names = _resolve_names([name])
    name = names[0]
    kwargs = _configs(quick, scale)[name]
    # looked up by name at call time, so the module's functions can be replaced (tests)
    data = globals()[f"{name}_data"](seed=seed, progress=progress, **kwargs)
    fig = globals()[f"plot_{name}"](data) if plot else None
    out = Path(out)
    _io.atomic_write(out / f"{name}.npz", lambda f: np.savez(f, **data))
    if fig is not None:
        _io.atomic_write(out / f"{name}.png", lambda f: fig.savefig(f, format="png", dpi=_DPI))
    return data


def main(args) -> int:
    """The ``fasthess figures`` command.

    Makes each figure in turn, writing ``<out>/<name>.npz`` (the data) and
    ``<out>/<name>.png`` as soon as it is done, each atomically, and prints one
    line per figure with the numbers behind its claim. Ctrl-C stops it and keeps
    every figure already finished.

    Parameters
    ----------
    args : argparse.Namespace
        ``out`` (folder, created if missing), ``quick`` (small sizes: well under
        two minutes on 2 cores), ``only`` (list of names or None for all),
        ``scale`` (multiplies sizes and ensemble counts: teachers, Ni and Nh of
        linear_density, N of the spectra and the largest N of rank_vs_n, P of
        dynamics), ``no_progress``, ``seed``.

        Without matplotlib only the data files are written (a note says so).

    Returns
    -------
    int
        0 when every figure made shows its claim, 1 when one does not (its files
        are still written), 130 when interrupted.

    Raises
    ------
    ValueError
        An unknown name in ``only`` (the message lists the valid names), or
        ``scale`` <= 0.
    """
    names = _resolve_names(args.only)
    scale = float(args.scale)
    if not scale > 0 or not math.isfinite(scale):
        raise ValueError(f"scale must be a positive number, got {args.scale!r}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = False if args.no_progress else None
    plot = importlib.util.find_spec("matplotlib") is not None
    if not plot:
        print("fasthess figures: matplotlib is not installed: writing the data files only "
              "(pip install 'fasthess[plot]' for the PNGs)", file=sys.stderr)
    done, failed = [], []
    start = time.perf_counter()
    try:
        for name in names:
            t0 = time.perf_counter()
            data = make_figure(name, out, quick=args.quick, scale=scale, seed=args.seed,
                               progress=progress, plot=plot)
            ok = bool(data["claim_holds"])
            done.append(name)
            if not ok:
                failed.append(name)
            written = out / (name + (".png" if plot else ".npz"))
            print(f"{name}: {'ok' if ok else 'CLAIM NOT MET'}: {_summary(name, data)} -> "
                  f"{written} ({time.perf_counter() - t0:.1f} s)", flush=True)
    except KeyboardInterrupt:
        kept = ", ".join(done) if done else "none"
        print(f"fasthess figures: interrupted; finished figures kept in {out}: {kept}",
              file=sys.stderr, flush=True)
        return 130
    print(f"{len(done)} figure{'s' if len(done) != 1 else ''} in "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    if failed:
        print(f"fasthess figures: claim not met for {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
