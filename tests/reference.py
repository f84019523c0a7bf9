"""Slow, obvious twins of every public computation, written without fasthess code.

Nothing here calls into fasthess: no kernel, no ``fh.hessian``, no
``Activation.evaluate``. A network is read only through its data: ``w1``,
``w2`` and what defines its activation (the name of a built-in, the
coefficients of a Polynomial, the user's own Python functions ``.py_func`` of a
CustomActivation). Everything is computed in float64 whatever the network's
dtype, straight from the definitions of THEORY.md a:

* g, g', g'' from their closed forms (scipy.special.erf, numpy.tanh,
  numpy.maximum, numpy.polynomial);
* the Jacobian J (P No x D) as an einsum of the per-sample derivatives, and the
  second derivatives d^2 y_k / dtheta^2 as an explicit (P, No, D, D) tensor;
* H = (1/P) sum_mu [J_mu^T J_mu + sum_k r_mu,k d^2 y_k / dtheta^2], its blocks,
  eigenvalues (numpy.linalg.eigvalsh) and trace; the NTK Gram J J^T / P; the
  loss and its gradient J^T r / P;
* gradient descent as a plain loop of those gradients, and the quadratic-model
  loss curve and decay rate of THEORY.md d from the twin Hessian's eigenpairs.

The finite differences of the loss and of the outputs at the end are a second,
formula-free check of these twins (tests/test_hessian.py and tests/test_api.py
compare the two).
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
from scipy.special import erf

from fasthess.activations import CustomActivation, Polynomial

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


# ---------------------------------------------------------------------- activations
def _erf(z):
    """The library's "erf": g(z) = erf(z / sqrt 2), g' = sqrt(2/pi) e^{-z^2/2}, g'' = -z g'."""
    d1 = _SQRT_2_OVER_PI * np.exp(-0.5 * z * z)
    return erf(z / math.sqrt(2.0)), d1, -z * d1


def _tanh(z):
    t = np.tanh(z)
    return t, 1.0 - t * t, -2.0 * t * (1.0 - t * t)


def _relu(z):
    # g'(0) = 0 by convention; Gaussian data never hit z = 0 exactly
    return np.maximum(z, 0.0), (z > 0).astype(np.float64), np.zeros_like(z)


_CLOSED_FORMS = {"erf": _erf, "tanh": _tanh, "relu": _relu}


def activation_closed_form(activation, z):
    """(g, g', g'') at the points z (any shape), float64, without fasthess code.

    Built-ins by their closed forms; a Polynomial (including "linear" and
    "quadratic") with numpy.polynomial from its coefficients; a CustomActivation
    through the user's own Python functions g.py_func, dg.py_func, d2g.py_func.
    """
    z = np.asarray(z, dtype=np.float64)
    if isinstance(activation, CustomActivation):
        return tuple(np.vectorize(f.py_func, otypes=[np.float64])(z)
                     for f in (activation.g, activation.dg, activation.d2g))
    if isinstance(activation, Polynomial):
        poly = np.polynomial.Polynomial(np.asarray(activation.coeffs, dtype=np.float64))
        return poly(z), poly.deriv(1)(z), poly.deriv(2)(z)
    if activation.name in _CLOSED_FORMS:
        return _CLOSED_FORMS[activation.name](z)
    raise ValueError(f"reference: no closed form for the activation {activation!r}")


def _float64(net, X):
    return (np.asarray(X, dtype=np.float64), np.asarray(net.w1, dtype=np.float64),
            np.asarray(net.w2, dtype=np.float64))


def activation_values(net, X):
    """(A, G', G'') = g, g', g'' of the pre-activations X w1^T, each (P, Nh)."""
    X, w1, _ = _float64(net, X)
    return activation_closed_form(net.activation, X @ w1.T)


def parameters(net):
    """theta = [w1 row-major, w2 row-major] in float64."""
    return np.concatenate([np.ravel(net.w1), np.ravel(net.w2)]).astype(np.float64)


# ---------------------------------------------------------------------- forward, J
def outputs(net, X):
    """y = g(X w1^T) w2^T, shape (P, No)."""
    _, _, w2 = _float64(net, X)
    A, _, _ = activation_values(net, X)
    return A @ w2.T


def residuals(student, X, teacher):
    """r = y_student - y_teacher, shape (P, No); zero when teacher is None."""
    y = outputs(student, X)
    return y - outputs(teacher, X) if teacher is not None else np.zeros_like(y)


def jacobian(net, X):
    """J (P*No x D), rows (mu, k) mu-major, from dy_k/dW1[j,i] = W2[k,j] g'(h_j) x_i and
    dy_k/dW2[k',j] = delta_kk' g(h_j)."""
    X, _, w2 = _float64(net, X)
    P, ni = X.shape
    no, nh = w2.shape
    A, G1, _ = activation_values(net, X)
    J1 = np.einsum("kj,mj,mi->mkji", w2, G1, X).reshape(P, no, nh * ni)
    J2 = np.einsum("kl,mj->mklj", np.eye(no), A).reshape(P, no, no * nh)
    return np.concatenate([J1, J2], axis=2).reshape(P * no, -1)


def output_second_derivatives(net, X):
    """T[mu, k] = d^2 y_k(x_mu) / dtheta^2, shape (P, No, D, D), entry by entry:

    d^2 y_k / dW1[j,i] dW1[j',i'] = delta_jj' W2[k,j] g''(h_j) x_i x_i',
    d^2 y_k / dW1[j,i] dW2[k',j'] = delta_kk' delta_jj' g'(h_j) x_i,
    d^2 y_k / dW2 dW2 = 0.
    """
    X, _, w2 = _float64(net, X)
    P, ni = X.shape
    no, nh = w2.shape
    d1 = nh * ni
    _, G1, G2 = activation_values(net, X)
    T = np.zeros((P, no, d1 + no * nh, d1 + no * nh))
    t11 = np.einsum("jl,kj,mj,mi,mn->mkjiln", np.eye(nh), w2, G2, X, X)
    T[:, :, :d1, :d1] = t11.reshape(P, no, d1, d1)
    t12 = np.einsum("kl,jn,mj,mi->mkjiln", np.eye(no), np.eye(nh), G1, X)
    T[:, :, :d1, d1:] = t12.reshape(P, no, d1, no * nh)
    T[:, :, d1:, :d1] = np.swapaxes(T[:, :, :d1, d1:], 2, 3)
    return T


# ---------------------------------------------------------------------- Hessian and friends
def hessian_at_optimum(net, X):
    """Gauss-Newton J^T J / P: the Hessian where the residuals vanish."""
    J = jacobian(net, X)
    return J.T @ J / np.shape(X)[0]


def hessian(student, X, teacher=None):
    """The full Hessian of the loss: J^T J / P + (1/P) sum_mu,k r_mu,k d^2 y_k / dtheta^2."""
    H = hessian_at_optimum(student, X)
    if teacher is not None:
        r = residuals(student, X, teacher)
        H += np.einsum("mk,mkab->ab", r, output_second_derivatives(student, X)) / np.shape(X)[0]
    return H


def hessian_blocks(student, X, teacher=None):
    """{"w1w1", "w1w2", "w2w2"}: the blocks of :func:`hessian` in theta order."""
    H = hessian(student, X, teacher)
    d1 = np.size(student.w1)
    return {"w1w1": H[:d1, :d1], "w1w2": H[:d1, d1:], "w2w2": H[d1:, d1:]}


def eigenvalues(student, X, teacher=None):
    """All eigenvalues of :func:`hessian`, ascending (numpy.linalg.eigvalsh)."""
    return np.linalg.eigvalsh(hessian(student, X, teacher))


def trace(student, X, teacher=None):
    return float(np.trace(hessian(student, X, teacher)))


def ntk(net, X):
    """Empirical NTK Gram K = J J^T / P, (P No x P No)."""
    J = jacobian(net, X)
    return J @ J.T / np.shape(X)[0]


def loss(student, X, teacher):
    """L = 1/(2P) sum_mu ||y_student - y_teacher||^2."""
    r = residuals(student, X, teacher)
    return 0.5 * float(np.sum(r * r)) / np.shape(X)[0]


def gradient(student, X, teacher):
    """dL/dtheta = J^T r / P (r flattened mu-major, like J's rows)."""
    r = residuals(student, X, teacher)
    return jacobian(student, X).T @ r.ravel() / np.shape(X)[0]


# ---------------------------------------------------------------------- dynamics
def network_from_parameters(theta, like):
    """A plain record (w1, w2, activation) shaped like ``like``: no fasthess object."""
    n1 = np.size(like.w1)
    return SimpleNamespace(w1=theta[:n1].reshape(np.shape(like.w1)),
                           w2=theta[n1:].reshape(np.shape(like.w2)), activation=like.activation)


def gradient_descent(student, teacher, X, lr, steps):
    """Plain full-batch GD, theta_{t+1} = theta_t - lr * gradient(theta_t), in float64.

    Returns the losses L_0 .. L_steps and the final parameters.
    """
    theta = parameters(student)
    losses = []
    for _ in range(steps):
        net = network_from_parameters(theta, student)
        losses.append(loss(net, X, teacher))
        theta = theta - lr * gradient(net, X, teacher)
    losses.append(loss(network_from_parameters(theta, student), X, teacher))
    return np.array(losses), theta


def _nonzero_modes(teacher, X, rtol):
    lam, V = np.linalg.eigh(hessian_at_optimum(teacher, X))
    rtol = lam.size * np.finfo(np.float64).eps if rtol is None else rtol
    return lam, V, np.abs(lam) > rtol * np.max(np.abs(lam))


def predicted_loss(teacher, X, delta0, lr, steps, rtol=None):
    """L_t = 1/2 sum_i lambda_i c_i^2 (1 - lr lambda_i)^(2t), c = V^T delta0 (THEORY.md d),
    over the eigenpairs of the twin Hessian at the optimum with |lambda| > rtol max|lambda|
    (default rtol = D eps: zero modes carry no loss)."""
    lam, V, keep = _nonzero_modes(teacher, X, rtol)
    c = V.T @ np.asarray(delta0, dtype=np.float64)
    t = np.arange(steps + 1)[:, None]
    terms = 0.5 * lam * c * c * (1.0 - lr * lam) ** (2 * t)
    return np.sum(terms[:, keep], axis=1)


def decay_rate(teacher, X, lr, rtol=None):
    """2 log max |1 - lr lambda_i| over the nonzero eigenvalues (THEORY.md d)."""
    lam, _, keep = _nonzero_modes(teacher, X, rtol)
    return 2.0 * math.log(np.max(np.abs(1.0 - lr * lam[keep])))


# ---------------------------------------------------------------------- finite differences
def loss_of_parameters(theta, like, X, Y_target):
    """L(theta) for a network shaped like ``like``, by a plain forward pass in float64."""
    n1 = np.size(like.w1)
    w1 = theta[:n1].reshape(np.shape(like.w1))
    w2 = theta[n1:].reshape(np.shape(like.w2))
    A, _, _ = activation_closed_form(like.activation, np.asarray(X, dtype=np.float64) @ w1.T)
    r = A @ w2.T - Y_target
    return 0.5 * np.sum(r ** 2) / np.shape(X)[0]


def outputs_of_parameters(theta, like, X):
    """y (P, No) for a network shaped like ``like`` with parameters theta, in float64."""
    n1 = np.size(like.w1)
    w1 = theta[:n1].reshape(np.shape(like.w1))
    w2 = theta[n1:].reshape(np.shape(like.w2))
    A, _, _ = activation_closed_form(like.activation, np.asarray(X, dtype=np.float64) @ w1.T)
    return A @ w2.T


def fd_jacobian(net, X, eps=1e-6):
    """Central differences of the outputs: J (P*No x D), rows (mu, k) mu-major."""
    theta = parameters(net)
    columns = []
    for a in range(theta.size):
        e = np.zeros_like(theta)
        e[a] = eps
        dy = (outputs_of_parameters(theta + e, net, X)
              - outputs_of_parameters(theta - e, net, X)) / (2 * eps)
        columns.append(dy.ravel())  # (P, No) in C order: row mu * No + k
    return np.stack(columns, axis=1)


def fd_gradient(student, X, teacher, eps=1e-6):
    """Central differences of the loss."""
    theta = parameters(student)
    Yt = outputs(teacher, X)
    g = np.empty_like(theta)
    for a in range(theta.size):
        e = np.zeros_like(theta)
        e[a] = eps
        g[a] = (loss_of_parameters(theta + e, student, X, Yt)
                - loss_of_parameters(theta - e, student, X, Yt)) / (2 * eps)
    return g


def fd_hessian(student, X, teacher, eps=1e-4):
    """Second central differences of the loss (4-point stencil for off-diagonal entries)."""
    theta = parameters(student)
    Yt = outputs(teacher, X)
    D = theta.size
    H = np.empty((D, D))

    def L(t):
        return loss_of_parameters(t, student, X, Yt)

    L0 = L(theta)
    for a in range(D):
        ea = np.zeros(D)
        ea[a] = eps
        H[a, a] = (L(theta + ea) - 2 * L0 + L(theta - ea)) / eps**2
        for b in range(a + 1, D):
            eb = np.zeros(D)
            eb[b] = eps
            v = (L(theta + ea + eb) - L(theta + ea - eb) - L(theta - ea + eb)
                 + L(theta - ea - eb)) / (4 * eps**2)
            H[a, b] = H[b, a] = v
    return H


# ---------------------------------------------------------------------- population (THEORY.md g)
def fd_jacobian_of(gradient, theta, eps=1e-5):
    """Central differences of a gradient function: column a = (grad(t + eps e_a) -
    grad(t - eps e_a)) / (2 eps). With ``gradient`` the closed-form population gradient
    (itself checked against differences of the population loss and Monte Carlo) this is
    the population Hessian: truncation ~eps^2 |grad'''|, cancellation ~1e-16 / eps."""
    theta = np.asarray(theta, dtype=np.float64)
    D = theta.size
    H = np.empty((D, D))
    for a in range(D):
        e = np.zeros(D)
        e[a] = eps
        H[:, a] = (np.asarray(gradient(theta + e)) - np.asarray(gradient(theta - e))) / (2 * eps)
    return H


def monte_carlo_hessian(student, teacher, n_samples, rng, chunk=2000):
    """(1/P) sum_mu [J_mu^T J_mu + sum_k r_mu,k d^2 y_k] over P Gaussian inputs, by the
    twin :func:`hessian` in chunks (the sampled estimate of the population Hessian)."""
    D = parameters(student).size
    H = np.zeros((D, D))
    done = 0
    while done < n_samples:
        p = min(chunk, n_samples - done)
        X = rng.standard_normal((p, student.w1.shape[1]))
        H += p * hessian(student, X, teacher)
        done += p
    return H / n_samples
