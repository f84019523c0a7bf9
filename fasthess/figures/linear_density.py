"""Figure ``linear_density``: pooled Hessian eigenvalues of linear teachers vs the theory.

At the optimum of a linear network (g(z) = z, one output) with whitened data the
nonzero Hessian eigenvalues are |a|^2 + lambda_b(W1^T W1) (THEORY.md b). Pooled
over random teachers they follow the convolution of a chi-square law (|a|^2) with
the Marchenko-Pastur law (W1^T W1), :func:`fasthess.theory.linear_density`. The
claim: the Kolmogorov-Smirnov distance of the pooled sample to that law is below
:func:`ks_bound` (sampling error plus the finite-size allowance).
"""
from __future__ import annotations

import math

import numpy as np

from .. import _config

from .._io import progress as progress_bar
from ..network import TwoLayerNet
from ..rank import numerical_rank
from ..spectrum import eigenvalues
from ..theory import linear_cdf, linear_density
from ._plotting import OKABE_ITO, add_caption, new_figure, scalar
from ._spec import FigureSpec, scaled_size

__all__ = ["linear_density_data", "plot_linear_density", "ks_distance", "ks_bound",
           "FIGURE"]



def ks_distance(sample, cdf) -> float:
    """Kolmogorov-Smirnov distance between a sample's empirical CDF and ``cdf``.

    Parameters
    ----------
    sample : array_like (n,)
        The sample.
    cdf : callable
        Vectorised CDF of the reference law.

    Returns
    -------
    float
        The distance sup_x |F_n(x) - F(x)|, attained at a sample point from one side or the other.

    Raises
    ------
    ValueError
        If ``sample`` is empty.

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


def ks_bound(n_teachers, alpha=None, finite_size=None) -> float:
    """Bound on the KS distance of ``n_teachers`` pooled linear spectra to the law.

    The pooled empirical CDF is the mean of ``n_teachers`` independent per-teacher
    CDFs F_k, each [0, 1]-valued with mean F(x), so Var F_k(x) <= F (1 - F): no
    more than one independent sample's. Counting each teacher as one sample (its
    eigenvalues share the shift |a|^2 and are strongly correlated), the
    Dvoretzky-Kiefer-Wolfowitz inequality bounds the sampling part by
    sqrt(ln(2 / alpha) / (2 n_teachers)) with probability 1 - alpha. The law
    itself is the large-size limit; ``finite_size`` allows for that (measured in
    THEORY.md b for min(Ni, Nh) >= 12).

    Parameters
    ----------
    n_teachers : int
        Number of teachers pooled.
    alpha : float, optional
        Failure probability of the sampling part; default ``_config.FIG_KS_ALPHA``
        (1e-3).
    finite_size : float, optional
        Allowance for the finite-size error of the large-size law; default
        ``_config.FIG_KS_FINITE_SIZE`` (0.03).

    Returns
    -------
    float
        The bound.

    Examples
    --------
    >>> from fasthess.figures import ks_bound
    >>> round(ks_bound(200), 4)        # 0.03 + sqrt(ln(2000) / 400)
    0.1678
    """
    alpha = _config.FIG_KS_ALPHA if alpha is None else alpha
    finite_size = _config.FIG_KS_FINITE_SIZE if finite_size is None else finite_size
    return float(finite_size + math.sqrt(math.log(2.0 / alpha) / (2.0 * n_teachers)))


def linear_density_data(n_in=40, n_hidden=60, n_teachers=200, n_bins=60, seed=0,
                        progress=None) -> dict:
    """Pooled Hessian eigenvalues of linear teachers at the optimum, and the theory.

    For each of ``n_teachers`` teachers (default weights, one output) the nonzero
    eigenvalues come from :func:`fasthess.spectrum.eigenvalues` with
    ``method="linear"`` on whitened data: P = Ni samples with X^T X / P = I
    exactly, so the spectrum is the P -> infinity one, {|a|^2 + lambda_b(W1^T W1)}
    (THEORY.md b). They are pooled and compared with
    :func:`fasthess.theory.linear_density` and :func:`fasthess.theory.linear_cdf`.

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
        A tqdm bar over the teachers (None: when stderr is a terminal).

    Returns
    -------
    dict
        ``eigenvalues`` (pooled, sorted, n_teachers * Ni), ``bin_edges``,
        ``histogram`` (density), ``grid`` and ``density`` (theory on the plotted
        range [0, ``grid[-1]``], which holds all but <= 1e-6 of the law's mass),
        ``density_integral`` (trapezoid of ``density`` over ``grid``),
        ``ks`` (:func:`ks_distance` to ``linear_cdf``), ``ks_bound``
        (:func:`ks_bound`), ``ks_alpha``, ``ks_finite_size``, ``n_in``,
        ``n_hidden``, ``n_samples`` (P = Ni), ``n_teachers``, ``seed``,
        ``claim_holds`` (``ks <= ks_bound``).

    Examples
    --------
    >>> from fasthess.figures import linear_density_data
    >>> d = linear_density_data(n_in=4, n_hidden=6, n_teachers=50, progress=False)
    >>> d["eigenvalues"].size, d["n_samples"], bool(d["claim_holds"])
    (200, 4, True)
    """
    rng = np.random.default_rng(seed)
    # whitened inputs: X = sqrt(P) Q with Q orthogonal, so C = X^T X / P = I exactly
    q, _ = np.linalg.qr(rng.standard_normal((n_in, n_in)))
    X = math.sqrt(n_in) * q
    pooled = []
    for _ in progress_bar(range(n_teachers), n_teachers, "linear_density", progress,
                          leave=False):
        net = TwoLayerNet.random(n_in, n_hidden, activation="linear", rng=rng)
        spec = eigenvalues(net, X, method="linear")
        ev = spec.eigenvalues
        pooled.append(ev[np.abs(ev) > numerical_rank(spec, warn=False).tolerance])
    pooled = np.sort(np.concatenate(pooled))

    def cdf(x):
        return linear_cdf(x, n_in, n_hidden)

    # extend the range until the law's mass beyond it is negligible (the chi-square tail)
    hi = 1.05 * float(pooled[-1])
    while float(cdf(hi)) < 1.0 - _config.FIG_TAIL_MASS:
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
        "ks": ks, "ks_bound": bound, "ks_alpha": _config.FIG_KS_ALPHA,
        "ks_finite_size": _config.FIG_KS_FINITE_SIZE,
        "n_in": int(n_in), "n_hidden": int(n_hidden), "n_samples": int(n_in),
        "n_teachers": int(n_teachers), "seed": int(seed),
        "claim_holds": bool(ks <= bound),
    }


def plot_linear_density(data, ax=None):
    """Histogram of the pooled eigenvalues with the theory density over it.

    Parameters
    ----------
    data : mapping
        From :func:`linear_density_data` (or ``numpy.load`` of its saved file).
    ax : matplotlib Axes, optional
        Draw here; default a new Figure, with a caption saying what was computed.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on (a new one when ``ax`` is None).

    Examples
    --------
    >>> from fasthess.figures import linear_density_data, plot_linear_density
    >>> data = linear_density_data(n_in=4, n_hidden=6, n_teachers=20, progress=False)
    >>> fig = plot_linear_density(data)
    >>> fig.axes[0].get_legend() is not None
    True
    """
    fig, ax, owned = new_figure(ax)
    edges = np.asarray(data["bin_edges"])
    ni, nh, nt, P = (scalar(data, k) for k in ("n_in", "n_hidden", "n_teachers", "n_samples"))
    n_ev = np.asarray(data["eigenvalues"]).size
    ax.stairs(np.asarray(data["histogram"]), edges, fill=True, color=OKABE_ITO["sky_blue"],
              alpha=0.7,
              label=f"measured: {n_ev} eigenvalues of {nt} teachers,\n$P$ = {P} whitened inputs")
    ax.plot(data["grid"], data["density"], color=OKABE_ITO["vermillion"], lw=2,
            label=r"theory ($P \to \infty$): $\chi^2_{N_h} \ast$ Marchenko-Pastur")
    ax.set_xlim(0.0, edges[-1])
    ax.set_ylim(bottom=0.0)
    ax.set_xlabel(r"Hessian eigenvalue $\lambda$")
    ax.set_ylabel(r"probability density $p(\lambda)$")
    ax.set_title(f"Linear teacher at the optimum: $N_i$ = {ni}, $N_h$ = {nh}, $N_o$ = 1")
    ax.legend(loc="upper right", frameon=False, fontsize="small")
    ks, bound = scalar(data, "ks"), scalar(data, "ks_bound")
    alpha, finite = scalar(data, "ks_alpha"), scalar(data, "ks_finite_size")
    ax.text(0.98, 0.80,
            f"KS distance {ks:.3f} $\\leq$ bound {bound:.3f}\n"
            f"bound = {finite:g} (finite size) + "
            r"$\sqrt{\ln(2/\alpha)\,/\,2n}$" "\n"
            f"(DKW sampling term, $\\alpha$ = {alpha:g}, $n$ = {nt} teachers)",
            transform=ax.transAxes, ha="right", va="top", fontsize="small")
    if owned:
        add_caption(fig, f"Computed: {nt} teachers with w1 ~ N(0, 1/Ni), w2 ~ N(0, 1/Nh) "
                         f"(seed {scalar(data, 'seed')}); whitened inputs, P = Ni = {P} "
                         f"with XᵀX/P = I, so the spectrum is the P → ∞ one; the {ni} nonzero "
                         f"eigenvalues of each teacher by the exact linear route, pooled.")
    return fig


def _summary(data) -> str:
    return (f"KS {scalar(data, 'ks'):.4f} <= bound {scalar(data, 'ks_bound'):.4f} "
            f"({np.asarray(data['eigenvalues']).size} eigenvalues, "
            f"{scalar(data, 'n_teachers')} teachers, Ni={scalar(data, 'n_in')}, "
            f"Nh={scalar(data, 'n_hidden')}, P={scalar(data, 'n_samples')} whitened); "
            f"density integral over the plotted range "
            f"{scalar(data, 'density_integral'):.6f}")


def _scale(kwargs, factor):
    return {**kwargs, "n_in": scaled_size(kwargs["n_in"], factor),
            "n_hidden": scaled_size(kwargs["n_hidden"], factor),
            "n_teachers": scaled_size(kwargs["n_teachers"], factor, minimum=1)}


#: The registry entry of this figure.
FIGURE = FigureSpec(
    name="linear_density",
    data=linear_density_data,
    plot=plot_linear_density,
    quick=dict(n_in=20, n_hidden=30, n_teachers=200),
    full=dict(n_in=40, n_hidden=60, n_teachers=200),
    scale=_scale,
    summary=_summary,
    claim="KS distance of the pooled eigenvalues to theory.linear_cdf <= ks_bound",
)
