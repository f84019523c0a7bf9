"""The one place that sets Numba options for every fasthess kernel.

Kernels never spell out ``cache=`` or ``fastmath=`` themselves;
they use :func:`kernel` (or :func:`inline_kernel`) so that a policy change is one
edit. Per-kernel overrides are arguments of the decorator, never other options.
"""
from __future__ import annotations

import numba

# Disk cache so a user's second process does not recompile; no fastmath because
# rank-critical results depend on IEEE behaviour (tiny eigenvalues, signed zeros).
# Every kernel is serial and releases the GIL (nogil): fasthess runs kernels over
# ranges on threads of its own (fasthess._runtime), never through Numba's threading
# layer, whose GNU OpenMP backend aborts forked children and whose workqueue backend
# aborts when two threads launch kernels at once.
_POLICY = dict(nogil=True, error_model="numpy", fastmath=False)

__all__ = ["kernel", "inline_kernel"]


def kernel(func=None, *, cache: bool = True):
    """Compile ``func`` with the project's Numba policy.

    Parameters
    ----------
    func : function, optional
        The kernel; omit it to use ``kernel(...)`` as a decorator factory.
    cache : bool
        Cache to disk. False only for kernels that close over a user's own jitted
        functions (a CustomActivation): Numba cannot key a disk cache on those.
    """
    def wrap(f):
        return numba.njit(cache=cache, **_POLICY)(f)
    if func is None:
        return wrap
    return wrap(func)


def inline_kernel(func):
    """A small helper called from other kernels (compiled, cached, never parallel)."""
    return numba.njit(inline="always", cache=True, **_POLICY)(func)
