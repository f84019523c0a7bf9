"""Figure ``population``: sampled Hessian spectra approach the population one as P grows.

For an erf teacher at the optimum the Hessian on P Gaussian samples is
H_P = J^T J / P = (1/P) sum_p a_p a_p^T (a_p: the Jacobian row of sample p), and
its mean is the population Hessian H_inf = E[a a^T] (THEORY.md f), computed
exactly without samples. The distance between the spectra is the
Hoffman-Wielandt distance d(P) = ||lambda(H_P) - lambda(H_inf)||_2 (both sorted),
and Hoffman-Wielandt bounds it by ||H_P - H_inf||_F, whose mean square is exactly
sigma^2 / P for every P, sigma^2 = E||a||^4 - ||H_inf||_F^2 (the variance of one
sample's a a^T). The claim, from the data: (i) d(P) <= ||H_P - H_inf||_F for every
data set; (ii) P ||H_P - H_inf||_F^2 / sigma^2 averages to 1 within
``_config.FIG_FROBENIUS_TOLERANCE`` at every P (a wrong H_inf, off by Delta, would add
||Delta||_F^2 that does not fall with P); (iii) d(P) falls like P^{-1/2}: the
log-log slope of its root mean square over the data sets is -1/2 within
``_config.FIG_SLOPE_TOLERANCE``.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _config

from .._io import progress as progress_bar
from ..assembly import hessian
from ..data import POPULATION, gaussian_inputs
from ..network import TwoLayerNet
from ..products import jacobian
from ..rank import numerical_rank
from ..spectrum import eigenvalues
from ._plotting import OKABE_ITO, REFERENCE_COLOR, SERIES_COLORS, add_caption, new_figure, scalar
from ._spec import FigureSpec, scaled_size

__all__ = ["population_data", "plot_population", "FIGURE"]



def _fourth_moment(net, n_samples, rng):
    """Monte Carlo E||a||^4 (a: one sample's Jacobian row) and its standard error."""
    squares = []
    for start in range(0, n_samples, _config.FIG_MC_BLOCK):
        block = min(_config.FIG_MC_BLOCK, n_samples - start)
        J = jacobian(net, gaussian_inputs(block, net.n_in, rng=rng))
        squares.append(np.einsum("pd,pd->p", J, J) ** 2)
    squares = np.concatenate(squares)
    return float(np.mean(squares)), float(np.std(squares, ddof=1) / math.sqrt(squares.size))


def population_data(n=20, factors=(0.5, 2.0, 10.0), n_replicates=4, n_monte_carlo=200_000,
                    seed=0, progress=None) -> dict:
    """Sampled Hessian spectra of one erf teacher against its population spectrum.

    One teacher (Ni = Nh = n, No = 1, erf) at the optimum. The population
    spectrum is that of H_inf (:data:`fasthess.POPULATION`, no samples); for each
    P = factor * D, ``n_replicates`` independent Gaussian data sets give H_P and
    its spectrum (:func:`fasthess.spectrum.eigenvalues`, automatic route). sigma^2
    = E||a||^4 - ||H_inf||_F^2 uses a Monte Carlo E||a||^4 on ``n_monte_carlo``
    further samples.

    Parameters
    ----------
    n : int
        Ni = Nh.
    factors : sequence of float
        P = round(factor * D) for each.
    n_replicates : int
        Independent data sets per P.
    n_monte_carlo : int
        Samples of the estimate of E||a||^4.
    seed : int
        Seeds the teacher and all inputs.
    progress : bool or None
        A tqdm bar over the data sets (None: when stderr is a terminal).

    Returns
    -------
    dict
        ``population`` (D eigenvalues of H_inf, ascending), ``sampled`` (factors x
        D: the first data set's spectrum per P, ascending), ``sampled_rank`` (its
        numerical rank per P), ``n_samples`` (P per factor), ``distance`` (factors
        x replicates: Hoffman-Wielandt distance d(P)), ``frobenius`` (the same
        shape: ||H_P - H_inf||_F), ``sigma``, ``fourth_moment`` and its
        ``fourth_moment_se``, ``frobenius_ratio`` (per P: RMS over the data sets
        of sqrt(P) ||H_P - H_inf||_F / sigma), ``slope`` (least squares of log
        RMS d(P) on log P), ``hoffman_wielandt_holds``, ``frobenius_tolerance``,
        ``slope_tolerance``, ``n``, ``D``, ``factors``, ``n_replicates``,
        ``n_monte_carlo``, ``seed``, ``claim_holds`` ((i), (ii) and (iii) of the
        module's docstring).

    Raises
    ------
    ValueError
        Fewer than two factors (no slope), or fewer than one data set.

    Examples
    --------
    >>> from fasthess.figures import population_data
    >>> d = population_data(n=3, factors=(2, 10, 50), n_replicates=2,
    ...                     n_monte_carlo=20_000, progress=False)
    >>> d["distance"].shape, bool(d["hoffman_wielandt_holds"])
    ((3, 2), True)
    """
    factors = [float(f) for f in factors]
    if len(factors) < 2:
        raise ValueError(f"factors: need at least two sample sizes for a slope, got {factors}")
    if int(n_replicates) < 1:
        raise ValueError(f"n_replicates: need at least one data set, got {n_replicates}")
    rng = np.random.default_rng(seed)
    net = TwoLayerNet.random(n, n, activation="erf", rng=rng)
    D = net.n_params
    H_inf = hessian(net, POPULATION)
    population = eigenvalues(net, POPULATION).eigenvalues
    fourth, fourth_se = _fourth_moment(net, int(n_monte_carlo), rng)
    sigma = math.sqrt(fourth - float(np.sum(H_inf * H_inf)))
    Ps = np.array([max(1, int(round(f * D))) for f in factors])
    shape = (len(factors), int(n_replicates))
    distance, frobenius = np.zeros(shape), np.zeros(shape)
    sampled, sampled_rank = np.zeros((len(factors), D)), np.zeros(len(factors), dtype=np.int64)
    jobs = [(i, r) for i in range(len(factors)) for r in range(int(n_replicates))]
    for i, r in progress_bar(jobs, len(jobs), "population", progress, leave=False):
        X = gaussian_inputs(int(Ps[i]), n, rng=rng)
        spec = eigenvalues(net, X)
        # both ascending: the Hoffman-Wielandt pairing
        distance[i, r] = np.linalg.norm(spec.eigenvalues - population)
        frobenius[i, r] = np.linalg.norm(hessian(net, X) - H_inf)
        if r == 0:
            sampled[i] = spec.eigenvalues
            sampled_rank[i] = numerical_rank(spec, warn=False).rank
    ratio = np.sqrt(np.mean(Ps[:, None] * frobenius ** 2, axis=1)) / sigma
    rms_distance = np.sqrt(np.mean(distance ** 2, axis=1))
    slope = float(np.polyfit(np.log(Ps), np.log(rms_distance), 1)[0])
    # (i) is exact; the margin covers the round-off of two spectra and one difference
    rounding = 1e3 * np.finfo(np.float64).eps * float(np.max(np.abs(population)))
    hw_holds = bool(np.all(distance <= frobenius + rounding))
    tolerance = _config.FIG_FROBENIUS_TOLERANCE
    ratio_holds = bool(np.all((ratio >= 1 / tolerance) & (ratio <= tolerance)))
    slope_holds = abs(slope + 0.5) <= _config.FIG_SLOPE_TOLERANCE
    return {
        "population": population, "sampled": sampled, "sampled_rank": sampled_rank,
        "n_samples": Ps, "distance": distance, "frobenius": frobenius, "sigma": sigma,
        "fourth_moment": fourth, "fourth_moment_se": fourth_se, "frobenius_ratio": ratio,
        "slope": slope, "hoffman_wielandt_holds": hw_holds,
        "frobenius_tolerance": _config.FIG_FROBENIUS_TOLERANCE,
        "slope_tolerance": _config.FIG_SLOPE_TOLERANCE,
        "n": int(n), "D": int(D), "factors": np.array(factors),
        "n_replicates": int(n_replicates), "n_monte_carlo": int(n_monte_carlo),
        "seed": int(seed), "claim_holds": bool(hw_holds and ratio_holds and slope_holds),
    }


def _factor_label(factor) -> str:
    """``D/2``, ``2D``, ``10D``: a sample size in units of D."""
    if factor < 1:
        return f"D/{1 / factor:g}"
    return f"{factor:g}D"


def plot_population(data, ax=None):
    """Spectra by index (left) and their distance to the population one against P (right).

    Parameters
    ----------
    data : mapping
        From :func:`population_data` (or ``numpy.load`` of its file).
    ax : matplotlib Axes, optional
        Draw the spectra here (the left panel only); default a new Figure with
        both panels and a caption saying what was computed.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on (a new one when ``ax`` is None).

    Examples
    --------
    >>> from fasthess.figures import population_data, plot_population
    >>> data = population_data(n=3, factors=(2, 10), n_replicates=2,
    ...                        n_monte_carlo=20_000, progress=False)
    >>> fig = plot_population(data)
    >>> len(fig.axes), fig.axes[0].get_legend() is not None
    (2, True)
    """
    owned = ax is None
    if owned:
        fig, first, _ = new_figure(None, figsize=(12.0, 5.0))
        first.remove()
        ax, right = fig.subplots(1, 2)
    else:
        fig, right = ax.figure, None
    n, D = scalar(data, "n"), scalar(data, "D")
    factors = np.asarray(data["factors"])
    Ps = np.asarray(data["n_samples"])
    population = np.asarray(data["population"])[::-1]
    k = np.arange(1, D + 1)
    for i, f in enumerate(factors):
        ev = np.asarray(data["sampled"][i])[::-1]
        rank = int(np.asarray(data["sampled_rank"])[i])
        # beyond the rank: round-off zeros (P < D), no logarithm to draw
        ax.plot(k[:rank], ev[:rank], "o", ms=3, mew=0, color=SERIES_COLORS[i],
                label=f"$P$ = {_factor_label(f)} = {int(Ps[i])} samples")
    ax.plot(k, population, "-", color=OKABE_ITO["black"], lw=1.5,
            label=r"population, $P \to \infty$ (no samples)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"eigenvalue index $k$ (descending order)")
    ax.set_ylabel(r"Hessian eigenvalue $\lambda_k$")
    ax.set_title(f"erf teacher, $N_i = N_h$ = {n}, $D$ = {D}: sampled spectra\n"
                 f"approach the population spectrum", fontsize="medium")
    ax.legend(loc="lower left", frameon=False, fontsize="small")
    if right is not None:
        _plot_distance(data, right)
        add_caption(fig, f"Computed: seed {scalar(data, 'seed')}; one erf teacher g(z) = erf(z/√2), "
                         f"Ni = Nh = {n}, No = 1, w1 ~ N(0, 1/Ni), w2 ~ N(0, 1/Nh), at the "
                         f"optimum. Population: eigh of the exact H∞ = E[a aᵀ] for x ~ N(0, I). "
                         f"Sampled: H_P = JᵀJ/P on Gaussian inputs, {scalar(data, 'n_replicates')} "
                         f"independent data sets per P (left: the first; eigenvalues past its "
                         f"numerical rank are round-off zeros, not drawn). d(P): the Hoffman-"
                         f"Wielandt distance of the sorted spectra; σ² = E‖a‖⁴ − ‖H∞‖F² with "
                         f"E‖a‖⁴ from {scalar(data, 'n_monte_carlo')} further samples.")
    return fig


def _plot_distance(data, ax):
    """d(P) and ||H_P - H_inf||_F per data set against P, with sigma / sqrt(P)."""
    Ps = np.asarray(data["n_samples"]).astype(float)
    distance, frobenius = np.asarray(data["distance"]), np.asarray(data["frobenius"])
    sigma, slope = scalar(data, "sigma"), scalar(data, "slope")
    reps = distance.shape[1]
    # the data sets of one P side by side, a little apart, so none hides another
    spread = np.exp(np.linspace(-0.04, 0.04, reps)) if reps > 1 else np.ones(1)
    x = Ps[:, None] * spread[None, :]
    grid = np.geomspace(Ps.min() / 1.5, Ps.max() * 1.5, 50)
    ax.plot(grid, sigma / np.sqrt(grid), "-", color=REFERENCE_COLOR, lw=1.5,
            label=r"$\sigma/\sqrt{P}$: exact RMS of $\|H_P - H_\infty\|_F$")
    ax.plot(x.ravel(), frobenius.ravel(), "s", ms=5, mfc="none", mew=1.2,
            color=SERIES_COLORS[1], label=r"$\|H_P - H_\infty\|_F$ (bounds $d(P)$)")
    ax.plot(x.ravel(), distance.ravel(), "o", ms=5, mew=0, color=SERIES_COLORS[0],
            label=r"$d(P) = \|\lambda(H_P) - \lambda(H_\infty)\|_2$")
    rms = np.sqrt(np.mean(distance ** 2, axis=1))
    fit = np.exp(np.polyfit(np.log(Ps), np.log(rms), 1)[1]) * grid ** slope
    ax.plot(grid, fit, "--", color=SERIES_COLORS[0], lw=1.2,
            label=f"fit of RMS $d(P)$: slope {slope:.2f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"number of samples $P$")
    ax.set_ylabel(r"distance to the population")
    ratio = np.asarray(data["frobenius_ratio"])
    ax.set_title(f"Distance falls like $P^{{-1/2}}$: slope {slope:.2f} "
                 f"(claim: $-0.5 \\pm$ {scalar(data, 'slope_tolerance'):g})\n"
                 f"$\\sqrt{{P}}\\,\\|H_P - H_\\infty\\|_F / \\sigma$ = "
                 f"{ratio.min():.2f}..{ratio.max():.2f} (RMS per $P$; exact: 1)",
                 fontsize="medium")
    ax.legend(loc="lower left", frameon=False, fontsize="small")


def _summary(data) -> str:
    ratio = np.asarray(data["frobenius_ratio"])
    Ps = ", ".join(str(p) for p in np.asarray(data["n_samples"]).tolist())
    return (f"erf N={scalar(data, 'n')}, D={scalar(data, 'D')}, P={Ps}: slope of RMS "
            f"d(P) {scalar(data, 'slope'):.3f} (-0.5 +- {scalar(data, 'slope_tolerance'):g}); "
            f"sqrt(P)||H_P-H_inf||_F/sigma {ratio.min():.3f}..{ratio.max():.3f} "
            f"(within 1/{scalar(data, 'frobenius_tolerance'):g}..{scalar(data, 'frobenius_tolerance'):g}); "
            f"Hoffman-Wielandt d <= ||H_P-H_inf||_F: {bool(scalar(data, 'hoffman_wielandt_holds'))}")


def _scale(kwargs, factor):
    return {**kwargs, "n": scaled_size(kwargs["n"], factor),
            "n_replicates": scaled_size(kwargs["n_replicates"], factor, minimum=1)}


#: The registry entry of this figure.
FIGURE = FigureSpec(
    name="population",
    data=population_data,
    plot=plot_population,
    quick=dict(n=10, factors=(0.5, 2.0, 10.0), n_replicates=4, n_monte_carlo=50_000),
    full=dict(n=20, factors=(0.5, 2.0, 10.0), n_replicates=8, n_monte_carlo=200_000),
    scale=_scale,
    summary=_summary,
    claim="d(P) <= ||H_P - H_inf||_F (Hoffman-Wielandt); sqrt(P)||H_P - H_inf||_F / sigma "
          "within _config.FIG_FROBENIUS_TOLERANCE of 1 (RMS per P); slope of RMS d(P) -1/2 within "
          "SLOPE_TOLERANCE",
)
