"""The population Hessian H_inf = E_x[d^2 L / dtheta^2], x ~ N(0, I): dense, products, trace.

At the optimum H_inf = E[J^T J] is described by the student's pair coefficients
(:class:`fasthess.population.PopulationCoefficients`, THEORY.md f). Off the optimum it
gains the residual term R = E[sum_k r_k d^2 y_k], a sum over pairs (student unit, any
unit of student or teacher) described by
:class:`fasthess.population_objective.ResidualCoefficients` (THEORY.md g):
:class:`PopulationHessian` holds both, and gives the dense matrix
(:func:`dense_hessian`), products (:func:`population_matmat`) and the trace; the
residual's own parts are in :mod:`fasthess.population_residual`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _config
from ._features import check_net
from ._runtime import compute_budget, pieces_for, plan_budget, planned_threads
from ._validation import check_dtype
from .population import check_coefficients, pair_values, population_coefficients
from .population_objective import ResidualCoefficients, residual_coefficients, stacked_units
from .population_residual import add_residual_dense, check_columns, fused_matmat, residual_trace

__all__ = ["PopulationHessian", "population_hessian", "dense_hessian", "population_matmat",
           "assemble_dense", "hessian_matmat", "population_trace", "dense_bytes",
           "DENSE_POPULATION_HINT"]

#: What to use instead of a dense population Hessian that does not fit.
DENSE_POPULATION_HINT = (
    "for X = fasthess.POPULATION, fasthess.eigenvalues(net, fasthess.POPULATION) gives every "
    "eigenvalue, with multiplicities, by the exact reduction to the span of the weights "
    "(method='reduced', whenever n_in exceeds the rank of the student's and teacher's "
    "stacked w1), and fasthess.hessian_operator, fasthess.eigsh and "
    "fasthess.spectral_density work matrix-free")


# ---------------------------------------------------------------------- dense
def dense_bytes(net, dtype=np.float64) -> int:
    """Bytes of the dense D x D population Hessian of ``net`` in ``dtype``.

    Parameters
    ----------
    net : TwoLayerNet
    dtype : float64 or float32

    Returns
    -------
    int

    Examples
    --------
    >>> import fasthess as fh
    >>> from fasthess.population_hessian import dense_bytes
    >>> dense_bytes(fh.TwoLayerNet.random(10, 10, rng=0))    # D = 110
    96800
    """
    n = check_net(net).n_params
    return n * n * check_dtype(dtype).itemsize


def assemble_dense(coefs, net, out) -> np.ndarray:
    """Write the D x D population Hessian into ``out`` (O(D^2) writes, no samples).

    Parameters
    ----------
    coefs : PopulationCoefficients
        From ``population_coefficients(net, dtype=out.dtype)``.
    net : TwoLayerNet
    out : ndarray (D, D), C-contiguous, writable, of dtype ``coefs.dtype``
        theta order: w1 row-major, then w2 row-major (D = Nh Ni + No Nh).

    Returns
    -------
    out, exactly symmetric.

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> from fasthess.population import population_coefficients
    >>> from fasthess.population_hessian import assemble_dense
    >>> net = fh.TwoLayerNet.random(3, 2, rng=0)
    >>> H = assemble_dense(population_coefficients(net), net, np.empty((8, 8)))
    >>> bool(np.array_equal(H, H.T)), bool(np.linalg.eigvalsh(H).min() > 0)
    (True, True)
    """
    net = check_coefficients(coefs, net)
    n = net.n_params
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy array, got {type(out).__name__}")
    if out.shape != (n, n):
        raise ValueError(f"out must have shape (D, D) = ({n}, {n}), got {out.shape}")
    if out.dtype != coefs.dtype:
        raise TypeError(f"out must have the coefficients' dtype {coefs.dtype}, got {out.dtype}")
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise ValueError("out must be C-contiguous and writable")
    from ._kernels.population import dense_w1w1, dense_w1w2_w2w2

    w1 = np.ascontiguousarray(net.w1, dtype=coefs.dtype)
    w2 = np.ascontiguousarray(net.w2, dtype=coefs.dtype)
    dense_w1w1(w1, coefs.norms, coefs.Q, coefs.qa, coefs.qm11, coefs.qm12, coefs.qm22,
               coefs.par_indptr, coefs.par_indices, coefs.par_cos, coefs.par_sin, out)
    dense_w1w2_w2w2(w1, w2, coefs.a, coefs.c, coefs.G, out)
    return out


# ---------------------------------------------------------------------- product
def hessian_matmat(coefs, net, V) -> np.ndarray:
    """H_inf @ V, matrix-free in O(Nh^2 (Ni + No)) per column (THEORY.md f).

    Per block of columns: three GEMMs of Nh x Nh x Ni (K = W1 V1^T, (Q o a) V1,
    B W1), four of Nh x Nh x No, and one parallel pass of Hadamard products over
    the Nh x Nh coefficient matrices. Memory: the output, a copy of a block of V,
    and two Nh x Nh x (block) work arrays (``_config.POP_PRODUCT_BLOCK_BYTES``).

    Parameters
    ----------
    coefs : PopulationCoefficients
    net : TwoLayerNet
    V : array (D,) or (D, m)
        Cast to ``coefs.dtype``.

    Returns
    -------
    ndarray of V's shape and ``coefs.dtype``.

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> from fasthess.population import population_coefficients
    >>> from fasthess.population_hessian import assemble_dense, hessian_matmat
    >>> net = fh.TwoLayerNet.random(4, 3, n_out=2, rng=0)
    >>> coefs = population_coefficients(net)
    >>> H = assemble_dense(coefs, net, np.empty((18, 18)))
    >>> V = np.random.default_rng(1).standard_normal((18, 5))
    >>> bool(np.allclose(hessian_matmat(coefs, net, V), H @ V, rtol=0, atol=1e-14))
    True
    """
    net = check_coefficients(coefs, net)
    V = check_columns(V, net.n_params)
    n = net.n_params
    vector = V.ndim == 1
    V2d = V.reshape(n, -1)
    dt = coefs.dtype
    n_hidden = net.n_hidden
    n_cols = V2d.shape[1]
    out = np.empty((n, n_cols), dtype=dt)
    if n_cols == 0:
        return out.reshape(V.shape)
    block = int(max(1, min(n_cols, _config.POP_PRODUCT_BLOCK_BYTES
                           // (2 * n_hidden**2 * dt.itemsize))))
    w1 = np.ascontiguousarray(net.w1, dtype=dt)
    w2 = np.ascontiguousarray(net.w2, dtype=dt)
    work = (np.empty(n_hidden * block * n_hidden, dtype=dt),
            np.empty(n_hidden * block * n_hidden, dtype=dt))
    # the Hadamard pass (O(Nh^2) per column, memory-bound) runs on the calling thread;
    # the three big GEMMs (O(Nh^2 Ni) each) are split into row pieces fixed by their
    # size and the cores (so the result is too), handed to free threads
    planned = planned_threads(n_hidden * n_hidden * w1.shape[1] * block, plan_budget())
    split = (planned, min(planned, compute_budget()))
    for c0 in range(0, n_cols, block):
        c1 = min(n_cols, c0 + block)
        Vb = np.ascontiguousarray(V2d[:, c0:c1], dtype=dt)
        if c0 == 0 and c1 == n_cols:
            _product_block(coefs, w1, w2, Vb, out, work, split)
        else:
            ob = np.empty((n, c1 - c0), dtype=dt)
            _product_block(coefs, w1, w2, Vb, ob, work, split)
            out[:, c0:c1] = ob
    return out.reshape(n) if vector else out


def _product_block(coefs, w1, w2, Vb, out, work, split):
    """out = H_inf Vb for one block of columns (all arrays C-contiguous, one dtype).

    ``split``: (planned threads, threads to run the pieces on) of the big GEMMs."""
    from .gemm import gemm_into

    planned, threads = split

    def gemm(dst, a, b):  # dst = a @ b in row pieces
        gemm_into(dst, a, b, b_transposed=False, beta=0.0,
                  pieces=pieces_for(planned, dst.shape[0]), threads=threads)

    from ._kernels.population import (
        add_w1_terms,
        gather_diagonal,
        parallel_pairs_product,
        product_hadamard,
    )

    n_hidden, n_in = w1.shape
    n_out = w2.shape[0]
    m = Vb.shape[1]
    d1 = n_hidden * n_in
    V1 = Vb[:d1].reshape(n_hidden, n_in, m)
    V2 = Vb[d1:].reshape(n_out, n_hidden, m)
    K = work[0][: n_hidden * m * n_hidden].reshape(n_hidden, m * n_hidden)
    T = work[1][: n_hidden * m * n_hidden].reshape(n_hidden, m * n_hidden)
    # K[j, c, k] = w_j . v_k ; T[j, c, k] = sum_m W2[m, j] V2[m, k, c]
    gemm(K, w1, np.ascontiguousarray(V1.transpose(1, 2, 0)).reshape(n_in, m * n_hidden))
    np.matmul(w2.T, np.ascontiguousarray(V2.transpose(0, 2, 1)).reshape(n_out, m * n_hidden),
              out=T)
    K3 = K.reshape(n_hidden, m, n_hidden)
    T3 = T.reshape(n_hidden, m, n_hidden)
    d = np.empty((n_hidden, m), dtype=Vb.dtype)
    gather_diagonal(K3, d)
    r = np.empty((n_hidden, m), dtype=Vb.dtype)
    product_hadamard(K3, T3, d, coefs.a, coefs.c, coefs.qm11, coefs.qm12, coefs.qm22, r)
    # w1 part: (Q o a) V1 + B W1 + diag(r) W1 (+ orthonormal-basis relu pairs)
    out1 = out[:d1].reshape(n_hidden, n_in * m)
    gemm(out1, coefs.qa, Vb[:d1].reshape(n_hidden, n_in * m))
    BW = np.empty((n_hidden * m, n_in), dtype=Vb.dtype)
    gemm(BW, T.reshape(n_hidden * m, n_hidden), w1)
    add_w1_terms(out1.reshape(n_hidden, n_in, m), BW.reshape(n_hidden, m, n_in), r, w1)
    if coefs.par_indices.size:
        parallel_pairs_product(w1, coefs.norms, coefs.Q, coefs.par_indptr, coefs.par_indices,
                               coefs.par_cos, coefs.par_sin, V1, out1.reshape(n_hidden, n_in, m))
    # w2 part: out2[m', k, c] = sum_j W2[m', j] (c_jk d_j + a_jk K_kj) + (V2 G)[m', k]
    aKW = (K.reshape(n_hidden * m, n_hidden) @ w2.T).reshape(n_hidden, m, n_out)
    dW2 = (w2[None, :, :] * d.T[:, None, :]).reshape(m * n_out, n_hidden)
    cterm = (dW2 @ coefs.c).reshape(m, n_out, n_hidden)
    gterm = coefs.G @ np.ascontiguousarray(V2.transpose(1, 0, 2)).reshape(n_hidden, n_out * m)
    out2 = out[d1:].reshape(n_out, n_hidden, m)
    out2[...] = (aKW.transpose(2, 0, 1) + cterm.transpose(1, 2, 0)
                 + gterm.reshape(n_hidden, n_out, m).transpose(1, 0, 2))


# ---------------------------------------------------------------------- trace
def population_trace(coefs, net, teacher=None) -> float:
    """tr H_inf in closed form (at ``teacher``; None: the optimum).

    tr = sum_j Q_jj (Ni a_jj + |w_j|^2 (m11 + 2 m12 + m22)_jj) + No sum_j G_jj.
    With ``coefs=None`` only the Nh diagonal pairs are computed (O(Nh Ni) plus Nh
    one-unit expectations), never the Nh x Nh matrices.

    Parameters
    ----------
    coefs : PopulationCoefficients or None
    net : TwoLayerNet
    teacher : TwoLayerNet or None
        Off the optimum the residual term's trace is added (pairs of student and
        teacher units, O((Nh + M)^2 Ni)).

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> from fasthess.population_hessian import population_trace
    >>> net = fh.TwoLayerNet(np.eye(2), np.ones((1, 2)), "linear")
    >>> population_trace(None, net)       # Q_jj Ni + G_jj per unit: 2 (1 * 2 + 1)
    6.0
    """
    if coefs is not None:
        net = check_coefficients(coefs, net)
        diag = np.arange(net.n_hidden)
        a = coefs.a[diag, diag].astype(np.float64)
        # m11_jj = m22_jj
        m = 2.0 * (coefs.m11[diag, diag] + coefs.m12[diag, diag]).astype(np.float64)
        G = coefs.G[diag, diag].astype(np.float64)
        norms = coefs.norms.astype(np.float64)
    else:
        net = check_net(net)
        w1 = np.asarray(net.w1, dtype=np.float64)
        norms = np.sqrt(np.einsum("ji,ji->j", w1, w1))
        diag = np.arange(net.n_hidden, dtype=np.int64)
        ones, zeros = np.ones(diag.size), np.zeros(diag.size)
        values, _, _, _ = pair_values(net.activation, diag, diag, norms, ones, zeros)
        a, G = values[:, 0], values[:, 1]
        m = values[:, 4] + 2.0 * values[:, 5] + values[:, 6]
    w2 = np.asarray(net.w2, dtype=np.float64)
    q_diag = np.einsum("mj,mj->j", w2, w2)
    value = float(np.sum(q_diag * (net.n_in * a + norms * norms * m)) + net.n_out * np.sum(G))
    stack = stacked_units(net, teacher)
    if stack is not None:
        value += residual_trace(residual_coefficients(net, *stack), net.n_in)
    return value




# ---------------------------------------------------------------------- off the optimum
@dataclass(frozen=True, eq=False)
class PopulationHessian:
    """H_inf of ``net`` against ``teacher``: Gauss-Newton part plus residual term.

    Attributes
    ----------
    net : TwoLayerNet
        The student, the point where H is taken.
    coefs : PopulationCoefficients
        The student's pair coefficients (the E[J^T J] part), in the working dtype.
    residual : ResidualCoefficients or None
        The residual term (float64); None at the optimum.
    """

    net: object
    coefs: object
    residual: ResidualCoefficients | None

    @property
    def dtype(self) -> np.dtype:
        return self.coefs.dtype


def population_hessian(net, teacher=None, dtype=np.float64) -> PopulationHessian:
    """The :class:`PopulationHessian` of ``net`` at ``teacher`` (None: the optimum).

    Examples
    --------
    >>> import fasthess as fh
    >>> from fasthess.population_hessian import population_hessian
    >>> t = fh.TwoLayerNet.random(4, 3, rng=0)
    >>> population_hessian(fh.perturb(t, 0.3, rng=1), t).residual.rho.shape
    (3,)
    >>> population_hessian(t, t).residual is None
    True
    """
    net = check_net(net)
    dt = check_dtype(dtype)
    stack = stacked_units(net, teacher)
    residual = None if stack is None else residual_coefficients(net, *stack)
    return PopulationHessian(net, population_coefficients(net, dtype=dt), residual)


def dense_hessian(ph: PopulationHessian) -> np.ndarray:
    """The D x D population Hessian of ``ph`` (exactly symmetric), in its dtype.

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> from fasthess.population_hessian import dense_hessian, population_hessian
    >>> t = fh.TwoLayerNet.random(3, 2, rng=0)
    >>> H = dense_hessian(population_hessian(fh.perturb(t, 0.5, rng=1), t))
    >>> H.shape, bool(np.array_equal(H, H.T))
    ((8, 8), True)
    """
    net = ph.net
    d = net.n_params
    out = assemble_dense(ph.coefs, net, np.empty((d, d), dtype=ph.dtype))
    if ph.residual is not None:
        add_residual_dense(ph.residual, net.n_in, net.n_out, out)
    return out


def population_matmat(ph: PopulationHessian, V) -> np.ndarray:
    """H_inf @ V for ``ph``: :func:`hessian_matmat` at the optimum, with the residual
    term folded into its GEMMs off it (O(Nh (Nh + M) (Ni + No)) per column).

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> from fasthess.population_hessian import (dense_hessian, population_hessian,
    ...                                          population_matmat)
    >>> t = fh.TwoLayerNet.random(4, 3, n_out=2, rng=0)
    >>> ph = population_hessian(fh.perturb(t, 0.3, rng=1), t)
    >>> V = np.random.default_rng(2).standard_normal((18, 3))
    >>> bool(np.allclose(population_matmat(ph, V), dense_hessian(ph) @ V, atol=1e-13))
    True
    """
    if ph.residual is None:
        return hessian_matmat(ph.coefs, ph.net, V)
    return fused_matmat(ph.net, ph.coefs, ph.residual, V)
