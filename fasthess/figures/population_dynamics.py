"""Figure ``population_dynamics``: the plateau of online learning, from the ODE, the
simulation and exact population gradient descent (THEORY.md g).

A soft committee machine (erf, K = M = 2, second layers fixed at 1, train="w1") learns
a teacher with orthonormal rows. The student's two units start nearly identical
(w_j = v + eps z_j): the dynamics first reach the symmetric fixed point, where both
units hold the same mixture of the teacher's, and stay there (the plateau) until the
small asymmetry grows and the units specialise. Shown: the generalisation error
against alpha = steps / Ni from the Saad-Solla ODEs (:func:`fasthess.online_sgd_ode`),
from the simulation at ``n_in`` (mean and spread of the seeds,
:func:`fasthess.online_sgd`), and from exact gradient descent on the population loss
(:func:`fasthess.gradient_descent` with :data:`fasthess.POPULATION`, the lr -> 0 limit
of the ODE, plotted at alpha = step * gd_lr / lr). The plateau's height is the error of
the symmetric fixed point (the ODE from exactly identical units); its length is the
span of alpha over which the ODE's error stays within ``plateau_rtol`` of that height.

The claim, from the data: the ODE has a plateau (length > 0) at the symmetric height,
and the mean of the seeds lies within 3 seed standard deviations, plus the bias of a
finite input dimension, ``bias_per_inv_sqrt_ni / sqrt(n_in)`` of the ODE value, of the
ODE at every record. That bias is systematic (seeds agree with each other far better
than with the ODE: the fluctuations, O(Ni^-1/2) per unit alpha, pile up in the slow
directions of the plateau and shift the mean loss): measured up to 3% at Ni = 1000 and
1.2% at Ni = 10^4 (lr = 1, two seeds agreeing to 5e-4), so bias_per_inv_sqrt_ni = 1.5
allows 4.7% and 1.5%.

The smallest eigenvalue of the population Hessian (both layers, in the span of the rows)
at points of the GD trajectory is drawn on the right axis
(:func:`smallest_population_eigenvalue`): negative on the plateau (a saddle), positive
at the optimum reached at the end. Where the off-optimum population Hessian is not
available it is NaN and the caption says so; where it is, the claim also requires a
negative value at some interior point of the trajectory (the plateau) and a positive
one at its end.
"""
from __future__ import annotations

import math

import numpy as np

from .._io import progress as progress_bar
from ..data import POPULATION
from ..dynamics import gradient_descent
from ..network import TwoLayerNet
from ..online import online_sgd, online_sgd_ode
from ..order_parameters import span_basis
from ..spectrum import eigenvalues
from ._plotting import OKABE_ITO, add_caption, new_figure, scalar
from ._spec import FigureSpec, scaled_size

__all__ = ["population_dynamics_data", "plot_population_dynamics",
           "smallest_population_eigenvalue", "FIGURE"]


def smallest_population_eigenvalue(student, teacher) -> float:
    """The smallest eigenvalue of the population Hessian at ``student`` (off the optimum).

    The hook for the off-optimum population Hessian: computed in the span of the W1
    rows (THEORY.md g; the span block H_S holds the saddle's direction), through
    :func:`fasthess.eigenvalues` with :data:`fasthess.POPULATION`. Returns NaN while
    that raises NotImplementedError (an activation without a population Hessian
    off the optimum).

    Parameters
    ----------
    student, teacher : TwoLayerNet

    Returns
    -------
    float
    """
    basis = span_basis(student.w1, teacher.w1)
    s = TwoLayerNet(np.asarray(student.w1, float) @ basis, student.w2, student.activation)
    t = TwoLayerNet(np.asarray(teacher.w1, float) @ basis, teacher.w2, teacher.activation)
    try:
        ev = eigenvalues(s, POPULATION, teacher=t)
    except NotImplementedError:
        return float("nan")
    return float(np.min(np.asarray(ev, dtype=np.float64)))


def _problem(n_in, asymmetry, scale, seed, n_hidden=2):
    rng = np.random.default_rng(seed)
    k = n_hidden
    rows = np.linalg.qr(rng.standard_normal((n_in, k)))[0].T  # T = I
    teacher = TwoLayerNet(rows, np.ones((1, k)), "erf")
    v = scale * rng.standard_normal(n_in) / math.sqrt(n_in)
    w1 = v + asymmetry * rng.standard_normal((k, n_in)) / math.sqrt(n_in)
    student = TwoLayerNet(w1, np.ones((1, k)), "erf")
    symmetric = TwoLayerNet(np.tile(v, (k, 1)), np.ones((1, k)), "erf")
    return teacher, student, symmetric


def population_dynamics_data(n_in=10_000, n_seeds=4, alpha_max=300.0, lr=1.0, asymmetry=0.01,
                             scale=0.3, gd_lr=0.5, n_records=150, n_hessian=12,
                             plateau_rtol=0.05, bias_per_inv_sqrt_ni=1.5, n_hidden=2, seed=0,
                             progress=None) -> dict:
    """The plateau of online learning: ODE, simulation and population GD (see module).

    Parameters
    ----------
    n_in : int
        Input dimension of the simulation.
    n_seeds : int
        Simulation runs (seeds ``seed + 1 ...``).
    alpha_max : float
        Last time, in alpha = steps / n_in.
    lr : float
        Online learning rate (first layer).
    asymmetry, scale : float
        The student: w_j = scale v + asymmetry z_j, v, z_j ~ N(0, I / n_in).
    gd_lr : float
        Step of population gradient descent.
    n_records : int
        Records of the simulation and the ODE.
    n_hessian : int
        Points along the GD trajectory where the Hessian hook is called.
    plateau_rtol : float
        The plateau: where the ODE's error is within this of the symmetric height.
    bias_per_inv_sqrt_ni : float
        The claim's allowance for the finite-Ni bias (see the module docstring).
    n_hidden : int
        K = M, the hidden units of student and teacher (2 or 3 in the literature).
    seed : int
    progress : bool or None

    Returns
    -------
    dict

    Examples
    --------
    >>> from fasthess.figures.population_dynamics import population_dynamics_data
    >>> d = population_dynamics_data(n_in=300, n_seeds=2, alpha_max=40.0, n_records=20,
    ...                              n_hessian=2, progress=False)
    >>> d["sim_loss"].shape
    (2, 21)
    """
    teacher, student, symmetric = _problem(n_in, asymmetry, scale, seed, n_hidden)
    steps = int(round(alpha_max * n_in))
    record_every = max(1, steps // n_records)
    runs = []
    for k in progress_bar(range(n_seeds), desc="population_dynamics", enabled=progress,
                          unit="seed"):
        runs.append(online_sgd(student, steps, teacher=teacher, lr=lr, train="w1",
                               record_every=record_every, rng=seed + 1 + k))
    alpha = runs[0].alpha
    sim = np.array([r.loss for r in runs])
    ode = online_sgd_ode(student, alpha[-1], teacher=teacher, lr=lr, train="w1",
                         alpha_eval=alpha)
    sym = online_sgd_ode(symmetric, alpha[-1], teacher=teacher, lr=lr, train="w1",
                         alpha_eval=alpha)
    height = float(sym.loss[-1])
    on = np.flatnonzero(np.abs(ode.loss - height) <= plateau_rtol * height)
    start, end = (float(alpha[on[0]]), float(alpha[on[-1]])) if on.size else (math.nan,) * 2
    gd_steps = int(round(alpha[-1] * lr / gd_lr))
    gd = gradient_descent(student, POPULATION, gd_lr, gd_steps, teacher=teacher, train="w1",
                          record_every=max(1, gd_steps // n_records))
    # the Hessian hook at points along the GD trajectory
    marks = np.unique(np.linspace(0, gd_steps, n_hessian).astype(int))
    hess, current, done = [], student, 0
    for m in marks:
        if m > done:
            current = gradient_descent(current, POPULATION, gd_lr, int(m - done),
                                       teacher=teacher, train="w1").student
            done = int(m)
        hess.append(smallest_population_eigenvalue(current, teacher))
    mean = sim.mean(axis=0)
    spread = sim.std(axis=0, ddof=1) if n_seeds > 1 else np.zeros_like(mean)
    within = bool(np.all(np.abs(mean - ode.loss)
                        <= 3 * spread + bias_per_inv_sqrt_ni / math.sqrt(n_in) * ode.loss))
    hess = np.array(hess)
    h_alpha = marks * gd_lr / lr
    available = bool(np.all(np.isfinite(hess)))
    saddle = bool(available and np.any(hess[1:-1] < 0) and hess[-1] > 0)
    return {
        "alpha": alpha, "sim_loss": sim, "sim_mean": mean, "sim_spread": spread,
        "ode_loss": ode.loss, "symmetric_loss": sym.loss, "plateau_height": height,
        "plateau_start": start, "plateau_end": end,
        "plateau_length": end - start if on.size else 0.0,
        "gd_alpha": gd.steps * gd_lr / lr, "gd_loss": gd.loss,
        "hessian_alpha": h_alpha, "hessian_min_eigenvalue": hess,
        "hessian_available": available, "hessian_saddle_then_minimum": saddle,
        "n_in": int(n_in), "n_hidden": int(n_hidden), "n_seeds": int(n_seeds), "lr": float(lr),
        "gd_lr": float(gd_lr),
        "asymmetry": float(asymmetry), "scale": float(scale), "seed": int(seed),
        "plateau_rtol": float(plateau_rtol), "ode_method": ode.integrator,
        "sim_within_spread": within,
        "claim_holds": bool(on.size > 0 and end > start and within
                            and (saddle or not available)),
    }


def plot_population_dynamics(data, ax=None):
    """Generalisation error against alpha: ODE, simulation (mean, spread), population GD.

    Parameters
    ----------
    data : mapping
        From :func:`population_dynamics_data` (or ``numpy.load`` of its file).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax, owned = new_figure(ax)
    alpha = np.asarray(data["alpha"])
    mean, spread = np.asarray(data["sim_mean"]), np.asarray(data["sim_spread"])
    ax.fill_between(alpha, np.maximum(mean - spread, 1e-12), mean + spread,
                    color=OKABE_ITO["sky_blue"], alpha=0.5, lw=0,
                    label=f"simulation, $N_i$ = {scalar(data, 'n_in')}: mean ± sd of "
                          f"{scalar(data, 'n_seeds')} seeds")
    ax.plot(alpha, mean, color=OKABE_ITO["blue"], lw=1.5)
    ax.plot(alpha, data["ode_loss"], color="k", lw=2, ls="--", label="Saad-Solla ODE")
    ax.plot(data["gd_alpha"], data["gd_loss"], color=OKABE_ITO["orange"], lw=1.5,
            label=r"population GD ($\eta \to 0$ limit)")
    ax.axhline(scalar(data, "plateau_height"), color="0.5", lw=1, ls=":",
               label=f"symmetric fixed point ({scalar(data, 'plateau_height'):.4f})")
    if scalar(data, "plateau_length") > 0:
        ax.axvspan(scalar(data, "plateau_start"), scalar(data, "plateau_end"), color="0.92",
                   zorder=0, label=f"plateau: length {scalar(data, 'plateau_length'):.0f}")
    ax.set_yscale("log")
    ax.set_ylim(1e-6, 1.0)
    ax.set_xlabel(r"$\alpha$ = steps / $N_i$")
    ax.set_ylabel("generalisation error")
    k = scalar(data, "n_hidden") if "n_hidden" in data else 2
    ax.set_title(f"erf soft committee machine, K = M = {k}: the plateau", fontsize="medium")
    ax.legend(loc="lower left", fontsize="small", framealpha=1.0, edgecolor="none")
    hess = np.asarray(data["hessian_min_eigenvalue"], dtype=float)
    if bool(data["hessian_available"]):
        right = ax.twinx()
        right.plot(data["hessian_alpha"], hess, "o:", color=OKABE_ITO["vermillion"], ms=4)
        right.axhline(0.0, color=OKABE_ITO["vermillion"], lw=0.8, alpha=0.5)
        right.set_ylabel(r"smallest eigenvalue of $H_\infty$ along population GD",
                         color=OKABE_ITO["vermillion"], fontsize="small")
    if owned:
        hess = ("smallest population-Hessian eigenvalue along GD: "
                + (", ".join(f"{v:.2g}" for v in np.asarray(data["hessian_min_eigenvalue"]))
                   if bool(data["hessian_available"]) else
                   "not available (no off-optimum population Hessian for this activation)"))
        add_caption(fig, (
            f"Computed: teacher rows orthonormal, second layers 1 (train w1 only), student "
            f"w_j = v + {scalar(data, 'asymmetry'):g} z_j, |v| ~ {scalar(data, 'scale'):g}; "
            f"lr = {scalar(data, 'lr'):g}; ODE by {scalar(data, 'ode_method')}; population "
            f"GD at step {scalar(data, 'gd_lr'):g} shown at alpha = step × (GD step) / lr; "
            f"seed {scalar(data, 'seed')}. {hess}."))
    return fig


def _summary(data) -> str:
    return (f"plateau at eg = {scalar(data, 'plateau_height'):.5f} for alpha "
            f"{scalar(data, 'plateau_start'):.3g} .. {scalar(data, 'plateau_end'):.3g} (ODE); "
            f"simulation at Ni = {scalar(data, 'n_in')} within spread of the ODE: "
            f"{bool(data['sim_within_spread'])}")


def _scale(kwargs, factor):
    return {**kwargs, "n_in": scaled_size(kwargs["n_in"], factor, minimum=50)}


#: The registry entry of this figure.
FIGURE = FigureSpec(
    name="population_dynamics",
    data=population_dynamics_data,
    plot=plot_population_dynamics,
    quick=dict(n_in=1000, n_seeds=3, alpha_max=200.0),
    full=dict(n_in=10_000, n_seeds=4, alpha_max=300.0),
    scale=_scale,
    summary=_summary,
    claim="the ODE has a plateau at the symmetric fixed point, and the simulation's mean "
          "is within 3 seed sd (+ 1.5/sqrt(Ni) relative) of the ODE at every record; the "
          "smallest population-Hessian eigenvalue is negative on the way, positive at the end",
)
