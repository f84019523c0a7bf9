"""The pair coefficients of the population Hessian, x ~ N(0, I) (THEORY.md f, g).

P -> infinity without samples: every entry of H_inf is an expectation over one pair of
pre-activations (h_j, h_k) = (w_j . x, w_k . x), so the whole Hessian is described by a
few Nh x Nh coefficient matrices (:class:`PopulationCoefficients`):

    w1w1 tile (j, k) = Q_jk (a_jk I_Ni + U_jk M_jk U_jk^T),   U_jk = [w_j, w_k]
    w1w2 [(j, i), (m, k)] = W2[m, j] (c_jk w_j + a_jk w_k)_i
    w2w2 = I_No (x) G

with Q = W2^T W2, a_jk = E[g'(h_j) g'(h_k)], c_jk = E[g''(h_j) g(h_k)],
G_jk = E[g(h_j) g(h_k)] and M_jk = [[E[g'''_j g'_k], E[g''_j g''_k]], [., E[g'_j g'''_k]]].

How the coefficients are computed, per activation:

* ``"linear"``: exactly (a = 1, c = 0, G = W1 W1^T, M = 0).
* ``"erf"`` (erf(z / sqrt 2)): closed forms (arcsin kernel, Woodbury for M).
* ``"relu"``: closed forms in polar coordinates in the plane of (w_j, w_k).
* polynomials (:class:`~fasthess.Polynomial`, ``"quadratic"``, ...): 2-D Gauss-Hermite
  with degree + 2 nodes per axis, exact for these polynomial integrands.
* ``"tanh"`` and :class:`~fasthess.CustomActivation`: 2-D Gauss-Hermite with the node
  count doubled from ``_config.POP_QUAD_START_NODES`` until the coefficients of the
  units with the largest norms change by at most ``_config.POP_QUAD_RTOL`` relative to
  their Hessian block (:attr:`PopulationCoefficients.quadrature_change` records it).

g''' and g'''' are never evaluated (Stein's lemma turns them into g''; see the kernels
module). :func:`pair_matrices` gives the same coefficients for any stack of rows (the
student's and the teacher's hidden units together, off the optimum), with one more
matrix, alpha_jk = E[g''''(h_j) g(h_k)], for the residual term.

Where they are used: the dense matrix, the structured product and the trace in
:mod:`fasthess.population_hessian`; the loss, the gradient and the residual
coefficients in :mod:`fasthess.population_objective`; the exact reduction to the span
of the weights in :mod:`fasthess.population_span`. The functions here are internal:
they do not validate the network beyond its type.
"""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import numpy as np

from . import _config
from ._kernels.activation import ERF, LINEAR, POLYNOMIAL, RELU
from ._features import check_net
from ._validation import check_dtype
from ._runtime import compute_budget, plan_budget, planned_threads, run_pieces
from .gemm import gemm_into

__all__ = [
    "PopulationCoefficients",
    "population_coefficients",
    "PairMatrices",
    "pair_matrices",
    "pair_values",
    "check_coefficients",
    "N_PAIR_VALUES",
]

#: Columns of the per-pair values (see the kernels module): a, G, cjk, ckj, m11, m12,
#: m22, ajk, akj.
N_PAIR_VALUES = 9

@dataclass(frozen=True, eq=False)
class PopulationCoefficients:
    """The Nh x Nh coefficient matrices that describe H_inf (see the module docstring).

    Attributes
    ----------
    shape : tuple (n_in, n_hidden, n_out) of the network they belong to.
    Q : W2^T W2.
    a : E[g'(h_j) g'(h_k)] (symmetric).
    c : E[g''(h_j) g(h_k)], the first-order Stein coefficient of the w1w2 block.
    G : E[g(h_j) g(h_k)] (symmetric); the w2w2 block is I_No (x) G.
    m11, m12 : the tile matrices M_jk = [[m11, m12], [m12, m22]] with m22 = m11.T
        (m12 symmetric), in the basis U_jk = [w_j, w_k].
    qa, qm11, qm12, qm22 : Q o a, Q o m11, Q o m12, Q o m11^T (the product form).
    norms : |w_j|, shape (Nh,).
    par_indptr, par_indices, par_cos, par_sin : CSR list (row j) of the relu pairs
        whose tile lives in an orthonormal basis (nearly parallel rows); their m11,
        m12 entries are 0. Empty for every other activation.
    method : how the coefficients were computed.
    quadrature_nodes : Gauss-Hermite nodes per axis, or None (closed form).
    quadrature_change : for the doubling rule, the largest change from n to 2n nodes
        relative to the Hessian block's scale (a bound on the error); 0.0 for the exact
        polynomial rule; None otherwise.
    """

    shape: tuple
    Q: np.ndarray
    a: np.ndarray
    c: np.ndarray
    G: np.ndarray
    m11: np.ndarray
    m12: np.ndarray
    qa: np.ndarray
    qm11: np.ndarray
    qm12: np.ndarray
    qm22: np.ndarray
    norms: np.ndarray
    par_indptr: np.ndarray
    par_indices: np.ndarray
    par_cos: np.ndarray
    par_sin: np.ndarray
    method: str
    quadrature_nodes: int | None
    quadrature_change: float | None

    @property
    def m22(self) -> np.ndarray:
        """E[g'(h_j) g'''(h_k)] = m11 transposed."""
        return self.m11.T

    @property
    def dtype(self) -> np.dtype:
        return self.a.dtype

    @property
    def n_params(self) -> int:
        n_in, n_hidden, n_out = self.shape
        return n_hidden * (n_in + n_out)


# ---------------------------------------------------------------------- coefficients
def population_coefficients(net, dtype=np.float64) -> PopulationCoefficients:
    """The coefficient matrices of the population Hessian of ``net`` at the optimum.

    Parameters
    ----------
    net : TwoLayerNet
    dtype : float64 or float32
        Precision of the returned arrays; they are always computed in float64.

    Returns
    -------
    PopulationCoefficients

    Raises
    ------
    ValueError
        If the quadrature for tanh or a custom activation does not converge to
        ``_config.POP_QUAD_RTOL`` within ``_config.POP_QUAD_MAX_NODES`` nodes per axis, or the
        activation's values at the nodes are not finite.

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> from fasthess.population import population_coefficients
    >>> net = fh.TwoLayerNet(np.eye(2), np.ones((1, 2)), "linear")
    >>> coefs = population_coefficients(net)
    >>> coefs.G                      # E[h_j h_k] = W1 W1^T
    array([[1., 0.],
           [0., 1.]])
    >>> population_coefficients(fh.TwoLayerNet.random(3, 4, rng=0)).method
    'closed form (erf)'
    """
    net = check_net(net)
    dt = check_dtype(dtype)
    w2 = np.ascontiguousarray(net.w2, dtype=np.float64)
    pairs = pair_matrices(net.activation, net.w1)
    a, G, cmat, m11, m12 = pairs.mats[:5]
    Q = w2.T @ w2
    Q = 0.5 * (Q + Q.T)  # exactly symmetric (BLAS may round the two triangles apart)
    indptr, indices, par_cos, par_sin = _parallel_pairs(
        net.activation, pairs.pj, pairs.pk, pairs.norms, pairs.cosines, pairs.sines,
        net.n_hidden)

    def cast(x):
        return np.ascontiguousarray(x, dtype=dt)

    return PopulationCoefficients(
        shape=net.shape, Q=cast(Q), a=cast(a), c=cast(cmat), G=cast(G), m11=cast(m11),
        m12=cast(m12), qa=cast(Q * a), qm11=cast(Q * m11), qm12=cast(Q * m12),
        qm22=cast(Q * m11.T), norms=cast(pairs.norms), par_indptr=indptr,
        par_indices=indices, par_cos=cast(par_cos), par_sin=cast(par_sin),
        method=pairs.method, quadrature_nodes=pairs.nodes, quadrature_change=pairs.change)


@dataclass
class PairMatrices:
    """All-pairs coefficients of the rows of a weight matrix (float64).

    ``mats`` (6, n, n): a, G, c, m11, m12, alpha (``alpha[j, k] = E[g''''(h_j) g(h_k)]``,
    the residual term's; 0 for the relu pairs listed in the parallel arrays).
    """

    mats: np.ndarray
    norms: np.ndarray
    pj: np.ndarray
    pk: np.ndarray
    cosines: np.ndarray
    sines: np.ndarray
    method: str
    nodes: int | None
    change: float | None


def pair_matrices(act, w1, residual: bool = False) -> PairMatrices:
    """The n x n coefficient matrices of every pair of the n rows of w1.

    ``residual``: the quadrature's convergence check covers alpha too (off the optimum).
    """
    from ._kernels.population import pair_geometry, scatter_pairs

    w1 = np.ascontiguousarray(w1, dtype=np.float64)
    n_rows = w1.shape[0]
    norms = np.sqrt(np.einsum("ji,ji->j", w1, w1))
    gram = np.empty((n_rows, n_rows))
    gemm_into(gram, w1, w1, b_transposed=True, beta=0.0)
    pj, pk = _upper_pairs(n_rows)
    cosines = np.empty(pj.size)
    sines = np.empty(pj.size)
    pair_geometry(w1, gram, norms, pj, pk, _config.POP_REFINE_COS, cosines, sines)
    values, method, nodes, change = pair_values(act, pj, pk, norms, cosines, sines, residual)
    mats = np.zeros((6, n_rows, n_rows))
    scatter_pairs(pj, pk, values, mats)
    return PairMatrices(mats, norms, pj, pk, cosines, sines, method, nodes, change)


def _upper_pairs(n):
    """Index arrays (pj, pk) of all pairs j <= k of n items (row-major)."""
    pj, pk = np.triu_indices(n)
    return pj.astype(np.int64), pk.astype(np.int64)


def pair_values(act, pj, pk, norms, cosines, sines, residual=False):
    """(values (n_pairs, 9), method, nodes, change) for the pairs (see the kernels)."""
    from ._kernels import population as kp

    out = np.empty((pj.size, N_PAIR_VALUES))
    # a CustomActivation has code -1, so it falls through to the doubling quadrature
    if act.code == LINEAR:
        out[:] = 0.0
        out[:, 0] = 1.0
        out[:, 1] = norms[pj] * norms[pk] * cosines
        return out, "exact (linear)", None, None
    if act.code == ERF:
        kp.erf_pairs(pj, pk, norms, cosines, sines, out)
        return out, "closed form (erf)", None, None
    if act.code == RELU:
        kp.relu_pairs(pj, pk, norms, cosines, sines, _config.POP_PARALLEL_SINE, out)
        return out, "closed form (relu, polar)", None, None
    if act.code == POLYNOMIAL:
        # per axis the integrands have degree <= 2 deg; n nodes integrate 2n - 1 exactly
        n = act.degree + 2
        _quadrature_values(act, pj, pk, norms, cosines, sines, n, 0.0, out)
        return out, f"Gauss-Hermite, {n} nodes per axis (exact for degree {act.degree})", n, 0.0
    n, change = _converged_nodes(act, norms, pj, pk, cosines, sines, residual)
    _quadrature_values(act, pj, pk, norms, cosines, sines, n, _config.POP_QUAD_WEIGHT_FLOOR, out)
    return out, f"Gauss-Hermite, {n} nodes per axis (doubling change {change:.1e})", n, change


@functools.lru_cache(maxsize=16)
def _gauss_hermite_2d(n, floor):
    """Tensor Gauss-Hermite rule for N(0, I_2): (x, z1, z2, index of z1 in x, weights).

    Weights sum to 1; tensor nodes with w_a w_b < floor are dropped (floor = 0 keeps
    all, as the exact polynomial rule needs). scipy's nodes are accurate to ~1e-14 at
    every n (Golub-Welsch up to 150 nodes, asymptotic expansions beyond).
    """
    from scipy.special import roots_hermitenorm

    x, w = roots_hermitenorm(n)
    w = w / w.sum()
    wa, wb = np.meshgrid(w, w, indexing="ij")
    keep = (wa * wb >= floor).ravel() if floor > 0 else np.ones(n * n, dtype=bool)
    ia, ib = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    ia, ib = ia.ravel()[keep], ib.ravel()[keep]
    weights = (wa.ravel() * wb.ravel())[keep]
    weights = weights / weights.sum()
    arrays = (x, x[ia], x[ib], ia.astype(np.int64), weights)
    for arr in arrays:
        arr.setflags(write=False)
    return arrays


def _quadrature_values(act, pj, pk, norms, cosines, sines, n, floor, out):
    """Pair coefficients by the 2-D rule with n nodes per axis, into out (n_pairs, 9)."""
    from ._kernels import population as kp

    x, z1, z2, node_1d, weights = _gauss_hermite_2d(n, floor)
    unit_h = np.ascontiguousarray(norms[:, None] * x[None, :])
    unit_g = [np.empty_like(unit_h) for _ in range(3)]
    act.apply(unit_h, *unit_g)
    n_nodes = weights.size
    # pairs in blocks, independent of each other (so the result does not depend on the
    # threads): as many blocks as the work is worth on every core, each at most
    # _config.POP_QUAD_BLOCK_BYTES of node values, one thread's buffers per block
    planned = planned_threads(pj.size * n_nodes, plan_budget(), _config.MIN_ACTIVATIONS_PER_THREAD)
    block = int(max(1, min(-(-pj.size // planned),
                           _config.POP_QUAD_BLOCK_BYTES // (4 * 8 * n_nodes))))
    starts = range(0, pj.size, block)
    local = threading.local()

    def piece(i):
        b0 = starts[i]
        b1 = min(pj.size, b0 + block)
        if not hasattr(local, "hk"):
            local.hk = np.empty((block, n_nodes))
            local.gk = [np.empty((block, n_nodes)) for _ in range(3)]
        bj, bk = pj[b0:b1], pk[b0:b1]
        h = local.hk[: b1 - b0]
        g = [arr[: b1 - b0] for arr in local.gk]
        kp.quadrature_points(bk, norms, cosines[b0:b1], sines[b0:b1], z1, z2, h)
        act.apply(h, *g)
        kp.quadrature_pairs(bj, bk, norms, cosines[b0:b1], node_1d, weights, unit_g[0],
                            unit_g[1], unit_g[2], unit_h, h, g[0], g[1], g[2], out[b0:b1])

    run_pieces(piece, len(starts), min(planned, compute_budget()))
    if not np.all(np.isfinite(out)):
        raise ValueError(
            f"activation {act.name!r}: its values at the Gauss-Hermite nodes (|z| up to "
            f"{np.abs(x).max():.0f} |w_j|) are not all finite, so the population "
            f"expectations cannot be computed; use an activation that stays finite there")


def _block_scaled(values, pj, pk, norms, residual):
    """The pair values scaled as they enter H, grouped by block (for convergence checks).

    w1w1: a, |w_j|^2 m11, |w_j||w_k| m12, |w_k|^2 m22; w1w2: a |w_k|, cjk |w_j|,
    ckj |w_k|, a |w_j|; w2w2: G. With ``residual``, the residual tile's cjk, ckj,
    |w_j|^2 ajk, |w_k|^2 akj as a fourth group.
    """
    nj, nk = norms[pj], norms[pk]
    tile = np.stack([values[:, 0], nj * nj * values[:, 4], nj * nk * values[:, 5],
                     nk * nk * values[:, 6]])
    w12 = np.stack([values[:, 0] * nk, values[:, 2] * nj, values[:, 3] * nk,
                    values[:, 0] * nj])
    groups = [tile, w12, values[:, 1:2].T]
    if residual:
        groups.append(np.stack([values[:, 2], values[:, 3], nj * nj * values[:, 7],
                                nk * nk * values[:, 8]]))
    return groups


def _converged_nodes(act, norms, pj_all, pk_all, cos_all, sin_all, residual=False):
    """Double the node count until the check pairs move by <= _config.POP_QUAD_RTOL (see module)."""
    top = np.sort(np.argsort(-norms, kind="stable")[:_config.POP_QUAD_CHECK_UNITS])
    chosen = np.isin(pj_all, top) & np.isin(pk_all, top)
    pj, pk = pj_all[chosen], pk_all[chosen]
    cosines, sines = cos_all[chosen], sin_all[chosen]

    def values(n):
        out = np.empty((pj.size, N_PAIR_VALUES))
        _quadrature_values(act, pj, pk, norms, cosines, sines, n,
                           _config.POP_QUAD_WEIGHT_FLOOR, out)
        return _block_scaled(out, pj, pk, norms, residual)

    n = _config.POP_QUAD_START_NODES
    previous = values(n)
    while True:
        current = values(2 * n)
        change = 0.0
        for old, new in zip(previous, current):
            scale = float(np.max(np.abs(new)))
            if scale > 0.0:
                change = max(change, float(np.max(np.abs(old - new))) / scale)
        if change <= _config.POP_QUAD_RTOL:
            return n, change
        if 2 * n >= _config.POP_QUAD_MAX_NODES:
            raise ValueError(
                f"activation {act.name!r}: the Gauss-Hermite quadrature of the population "
                f"Hessian did not converge to {_config.POP_QUAD_RTOL:g} (relative change "
                f"{change:.1e} "
                f"from {n} to {2 * n} nodes per axis, the most allowed is "
                f"{_config.POP_QUAD_MAX_NODES}); is g smooth? A kink or jump (like relu's) needs a "
                f"closed form, and very large weights |w_j| = {norms.max():.3g} need more "
                f"nodes")
        n *= 2
        previous = current


def _parallel_pairs(act, pj, pk, norms, cosines, sines, n_hidden):
    """CSR (indptr, indices, cos, sin) of the relu pairs kept in the orthonormal basis."""
    if act.code != RELU:
        empty = np.zeros(0)
        return np.zeros(n_hidden + 1, dtype=np.int64), np.zeros(0, dtype=np.int64), empty, empty
    flag = (pj != pk) & (sines > 0.0) & (sines < _config.POP_PARALLEL_SINE)
    flag &= (norms[pj] > 0.0) & (norms[pk] > 0.0)
    rows = np.concatenate([pj[flag], pk[flag]])
    cols = np.concatenate([pk[flag], pj[flag]])
    cos = np.concatenate([cosines[flag], cosines[flag]])
    sin = np.concatenate([sines[flag], sines[flag]])
    order = np.lexsort((cols, rows))
    indptr = np.zeros(n_hidden + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_hidden), out=indptr[1:])
    return indptr, cols[order].astype(np.int64), cos[order], sin[order]


def check_coefficients(coefs, net):
    """``net`` checked, and ``coefs`` checked to be its :class:`PopulationCoefficients`."""
    net = check_net(net)
    if not isinstance(coefs, PopulationCoefficients):
        raise TypeError(f"coefs must be PopulationCoefficients (from population_coefficients), "
                        f"got {type(coefs).__name__}")
    if coefs.shape != net.shape:
        raise ValueError(f"coefs belong to a network of shape (n_in, n_hidden, n_out) = "
                         f"{coefs.shape}, not to net of shape {net.shape}")
    return net


