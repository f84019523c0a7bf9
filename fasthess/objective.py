"""The training loss and its gradient.

L = 1/(2P) sum_mu ||y_student(x_mu) - y_teacher(x_mu)||^2, gradient J^T r / P
(THEORY.md a), flat in theta order.
"""
from __future__ import annotations

import numpy as np

from ._features import check_point, features
from .products import vjp

__all__ = ["loss", "gradient"]


def loss(student, X, teacher):
    """The loss of ``student`` against ``teacher`` on the inputs X.

    Parameters
    ----------
    student : TwoLayerNet
        The network whose loss is measured.
    X : array, shape (P, n_in), or fasthess.POPULATION
        Inputs, one sample per row (the population: only at the optimum, where L = 0).
    teacher : TwoLayerNet
        The target function; same (n_in, n_hidden, n_out) as the student.

    Returns
    -------
    float
        L = 1/(2P) sum_mu ||student(x_mu) - teacher(x_mu)||^2, accumulated in float64.

    Examples
    --------
    >>> import fasthess as fh
    >>> t = fh.TwoLayerNet.random(3, 2, seed=0); X = fh.gaussian_inputs(10, 3, seed=1)
    >>> fh.loss(t, X, t)
    0.0
    """
    point = check_point(student, X, teacher, net_name="student", what="fasthess.loss")
    if point.at_optimum:
        return 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        r = student.astype(point.dtype).outputs(point.X) - point.teacher.astype(
            point.dtype).outputs(point.X)
    return float(0.5 * np.sum(r.astype(np.float64) ** 2) / point.X.shape[0])


def gradient(student, X, teacher):
    """The gradient of :func:`loss` with respect to the student's parameters.

    Parameters
    ----------
    student : TwoLayerNet
        The point where the gradient is taken.
    X : array, shape (P, n_in)
        Inputs, one sample per row.
    teacher : TwoLayerNet
        The target function.

    Returns
    -------
    ndarray, shape (D,)
        dL/dtheta = J^T r / P in theta order (w1 row-major, then w2 row-major), in
        the student's dtype; zeros at the optimum.

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> t = fh.TwoLayerNet.random(3, 2, seed=0); X = fh.gaussian_inputs(10, 3, seed=1)
    >>> s = fh.perturb(t, 0.1, seed=2)
    >>> g = fh.gradient(s, X, t)
    >>> g.shape, bool(np.all(fh.gradient(t, X, t) == 0))
    ((8,), True)
    """
    point = check_point(student, X, teacher, net_name="student", what="fasthess.gradient")
    if point.at_optimum:
        return np.zeros(student.n_params, dtype=point.dtype)
    f = features(point, second_order=False)
    with np.errstate(over="ignore", invalid="ignore"):
        g = vjp(f, f.residual[:, :, None])[:, 0] / f.n_samples  # J^T r / P
    if not np.all(np.isfinite(g)):
        raise ValueError(f"X: the gradient overflows {point.dtype} (|X| up to "
                         f"{float(np.max(np.abs(point.X))):.3g}); rescale X or the weights, or "
                         "use float64")
    return g
