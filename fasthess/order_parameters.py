"""The order parameters of online SGD in the high-dimensional limit and the right-hand
side of their ODEs (THEORY.md g; the equations are written out in
``fasthess/_kernels/online.py``): Q = W1 W1^T, R = W1 W1*^T, T = W1* W1*^T and W2, the
generalisation error as a function of them, the Gaussian expectations per activation,
and the span of the weights. :mod:`fasthess.online` integrates the ODEs and runs the
simulation.

How the Gaussian expectations are computed, per activation:

* ``"erf"`` and ``"linear"``: closed forms (I2, I3, I4 of Saad and Solla; nn2pp's).
* any other smooth activation: the same expectations (the bivariate a, c, G of the
  drift, first-order Stein as in :func:`fasthess.population_objective.population_gradient`, and
  the 4-variate I4 of the lr^2 term) by tensor Gauss-Hermite rules in the Cholesky
  coordinates of each 2 x 2 and 4 x 4 covariance: polynomials exactly (2 deg nodes
  per axis), tanh and :class:`~fasthess.CustomActivation` with the node counts doubled
  from ``_config.ONLINE_QUAD_START_NODES`` until the drift and the second layer's
  equation change by at most ``_config.ONLINE_PAIR_RTOL`` and the lr^2 term by
  ``_config.ONLINE_QUAD_RTOL``, each relative to its largest entry (chosen at the first
  state, checked again at the last: a RuntimeWarning beyond ten times the tolerance).
  The generalisation error of the ODE uses the same rule. relu is refused: its g'
  jumps, so the rule converges too slowly.
"""
from __future__ import annotations

import functools
import warnings
import weakref

import numpy as np

from . import _config
from ._features import check_net
from ._kernels.activation import ERF, LINEAR, POLYNOMIAL, RELU
from ._validation import check_choice, check_real
from .activations import CustomActivation
from .network import TwoLayerNet
from .population_objective import population_loss

__all__ = ['check_student_teacher', 'learning_rates', 'order_parameters', 'generalisation_error', 'kernels_for', 'OnlineSystem', 'ode_rhs', 'span_basis']

# The end-state check of the quadrature warns beyond this many times its tolerance (the
# rule chosen at the start is at the tolerance; a small drift along the run is expected).
_FINAL_SLACK = 10.0


# ---------------------------------------------------------------------- validation
def check_student_teacher(student, teacher, what):
    """(student, teacher) for the online routes: same n_in, n_out and activation.

    The hidden widths K (student) and M (teacher) may differ."""
    check_net(student, "student")
    if teacher is None:
        raise TypeError(f"teacher: {what} needs a teacher network (keyword teacher=...)")
    check_net(teacher, "teacher")
    if teacher.n_in != student.n_in or teacher.n_out != student.n_out:
        raise ValueError(
            f"teacher has (n_in, n_out) = ({teacher.n_in}, {teacher.n_out}) but the student "
            f"has ({student.n_in}, {student.n_out}); they must match (n_hidden may differ)")
    if teacher.activation != student.activation:
        raise NotImplementedError(
            f"{what} with a teacher whose activation ({teacher.activation.name!r}) differs "
            f"from the student's ({student.activation.name!r}) is not implemented")
    if student.activation.code == RELU:
        raise NotImplementedError(
            f"{what}: relu is not implemented (its 4-variate expectations have no closed "
            "form here, and g' jumps, so Gauss-Hermite quadrature converges too slowly); "
            "use fasthess.gradient_descent with fasthess.POPULATION for exact population "
            "dynamics")
    return student, teacher


def learning_rates(lr, lr2, noise, weight_decay, train):
    lr = check_real(lr, "lr", positive=True)
    lr2 = lr if lr2 is None else check_real(lr2, "lr2", nonnegative=True)
    noise = check_real(noise, "noise", nonnegative=True)
    weight_decay = check_real(weight_decay, "weight_decay", nonnegative=True)
    train = check_choice(train, "train", _config.ONLINE_TRAIN_CHOICES)
    return lr, lr2, noise, weight_decay, train


# ---------------------------------------------------------------------- order parameters
def order_parameters(student, teacher):
    """(Q, R, T) = (W1 W1^T, W1 W1*^T, W1* W1*^T) in float64.

    Parameters
    ----------
    student, teacher : TwoLayerNet
        Same n_in.

    Returns
    -------
    tuple of ndarray
        Q (K x K), R (K x M), T (M x M).

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> from fasthess.order_parameters import order_parameters
    >>> s = fh.TwoLayerNet(np.eye(2, 3), np.ones((1, 2)), "erf")
    >>> Q, R, T = order_parameters(s, s)
    >>> Q.tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    w1 = np.asarray(check_net(student, "student").w1, dtype=np.float64)
    w1t = np.asarray(check_net(teacher, "teacher").w1, dtype=np.float64)
    return w1 @ w1.T, w1 @ w1t.T, w1t @ w1t.T


def _omega(Q, R, T):
    omega = np.block([[Q, R], [R.T, T]])
    return np.ascontiguousarray(0.5 * (omega + omega.T))


def _span_nets(activation, omega, n_student, w2, w2t):
    """Student and teacher networks whose unit vectors have the Gram matrix ``omega``.

    Rows of L, L L^T = omega (eigendecomposition, so a singular omega is fine); both
    networks are padded to max(K, M) hidden units with zero rows and zero output
    weights, which changes neither the loss nor the gradient of the real units.
    """
    lam, U = np.linalg.eigh(omega)
    L = U * np.sqrt(np.clip(lam, 0.0, None))
    K, M = n_student, omega.shape[0] - n_student
    width = max(K, M)
    n_in, n_out = L.shape[1], w2.shape[0]
    ws, wt = np.zeros((width, n_in)), np.zeros((width, n_in))
    bs, bt = np.zeros((n_out, width)), np.zeros((n_out, width))
    ws[:K], wt[:M] = L[:K], L[K:]
    bs[:, :K], bt[:, :M] = w2, w2t
    return TwoLayerNet(ws, bs, activation), TwoLayerNet(wt, bt, activation), L


def generalisation_error(activation, Q, R, T, w2, w2t) -> float:
    """The population loss 1/2 E||student(x) - teacher(x)||^2 from the order parameters.

    Closed form (erf, linear) or :func:`fasthess.population_objective.population_loss` of the
    networks in the span (other activations).

    Parameters
    ----------
    activation : Activation
    Q, R, T : ndarray
        K x K, K x M, M x M.
    w2, w2t : ndarray
        No x K and No x M.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> from fasthess.order_parameters import generalisation_error
    >>> lin = fh.TwoLayerNet(np.eye(2), np.ones((1, 2)), "linear").activation
    >>> generalisation_error(lin, np.eye(1), np.zeros((1, 1)), np.eye(1),
    ...                      np.ones((1, 1)), np.ones((1, 1)))     # 1/2 (1 + 1)
    1.0
    """
    omega = _omega(np.asarray(Q, float), np.asarray(R, float), np.asarray(T, float))
    w2 = np.ascontiguousarray(w2, dtype=np.float64)
    w2t = np.ascontiguousarray(w2t, dtype=np.float64)
    if activation.code in (ERF, LINEAR):
        from ._kernels.online import pair_expectations

        n = omega.shape[0]
        a, c, G = np.empty((n, n)), np.empty((n, n)), np.empty((n, n))
        pair_expectations(activation.code, omega, a, c, G)
        beta = np.concatenate([w2, -w2t], axis=1)
        return float(0.5 * np.einsum("mu,uv,mv->", beta, G, beta))
    student, teacher, _ = _span_nets(activation, omega, w2.shape[1], w2, w2t)
    return population_loss(student, teacher)


# ---------------------------------------------------------------------- right-hand sides
_CUSTOM: "weakref.WeakKeyDictionary[CustomActivation, tuple]" = weakref.WeakKeyDictionary()


def kernels_for(activation):
    """(i4_term_quadrature, pairs_quadrature, sgd loop) compiled for ``activation``."""
    from ._kernels import online as ko

    if activation.code >= 0:
        return ko.i4_term_quadrature, ko.pairs_quadrature, ko.sgd_builtin
    if not isinstance(activation, CustomActivation):
        raise TypeError(f"activation: the online routes support the built-in activations and "
                        f"fasthess.CustomActivation, got {type(activation).__name__}")
    kernels = _CUSTOM.get(activation)
    if kernels is None:
        kernels = ko.make_custom(activation.g, activation.dg, activation.d2g)
        _CUSTOM[activation] = kernels
    return kernels


class OnlineSystem:
    """The ODEs' right-hand side for one (activation, teacher, rates) at flat states y."""

    def __init__(self, activation, K, T, w2t, n_out, lr, lr2, noise, weight_decay, train_w2):
        self.act = activation
        self.K, self.M = K, T.shape[0]
        self.T = T
        self.w2t = w2t
        self.n_out = n_out
        self.lr, self.lr2 = lr, lr2
        self.noise_var = noise * noise
        self.wd = weight_decay
        self.train_w2 = train_w2
        self.closed = activation.code in (ERF, LINEAR)
        self.nodes = None
        self.method = (f"closed form ({'erf' if activation.code == ERF else 'linear'})"
                       if self.closed else None)
        self.quadrature_nodes = None
        self.quadrature_change = None
        self.nfev = 0

    def unpack(self, y):
        K, M, n_out = self.K, self.M, self.n_out
        Q = y[:K * K].reshape(K, K)
        R = y[K * K:K * K + K * M].reshape(K, M)
        w2 = y[K * K + K * M:].reshape(n_out, K)
        return Q, R, w2

    def pack(self, Q, R, w2):
        return np.concatenate([np.ravel(Q), np.ravel(R), np.ravel(w2)]).astype(np.float64)

    def _state(self, y):
        Q, R, w2 = self.unpack(y)
        omega = _omega(Q, R, self.T)
        w2 = np.ascontiguousarray(w2)
        beta = np.ascontiguousarray(np.concatenate([w2, -self.w2t], axis=1))
        return omega, w2, beta

    def __call__(self, alpha, y):
        from ._kernels import online as ko

        self.nfev += 1
        omega, w2, beta = self._state(y)
        out = np.empty(y.size)
        if self.closed:
            ko.rhs_closed(self.act.code, omega, self.K, w2, beta, self.lr, self.lr2,
                          self.noise_var, self.wd, self.train_w2, out)
            return out
        D, gw2, T4, a, _ = self._pieces(omega, w2, beta, self.nodes)
        ko.assemble_rhs(omega, self.K, w2, D, T4, a, gw2, self.lr, self.lr2, self.noise_var,
                        self.wd, self.train_w2, out)
        return out

    def loss(self, y):
        """The generalisation error at state y (quadrature G at the chosen nodes when
        there is no closed form)."""
        Q, R, w2 = self.unpack(y)
        if self.closed:
            return generalisation_error(self.act, Q, R, self.T, w2, self.w2t)
        omega, w2, beta = self._state(y)
        G = self._pieces(omega, w2, beta, self.nodes)[4]
        return float(0.5 * np.einsum("mu,uv,mv->", beta, G, beta))

    def _pieces(self, omega, w2, beta, nodes, parts=(True, True)):
        """(D, beta G[:, :K], T4, a, G): the bivariate parts by the Gauss-Hermite rule of
        nodes[0] nodes per axis, the I4 term by nodes[1] (``parts`` selects which)."""
        from ._kernels.online import drift

        i4_rule, pair_rule, _ = kernels_for(self.act)
        K, size = self.K, omega.shape[0]
        coeffs = self.act.kernel_coeffs(np.float64)
        rtol = _config.ONLINE_CHOLESKY_RTOL
        D = gw2 = T4 = a = G = None
        S = np.ascontiguousarray(w2.T @ beta)
        if parts[0]:
            x, w = _rule(nodes[0])
            a, c, G = np.empty((size, size)), np.empty((size, size)), np.empty((size, size))
            pair_rule(self.act.code, coeffs, omega, x, w, rtol, a, c, G)
            D = np.empty((K, size))
            drift(omega, K, S, a, c, D)
            gw2 = np.ascontiguousarray(beta @ G[:, :K])
        if parts[1]:
            x, w = _rule(nodes[1])
            T4 = np.zeros((K, K))
            i4_rule(self.act.code, coeffs, omega, K, S, x, w, rtol, T4)
        return D, gw2, T4, a, G

    def choose_nodes(self, y):
        """Set the Gauss-Hermite node counts (see the module docstring) at state y."""
        if self.closed:
            return
        act = self.act
        if act.code == POLYNOMIAL:
            # g'^2 g^2 has degree 4 deg - 2 per axis at most: 2 deg nodes are exact
            n = 2 * act.degree
            self.nodes = (n, n)
            self.quadrature_nodes, self.quadrature_change = self.nodes, 0.0
            self.method = f"Gauss-Hermite, {n} nodes per axis (exact for degree {act.degree})"
            return
        n2, c2 = self.converged_nodes(y, 0)
        n4, c4 = self.converged_nodes(y, 1)
        self.nodes = (n2, n4)
        self.quadrature_nodes, self.quadrature_change = self.nodes, max(c2, c4)
        self.method = (f"Gauss-Hermite, {n2} nodes per axis (pairs, doubling change {c2:.1e}), "
                       f"{n4} (I4, doubling change {c4:.1e})")

    def _change(self, y, part, n):
        """The largest change of the part's terms from n to 2n nodes, each relative to its
        largest entry (part 0: D and beta G; part 1: T4)."""
        omega, w2, beta = self._state(y)
        parts = (part == 0, part == 1)
        old = self._pieces(omega, w2, beta, (n, n), parts)[:3]
        new = self._pieces(omega, w2, beta, (2 * n, 2 * n), parts)[:3]
        change = 0.0
        for o, nw in zip(old, new):
            if o is None:
                continue
            scale = float(np.max(np.abs(nw)))
            if scale > 0.0:
                change = max(change, float(np.max(np.abs(o - nw))) / scale)
        return change

    def converged_nodes(self, y, part):
        rtol = (_config.ONLINE_PAIR_RTOL, _config.ONLINE_QUAD_RTOL)[part]
        top = (_config.ONLINE_PAIR_MAX_NODES, _config.ONLINE_QUAD_MAX_NODES)[part]
        n = _config.ONLINE_QUAD_START_NODES
        while True:
            change = self._change(y, part, n)
            if change <= rtol:
                return n, change
            if 2 * n >= top:
                raise ValueError(
                    f"activation {self.act.name!r}: the Gauss-Hermite quadrature of the "
                    f"online-SGD equations ({('bivariate', '4-variate')[part]} terms) did not "
                    f"converge to {rtol:g} (relative change {change:.1e} from {n} to {2 * n} "
                    f"nodes per axis; at most {top} allowed); is g smooth? Large "
                    f"pre-activation variances need more nodes")
            n *= 2

    def check_final(self, y):
        """The rules' change at the final state; a RuntimeWarning if above tolerance."""
        if self.closed or self.quadrature_change == 0.0:
            return
        for part, rtol in enumerate((_config.ONLINE_PAIR_RTOL, _config.ONLINE_QUAD_RTOL)):
            change = self._change(y, part, self.nodes[part])
            self.quadrature_change = max(self.quadrature_change, change)
            if change > _FINAL_SLACK * rtol:
                warnings.warn(
                    f"online_sgd_ode: at the final state the Gauss-Hermite rule of "
                    f"{self.nodes[part]} nodes per axis changes the equations by {change:.1e} "
                    f"relative from {self.nodes[part]} to {2 * self.nodes[part]} nodes "
                    f"(chosen at the start for {rtol:g}): the weights grew along the run",
                    RuntimeWarning, stacklevel=3)


@functools.lru_cache(maxsize=16)
def _rule(n):
    """Gauss-Hermite nodes and weights (summing to 1) of N(0, 1), n nodes."""
    from scipy.special import roots_hermitenorm

    x, w = roots_hermitenorm(n)
    w = w / w.sum()
    x.setflags(write=False)
    w.setflags(write=False)
    return x, w


def ode_rhs(student, *, teacher, lr, lr2=None, noise=0.0, weight_decay=0.0, train="both"):
    """The right-hand side of :func:`online_sgd_ode` at the student's order parameters.

    Parameters
    ----------
    student, teacher, lr, lr2, noise, weight_decay, train
        As in :func:`online_sgd_ode`.

    Returns
    -------
    tuple of ndarray
        dQ/dalpha (K x K), dR/dalpha (K x M), dW2/dalpha (No x K).

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> from fasthess.order_parameters import ode_rhs
    >>> t = fh.TwoLayerNet.random(50, 2, rng=0)
    >>> dQ, dR, dW2 = ode_rhs(t, teacher=t, lr=1.0)     # the optimum is a fixed point
    >>> float(max(abs(dQ).max(), abs(dR).max(), abs(dW2).max())) < 1e-15
    True
    """
    student, teacher = check_student_teacher(student, teacher, "fasthess.order_parameters.ode_rhs")
    lr, lr2, noise, weight_decay, train = learning_rates(lr, lr2, noise, weight_decay, train)
    Q, R, T = order_parameters(student, teacher)
    system = OnlineSystem(student.activation, student.n_hidden, T,
                     np.ascontiguousarray(teacher.w2, dtype=np.float64), student.n_out, lr, lr2,
                     noise, weight_decay, train == "both")
    y = system.pack(Q, R, np.asarray(student.w2, dtype=np.float64))
    system.choose_nodes(y)
    return system.unpack(system(0.0, y))


def span_basis(*weights):
    """An orthonormal basis (Ni x r) of the span of the rows of the given W1s (THEORY.md g).

    By the SVD of the stacked rows; singular values <= max(shape) * eps * the largest
    are dropped, so r is the numerical rank (at least 1: a zero matrix keeps one
    direction).

    Parameters
    ----------
    *weights : array_like, each (rows, Ni)

    Returns
    -------
    ndarray (Ni, r), float64

    Examples
    --------
    >>> import numpy as np
    >>> from fasthess.order_parameters import span_basis
    >>> B = span_basis(np.eye(2, 5), np.ones((1, 5)))
    >>> B.shape, bool(np.allclose(B.T @ B, np.eye(3)))
    ((5, 3), True)
    """
    stacked = np.concatenate([np.asarray(w, dtype=np.float64) for w in weights])
    _, s, vt = np.linalg.svd(stacked, full_matrices=False)
    tol = max(stacked.shape) * np.finfo(np.float64).eps * (s[0] if s.size else 0.0)
    r = max(1, int(np.count_nonzero(s > tol)))
    return np.ascontiguousarray(vt[:r].T)
