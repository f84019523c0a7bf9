"""Per-sample features every Hessian route needs, and the guards that run before them.

A public function validates its arguments once with :func:`check_point`, then
computes :func:`features` (no checks repeated) and hands them to the routes.
The guards refuse, before anything large is allocated or summed, what would not
fit in memory (:func:`refuse_if_too_large`) or would overflow the dtype
(:func:`check_no_overflow`), naming the argument and the scale.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _config
from ._resources import check_fits
from ._runtime import compute_budget, planned_threads, run_pieces
from ._validation import check_dtype, check_instance, check_teacher
from .data import Population, is_population
from .network import TwoLayerNet

__all__ = ["Point", "check_point", "check_net", "Features", "features", "weights",
           "guarded_features", "check_no_overflow", "overflow_limit",
           "dense_bytes", "refuse_if_too_large", "MATRIX_FREE_HINT"]

MATRIX_FREE_HINT = ("use fasthess.hessian_operator(net, X) for matrix-free products, "
                    "fasthess.eigsh for a few eigenvalues, fasthess.spectral_density for "
                    "the density, or fasthess.ntk when P*n_out < D")


def check_net(net, name: str = "net") -> TwoLayerNet:
    """``net`` if it is a :class:`~fasthess.TwoLayerNet`, else a TypeError naming it."""
    return check_instance(net, TwoLayerNet, name, "a fasthess.TwoLayerNet")


@dataclass(frozen=True)
class Point:
    """The validated arguments of one call: where H is taken and on what data.

    ``X`` is a C-contiguous array of the working dtype, or :data:`fasthess.POPULATION`;
    ``teacher`` is None at the optimum (no teacher, or one equal to the student).
    """

    net: TwoLayerNet
    X: np.ndarray | Population
    teacher: TwoLayerNet | None
    dtype: np.dtype

    @property
    def at_optimum(self) -> bool:
        return self.teacher is None

    @property
    def population(self) -> bool:
        return is_population(self.X)

    @property
    def n_samples(self) -> float:
        """P (an int), or inf for the population."""
        return math.inf if self.population else self.X.shape[0]


def check_point(net, X, teacher=None, dtype=None, *, copy: bool = False,
                population: bool = True, net_name: str = "net",
                what: str = "this function", population_teacher: bool = False) -> Point:
    """Validate (net, X, teacher, dtype) once for a public call.

    ``copy=True`` copies X, for results that keep it (operators). ``population``:
    whether :data:`fasthess.POPULATION` is accepted in place of X; ``what`` names the
    function in the refusal. ``net_name``: how errors call the network (e.g. "student").
    ``population_teacher`` is kept for the callers' signatures: every population
    route now takes a teacher (THEORY.md g).
    """
    check_net(net, net_name)
    dt = check_dtype(dtype if dtype is not None else net.dtype)
    # X before the teacher: a call in the old order (student, teacher, X) is named as such
    if not is_population(X):
        X = net.check_inputs(X, dtype=dt, copy=copy)
    teacher = check_teacher(net, teacher)
    if is_population(X):
        if not population:
            raise ValueError(
                f"X: fasthess.POPULATION (x ~ N(0, I), P -> infinity) has no meaning for "
                f"{what}, which needs samples; pass inputs X of shape (n_samples, n_in)")
    return Point(net, X, teacher, dt)


@dataclass
class Features:
    """Per-sample quantities of a sampled point (all P x Nh unless noted).

    X (P x Ni), A = g(X w1^T), G1 = g'(.), G2 = g''(.), residual (P x No) or None at
    the optimum, and the student's w1, w2 in the working dtype.
    """

    X: np.ndarray
    A: np.ndarray | None  # None once the w1w1 pass no longer needs it (peak memory)
    G1: np.ndarray
    G2: np.ndarray | None  # None at the optimum during dense assembly
    residual: np.ndarray | None
    w1: np.ndarray
    w2: np.ndarray

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def at_optimum(self) -> bool:
        return self.residual is None


def features(point: Point, second_order: bool = True) -> Features:
    """The per-sample factors of a validated sampled point, with the overflow guards.

    ``second_order``: guard the products of the Hessian (x_i x_l summed over the
    samples); False for first-order quantities (the gradient), which do not form them.
    The pre-activations, g, g', g'' of a built-in activation and the maxima the
    guards read come from one pass (:func:`_activations`), in row ranges on the
    threads they are worth.
    """
    w1, w2 = weights(point)
    computed = _activations(point.net.activation, point.X, w1)
    return guarded_features(point, w1, w2, *computed, second_order=second_order)


def weights(point: Point):
    """(w1, w2) of the student, C-contiguous in the working dtype."""
    net, dt = point.net, point.dtype
    return np.ascontiguousarray(net.w1, dtype=dt), np.ascontiguousarray(net.w2, dtype=dt)


def guarded_features(point: Point, w1, w2, pre, A, G1, G2, maxima,
                     second_order: bool = True) -> Features:
    """:class:`Features` of computed activations, after the guards that read them.

    ``maxima``: [max |pre|, |g|, |g'|, |g''|, |X|], inf where a value is not finite
    (:func:`fasthess._kernels.activation.feature_rows`). Raises the ValueError that
    names the argument and the scale when the inputs, the activations, the residuals
    or a Hessian entry overflow the dtype.
    """
    net, X, dt = point.net, point.X, point.dtype
    if second_order:
        _check_input_scale(X, dt, maxima[4])
    if not all(map(math.isfinite, maxima)):
        _name_the_overflow(net, X, w1, pre, (A, G1, G2), dt)
    residual = None
    if point.teacher is not None:
        with np.errstate(over="ignore", invalid="ignore"):
            residual = A @ w2.T - point.teacher.astype(dt).outputs(X)
        if not np.all(np.isfinite(residual)):
            raise ValueError(
                "teacher: the residuals y_student - y_teacher overflow in "
                f"{dt}; reduce the weight or input scale, or use float64")
    f = Features(X, A, G1, G2, residual, w1, w2)
    if second_order:
        check_no_overflow(f, net, maxima=dict(zip(("A", "G1", "G2", "X"), maxima[1:])))
    return f


def _activations(activation, X, w1):
    """(pre, g, g', g'', [max |pre|, |g|, |g'|, |g''|, |X|]) with pre = X w1^T.

    Built-in activations: :func:`~fasthess._kernels.activation.feature_rows` on row
    ranges, one per thread that ``P Nh`` activations are worth
    (``_config.MIN_ACTIVATIONS_PER_THREAD``), within the budget of the enclosing
    computation. A CustomActivation: its own kernel, the maxima by NumPy.
    """
    n_rows = X.shape[0]
    shape = (n_rows, w1.shape[0])
    pre, A, G1, G2 = (np.empty(shape, dtype=X.dtype) for _ in range(4))
    if activation.code < 0:
        with np.errstate(over="ignore", invalid="ignore"):
            np.dot(X, w1.T, out=pre)
        activation.apply(pre, A, G1, G2)
        maxima = [_amax(a) for a in (pre, A, G1, G2, X)]
        return pre, A, G1, G2, [m if m == m else math.inf for m in maxima]  # NaN: inf
    from ._kernels.features import feature_rows

    n_threads = planned_threads(pre.size, min(compute_budget(), n_rows),
                                _config.MIN_ACTIVATIONS_PER_THREAD)
    coeffs = activation.kernel_coeffs(X.dtype)
    if n_threads == 1:
        maxima = np.empty(5)
        feature_rows(activation.code, coeffs, X, w1, pre, A, G1, G2, 0, n_rows, maxima)
        return pre, A, G1, G2, maxima.tolist()
    maxima = np.empty((n_threads, 5))
    run_pieces(lambda i: feature_rows(activation.code, coeffs, X, w1, pre, A, G1, G2,
                                      n_rows * i // n_threads, n_rows * (i + 1) // n_threads,
                                      maxima[i]), n_threads, n_threads)
    return pre, A, G1, G2, maxima.max(axis=0).tolist()


def _name_the_overflow(net, X, w1, pre, outputs, dt) -> None:
    """The ValueError naming what is not finite: the pre-activations, or g, g', g''."""
    if not np.all(np.isfinite(pre)):
        raise ValueError(f"X: the pre-activations w1 @ x overflow {dt} (|X| up to "
                         f"{_amax(X):.3g}, |w1| up to {_amax(w1):.3g}); rescale X or the "
                         "weights")
    for label, a in zip(("g", "g'", "g''"), outputs):
        if not np.all(np.isfinite(a)):
            raise ValueError(
                f"net: the activation {net.activation.name!r} overflows: {label}(w1 @ x) is "
                f"not finite in {dt} for some samples; reduce the weight or input scale, or "
                "use float64")


def _amax(a) -> float:
    return float(np.abs(a).max()) if a is not None and a.size else 0.0


def overflow_limit(dtype) -> float:
    """The largest value the overflow guards let a sum of products reach in ``dtype``:
    its maximum over ``_config.OVERFLOW_MARGIN``."""
    return float(np.finfo(dtype).max) / _config.OVERFLOW_MARGIN


def _check_input_scale(X: np.ndarray, dtype, xmax: float) -> None:
    """Products x_i x_l of inputs (in H, the NTK, the trace) summed over P must be finite;
    ``xmax`` = max |X|."""
    from ._kernels.activation import input_products_bound

    if input_products_bound.py_func(X.shape[0], xmax) > overflow_limit(dtype):
        raise ValueError(
            f"X: entries up to {xmax:.3g} overflow {np.dtype(dtype)} in the products x_i x_l "
            f"that the Hessian sums over P = {X.shape[0]} samples (limit "
            f"~{math.sqrt(overflow_limit(dtype) / X.shape[0]):.3g}); rescale X (and w1 by the "
            "inverse) or use float64")


def check_no_overflow(f: Features, net, maxima: dict | None = None) -> None:
    """Refuse before assembling if a Hessian entry could overflow the dtype.

    Each entry is a sum over P samples of products of Jacobian factors (|g| or
    |w2 g' x|) and, off the optimum, |r w2 g'' x x|; bounding them by their maxima
    is cheap (O(P Nh)) and only refuses what is within a factor P of overflow. The
    maxima are finite (checked before): :func:`~fasthess._kernels.activation.hessian_entry_bound`,
    which the one-call kernel reads too. ``maxima``: max |.| of "X", "A", "G1", "G2"
    where already known.
    """
    from ._kernels.activation import hessian_entry_bound

    known = maxima or {}

    def amax(name):
        return known[name] if name in known else _amax(getattr(f, name))

    at_optimum = f.residual is None
    bound, factor = hessian_entry_bound.py_func(
        f.n_samples, amax("X"), amax("A"), amax("G1"), 0.0 if at_optimum else amax("G2"),
        _amax(f.w2), 0.0 if at_optimum else _amax(f.residual))
    if bound > overflow_limit(f.X.dtype):
        raise ValueError(
            f"net: Hessian entries would overflow {f.X.dtype} (activation "
            f"{net.activation.name!r}: |g| or |w2 g'(w1 x) x| up to {factor:.3g} over "
            f"{f.n_samples} samples); reduce the weight or input scale, or use float64")


def dense_bytes(n: int, dtype) -> int:
    """Bytes of an n x n matrix of ``dtype``."""
    return int(n) * int(n) * np.dtype(dtype).itemsize


def refuse_if_too_large(n: int, dtype, what="the dense Hessian", overhead=None,
                        alternative=MATRIX_FREE_HINT) -> None:
    """MemoryError before allocating an n x n matrix (times the assembly overhead)."""
    if overhead is None:
        overhead = _config.ASSEMBLY_OVERHEAD
    check_fits(int(overhead * dense_bytes(n, dtype)),
               lambda: f"{what} ({n} x {n}, {np.dtype(dtype)})", alternative)
