"""Figure ``erf_spectrum``: erf teachers are full rank, with genuine tiny eigenvalues.

erf has no continuous symmetry, so the Hessian at the optimum has rank D
(THEORY.md c); but its smallest eigenvalues lie many decades below the largest:
1e-6 to 1e-9 at Ni = Nh = N, and 1e-10 to 1e-12 when the hidden layer is wider
than the input (at (Ni, Nh) = (4, 20): median 1e-11 over ten teachers, all within
7e-13..1e-10). eigh of H has round-off errors up to about D * eps of the
largest, only two or three decades below them, so a rank from eigh would sit in a
narrow gap; the svd route resolves eigenvalues to ~1e-30 of the largest. The
claim: every numerical rank (svd route) equals D.
"""
from __future__ import annotations

import numpy as np

from ._plotting import add_caption, scalar
from ._spec import FigureSpec, scaled_size, scaled_sizes
from ._spectra import (floor_note, label_line, plot_spectra, route_words, samples_rule, shape_label,
                       spectrum_key, teacher_spectra)

__all__ = ["erf_spectrum_data", "plot_erf_spectrum", "FIGURE"]


def erf_spectrum_data(ns=(5, 10, 20, 30), wide=((4, 20),), n_candidates=5, method="svd",
                      samples_factor=2.0, extra_samples=20, seed=0, progress=None) -> dict:
    """Spectra of erf teachers: full rank, with tiny genuine eigenvalues.

    One spectrum per size: Ni = Nh = N for each N in ``ns``, then each (Ni, Nh) in
    ``wide`` (a hidden layer wider than the input, where the smallest eigenvalues
    reach 1e-10 to 1e-12 of the largest, THEORY.md c). The smallest eigenvalue
    varies by orders of magnitude between teachers of one size, so each spectrum is
    that of the median lambda_min / lambda_max of ``n_candidates`` random teachers:
    a typical teacher, not an extreme one. The svd route resolves
    eigenvalues down to ~1e-30 of the largest, so these are measured far above its
    round-off (eigh's reaches D * eps, a few decades below them).

    Parameters
    ----------
    ns : sequence of int
        Sizes N with Ni = Nh = N.
    wide : sequence of (int, int)
        Further (Ni, Nh) sizes.
    n_candidates : int
        Teachers drawn per size; the median-conditioned one is shown.
    method : str
        Route of :func:`fasthess.spectrum.eigenvalues`.
    samples_factor, extra_samples : float, int
        P = ceil(samples_factor D) + extra_samples.
    seed : int
        Seeds the teachers and their inputs.
    progress : bool or None
        A tqdm bar over the draws (None: when stderr is a terminal).

    Returns
    -------
    dict
        ``n_in``, ``n_hidden`` (one entry per spectrum: ``ns`` then ``wide``),
        ``eigenvalues_<N>`` or ``eigenvalues_<Ni>x<Nh>`` (ascending, D each),
        ``rank``, ``gap_decades``, ``rtol``, ``D``, ``n_samples``,
        ``candidate_conditions`` (lambda_min / lambda_max of every draw, sizes x
        ``n_candidates``), ``method``, ``samples_factor``, ``extra_samples``,
        ``n_candidates``, ``seed``, ``smallest_relative``
        (smallest / largest eigenvalue per spectrum) and ``claim_holds`` (every
        rank == D).

    Examples
    --------
    >>> from fasthess.figures import erf_spectrum_data
    >>> d = erf_spectrum_data(ns=(2, 3), wide=((2, 4),), n_candidates=3, progress=False)
    >>> d["rank"].tolist() == d["D"].tolist() == [6, 12, 12], bool(d["claim_holds"])
    (True, True)
    """
    shapes = [(int(n), int(n)) for n in ns] + [(int(a), int(b)) for a, b in wide]
    out = teacher_spectra("erf", shapes, method, samples_factor, extra_samples, seed,
                          progress, "erf_spectrum", n_candidates=n_candidates)
    smallest = []
    for ni, nh in shapes:
        ev = out[spectrum_key(ni, nh)]
        smallest.append(ev[0] / ev[-1])
    out.update(smallest_relative=np.array(smallest),
               claim_holds=bool(np.array_equal(out["rank"], out["D"])))
    return out


def plot_erf_spectrum(data, ax=None):
    """Descending eigenvalues per size (log-log): all D above the rank tolerance.

    Parameters
    ----------
    data : mapping
        From :func:`erf_spectrum_data` (or ``numpy.load`` of its file).
    ax : matplotlib Axes, optional
        Draw here; default a new Figure, with a caption saying what was computed.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on (a new one when ``ax`` is None).

    Examples
    --------
    >>> from fasthess.figures import erf_spectrum_data, plot_erf_spectrum
    >>> data = erf_spectrum_data(ns=(2,), wide=((2, 4),), n_candidates=1, progress=False)
    >>> fig = plot_erf_spectrum(data)
    >>> fig.axes[0].get_legend() is not None
    True
    """
    # labels at the ends the legend and the annotation leave free
    fig, ax, owned = plot_spectra(data, ax, r"erf teacher $g(z) = \mathrm{erf}(z/\sqrt{2})$: "
                                            r"full rank, tiny eigenvalues",
                                  tolerance_label_left=False)
    D = np.asarray(data["D"])
    # where eigh's round-off puts zero modes: why the svd route is needed here
    eps = float(np.finfo(np.float64).eps)
    ax.axhline(float(D.max()) * eps, color="k", ls="-.", lw=1.2)
    label_line(ax, float(D.max()) * eps, r"eigh resolution $D\,\epsilon$ (largest $D$)", "k",
               left=True)
    # point at the smallest eigenvalue of all: genuine, below what a 1e-8 cutoff keeps
    smallest = np.asarray(data["smallest_relative"])
    i = int(np.argmin(smallest))
    ni, nh = int(np.asarray(data["n_in"])[i]), int(np.asarray(data["n_hidden"])[i])
    ax.annotate(f"smallest: {smallest[i]:.0e} $\\lambda_{{\\max}}$ at\n"
                f"{shape_label(ni, nh)},\ngenuine: resolved by svd",
                xy=(D[i], smallest[i]), xytext=(0.98, 0.5), textcoords="axes fraction",
                ha="right", va="top", fontsize="small",
                arrowprops=dict(arrowstyle="->", color="0.3", lw=0.8))
    # in the empty band between eigh's resolution and the svd tolerance
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, 0.58), frameon=False, fontsize="small")
    if owned:
        sizes = ", ".join(f"({a}, {b})" for a, b in zip(np.asarray(data["n_in"]).tolist(),
                                                        np.asarray(data["n_hidden"]).tolist()))
        n_cand = scalar(data, "n_candidates")
        chosen = ("one teacher" if n_cand == 1 else
                  f"the teacher with the median λmin/λmax of {n_cand} random draws")
        add_caption(fig, f"Computed: for each (Ni, Nh) = {sizes}, {chosen} (w1 ~ N(0, 1/Ni), "
                         f"w2 ~ N(0, 1/Nh), No = 1, seed {scalar(data, 'seed')}); "
                         f"{samples_rule(data)} Gaussian inputs; all D eigenvalues by "
                         f"{route_words(scalar(data, 'method'))}."
                         f"{floor_note(data)}")
    return fig


def _summary(data) -> str:
    shapes = [f"{a}x{b}" for a, b in zip(np.asarray(data["n_in"]).tolist(),
                                         np.asarray(data["n_hidden"]).tolist())]
    small = ", ".join(f"{v:.1e}" for v in np.asarray(data["smallest_relative"]))
    return (f"Ni x Nh {shapes}: rank {np.asarray(data['rank']).tolist()} vs D "
            f"{np.asarray(data['D']).tolist()}; smallest/largest eigenvalue {small} "
            f"({scalar(data, 'method')})")


def _scale(kwargs, factor):
    return {**kwargs, "ns": scaled_sizes(kwargs["ns"], factor),
            "wide": [(scaled_size(a, factor), scaled_size(b, factor)) for a, b in kwargs["wide"]]}


#: The registry entry of this figure.
FIGURE = FigureSpec(
    name="erf_spectrum",
    data=erf_spectrum_data,
    plot=plot_erf_spectrum,
    quick=dict(ns=(3, 6, 9, 12), wide=((4, 20),)),
    full=dict(ns=(5, 10, 20, 30), wide=((4, 20),)),
    scale=_scale,
    summary=_summary,
    claim="numerical rank (svd route) == D for every size",
)
