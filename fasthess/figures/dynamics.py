"""Figure ``dynamics``: gradient descent near the optimum follows the Hessian's spectrum.

Near the teacher, GD with step eta gives L_t = 1/2 sum_i lambda_i c_i^2
(1 - eta lambda_i)^(2t) (THEORY.md d): the quadratic model. Once the slowest
nonzero mode dominates, log L_t falls by 2 log(1 - eta lambda_min) per step. The
claim: the late slope of the measured GD loss is within 5% of that rate.

The teacher is a soft committee machine, the shape of the teacher-student
dynamics literature (wide input, a few hidden units), at D ~ 100-200 like the
spectrum figures: (Ni, Nh) = (40, 4). It is the median-conditioned of a few random
draws (median lambda_min / lambda_max), a typical teacher rather than a fast one.
Not Ni = Nh: there erf's lambda_min / lambda_max is ~1e-6 at every N (measured for
N = 3..10, nine teachers each), so the slowest mode would need millions of steps
and would come to dominate only below the float64 round-off floor of the loss.

The late slope is visible only if the slowest mode comes to dominate the loss
before the loss reaches ``_config.FIG_LOSS_FLOOR``. A random initial displacement with
little weight on that mode, next to a mode a little faster, can delay this past
the floor; the run then has no fit window and reports the claim as not met. With
the default sizes the claim held for every seed tried: 40 of 40 quick
((Ni, Nh) = (10, 2)) and 12 of 12 full ((40, 4)); at (20, 2) it failed for 4 of 30.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _config

from .._io import progress as progress_bar
from ..data import gaussian_inputs
from ..assembly import hessian
from ..dynamics import gradient_descent, perturb
from ..quadratic_model import decay_rate, predicted_loss
from ..network import TwoLayerNet
from ..rank import numerical_rank
from ._plotting import OKABE_ITO, add_caption, new_figure, scalar
from ._spec import FigureSpec, scaled_size
from ._spectra import samples_for

__all__ = ["dynamics_data", "plot_dynamics", "FIGURE"]



def _nonzero_eigenvalues(H):
    """Eigenvalues (ascending), eigenvectors, and the mask of nonzero modes of H."""
    lam, V = np.linalg.eigh(H)
    return lam, V, np.abs(lam) > numerical_rank(lam, warn=False).tolerance


def _plan(teacher, X, student, lr, rate, slope_rtol, n_nats, max_steps):
    """(model loss, start of the fit window or None, n_steps) from the quadratic model.

    The fit window starts at the first step where the model's slope per step is
    within ``slope_rtol`` of ``rate`` (log L_t is convex in t, so the slope only
    approaches the rate from below and the first such step is the only crossing)
    and lasts ``n_nats / |rate|`` steps; the run ends there, or earlier where the
    model reaches ``_config.FIG_LOSS_FLOOR``. The horizon doubles until the plan is
    complete, up to ``max_steps``.
    """
    width = int(math.ceil(n_nats / -rate))
    horizon = min(_config.FIG_FIRST_HORIZON, max_steps)
    while True:
        model = predicted_loss(teacher, X, student, lr, horizon)
        below = np.flatnonzero(model <= _config.FIG_LOSS_FLOOR)
        end_floor = int(below[0]) if below.size else None
        above = model[:end_floor] if end_floor is not None else model
        slope = np.diff(np.log(above))  # above the floor: every entry > 0
        settled = np.flatnonzero(slope / rate <= 1.0 + slope_rtol)
        start = int(settled[0]) if settled.size else None
        if end_floor is not None:  # stop at the last step above the floor, or earlier
            if end_floor == 0:
                raise ValueError(
                    f"perturbation: the initial loss {model[0]:.3g} is already below the "
                    f"loss floor {_config.FIG_LOSS_FLOOR:g}; use a larger perturbation")
            last = end_floor - 1
            return model, start, last if start is None else min(last, start + width)
        if start is not None and start + width <= horizon:
            return model, start, start + width
        if horizon >= max_steps:
            raise RuntimeError(
                f"dynamics: the slowest mode of this teacher needs more than max_steps = "
                f"{max_steps} steps to dominate and decay by e^-{n_nats:g} (rate {rate:.3g} "
                f"per step); raise max_steps")
        horizon = min(2 * horizon, max_steps)


def dynamics_data(activation="erf", n_in=40, n_hidden=4, samples_factor=2.0, extra_samples=20,
                  perturbation=1e-4, n_candidates=9, slope_rtol=0.02, n_nats=4.0,
                  max_steps=2_000_000, seed=0, progress=None) -> dict:
    """GD from a perturbed teacher against the quadratic model and its slowest mode.

    Inputs X (P = ceil(samples_factor D) + extra_samples Gaussian samples) and
    ``n_candidates`` teachers are drawn; the teacher used is the one with the
    median lambda_min / lambda_max (smallest nonzero over largest Hessian
    eigenvalue): a representative teacher, not a selected fast one. The student is
    ``perturb(teacher, perturbation)`` and GD runs with lr = 1 / lambda_max.
    :func:`fasthess.quadratic_model.decay_rate` gives the late slope of log L per step,
    2 log(1 - lr lambda_min) (THEORY.md d).

    The run length comes from the quadratic model
    (:func:`fasthess.quadratic_model.predicted_loss`): the fit window starts where the
    model's slope is within ``slope_rtol`` of that rate (the slowest mode, or a
    cluster of modes as slow, dominates) and lasts ``n_nats / |rate|`` steps; the
    run stops there, or earlier where the model reaches ``_config.FIG_LOSS_FLOOR``, far
    above float round-off. The measured slope is a least-squares fit of log L of
    GD over the window.

    Parameters
    ----------
    activation : str or Activation
        The teacher's activation (default erf).
    n_in, n_hidden : int
        Ni, Nh (No = 1).
    samples_factor, extra_samples : float, int
        P = ceil(samples_factor D) + extra_samples.
    perturbation : float
        Standard deviation of the initial displacement, per parameter.
    n_candidates : int
        Teachers drawn; the median-conditioned one is used.
    slope_rtol : float
        The fit window starts where the model's slope is within this of the rate.
    n_nats : float
        Length of the fit window: the slowest mode falls by e^-n_nats over it.
    max_steps : int
        Longest run allowed.
    seed : int
        Seeds the inputs, the candidate teachers and the displacement.
    progress : bool or None
        A tqdm bar over the candidate teachers.

    Returns
    -------
    dict
        ``steps``, ``loss`` (GD, recorded every ``steps[1]`` steps), ``predicted``
        (the quadratic model at ``steps``), ``decay_rate``, ``measured_slope``,
        ``slope_rel_error``, ``fit_start``, ``fit_end`` (steps; -1 when the
        model's slope never settles above the floor), ``lr``, ``lambda_min``,
        ``lambda_max``, ``condition`` (their ratio), ``candidate_conditions``
        (lambda_min / lambda_max of every candidate, in draw order),
        ``chosen_candidate`` (its index there), ``model_max_rel_deviation``
        (max |L_GD / L_model - 1| over the records), ``model_slope_ratio_end``
        (the model's slope per step over the rate, at the last step: 1 once the
        slowest mode alone decays), ``n_steps``, ``diverged``,
        ``activation`` (name), ``n_in``, ``n_hidden``, ``n_samples``,
        ``perturbation``, ``loss_floor``, ``slope_rtol``, ``n_nats``,
        ``teacher_w1``, ``teacher_w2``, ``inputs`` (X), ``delta0`` (student minus
        teacher parameters, flat), ``seed``, ``claim_holds``
        (``slope_rel_error <= 0.05``, a non-empty fit window, no divergence).

    Raises
    ------
    RuntimeError
        If the run would need more than ``max_steps`` steps.
    ValueError
        If ``perturbation`` is so small that the initial loss is below
        ``_config.FIG_LOSS_FLOOR``.

    Examples
    --------
    >>> from fasthess.figures import dynamics_data
    >>> d = dynamics_data(n_in=6, n_hidden=2, n_candidates=3, progress=False)
    >>> bool(d["claim_holds"]), bool(d["slope_rel_error"] < 0.05)
    (True, True)
    """
    rng = np.random.default_rng(seed)
    n_params = n_hidden * (n_in + 1)
    P = samples_for(n_params, samples_factor, extra_samples)
    X = gaussian_inputs(P, n_in, rng=rng)
    teachers, conditions = [], []
    for _ in progress_bar(range(n_candidates), n_candidates, "dynamics", progress,
                          leave=False):
        teacher = TwoLayerNet.random(n_in, n_hidden, activation=activation, rng=rng)
        lam, _, nonzero = _nonzero_eigenvalues(hessian(teacher, X))
        teachers.append(teacher)
        conditions.append(lam[nonzero][0] / lam[-1])
    chosen = int(np.argsort(conditions, kind="stable")[len(conditions) // 2])
    teacher = teachers[chosen]
    lam, _, nonzero = _nonzero_eigenvalues(hessian(teacher, X))
    lr = 1.0 / lam[-1]
    rate = decay_rate(teacher, X, lr)
    student = perturb(teacher, perturbation, rng=rng)
    model, start, n_steps = _plan(teacher, X, student, lr, rate, slope_rtol, n_nats, max_steps)
    res = gradient_descent(student, X, lr, n_steps, teacher=teacher,
                           record_every=max(1, n_steps // _config.FIG_GD_RECORDS))
    predicted = model[res.steps]
    window = res.steps >= start if start is not None else np.zeros(res.steps.size, bool)
    if np.count_nonzero(window) >= 4 and np.all(res.loss[window] > 0):
        slope = float(np.polyfit(res.steps[window], np.log(res.loss[window]), 1)[0])
        rel = abs(slope / rate - 1.0)
        fit_start, fit_end = int(res.steps[window][0]), int(res.steps[-1])
    else:  # the model's slope settles only below the floor: nothing to fit
        slope, rel, fit_start, fit_end = float("nan"), float("inf"), -1, -1
    deviation = float(np.max(np.abs(res.loss / predicted - 1.0)))
    # how far the model's own slope is from the slowest rate where the run ends
    end_ratio = float(np.log(model[n_steps] / model[n_steps - 1]) / rate)
    return {
        "steps": res.steps, "loss": res.loss, "predicted": predicted,
        "decay_rate": float(rate), "measured_slope": slope, "slope_rel_error": float(rel),
        "fit_start": fit_start, "fit_end": fit_end, "lr": float(lr),
        "lambda_min": float(lam[nonzero][0]), "lambda_max": float(lam[-1]),
        "condition": float(conditions[chosen]),
        "candidate_conditions": np.array(conditions), "chosen_candidate": chosen,
        "model_max_rel_deviation": deviation, "model_slope_ratio_end": end_ratio,
        "n_steps": int(n_steps), "diverged": bool(res.diverged),
        "activation": str(teacher.activation.name), "n_in": int(n_in),
        "n_hidden": int(n_hidden), "n_samples": int(P), "perturbation": float(perturbation),
        "loss_floor": _config.FIG_LOSS_FLOOR, "slope_rtol": float(slope_rtol),
        "n_nats": float(n_nats),
        "teacher_w1": teacher.w1, "teacher_w2": teacher.w2, "inputs": X,
        "delta0": student.parameters() - teacher.parameters(), "seed": int(seed),
        "claim_holds": bool(rel <= _config.FIG_SLOPE_RTOL and fit_start >= 0 and not res.diverged),
    }


def plot_dynamics(data, ax=None):
    """Loss against step (log scale): GD, the quadratic model, the predicted late slope.

    Parameters
    ----------
    data : mapping
        From :func:`dynamics_data` (or ``numpy.load`` of its saved file).
    ax : matplotlib Axes, optional
        Draw here; default a new Figure, with a caption saying what was computed.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on (a new one when ``ax`` is None).

    Examples
    --------
    >>> from fasthess.figures import dynamics_data, plot_dynamics
    >>> data = dynamics_data(n_in=6, n_hidden=2, n_candidates=1, progress=False)
    >>> fig = plot_dynamics(data)
    >>> fig.axes[0].get_legend() is not None
    True
    """
    fig, ax, owned = new_figure(ax)
    steps = np.asarray(data["steps"])
    loss = np.asarray(data["loss"])
    rate = scalar(data, "decay_rate")
    start, end = scalar(data, "fit_start"), scalar(data, "fit_end")
    ax.plot(steps, loss, color=OKABE_ITO["blue"], lw=3, label="gradient descent (measured)")
    ax.plot(steps, data["predicted"], color=OKABE_ITO["orange"], ls="--", lw=1.5,
            label=r"quadratic model $\frac{1}{2}\sum_i \lambda_i c_i^2 (1-\eta\lambda_i)^{2t}$")
    if start >= 0:
        ax.axvspan(start, end, color="0.9", zorder=0,
                   label=f"fit window: measured slope {scalar(data, 'measured_slope'):.4g} "
                         f"per step")
        # the predicted late slope, through GD's last point
        t = np.linspace(max(0.0, start - 0.5 * (end - start)), end, 50)
        ax.plot(t, loss[-1] * np.exp(rate * (t - end)), color="k", ls=":", lw=2,
                label=r"predicted slope $2\,\log(1-\eta\lambda_{\min})$ = " f"{rate:.4g} per step")
    ax.set_yscale("log")
    ax.set_xlim(0, steps[-1])
    ax.set_ylim(0.2 * float(np.min(loss)), 5 * float(np.max(loss)))
    ax.set_xlabel(r"GD step $t$  (learning rate $\eta = 1/\lambda_{\max}$)")
    ax.set_ylabel(r"training loss $L_t$")
    ni, nh, P = scalar(data, "n_in"), scalar(data, "n_hidden"), scalar(data, "n_samples")
    ax.set_title(f"{scalar(data, 'activation')} teacher, $N_i$ = {ni}, $N_h$ = {nh}, "
                 f"$N_o$ = 1, $P$ = {P}:\n"
                 f"gradient descent near the optimum vs the Hessian's prediction",
                 fontsize="medium")
    # opaque: the legend may sit on the shaded window, whose swatch must show
    ax.legend(loc="upper right", fontsize="small", framealpha=1.0, edgecolor="none")
    if owned:
        n_cand = np.asarray(data["candidate_conditions"]).size
        add_caption(fig, (
            f"Computed: the teacher is the median λmin/λmax ({scalar(data, 'condition'):.1e}) "
            f"of {n_cand} random teachers (w1 ~ N(0, 1/Ni), w2 ~ N(0, 1/Nh), seed "
            f"{scalar(data, 'seed')}), on P = {P} Gaussian inputs; student = teacher + "
            f"{scalar(data, 'perturbation'):g}·N(0, I); full-batch GD, η = 1/λmax, "
            f"{scalar(data, 'n_steps'):,} steps. Fit window: from where the model's slope is "
            f"within {100 * scalar(data, 'slope_rtol'):g}% of its asymptote until the slowest "
            f"mode has fallen by e^-{scalar(data, 'n_nats'):g}; every run stops before the "
            f"model loss reaches {scalar(data, 'loss_floor'):.0e}, above the float64 "
            f"round-off floor. Late slope error {100 * scalar(data, 'slope_rel_error'):.2g}%; "
            f"GD vs quadratic model: max deviation "
            f"{100 * scalar(data, 'model_max_rel_deviation'):.2g}%."))
    return fig


def _summary(data) -> str:
    if scalar(data, "fit_start") < 0:
        return (f"no late window above the loss floor {scalar(data, 'loss_floor'):.0e}: "
                f"there the quadratic model still decays "
                f"{100 * (scalar(data, 'model_slope_ratio_end') - 1):.0f}% faster than "
                f"2 log(1 - lr lambda_min) = {scalar(data, 'decay_rate'):.5g} per step (the "
                f"slowest mode carries too little of the initial displacement); try another "
                f"seed ({scalar(data, 'n_steps')} steps, GD vs quadratic model within "
                f"{scalar(data, 'model_max_rel_deviation'):.1e})")
    return (f"late slope {scalar(data, 'measured_slope'):.5g} vs 2 log(1 - lr lambda_min) "
            f"{scalar(data, 'decay_rate'):.5g} per step (rel. error "
            f"{scalar(data, 'slope_rel_error'):.1e}; {scalar(data, 'n_steps')} steps, lr "
            f"{scalar(data, 'lr'):.3g}, lambda_min/lambda_max {scalar(data, 'condition'):.1e}, "
            f"the median of {np.asarray(data['candidate_conditions']).size} teachers; GD vs "
            f"quadratic model within {scalar(data, 'model_max_rel_deviation'):.1e})")


def _scale(kwargs, factor):
    return {**kwargs, "n_in": scaled_size(kwargs["n_in"], factor),
            "n_hidden": scaled_size(kwargs["n_hidden"], factor, minimum=1)}


#: The registry entry of this figure.
FIGURE = FigureSpec(
    name="dynamics",
    data=dynamics_data,
    plot=plot_dynamics,
    quick=dict(n_in=10, n_hidden=2),
    full=dict(n_in=40, n_hidden=4),
    scale=_scale,
    summary=_summary,
    claim="late slope of the GD loss within 5% of 2 log(1 - lr lambda_min)",
)
