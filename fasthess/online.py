"""Online SGD in the high-dimensional limit: the Saad-Solla ODEs and the simulation (THEORY.md g).

One step of online SGD in fasthess's variables, with a fresh x ~ N(0, I_Ni) and the
one-sample loss l(x) = 1/2 ||student(x) - teacher(x) - noise zeta||^2:

    W1 <- W1 - (lr / Ni) grad_W1 l(x) - (weight_decay / Ni) W1
    W2 <- W2 - (lr2 / Ni) grad_W2 l(x) - (weight_decay / Ni) W2     (train="both")

(W1 = w / sqrt(Ni) of Saad and Solla; weight decay as nn2pp defines it, not scaled by
the learning rate). As Ni -> infinity the order parameters Q = W1 W1^T,
R = W1 W1*^T and W2 follow deterministic ODEs in alpha = steps / Ni; T = W1* W1*^T is
fixed. :func:`online_sgd_ode` integrates them (the equations are written out in
``fasthess/_kernels/online.py``); :func:`online_sgd` runs the stochastic process itself.
The generalisation error (the population loss, noise excluded) is a function of the
order parameters: both report it in closed form.
The order parameters, the expectations per activation and the right-hand side are in
:mod:`fasthess.order_parameters`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _config
from ._resources import check_fits
from ._validation import check_int, check_integration, check_rng
from .network import TwoLayerNet
from .order_parameters import (OnlineSystem, check_student_teacher, generalisation_error,
                               kernels_for, learning_rates, order_parameters)

__all__ = ['OnlineODEResult', 'OnlineSGDResult', 'online_sgd_ode', 'online_sgd']


# ---------------------------------------------------------------------- the ODEs
@dataclass(frozen=True)
class OnlineODEResult:
    """The solution of :func:`online_sgd_ode` at the requested times.

    Attributes
    ----------
    alpha : ndarray (n,)
        Times alpha = steps / Ni.
    loss : ndarray (n,)
        The generalisation error (population loss, noise excluded) at each time.
    Q, R : ndarray (n, K, K), (n, K, M)
        W1 W1^T and W1 W1*^T at each time.
    w2 : ndarray (n, No, K)
        The student's second layer at each time.
    T : ndarray (M, M)
        W1* W1*^T (fixed).
    teacher_w2 : ndarray (No, M)
    method : str
        How the Gaussian expectations were computed.
    quadrature_nodes : tuple of int or None
        Gauss-Hermite nodes per axis of the bivariate terms and of the lr^2 term
        (None: closed form).
    quadrature_change : float or None
        The doubling rules' largest change, at the first and the last state (0.0:
        exact rule; None: closed form).
    integrator : str
        The solve_ivp method, with its rtol and atol.
    nfev : int
        Right-hand side evaluations.

    Examples
    --------
    >>> import fasthess as fh
    >>> t = fh.TwoLayerNet.random(100, 2, rng=0); s = fh.TwoLayerNet.random(100, 2, rng=1)
    >>> res = fh.online_sgd_ode(s, 5.0, teacher=t, lr=1.0)
    >>> res.Q.shape[1:], bool(res.loss[-1] < res.loss[0])
    ((2, 2), True)
    """

    alpha: np.ndarray
    loss: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    w2: np.ndarray
    T: np.ndarray
    teacher_w2: np.ndarray
    method: str
    quadrature_nodes: tuple | None
    quadrature_change: float | None
    integrator: str
    nfev: int

    def __repr__(self):
        return (f"OnlineODEResult(alpha 0 -> {self.alpha[-1]:.4g}, loss {self.loss[0]:.4g} -> "
                f"{self.loss[-1]:.4g}, {self.method}, {self.integrator})")


def online_sgd_ode(student, alpha_max, *, teacher, lr, lr2=None, noise=0.0, weight_decay=0.0,
                   train="both", alpha_eval=None, rtol=1e-10, atol=1e-12,
                   method="DOP853") -> OnlineODEResult:
    """Integrate the Saad-Solla ODEs of online SGD from ``student`` (THEORY.md g).

    The order parameters Q = W1 W1^T, R = W1 W1*^T and W2 of online SGD (see the
    module :mod:`fasthess.online` for the update) in the limit Ni -> infinity, as
    functions of alpha = steps / Ni, with scipy.integrate.solve_ivp.

    Parameters
    ----------
    student : TwoLayerNet
        The initial student. Only its order parameters matter (n_in plays no role in
        the limit).
    alpha_max : float
        The last time, > 0.
    teacher : TwoLayerNet
        The teacher (keyword): same n_in, n_out and activation as the student; the
        hidden widths K, M may differ.
    lr : float
        First-layer learning rate, > 0.
    lr2 : float, optional
        Second-layer learning rate (default ``lr``); ignored for ``train="w1"``.
    noise : float, default 0
        Standard deviation sigma of the teacher's Gaussian output noise.
    weight_decay : float, default 0
        The weight decay of nn2pp: each step also subtracts (weight_decay / Ni) W
        (both layers when both train).
    train : {"both", "w1"}
        Train both layers, or the first only (the soft committee machine, W2 fixed).
    alpha_eval : array_like, optional
        Increasing times in [0, alpha_max] at which to report; default 201 points
        evenly spaced from 0 to alpha_max.
    rtol, atol : float
        The tolerances of solve_ivp (defaults 1e-10, 1e-12: the error is then far
        below any simulation's fluctuations; an explicit Euler step dt = 0.01, as in
        nn2pp, is ~5e-4 off in the generalisation error at lr = 1.5).
    method : str, default "DOP853"
        The solve_ivp method.

    Returns
    -------
    OnlineODEResult
        The order parameters and the generalisation error at ``alpha_eval``.

    Raises
    ------
    NotImplementedError
        For relu, or a teacher with another activation.
    ValueError
        For bad rates, times or tolerances, or if the integration fails.

    Examples
    --------
    >>> import fasthess as fh
    >>> t = fh.TwoLayerNet.random(100, 2, rng=0); s = fh.TwoLayerNet.random(100, 2, rng=1)
    >>> res = fh.online_sgd_ode(s, 10.0, teacher=t, lr=1.0, alpha_eval=[0.0, 5.0, 10.0])
    >>> res.alpha.tolist(), res.loss.shape
    ([0.0, 5.0, 10.0], (3,))
    """
    from scipy.integrate import solve_ivp

    student, teacher = check_student_teacher(student, teacher, "fasthess.online_sgd_ode")
    alpha_max, alpha_eval, rtol, atol = check_integration(
        alpha_max, alpha_eval, rtol, atol, method, _config.ONLINE_DEFAULT_RECORDS,
        end_name="alpha_max", eval_name="alpha_eval")
    lr, lr2, noise, weight_decay, train = learning_rates(lr, lr2, noise, weight_decay, train)
    Q, R, T = order_parameters(student, teacher)
    w2t = np.ascontiguousarray(teacher.w2, dtype=np.float64)
    system = OnlineSystem(student.activation, student.n_hidden, T, w2t, student.n_out, lr, lr2,
                     noise, weight_decay, train == "both")
    y0 = system.pack(Q, R, np.asarray(student.w2, dtype=np.float64))
    system.choose_nodes(y0)
    sol = solve_ivp(system, (0.0, alpha_max), y0, method=method, t_eval=alpha_eval,
                    rtol=rtol, atol=atol)
    if sol.status != 0 or not np.all(np.isfinite(sol.y)):
        raise ValueError(f"online_sgd_ode: the integration failed at alpha = {sol.t[-1]:.4g} "
                         f"({sol.message}); lower lr or raise the tolerances")
    system.check_final(sol.y[:, -1])
    n = sol.t.size
    Qs, Rs, W2s = (np.empty((n, system.K, system.K)), np.empty((n, system.K, system.M)),
                   np.empty((n, student.n_out, system.K)))
    loss = np.empty(n)
    for i in range(n):
        Qi, Ri, wi = system.unpack(sol.y[:, i])
        Qs[i], Rs[i], W2s[i] = 0.5 * (Qi + Qi.T), Ri, wi
        loss[i] = system.loss(sol.y[:, i])
    return OnlineODEResult(
        alpha=sol.t.copy(), loss=loss, Q=Qs, R=Rs, w2=W2s, T=T, teacher_w2=w2t,
        method=system.method, quadrature_nodes=system.quadrature_nodes,
        quadrature_change=system.quadrature_change,
        integrator=f"solve_ivp {method}, rtol={rtol:g}, atol={atol:g}", nfev=system.nfev)


# ---------------------------------------------------------------------- simulation
@dataclass(frozen=True)
class OnlineSGDResult:
    """The record of one :func:`online_sgd` run.

    Attributes
    ----------
    alpha : ndarray (n,)
        steps / Ni of each record.
    steps : ndarray of int64 (n,)
    loss : ndarray (n,)
        The generalisation error (population loss, closed form) at each record.
    Q, R : ndarray (n, K, K), (n, K, M)
    w2 : ndarray (n, No, K)
    student : TwoLayerNet
        The student after the last step.

    Examples
    --------
    >>> import fasthess as fh
    >>> t = fh.TwoLayerNet.random(200, 2, rng=0); s = fh.TwoLayerNet.random(200, 2, rng=1)
    >>> res = fh.online_sgd(s, 1000, teacher=t, lr=1.0, record_every=500, rng=2)
    >>> res.steps.tolist(), res.alpha.tolist()
    ([0, 500, 1000], [0.0, 2.5, 5.0])
    """

    alpha: np.ndarray
    steps: np.ndarray
    loss: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    w2: np.ndarray
    student: TwoLayerNet

    def __repr__(self):
        return (f"OnlineSGDResult({self.steps[-1]} steps, alpha {self.alpha[-1]:.4g}, loss "
                f"{self.loss[0]:.4g} -> {self.loss[-1]:.4g})")


def online_sgd(student, steps, *, teacher, lr, lr2=None, noise=0.0, weight_decay=0.0,
               train="both", record_every=None, rng=None) -> OnlineSGDResult:
    """Simulate online SGD: one fresh Gaussian sample per step, in one compiled loop.

    The update of :mod:`fasthess.online` (rates divided by Ni), x ~ N(0, I) drawn
    inside the kernel from ``rng`` (no data stored): O((K + M) Ni) per step. The
    generalisation error at the records is the closed-form population loss of the
    recorded order parameters (:func:`generalisation_error`).

    Parameters
    ----------
    student : TwoLayerNet
        The initial student; not modified.
    steps : int
        Number of SGD steps, >= 1 (alpha = steps / Ni).
    teacher : TwoLayerNet
        As in :func:`online_sgd_ode` (keyword).
    lr : float
        First-layer learning rate, > 0 (each step uses lr / Ni).
    lr2 : float, optional
        Second-layer learning rate (default ``lr``).
    noise : float, default 0
        Standard deviation of the teacher's Gaussian output noise.
    weight_decay : float, default 0
        As in :func:`online_sgd_ode`.
    train : {"both", "w1"}
        Which layers learn.
    record_every : int, optional
        Steps between records (default: steps // 100, at least 1); the last step is
        always recorded.
    rng : None, int or numpy.random.Generator
        The random source (SPEC 7); a Generator's state advances.

    Returns
    -------
    OnlineSGDResult
        The records and the final student.

    Examples
    --------
    >>> import fasthess as fh
    >>> t = fh.TwoLayerNet.random(100, 2, rng=0); s = fh.TwoLayerNet.random(100, 2, rng=1)
    >>> a = fh.online_sgd(s, 500, teacher=t, lr=1.0, record_every=100, rng=3)
    >>> b = fh.online_sgd(s, 500, teacher=t, lr=1.0, record_every=100, rng=3)
    >>> bool((a.loss == b.loss).all()), a.loss.shape
    (True, (6,))
    """
    student, teacher = check_student_teacher(student, teacher, "fasthess.online_sgd")
    steps = check_int(steps, "steps", minimum=1, maximum=2**62)
    lr, lr2, noise, weight_decay, train = learning_rates(lr, lr2, noise, weight_decay, train)
    record_every = (max(1, steps // (_config.ONLINE_DEFAULT_RECORDS - 1)) if record_every is None
                    else check_int(record_every, "record_every", minimum=1))
    generator = check_rng(rng)
    n_in = student.n_in
    K, M, n_out = student.n_hidden, teacher.n_hidden, student.n_out
    n_max = steps // record_every + 2
    check_fits(8 * n_max * (K * K + K * M + n_out * K + 1),
               f"the records of steps = {steps} every record_every = {record_every}",
               "raise record_every")
    w1 = np.array(student.w1, dtype=np.float64)
    w2 = np.array(student.w2, dtype=np.float64)
    w1t = np.ascontiguousarray(teacher.w1, dtype=np.float64)
    w2t = np.ascontiguousarray(teacher.w2, dtype=np.float64)
    rec_q, rec_r = np.empty((n_max, K, K)), np.empty((n_max, K, M))
    rec_w2, rec_steps = np.empty((n_max, n_out, K)), np.empty(n_max, dtype=np.int64)
    loop = kernels_for(student.activation)[2]
    act = student.activation
    n_rec = loop(act.code, act.kernel_coeffs(np.float64), generator, w1, w2, w1t, w2t,
                 lr / n_in, lr2 / n_in, weight_decay / n_in, noise, train == "both", steps,
                 record_every, rec_q, rec_r, rec_w2, rec_steps)
    if not (np.all(np.isfinite(w1)) and np.all(np.isfinite(w2))):
        raise ValueError("online_sgd: the weights overflowed (the run diverged); lower lr")
    T = w1t @ w1t.T
    loss = np.array([generalisation_error(act, rec_q[i], rec_r[i], T, rec_w2[i], w2t)
                     for i in range(n_rec)])
    s = rec_steps[:n_rec].copy()
    return OnlineSGDResult(alpha=s / n_in, steps=s, loss=loss, Q=rec_q[:n_rec].copy(),
                           R=rec_r[:n_rec].copy(), w2=rec_w2[:n_rec].copy(),
                           student=TwoLayerNet(w1, w2, act))
