"""Figure ``quadratic_spectrum``: zero modes of z + z^2 teachers, and the rank N(N+3)/2.

For g(z) = z + z^2 with Ni = Nh = N and No = 1 the Hessian at the optimum has
rank N(N+3)/2 of D = N^2 + N (THEORY.md c): the other N(N-1)/2 eigenvalues are
zero modes, tangent to a manifold of optima. The svd route puts them near 1e-32 of
the largest, so the gap is unmistakable. The claim: every numerical rank equals
N(N+3)/2.
"""
from __future__ import annotations

import numpy as np

from ..theory import effective_parameters
from ._plotting import SERIES_COLORS, add_caption, scalar
from ._spec import FigureSpec, scaled_sizes
from ._spectra import floor_note, plot_spectra, route_words, samples_rule, teacher_spectra

__all__ = ["quadratic_spectrum_data", "plot_quadratic_spectrum", "FIGURE"]


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
        Seeds the teachers and their inputs.
    progress : bool or None
        A tqdm bar over the sizes.

    Returns
    -------
    dict
        ``ns``, ``n_in`` and ``n_hidden`` (both ``ns``), ``eigenvalues_<N>``
        (ascending, D each), ``rank`` (numerical,
        :func:`fasthess.spectrum.numerical_rank`), ``gap_decades``, ``rtol``, ``D``,
        ``n_samples``, ``predicted`` (N(N+3)/2), ``effective_parameters``
        (:func:`fasthess.theory.effective_parameters` at that P), ``method``,
        ``seed``, ``claim_holds`` (every rank == N(N+3)/2).

    Examples
    --------
    >>> from fasthess.figures import quadratic_spectrum_data
    >>> d = quadratic_spectrum_data(ns=(2, 3), progress=False)
    >>> d["rank"].tolist(), d["predicted"].tolist(), bool(d["claim_holds"])
    ([5, 9], [5, 9], True)
    """
    ns = [int(n) for n in ns]
    out = teacher_spectra("quadratic", [(n, n) for n in ns], method, samples_factor,
                          extra_samples, seed, progress, "quadratic_spectrum")
    predicted = np.array([n * (n + 3) // 2 for n in ns])
    eff = np.array([effective_parameters("quadratic", n, n, 1, n_samples=int(p))
                    for n, p in zip(ns, out["n_samples"])])
    out.update(ns=np.array(ns), predicted=predicted, effective_parameters=eff,
               claim_holds=bool(np.array_equal(out["rank"], predicted)))
    return out


def plot_quadratic_spectrum(data, ax=None):
    """Descending eigenvalues per N (log-log), predicted ranks N(N+3)/2 dashed.

    Parameters
    ----------
    data : mapping
        From :func:`quadratic_spectrum_data` (or ``numpy.load`` of its file).
    ax : matplotlib Axes, optional
        Draw here; default a new Figure, with a caption saying what was computed.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on (a new one when ``ax`` is None).

    Examples
    --------
    >>> from fasthess.figures import quadratic_spectrum_data, plot_quadratic_spectrum
    >>> data = quadratic_spectrum_data(ns=(2, 3), progress=False)
    >>> fig = plot_quadratic_spectrum(data)
    >>> fig.axes[0].get_legend() is not None
    True
    """
    from matplotlib.legend_handler import HandlerTuple
    from matplotlib.lines import Line2D

    predicted = [int(p) for p in np.asarray(data["predicted"])]
    fig, ax, owned = plot_spectra(
        data, ax, r"Quadratic teacher $g(z) = z + z^2$, $N_i = N_h = N$: zero modes",
        predicted=predicted, tolerance_label_left=True)  # clear of the rank lines
    handles, labels = ax.get_legend_handles_labels()
    # one legend entry for the dashed lines, drawn in each size's colour as plotted
    dashes = tuple(Line2D([], [], color=SERIES_COLORS[i % len(SERIES_COLORS)], ls="--", lw=1)
                   for i in range(len(predicted)))
    handles.append(dashes)
    labels.append(r"predicted rank $N(N+3)/2$")
    # an opaque box: the dashed rank lines run through the legend's area
    ax.legend(handles, labels, loc="center left", fontsize="small", framealpha=1.0,
              edgecolor="none", handler_map={tuple: HandlerTuple(ndivide=None, pad=0)})
    if owned:
        ns = ", ".join(str(n) for n in np.asarray(data["ns"]).tolist())
        add_caption(fig, f"Computed: one teacher per N = {ns} (w1 ~ N(0, 1/N), w2 ~ N(0, 1/N), "
                         f"No = 1, seed {scalar(data, 'seed')}); {samples_rule(data)} Gaussian "
                         f"inputs; all D eigenvalues by {route_words(scalar(data, 'method'))}."
                         f"{floor_note(data)}")
    return fig


def _summary(data) -> str:
    ns = np.asarray(data["ns"]).tolist()
    return (f"N {ns}: rank {np.asarray(data['rank']).tolist()} vs N(N+3)/2 "
            f"{np.asarray(data['predicted']).tolist()} of D {np.asarray(data['D']).tolist()} "
            f"(min gap {np.min(data['gap_decades']):.1f} decades, {scalar(data, 'method')})")


def _scale(kwargs, factor):
    return {**kwargs, "ns": scaled_sizes(kwargs["ns"], factor)}


#: The registry entry of this figure.
FIGURE = FigureSpec(
    name="quadratic_spectrum",
    data=quadratic_spectrum_data,
    plot=plot_quadratic_spectrum,
    quick=dict(ns=(3, 6, 9, 12)),
    full=dict(ns=(5, 10, 20, 30)),
    scale=_scale,
    summary=_summary,
    claim="numerical rank == N(N+3)/2 for every N",
)
