"""The population loss, its gradient, and the residual term's coefficients (THEORY.md g).

Off the optimum the hidden units of the student (j = 0..Nh-1) and of the teacher
(M units, M may differ from Nh) are stacked, u = (student units, teacher units), with
output weights beta = [W2_s, -W2_t] (No x (Nh + M)): the residual is
r(x) = y_s(x) - y_t(x) = sum_u beta[:, u] g(h_u), and every population quantity is a
sum over pairs (j, u) of the bivariate expectations of :func:`fasthess.population.pair_matrices`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _config
from ._features import check_net
from ._kernels.activation import RELU
from ._validation import check_teacher
from .population import pair_matrices

__all__ = ["population_teacher", "stacked_units", "ResidualCoefficients", "residual_coefficients",
           "population_loss", "population_gradient"]


def population_teacher(student, teacher):
    """The teacher, or None at the optimum (no teacher, or one equal to the student).

    Raises NotImplementedError for a teacher with another activation, and the
    errors of :func:`fasthess._validation.check_teacher` (n_in, n_out must match).
    """
    teacher = check_teacher(check_net(student, "student"), teacher)
    if teacher is not None and teacher.activation != student.activation:
        raise NotImplementedError(
            f"teacher: X = fasthess.POPULATION with a teacher whose activation "
            f"({teacher.activation.name!r}) differs from the student's "
            f"({student.activation.name!r}) is not implemented; pass samples "
            f"(fasthess.gaussian_inputs) instead")
    return teacher


def stacked_units(student, teacher):
    """(rows [W1_s; W1_t] (Nh + M, Ni), beta = [W2_s, -W2_t]) in float64, or None at the
    optimum (see :func:`population_teacher`)."""
    teacher = population_teacher(student, teacher)
    if teacher is None:
        return None
    rows = np.concatenate([np.asarray(student.w1, dtype=np.float64),
                           np.asarray(teacher.w1, dtype=np.float64)])
    beta = np.concatenate([np.asarray(student.w2, dtype=np.float64),
                           -np.asarray(teacher.w2, dtype=np.float64)], axis=1)
    return rows, beta


@dataclass(frozen=True, eq=False)
class ResidualCoefficients:
    """The residual term R = E[sum_k r_k d^2 y_k / dtheta^2] of the population Hessian.

    With S = W2_s^T beta (Nh x (Nh + M)) and the pair coefficients of (student j, unit u):

        R11 tile (j, j) = rho_j I + A_j w_j w_j^T + w_j p_j^T + p_j w_j^T
                          + sum_u sg_ju w_u w_u^T  (+ the relu pairs below)
        R11 tile (j, k != j) = 0,   R22 = 0
        R12 [(j, i), (m, k)] = delta_jk sum_u beta[m, u] (c_ju w_j + a_ju w_u)_i

    rho_j = sum_u S_ju c_ju, A_j = sum_u S_ju alpha_ju, sb = S o m11 (p_j = sum_u sb_ju
    w_u), sg = S o m12 (second-order Stein, THEORY.md f with f = g''(h_j) g(h_u)).
    For relu pairs with 0 < sin < ``_config.POP_PARALLEL_SINE`` the U-basis form is
    ill-conditioned; their tile part kappa (e2 e2^T - e1 e1^T) in the orthonormal
    basis of (w_j, w_u) is listed in ``par`` as (j, u, kappa, cos, sin).

    All arrays float64; ``rows`` (Nh + M, Ni) are the stacked hidden units, ``beta``
    (No, Nh + M); ``a``, ``c`` (Nh, Nh + M) the student rows of the pair matrices.
    """

    rows: np.ndarray
    beta: np.ndarray
    rho: np.ndarray
    A: np.ndarray
    sb: np.ndarray
    sg: np.ndarray
    a: np.ndarray
    c: np.ndarray
    par: tuple

    @property
    def n_hidden(self) -> int:
        return self.rho.size


def residual_coefficients(student, rows, beta, pairs=None) -> ResidualCoefficients:
    """:class:`ResidualCoefficients` of ``student`` against the stacked units.

    ``pairs``: :func:`fasthess.population.pair_matrices` of ``rows`` (computed here
    if None, with the residual's convergence check).
    """
    if pairs is None:
        pairs = pair_matrices(student.activation, rows, residual=True)
    n_hidden = student.n_hidden
    a, _, cmat, m11, m12, alpha = (m[:n_hidden] for m in pairs.mats)
    S = np.asarray(student.w2, dtype=np.float64).T @ beta
    par = []
    if student.activation.code == RELU:
        # relu pairs (j, u) kept out of the U basis (see relu_pairs): kappa = S_ju
        # E[delta(h_j) relu(h_u)] (the c_ju of the pair), on e2 e2^T - e1 e1^T
        norms = pairs.norms
        for p in np.flatnonzero((pairs.sines > 0.0) & (pairs.sines < _config.POP_PARALLEL_SINE)
                                & (pairs.pj != pairs.pk)):
            j, k = int(pairs.pj[p]), int(pairs.pk[p])
            if norms[j] == 0.0 or norms[k] == 0.0:
                continue
            for jj, uu in ((j, k), (k, j)):
                if jj < n_hidden:
                    par.append((jj, uu, S[jj, uu] * cmat[jj, uu], pairs.cosines[p],
                                pairs.sines[p]))
    return ResidualCoefficients(
        rows=rows, beta=beta, rho=np.sum(S * cmat, axis=1), A=np.sum(S * alpha, axis=1),
        sb=S * m11, sg=S * m12, a=a, c=cmat, par=tuple(par))


def population_loss(student, teacher) -> float:
    """The population loss L = 1/2 E_x ||student(x) - teacher(x)||^2, x ~ N(0, I).

    The generalisation error of the soft committee machine: with the hidden units
    of both networks stacked, u = (student units, teacher units), and
    beta = [W2_s, -W2_t], L = 1/2 tr(beta G beta^T), G_uv = E[g(h_u) g(h_v)].

    Parameters
    ----------
    student, teacher : TwoLayerNet
        Same n_in, n_out and activation (the teacher's n_hidden may differ);
        ``teacher=None`` (or the student) is the optimum.

    Returns
    -------
    float (exactly 0.0 at the optimum)

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> from fasthess.population_objective import population_loss
    >>> t = fh.TwoLayerNet(np.eye(2), np.ones((1, 2)), "linear")
    >>> s = fh.TwoLayerNet(np.eye(2), np.array([[2.0, 1.0]]), "linear")
    >>> population_loss(s, t)             # 1/2 E[x_1^2]
    0.5
    """
    pair = stacked_units(student, teacher)
    if pair is None:
        return 0.0
    rows, beta = pair
    G = pair_matrices(student.activation, rows).mats[1]
    return float(0.5 * np.einsum("mu,uv,mv->", beta, G, beta))


def population_gradient(student, teacher) -> np.ndarray:
    """dL/dtheta of :func:`population_loss`, flat in theta order (w1, then w2).

    With r = sum_u beta_u g(h_u) and S = W2_s^T beta (Nh x (Nh + M)):
    dL/dW2 = beta G[:, student], and dL/dw_j = E[(r . b_j) g'(h_j) x]
    = sum_u S_ju (c_ju w_j + a_ju w_u) by first-order Stein (c_ju = E[g''(h_j) g(h_u)],
    a_ju = E[g'(h_j) g'(h_u)]).

    Parameters
    ----------
    student, teacher : TwoLayerNet
        As in :func:`population_loss`.

    Returns
    -------
    ndarray (D,), float64 (zeros at the optimum)

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> from fasthess.population_objective import population_gradient
    >>> t = fh.TwoLayerNet(np.eye(2), np.ones((1, 2)), "linear")
    >>> s = fh.TwoLayerNet(np.eye(2), np.array([[2.0, 1.0]]), "linear")
    >>> population_gradient(s, t)   # linear: dL/dW1 = W2^T (V_s - V_t), dL/dW2 = (V_s - V_t) W1^T
    array([2., 0., 1., 0., 1., 0.])
    """
    student = check_net(student, "student")
    pair = stacked_units(student, teacher)
    if pair is None:
        return np.zeros(student.n_params)
    rows, beta = pair
    n_hidden = student.n_hidden
    mats = pair_matrices(student.activation, rows).mats
    a, G, cmat = mats[0, :n_hidden], mats[1, :, :n_hidden], mats[2, :n_hidden]
    S = np.asarray(student.w2, dtype=np.float64).T @ beta
    grad_w1 = np.sum(S * cmat, axis=1)[:, None] * rows[:n_hidden] + (S * a) @ rows
    grad_w2 = beta @ G
    return np.concatenate([grad_w1.ravel(), grad_w2.ravel()])
