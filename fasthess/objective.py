"""The training loss and its gradient.

L = 1/(2P) sum_mu ||y_student(x_mu) - y_teacher(x_mu)||^2, gradient J^T r / P
(THEORY.md a), flat in theta order.
"""
from __future__ import annotations

import numpy as np

from ._features import check_point, features
from .products import vjp

__all__ = ["loss", "gradient"]


def loss(net, X, teacher=None):
    """Compute the training loss of ``net`` against ``teacher`` on the inputs X.

    L = 1/(2P) sum_mu ||net(x_mu) - teacher(x_mu)||^2, accumulated in float64.

    Parameters
    ----------
    net : TwoLayerNet
        The student, whose loss is measured.
    X : array_like, shape (P, n_in), or fasthess.POPULATION
        Inputs, one sample per row (integers are upcast to float64);
        ``fasthess.POPULATION`` gives the population loss 1/2 E ||student(x) -
        teacher(x)||^2, x ~ N(0, I) (the generalisation error), in closed form.
    teacher : TwoLayerNet or None, default None
        The target function, with the n_in and n_out of ``net`` (its n_hidden may
        differ); None (or
        ``net`` itself) is the optimum, where the loss is 0.

    Returns
    -------
    float
        The loss, computed in the student's dtype and summed in float64.

    Raises
    ------
    TypeError
        A network passed where X goes (the order is ``(net, X, teacher=...)``).

    See Also
    --------
    gradient : Its gradient with respect to the student's parameters.

    Examples
    --------
    >>> import fasthess as fh
    >>> t = fh.TwoLayerNet.random(3, 2, rng=0); X = fh.gaussian_inputs(10, 3, rng=1)
    >>> fh.loss(t, X, teacher=t)
    0.0
    >>> s = fh.perturb(t, 0.1, rng=2)
    >>> bool(fh.loss(s, X, teacher=t) > 0)
    True
    """
    point = check_point(net, X, teacher, what="fasthess.loss", population_teacher=True)
    if point.at_optimum:
        return 0.0
    if point.population:
        from .population_objective import population_loss

        return population_loss(net, point.teacher)
    with np.errstate(over="ignore", invalid="ignore"):
        r = net.astype(point.dtype).outputs(point.X) - point.teacher.astype(
            point.dtype).outputs(point.X)
    return float(0.5 * np.sum(r.astype(np.float64) ** 2) / point.X.shape[0])


def gradient(net, X, teacher=None):
    """Compute the gradient of :func:`loss` with respect to the student's parameters.

    dL/dtheta = J^T r / P (THEORY.md a), r the residuals net(x) - teacher(x).

    Parameters
    ----------
    net : TwoLayerNet
        The student, the point where the gradient is taken.
    X : array_like, shape (P, n_in), or fasthess.POPULATION
        Inputs, one sample per row (integers are upcast to float64);
        ``fasthess.POPULATION``: the gradient of the population loss, in closed form.
    teacher : TwoLayerNet or None, default None
        The target function; None (or ``net`` itself) is the optimum, where the
        gradient is 0.

    Returns
    -------
    ndarray, shape (D,)
        In theta order (w1 row-major, then w2 row-major), in the student's dtype.

    Raises
    ------
    ValueError
        If the gradient overflows the working dtype.

    See Also
    --------
    loss : The loss itself.
    jacobian : J, whose transpose maps the residuals to the gradient.

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> t = fh.TwoLayerNet.random(3, 2, rng=0); X = fh.gaussian_inputs(10, 3, rng=1)
    >>> s = fh.perturb(t, 0.1, rng=2)
    >>> g = fh.gradient(s, X, teacher=t)
    >>> g.shape, bool(np.all(fh.gradient(t, X, teacher=t) == 0))
    ((8,), True)
    """
    point = check_point(net, X, teacher, what="fasthess.gradient", population_teacher=True)
    if point.at_optimum:
        return np.zeros(net.n_params, dtype=point.dtype)
    if point.population:
        from .population_objective import population_gradient

        return population_gradient(net, point.teacher).astype(point.dtype, copy=False)
    f = features(point, second_order=False)
    with np.errstate(over="ignore", invalid="ignore"):
        g = vjp(f, f.residual[:, :, None])[:, 0] / f.n_samples  # J^T r / P
    if not np.all(np.isfinite(g)):
        raise ValueError(f"X: the gradient overflows {point.dtype} (|X| up to "
                         f"{float(np.max(np.abs(point.X))):.3g}); rescale X or the weights, or "
                         "use float64")
    return g
