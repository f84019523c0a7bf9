"""Gradient descent near the optimum and its spectral (quadratic-model) prediction.

THEORY.md section d: near the teacher theta*, L(theta* + Delta) = 1/2 Delta^T H Delta
+ O(Delta^3), so full-batch GD with step lr gives Delta_t = (I - lr H)^t Delta_0 and,
with H = V diag(lambda) V^T and c = V^T Delta_0,

    L_t = 1/2 sum_i lambda_i c_i^2 (1 - lr lambda_i)^(2t).

:func:`gradient_descent` simulates the real (nonlinear) dynamics in one compiled
loop; :func:`predicted_loss` and :func:`decay_rate` give the quadratic-model curve
and its long-time slope for comparison.
"""
from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass

import numpy as np

from . import _config
from ._features import check_net, check_point, refuse_if_too_large
from ._resources import check_fits
from ._validation import check_float_array, check_int, check_real, check_rng
from .activations import CustomActivation
from .assembly import assemble_hessian
from .data import is_population
from .network import TwoLayerNet
from .rank import numerical_rank

__all__ = ["GDResult", "gradient_descent", "perturb", "predicted_loss", "decay_rate"]

# Step counts beyond this cannot be indexed by the int64 records of the kernel.
_MAX_STEPS = 2**62


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
                     divergence_factor=None, escape_factor=None) -> GDResult:
    """Run full-batch gradient descent of the student ``net`` on the loss against ``teacher``.

    Minimises L = 1/(2P) sum_mu ||net(x_mu) - teacher(x_mu)||^2 over the
    student's weights with theta <- theta - lr * grad L, for ``steps`` updates.
    The whole loop runs in one compiled kernel (BLAS for the matrix products);
    built-in activations use a disk-cached kernel, a
    :class:`~fasthess.CustomActivation` an uncached one compiled on the first call
    for that activation object (its ``g`` and ``dg`` are used; ``d2g`` is not needed).

    Parameters
    ----------
    net : TwoLayerNet
        The student, the starting point; not modified. Its dtype (float64 or
        float32) is the working precision; X and the teacher are cast to it.
    X : array_like, shape (P, n_in)
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
    point = check_point(student, X, teacher, population=False, net_name="net",
                        what="fasthess.gradient_descent (it steps on the empirical loss)")
    teacher = student if point.teacher is None else point.teacher
    lr = check_real(lr, "lr", positive=True)
    steps = check_int(steps, "steps", minimum=1, maximum=_MAX_STEPS)
    record_every = check_int(record_every, "record_every", minimum=1)
    factor = check_real(_config.DIVERGENCE_FACTOR if divergence_factor is None
                        else divergence_factor, "divergence_factor", positive=True)
    escape = check_real(_config.ESCAPE_FACTOR if escape_factor is None else escape_factor,
                        "escape_factor", positive=True)
    dt = point.dtype
    X = point.X
    # records: every multiple of record_every, the final step, one divergence record
    n_max = steps // record_every + 2
    check_fits(16 * n_max, f"the loss record of steps = {steps} updates every "
               f"record_every = {record_every} ({n_max} records)",
               "raise record_every or lower steps")

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
        factor, floor, escape, loss_out, step_out, prev_w1, prev_w2)
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


# ---------------------------------------------------------------------- prediction
def _hessian_eigh(net, X):
    """Eigenvalues (ascending) and eigenvectors of H at the optimum ``net``, in float64."""
    point = check_point(net, X, None, np.float64)
    refuse_if_too_large(net.n_params, np.float64, overhead=2 * _config.ASSEMBLY_OVERHEAD)
    return np.linalg.eigh(assemble_hessian(point))


def _zero_mode_tolerance(eigenvalues, rtol=None) -> float:
    """|lambda| <= this counts as a zero mode: fasthess.numerical_rank's tolerance.

    That is the numpy.linalg.matrix_rank rule, rtol * max|lambda| with rtol = D * eps
    (float64) by default.
    """
    return float(numerical_rank(eigenvalues, rtol, warn=False).tolerance)


def _warn_if_unstable(lr, lam) -> None:
    """Gradient descent near the optimum is unstable for lr >= 2 / lambda_max: say so."""
    top = float(np.max(np.abs(lam)))
    if top > 0 and lr >= 2.0 / top:
        warnings.warn(f"lr = {lr:.4g} >= 2 / lambda_max = {2.0 / top:.4g}: gradient descent is "
                      "unstable near this optimum (the quadratic model grows without bound)",
                      RuntimeWarning, stacklevel=3)


def _delta_vector(net, delta0) -> np.ndarray:
    if isinstance(delta0, TwoLayerNet):
        if delta0.shape != net.shape:
            raise ValueError(
                f"delta0 is a network of shape (n_in, n_hidden, n_out) = {delta0.shape} but "
                f"net has {net.shape}; they must match")
        return delta0.parameters().astype(np.float64) - net.parameters().astype(np.float64)
    d = check_float_array(delta0, "delta0", ndim=1).astype(np.float64)
    if d.size != net.n_params:
        raise ValueError(f"delta0 must have length n_params = {net.n_params} for a "
                         f"{net.shape} network, got {d.size}")
    return d


def predicted_loss(net, X, delta0, lr, steps, rtol=None) -> np.ndarray:
    """Predict the loss curve of GD started at ``net + delta0`` by the quadratic model.

    With H = fasthess.hessian(net, X) at the optimum (``net`` is the teacher),
    H = V diag(lambda) V^T and c = V^T delta0,

        L_t = 1/2 sum_i lambda_i c_i^2 (1 - lr lambda_i)^(2t),   t = 0, ..., steps.

    Eigenvalues with |lambda| <= rtol * max|lambda| (the rule of
    :func:`decay_rate`) are set to exactly 0: zero modes carry no loss, and their
    round-off values (~1e-16 lambda_max, possibly negative) would otherwise leave
    a spurious floor or growth in the tail.

    Parameters
    ----------
    net : TwoLayerNet
        The teacher (the optimum).
    X : array_like, shape (P, n_in)
        The training inputs (integers are upcast to float64).
    delta0 : array_like of length D, or TwoLayerNet
        The initial displacement theta_0 - theta*, flat in theta order; a student
        network is taken as ``student.parameters() - net.parameters()``.
    lr : float
        Learning rate, > 0.
    steps : int
        Number of updates, >= 0.
    rtol : float, optional
        Zero-mode tolerance relative to max|lambda|; default D * eps.

    Returns
    -------
    ndarray of float64, shape (steps + 1,)
        ``L[t]``; compare with ``GDResult.loss`` via ``L[result.steps]``. Entries
        may be inf when lr > 2 / lambda_max (the model diverges).

    Warns
    -----
    RuntimeWarning
        When lr >= 2 / lambda_max: gradient descent is unstable near the optimum.

    See Also
    --------
    gradient_descent : The real (nonlinear) dynamics to compare with.

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> teacher = fh.TwoLayerNet.random(3, 2, rng=0)
    >>> X = fh.gaussian_inputs(50, 3, rng=1)
    >>> L = fh.predicted_loss(teacher, X, fh.perturb(teacher, 1e-4, rng=2), lr=0.5, steps=10)
    >>> L.shape, bool(np.all(np.diff(L) < 0))
    ((11,), True)
    """
    check_net(net)
    delta = _delta_vector(net, delta0)
    lr = check_real(lr, "lr", positive=True)
    steps = check_int(steps, "steps", minimum=0, maximum=_MAX_STEPS)
    check_fits(8 * (steps + 1), f"the predicted loss curve of steps = {steps} updates",
               "lower steps (the curve is evaluated at every step)")
    modes = None
    if is_population(X):
        # the exact span reduction (THEORY.md g) when n_in exceeds the rank of w1: the
        # eigenvalues with the squared overlaps of delta0 summed over each eigenspace
        from .population_span import reduced_modes

        modes = reduced_modes(net, delta)
    if modes is None:
        lam, V = _hessian_eigh(net, X)
        c = V.T @ delta
        overlap = c * c
    else:
        lam, overlap = modes
    _warn_if_unstable(lr, lam)
    lam = np.where(np.abs(lam) <= _zero_mode_tolerance(lam, rtol), 0.0, lam)
    weight = 0.5 * lam * overlap
    factor = (1.0 - lr * lam) ** 2
    t = np.arange(steps + 1, dtype=np.float64)
    out = np.zeros(steps + 1)
    # one mode at a time: O(steps) memory instead of a (steps + 1) x D table
    with np.errstate(over="ignore"):
        for w, f in zip(weight, factor):
            if w != 0.0:
                out += w * f ** t
    return out


def decay_rate(net, X, lr, rtol=None) -> float:
    """Compute the long-time slope of log L_t per GD step near the optimum ``net``.

    2 log max_i |1 - lr lambda_i| over the nonzero eigenvalues of
    H = fasthess.hessian(net, X) (THEORY.md d): the slowest mode dominates the
    late loss. For lr < 1 / lambda_max this is 2 log(1 - lr lambda_min), lambda_min
    the smallest nonzero eigenvalue; above 2 / lambda_max it is positive (divergence).
    It assumes the initial displacement has a component on that slowest mode
    (true for a random perturbation).

    Zero modes (|lambda| <= rtol * max|lambda|, the numpy.linalg.matrix_rank rule)
    are left out: they carry no loss and never decay.

    Parameters
    ----------
    net : TwoLayerNet
        The teacher (the optimum).
    X : array_like, shape (P, n_in)
        The training inputs (integers are upcast to float64).
    lr : float
        Learning rate, > 0.
    rtol : float, optional
        Zero-mode tolerance relative to max|lambda|; default D * eps (float64).

    Returns
    -------
    float
        The slope d log L / dt at late times; -inf if every nonzero mode is removed
        in one step.

    Raises
    ------
    ValueError
        If H has no nonzero eigenvalue (nothing to decay).

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> from fasthess.dynamics import decay_rate
    >>> net = fh.TwoLayerNet.random(3, 2, rng=0)
    >>> X = fh.gaussian_inputs(50, 3, rng=1)
    >>> lam = np.linalg.eigvalsh(fh.hessian(net, X))
    >>> rate = decay_rate(net, X, lr=1 / lam[-1])
    >>> bool(np.isclose(rate, 2 * np.log(1 - lam[0] / lam[-1])))
    True
    """
    check_net(net)
    lr = check_real(lr, "lr", positive=True)
    if is_population(X):
        # the population spectrum, with multiplicities (the span reduction when it
        # applies, THEORY.md g); only the distinct values matter for the slowest mode
        from .spectrum import eigenvalues

        spec = eigenvalues(net, X)
        lam, tol = spec.values.astype(np.float64), _zero_mode_tolerance(spec, rtol)
    else:
        lam, _ = _hessian_eigh(net, X)
        tol = _zero_mode_tolerance(lam, rtol)
    _warn_if_unstable(lr, lam)
    nonzero = lam[np.abs(lam) > tol]
    if nonzero.size == 0:
        raise ValueError("the Hessian at net has no nonzero eigenvalue: the loss is flat "
                         "to second order and has no decay rate")
    slowest = float(np.max(np.abs(1.0 - lr * nonzero)))
    if slowest == 0.0:
        return -np.inf
    return 2.0 * float(np.log(slowest))
