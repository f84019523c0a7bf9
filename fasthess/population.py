"""The population Hessian H_inf = E_x[J^T J] at the optimum, x ~ N(0, I) (THEORY.md f).

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

g''' is never evaluated (Stein's lemma turns it into g''; see the kernels module).
The functions here are the internal API behind ``fasthess.POPULATION``: they do not
validate the network beyond its type. The Hessian functions assume the optimum
(teacher = student); :func:`population_loss` and :func:`population_gradient` take
any teacher of the same shape and activation.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from . import _config
from ._kernels.activation import ERF, LINEAR, POLYNOMIAL, RELU
from ._features import check_net
from ._runtime import compute_budget, pieces_for, plan_budget, planned_threads
from ._validation import check_dtype, check_teacher

__all__ = [
    "PopulationCoefficients",
    "population_coefficients",
    "assemble_dense",
    "hessian_matmat",
    "population_trace",
    "dense_bytes",
    "population_loss",
    "population_gradient",
]



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
    pairs = _pair_matrices(net.activation, net.w1)
    a, G, cmat, m11, m12 = pairs.mats
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
class _Pairs:
    """All-pairs coefficients of the rows of a weight matrix (float64)."""

    mats: np.ndarray  # (5, n, n): a, G, c, m11, m12
    norms: np.ndarray
    pj: np.ndarray
    pk: np.ndarray
    cosines: np.ndarray
    sines: np.ndarray
    method: str
    nodes: int | None
    change: float | None


def _pair_matrices(act, w1) -> _Pairs:
    """The Nh x Nh coefficient matrices of every pair of rows of w1 (any number of rows)."""
    from ._kernels.population import pair_geometry, scatter_pairs

    w1 = np.ascontiguousarray(w1, dtype=np.float64)
    n_rows = w1.shape[0]
    norms = np.sqrt(np.einsum("ji,ji->j", w1, w1))
    gram = w1 @ w1.T
    pj, pk = _upper_pairs(n_rows)
    cosines = np.empty(pj.size)
    sines = np.empty(pj.size)
    pair_geometry(w1, gram, norms, pj, pk, _config.POP_REFINE_COS, cosines, sines)
    values, method, nodes, change = _pair_values(act, pj, pk, norms, cosines, sines)
    mats = np.zeros((5, n_rows, n_rows))
    scatter_pairs(pj, pk, values, mats)
    return _Pairs(mats, norms, pj, pk, cosines, sines, method, nodes, change)


def _upper_pairs(n):
    """Index arrays (pj, pk) of all pairs j <= k of n items (row-major)."""
    pj, pk = np.triu_indices(n)
    return pj.astype(np.int64), pk.astype(np.int64)


def _pair_values(act, pj, pk, norms, cosines, sines):
    """(values (n_pairs, 7), method, nodes, change) for the pairs (see the kernels)."""
    from ._kernels import population as kp

    out = np.empty((pj.size, 7))
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
    n, change = _converged_nodes(act, norms, pj, pk, cosines, sines)
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
    """Pair coefficients by the 2-D rule with n nodes per axis, into out (n_pairs, 7)."""
    from ._kernels import population as kp

    x, z1, z2, node_1d, weights = _gauss_hermite_2d(n, floor)
    unit_h = np.ascontiguousarray(norms[:, None] * x[None, :])
    unit_g = [np.empty_like(unit_h) for _ in range(3)]
    act.apply(unit_h, *unit_g)
    n_nodes = weights.size
    block = int(max(1, min(pj.size, _config.POP_QUAD_BLOCK_BYTES // (4 * 8 * n_nodes))))
    hk = np.empty((block, n_nodes))
    gk = [np.empty((block, n_nodes)) for _ in range(3)]
    for b0 in range(0, pj.size, block):
        b1 = min(pj.size, b0 + block)
        bj, bk = pj[b0:b1], pk[b0:b1]
        h = hk[: b1 - b0]
        g = [arr[: b1 - b0] for arr in gk]
        kp.quadrature_points(bk, norms, cosines[b0:b1], sines[b0:b1], z1, z2, h)
        act.apply(h, *g)
        kp.quadrature_pairs(bj, bk, norms, cosines[b0:b1], node_1d, weights, unit_g[0],
                            unit_g[1], unit_g[2], unit_h, h, g[0], g[1], g[2], out[b0:b1])
    if not np.all(np.isfinite(out)):
        raise ValueError(
            f"activation {act.name!r}: its values at the Gauss-Hermite nodes (|z| up to "
            f"{np.abs(x).max():.0f} |w_j|) are not all finite, so the population "
            f"expectations cannot be computed; use an activation that stays finite there")


def _block_scaled(values, pj, pk, norms):
    """The pair values scaled as they enter H, grouped by block (for convergence checks).

    w1w1: a, |w_j|^2 m11, |w_j||w_k| m12, |w_k|^2 m22; w1w2: a |w_k|, cjk |w_j|,
    ckj |w_k|, a |w_j|; w2w2: G.
    """
    nj, nk = norms[pj], norms[pk]
    tile = np.stack([values[:, 0], nj * nj * values[:, 4], nj * nk * values[:, 5],
                     nk * nk * values[:, 6]])
    w12 = np.stack([values[:, 0] * nk, values[:, 2] * nj, values[:, 3] * nk,
                    values[:, 0] * nj])
    return tile, w12, values[:, 1:2].T


def _converged_nodes(act, norms, pj_all, pk_all, cos_all, sin_all):
    """Double the node count until the check pairs move by <= _config.POP_QUAD_RTOL (see module)."""
    top = np.sort(np.argsort(-norms, kind="stable")[:_config.POP_QUAD_CHECK_UNITS])
    chosen = np.isin(pj_all, top) & np.isin(pk_all, top)
    pj, pk = pj_all[chosen], pk_all[chosen]
    cosines, sines = cos_all[chosen], sin_all[chosen]

    def values(n):
        out = np.empty((pj.size, 7))
        _quadrature_values(act, pj, pk, norms, cosines, sines, n,
                           _config.POP_QUAD_WEIGHT_FLOOR, out)
        return _block_scaled(out, pj, pk, norms)

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


def _check_coefficients(coefs, net):
    net = check_net(net)
    if not isinstance(coefs, PopulationCoefficients):
        raise TypeError(f"coefs must be PopulationCoefficients (from population_coefficients), "
                        f"got {type(coefs).__name__}")
    if coefs.shape != net.shape:
        raise ValueError(f"coefs belong to a network of shape (n_in, n_hidden, n_out) = "
                         f"{coefs.shape}, not to net of shape {net.shape}")
    return net


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
    >>> from fasthess.population import dense_bytes
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
    >>> from fasthess.population import assemble_dense, population_coefficients
    >>> net = fh.TwoLayerNet.random(3, 2, rng=0)
    >>> H = assemble_dense(population_coefficients(net), net, np.empty((8, 8)))
    >>> bool(np.array_equal(H, H.T)), bool(np.linalg.eigvalsh(H).min() > 0)
    (True, True)
    """
    net = _check_coefficients(coefs, net)
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
    >>> from fasthess.population import (assemble_dense, hessian_matmat,
    ...                                  population_coefficients)
    >>> net = fh.TwoLayerNet.random(4, 3, n_out=2, rng=0)
    >>> coefs = population_coefficients(net)
    >>> H = assemble_dense(coefs, net, np.empty((18, 18)))
    >>> V = np.random.default_rng(1).standard_normal((18, 5))
    >>> bool(np.allclose(hessian_matmat(coefs, net, V), H @ V, rtol=0, atol=1e-14))
    True
    """
    net = _check_coefficients(coefs, net)
    V = np.asarray(V)
    n = net.n_params
    if V.dtype.kind != "f":
        raise TypeError(f"V must hold real floating-point numbers, got dtype {V.dtype}")
    if V.ndim not in (1, 2) or V.shape[0] != n:
        raise ValueError(f"V must have shape (D,) or (D, m) with D = n_params = {n}, "
                         f"got {V.shape}")
    if not np.all(np.isfinite(V)):
        raise ValueError("V contains non-finite values (NaN or inf)")
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
    from .products import gemm_into

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
def population_trace(coefs, net) -> float:
    """tr H_inf in closed form.

    tr = sum_j Q_jj (Ni a_jj + |w_j|^2 (m11 + 2 m12 + m22)_jj) + No sum_j G_jj.
    With ``coefs=None`` only the Nh diagonal pairs are computed (O(Nh Ni) plus Nh
    one-unit expectations), never the Nh x Nh matrices.

    Parameters
    ----------
    coefs : PopulationCoefficients or None
    net : TwoLayerNet

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> from fasthess.population import population_trace
    >>> net = fh.TwoLayerNet(np.eye(2), np.ones((1, 2)), "linear")
    >>> population_trace(None, net)       # Q_jj Ni + G_jj per unit: 2 (1 * 2 + 1)
    6.0
    """
    if coefs is not None:
        net = _check_coefficients(coefs, net)
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
        values, _, _, _ = _pair_values(net.activation, diag, diag, norms, ones, zeros)
        a, G = values[:, 0], values[:, 1]
        m = values[:, 4] + 2.0 * values[:, 5] + values[:, 6]
    w2 = np.asarray(net.w2, dtype=np.float64)
    q_diag = np.einsum("mj,mj->j", w2, w2)
    return float(np.sum(q_diag * (net.n_in * a + norms * norms * m)) + net.n_out * np.sum(G))


# ---------------------------------------------------------------------- off the optimum
def _student_teacher(student, teacher):
    """(stacked rows [W1_s; W1_t], beta = [W2_s, -W2_t]) or None at the optimum."""
    teacher = check_teacher(check_net(student, "student"), teacher)
    if teacher is None:
        return None
    if teacher.activation != student.activation:
        raise NotImplementedError(
            f"X = fasthess.POPULATION with a teacher whose activation "
            f"({teacher.activation.name!r}) differs from the student's "
            f"({student.activation.name!r}) is not implemented; pass samples "
            f"(fasthess.gaussian_inputs) instead")
    rows = np.concatenate([np.asarray(student.w1, dtype=np.float64),
                           np.asarray(teacher.w1, dtype=np.float64)])
    beta = np.concatenate([np.asarray(student.w2, dtype=np.float64),
                           -np.asarray(teacher.w2, dtype=np.float64)], axis=1)
    return rows, beta


def population_loss(student, teacher) -> float:
    """The population loss L = 1/2 E_x ||student(x) - teacher(x)||^2, x ~ N(0, I).

    The generalisation error of the soft committee machine: with the hidden units
    of both networks stacked, u = (student units, teacher units), and
    beta = [W2_s, -W2_t], L = 1/2 tr(beta G beta^T), G_uv = E[g(h_u) g(h_v)].

    Parameters
    ----------
    student, teacher : TwoLayerNet
        Same shape and activation; ``teacher=None`` (or the student) is the optimum.

    Returns
    -------
    float (exactly 0.0 at the optimum)

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> from fasthess.population import population_loss
    >>> t = fh.TwoLayerNet(np.eye(2), np.ones((1, 2)), "linear")
    >>> s = fh.TwoLayerNet(np.eye(2), np.array([[2.0, 1.0]]), "linear")
    >>> population_loss(s, t)             # 1/2 E[x_1^2]
    0.5
    """
    pair = _student_teacher(student, teacher)
    if pair is None:
        return 0.0
    rows, beta = pair
    G = _pair_matrices(student.activation, rows).mats[1]
    return float(0.5 * np.einsum("mu,uv,mv->", beta, G, beta))


def population_gradient(student, teacher) -> np.ndarray:
    """dL/dtheta of :func:`population_loss`, flat in theta order (w1, then w2).

    With r = sum_u beta_u g(h_u) and S = W2_s^T beta (Nh x 2Nh):
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
    >>> from fasthess.population import population_gradient
    >>> t = fh.TwoLayerNet(np.eye(2), np.ones((1, 2)), "linear")
    >>> s = fh.TwoLayerNet(np.eye(2), np.array([[2.0, 1.0]]), "linear")
    >>> population_gradient(s, t)   # linear: dL/dW1 = W2^T (V_s - V_t), dL/dW2 = (V_s - V_t) W1^T
    array([2., 0., 1., 0., 1., 0.])
    """
    student = check_net(student)
    pair = _student_teacher(student, teacher)
    if pair is None:
        return np.zeros(student.n_params)
    rows, beta = pair
    n_hidden = student.n_hidden
    mats = _pair_matrices(student.activation, rows).mats
    a, G, cmat = mats[0, :n_hidden], mats[1, :, :n_hidden], mats[2, :n_hidden]
    S = np.asarray(student.w2, dtype=np.float64).T @ beta
    grad_w1 = np.sum(S * cmat, axis=1)[:, None] * rows[:n_hidden] + (S * a) @ rows
    grad_w2 = beta @ G
    return np.concatenate([grad_w1.ravel(), grad_w2.ravel()])
