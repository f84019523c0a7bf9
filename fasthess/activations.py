"""Activation functions: g, g', g'' for the kernels, plus the metadata theory needs.

Built-in names: ``"linear"``, ``"quadratic"`` (z + z^2, the paper's eps = 1),
``"erf"`` (erf(z / sqrt 2)), ``"tanh"``, ``"relu"``. Objects:
:class:`Polynomial`, :class:`Quadratic` and :class:`CustomActivation`.
"""
from __future__ import annotations


import numpy as np

from . import _config

from ._kernels.activation import ERF, LINEAR, POLYNOMIAL, RELU, TANH
from ._validation import check_real

__all__ = [
    "Activation",
    "Polynomial",
    "Quadratic",
    "CustomActivation",
    "get_activation",
    "ACTIVATION_NAMES",
]


class Activation:
    """The base class of activations: g, g', g'' for the kernels and metadata for theory.

    Subclasses set the attributes below. Besides g, g', g'' (for the kernels), an
    activation carries the metadata that
    :mod:`fasthess.theory` reads to predict the rank of the Hessian (THEORY.md c).
    Theory never looks at the name: a :class:`Polynomial` equal to ``"quadratic"``
    gets the same answers as ``"quadratic"``.

    Attributes
    ----------
    name : str
        For messages and reprs only.
    code : int
        Kernel code of a built-in activation, or -1 for a user activation.
    coeffs : ndarray
        Polynomial coefficients (coeffs[m] multiplies z**m); empty if not polynomial.
    is_polynomial : bool
        g is the polynomial of ``coeffs``: theory uses its ``powers``.
    homogeneous_degree : float or None
        d > 0 such that g(c z) = c**d g(z) for every c > 0 (relu: 1, z**3: 3), or
        None. A non-polynomial g with such a d has one continuous symmetry per
        hidden unit, w_j -> c w_j, b_j -> c**-d b_j, and theory predicts rank
        D - Nh for it.
    no_continuous_symmetry : bool
        True when no continuous family of parameters gives the same network
        function (only discrete ones: permutations of hidden units, sign flips
        for odd g), so that the Hessian at a generic optimum with enough data
        has full rank D. A property of the function that cannot be derived from
        the others; declared for erf and tanh (verified, THEORY.md c).

    See Also
    --------
    Polynomial, Quadratic, CustomActivation : The activation objects.

    Examples
    --------
    >>> import fasthess as fh
    >>> erf = fh.TwoLayerNet.random(3, 2, activation="erf", rng=0).activation
    >>> isinstance(erf, fh.Activation), erf.is_polynomial, erf.no_continuous_symmetry
    (True, False, True)
    """

    name: str = "activation"
    code: int = -1
    is_polynomial: bool = False
    homogeneous_degree: float | None = None
    no_continuous_symmetry: bool = False
    # set by the polynomial activations (Polynomial, a CustomActivation declaring one)
    _coeffs: np.ndarray = np.zeros(0)
    _powers: tuple[int, ...] = ()

    @property
    def coeffs(self) -> np.ndarray:
        """Polynomial coefficients, coeffs[m] multiplying z**m (empty if not polynomial).

        Examples
        --------
        >>> import fasthess as fh
        >>> fh.Quadratic(0.5).coeffs
        array([0. , 1. , 0.5])
        """
        return self._coeffs

    @property
    def degree(self) -> int | None:
        """Polynomial degree, or None for a non-polynomial activation.

        Examples
        --------
        >>> import fasthess as fh
        >>> fh.Polynomial([0.3, 1, 0.5]).degree, fh.Quadratic(0.5).degree
        (2, 2)
        """
        return self._coeffs.size - 1 if self._coeffs.size else None

    @property
    def powers(self) -> tuple[int, ...]:
        """The powers of z with a nonzero coefficient (polynomials only; else empty).

        Examples
        --------
        >>> import fasthess as fh
        >>> fh.Polynomial([0, 1, 0, 2]).powers
        (1, 3)
        """
        return self._powers

    def evaluate(self, z):
        """(g, g', g'') of an array, through the same kernel the Hessian uses.

        Parameters
        ----------
        z : array_like
            Points, cast to float64 (a 1-d input comes back as shape (1, n)).

        Returns
        -------
        tuple of three ndarrays
            The values g(z), g'(z), g''(z), each 2-d.

        Examples
        --------
        >>> from fasthess.activations import get_activation
        >>> g, d1, d2 = get_activation("quadratic").evaluate([0.0, 1.0])
        >>> g.tolist(), d1.tolist(), d2.tolist()
        ([[0.0, 2.0]], [[1.0, 3.0]], [[2.0, 2.0]])
        """
        z = np.ascontiguousarray(np.atleast_2d(np.asarray(z, dtype=np.float64)))
        out = (np.empty_like(z), np.empty_like(z), np.empty_like(z))
        self.apply(z, *out)
        return out

    def apply(self, pre, out_g, out_d1, out_d2):
        """Write g, g', g'' of the 2-d array ``pre`` into the three outputs.

        The compiled kernel the Hessian routes use; nothing is validated.

        Parameters
        ----------
        pre : ndarray, shape (P, Nh), float32 or float64, C-contiguous
            Pre-activations.
        out_g, out_d1, out_d2 : ndarray, like ``pre``
            Overwritten with g(pre), g'(pre), g''(pre); same shape and dtype as ``pre``.

        Examples
        --------
        >>> import numpy as np, fasthess as fh
        >>> pre = np.array([[0.0, 2.0]])
        >>> g, d1, d2 = np.empty_like(pre), np.empty_like(pre), np.empty_like(pre)
        >>> fh.Quadratic(1.0).apply(pre, g, d1, d2)
        >>> g, d1, d2
        (array([[0., 6.]]), array([[1., 5.]]), array([[2., 2.]]))
        """
        from ._kernels.activation import apply_activation

        apply_activation(self.code, self.kernel_coeffs(pre.dtype), pre, out_g, out_d1, out_d2)

    def kernel_coeffs(self, dtype):
        """The coefficients as the kernels take them.

        Parameters
        ----------
        dtype : numpy dtype
            The working precision of the kernel.

        Returns
        -------
        ndarray
            A writable copy of ``coeffs`` in ``dtype``; ``[0]`` for a non-polynomial.

        Examples
        --------
        >>> import numpy as np, fasthess as fh
        >>> fh.Quadratic(0.5).kernel_coeffs(np.float32)
        array([0. , 1. , 0.5], dtype=float32)
        """
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
    def __init__(self, name, code, *, homogeneous_degree=None, no_continuous_symmetry=False):
        self.name = name
        self.code = code
        self.homogeneous_degree = homogeneous_degree
        self.no_continuous_symmetry = no_continuous_symmetry


class Polynomial(Activation):
    """The polynomial g(z) = sum_m coeffs[m] z**m, of any degree.

    Parameters
    ----------
    coeffs : sequence of float
        The coefficients: coeffs[m] multiplies z**m. Trailing zeros are dropped;
        not all may be zero.
    name : str, optional
        Default: the polynomial written out, e.g. ``"0.3+z+0.5z^2"``.

    Examples
    --------
    >>> import fasthess as fh
    >>> fh.Polynomial([0, 0, 1]).powers        # pure z^2
    (2,)
    >>> fh.Polynomial([0, 0, 1]).homogeneous_degree
    2
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
        self.homogeneous_degree = p[0] if len(p) == 1 else None
        self.code = LINEAR if (p == (1,) and self._coeffs[1] == 1.0) else POLYNOMIAL
        self.name = name if name is not None else _poly_name(self._coeffs)


class Quadratic(Polynomial):
    """The quadratic g(z) = z + eps z^2 (the paper's activation; eps = 1 by default).

    Parameters
    ----------
    eps : float
        The coefficient of z^2; ``Quadratic(1.0)`` is ``"quadratic"``.

    Examples
    --------
    >>> import fasthess as fh
    >>> fh.Quadratic(0.5).coeffs.tolist(), fh.Quadratic(1.0).name
    ([0.0, 1.0, 0.5], 'quadratic')
    """

    def __init__(self, eps: float = 1.0):
        eps = float(eps)
        super().__init__([0.0, 1.0, eps], name="quadratic" if eps == 1.0 else f"z+{eps:g}z^2")
        self.eps = eps


class CustomActivation(Activation):
    """A user activation from Numba-jitted scalar functions g, g', g''.

    Parameters
    ----------
    g, dg, d2g : Numba-jitted functions of one float
        The function g and its first two derivatives.
    name : str
        For messages and reprs.
    polynomial_coeffs : sequence of float, optional
        Declares that g is this polynomial (coeffs[m] multiplies z**m): theory
        then treats it exactly as ``Polynomial(polynomial_coeffs)``.
    homogeneous_degree : float, optional
        Declares g(c z) = c**d g(z) for c > 0 (e.g. 1 for a leaky relu or |z|):
        theory then predicts rank D - Nh, as for relu.
    no_continuous_symmetry : bool
        Declares that no continuous family of parameters gives the same network
        function (as for erf and tanh): theory then predicts full rank D.

    Raises
    ------
    TypeError
        If g, dg or d2g is not Numba-jitted.
    ValueError
        If g does not satisfy a declaration at a few check points, or two
        declarations contradict each other.

    Notes
    -----
    Without a declaration, :func:`fasthess.theory.effective_parameters` has no
    formula for the activation and says so. ``polynomial_coeffs`` and
    ``homogeneous_degree`` are checked against g (its Python function
    ``g.py_func``, so nothing compiles) at six points.

    Examples
    --------
    >>> import numba, math, fasthess as fh
    >>> g = numba.njit(lambda z: math.sin(z))
    >>> dg = numba.njit(lambda z: math.cos(z))
    >>> d2g = numba.njit(lambda z: -math.sin(z))
    >>> act = fh.CustomActivation(g, dg, d2g, name="sin", no_continuous_symmetry=True)
    >>> leaky = fh.CustomActivation(numba.njit(lambda z: max(z, 0.1 * z)),
    ...                             numba.njit(lambda z: 1.0 if z > 0 else 0.1),
    ...                             numba.njit(lambda z: 0.0), name="leaky", homogeneous_degree=1)
    >>> fh.theory.effective_parameters(leaky, 4, 3)     # D - Nh = 15 - 3
    12
    """

    def __init__(self, g, dg, d2g, name: str = "custom", *, polynomial_coeffs=None,
                 homogeneous_degree=None, no_continuous_symmetry: bool = False):
        for label, f in (("g", g), ("dg", dg), ("d2g", d2g)):
            if not hasattr(f, "py_func"):
                raise TypeError(
                    f"{label} must be a Numba-jitted function (decorate it with numba.njit), "
                    f"got {type(f).__name__}")
        if not isinstance(no_continuous_symmetry, (bool, np.bool_)):
            raise TypeError(f"no_continuous_symmetry must be True or False, "
                            f"got {no_continuous_symmetry!r}")
        if polynomial_coeffs is not None and (homogeneous_degree is not None
                                              or no_continuous_symmetry):
            raise ValueError(
                "polynomial_coeffs: declare it alone; a polynomial's homogeneity and "
                "symmetries follow from its coefficients")
        if homogeneous_degree is not None and no_continuous_symmetry:
            raise ValueError(
                "homogeneous_degree and no_continuous_symmetry contradict each other: a "
                "positively homogeneous g has the rescaling symmetry w_j -> c w_j, "
                "b_j -> c^-d b_j of every hidden unit")
        self.g, self.dg, self.d2g = g, dg, d2g
        self.name = name
        self._applier = None
        self._poly = None
        if polynomial_coeffs is not None:
            self._poly = Polynomial(polynomial_coeffs)
            _check_declared(g, "polynomial_coeffs", polynomial_coeffs,
                            lambda z: np.polynomial.polynomial.polyval(z, self._poly.coeffs))
            self._coeffs, self._powers = self._poly.coeffs, self._poly.powers
            self.is_polynomial = True
            self.homogeneous_degree = self._poly.homogeneous_degree
        if homogeneous_degree is not None:
            d = check_real(homogeneous_degree, "homogeneous_degree", positive=True)
            self.homogeneous_degree = int(d) if d.is_integer() else d
            c = _config.ACTIVATION_HOMOGENEITY_FACTOR
            _check_declared(g, "homogeneous_degree", homogeneous_degree,
                            lambda z: c**d * g.py_func(z / c))
        self.no_continuous_symmetry = bool(no_continuous_symmetry)

    def apply(self, pre, out_g, out_d1, out_d2):
        """Write g, g', g'' of the 2-d array ``pre`` into the three outputs.

        The user's functions run in a kernel compiled on the first call for this
        activation object (not cached on disk); nothing is validated.

        Parameters
        ----------
        pre : ndarray, shape (P, Nh), float32 or float64, C-contiguous
            Pre-activations.
        out_g, out_d1, out_d2 : ndarray, like ``pre``
            Overwritten with g(pre), g'(pre), g''(pre); same shape and dtype as ``pre``.

        Examples
        --------
        >>> import numba, numpy as np, fasthess as fh
        >>> cube = fh.CustomActivation(numba.njit(lambda z: z ** 3),
        ...                            numba.njit(lambda z: 3 * z ** 2),
        ...                            numba.njit(lambda z: 6 * z), name="cube")
        >>> pre = np.array([[2.0]])
        >>> g, d1, d2 = np.empty_like(pre), np.empty_like(pre), np.empty_like(pre)
        >>> cube.apply(pre, g, d1, d2)
        >>> float(g[0, 0]), float(d1[0, 0]), float(d2[0, 0])
        (8.0, 12.0, 12.0)
        """
        if self._applier is None:
            from ._kernels.activation import make_custom_applier

            self._applier = make_custom_applier(self.g, self.dg, self.d2g)
        self._applier(pre, out_g, out_d1, out_d2)

    def _key(self):
        return ("custom", self.name, id(self.g), id(self.dg), id(self.d2g),
                tuple(self.coeffs.tolist()), self.homogeneous_degree,
                self.no_continuous_symmetry)




def _check_declared(g, label, value, expected):
    """Refuse a declaration that g does not satisfy at ``_config.ACTIVATION_CHECK_POINTS``.

    ``expected(z)`` is what g(z) must equal if the declaration ``label = value``
    holds. The user's Python function (``g.py_func``) is called: nothing compiles.
    """
    got = np.array([float(g.py_func(z)) for z in _config.ACTIVATION_CHECK_POINTS])
    want = np.array([float(expected(z)) for z in _config.ACTIVATION_CHECK_POINTS])
    scale = max(np.max(np.abs(want)), np.finfo(np.float64).tiny)
    if not np.all(np.abs(got - want) <= _config.ACTIVATION_DECLARATION_RTOL * scale):
        worst = int(np.argmax(np.abs(got - want)))
        raise ValueError(
            f"{label} = {value!r} does not describe g: at z = "
            f"{_config.ACTIVATION_CHECK_POINTS[worst]}, "
            f"g(z) = {got[worst]:.10g} but the declaration implies {want[worst]:.10g}")


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
        "erf": _Builtin("erf", ERF, no_continuous_symmetry=True),
        "tanh": _Builtin("tanh", TANH, no_continuous_symmetry=True),
        "relu": _Builtin("relu", RELU, homogeneous_degree=1),
    }


_BUILTINS = _builtins()
ACTIVATION_NAMES = tuple(_BUILTINS)


def get_activation(activation) -> Activation:
    """Resolve a name or an :class:`Activation` object.

    Parameters
    ----------
    activation : str or Activation
        One of :data:`ACTIVATION_NAMES` (case-insensitive), or an object, returned as is.

    Returns
    -------
    Activation

    Raises
    ------
    ValueError
        For an unknown name.
    TypeError
        For anything else.

    Examples
    --------
    >>> from fasthess.activations import get_activation
    >>> get_activation("quadratic") == get_activation("Quadratic")
    True
    """
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
