"""The one place that sets Numba options for every fasthess kernel.

Kernels never spell out ``cache=``, ``fastmath=`` or ``parallel=`` themselves;
they use :func:`kernel` so that a policy change is one edit.
"""
from __future__ import annotations

import numba

# Disk cache so a user's second process does not recompile; no fastmath because
# rank-critical results depend on IEEE behaviour (tiny eigenvalues, signed zeros).
_OPTIONS = dict(cache=True, nogil=True, error_model="numpy", fastmath=False)


def kernel(func=None, *, parallel: bool = False):
    """Compile ``func`` with the project's Numba policy (optionally with prange)."""
    def wrap(f):
        return numba.njit(parallel=parallel, **_OPTIONS)(f)
    if func is None:
        return wrap
    return wrap(func)


def inline_kernel(func):
    """A small helper called from other kernels (compiled, cached, never parallel)."""
    return numba.njit(inline="always", **_OPTIONS)(func)
