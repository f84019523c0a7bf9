"""What one figure is: the registry entry every figure module defines (``FIGURE``).

A :class:`FigureSpec` holds everything the runner needs to make a figure: its data
function, its plot function, its quick and full sizes, how ``scale`` enlarges
them, and the one-line summary of the numbers behind its claim. The claim itself
is computed by the data function (``data["claim_holds"]``) from the numbers it
returns, so the runner never decides whether a figure shows what it says.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FigureSpec", "scaled_size", "scaled_sizes"]


@dataclass(frozen=True)
class FigureSpec:
    """One figure: data, plot, sizes and summary, under one name.

    Parameters
    ----------
    name : str
        The figure's name: its files are ``<name>.npz`` and ``<name>.png`` and
        ``fasthess figures --only <name>`` selects it.
    data : callable
        ``data(seed=..., progress=..., **sizes) -> dict`` of numpy arrays and
        scalars (so ``numpy.savez`` stores it whole), always with the bool
        ``claim_holds``.
    plot : callable
        ``plot(data, ax=None) -> matplotlib.figure.Figure``; accepts what
        ``numpy.load`` returns for the saved data.
    quick, full : mapping
        Keyword arguments of ``data`` for ``--quick`` and for the full run.
    scale : callable
        ``scale(kwargs, factor) -> kwargs``: the sizes multiplied by ``factor``
        (the ``--scale`` option); the identity for ``factor == 1``.
    summary : callable
        ``summary(data) -> str``: one line with the numbers that carry the claim.
    claim : str
        What ``claim_holds`` checks, in words.

    Examples
    --------
    >>> from fasthess.figures import FIGURES
    >>> spec = FIGURES["rank_vs_n"]
    >>> spec.kwargs(quick=True)["ns"]
    [2, 3, 4, 5, 6]
    >>> spec.kwargs(quick=True, scale=2.0)["ns"][-1]
    12
    """

    name: str
    data: Callable[..., dict]
    plot: Callable[..., Any]
    quick: Mapping[str, Any]
    full: Mapping[str, Any]
    scale: Callable[[dict, float], dict]
    summary: Callable[[Mapping], str]
    claim: str = field(default="")

    def kwargs(self, quick: bool = False, scale: float = 1.0) -> dict:
        """Keyword arguments of :attr:`data` at quick or full size, times ``scale``.

        Parameters
        ----------
        quick : bool
            The quick sizes instead of the full ones.
        scale : float
            Size factor, > 0; 1 leaves the sizes as they are.

        Returns
        -------
        dict
            A fresh dict, safe to modify.

        Examples
        --------
        >>> from fasthess.figures import FIGURES
        >>> FIGURES["linear_density"].kwargs(quick=True, scale=0.5)["n_in"]
        10
        """
        base = dict(self.quick if quick else self.full)
        return base if scale == 1.0 else self.scale(base, scale)


def scaled_size(value, factor, minimum=2) -> int:
    """``value * factor`` rounded to an integer, at least ``minimum``.

    Parameters
    ----------
    value : int
        A size.
    factor : float
        The scale factor.
    minimum : int
        The smallest size returned.

    Returns
    -------
    int

    Examples
    --------
    >>> from fasthess.figures._spec import scaled_size
    >>> scaled_size(20, 1.5), scaled_size(3, 0.1)
    (30, 2)
    """
    return max(int(minimum), int(round(value * factor)))


def scaled_sizes(values, factor, minimum=2) -> list:
    """Each size times ``factor`` (see :func:`scaled_size`), sorted, each once.

    Parameters
    ----------
    values : iterable of int
        Sizes.
    factor : float
        The scale factor.
    minimum : int
        The smallest size returned.

    Returns
    -------
    list of int

    Examples
    --------
    >>> from fasthess.figures._spec import scaled_sizes
    >>> scaled_sizes([2, 3, 4, 6], 0.5)
    [2, 3]
    """
    return sorted({scaled_size(v, factor, minimum) for v in values})

