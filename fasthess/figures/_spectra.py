"""Shared by the spectrum figures: one teacher's spectrum per size, and its plot.

``quadratic_spectrum`` and ``erf_spectrum`` draw the same kind of picture (the
descending eigenvalues of one teacher per size, relative to the largest, on
log-log axes); ``rank_vs_n`` uses the same sample-size rule.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _config

from .._io import progress as progress_bar
from ..data import gaussian_inputs
from ..network import TwoLayerNet
from ..rank import numerical_rank
from ..spectrum import eigenvalues
from ._plotting import REFERENCE_COLOR, SERIES_COLORS, new_figure, scalar

__all__ = ["samples_for", "spectrum_key", "shape_label", "teacher_spectra", "plot_spectra",
           "samples_rule", "route_words", "floor_note", "label_line"]



def samples_for(n_params, samples_factor, extra_samples) -> int:
    """P = ceil(samples_factor * D) + extra_samples.

    P well above D, so that the data do not cap the rank (THEORY.md c uses
    P = 2D + 20).

    Parameters
    ----------
    n_params : int
        D.
    samples_factor : float
    extra_samples : int

    Returns
    -------
    int

    Examples
    --------
    >>> from fasthess.figures._spectra import samples_for
    >>> samples_for(30, 2.0, 20)
    80
    """
    return int(math.ceil(samples_factor * n_params)) + int(extra_samples)


def spectrum_key(n_in, n_hidden) -> str:
    """Data key of one spectrum: ``eigenvalues_<N>`` (Ni = Nh = N) or ``eigenvalues_<Ni>x<Nh>``.

    Parameters
    ----------
    n_in, n_hidden : int

    Returns
    -------
    str

    Examples
    --------
    >>> from fasthess.figures._spectra import spectrum_key
    >>> spectrum_key(5, 5), spectrum_key(4, 16)
    ('eigenvalues_5', 'eigenvalues_4x16')
    """
    n_in, n_hidden = int(n_in), int(n_hidden)
    return f"eigenvalues_{n_in}" if n_in == n_hidden else f"eigenvalues_{n_in}x{n_hidden}"


def shape_label(n_in, n_hidden) -> str:
    """Legend text of a size: ``N = 5`` or ``Ni = 4, Nh = 16`` (mathtext).

    Parameters
    ----------
    n_in, n_hidden : int

    Returns
    -------
    str
    """
    n_in, n_hidden = int(n_in), int(n_hidden)
    if n_in == n_hidden:
        return f"$N$ = {n_in}"
    return f"$N_i$ = {n_in}, $N_h$ = {n_hidden}"


# How each eigenvalue route of fasthess.spectrum.eigenvalues computes, for captions.
_ROUTE_WORDS = {"svd": "squared singular values of J/√P", "dense": "eigh of the assembled H",
                "linear": "the exact structured spectrum of a linear network",
                "ntk": "eigenvalues of the NTK Gram, padded with zeros",
                "reduced": "the exact reduction of H_inf to the span of the weights"}


def route_words(method) -> str:
    """``'the svd route (squared singular values of J/√P)'``: a route, for a caption.

    Parameters
    ----------
    method : str
        One or more routes, comma separated (``data["method"]``).

    Returns
    -------
    str
    """
    routes = [m.strip() for m in str(method).split(",")]
    words = "; ".join(_ROUTE_WORDS[m] for m in routes if m in _ROUTE_WORDS)
    name = " and ".join(routes)
    return f"the {name} route" + ("s" if len(routes) > 1 else "") + (f" ({words})" if words else "")


def floor_note(data) -> str:
    """A caption sentence when some eigenvalue is drawn at ``_config.FIG_PLOT_FLOOR``, else "".

    Parameters
    ----------
    data : mapping
        From :func:`teacher_spectra`.

    Returns
    -------
    str
    """
    for ni, nh in zip(np.asarray(data["n_in"]).tolist(), np.asarray(data["n_hidden"]).tolist()):
        ev = np.asarray(data[spectrum_key(ni, nh)])
        if np.any(ev <= _config.FIG_PLOT_FLOOR * ev[-1]):
            floor = _config.FIG_PLOT_FLOOR
            return (f" Eigenvalues at or below {floor:.0e} λmax (round-off zeros) are "
                    f"drawn at {floor:.0e}.")
    return ""


def samples_rule(data) -> str:
    """The sample sizes of spectrum data in words: ``P = 2D + 20 = 80, 260``.

    Parameters
    ----------
    data : mapping
        From :func:`teacher_spectra`.

    Returns
    -------
    str
    """
    Ps = ", ".join(str(p) for p in np.asarray(data["n_samples"]).tolist())
    return (f"P = {scalar(data, 'samples_factor'):g}D + {scalar(data, 'extra_samples')} "
            f"= {Ps}")


def teacher_spectra(activation, shapes, method, samples_factor, extra_samples, seed,
                    progress, desc, n_candidates=1) -> dict:
    """Spectrum, numerical rank and gap of one teacher per (Ni, Nh), No = 1.

    Parameters
    ----------
    activation : str or Activation
    shapes : sequence of (int, int)
        (Ni, Nh) of each teacher, in order.
    method : str
        Route of :func:`fasthess.spectrum.eigenvalues`.
    samples_factor, extra_samples : float, int
        P from :func:`samples_for`.
    seed : int
        One generator, drawn in order: teacher, then its inputs, per draw.
    progress : bool or None
        tqdm bar over the draws.
    desc : str
        Label of the bar.
    n_candidates : int
        Teachers drawn per shape (each with its own inputs); the one kept has the
        median lambda_min / lambda_max (smallest eigenvalue above the rank
        tolerance over the largest): a representative draw, not a lucky one. 1:
        the single draw.

    Returns
    -------
    dict
        ``n_in``, ``n_hidden``, ``eigenvalues_<...>`` (:func:`spectrum_key`;
        ascending, D each), ``rank``, ``gap_decades``, ``rtol`` (of
        :func:`fasthess.spectrum.numerical_rank`), ``D``, ``n_samples``,
        ``candidate_conditions`` (shapes x n_candidates, lambda_min / lambda_max
        of every draw), ``method``, ``samples_factor``, ``extra_samples``,
        ``n_candidates``, ``seed``.
    """
    rng = np.random.default_rng(seed)
    out = {"n_in": np.array([s[0] for s in shapes], dtype=np.int64),
           "n_hidden": np.array([s[1] for s in shapes], dtype=np.int64)}
    ranks, gaps, dims, samples, tols, conditions, routes = [], [], [], [], [], [], set()
    bar = progress_bar(total=len(shapes) * n_candidates, desc=desc, enabled=progress,
                       leave=False)
    with bar:
        for ni, nh in shapes:
            found = []
            for _ in range(n_candidates):
                net = TwoLayerNet.random(ni, nh, activation=activation, rng=rng)
                P = samples_for(net.n_params, samples_factor, extra_samples)
                X = gaussian_inputs(P, ni, rng=rng)
                spec = eigenvalues(net, X, method=method)
                r = numerical_rank(spec, warn=False)  # the figure reports the gap itself
                a = np.abs(spec.eigenvalues)
                found.append((float(np.min(a[a > r.tolerance]) / np.max(a)), spec, r, P))
                bar.update()
            ratios = [f[0] for f in found]
            _, spec, r, P = found[int(np.argsort(ratios, kind="stable")[len(found) // 2])]
            out[spectrum_key(ni, nh)] = spec.eigenvalues
            ranks.append(r.rank)
            gaps.append(r.gap_decades)
            dims.append(spec.eigenvalues.size)
            samples.append(P)
            tols.append(r.rtol)
            conditions.append(ratios)
            routes.add(spec.method)
    out.update(rank=np.array(ranks), gap_decades=np.array(gaps), D=np.array(dims),
               n_samples=np.array(samples), rtol=np.array(tols),
               candidate_conditions=np.array(conditions),
               method=", ".join(sorted(routes)), samples_factor=float(samples_factor),
               extra_samples=int(extra_samples), n_candidates=int(n_candidates), seed=int(seed))
    return out


def label_line(ax, y, text, color, left=False):
    """Write ``text`` just above the horizontal line at height ``y``, at one end.

    A label on the line itself rather than a legend entry: the reader need not
    match line styles, and the legend stays clear of the lines.

    Parameters
    ----------
    ax : matplotlib Axes
    y : float
        The line's height, in data coordinates.
    text : str
    color : color
    left : bool
        At the left end instead of the right.

    Returns
    -------
    matplotlib.text.Text
    """
    return ax.annotate(text, xy=(0.01 if left else 0.99, y), xycoords=("axes fraction", "data"),
                       xytext=(0, 2), textcoords="offset points", va="bottom",
                       ha="left" if left else "right", fontsize="small", color=color)


def plot_spectra(data, ax, title, predicted=None, tolerance_label_left=True):
    """Descending eigenvalues lambda_k / lambda_max of each spectrum in ``data``, log-log.

    Parameters
    ----------
    data : mapping
        From :func:`teacher_spectra` (or a data function built on it).
    ax : matplotlib Axes or None
    title : str
    predicted : sequence of int, optional
        Predicted rank per spectrum: a dashed vertical line in the spectrum's
        colour just after that many eigenvalues.
    tolerance_label_left : bool
        Label the rank-tolerance line at its left end (else its right end).

    Returns
    -------
    (matplotlib.figure.Figure, matplotlib.axes.Axes, bool)
        As :func:`fasthess.figures._plotting.new_figure`; the legend is left to
        the caller, who may add lines first.
    """
    fig, ax, owned = new_figure(ax)
    shapes = list(zip(np.asarray(data["n_in"]).tolist(), np.asarray(data["n_hidden"]).tolist()))
    ranks = np.asarray(data["rank"])
    for i, (ni, nh) in enumerate(shapes):
        color = SERIES_COLORS[i % len(SERIES_COLORS)]
        ev = np.asarray(data[spectrum_key(ni, nh)])[::-1]
        rel = np.maximum(ev / ev[0], _config.FIG_PLOT_FLOOR)
        k = np.arange(1, ev.size + 1)
        ax.plot(k, rel, "o", ms=2.5, mew=0, color=color,
                label=f"{shape_label(ni, nh)}: rank {int(ranks[i])} of $D$ = {ev.size}")
        if predicted is not None:
            ax.axvline(predicted[i] + 0.5, color=color, ls="--", lw=1)
    # every spectrum's rank tolerance; the largest D has the largest (D eps)^2
    rtol = float(np.max(np.asarray(data["rtol"])))
    ax.axhline(rtol, color=REFERENCE_COLOR, ls=":", lw=1.2)
    label_line(ax, rtol, f"rank tolerance ({scalar(data, 'method')} route, largest $D$)",
               REFERENCE_COLOR, left=tolerance_label_left)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(_config.FIG_PLOT_FLOOR / 10, 10)
    ax.set_xlabel(r"eigenvalue index $k$ (descending order)")
    ax.set_ylabel(r"relative eigenvalue $\lambda_k / \lambda_{\max}$")
    ax.set_title(title)
    return fig, ax, owned
