"""Jacobian products without forming J: J V, J^T U, and H V = J^T J V / P (+ residual).

Also the explicit Jacobian J (P No x D), for the routes that need it ("svd"), and
the public Jacobian: :func:`jacobian` (the matrix) and :func:`jacobian_operator`
(J as a LinearOperator), each validated once.
Rows of J are (mu, k), mu-major; columns follow theta = [w1 row-major, w2 row-major]
(THEORY.md a). The internal functions take validated :class:`~fasthess._features.Features`.
"""
from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import LinearOperator

from ._features import Features, check_point, features
from ._resources import check_fits
from .gemm import gemm_into, row_blocks
from .data import is_population

__all__ = ["jvp", "vjp", "jacobian_from_features", "hessian_vector_products", "jacobian",
           "jacobian_operator", "JacobianOperator",
           "product_column_block"]


def jvp(f: Features, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """J V for V of shape (D, m): returns (P, No, m), rows (mu, k) of the Jacobian,
    and the (P, Nh, m) input projections X V1^T that the residual term reuses."""
    n_in = f.X.shape[1]
    n_hidden = f.A.shape[1]
    n_out = f.w2.shape[0]
    d1 = n_hidden * n_in
    m = V.shape[1]
    V1 = V[:d1].reshape(n_hidden, n_in, m)
    V2 = V[d1:].reshape(n_out, n_hidden, m)
    # (X V1^T)_{mu j}, per column: shape (P, Nh, m)
    xv = np.einsum("pi,jim->pjm", f.X, V1, optimize=True)
    out = np.einsum("kj,pjm->pkm", f.w2, xv * f.G1[:, :, None], optimize=True)
    out += np.einsum("pj,kjm->pkm", f.A, V2, optimize=True)
    return out, xv


def vjp(f: Features, U: np.ndarray) -> np.ndarray:
    """J^T U for U of shape (P, No, m): returns (D, m)."""
    m = U.shape[2]
    back = np.einsum("pkm,kj->pjm", U, f.w2, optimize=True) * f.G1[:, :, None]
    g1 = np.einsum("pjm,pi->jim", back, f.X, optimize=True)
    g2 = np.einsum("pkm,pj->kjm", U, f.A, optimize=True)
    return np.concatenate([g1.reshape(-1, m), g2.reshape(-1, m)], axis=0)


def jacobian_from_features(f: Features) -> np.ndarray:
    """J (P No x D), rows (mu, k) mu-major, columns theta (THEORY.md a), vectorised.

    dy_k/dW1[j,i] = W2[k,j] g'(h_j) x_i ;  dy_k/dW2[k',j] = delta_kk' g(h_j).
    """
    X, A, G1, w2 = f.X, f.A, f.G1, f.w2
    n_samples, n_in = X.shape
    n_out, n_hidden = w2.shape
    d1 = n_hidden * n_in
    J = np.zeros((n_samples, n_out, d1 + n_out * n_hidden), dtype=X.dtype)
    # splitting an axis of a strided view is always a view, so this writes into J
    J1 = J[:, :, :d1].reshape(n_samples, n_out, n_hidden, n_in)
    np.multiply((G1[:, None, :] * w2[None, :, :])[:, :, :, None], X[:, None, None, :], out=J1)
    for k in range(n_out):
        J[:, k, d1 + k * n_hidden:d1 + (k + 1) * n_hidden] = A
    return J.reshape(n_samples * n_out, -1)


def hessian_vector_products(f: Features, V: np.ndarray) -> np.ndarray:
    """H V for V (D, m), never forming H: Gauss-Newton J^T J V / P plus the residual term.

    Columns in blocks (:func:`product_column_block`), so that a chunk of samples stays
    large whatever m is and the time grows linearly with m. Per block,
    sample-chunked: for each chunk, one GEMM gives the input projections
    xv = V1 X^T (Nh m x chunk, samples last), a serial kernel turns them in place
    into the w1 factor and leaves u = J V beside them, and two GEMMs add X^T of the
    one to the w1 rows and A^T u to the w2 rows. The chunk's block stays in cache
    between them, so nothing of size P x Nh x m is streamed through memory. The
    samples are split into pieces (as many as the work is worth on all cores), each
    with sums of its own, added in a fixed order at the end, and run on fasthess's
    threads with its single-threaded GEMM: the result does not depend on the threads
    that run the pieces.
    """
    X = f.X
    dt = X.dtype
    n_samples = X.shape[0]
    n_hidden = f.A.shape[1]
    V = np.ascontiguousarray(V, dtype=dt)
    m = V.shape[1]
    block = product_column_block(n_samples, n_hidden, m, dt.itemsize)
    if block >= m:
        return _product_columns(f, V)
    out = np.empty(V.shape, dtype=dt)
    for c0 in range(0, m, block):
        out[:, c0:c0 + block] = _product_columns(f, np.ascontiguousarray(V[:, c0:c0 + block]))
    return out


def product_column_block(n_samples: int, n_hidden: int, m: int, itemsize: int) -> int:
    """Columns of a block of :func:`hessian_vector_products`: as many as keep a chunk of
    ``_config.MIN_PRODUCT_CHUNK`` samples (or all of them) within
    ``_config.PRODUCT_CHUNK_BYTES`` (with 2000 columns at N = 60 one block left 1-2
    samples a chunk: GEMMs as thin as GEMV, 6x slower per column than 200 columns)."""
    from . import _config

    samples = min(n_samples, _config.MIN_PRODUCT_CHUNK)
    return int(max(1, min(m, _config.PRODUCT_CHUNK_BYTES // (n_hidden * itemsize * samples))))


def _product_columns(f: Features, V: np.ndarray) -> np.ndarray:
    """H V for one block of columns (V C-contiguous, of the features' dtype)."""
    import threading

    from . import _config
    from ._kernels.blas import PRIVATE
    from ._kernels.products import hvp_middle
    from ._runtime import compute_budget, planned_threads, plan_budget, run_pieces

    X = f.X
    dt = X.dtype
    n_samples, n_in = X.shape
    n_out, n_hidden = f.w2.shape
    d1 = n_hidden * n_in
    m = V.shape[1]
    off_optimum = f.residual is not None
    empty = np.empty((0, 0), dtype=dt)
    G2 = f.G2 if off_optimum else empty
    residual = f.residual if off_optimum else empty
    # V1 as ((j, col), i): xvt = V1r X_chunk^T is one GEMM
    V1r = np.ascontiguousarray(V[:d1].reshape(n_hidden, n_in, m).transpose(0, 2, 1))
    V1r = V1r.reshape(n_hidden * m, n_in)
    V2 = V[d1:].reshape(n_out, n_hidden, m)
    height = n_hidden * m
    chunk = max(1, min(n_samples, _config.PRODUCT_CHUNK_BYTES // (height * dt.itemsize)))
    # the chunk's G', A, r transposed and the R11 coefficients (the last two off the optimum)
    scratch_heights = (n_hidden, n_hidden) + ((n_out, n_hidden) if off_optimum else (0, 0))
    # the plan (so the result) follows the work and the cores, not who runs it
    planned = planned_threads(2 * n_samples * n_in * height, plan_budget())
    if not PRIVATE.private:  # BLAS's own threads do the work: one piece
        planned = 1
    # pieces of whole chunks of samples: as many per thread as pieces_for allows
    n_pieces = 1 if planned == 1 else max(planned, min(
        -(-n_samples // chunk), planned * _config.PIECES_PER_THREAD))
    bounds = [n_samples * i // n_pieces for i in range(n_pieces + 1)]
    out1r = np.zeros((n_pieces, height, n_in), dtype=dt)  # w1 rows, ((j, col), i)
    out2r = np.zeros((n_pieces, n_hidden, n_out * m), dtype=dt)  # A^T u, (j, (k, col))
    out2 = np.zeros((n_pieces, n_out, n_hidden, m), dtype=dt)  # residual, (k, j, col)
    local = threading.local()  # each thread's chunk buffers

    def piece(i):
        if not hasattr(local, "xvt"):
            local.xvt = np.empty(height * chunk, dtype=dt)
            local.ut = np.empty(n_out * m * chunk, dtype=dt)
            local.scratch = np.empty(sum(scratch_heights) * chunk, dtype=dt)
        for s0 in range(bounds[i], bounds[i + 1], chunk):
            c = min(chunk, bounds[i + 1] - s0)
            xs = X[s0:s0 + c]
            xvt = local.xvt[:height * c].reshape(height, c)
            ut = local.ut[:n_out * m * c].reshape(n_out * m, c)
            gt, at, rt, g2t = row_blocks(local.scratch, scratch_heights, c)
            gemm_into(xvt, V1r, xs, b_transposed=True, beta=0.0)
            hvp_middle(xvt, s0, f.G1, f.A, G2, residual, f.w2, V2, gt, at, rt, g2t, ut,
                       out2[i])
            gemm_into(out1r[i], xvt, xs, b_transposed=False)
            gemm_into(out2r[i], at, ut, b_transposed=True)

    run_pieces(piece, n_pieces, min(planned, compute_budget()))
    if n_pieces > 1:  # the pieces' sums, added in their order
        out1r, out2r, out2 = (np.add.reduce(a, axis=0) for a in (out1r, out2r, out2))
    else:
        out1r, out2r, out2 = out1r[0], out2r[0], out2[0]
    out = np.empty((d1 + n_out * n_hidden, m), dtype=dt)
    scale = 1.0 / n_samples
    np.multiply(out1r.reshape(n_hidden, m, n_in).transpose(0, 2, 1), scale,
                out=out[:d1].reshape(n_hidden, n_in, m))
    w2_rows = out[d1:].reshape(n_out, n_hidden, m)
    np.add(out2r.reshape(n_hidden, n_out, m).transpose(1, 0, 2), out2, out=w2_rows)
    w2_rows *= scale
    return out


# ---------------------------------------------------------------------- public Jacobian
_NO_POPULATION_JACOBIAN = (
    "X: fasthess.POPULATION (P -> infinity) has no finite Jacobian (it would have "
    "infinitely many rows); pass sampled inputs X of shape (n_samples, n_in), or use "
    "fasthess.hessian_operator for the population Hessian E[J^T J]")


def _jacobian_point(net, X, dtype, copy):
    """Validate (net, X, dtype) once for the public Jacobian (no teacher: J does not need one)."""
    if is_population(X):
        raise ValueError(_NO_POPULATION_JACOBIAN)
    return check_point(net, X, None, dtype, copy=copy, population=False)


def _check_finite_jacobian(values, dtype) -> None:
    if not np.all(np.isfinite(values)):
        raise ValueError(f"X: Jacobian entries w2 g'(w1 x) x overflow {np.dtype(dtype)}; "
                         "rescale X or the weights, or use float64")


def jacobian(net, X, dtype=None) -> np.ndarray:
    """Compute the Jacobian J of the network outputs on X with respect to theta.

    ``J[(mu, k), :] = d y_k(x_mu) / d theta``: rows are (sample, output) pairs,
    sample-major (row ``mu * n_out + k``), columns follow theta =
    ``concat(w1.ravel(), w2.ravel())``, as in every fasthess Hessian. At the
    optimum ``H = J^T J / P`` (THEORY.md a). Formed explicitly: 8 P No D bytes;
    for products only, :func:`jacobian_operator` never forms it.

    Parameters
    ----------
    net : TwoLayerNet
        The network (J does not depend on a teacher).
    X : array_like, shape (P, n_in)
        Inputs, one sample per row (integers are upcast to float64).
        :data:`fasthess.POPULATION` is refused: a population has no finite Jacobian.
    dtype : float32 or float64, optional
        Working and output precision; default the network's dtype.

    Returns
    -------
    ndarray, shape (P * n_out, D)
        The Jacobian, rows (mu, k) mu-major.

    Raises
    ------
    ValueError
        For ``X = fasthess.POPULATION``, or entries that overflow the dtype.
    MemoryError
        Before allocating, when J does not fit in memory.

    See Also
    --------
    jacobian_operator : J v and J^T u without forming J.
    ntk : The Gram matrix J J^T / P.

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> net = fh.TwoLayerNet.random(4, 3, n_out=2, rng=0); X = fh.gaussian_inputs(5, 4, rng=1)
    >>> J = fh.jacobian(net, X)
    >>> J.shape                        # (P * n_out, D) = (5 * 2, 3 * 4 + 2 * 3)
    (10, 18)
    >>> bool(np.allclose(J.T @ J / 5, fh.hessian(net, X)))
    True
    """
    point = _jacobian_point(net, X, dtype, copy=False)
    n_rows = point.X.shape[0] * net.n_out
    check_fits(n_rows * net.n_params * point.dtype.itemsize,
               f"the Jacobian ({n_rows} x {net.n_params}, {point.dtype})",
               "use fasthess.jacobian_operator(net, X) for the products J v and J^T u")
    J = jacobian_from_features(features(point, second_order=False))
    _check_finite_jacobian(J, point.dtype)
    return J


class JacobianOperator(LinearOperator):
    """The Jacobian J (P No x D) of a network on fixed inputs, as a LinearOperator.

    Built by :func:`jacobian_operator`. ``op @ v`` (``matvec``, ``matmat``) is
    J v; ``op.T @ u`` (``rmatvec``, ``rmatmat``, ``.T``, ``.H``) is J^T u: both
    come from SciPy through ``_matmat`` and ``_adjoint``. J is never formed:
    memory O(P (Ni + Nh)), each product O(P D) per column. J is real, so a
    complex operand gives the complex product. Attributes ``net`` and
    ``n_samples`` describe it.

    Parameters
    ----------
    f : Features
        The validated per-sample factors (made by :func:`jacobian_operator`).
    net : TwoLayerNet
        The network.

    Examples
    --------
    >>> import fasthess as fh
    >>> op = fh.jacobian_operator(fh.TwoLayerNet.random(4, 3, rng=0),
    ...                           fh.gaussian_inputs(6, 4, rng=1))
    >>> op
    JacobianOperator(P=6, n_out=1, D=15, activation='erf', dtype=float64)
    """

    def __init__(self, f: Features, net):
        self._features = f
        self.net = net
        super().__init__(dtype=f.X.dtype, shape=(f.n_samples * net.n_out, net.n_params))

    @property
    def n_samples(self) -> int:
        """P, the number of samples (the operator has P * n_out rows).

        Examples
        --------
        >>> import fasthess as fh
        >>> fh.jacobian_operator(fh.TwoLayerNet.random(4, 3, rng=0),
        ...                      fh.gaussian_inputs(6, 4, rng=1)).n_samples
        6
        """
        return self._features.n_samples

    def _matmat(self, V):
        return _real_linear_map(lambda W: jvp(self._features, W)[0].reshape(self.shape[0], -1),
                                V, self.dtype)

    def _adjoint(self):
        return _JacobianTranspose(self)

    def __repr__(self):
        return (f"JacobianOperator(P={self.n_samples}, n_out={self.net.n_out}, "
                f"D={self.shape[1]}, activation={self.net.activation.name!r}, "
                f"dtype={self.dtype})")


class _JacobianTranspose(LinearOperator):
    """J^T (D x P No) of a :class:`JacobianOperator`; its adjoint is the operator itself."""

    def __init__(self, jac: JacobianOperator):
        self._jac = jac
        super().__init__(dtype=jac.dtype, shape=(jac.shape[1], jac.shape[0]))

    def _matmat(self, U):
        f, n_out = self._jac._features, self._jac.net.n_out
        return _real_linear_map(
            lambda W: vjp(f, W.reshape(f.n_samples, n_out, -1)), U, self.dtype)

    def _adjoint(self):
        return self._jac

    def __repr__(self):
        return f"<transpose of {self._jac!r}>"


def _real_linear_map(apply, V, dtype):
    """``apply`` (a real linear map of (n, m) blocks) on V; complex V part by part."""
    V = np.asarray(V)
    if V.dtype.kind == "c":
        # the map is real: real and imaginary parts are mapped separately
        return (apply(np.ascontiguousarray(V.real, dtype=dtype))
                + 1j * apply(np.ascontiguousarray(V.imag, dtype=dtype)))
    if V.dtype.kind not in "biuf":
        raise TypeError(f"V must hold numbers, got dtype {V.dtype}")
    return apply(np.ascontiguousarray(V, dtype=dtype))


def jacobian_operator(net, X, dtype=None) -> JacobianOperator:
    """Return the Jacobian as a matrix-free :class:`scipy.sparse.linalg.LinearOperator`.

    ``op.matvec(v)`` = J v (length P * n_out, rows (mu, k) mu-major) and
    ``op.rmatvec(u)`` = J^T u (length D), the Jacobian-vector and vector-Jacobian
    products of jax and curvlinops, without forming J (see :func:`jacobian` for
    its layout). X is copied: the operator answers for the data it was built from.

    Parameters
    ----------
    net : TwoLayerNet
        The network.
    X : array_like, shape (P, n_in)
        Inputs, one sample per row (integers are upcast to float64).
        :data:`fasthess.POPULATION` is refused: a population has no finite Jacobian.
    dtype : float32 or float64, optional
        Working precision; default the network's dtype.

    Returns
    -------
    JacobianOperator
        A (P * n_out, D) LinearOperator; ``.T`` is J^T. Memory O(P (Ni + Nh)),
        each product O(P D) per column; complex operands give the complex product.

    Raises
    ------
    ValueError
        For ``X = fasthess.POPULATION``, or factors that overflow the dtype.

    See Also
    --------
    jacobian : The explicit matrix.
    hessian_operator : H as a LinearOperator.

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> net = fh.TwoLayerNet.random(4, 3, n_out=2, rng=0); X = fh.gaussian_inputs(5, 4, rng=1)
    >>> op = fh.jacobian_operator(net, X)
    >>> op.shape
    (10, 18)
    >>> v = np.ones(18); u = np.ones(10)
    >>> J = fh.jacobian(net, X)
    >>> bool(np.allclose(op @ v, J @ v) and np.allclose(op.rmatvec(u), J.T @ u))
    True
    """
    point = _jacobian_point(net, X, dtype, copy=True)
    f = features(point, second_order=False)
    return JacobianOperator(f, net)
