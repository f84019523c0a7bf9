"""Input checks: one helper per kind of check, used by every public entry point.

Public functions validate their arguments once, at the boundary, with these
helpers and then call unvalidated internals. Each error names the argument, what
was expected and what was given. This is the bottom layer: it imports nothing
from fasthess, so model-level checks take the class they check against.
"""
from __future__ import annotations

import numbers

import numpy as np

__all__ = ["FLOAT_DTYPES", "check_dtype", "check_float_array", "check_int", "check_real",
           "check_bool", "check_choice", "check_instance", "check_teacher", "check_inputs",
           "check_rng"]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype, name: str = "dtype") -> np.dtype:
    """float32 or float64, from anything :class:`numpy.dtype` accepts."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {dt}")
    return dt


def check_float_array(a, name: str, ndim: int, dtype=None, copy: bool = False) -> np.ndarray:
    """A finite, real, floating, C-contiguous array of the given ndim.

    Integers and booleans are upcast to float64, as NumPy and SciPy do; complex and
    object arrays are refused (a complex weight would lose its imaginary part), and so
    are masked arrays, whose mask fasthess would otherwise silently ignore.
    ``copy=True`` always returns a new array, so later changes to ``a`` by the
    caller cannot reach it.
    """
    if isinstance(a, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array; fasthess does not honour masks. Pass the "
                        f"valid rows only (e.g. {name}[~{name}.mask.any(axis=1)].data) or "
                        f"{name}.filled(value)")
    arr = np.asarray(a)
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    elif arr.dtype.kind != "f":
        raise TypeError(f"{name} must hold real numbers (float32 or float64; integers are "
                        f"upcast to float64), got dtype {arr.dtype}")
    elif arr.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    # a finite sum proves every entry finite, without a boolean temporary; a sum that
    # overflows (entries near the dtype's limit) falls back to the elementwise test
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(arr, axis=None)
    if not np.isfinite(total) and not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
    out_dtype = dtype if dtype is not None else arr.dtype
    if copy:
        return np.array(arr, dtype=out_dtype, order="C", copy=True)
    return np.ascontiguousarray(arr, dtype=out_dtype)


def check_int(value, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (Python or NumPy; never a bool, a float or a string) in range."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_real(value, name: str, *, positive: bool = False, nonnegative: bool = False,
               finite: bool = True) -> float:
    """A real number (Python or NumPy int or float; never a bool or a string)."""
    if (isinstance(value, (bool, np.bool_, str, bytes))
            or not isinstance(value, (numbers.Real, np.floating, np.integer))):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    bound = "> 0" if positive else ">= 0" if nonnegative else None
    if ((finite and not np.isfinite(v)) or (positive and not v > 0)
            or (nonnegative and not v >= 0)):
        need = " and ".join(w for w in ("finite" if finite else None, bound) if w)
        raise ValueError(f"{name} must be {need}, got {value!r}")
    return v


def check_integration(end, evaluate, rtol, atol, method, default_points: int, *,
                      end_name: str, eval_name: str):
    """The arguments of an integration by scipy.integrate.solve_ivp, checked: (end, the
    points to evaluate at, rtol, atol). ``evaluate`` None: ``default_points`` equally
    spaced points of [0, end]; else a non-empty increasing array within [0, end]."""
    end = check_real(end, end_name, positive=True)
    rtol = check_real(rtol, "rtol", positive=True)
    atol = check_real(atol, "atol", positive=True)
    if not isinstance(method, str):
        raise TypeError(f"method must be a solve_ivp method name, got {method!r}")
    if evaluate is None:
        return end, np.linspace(0.0, end, default_points), rtol, atol
    evaluate = check_float_array(evaluate, eval_name, ndim=1, dtype=np.float64)
    if evaluate.size == 0 or np.any(np.diff(evaluate) <= 0) or evaluate[0] < 0 \
            or evaluate[-1] > end:
        raise ValueError(f"{eval_name} must be non-empty, increasing and within [0, "
                         f"{end_name} = {end:g}]")
    return end, evaluate, rtol, atol


def check_bool(value, name: str) -> bool:
    """True or False (Python or NumPy bool): a string such as "no" is refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_progress(value, name: str = "progress"):
    """None (a bar only when stderr is a terminal), True or False."""
    if value is None:
        return None
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True, False or None (a bar only when stderr is a "
                        f"terminal), got {value!r}")
    return bool(value)


def check_choice(value, name: str, choices) -> str:
    """One of the strings ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, "
                         f"got {value!r}")
    return value


def check_instance(value, cls, name: str, what: str):
    """``value`` if it is a ``cls``; else a TypeError saying ``what`` was expected."""
    if not isinstance(value, cls):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__}")
    return value


def check_teacher(student, teacher):
    """The teacher to use, or None when it is the student itself (the optimum).

    ``teacher`` must be of the student's class, with the student's n_in and n_out (its
    number of hidden units may differ: only its outputs enter); one equal to the
    student (same activation and weights) also means the optimum.
    """
    if teacher is None or teacher is student:
        return None
    check_instance(teacher, type(student), "teacher",
                   f"a fasthess.{type(student).__name__} or None")
    if (teacher.n_in, teacher.n_out) != (student.n_in, student.n_out):
        raise ValueError(
            f"teacher has shape (n_in, n_hidden, n_out) = {teacher.shape} but the student has "
            f"{student.shape}; n_in and n_out must match (n_hidden may differ)")
    if teacher.shape != student.shape:
        return teacher
    if (teacher.activation == student.activation and np.array_equal(teacher.w1, student.w1)
            and np.array_equal(teacher.w2, student.w2)):
        return None
    return teacher


def check_inputs(X, n_in: int, name: str = "X", dtype=None, copy: bool = False) -> np.ndarray:
    """Inputs of shape (P, n_in): finite, real (see :func:`check_float_array`)."""
    if isinstance(X, (numbers.Number, str, bytes)) or X is None:
        raise TypeError(f"{name} must be an array of shape (n_samples, n_in = {n_in}) or "
                        f"fasthess.POPULATION, got {X!r}")
    arr = check_float_array(X, name, ndim=2, dtype=dtype, copy=copy)
    if arr.shape[1] != n_in:
        raise ValueError(f"{name} must have shape (n_samples, n_in) with n_in = {n_in}, "
                         f"got {name}.shape = {arr.shape}")
    return arr


def check_rng(rng, name: str = "rng") -> np.random.Generator:
    """A numpy Generator, following SciPy's SPEC 7.

    None draws fresh entropy from the operating system (a different stream on
    every call); an int (>= 0), a :class:`numpy.random.SeedSequence` or a
    :class:`numpy.random.BitGenerator` seeds a new Generator (the same stream
    every time: pass an int for reproducible results); a Generator is used as
    is, so its state advances. Anything else, the legacy RandomState included,
    is refused.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (np.random.SeedSequence, np.random.BitGenerator)):
        return np.random.default_rng(rng)
    if isinstance(rng, np.random.RandomState):
        raise TypeError(f"{name}: a numpy.random.RandomState is not accepted; pass an int "
                        f"seed or a numpy.random.Generator (e.g. numpy.random.default_rng(0))")
    if isinstance(rng, (bool, np.bool_)) or not isinstance(rng, numbers.Integral):
        raise TypeError(f"{name} must be None, an int seed or a numpy.random.Generator, "
                        f"got {rng!r}")
    if rng < 0:
        raise ValueError(f"{name} must be a non-negative int seed, got {rng}")
    return np.random.default_rng(int(rng))
