"""The Hessian as a matrix-free :class:`scipy.sparse.linalg.LinearOperator`.

:class:`HessianOperatorBase` is the one base class of every Hessian operator
(the local one here, the population one, the Dask-sharded one in
:mod:`fasthess.distributed`): it implements SciPy's ``_matmat`` and ``_adjoint``
(H is symmetric), handles complex operands (H is real, so H (a + ib) = H a + i H b)
and leaves one method to the subclasses: ``_products(V)``, H V for a real,
C-contiguous (D, m) block of the operator's dtype.
"""
from __future__ import annotations

import contextlib

import numpy as np
from scipy.sparse.linalg import LinearOperator

from . import _io
from ._features import Features, check_net, check_point, features
from ._validation import FLOAT_DTYPES, check_instance, check_teacher
from .products import hessian_vector_products

__all__ = ["HessianOperatorBase", "HessianOperator", "PopulationHessianOperator",
           "hessian_operator", "check_operator", "with_progress"]


class HessianOperatorBase(LinearOperator):
    """A symmetric (D, D) Hessian operator of ``net`` (at ``teacher``, None = optimum).

    Subclasses implement ``_products(V)``. ``matvec``, ``matmat``, ``@``, ``rmatvec``
    and ``.T`` / ``.H`` all come from SciPy through ``_matmat`` and ``_adjoint``.

    Parameters
    ----------
    net : TwoLayerNet
        The student, the point where H is taken.
    teacher : TwoLayerNet or None
        None at the optimum.
    dtype : float32 or float64
        The dtype of the products.

    Examples
    --------
    >>> import fasthess as fh
    >>> op = fh.hessian_operator(fh.TwoLayerNet.random(4, 3, rng=0),
    ...                          fh.gaussian_inputs(20, 4, rng=1))
    >>> isinstance(op, fh.HessianOperatorBase), op.shape
    (True, (15, 15))
    """

    def __init__(self, net, teacher, dtype):
        self.net = net
        self.teacher = teacher
        d = net.n_params
        super().__init__(dtype=np.dtype(dtype), shape=(d, d))

    @property
    def at_optimum(self) -> bool:
        """Whether H is taken at the optimum (no teacher, or the student itself).

        Examples
        --------
        >>> import fasthess as fh
        >>> net = fh.TwoLayerNet.random(4, 3, rng=0); X = fh.gaussian_inputs(20, 4, rng=1)
        >>> fh.hessian_operator(net, X).at_optimum
        True
        >>> fh.hessian_operator(net, X, teacher=fh.perturb(net, 0.1, rng=2)).at_optimum
        False
        """
        return self.teacher is None

    def _products(self, V: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _real_products(self, V):
        return self._products(np.ascontiguousarray(V, dtype=self.dtype))

    def _matmat(self, V):
        V = np.asarray(V)
        if V.dtype.kind == "c":
            # H is real: the real and imaginary parts are multiplied separately
            return self._real_products(V.real) + 1j * self._real_products(V.imag)
        if V.dtype.kind not in "biuf":
            raise TypeError(f"V must hold numbers, got dtype {V.dtype}")
        return self._real_products(V)

    def _adjoint(self):
        return self  # H is symmetric

    def __repr__(self):
        # SciPy's "<15x15 HessianOperator with dtype=float64>" does not say where H is taken
        n_samples = getattr(self, "n_samples", None)
        samples = "" if n_samples is None else f"P={n_samples}, "
        return (f"{type(self).__name__}(D={self.shape[0]}, {samples}"
                f"at_optimum={self.at_optimum}, activation={self.net.activation.name!r}, "
                f"dtype={self.dtype})")


class HessianOperator(HessianOperatorBase):
    """H of a sampled point as a LinearOperator; a product costs O(P*D) per column.

    Built by :func:`hessian_operator`, which copies X: the operator answers for the
    data it was built from, whatever the caller does with its array afterwards.
    Attributes ``net``, ``teacher``, ``n_samples`` and ``at_optimum`` describe it.

    Parameters
    ----------
    f : Features
        The validated per-sample factors (made by :func:`hessian_operator`).
    net : TwoLayerNet
        The student, the point where H is taken.
    teacher : TwoLayerNet or None
        None at the optimum.

    Examples
    --------
    >>> import fasthess as fh
    >>> fh.hessian_operator(fh.TwoLayerNet.random(4, 3, rng=0),
    ...                     fh.gaussian_inputs(20, 4, rng=1))
    HessianOperator(D=15, P=20, at_optimum=True, activation='erf', dtype=float64)
    """

    def __init__(self, f: Features, net, teacher):
        self._features = f
        super().__init__(net, teacher, f.X.dtype)

    @property
    def n_samples(self) -> int:
        """P, the number of samples the operator was built from.

        Examples
        --------
        >>> import fasthess as fh
        >>> fh.hessian_operator(fh.TwoLayerNet.random(4, 3, rng=0),
        ...                     fh.gaussian_inputs(20, 4, rng=1)).n_samples
        20
        """
        return self._features.n_samples

    def _products(self, V):
        return hessian_vector_products(self._features, V)


class PopulationHessianOperator(HessianOperatorBase):
    """H_inf (x ~ N(0, I), P -> infinity) as a LinearOperator, at any point.

    A product costs O(Nh^2 (Ni + No)) per column at the optimum: a few BLAS GEMMs
    with W1 and Hadamard products with the Nh x Nh pair coefficients (THEORY.md f);
    off the optimum the residual term adds two GEMMs of Nh x (Nh + M) x Ni (M the
    teacher's hidden units, THEORY.md g). Memory O(Nh (Nh + M) + D m), never D x D.
    Built by :func:`hessian_operator` with ``X = fasthess.POPULATION``.
    """

    n_samples = float("inf")

    def __init__(self, net, dtype, teacher=None):
        from .population_hessian import population_hessian

        self._hessian = population_hessian(net, teacher, dtype)
        super().__init__(net, teacher, dtype)

    @property
    def coefficients(self):
        """The :class:`fasthess.population.PopulationCoefficients` behind the products."""
        return self._hessian.coefs

    def _products(self, V):
        from .population_hessian import population_matmat

        return population_matmat(self._hessian, V)


def hessian_operator(net, X, teacher=None, dtype=None) -> HessianOperatorBase:
    """The Hessian as a matrix-free :class:`scipy.sparse.linalg.LinearOperator`.

    Parameters
    ----------
    net : TwoLayerNet
        The student (the point at which H is taken).
    X : array_like, shape (P, n_in), or fasthess.POPULATION
        Inputs, one sample per row (integers and booleans are upcast to float64);
        copied, so later changes to the caller's array do not reach the operator.
        ``fasthess.POPULATION`` (x ~ N(0, I), P -> infinity, at any point): products
        in O(Nh (Nh + M) (Ni + No)) per column (M: the teacher's hidden units), no samples.
    teacher : TwoLayerNet or None
        None (or ``net``): the optimum. Otherwise the full Hessian with its residual term.
    dtype : float64 or float32, optional
        Working precision; default the network's dtype.

    Returns
    -------
    HessianOperator or PopulationHessianOperator
        A symmetric (D, D) LinearOperator: ``op @ v``, ``op.matmat(V)``; memory
        O(P (Ni + Nh)), never D x D; each product O(P D) per column. Complex operands
        give the complex product.

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> net = fh.TwoLayerNet.random(4, 3, rng=0); X = fh.gaussian_inputs(40, 4, rng=1)
    >>> op = fh.hessian_operator(net, X)
    >>> v = np.ones(net.n_params)
    >>> bool(np.allclose(op @ v, fh.hessian(net, X) @ v))
    True
    """
    point = check_point(net, X, teacher, dtype, copy=True, what="fasthess.hessian_operator")
    return _operator(point)


def _operator(point) -> HessianOperatorBase:
    """The operator of a validated point (whose X the caller's check owns or shares)."""
    if point.population:
        return PopulationHessianOperator(point.net, point.dtype, point.teacher)
    return HessianOperator(features(point), point.net, point.teacher)


def check_operator(operator, net, X, teacher=None) -> LinearOperator:
    """The (D, D) operator a matrix-free routine multiplies by: ``operator``, checked, or H's.

    ``operator=None``: :func:`hessian_operator`'s operator of (net, X, teacher), sharing
    X with the caller (it lives only for the call). Otherwise ``operator`` itself, a
    real (D, D) LinearOperator (e.g. :func:`fasthess.distributed.hessian_operator`)
    that carries its own data and point: X is not used, and a ``teacher`` other than
    the student is refused rather than silently ignored.

    Examples
    --------
    >>> import fasthess as fh
    >>> from fasthess.operators import check_operator
    >>> net = fh.TwoLayerNet.random(4, 3, rng=0)
    >>> check_operator(None, net, fh.gaussian_inputs(20, 4, rng=1)).shape
    (15, 15)
    """
    if operator is None:
        return _operator(check_point(net, X, teacher))
    check_net(net)
    check_instance(operator, LinearOperator, "operator",
                   "a scipy.sparse.linalg.LinearOperator (e.g. "
                   "fasthess.distributed.hessian_operator(...)) or None")
    d = net.n_params
    if tuple(operator.shape) != (d, d):
        raise ValueError(f"operator must have shape (D, D) = ({d}, {d}) for this network "
                         f"(D = net.n_params), got {tuple(operator.shape)}")
    dt = np.dtype(operator.dtype) if operator.dtype is not None else None
    if dt not in FLOAT_DTYPES:
        raise ValueError(f"operator must have dtype float32 or float64 (the Hessian is "
                         f"real), got {dt}")
    if check_teacher(net, teacher) is not None:
        raise ValueError("teacher: not used with operator=, which was built at its own point; "
                         "pass the teacher to the function that built the operator")
    return operator


class _Counted(LinearOperator):
    """``op``, whose products advance ``bar`` by their number of columns."""

    def __init__(self, op, bar):
        self._op, self._bar = op, bar
        super().__init__(dtype=op.dtype, shape=op.shape)

    def _matvec(self, v):
        out = self._op.matvec(v)
        self._bar.update(1)
        return out

    def _matmat(self, V):
        out = self._op.matmat(V)
        self._bar.update(V.shape[1])
        return out

    def _adjoint(self):
        return self  # H is symmetric


@contextlib.contextmanager
def with_progress(op, desc, total=None, enabled=None):
    """``op`` wrapped so that its products advance a progress bar (:func:`fasthess._io.progress`).

    The bar counts products (columns) on stderr: tqdm when installed and ``enabled``
    (None: when stderr is a terminal, so tests and logs stay silent). Iterative
    solvers (ARPACK, LOBPCG, Lanczos) that run for minutes at D ~ 1e6 show their
    pace this way.

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> from fasthess.operators import with_progress
    >>> op = fh.hessian_operator(fh.TwoLayerNet.random(4, 3, rng=0),
    ...                          fh.gaussian_inputs(20, 4, rng=1))
    >>> with with_progress(op, "products", enabled=False) as counted:
    ...     bool(np.allclose(counted @ np.ones(15), op @ np.ones(15)))
    True
    """
    with _io.progress(total=total, desc=desc, enabled=enabled, unit="product",
                      leave=False) as bar:
        yield _Counted(op, bar)
