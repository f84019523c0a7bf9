"""Dense assembly: the Hessian (at and away from the optimum), its blocks, the NTK Gram.

Conventions (DESIGN.md): theta = concat(w1.ravel(), w2.ravel()), D = Nh*Ni + No*Nh,
L = 1/(2P) sum_mu ||y_student(x_mu) - y_teacher(x_mu)||^2. The Hessian is the
Gauss-Newton part J^T J / P plus, away from the optimum, the residual term
(THEORY.md section a). Each public function validates once (:func:`check_point`),
refuses what will not fit before allocating, and calls an ``assemble_*`` function
that the spectral routes reuse without repeating the checks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._features import Features, Point, check_point, features, refuse_if_too_large
from ._runtime import compute_budget
from .dense_routes import assemble_into, try_one_call
from .gemm import gemm_into

__all__ = ["hessian", "hessian_blocks", "HessianBlocks", "ntk", "assemble_hessian",
           "assemble_blocks", "assemble_ntk", "ntk_size", "ntk_overhead"]


# ---------------------------------------------------------------------- blocks
@dataclass
class HessianBlocks:
    """The result of :func:`hessian_blocks`: the three blocks of H as separate arrays.

    With D1 = Nh*Ni and D2 = No*Nh, ``H = [[w1w1, w1w2], [w1w2.T, w2w2]]``; the
    w2w1 block is ``w1w2.T``.

    Attributes
    ----------
    w1w1 : ndarray, shape (D1, D1)
        Second derivatives with respect to the first-layer weights.
    w1w2 : ndarray, shape (D1, D2)
        Mixed second derivatives (w1 rows, w2 columns).
    w2w2 : ndarray, shape (D2, D2)
        Second derivatives with respect to the second-layer weights.

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> net = fh.TwoLayerNet.random(4, 3, rng=0); X = fh.gaussian_inputs(20, 4, rng=1)
    >>> b = fh.hessian_blocks(net, X)
    >>> b
    HessianBlocks(w1w1=(12, 12), w1w2=(12, 3), w2w2=(3, 3), dtype=float64)
    >>> bool(np.allclose(b.full(), fh.hessian(net, X)))
    True
    """

    w1w1: np.ndarray
    w1w2: np.ndarray
    w2w2: np.ndarray

    def full(self) -> np.ndarray:
        """Assemble the blocks into the full Hessian.

        Returns
        -------
        ndarray, shape (D1 + D2, D1 + D2)
            ``[[w1w1, w1w2], [w1w2.T, w2w2]]``, a new array.

        Examples
        --------
        >>> import fasthess as fh
        >>> net = fh.TwoLayerNet.random(4, 3, rng=0)
        >>> fh.hessian_blocks(net, fh.gaussian_inputs(20, 4, rng=1)).full().shape
        (15, 15)
        """
        return np.block([[self.w1w1, self.w1w2], [self.w1w2.T, self.w2w2]])

    def __repr__(self):
        # shapes only: the blocks hold D^2 numbers
        return (f"HessianBlocks(w1w1={self.w1w1.shape}, w1w2={self.w1w2.shape}, "
                f"w2w2={self.w2w2.shape}, dtype={self.w1w1.dtype})")


def _drop_unneeded(f: Features) -> None:
    """Free what assembly does not read, before H is allocated (peak memory)."""
    if f.residual is None:
        f.G2 = None


def hessian(net, X, teacher=None, dtype=None):
    """Assemble the dense D x D Hessian of the loss with Numba kernels and BLAS.

    Parameters
    ----------
    net : TwoLayerNet
        The student (the point at which H is taken).
    X : array_like, shape (P, n_in), or fasthess.POPULATION
        Inputs, one sample per row (integers and booleans are upcast to float64).
        ``fasthess.POPULATION`` (x ~ N(0, I), P -> infinity) gives H_inf = E[J^T J]
        from Nh x Nh pair coefficients in closed form (quadrature for tanh and
        CustomActivation): no samples, cost O(Nh^2) expectations plus the D^2 writes,
        memory 8 D^2 bytes as for samples. At the optimum, or with ``teacher`` at any
        point (the residual term from pairs of student and teacher units; the teacher's
        n_hidden may differ).
    teacher : TwoLayerNet or None
        None (or ``net`` itself): the optimum, H = J^T J / P exactly. Otherwise the
        full Hessian, Gauss-Newton plus the residual (second-derivative) term.
    dtype : float64 or float32, optional
        Working and output precision; default the network's dtype (float64 unless
        it was built in float32). X and the weights are cast to it.

    Returns
    -------
    ndarray, shape (D, D)
        H, symmetric, in theta order (w1 row-major, then w2 row-major).

    Raises
    ------
    MemoryError
        Before allocating, if D x D does not fit in available memory.

    Examples
    --------
    >>> import fasthess as fh
    >>> net = fh.TwoLayerNet.random(4, 3, rng=0)
    >>> H = fh.hessian(net, fh.gaussian_inputs(50, 4, rng=1))
    >>> H.shape
    (15, 15)
    """
    point = check_point(net, X, teacher, dtype, what="fasthess.hessian")
    if point.population:
        from .population_hessian import DENSE_POPULATION_HINT

        refuse_if_too_large(net.n_params, point.dtype, "the population Hessian", overhead=2.0,
                            alternative=DENSE_POPULATION_HINT)
    else:
        refuse_if_too_large(net.n_params, point.dtype)
    return assemble_hessian(point)


def assemble_hessian(point: Point) -> np.ndarray:
    """:func:`hessian` of a validated point whose size was checked (no checks repeated)."""
    if point.population:
        return _population_hessian(point)
    d = point.net.n_params
    budget = compute_budget()
    H = None

    def outputs():
        nonlocal H
        H = np.empty((d, d), dtype=point.dtype)
        return H, H, H

    if not try_one_call(point, outputs, mirror=True):
        f = features(point)
        _drop_unneeded(f)  # before H is allocated (peak memory)
        assemble_into(f, budget, *outputs(), mirror=True)
    return H


def hessian_blocks(net, X, teacher=None, dtype=None) -> HessianBlocks:
    """Assemble the blocks w1w1, w1w2, w2w2 of :func:`hessian` as separate arrays.

    The w1w2 and w2w2 blocks are small (D1 x D2, D2 x D2 with D1 = Nh*Ni,
    D2 = No*Nh); only w1w1 (D1 x D1) is refused when it does not fit.

    Parameters
    ----------
    net : TwoLayerNet
        The student (the point at which H is taken).
    X : array_like, shape (P, n_in), or fasthess.POPULATION
        Inputs, one sample per row (integers and booleans are upcast to float64); the
        population (x ~ N(0, I), P -> infinity, at the optimum) splits H_inf.
    teacher : TwoLayerNet or None
        None (or ``net`` itself): the optimum. Otherwise the full Hessian's blocks.
    dtype : float64 or float32, optional
        Working and output precision; default the network's dtype.

    Returns
    -------
    HessianBlocks
        ``.w1w1``, ``.w1w2``, ``.w2w2``; ``.full()`` assembles H.

    Raises
    ------
    MemoryError
        Before allocating, if the w1w1 block does not fit in available memory.

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> net = fh.TwoLayerNet.random(4, 3, rng=0); X = fh.gaussian_inputs(20, 4, rng=1)
    >>> b = fh.hessian_blocks(net, X)
    >>> b.w1w1.shape, b.w1w2.shape, b.w2w2.shape
    ((12, 12), (12, 3), (3, 3))
    >>> bool(np.allclose(b.full(), fh.hessian(net, X)))
    True
    """
    point = check_point(net, X, teacher, dtype, what="fasthess.hessian_blocks")
    if point.population:
        # the tiles are written into one D x D matrix, then split
        from .population_hessian import DENSE_POPULATION_HINT

        refuse_if_too_large(net.n_params, point.dtype, "the population Hessian", overhead=2.0,
                            alternative=DENSE_POPULATION_HINT)
        H = _population_hessian(point)
        d1 = net.n_hidden * net.n_in
        return HessianBlocks(H[:d1, :d1].copy(), H[:d1, d1:].copy(), H[d1:, d1:].copy())
    refuse_if_too_large(net.n_hidden * net.n_in, point.dtype, "the w1w1 block")
    return assemble_blocks(point)


def assemble_blocks(point: Point) -> HessianBlocks:
    """:func:`hessian_blocks` of a validated point whose size was checked."""
    net = point.net
    d1, d2 = net.n_hidden * net.n_in, net.n_out * net.n_hidden
    blocks = []

    def outputs():
        blocks[:] = [np.empty(shape, dtype=point.dtype) for shape in
                     ((d1, d1), (d1, d2), (d2, d2))]
        return blocks

    budget = compute_budget()
    if not try_one_call(point, outputs, mirror=False):
        f = features(point)
        _drop_unneeded(f)  # before the blocks are allocated (peak memory)
        assemble_into(f, budget, *outputs(), mirror=False)
    return HessianBlocks(*blocks)


def _population_hessian(point: Point) -> np.ndarray:
    """H_inf written tile by tile from the pair coefficients (no samples), with the
    residual term off the optimum."""
    from .population_hessian import dense_hessian, population_hessian

    return dense_hessian(population_hessian(point.net, point.teacher, point.dtype))


def ntk(net, X, dtype=None) -> np.ndarray:
    """Assemble the empirical NTK Gram matrix K = J J^T / P.

    Closed form (THEORY.md a): K = [(A A^T) (x) I_No + (U U^T) o (X X^T (x) 1)] / P with
    U[(mu,k)] = G'[mu] * w2[k]; the Jacobian is never formed. Its nonzero
    eigenvalues are those of the Hessian at the optimum.

    Parameters
    ----------
    net : TwoLayerNet
        The network (the NTK does not depend on a teacher).
    X : array_like, shape (P, n_in)
        Inputs, one sample per row (integers and booleans are upcast to float64).
    dtype : float64 or float32, optional
        Working and output precision; default the network's dtype.

    Returns
    -------
    ndarray, shape (P * n_out, P * n_out)
        K, symmetric positive semi-definite, rows and columns (mu, k) mu-major.

    Raises
    ------
    MemoryError
        Before allocating, if K does not fit in available memory.

    See Also
    --------
    jacobian : J itself.

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> net = fh.TwoLayerNet.random(4, 3, n_out=2, rng=0); X = fh.gaussian_inputs(5, 4, rng=1)
    >>> K = fh.ntk(net, X)
    >>> K.shape
    (10, 10)
    >>> J = fh.jacobian(net, X)
    >>> bool(np.allclose(K, J @ J.T / 5))
    True
    """
    point = check_point(net, X, None, dtype, population=False,
                        what="fasthess.ntk (the P*n_out x P*n_out Gram matrix of the samples)")
    refuse_if_too_large(ntk_size(point), point.dtype, "the NTK Gram matrix",
                        overhead=ntk_overhead(net.n_out))
    return assemble_ntk(point)


def ntk_size(point: Point) -> int:
    """P * n_out, the side of the NTK Gram matrix."""
    return point.X.shape[0] * point.net.n_out


def ntk_overhead(n_out: int) -> float:
    """Peak bytes of :func:`ntk` relative to K: K plus the P x P factors X X^T and A A^T."""
    return 1.0 + 2.0 / n_out**2


def assemble_ntk(point: Point) -> np.ndarray:
    """:func:`ntk` of a validated sampled point whose size was checked."""
    from ._kernels.assembly import ntk_combine

    f = features(point)
    n = ntk_size(point)
    n_out = point.net.n_out
    U = (f.G1[:, None, :] * f.w2[None, :, :]).reshape(n, -1)
    K, XX, AA = (np.empty((k, k), dtype=U.dtype) for k in (n, f.n_samples, f.n_samples))
    for gram, factor in ((K, U), (XX, f.X), (AA, f.A)):
        gemm_into(gram, factor, factor, b_transposed=True, beta=0.0)
    ntk_combine(K, XX, AA, n_out, 1.0 / f.n_samples)
    return K
