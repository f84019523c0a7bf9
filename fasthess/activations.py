"""Activation functions: g, g', g'' for the kernels, plus the metadata theory needs.

Built-in names: ``"linear"``, ``"quadratic"`` (z + z^2, the paper's eps = 1),
``"erf"`` (erf(z / sqrt 2)), ``"tanh"``, ``"relu"``. Objects:
:class:`Polynomial`, :class:`Quadratic` and :class:`CustomActivation`.
"""
from __future__ import annotations


import numpy as np

from ._kernels.activation import ERF, LINEAR, POLYNOMIAL, RELU, TANH

__all__ = [
    "Activation",
    "Polynomial",
    "Quadratic",
    "CustomActivation",
    "get_activation",
    "ACTIVATION_NAMES",
]


class Activation:
    """Base class. Subclasses set the attributes below.

    Attributes
    ----------
    name : str
    code : int
        Kernel code of a built-in activation, or -1 for a user activation.
    coeffs : ndarray
        Polynomial coefficients (coeffs[m] multiplies z**m); empty if not polynomial.
    is_polynomial, is_odd, is_piecewise_linear, is_homogeneous : bool
    homogeneous_degree : int or None
        d such that g(c z) = c**d g(z) for c > 0 (relu, linear, pure powers).
    """

    name: str = "activation"
    code: int = -1
    is_polynomial: bool = False
    is_odd: bool = False
    is_piecewise_linear: bool = False
    is_homogeneous: bool = False
    homogeneous_degree: int | None = None

    @property
    def coeffs(self) -> np.ndarray:
        return np.zeros(0)

    @property
    def degree(self) -> int | None:
        """Polynomial degree, or None for a non-polynomial activation."""
        return None

    @property
    def powers(self) -> tuple[int, ...]:
        """The powers of z with a nonzero coefficient (polynomials only)."""
        return ()

    def evaluate(self, z):
        """(g, g', g'') of an array, through the same kernel the Hessian uses."""
        z = np.ascontiguousarray(np.atleast_2d(np.asarray(z, dtype=np.float64)))
        out = (np.empty_like(z), np.empty_like(z), np.empty_like(z))
        self.apply(z, *out)
        return out

    def apply(self, pre, out_g, out_d1, out_d2):
        from ._kernels.activation import apply_activation

        apply_activation(self.code, self.kernel_coeffs(pre.dtype), pre, out_g, out_d1, out_d2)

    def kernel_coeffs(self, dtype):
        coeffs = self.coeffs
        if coeffs.size == 0:
            coeffs = np.zeros(1)
        # a writable copy: a read-only array would make Numba compile a second kernel
        return np.array(coeffs, dtype=dtype, copy=True)

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"

    def __eq__(self, other):
        return isinstance(other, Activation) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def _key(self):
        # polynomials are equal when their coefficients are, whatever their names
        if self.is_polynomial and self.code >= 0:
            return ("polynomial", tuple(self.coeffs.tolist()))
        return (type(self).__name__, self.name)


class _Builtin(Activation):
    def __init__(self, name, code, *, odd, piecewise_linear, homogeneous_degree=None):
        self.name = name
        self.code = code
        self.is_odd = odd
        self.is_piecewise_linear = piecewise_linear
        self.is_homogeneous = homogeneous_degree is not None
        self.homogeneous_degree = homogeneous_degree


class Polynomial(Activation):
    """g(z) = sum_m coeffs[m] z**m, of any degree.

    Examples
    --------
    >>> import fasthess as fh
    >>> fh.Polynomial([0, 0, 1]).powers        # pure z^2
    (2,)
    >>> fh.Polynomial([0.3, 1, 0.5]).degree
    2
    """

    is_polynomial = True

    def __init__(self, coeffs, name: str | None = None):
        c = np.asarray(coeffs, dtype=np.float64)
        if c.ndim != 1 or c.size == 0:
            raise ValueError(f"coeffs must be a non-empty 1-d sequence, got shape {c.shape}")
        if not np.all(np.isfinite(c)):
            raise ValueError("coeffs must be finite")
        nz = np.flatnonzero(c)
        if nz.size == 0:
            raise ValueError("coeffs are all zero: the network output would be identically 0")
        self._coeffs = c[: nz[-1] + 1].copy()
        self._coeffs.setflags(write=False)
        p = tuple(int(m) for m in np.flatnonzero(self._coeffs))
        self._powers = p
        self.is_odd = all(m % 2 == 1 for m in p)
        self.is_homogeneous = len(p) == 1
        self.homogeneous_degree = p[0] if len(p) == 1 else None
        self.is_piecewise_linear = p == (1,)
        self.code = LINEAR if (p == (1,) and self._coeffs[1] == 1.0) else POLYNOMIAL
        self.name = name if name is not None else _poly_name(self._coeffs)

    @property
    def coeffs(self):
        return self._coeffs

    @property
    def degree(self):
        return len(self._coeffs) - 1

    @property
    def powers(self):
        return self._powers


class Quadratic(Polynomial):
    """g(z) = z + eps z^2 (the paper's quadratic activation; eps = 1 by default)."""

    def __init__(self, eps: float = 1.0):
        eps = float(eps)
        super().__init__([0.0, 1.0, eps], name="quadratic" if eps == 1.0 else f"z+{eps:g}z^2")
        self.eps = eps


class CustomActivation(Activation):
    """A user activation from Numba-jitted scalar functions g, g', g''.

    Examples
    --------
    >>> import numba, math, fasthess as fh
    >>> g = numba.njit(lambda z: math.sin(z))
    >>> dg = numba.njit(lambda z: math.cos(z))
    >>> d2g = numba.njit(lambda z: -math.sin(z))
    >>> act = fh.CustomActivation(g, dg, d2g, name="sin", odd=True)
    """

    def __init__(self, g, dg, d2g, name: str = "custom", *, odd: bool = False,
                 polynomial_coeffs=None):
        for label, f in (("g", g), ("dg", dg), ("d2g", d2g)):
            if not hasattr(f, "py_func"):
                raise TypeError(
                    f"{label} must be a Numba-jitted function (decorate it with numba.njit), "
                    f"got {type(f).__name__}")
        self.g, self.dg, self.d2g = g, dg, d2g
        self.name = name
        self.is_odd = bool(odd)
        self._applier = None
        self._poly = None if polynomial_coeffs is None else Polynomial(polynomial_coeffs)
        if self._poly is not None:
            self.is_polynomial = True

    @property
    def coeffs(self):
        return self._poly.coeffs if self._poly is not None else np.zeros(0)

    @property
    def degree(self):
        return self._poly.degree if self._poly is not None else None

    @property
    def powers(self):
        return self._poly.powers if self._poly is not None else ()

    def apply(self, pre, out_g, out_d1, out_d2):
        if self._applier is None:
            from ._kernels.activation import make_custom_applier

            self._applier = make_custom_applier(self.g, self.dg, self.d2g)
        self._applier(pre, out_g, out_d1, out_d2)

    def _key(self):
        return ("custom", self.name, id(self.g), id(self.dg), id(self.d2g))


def _poly_name(c):
    terms = []
    for m, a in enumerate(c):
        if a == 0:
            continue
        mono = "" if m == 0 else ("z" if m == 1 else f"z^{m}")
        coef = f"{a:g}" if (a != 1 or m == 0) else ""
        terms.append(coef + mono)
    return "+".join(terms).replace("+-", "-")


def _builtins():
    return {
        "linear": Polynomial([0.0, 1.0], name="linear"),
        "quadratic": Quadratic(1.0),
        "erf": _Builtin("erf", ERF, odd=True, piecewise_linear=False),
        "tanh": _Builtin("tanh", TANH, odd=True, piecewise_linear=False),
        "relu": _Builtin("relu", RELU, odd=False, piecewise_linear=True, homogeneous_degree=1),
    }


_BUILTINS = _builtins()
ACTIVATION_NAMES = tuple(_BUILTINS)


def get_activation(activation) -> Activation:
    """Resolve a name or an :class:`Activation` object (raises on anything else)."""
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str):
        try:
            return _BUILTINS[activation.lower()]
        except KeyError:
            raise ValueError(
                f"activation: unknown name {activation!r}; expected one of "
                f"{', '.join(ACTIVATION_NAMES)}, or fasthess.Polynomial / Quadratic / "
                f"CustomActivation") from None
    raise TypeError(
        f"activation must be a name ({', '.join(ACTIVATION_NAMES)}) or a fasthess "
        f"Activation object, got {type(activation).__name__}")
