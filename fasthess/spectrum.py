"""Eigenvalues of the Hessian: every one by an exact route, or a few matrix-free.

Exact spectra (:func:`eigenvalues`) go through the cheapest exact route:

* ``"dense"``: assemble H (:func:`fasthess.hessian`) and ``scipy.linalg.eigh``; any point.
* ``"ntk"``: at the optimum H = J^T J / P and K = J J^T / P (:func:`fasthess.ntk`) share
  their nonzero eigenvalues (THEORY.md a), so a (P No x P No) problem replaces a D x D one.
* ``"linear"``: linear activation at the optimum; the No Ni eigenvalues of the reduced
  matrix of THEORY.md b (:func:`fasthess.theory.linear_spectrum_exact`), the rest are zeros.
* ``"svd"``: singular values of the explicit Jacobian, squared / P. Slower, but resolves
  eigenvalues down to ~1e-30 of the largest instead of ~1e-16 (see :func:`numerical_rank`).
* ``"reduced"``: the population (X = POPULATION) when the span of the student's and
  teacher's first-layer rows has dimension r < Ni: H_inf = H_S (+) (Bp (x) I_{Ni-r})
  exactly (THEORY.md g), so the spectrum is eig(H_S) plus the Nh eigenvalues of Bp each
  Ni - r times; :class:`Spectrum` keeps them as values with multiplicities.

Matrix-free: a few extreme eigenvalues (:mod:`fasthess.extremes`, :func:`fasthess.eigsh`),
the smallest nonzero ones (:mod:`fasthess.smallest`), the density
(:mod:`fasthess.slq`), the trace (:mod:`fasthess.traces`) and the numerical rank
(:mod:`fasthess.rank`) have modules of their own.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from . import _config
from ._features import MATRIX_FREE_HINT, check_point, dense_bytes, features
from ._resources import check_fits
from ._validation import check_choice
from .assembly import assemble_hessian, assemble_ntk, ntk_overhead, ntk_size
from .products import jacobian_from_features

__all__ = ["eigenvalues", "Spectrum", "METHODS"]

#: Routes accepted by :func:`eigenvalues` (``"auto"`` picks one of the others).
METHODS = ("auto", "dense", "ntk", "linear", "svd", "reduced")


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays has no single truth value
class Spectrum:
    """The result of :func:`eigenvalues`: all D eigenvalues of H, ascending, and their route.

    Held as ``values`` with ``multiplicities`` (value i appears multiplicities[i] times),
    so a spectrum of D ~ 1e8 eigenvalues with few distinct values (the "reduced" route)
    costs memory for the distinct ones only. ``eigenvalues`` (and ``np.asarray(s)``)
    expand to all D values on request. ``len(s)`` is D and ``s[i]`` the i-th
    eigenvalue (ascending, multiplicities counted), without expanding.

    Attributes
    ----------
    values : ndarray (n,)
        Ascending; every value once per entry of ``multiplicities`` (equal values from
        different blocks may appear as separate entries). Structural zeros (padding of
        the "ntk" and "linear" routes) included.
    method : str
        The route taken: "dense", "ntk", "linear", "svd" or "reduced" (never "auto").
    assembly_seconds, solve_seconds : float
        Wall time building the matrix (H, K or J) and decomposing it. The "linear"
        route builds its small reduced matrix inside the solve.
    multiplicities : ndarray (n,) of int64
        How often each value appears; all ones except on the "reduced" route. The
        constructor's default None means all ones.
    solved_size : int
        The order of the largest matrix decomposed (D for "dense"); the default rank
        tolerance of :func:`numerical_rank` scales with it. The constructor's default
        None means D.

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> net = fh.TwoLayerNet.random(4, 3, rng=0); X = fh.gaussian_inputs(30, 4, rng=1)
    >>> s = fh.eigenvalues(net, X, method="dense")
    >>> len(s), s.method, bool(np.all(np.diff(np.asarray(s)) >= 0))
    (15, 'dense', True)
    >>> big = fh.eigenvalues(fh.TwoLayerNet.random(100_000, 2, rng=0), fh.POPULATION)
    >>> big.method, len(big), big.values.size, int(big.multiplicities.max())
    ('reduced', 200002, 8, 99998)
    """

    values: np.ndarray
    method: str
    assembly_seconds: float
    solve_seconds: float
    multiplicities: np.ndarray | None = None
    solved_size: int | None = None

    def __post_init__(self):
        mult = self.multiplicities
        if mult is None:
            mult = np.ones(self.values.shape[0], dtype=np.int64)
        else:
            mult = np.asarray(mult, dtype=np.int64)
            if mult.shape != self.values.shape or (mult.size and mult.min() < 1):
                raise ValueError(f"multiplicities must be positive integers, one per value "
                                 f"({self.values.shape[0]}), got shape {mult.shape}")
        object.__setattr__(self, "multiplicities", mult)
        object.__setattr__(self, "_ends", np.cumsum(mult))
        if self.solved_size is None:
            object.__setattr__(self, "solved_size", len(self))

    @property
    def eigenvalues(self) -> np.ndarray:
        """All D eigenvalues, ascending (expanded: O(D) memory when multiplicities > 1).

        Examples
        --------
        >>> import fasthess as fh
        >>> s = fh.eigenvalues(fh.TwoLayerNet.random(6, 2, rng=0), fh.POPULATION)
        >>> s.values.size, s.eigenvalues.size, s.eigenvalues[-1] == s.values[-1]
        (8, 14, np.True_)
        """
        if self.values.size == len(self):
            return self.values
        return np.repeat(self.values, self.multiplicities)

    def __array__(self, dtype=None, copy=None):
        a = self.eigenvalues
        if dtype is not None and np.dtype(dtype) != a.dtype:
            if copy is False:
                raise ValueError("Spectrum: converting the eigenvalues to another dtype "
                                 "needs a copy, but copy=False was requested")
            return a.astype(dtype)
        return a.copy() if copy else a

    def __len__(self):
        return int(self._ends[-1]) if self._ends.size else 0

    def __getitem__(self, index):
        if self.values.size == len(self):
            return self.values[index]
        if isinstance(index, slice):
            index = np.arange(len(self))[index]
        idx = np.asarray(index)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"Spectrum indices must be integers or slices, got {index!r}")
        n = len(self)
        if np.any((idx < -n) | (idx >= n)):
            raise IndexError(f"index {index} is out of bounds for a spectrum of {n} "
                             f"eigenvalues")
        return self.values[np.searchsorted(self._ends, np.where(idx < 0, idx + n, idx),
                                           side="right")]

    def __repr__(self):
        ev = self.values
        distinct = "" if ev.size == len(self) else f", stored values={ev.size}"
        return (f"Spectrum(D={len(self)}{distinct}, method={self.method!r}, min={ev[0]:.6g}, "
                f"max={ev[-1]:.6g}, assembly_seconds={self.assembly_seconds:.3g}, "
                f"solve_seconds={self.solve_seconds:.3g})")


def _linear_coefficient(activation):
    """c if g(z) = c z, else None."""
    if activation.is_polynomial and activation.powers == (1,):
        return float(activation.coeffs[1])
    return None


def _route_costs(n_in, n_hidden, n_out, n_samples):
    """Flop models of the two general exact routes (documented in :func:`eigenvalues`)."""
    d = n_hidden * (n_in + n_out)
    n = n_samples * n_out
    return {"ntk": float(n) ** 2 * n_hidden + float(n) ** 3,
            "dense": n_samples * float(d) ** 2 / 4 + float(d) ** 3}


def _choose_route(net, n_samples, at_optimum, method):
    """Validate ``method`` against the point and the activation; resolve "auto"."""
    check_choice(method, "method", METHODS)
    is_linear = _linear_coefficient(net.activation) is not None
    if method == "reduced" and not math.isinf(n_samples):
        raise ValueError("method='reduced' is the exact reduction of the population Hessian "
                         "(X = fasthess.POPULATION) to the span of the weights; with samples "
                         "use method='auto'")
    if method == "auto":
        if not at_optimum:
            return "dense"
        if is_linear:
            return "linear"
        if math.isinf(n_samples):  # the population: no samples, so no NTK side
            return "dense"
        n = n_samples * net.n_out
        costs = _route_costs(net.n_in, net.n_hidden, net.n_out, n_samples)
        if n < net.n_params and costs["ntk"] < costs["dense"]:
            return "ntk"
        return "dense"
    if method not in ("dense", "reduced") and not at_optimum:
        raise ValueError(
            f"method={method!r} is exact only at the optimum (teacher None or equal to the "
            f"student), where H = J^T J / P; away from it H has a residual term. "
            f"Use method='dense' (or 'auto')")
    if method == "linear" and not is_linear:
        raise ValueError(
            f"method='linear' needs a linear activation (g(z) = c z), but the network's "
            f"activation is {net.activation.name!r}; use method='auto'")
    if method in ("ntk", "svd") and math.isinf(n_samples):
        raise ValueError(
            f"method={method!r} works on the samples (the NTK Gram, the explicit Jacobian), "
            f"but X is fasthess.POPULATION; use method='dense' or 'auto' (or 'linear' for a "
            f"linear network)")
    return method


def eigenvalues(net, X, teacher=None, method="auto", dtype=None) -> Spectrum:
    """Compute all D eigenvalues of the Hessian, ascending, by the cheapest exact route.

    Parameters
    ----------
    net : TwoLayerNet
        The student, the point where H is taken.
    X : array_like, shape (P, n_in), or fasthess.POPULATION
        Inputs, one sample per row (integers are upcast to float64).
        ``fasthess.POPULATION`` gives the P -> infinity spectrum (x ~ N(0, I)) at the
        optimum or, with ``teacher``, at any point: "reduced" when the span of the
        first-layer rows (dimension r) is smaller than n_in (an eigh of order
        Nh (r + No), O(Nh^3 (r + No)^3), values with multiplicities, never D of them),
        else "dense" on the population Hessian (O(D^3) time, 8 D^2 bytes), or the closed
        form of a linear network at the optimum (THEORY.md b with C = I).
    teacher : TwoLayerNet or None, default None
        None (or equal to ``net``): the optimum. Otherwise only "dense" and "reduced"
        apply. With the population its n_hidden may differ from the student's.
    method : {"auto", "dense", "ntk", "linear", "svd", "reduced"}
        * "dense": H assembled, ``scipy.linalg.eigh(eigvals_only=True)``. Any point.
          Cost ~ P D^2 / 4 (assembly) + D^3 (solve), memory 8 D^2 bytes.
        * "ntk" (optimum only): eigenvalues of K = J J^T / P (P No x P No), the
          min(P No, D) largest kept and padded with zeros to D.
          Cost ~ (P No)^2 Nh + (P No)^3.
        * "linear" (linear activation, optimum only): the No Ni eigenvalues of
          THEORY.md b with C = X^T X / P, padded with D - No Ni zeros. Cost ~ (No Ni)^3.
        * "svd" (optimum only): singular values s of the explicit Jacobian J
          (P No x D), eigenvalues s^2 / P, padded with zeros to D. Cost ~
          P No D min(P No, D), memory 8 P No D bytes. Resolves eigenvalues down to
          ~1e-30 of the largest; the others stop near 1e-16 (see :func:`numerical_rank`).
        * "reduced" (population only): THEORY.md g, H_inf = H_S (+) (Bp (x) I_{Ni-r}),
          r = dim span(student and teacher rows) < Ni. Cost ~ Ni (Nh + M)^2 (a
          tall-skinny QR in column blocks) + (Nh (r + No))^3 (eigh of H_S), memory
          8 (Nh (r + No))^2 bytes: D ~ 1e8 (Ni = 1e6, Nh = 100) is within reach.
          The result holds values with multiplicities.
        * "auto": the population: "reduced" when r < Ni, else as below. Away from the
          optimum "dense". At the optimum: "linear" for a linear activation; else
          "ntk" if P No < D and its cost model above is below that of "dense"; else
          "dense".
    dtype : float64 or float32, optional
        Working precision; default the network's dtype.

    Returns
    -------
    Spectrum
        ``.eigenvalues`` (D,), ``.method`` (route taken), ``.assembly_seconds``,
        ``.solve_seconds``; ``np.asarray(result)`` is the eigenvalue array.

    Raises
    ------
    ValueError
        Unknown ``method``, or one that does not apply here (named, with the reason).
    MemoryError
        Before allocating, when the matrix of the route does not fit in memory; the
        message names the bytes and the matrix-free alternatives
        (:func:`fasthess.eigsh`, :func:`fasthess.spectral_density`).

    Examples
    --------
    >>> import fasthess as fh
    >>> net = fh.TwoLayerNet.random(4, 3, rng=0); X = fh.gaussian_inputs(6, 4, rng=1)
    >>> s = fh.eigenvalues(net, X)           # P*No = 6 < D = 15: the NTK side
    >>> s.method, len(s)
    ('ntk', 15)
    >>> s2 = fh.eigenvalues(net, X, method="dense")
    >>> bool(abs(s2[-1] - s[-1]) < 1e-12 * s[-1])
    True
    """
    point = check_point(net, X, teacher, dtype, what="fasthess.eigenvalues")
    dt = point.dtype
    n_samples = point.n_samples
    route = _choose_route(net, n_samples, point.at_optimum, method)
    d = net.n_params
    if point.population and method in ("auto", "reduced"):
        spec = _reduced(point, required=method == "reduced")
        if spec is not None:
            return spec
    # eigh and svd work in place with O(n) workspace: the peak is the build's
    if route == "dense":
        check_fits(int(_config.ASSEMBLY_OVERHEAD * dense_bytes(d, dt)),
                   f"the dense Hessian ({d} x {d}, {dt})", MATRIX_FREE_HINT)
        t0 = time.perf_counter()
        H = assemble_hessian(point)
        t1 = time.perf_counter()
        # H is symmetric, so H.T is the same matrix in Fortran order: LAPACK works in place
        vals = _eigh_values(H.T)
        del H
        t2 = time.perf_counter()
    elif route == "ntk":
        n = ntk_size(point)
        check_fits(int(ntk_overhead(net.n_out) * dense_bytes(n, dt)),
                   f"the NTK Gram matrix ({n} x {n}, {dt})", MATRIX_FREE_HINT)
        t0 = time.perf_counter()
        K = assemble_ntk(point)
        t1 = time.perf_counter()
        vals = _eigh_values(K.T)  # K's extra P*No - D eigenvalues are zeros
        del K
        t2 = time.perf_counter()
    elif route == "linear":
        from .theory import linear_spectrum

        c = _linear_coefficient(net.activation)
        t0 = t1 = time.perf_counter()
        # g = c z: J is c times the linear network's, i.e. that of weights (c w1, c w2)
        # the population (C = I): eig = lambda_a(W2 W2^T) + lambda_b(W1^T W1), closed form
        data = None if point.population else point.X
        vals = np.asarray(linear_spectrum(c * net.w1.astype(dt), c * net.w2.astype(dt), data),
                          dtype=dt)
        t2 = time.perf_counter()
    else:  # svd
        n = n_samples * net.n_out
        check_fits(n * d * dt.itemsize, f"the Jacobian ({n} x {d}, {dt})",
                   "method='svd' needs the explicit Jacobian; use method='auto' (eigh, "
                   "resolves ~1e-16 of the largest eigenvalue), or " + MATRIX_FREE_HINT)
        t0 = time.perf_counter()
        J = jacobian_from_features(features(point))
        t1 = time.perf_counter()
        vals = _singular_values(J) ** 2 / n_samples
        del J
        t2 = time.perf_counter()
    return Spectrum(_pad_to(vals, d, dt), route, t1 - t0, t2 - t1)


def _reduced(point, required):
    """The "reduced" Spectrum of a population point, or None when r = Ni (no reduction)."""
    from .population_span import reduced_spectrum, span_reduction

    net = point.net
    t0 = time.perf_counter()
    red = span_reduction(net, point.teacher)
    if red.multiplicity == 0:
        if required:
            raise ValueError(
                f"method='reduced': the rows of the student's (and teacher's) w1 span all "
                f"n_in = {net.n_in} input dimensions, so there is nothing to reduce; use "
                f"method='auto' or 'dense'")
        return None
    d_s = net.n_hidden * (red.rank + net.n_out)
    check_fits(int(_config.ASSEMBLY_OVERHEAD * dense_bytes(d_s, np.float64)),
               f"the population Hessian restricted to the span ({d_s} x {d_s}, float64)",
               MATRIX_FREE_HINT)
    t1 = time.perf_counter()
    values, mult, solved = reduced_spectrum(red, _eigh_values)
    t2 = time.perf_counter()
    return Spectrum(values.astype(point.dtype), "reduced", t1 - t0, t2 - t1, mult, solved)


def _pad_to(vals, d, dtype):
    """The D eigenvalues of H, ascending, from those of a route's smaller or larger matrix.

    The NTK side (P No x P No) and the linear reduced matrix (No Ni x No Ni) can be
    larger than D; their extra eigenvalues are zeros, so the D largest are kept.
    When smaller, the missing eigenvalues of H are exact zeros.
    """
    vals = np.sort(np.asarray(vals, dtype=dtype))[-d:]
    out = np.zeros(d, dtype=dtype)
    out[d - vals.size:] = vals
    out.sort()
    return out


def _eigh_values(A):
    """All eigenvalues of the symmetric A (overwritten): LAPACK ?syevr on one thread of
    fasthess's own (:func:`fasthess._kernels.blas.symmetric_eigenvalues`), else SciPy's."""
    import scipy.linalg

    from ._kernels.blas import symmetric_eigenvalues

    vals = symmetric_eigenvalues(A)
    if vals is not None:
        return vals
    return scipy.linalg.eigh(A, eigvals_only=True, driver=_config.EIGH_DRIVER, overwrite_a=True,
                             check_finite=False)


def _singular_values(J):
    import scipy.linalg

    # J.T is Fortran-ordered, so gesdd works in place; same singular values as J
    return scipy.linalg.svd(J.T, compute_uv=False, overwrite_a=True, check_finite=False)
