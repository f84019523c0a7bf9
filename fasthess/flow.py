"""Gradient flow d theta / dt = -grad L with scipy.integrate.solve_ivp (the flow is stiff
near the optimum: the Hessian is the Jacobian of implicit methods), on samples or on the
population loss.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _config
from ._features import check_point
from ._validation import check_choice, check_integration
from .assembly import hessian
from .network import TwoLayerNet
from .objective import gradient, loss
from .order_parameters import span_basis
from .population_objective import population_gradient, population_loss

__all__ = ['FlowResult', 'gradient_flow']

# ---------------------------------------------------------------------- gradient flow
@dataclass(frozen=True)
class FlowResult:
    """The result of :func:`gradient_flow`.

    Attributes
    ----------
    t : ndarray (n,)
        The times reported.
    loss : ndarray (n,)
        The loss (empirical, or the population loss) at each time.
    student : TwoLayerNet
        The student at ``t[-1]``.
    method : str
        The solve_ivp method, with rtol and atol.
    jacobian : str
        What the implicit method used as the Jacobian of the flow.
    nfev, njev : int
        Right-hand side and Jacobian evaluations.

    Examples
    --------
    >>> import fasthess as fh
    >>> t = fh.TwoLayerNet.random(3, 2, rng=0); X = fh.gaussian_inputs(30, 3, rng=1)
    >>> res = fh.gradient_flow(fh.perturb(t, 0.1, rng=2), X, 5.0, teacher=t)
    >>> res.jacobian, bool(res.loss[-1] < res.loss[0])
    ('minus the exact Hessian (fasthess.hessian)', True)
    """

    t: np.ndarray
    loss: np.ndarray
    student: TwoLayerNet
    method: str
    jacobian: str
    nfev: int
    njev: int

    def __repr__(self):
        return (f"FlowResult(t 0 -> {self.t[-1]:.4g}, loss {self.loss[0]:.4g} -> "
                f"{self.loss[-1]:.4g}, {self.method}, {self.nfev} evaluations)")


_IMPLICIT = ("BDF", "Radau", "LSODA")


def gradient_flow(net, X, t_max, *, teacher=None, t_eval=None, train="both", method="BDF",
                  rtol=1e-8, atol=1e-12) -> FlowResult:
    """Integrate gradient flow d theta / dt = -grad L with scipy.integrate.solve_ivp.

    The flow is stiff near the optimum (the Hessian's eigenvalues span many decades),
    so the default method is implicit (BDF). On samples the Jacobian of the flow is
    minus the exact Hessian (:func:`fasthess.hessian`, residual term included). With
    ``X = fasthess.POPULATION`` the flow runs in the span of the W1 rows (THEORY.md g)
    and the Jacobian is solve_ivp's finite differences of the closed-form population
    gradient: the population Hessian off the optimum is not available here yet.

    Parameters
    ----------
    net : TwoLayerNet
        The initial student; not modified.
    X : array_like (P, n_in) or fasthess.POPULATION
        The training inputs, or the population (x ~ N(0, I)).
    t_max : float
        The final time, > 0 (time in units of lr * steps of gradient descent).
    teacher : TwoLayerNet or None
        The target (keyword); None is the optimum.
    t_eval : array_like, optional
        Increasing times in [0, t_max] to report; default 201 evenly spaced.
    train : {"both", "w1", "w2"}
        Which layers flow.
    method : str, default "BDF"
        A solve_ivp method; "BDF", "Radau" and "LSODA" use the Jacobian above.
    rtol, atol : float
        The tolerances of solve_ivp.

    Returns
    -------
    FlowResult
        The loss at the times ``t`` and the final student.

    Raises
    ------
    ValueError
        For bad times, tolerances or train, or if the integration fails.

    Examples
    --------
    >>> import fasthess as fh
    >>> t = fh.TwoLayerNet.random(40, 2, rng=0); s = fh.TwoLayerNet.random(40, 2, rng=1)
    >>> res = fh.gradient_flow(s, fh.POPULATION, 10.0, teacher=t, t_eval=[0.0, 10.0])
    >>> res.t.tolist(), bool(res.loss[1] < res.loss[0])
    ([0.0, 10.0], True)
    """
    from scipy.integrate import solve_ivp

    train = check_choice(train, "train", _config.TRAIN_CHOICES)
    point = check_point(net, X, teacher, np.float64, net_name="net", population_teacher=True,
                        what="fasthess.gradient_flow")
    teacher = net if point.teacher is None else point.teacher
    t_max, t_eval, rtol, atol = check_integration(
        t_max, t_eval, rtol, atol, method, _config.FLOW_DEFAULT_RECORDS, end_name="t_max",
        eval_name="t_eval")
    act = net.activation
    K = net.n_hidden
    if point.population:
        w1s = np.asarray(net.w1, dtype=np.float64)
        basis = span_basis(w1s, np.asarray(teacher.w1, dtype=np.float64))
        C = np.concatenate([w1s, np.asarray(teacher.w1, dtype=np.float64)]) @ basis
        Ct, w2t = C[K:], np.asarray(teacher.w2, dtype=np.float64)
        r = C.shape[1]
        n1 = K * r
        y0 = np.concatenate([C[:K].ravel(), np.asarray(net.w2, dtype=np.float64).ravel()])

        def unpack(y):
            return (TwoLayerNet(y[:n1].reshape(K, r), y[n1:].reshape(net.w2.shape), act),
                    TwoLayerNet(Ct, w2t, act))

        def grad(y):
            return population_gradient(*unpack(y))

        def loss_of(y):
            return population_loss(*unpack(y))

        def final(y):
            s_net, _ = unpack(y)
            return TwoLayerNet(w1s + (s_net.w1 - C[:K]) @ basis.T, s_net.w2, act)

        jac = None
        jac_name = ("finite differences of the closed-form population gradient (solve_ivp's; "
                    "the off-optimum population Hessian is not available)")
    else:
        Xs = point.X
        y0 = np.asarray(net.parameters(), dtype=np.float64)
        n1 = net.w1.size

        def unpack(y):
            return TwoLayerNet.from_parameters(y, like=net.astype(np.float64))

        def grad(y):
            return gradient(unpack(y), Xs, teacher)

        def loss_of(y):
            return loss(unpack(y), Xs, teacher)

        final = unpack
        jac = (lambda t, y: -mask[:, None] * hessian(unpack(y), Xs, teacher=teacher))
        jac_name = "minus the exact Hessian (fasthess.hessian)"
    mask = np.ones(y0.size)
    if train == "w1":
        mask[n1:] = 0.0
    elif train == "w2":
        mask[:n1] = 0.0
    if method not in _IMPLICIT:
        jac, jac_name = None, "none (explicit method)"
    sol = solve_ivp(lambda t, y: -mask * grad(y), (0.0, t_max), y0, method=method,
                    t_eval=t_eval, rtol=rtol, atol=atol,
                    **({"jac": jac} if jac is not None else {}))
    if sol.status != 0 or not np.all(np.isfinite(sol.y)):
        raise ValueError(f"gradient_flow: the integration failed at t = {sol.t[-1]:.4g} "
                         f"({sol.message})")
    losses = np.array([loss_of(sol.y[:, i]) for i in range(sol.t.size)])
    student = final(sol.y[:, -1]).astype(net.dtype)
    return FlowResult(t=sol.t.copy(), loss=losses, student=student,
                      method=f"solve_ivp {method}, rtol={rtol:g}, atol={atol:g}",
                      jacobian=jac_name, nfev=int(sol.nfev), njev=int(sol.njev))
