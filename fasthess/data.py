"""Input sampling."""
from __future__ import annotations

import numpy as np

from ._validation import check_dtype, check_int

__all__ = ["gaussian_inputs"]


def gaussian_inputs(n_samples, n_in, seed=None, dtype=np.float64):
    """Standard Gaussian inputs, one sample per row.

    Parameters
    ----------
    n_samples, n_in : int
        P >= 1 samples of dimension Ni >= 1.
    seed : int, numpy Generator or None
    dtype : float32 or float64

    Returns
    -------
    ndarray of shape (n_samples, n_in)

    Examples
    --------
    >>> import fasthess as fh
    >>> fh.gaussian_inputs(5, 3, seed=0).shape
    (5, 3)
    """
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    n_in = check_int(n_in, "n_in", minimum=1)
    dt = check_dtype(dtype)
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_samples, n_in)).astype(dt, copy=False)
