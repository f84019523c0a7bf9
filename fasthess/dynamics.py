"""Gradient descent: on samples (one compiled loop), or exactly on the population loss in
the span of the first-layer rows (THEORY.md g), training both layers or one; and the
perturbation of a network. :mod:`fasthess.quadratic_model` predicts GD near the optimum
from the spectrum; :mod:`fasthess.flow` integrates gradient flow.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from . import _config
from ._features import check_net, check_point
from ._resources import check_fits
from ._validation import check_choice, check_int, check_real, check_rng
from .activations import CustomActivation
from ._kernels.activation import ERF, LINEAR
from .network import TwoLayerNet
from .objective import loss
from .order_parameters import generalisation_error, span_basis
from .population_objective import population_gradient, population_loss

__all__ = ['GDResult', 'gradient_descent', 'perturb']

@dataclass(frozen=True)
class GDResult:
    """The result of :func:`gradient_descent`: the loss record and the final student.

    Attributes
    ----------
    loss : ndarray of float64, shape (n_recorded,)
        ``loss[i]`` is the empirical loss of the student after ``steps[i]`` updates;
        ``loss[0]`` is the initial loss. Always finite.
    steps : ndarray of int64, shape (n_recorded,)
        The step indices of the records, increasing, ``steps[0] == 0``.
    student : TwoLayerNet
        The student after ``steps[-1]`` updates (so ``loss[-1]`` is its loss).
    diverged : bool
        Whether the run stopped early because the loss blew up.
    diverged_at : int or None
        The first step whose loss was non-finite or above the divergence threshold
        (or whose weights were non-finite); None if the run did not diverge.
    lr : float
        The learning rate used.
    escaped : bool
        Whether the run left the quadratic regime around the optimum: some loss
        exceeded ``escape_factor`` (default 2) times the initial loss. Near the
        optimum with lr < 2 / lambda_max every mode of the quadratic model contracts,
        so the loss never rises; a rise means the run escaped (a too-large step, or
        a start outside the quadratic basin) even when it stays bounded and is not
        ``diverged`` (e.g. erf, whose loss is bounded).
    escaped_at : int or None
        The first step whose loss exceeded that threshold; None if it never did.

    Examples
    --------
    >>> import fasthess as fh
    >>> teacher = fh.TwoLayerNet.random(3, 2, rng=0); X = fh.gaussian_inputs(40, 3, rng=1)
    >>> res = fh.gradient_descent(fh.perturb(teacher, 0.01, rng=2), X, 0.5, 50,
    ...                           teacher=teacher)
    >>> res                                             # doctest: +ELLIPSIS
    GDResult(50 steps, lr=0.5, loss ... -> ..., stayed near the optimum)
    >>> int(res.steps[-1]), res.student.shape, res.diverged
    (50, (3, 2, 1), False)
    """

    loss: np.ndarray
    steps: np.ndarray
    student: TwoLayerNet
    diverged: bool
    diverged_at: int | None
    lr: float
    escaped: bool = False
    escaped_at: int | None = None

    def __repr__(self):
        state = ("diverged at step %d" % self.diverged_at if self.diverged
                 else "escaped the quadratic regime at step %d" % self.escaped_at
                 if self.escaped else "stayed near the optimum")
        return (f"GDResult({self.steps[-1]} steps, lr={self.lr:.4g}, loss {self.loss[0]:.4g} "
                f"-> {self.loss[-1]:.4g}, {state})")


# One compiled GD loop per user activation, so it compiles
# once per activation and process (weak keys: no leak when the user drops it).
_CUSTOM_GD: "weakref.WeakKeyDictionary[CustomActivation, object]" = weakref.WeakKeyDictionary()


def _custom_gd(activation: CustomActivation):
    from ._kernels.dynamics import make_custom_gd

    loop = _CUSTOM_GD.get(activation)
    if loop is None:
        loop = make_custom_gd(activation.g, activation.dg)
        _CUSTOM_GD[activation] = loop
    return loop


def gradient_descent(net, X, lr, steps, record_every=1, *, teacher=None,
                     divergence_factor=None, escape_factor=None, train="both") -> GDResult:
    """Run full-batch gradient descent of the student ``net`` on the loss against ``teacher``.

    Minimises L = 1/(2P) sum_mu ||net(x_mu) - teacher(x_mu)||^2 over the
    student's weights with theta <- theta - lr * grad L, for ``steps`` updates.
    The whole loop runs in one compiled kernel (BLAS for the matrix products);
    built-in activations use a disk-cached kernel, a
    :class:`~fasthess.CustomActivation` an uncached one compiled on the first call
    for that activation object (its ``g`` and ``dg`` are used; ``d2g`` is not needed).

    With ``X = fasthess.POPULATION`` it is exact gradient descent on the population
    loss (x ~ N(0, I), the generalisation error) at any n_in: the gradient stays in
    the span of the rows of the student's and the teacher's W1 (THEORY.md g), so the
    run takes place in r <= 2 n_hidden coordinates after one SVD, each step costing
    O(n_hidden^2 r) whatever n_in is (erf and linear in one compiled loop, other
    activations through :func:`fasthess.population_objective.population_gradient` per step),
    in float64.

    Parameters
    ----------
    net : TwoLayerNet
        The student, the starting point; not modified. Its dtype (float64 or
        float32) is the working precision; X and the teacher are cast to it.
    X : array_like, shape (P, n_in), or fasthess.POPULATION
        The training inputs (full batch); integers are upcast to float64.
    lr : float
        Learning rate, > 0. Near the optimum GD is stable for lr < 2 / lambda_max(H).
    steps : int
        Number of updates, >= 1.
    record_every : int, default 1
        Record the loss every this many steps.
    teacher : TwoLayerNet or None, default None
        The target function (keyword only); same (n_in, n_hidden, n_out) as the
        student, its activation may differ. None (or ``net`` itself) means the
        student is at the optimum: the loss stays 0.
    divergence_factor : float, default 1e6
        The run stops as diverged at the first step t whose loss L_t is not finite
        or exceeds ``divergence_factor * (L_0 + floor)``, or whose weights are not
        finite. ``floor = eps**2 * mean_mu ||teacher(x_mu)||^2 / 2`` (eps of the
        working dtype) is the loss of an output error at rounding level; it only
        matters when L_0 is about that small.
    escape_factor : float, default 2
        The run is reported as ``escaped`` (left the quadratic regime, see
        :class:`GDResult`) once a loss exceeds ``escape_factor`` times the initial loss;
        it goes on (a bounded activation may wander far from the optimum without
        diverging).
    train : {"both", "w1", "w2"}
        Which layers learn; ``"w1"`` is the soft committee machine (W2 fixed).

    Returns
    -------
    GDResult
        Records are taken after t = 0, record_every, 2*record_every, ... updates
        and after the last update ``steps`` (also when record_every does not
        divide it). So ``len(loss) = steps // record_every + 1`` when record_every
        divides steps, ``steps // record_every + 2`` otherwise. ``loss[0]`` is the
        initial loss.

        On divergence at step t the record is truncated, never holding NaN or inf:
        if L_t and the weights are finite, the last record is (t, L_t) (above the
        threshold); otherwise it is (t - 1, L_{t-1}). ``student`` is the network
        at ``steps[-1]`` in every case.

    Raises
    ------
    TypeError
        If net or teacher is not a TwoLayerNet, an argument has the wrong type, or
        a network is passed where X goes (the old order ``(student, teacher, X, lr,
        steps)``; the order is now ``(net, X, lr, steps, teacher=...)``).
    ValueError
        For lr <= 0, steps < 1, record_every < 1, divergence_factor <= 0, a teacher
        whose shape differs from the student's, or X of the wrong shape.

    See Also
    --------
    predicted_loss : The quadratic-model prediction of the loss curve.
    decay_rate : Its long-time slope.

    Examples
    --------
    >>> import fasthess as fh
    >>> teacher = fh.TwoLayerNet.random(3, 2, activation="erf", rng=0)
    >>> student = fh.perturb(teacher, 1e-2, rng=1)
    >>> X = fh.gaussian_inputs(50, 3, rng=2)
    >>> res = fh.gradient_descent(student, X, lr=0.5, steps=100, record_every=10,
    ...                           teacher=teacher)
    >>> res.steps[:3], len(res.loss)
    (array([ 0, 10, 20]), 11)
    >>> bool(res.loss[-1] < res.loss[0]), res.diverged
    (True, False)
    """
    student = net
    train = check_choice(train, "train", _config.TRAIN_CHOICES)
    point = check_point(student, X, teacher, net_name="net", population_teacher=True,
                        what="fasthess.gradient_descent")
    teacher = student if point.teacher is None else point.teacher
    lr = check_real(lr, "lr", positive=True)
    steps = check_int(steps, "steps", minimum=1, maximum=_config.MAX_STEPS)
    record_every = check_int(record_every, "record_every", minimum=1)
    factor = check_real(_config.DIVERGENCE_FACTOR if divergence_factor is None
                        else divergence_factor, "divergence_factor", positive=True)
    escape = check_real(_config.ESCAPE_FACTOR if escape_factor is None else escape_factor,
                        "escape_factor", positive=True)
    # records: every multiple of record_every, the final step, one divergence record
    n_max = steps // record_every + 2
    check_fits(16 * n_max, f"the loss record of steps = {steps} updates every "
               f"record_every = {record_every} ({n_max} records)",
               "raise record_every or lower steps")
    if point.population:
        return _population_gd(student, teacher, lr, steps, record_every, factor, escape, train,
                              n_max)
    dt = point.dtype
    X = point.X

    Yt = np.ascontiguousarray(teacher.astype(dt).outputs(X), dtype=dt)
    eps = float(np.finfo(dt).eps)
    floor = 0.5 * eps * eps * float(np.mean(np.sum(Yt.astype(np.float64) ** 2, axis=1)))
    w1 = student.w1.copy()
    w2 = student.w2.copy()
    prev_w1 = np.empty_like(w1)
    prev_w2 = np.empty_like(w2)
    loss_out = np.empty(n_max, dtype=np.float64)
    step_out = np.empty(n_max, dtype=np.int64)

    from ._kernels import dynamics as kern

    act = student.activation
    if act.code >= 0:
        loop = kern.gd_builtin
    elif isinstance(act, CustomActivation):
        loop = _custom_gd(act)
    else:
        raise TypeError(
            f"student.activation: gradient_descent supports the built-in activations and "
            f"fasthess.CustomActivation, got {type(act).__name__}")
    # a writable copy: Polynomial coefficients are read-only, and Numba would
    # compile a second specialisation of the whole loop for a read-only array
    coeffs = np.array(act.kernel_coeffs(dt))
    n_rec, diverged_at, use_prev, escaped_at = loop(
        act.code, coeffs, X, Yt, w1, w2, lr, steps, record_every,
        factor, floor, escape, loss_out, step_out, prev_w1, prev_w2, train != "w2",
        train != "w1")
    if n_rec == 0:
        raise ValueError(
            "the initial loss of student against teacher on X is not finite (overflow); "
            "check the scale of the weights and inputs")
    if use_prev:
        w1, w2 = prev_w1, prev_w2
    return GDResult(
        loss=loss_out[:n_rec].copy(),
        steps=step_out[:n_rec].copy(),
        student=TwoLayerNet(w1, w2, student.activation),
        diverged=bool(diverged_at >= 0),
        diverged_at=int(diverged_at) if diverged_at >= 0 else None,
        lr=lr,
        escaped=bool(escaped_at >= 0),
        escaped_at=int(escaped_at) if escaped_at >= 0 else None,
    )


def _population_gd(student, teacher, lr, steps, record_every, factor, escape, train,
                   n_max) -> GDResult:
    """gradient_descent with X = POPULATION (arguments validated, ``n_max`` records): GD
    in the span of the W1 rows (THEORY.md g)."""
    act = student.activation
    K = student.n_hidden
    w1s = np.asarray(student.w1, dtype=np.float64)
    w1t = np.asarray(teacher.w1, dtype=np.float64)
    basis = span_basis(w1s, w1t)
    C = np.ascontiguousarray(np.concatenate([w1s, w1t]) @ basis)
    c0 = C[:K].copy()
    w2 = np.array(student.w2, dtype=np.float64)
    w2t = np.ascontiguousarray(teacher.w2, dtype=np.float64)
    # the loss of an output error at rounding level, as in the sampled route
    T = C[K:] @ C[K:].T
    half_teacher = generalisation_error(act, np.zeros((K, K)), np.zeros((K, teacher.n_hidden)),
                                        T, np.zeros_like(w2), w2t)
    eps = float(np.finfo(np.float64).eps)
    floor = eps * eps * half_teacher
    loss_out = np.empty(n_max)
    step_out = np.empty(n_max, dtype=np.int64)
    prev_c, prev_w2 = np.empty_like(C), np.empty_like(w2)
    if act.code in (ERF, LINEAR):
        from ._kernels.population_gd import population_gd_closed

        n_rec, diverged_at, use_prev, escaped_at = population_gd_closed(
            act.code, C, K, w2, w2t, lr, steps, record_every, train != "w2", train != "w1",
            factor, floor, escape, loss_out, step_out, prev_c, prev_w2)
    else:
        n_rec, diverged_at, use_prev, escaped_at = _population_gd_loop(
            act, C, K, w2, w2t, lr, steps, record_every, train, factor, floor, escape,
            loss_out, step_out, prev_c, prev_w2)
    if use_prev:
        C, w2 = prev_c, prev_w2
    dt = student.dtype
    return GDResult(
        loss=loss_out[:n_rec].copy(), steps=step_out[:n_rec].copy(),
        # the move added to W1 itself: a frozen W1 (train="w2") stays bit for bit
        student=TwoLayerNet((w1s + (C[:K] - c0) @ basis.T).astype(dt), w2.astype(dt), act),
        diverged=bool(diverged_at >= 0),
        diverged_at=int(diverged_at) if diverged_at >= 0 else None, lr=lr,
        escaped=bool(escaped_at >= 0), escaped_at=int(escaped_at) if escaped_at >= 0 else None)


def _span_nets(act, C, K, w2, w2t):
    return TwoLayerNet(C[:K], w2, act), TwoLayerNet(C[K:], w2t, act)


def _population_gd_loop(act, C, K, w2, w2t, lr, steps, record_every, train, factor, floor,
                        escape_factor, loss_out, step_out, prev_c, prev_w2):
    """The population GD loop of ``population_gd_closed`` for any activation, in Python
    (one :func:`~fasthess.population_objective.population_gradient` per step)."""
    r = C.shape[1]
    n_rec, escaped_at = 0, -1
    threshold = escape = np.inf
    prev_loss = 0.0
    for t in range(steps + 1):
        s_net, t_net = _span_nets(act, C, K, w2, w2t)
        loss = population_loss(s_net, t_net)
        if t == 0:
            threshold, escape = factor * (loss + floor), escape_factor * (loss + floor)
        if escaped_at < 0 and loss > escape:
            escaped_at = t
        if not (loss <= threshold):
            if np.isfinite(loss):
                loss_out[n_rec], step_out[n_rec] = loss, t
                return n_rec + 1, t, False, escaped_at
            if t > 0 and (n_rec == 0 or step_out[n_rec - 1] != t - 1):
                loss_out[n_rec], step_out[n_rec] = prev_loss, t - 1
                n_rec += 1
            return n_rec, t, t > 0, escaped_at
        if t % record_every == 0 or t == steps:
            loss_out[n_rec], step_out[n_rec] = loss, t
            n_rec += 1
        if t == steps:
            break
        prev_loss = loss
        prev_c[:], prev_w2[:] = C, w2
        grad = population_gradient(s_net, t_net)
        if train != "w2":
            C[:K] -= lr * grad[:K * r].reshape(K, r)
        if train != "w1":
            w2 -= lr * grad[K * r:].reshape(w2.shape)
    return n_rec, -1, False, escaped_at




def perturb(net, scale, rng=None) -> TwoLayerNet:
    """Return a copy of ``net`` with every parameter shifted by ``scale * N(0, 1)``.

    The usual student near the optimum: theta_student = theta_net + scale * z,
    z ~ N(0, I_D) drawn in float64 and added in the network's dtype.

    Parameters
    ----------
    net : TwoLayerNet
        The network to perturb (typically the teacher).
    scale : float
        Standard deviation of the shift, >= 0 (0 gives an exact copy).
    rng : None, int or numpy.random.Generator, optional
        The random source (SPEC 7): None draws fresh entropy, an int seeds a new
        Generator (the same student every time), a Generator is used as is.

    Returns
    -------
    TwoLayerNet
        Same shape, activation and dtype as ``net``.

    Raises
    ------
    ValueError
        If ``scale`` is so large that the parameters overflow the dtype.

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> teacher = fh.TwoLayerNet.random(3, 2, rng=0)
    >>> student = fh.perturb(teacher, 1e-3, rng=1)
    >>> student.shape == teacher.shape
    True
    >>> shift = student.parameters() - teacher.parameters()
    >>> bool(0 < np.abs(shift).max() < 1e-2)
    True
    """
    check_net(net)
    scale = check_real(scale, "scale", nonnegative=True)
    generator = check_rng(rng)
    with np.errstate(over="ignore", invalid="ignore"):
        theta = (net.parameters().astype(np.float64)
                 + scale * generator.standard_normal(net.n_params)).astype(net.dtype)
    if not np.all(np.isfinite(theta)):
        raise ValueError(f"scale = {scale!r} is too large: the perturbed parameters overflow "
                         f"{net.dtype}")
    return TwoLayerNet.from_parameters(theta, like=net)
