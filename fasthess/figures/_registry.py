"""The registry: every figure, in the order ``fasthess figures`` makes them.

Each figure module defines one :class:`~fasthess.figures._spec.FigureSpec` named
``FIGURE``; listing the module here is all it takes to add a figure to the
command, its ``--only`` choices and :data:`FIGURE_NAMES`.
"""
from __future__ import annotations

from . import (dynamics, erf_spectrum, linear_density, population, population_dynamics,
               quadratic_spectrum, rank_vs_n)
from ._spec import FigureSpec

__all__ = ["FIGURES", "FIGURE_NAMES", "figure_spec", "resolve_names"]

#: name -> :class:`~fasthess.figures._spec.FigureSpec`, in the order they are made.
FIGURES: dict[str, FigureSpec] = {module.FIGURE.name: module.FIGURE for module in (
    linear_density, dynamics, quadratic_spectrum, erf_spectrum, rank_vs_n, population)}
FIGURES[rank_vs_n.POPULATION_FIGURE.name] = rank_vs_n.POPULATION_FIGURE  # H_inf variant
FIGURES[population_dynamics.FIGURE.name] = population_dynamics.FIGURE

#: The figure names, in the order :func:`~fasthess.figures.make_figures` makes them.
FIGURE_NAMES = tuple(FIGURES)


def figure_spec(name) -> FigureSpec:
    """The registry entry called ``name``.

    Parameters
    ----------
    name : str
        One of :data:`FIGURE_NAMES`.

    Returns
    -------
    FigureSpec
        Its registry entry.

    Raises
    ------
    ValueError
        If no figure has that name (the message lists the valid names).

    Examples
    --------
    >>> from fasthess.figures import figure_spec
    >>> figure_spec("dynamics").name
    'dynamics'
    """
    return FIGURES[resolve_names([name])[0]]


def resolve_names(only) -> list:
    """The figure names to make: all (``only`` empty or None) or ``only``, each once.

    Parameters
    ----------
    only : iterable of str or None

    Returns
    -------
    list of str
        In the order given (the registry's order when ``only`` is empty).

    Raises
    ------
    ValueError
        If a name is unknown; checked before any work, the message lists the
        valid names.
    """
    if not only:
        return list(FIGURES)
    only = list(only)
    unknown = [n for n in only if n not in FIGURES]
    if unknown:
        raise ValueError(f"only: unknown figure name{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(map(repr, unknown))}; valid names: "
                         f"{', '.join(FIGURES)}")
    return list(dict.fromkeys(only))  # the user's order, each once
