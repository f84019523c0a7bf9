"""Trace of the Hessian without forming it: closed form, or Hutchinson's estimator."""
from __future__ import annotations

import math

import numpy as np

from . import _config
from ._features import check_point, features
from ._validation import check_bool, check_choice, check_int, check_rng
from .data import rademacher
from .operators import check_operator

__all__ = ["trace"]

_TRACE_METHODS = ("exact", "hutchinson")


def trace(net, X, teacher=None, method="exact", n_probes=100, rng=None,
          return_stderr=False, operator=None):
    """Compute the trace of the Hessian without forming it.

    Parameters
    ----------
    net : TwoLayerNet
        The student, the point where H is taken.
    X : array_like, shape (P, n_in), or fasthess.POPULATION
        Inputs (integers are upcast to float64); not used (may be None) with
        ``operator``. ``fasthess.POPULATION`` (x ~ N(0, I), P -> infinity, at the
        optimum or, with ``teacher``, at any point): "exact" is tr H_inf in closed form from the Nh diagonal
        pairs, O(Nh Ni); "hutchinson" uses the population products,
        O(Nh^2 (Ni + No)) per probe.
    teacher : TwoLayerNet or None, default None
        None (or ``net``) for the optimum; otherwise the full Hessian.
    method : {"exact", "hutchinson"}
        "exact": the closed-form diagonal (THEORY.md a), O(P (Ni + No Nh)):

            tr H = (1/P) sum_{mu,j} [ (W2^T W2)_jj G'_{mu j}^2 + (r_mu . b_j) G''_{mu j} ] |x_mu|^2
                 + (No/P) sum_{mu,j} A_{mu j}^2

        (the G'' term is the residual part, absent at the optimum).
        "hutchinson": mean of z^T H z over Rademacher probes z, matrix-free.
    n_probes : int, default 100
        Hutchinson probes, >= 2.
    rng : None, int or numpy.random.Generator, optional
        Source of the Hutchinson probes (SPEC 7): None draws fresh entropy, an int
        seeds a new Generator (the same estimate every time), a Generator is used
        as is. Not used by "exact".
    return_stderr : bool, default False
        Also return the standard error (0.0 for "exact").
    operator : scipy.sparse.linalg.LinearOperator, optional
        Only with method "hutchinson": the Hessian of ``net`` as a (D, D) operator
        whose ``matmat`` does the products; pass
        ``fasthess.distributed.hessian_operator(net, X, client=...)`` to run them on
        a Dask cluster. ``X`` is then not used and ``teacher`` must be None (or ``net``).

    Returns
    -------
    float or tuple of float
        The trace, or (trace, standard error) with ``return_stderr``.

    Raises
    ------
    ValueError
        An unknown ``method``, ``operator`` with method "exact", or an ``operator``
        not of shape (D, D).

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> net = fh.TwoLayerNet.random(4, 3, rng=0); X = fh.gaussian_inputs(30, 4, rng=1)
    >>> bool(np.isclose(fh.trace(net, X), np.trace(fh.hessian(net, X))))
    True
    >>> est, err = fh.trace(net, X, method="hutchinson", rng=0, return_stderr=True)
    >>> bool(abs(est - fh.trace(net, X)) < 5 * err)
    True
    """
    check_choice(method, "method", _TRACE_METHODS)
    return_stderr = check_bool(return_stderr, "return_stderr")
    if method == "exact":
        if operator is not None:
            raise ValueError("operator: only method='hutchinson' uses an operator; the "
                             "'exact' trace is a closed form of the local data")
        point = check_point(net, X, teacher, what="fasthess.trace")
        if point.population:
            from .population_hessian import population_trace

            # closed form: O(Nh Ni) at the optimum, O((Nh + M)^2 Ni) off it
            value = population_trace(None, point.net, point.teacher)
            return (value, 0.0) if return_stderr else value
        f = features(point)
        xx = np.einsum("pi,pi->p", f.X, f.X)
        q = np.einsum("kj,kj->j", f.w2, f.w2)
        coef = f.G1 * f.G1 * q
        if f.residual is not None:
            coef += (f.residual @ f.w2) * f.G2
        value = float((xx @ coef).sum() + net.n_out * np.sum(f.A * f.A)) / f.n_samples
        return (value, 0.0) if return_stderr else value
    n_probes = check_int(n_probes, "n_probes", minimum=2)
    generator = check_rng(rng)
    op = check_operator(operator, net, X, teacher)
    matmat, dt = op.matmat, np.dtype(op.dtype)
    d = net.n_params
    samples = np.empty(n_probes)
    for s in range(0, n_probes, _config.HUTCHINSON_BATCH):
        b = min(_config.HUTCHINSON_BATCH, n_probes - s)
        Z = rademacher(generator, (d, b), dt)
        samples[s:s + b] = np.einsum("dp,dp->p", Z, matmat(Z))
    value = float(samples.mean())
    stderr = float(samples.std(ddof=1) / math.sqrt(n_probes))
    return (value, stderr) if return_stderr else value
