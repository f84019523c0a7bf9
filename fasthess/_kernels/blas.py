"""GEMM that accumulates, called from kernels.

``np.dot(a, b, out)`` in a kernel overwrites ``out``; a contraction over samples in
blocks must add each block's product to what the earlier blocks left (``beta = 1``),
or write a temporary and add it, a pass over the whole output per block. Numba's own
``numba_xxgemm`` helper (the one behind its ``np.dot``: SciPy's BLAS through
scipy.linalg.cython_blas) takes beta. It is called by symbol name, so the kernels
that use it stay cacheable on disk.
"""
from __future__ import annotations

import numpy as np
from numba import types

from ._jit import inline_kernel

_ORD_T, _ORD_N = ord("T"), ord("N")


def check_gemm_available() -> None:
    """Raise ImportError, naming what is missing, unless Numba registers its
    ``numba_xxgemm`` helper and SciPy's cython_blas exports dgemm and sgemm (the
    kernels below call them by name: a missing one would end the process by a signal,
    not an exception)."""
    from numba import _helperlib

    if "xxgemm" not in getattr(_helperlib, "c_helpers", {}):
        raise ImportError("fasthess needs Numba's numba_xxgemm helper (numba._helperlib), "
                          f"which this Numba build does not register; install numba>=0.59 "
                          "from PyPI or conda-forge")
    try:
        import scipy.linalg.cython_blas as cython_blas
    except ImportError as exc:
        raise ImportError("fasthess needs scipy.linalg.cython_blas (SciPy's BLAS for "
                          "compiled code)") from exc
    missing = [name for name in ("dgemm", "sgemm")
               if name not in getattr(cython_blas, "__pyx_capi__", {})]
    if missing:
        raise ImportError(f"scipy.linalg.cython_blas lacks {', '.join(missing)}: fasthess's "
                          "kernels call them; install scipy>=1.11 from PyPI or conda-forge")
    from numba.np.linalg import ensure_blas

    ensure_blas()  # Numba's own check (SciPy's BLAS integer width)


check_gemm_available()  # at first use: this module is imported by the kernels that call BLAS
_KIND_DOUBLE, _KIND_SINGLE = ord("d"), ord("s")

_xxgemm = types.ExternalFunction("numba_xxgemm", types.intc(
    types.char, types.char, types.char,            # kind, transa, transb
    types.intp, types.intp, types.intp,            # m, n, k
    types.voidptr, types.voidptr, types.intp,      # alpha, a, lda
    types.voidptr, types.intp,                     # b, ldb
    types.voidptr, types.voidptr, types.intp))     # beta, c, ldc


@inline_kernel
def gemm_nt(a, b, beta, out):
    """out = beta * out + a @ b.T, in place (float64 or float32, all the same dtype).

    a (m x k), b (n x k), out (m x n), each with contiguous rows (row slices of
    C-ordered blocks). BLAS sees them as their Fortran-ordered transposes, so the call
    is out^T = b^T (k x n, transposed) times a^T, on the arrays' own memory.
    """
    m, k = a.shape
    n = b.shape[0]
    if m == 0 or n == 0:
        return
    if k == 0:  # BLAS would leave out as it is: scale it here
        for r in range(m):
            for c in range(n):
                out[r, c] = 0.0 if beta == 0.0 else beta * out[r, c]
        return
    scalars = np.empty(2, dtype=out.dtype)
    scalars[0] = 1.0
    scalars[1] = beta
    kind = _KIND_DOUBLE if out.itemsize == 8 else _KIND_SINGLE
    status = _xxgemm(kind, _ORD_T, _ORD_N, n, m, k, scalars.ctypes, b.ctypes,
                     b.strides[0] // b.itemsize, a.ctypes, a.strides[0] // a.itemsize,
                     scalars[1:].ctypes, out.ctypes, out.strides[0] // out.itemsize)
    if status != 0:
        raise RuntimeError("numba_xxgemm (SciPy's BLAS ?gemm) failed")
