"""Slow, obvious oracles written independently of fasthess's kernels.

Explicit loops / einsum Jacobians and finite differences of the loss, in float64.
They use fasthess only for the activation values g, g', g'' (checked separately
against closed forms in test_network.py).
"""
from __future__ import annotations

import numpy as np


def activation_values(net, X):
    pre = np.asarray(X, dtype=np.float64) @ net.w1.astype(np.float64).T
    return net.activation.evaluate(pre)


def jacobian(net, X):
    """J (P*No x D), rows (mu, k) mu-major, from dy_k/dW1[j,i] = W2[k,j] g'(h_j) x_i and
    dy_k/dW2[k',j] = delta_kk' g(h_j)."""
    X = np.asarray(X, dtype=np.float64)
    P, ni = X.shape
    no, nh = net.w2.shape
    A, G1, _ = activation_values(net, X)
    J1 = np.einsum("kj,mj,mi->mkji", net.w2.astype(np.float64), G1, X).reshape(P, no, nh * ni)
    J2 = np.einsum("kl,mj->mklj", np.eye(no), A).reshape(P, no, no * nh)
    return np.concatenate([J1, J2], axis=2).reshape(P * no, -1)


def hessian_at_optimum(net, X):
    J = jacobian(net, X)
    return J.T @ J / np.asarray(X).shape[0]


def loss(params, like, X, Y_target):
    """L(theta) computed by a plain loop-free forward pass in float64."""
    n1 = like.w1.size
    w1 = params[:n1].reshape(like.w1.shape)
    w2 = params[n1:].reshape(like.w2.shape)
    pre = np.asarray(X, dtype=np.float64) @ w1.T
    A, _, _ = like.activation.evaluate(pre)
    r = A @ w2.T - Y_target
    return 0.5 * np.sum(r ** 2) / X.shape[0]


def teacher_outputs(teacher, X):
    A, _, _ = activation_values(teacher, X)
    return A @ teacher.w2.astype(np.float64).T


def fd_gradient(student, X, teacher, eps=1e-6):
    """Central differences of the loss."""
    theta = student.parameters().astype(np.float64)
    Yt = teacher_outputs(teacher, X)
    g = np.empty_like(theta)
    for a in range(theta.size):
        e = np.zeros_like(theta)
        e[a] = eps
        g[a] = (loss(theta + e, student, X, Yt) - loss(theta - e, student, X, Yt)) / (2 * eps)
    return g


def fd_hessian(student, X, teacher, eps=1e-4):
    """Second central differences of the loss (4-point stencil for off-diagonal entries)."""
    theta = student.parameters().astype(np.float64)
    Yt = teacher_outputs(teacher, X)
    D = theta.size
    H = np.empty((D, D))

    def L(t):
        return loss(t, student, X, Yt)

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
