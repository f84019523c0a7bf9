"""Figure ``rank_vs_n``: numerical rank against the predicted effective parameters.

For five activations and Ni = Nh = N (No = 1) the numerical rank of one teacher's
Hessian at the optimum is compared with :func:`fasthess.theory.effective_parameters`
(THEORY.md c): linear N, z + z^2 N(N+3)/2, z^3 min(C(N+2, 3), N^2), erf D = N^2 + N,
relu D - N = N^2. The claim: measured == predicted at every point.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import _config

from .._io import progress as progress_bar
from ..activations import Polynomial
from ..data import POPULATION, gaussian_inputs
from ..network import TwoLayerNet
from ..rank import numerical_rank
from ..spectrum import eigenvalues
from ..theory import effective_parameters
from ._plotting import REFERENCE_COLOR, SERIES_COLORS, add_caption, new_figure, scalar
from ._spec import FigureSpec, scaled_size
from ._spectra import route_words, samples_for

__all__ = ["rank_vs_n_data", "plot_rank_vs_n", "rank_activation", "RANK_ACTIVATIONS",
           "rank_vs_n_population_data", "plot_rank_vs_n_population",
           "FIGURE", "POPULATION_FIGURE"]


class _Curve(NamedTuple):
    """One activation of the figure: how its rank is measured and how it is drawn."""

    coefficients: tuple | None  # a Polynomial's coefficients, None: the name itself
    method: str  # eigenvalue route
    label: str  # legend text (mathtext)
    marker: str
    marker_size: float
    filled: bool
    linestyle: str  # of the predicted ranks


# One row per activation, in the figure's order. Routes: cubic and erf have genuine
# eigenvalues 1e-10 of the largest and below (THEORY.md c), which eigh cannot separate
# from its 1e-16 round-off: the svd route resolves them (zero modes at ~1e-32).
# z + z^2 and relu get it too: with eigh the z + z^2 gap fell to 5.8 decades at
# N = 8 (smallest genuine ~1e-10), too narrow to trust; with svd every gap is > 20
# decades. linear: its exact route. Markers: z^3 and relu share the rank N^2 for
# N >= 4, so z^3's small filled diamond sits inside relu's large open triangle.
_CURVES = {
    "linear": _Curve(None, "linear", "linear $g = z$", "o", 6, True, "-"),
    "quadratic": _Curve(None, "svd", r"$g = z + z^2$", "s", 6.5, True, "-"),
    "cubic": _Curve((0.0, 0.0, 0.0, 1.0), "svd", r"$g = z^3$", "D", 4.5, True, "--"),
    "erf": _Curve(None, "svd", r"$g = \mathrm{erf}(z/\sqrt{2})$", "^", 6.5, True, "-"),
    "relu": _Curve(None, "svd", "relu", "v", 10, False, ":"),
}
#: The activations of the figure, by their plot names.
RANK_ACTIVATIONS = tuple(_CURVES)
# Tick positions of the log N axis, where they fall inside the plotted range.
_N_TICKS = (2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 30, 40, 48, 64, 80, 96, 128)


def rank_activation(name):
    """The activation of ``rank_vs_n`` called ``name``: "cubic" is z^3, others as named.

    Parameters
    ----------
    name : str
        One of :data:`RANK_ACTIVATIONS`.

    Returns
    -------
    str or fasthess.Polynomial

    Examples
    --------
    >>> from fasthess.figures.rank_vs_n import rank_activation
    >>> rank_activation("erf"), rank_activation("cubic").powers
    ('erf', (3,))
    """
    coefficients = _CURVES[name].coefficients
    return name if coefficients is None else Polynomial(list(coefficients))


def rank_vs_n_data(ns=tuple(range(2, 17)), activations=RANK_ACTIVATIONS, samples_factor=2.0,
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
        The sizes N.
    activations : sequence of str
        Among "linear", "quadratic" (z + z^2), "cubic" (z^3), "erf", "relu".
    samples_factor, extra_samples : float, int
        P = ceil(samples_factor D) + extra_samples.
    seed : int
        Seeds the teachers and their inputs.
    progress : bool or None
        A tqdm bar over the (activation, N) pairs.

    Returns
    -------
    dict
        ``ns``, ``activations`` (names), ``methods`` (route per activation),
        ``rank``, ``predicted``, ``gap_decades``, ``n_samples`` (shape
        (activations, ns)), ``D`` (per N), ``samples_factor``, ``extra_samples``,
        ``seed``, ``claim_holds`` (rank == predicted everywhere).

    Raises
    ------
    ValueError
        An activation name not among :data:`RANK_ACTIVATIONS`.

    Examples
    --------
    >>> from fasthess.figures import rank_vs_n_data
    >>> d = rank_vs_n_data(ns=(2, 3), activations=("linear", "erf"), progress=False)
    >>> d["rank"].tolist(), bool(d["claim_holds"])
    ([[2, 3], [6, 12]], True)
    """
    ns = [int(n) for n in ns]
    activations = list(activations)
    unknown = [a for a in activations if a not in _CURVES]
    if unknown:
        raise ValueError(f"activations: unknown {unknown}; choose from {list(_CURVES)}")
    rng = np.random.default_rng(seed)
    shape = (len(activations), len(ns))
    rank = np.zeros(shape, dtype=np.int64)
    predicted = np.zeros(shape, dtype=np.int64)
    gaps = np.zeros(shape)
    dims = np.array([n * (n + 1) for n in ns])
    samples = np.zeros(shape, dtype=np.int64)
    pairs = [(a, j) for a in range(len(activations)) for j in range(len(ns))]
    for a, j in progress_bar(pairs, len(pairs), "rank_vs_n", progress, leave=False):
        name, n = activations[a], ns[j]
        P = samples_for(int(dims[j]), samples_factor, extra_samples)
        if name == "relu":
            P = max(P, _config.FIG_RELU_MIN_SAMPLES)
        samples[a, j] = P
        act = rank_activation(name)
        net = TwoLayerNet.random(n, n, activation=act, rng=rng)
        X = gaussian_inputs(P, n, rng=rng)
        r = numerical_rank(eigenvalues(net, X, method=_CURVES[name].method), warn=False)
        rank[a, j] = r.rank
        gaps[a, j] = r.gap_decades
        predicted[a, j] = effective_parameters(act, n, n, 1, n_samples=P)
    return {
        "ns": np.array(ns), "activations": np.array(activations),
        "methods": np.array([_CURVES[a].method for a in activations]),
        "rank": rank, "predicted": predicted, "gap_decades": gaps, "D": dims,
        "n_samples": samples, "samples_factor": float(samples_factor),
        "extra_samples": int(extra_samples), "seed": int(seed),
        "claim_holds": bool(np.array_equal(rank, predicted)),
    }


def rank_vs_n_population_data(ns=tuple(range(2, 31)), activations=RANK_ACTIVATIONS, seed=0,
                              progress=None) -> dict:
    """Rank of the population Hessian H_inf against the effective parameters, no sampling.

    For each activation and N (Ni = Nh = N, No = 1) one teacher; the rank of
    :func:`fasthess.spectrum.eigenvalues` with :data:`fasthess.POPULATION` (eigh of
    the exact H_inf; the closed form for linear) against
    :func:`fasthess.theory.effective_parameters` with ``n_samples=None``. eigh
    resolves eigenvalues only down to ~1e-16 of the largest, and the smallest
    genuine ones of H_inf fall with N (~2e-8 for z + z^2 at N = 20, below 1e-11 at
    N = 30), so each point's separation is recorded: the gap in decades, or, at full
    rank, log10(lambda_min / (eps lambda_max)). A point is resolved when its
    separation is at least ``_config.FIG_MIN_GAP_DECADES``, and the claim is checked there
    only; unresolved points are reported, never counted as a match.

    Parameters
    ----------
    ns : sequence of int
        The sizes N.
    activations : sequence of str
        Among :data:`RANK_ACTIVATIONS`.
    seed : int
        Seeds the teachers.
    progress : bool or None
        A tqdm bar over the (activation, N) pairs.

    Returns
    -------
    dict
        ``ns``, ``activations``, ``methods``, ``rank``, ``predicted``,
        ``gap_decades`` (the separation above), ``resolved`` (bool, activations x
        ns), ``D``, ``min_gap_decades``, ``population`` (True), ``seed``,
        ``claim_holds`` (rank == predicted at every resolved point, and at least one
        resolved point).

    Raises
    ------
    ValueError
        An activation name not among :data:`RANK_ACTIVATIONS`.

    Examples
    --------
    >>> from fasthess.figures import rank_vs_n_population_data
    >>> d = rank_vs_n_population_data(ns=(2, 3), activations=("quadratic", "erf"),
    ...                               progress=False)
    >>> d["rank"].tolist(), bool(d["resolved"].all()), bool(d["claim_holds"])
    ([[5, 9], [6, 12]], True, True)
    """
    ns = [int(n) for n in ns]
    activations = list(activations)
    unknown = [a for a in activations if a not in _CURVES]
    if unknown:
        raise ValueError(f"activations: unknown {unknown}; choose from {list(_CURVES)}")
    rng = np.random.default_rng(seed)
    shape = (len(activations), len(ns))
    rank = np.zeros(shape, dtype=np.int64)
    predicted = np.zeros(shape, dtype=np.int64)
    gaps = np.zeros(shape)
    methods = [""] * len(activations)
    pairs = [(a, j) for a in range(len(activations)) for j in range(len(ns))]
    eps = float(np.finfo(np.float64).eps)
    for a, j in progress_bar(pairs, len(pairs), "rank_vs_n_population", progress, leave=False):
        name, n = activations[a], ns[j]
        act = rank_activation(name)
        net = TwoLayerNet.random(n, n, activation=act, rng=rng)
        spec = eigenvalues(net, POPULATION)
        methods[a] = spec.method
        r = numerical_rank(spec, warn=False)  # an unresolved gap is crossed out, not warned
        rank[a, j] = r.rank
        magnitudes = np.abs(spec.eigenvalues)
        if r.rank == magnitudes.size:  # nothing dropped: the distance to eigh's zero level
            gaps[a, j] = np.log10(magnitudes.min() / (eps * magnitudes.max()))
        else:
            gaps[a, j] = r.gap_decades
        predicted[a, j] = effective_parameters(act, n, n, 1, n_samples=None)
    resolved = gaps >= _config.FIG_MIN_GAP_DECADES
    return {
        "ns": np.array(ns), "activations": np.array(activations), "methods": np.array(methods),
        "rank": rank, "predicted": predicted, "gap_decades": gaps, "resolved": resolved,
        "D": np.array([n * (n + 1) for n in ns]), "min_gap_decades": _config.FIG_MIN_GAP_DECADES,
        "population": True, "seed": int(seed),
        "claim_holds": bool(resolved.any() and np.array_equal(rank[resolved],
                                                              predicted[resolved])),
    }


def plot_rank_vs_n(data, ax=None):
    """Measured ranks (markers) on the predicted ones (lines), D for reference.

    Parameters
    ----------
    data : mapping
        From :func:`rank_vs_n_data` (or ``numpy.load`` of its file).
    ax : matplotlib Axes, optional
        Draw here; default a new Figure, with a caption saying what was computed.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on (a new one when ``ax`` is None).

    Examples
    --------
    >>> from fasthess.figures import rank_vs_n_data, plot_rank_vs_n
    >>> data = rank_vs_n_data(ns=(2, 3), progress=False)
    >>> fig = plot_rank_vs_n(data)
    >>> fig.axes[0].get_legend() is not None
    True
    """
    from matplotlib.legend_handler import HandlerTuple
    from matplotlib.lines import Line2D
    from matplotlib.ticker import LogFormatter, NullFormatter, ScalarFormatter

    population = "resolved" in data
    # the population variant's legend has a row more and its ranks fill the upper left,
    # where the legend of the sampled variant fits: beside the axes, on a wider figure
    fig, ax, owned = new_figure(ax, figsize=(9.6, 4.8) if population else (6.4, 4.8))
    ns = np.asarray(data["ns"])
    names = np.asarray(data["activations"]).tolist()
    rank, predicted = np.asarray(data["rank"]), np.asarray(data["predicted"])
    ax.plot(ns, data["D"], color=REFERENCE_COLOR, lw=4, alpha=0.35, zorder=1)
    handles = [Line2D([], [], color=REFERENCE_COLOR, lw=4, alpha=0.35)]
    labels = [r"$D = N^2 + N$ (all parameters)"]
    for a, name in enumerate(names):
        color = SERIES_COLORS[a % len(SERIES_COLORS)]
        curve = _CURVES[name]
        style = dict(color=color, ms=curve.marker_size, mew=1.3,
                     mfc=color if curve.filled else "none")
        line, = ax.plot(ns, predicted[a], curve.linestyle, color=color, lw=1.2, zorder=2)
        ax.plot(ns, rank[a], curve.marker, ls="none", zorder=3 if curve.filled else 4, **style)
        handles.append((line, Line2D([], [], marker=curve.marker, ls="none", **style)))
        labels.append(f"{curve.label} ({np.asarray(data['methods'])[a]} route)")
    if population:  # unresolved ranks: crossed out, never a silent match
        unresolved = ~np.asarray(data["resolved"], dtype=bool)
        where = np.nonzero(unresolved)
        ax.plot(ns[where[1]], rank[where], "x", ms=11, mew=1.8, color="k", zorder=5)
        if unresolved.any():
            handles.append(Line2D([], [], marker="x", ls="none", ms=9, mew=1.8, color="k"))
            labels.append(f"unresolved: gap < {scalar(data, 'min_gap_decades'):g} decades "
                          f"(not checked)")
    # what lines and markers mean, apart, in the empty corner under the linear ranks
    key = [Line2D([], [], color="0.3", lw=1.2),
           Line2D([], [], marker="o", ls="none", color="0.3", mfc="white", mew=1.3)]
    ax.add_artist(ax.legend(key, ["lines: predicted effective parameters",
                                  "markers: measured numerical rank"],
                            loc="lower right", frameon=False, fontsize="small"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [t for t in _N_TICKS if ns.min() <= t <= ns.max()]
    ax.set_xticks(ticks if len(ticks) >= 2 else ns)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    # plain numbers (not 4 x 10^1); LogFormatter labels only a few minor ticks
    ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
    ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 1)))
    ax.set_xlabel(r"width $N = N_i = N_h$")
    ax.set_ylabel(r"rank of the Hessian at the optimum")
    gaps = np.asarray(data["gap_decades"])
    if population:
        ok = np.asarray(data["resolved"], dtype=bool)
        matched = int(np.sum((rank == predicted) & ok))
        ax.set_title(f"Population Hessian ($P \\to \\infty$): rank vs predicted effective "
                     f"parameters\n{matched}/{int(ok.sum())} resolved ranks match; "
                     f"{int((~ok).sum())} of {ok.size} unresolved (gap < "
                     f"{scalar(data, 'min_gap_decades'):g} decades)", fontsize="medium")
    else:
        ax.set_title(f"Measured rank (markers) vs predicted effective parameters (lines)\n"
                     f"every rank inside a gap of at least {np.min(gaps):.0f} decades",
                     fontsize="medium")
    where = dict(loc="upper left", bbox_to_anchor=(1.02, 1.0)) if population else dict(
        loc="upper left")
    ax.legend(handles, labels, frameon=False, fontsize="small",
              handler_map={tuple: HandlerTuple(ndivide=1)}, **where)
    if owned and population:
        add_caption(fig, f"Computed: one teacher per (activation, N), N = {ns[0]}..{ns[-1]}, "
                         f"No = 1, w1 ~ N(0, 1/N), w2 ~ N(0, 1/N), seed {scalar(data, 'seed')}; "
                         f"no samples: eigh of the exact population Hessian H∞ (x ~ N(0, I)), "
                         f"the closed form for linear; rank = number of eigenvalues above "
                         f"D ε λmax. eigh resolves only ~1e-16 λmax while the smallest genuine "
                         f"eigenvalues fall with N, so a rank counts only inside a gap of "
                         f"{scalar(data, 'min_gap_decades'):g} decades (at full rank: λmin "
                         f"that far above ε λmax); the others are crossed out. Smallest "
                         f"separation {np.min(gaps):.1f} decades.")
    elif owned:
        Pmin, Pmax = int(np.min(data["n_samples"])), int(np.max(data["n_samples"]))
        add_caption(fig, f"Computed: one teacher per (activation, N), N = {ns[0]}..{ns[-1]}, "
                         f"No = 1, w1 ~ N(0, 1/N), w2 ~ N(0, 1/N), seed "
                         f"{scalar(data, 'seed')}; P = {scalar(data, 'samples_factor'):g}D + "
                         f"{scalar(data, 'extra_samples')} Gaussian inputs (at least "
                         f"{_config.FIG_RELU_MIN_SAMPLES} for relu; P = {Pmin}..{Pmax}); rank = "
                         f"number "
                         f"of eigenvalues above (Dε)² λmax by {route_words('svd')}, "
                         f"D ε λmax for linear (exact route). z³ and relu both have rank N² for "
                         f"N ≥ 4: the small diamonds (z³) sit inside the open triangles (relu).")
    return fig


def plot_rank_vs_n_population(data, ax=None):
    """:func:`plot_rank_vs_n` for :func:`rank_vs_n_population_data`: unresolved ranks crossed.

    Parameters
    ----------
    data : mapping
        From :func:`rank_vs_n_population_data` (or ``numpy.load`` of its file).
    ax : matplotlib Axes, optional
        Draw here; default a new Figure, with a caption saying what was computed.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on (a new one when ``ax`` is None).

    Examples
    --------
    >>> from fasthess.figures import rank_vs_n_population_data, plot_rank_vs_n_population
    >>> fig = plot_rank_vs_n_population(rank_vs_n_population_data(ns=(2, 3), progress=False))
    >>> fig.axes[0].get_legend() is not None
    True
    """
    return plot_rank_vs_n(data, ax)


def _population_summary(data) -> str:
    rank, predicted = np.asarray(data["rank"]), np.asarray(data["predicted"])
    ok = np.asarray(data["resolved"], dtype=bool)
    ns = np.asarray(data["ns"])
    low = [f"{a} N={n} ({g:.1f})" for a, row, okrow in zip(
        np.asarray(data["activations"]).tolist(), np.asarray(data["gap_decades"]), ok)
        for n, g, o in zip(ns.tolist(), row, okrow) if not o]
    return (f"population: rank == predicted for {int(np.sum((rank == predicted) & ok))}/"
            f"{int(ok.sum())} resolved (activation, N), N = {ns[0]}..{ns[-1]}; "
            f"unresolved (gap decades): {', '.join(low) if low else 'none'}; mismatches "
            f"anywhere: {int(np.sum(rank != predicted))}")


def _summary(data) -> str:
    rank, predicted = np.asarray(data["rank"]), np.asarray(data["predicted"])
    ns = np.asarray(data["ns"])
    return (f"rank == predicted effective parameters for {int(np.sum(rank == predicted))}/"
            f"{rank.size} (activation, N), N = {ns[0]}..{ns[-1]}; min gap "
            f"{np.min(data['gap_decades']):.1f} decades")


def _scale(kwargs, factor):
    ns = list(kwargs["ns"])
    return {**kwargs, "ns": list(range(ns[0], scaled_size(ns[-1], factor, ns[0]) + 1))}


#: The registry entry of this figure.
FIGURE = FigureSpec(
    name="rank_vs_n",
    data=rank_vs_n_data,
    plot=plot_rank_vs_n,
    quick=dict(ns=list(range(2, 7))),
    full=dict(ns=list(range(2, 17))),
    scale=_scale,
    summary=_summary,
    claim="numerical rank == theory.effective_parameters at every (activation, N)",
)


#: The registry entry of the population variant: H_inf, no sampling noise, N up to 30.
POPULATION_FIGURE = FigureSpec(
    name="rank_vs_n_population",
    data=rank_vs_n_population_data,
    plot=plot_rank_vs_n_population,
    quick=dict(ns=list(range(2, 11))),
    full=dict(ns=list(range(2, 31))),
    scale=_scale,
    summary=_population_summary,
    claim="rank of the population Hessian == theory.effective_parameters(n_samples=None) at "
          "every point resolved by a gap of _config.FIG_MIN_GAP_DECADES",
)
