"""Plotting helpers shared by the figures: one palette, one canvas, one caption.

matplotlib is imported inside the functions, so the data functions (and importing
:mod:`fasthess.figures`) need no matplotlib. Figures are drawn on a
:class:`matplotlib.figure.Figure` with the Agg canvas and never touch pyplot's
global state, so they are safe inside a notebook or a GUI session.
"""
from __future__ import annotations

import textwrap

import numpy as np

from .. import _config

__all__ = ["OKABE_ITO", "SERIES_COLORS", "REFERENCE_COLOR", "new_figure", "scalar",
           "add_caption", "save_png"]

#: The Okabe-Ito palette (Okabe & Ito 2008), distinguishable with every common
#: colour-vision deficiency and in greyscale by lightness.
OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9",
    "bluish_green": "#009E73", "yellow": "#F0E442", "blue": "#0072B2",
    "vermillion": "#D55E00", "reddish_purple": "#CC79A7",
}
#: Colours of successive data series (sizes, activations), in this order; yellow
#: last: it is faint on white.
SERIES_COLORS = tuple(OKABE_ITO[k] for k in ("blue", "orange", "bluish_green", "vermillion",
                                             "reddish_purple", "sky_blue", "yellow"))
#: Reference lines (bounds, tolerances) are grey, never a series colour.
REFERENCE_COLOR = "0.35"


def new_figure(ax=None, figsize=(6.4, 4.8)):
    """(figure, axes, owned): ``ax``'s figure, or a new Agg-backed Figure (no pyplot).

    Parameters
    ----------
    ax : matplotlib Axes, optional
        Draw here; the caller owns its figure (``owned`` is False).
    figsize : (float, float)
        Inches, for a new figure.

    Returns
    -------
    (matplotlib.figure.Figure, matplotlib.axes.Axes, bool)
    """
    if ax is not None:
        return ax.figure, ax, False
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(), True


def scalar(data, key):
    """``data[key]`` as a Python scalar (``numpy.load`` gives 0-d arrays).

    Parameters
    ----------
    data : mapping
    key : str

    Returns
    -------
    int, float, bool or str
    """
    return np.asarray(data[key]).item()


def add_caption(fig, text, width=None):
    """Write ``text`` under the axes of ``fig``, wrapped, in small type.

    The caption says what was computed (sizes, P, seeds), so a PNG separated
    from its paper or its data file still documents itself. It is the figure's
    ``supxlabel``, so the constrained layout makes room for it.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure to caption.
    text : str
        What was computed.
    width : int, optional
        Characters per line; default ``_config.FIG_CAPTION_WIDTH``.

    Returns
    -------
    matplotlib.text.Text
    """
    if width is None:
        width = _config.FIG_CAPTION_WIDTH
    wrapped = "\n".join(textwrap.wrap(text, width=width))
    return fig.supxlabel(wrapped, x=0.01, ha="left", fontsize="small", color="0.2",
                         linespacing=1.3)


def save_png(fig, file):
    """Write ``fig`` as PNG to the open binary ``file`` at ``_config.FIG_DPI``.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    file : binary file object
    """
    fig.savefig(file, format="png", dpi=_config.FIG_DPI)
