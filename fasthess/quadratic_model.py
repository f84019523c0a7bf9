"""The quadratic model of gradient descent near the optimum (THEORY.md section d): near
the teacher theta*, L(theta* + Delta) = 1/2 Delta^T H Delta + O(Delta^3), so full-batch
GD with step lr gives Delta_t = (I - lr H)^t Delta_0 and, with H = V diag(lambda) V^T
and c = V^T Delta_0,

    L_t = 1/2 sum_i lambda_i c_i^2 (1 - lr lambda_i)^(2t).

:func:`predicted_loss` and :func:`decay_rate` give that curve and its long-time slope, to
compare with :func:`fasthess.gradient_descent`.
"""
from __future__ import annotations

import warnings

import numpy as np

from . import _config
from ._features import check_net, check_point, refuse_if_too_large
from ._resources import check_fits
from ._validation import check_float_array, check_int, check_real
from .assembly import assemble_hessian
from .data import is_population
from .network import TwoLayerNet
from .rank import numerical_rank

__all__ = ['predicted_loss', 'decay_rate']

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
    steps = check_int(steps, "steps", minimum=0, maximum=_config.MAX_STEPS)
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
    >>> from fasthess.quadratic_model import decay_rate
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
