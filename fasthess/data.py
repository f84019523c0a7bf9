"""Random data: Gaussian inputs, POPULATION (the input distribution itself), probe vectors."""
from __future__ import annotations

import numpy as np

from ._validation import check_dtype, check_int, check_rng

__all__ = ["gaussian_inputs", "rademacher", "POPULATION", "Population", "is_population"]


class Population:
    """The input distribution x ~ N(0, I_{n_in}) with P -> infinity (THEORY.md f).

    Use the one instance, :data:`fasthess.POPULATION`, wherever X is accepted:
    expectations over the inputs replace sample averages, so the population
    Hessian H_inf = E[J^T J] comes in closed form, with no samples.

    Examples
    --------
    >>> import fasthess as fh
    >>> fh.POPULATION
    fasthess.POPULATION
    """

    _instance = None

    def __new__(cls):
        # one instance, so ``X is POPULATION`` identifies it (and pickling keeps it)
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __reduce__(self):
        return (Population, ())

    def __repr__(self):
        return "fasthess.POPULATION"


#: The input distribution N(0, I) with infinitely many samples (see :class:`Population`).
POPULATION = Population()


def is_population(X) -> bool:
    """Whether ``X`` stands for the population (:data:`POPULATION`)."""
    return isinstance(X, Population)


def gaussian_inputs(n_samples, n_in, rng=None, dtype=np.float64):
    """Standard Gaussian inputs x ~ N(0, I), one sample per row.

    Parameters
    ----------
    n_samples : int
        P >= 1, the number of samples (rows).
    n_in : int
        Ni >= 1, the input dimension (columns).
    rng : None, int or numpy.random.Generator, optional
        The random source, as in SciPy (SPEC 7): None draws fresh entropy (a new
        sample on every call), an int seeds a new Generator (the same inputs every
        time), a Generator is used as is (its state advances).
    dtype : float32 or float64, default float64
        The dtype of the result (drawn in float64, then cast).

    Returns
    -------
    ndarray, shape (n_samples, n_in)
        Independent standard normal entries.

    See Also
    --------
    POPULATION : The distribution itself, P -> infinity.

    Examples
    --------
    >>> import fasthess as fh
    >>> X = fh.gaussian_inputs(5, 3, rng=0)
    >>> X.shape, X.dtype
    ((5, 3), dtype('float64'))
    >>> bool((X == fh.gaussian_inputs(5, 3, rng=0)).all())   # an int seed reproduces
    True
    """
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    n_in = check_int(n_in, "n_in", minimum=1)
    dt = check_dtype(dtype)
    generator = check_rng(rng)
    return generator.standard_normal((n_samples, n_in)).astype(dt, copy=False)


def rademacher(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """Random +-1 entries (the probe vectors of SLQ and Hutchinson's trace estimator)."""
    return (2.0 * rng.integers(0, 2, size=shape) - 1.0).astype(dtype)
