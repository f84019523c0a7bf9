"""The paper's figures: for each, a function returning the data and one drawing it.

Each figure is one module holding one registry entry, ``FIGURE``
(:class:`~fasthess.figures._spec.FigureSpec`): its data function
``<name>_data(...) -> dict`` (numpy arrays and scalars only, so
``numpy.savez(path, **data)`` stores it whole), its plot function
``plot_<name>(data, ax=None) -> matplotlib.figure.Figure``, its quick and full
sizes, and the one-line summary of its claim. The data dict always holds
``claim_holds`` (bool): whether the numbers show what the figure claims
(THEORY.md b-d), so a figure that does not is never silent. To add a figure,
write its module and list it in ``_registry.py``.

=====================  ==================================================  =====================
name                   what it shows                                       claim checked
=====================  ==================================================  =====================
linear_density         pooled nonzero eigenvalues of linear teachers at    KS distance to
                       the optimum (whitened data) against                 theory.linear_cdf
                       theory.linear_density                               <= ks_bound
dynamics               GD loss near the optimum of a representative        late slope within 5%
                       teacher against the quadratic model and the         of 2 log(1 - lr
                       slowest mode's rate                                 lambda_min)
quadratic_spectrum     spectrum of z + z^2 teachers, Ni = Nh = N: zero     rank == N(N+3)/2
                       modes and the rank
erf_spectrum           spectrum of erf teachers (svd route): full rank,    rank == D
                       eigenvalues down to 1e-10..1e-11 at Nh > Ni
rank_vs_n              numerical rank against the predicted effective      rank == prediction
                       parameters for five activations as N grows          for every point
population_dynamics    online-learning plateau (erf, K = M = 2): ODE,      ODE plateau; simulation
                       simulation (mean, spread), population GD            within spread of ODE
=====================  ==================================================  =====================

:func:`make_figures` is the library side of ``fasthess figures``. The data
functions need no matplotlib: it is imported inside the plotting functions, which
draw on a :class:`matplotlib.figure.Figure` with the Agg canvas and never touch
pyplot's global backend (so they are safe inside a notebook or a GUI session).

Examples
--------
>>> from fasthess.figures import FIGURE_NAMES, FIGURES
>>> FIGURE_NAMES == tuple(FIGURES)
True
>>> FIGURES["erf_spectrum"].claim
'numerical rank (svd route) == D for every size'
"""
from ._registry import FIGURE_NAMES, FIGURES, figure_spec
from ._runner import make_figure, make_figures
from ._spec import FigureSpec
from .dynamics import dynamics_data, plot_dynamics
from .erf_spectrum import erf_spectrum_data, plot_erf_spectrum
from .linear_density import ks_bound, ks_distance, linear_density_data, plot_linear_density
from .population import plot_population, population_data
from .population_dynamics import plot_population_dynamics, population_dynamics_data
from .quadratic_spectrum import plot_quadratic_spectrum, quadratic_spectrum_data
from .rank_vs_n import (plot_rank_vs_n, plot_rank_vs_n_population, rank_vs_n_data,
                        rank_vs_n_population_data)

__all__ = [
    "FIGURE_NAMES", "FIGURES", "FigureSpec", "figure_spec",
    "linear_density_data", "plot_linear_density",
    "dynamics_data", "plot_dynamics",
    "quadratic_spectrum_data", "plot_quadratic_spectrum",
    "erf_spectrum_data", "plot_erf_spectrum",
    "rank_vs_n_data", "plot_rank_vs_n",
    "population_data", "plot_population",
    "population_dynamics_data", "plot_population_dynamics",
    "rank_vs_n_population_data", "plot_rank_vs_n_population",
    "ks_distance", "ks_bound",
    "make_figure", "make_figures",
]
