"""fasthess's own single-threaded GEMM, for pieces of work on fasthess's threads.

fasthess splits its large products into pieces that its own threads take one at a
time (a thread that another job deschedules delays one piece, not half the product).
Each piece must be a single-threaded GEMM, but the BLAS that NumPy and SciPy load is
shared by the whole process: setting its thread count to 1 during a computation would
change what every other thread of the user gets (and OpenBLAS's
``openblas_set_num_threads_local`` is process-wide too). So fasthess loads a private
instance of the same OpenBLAS build that NumPy and SciPy ship (the
``scipy-openblas32`` wheel), keeps it at one thread, and calls nothing else in it.
Where that wheel is missing, the GEMM is SciPy's (``scipy.linalg.cython_blas``) at
its own thread count, and fasthess runs no two GEMMs at once (:data:`PRIVATE`).

The dense eigenvalues (LAPACK's ?syevr) come from the same private instance, on one
thread: LAPACK's tridiagonal reduction on the shared BLAS's threads synchronises them
at every step, and beside a busy core or another library's spinning BLAS thread it ran
many times slower than on one thread.

Kernels call the GEMM by symbol name (``fasthess_dgemm`` / ``fasthess_sgemm``,
registered with LLVM when this module is imported, before any kernel that uses them
is compiled or loaded from the disk cache), so they stay cacheable. Python pieces call
it through ctypes, which releases the GIL.
"""
from __future__ import annotations

import ctypes
import os

import numpy as np
from numba import types

from ._jit import inline_kernel

_ORD_T, _ORD_N = ord("T"), ord("N")


class _Gemm:
    """The GEMM fasthess calls: ctypes functions (Fortran interface) for float64 and
    float32, whether they are single-threaded (``private``), and the library's path."""

    def __init__(self):
        self.private, self.path, self.library, self.syevr = False, None, None, {}
        addresses = _private_gemm(self) or _scipy_gemm()
        proto = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 13))
        self.functions = {np.dtype(np.float64): proto(addresses[0]),
                          np.dtype(np.float32): proto(addresses[1])}
        import llvmlite.binding as llvm

        llvm.add_symbol("fasthess_dgemm", addresses[0])
        llvm.add_symbol("fasthess_sgemm", addresses[1])

    def keep_single(self) -> None:
        """Put the private instance back to one thread if something changed it
        (threadpoolctl sees it among the process's BLAS libraries)."""
        if self.private and self._get() != 1:
            self._set(1)


def _private_gemm(gemm: _Gemm):
    """Load the private OpenBLAS at one thread; its (dgemm, sgemm) addresses, or None."""
    try:
        import scipy_openblas32
    except ImportError:
        return None
    try:
        path = os.path.join(scipy_openblas32.get_lib_dir(),
                            scipy_openblas32.get_library(fullname=True))
        lib = ctypes.CDLL(path)  # RTLD_LOCAL: its symbols stay its own
        gemm._get = lib.scipy_openblas_get_num_threads
        gemm._set = lib.scipy_openblas_set_num_threads
        gemm._set.argtypes = [ctypes.c_int]
        addresses = (ctypes.cast(lib.scipy_dgemm_, ctypes.c_void_p).value,
                     ctypes.cast(lib.scipy_sgemm_, ctypes.c_void_p).value)
    except (OSError, AttributeError, IndexError):
        return None
    gemm._set(1)
    gemm.private, gemm.path, gemm.library = True, path, lib
    gemm.syevr = {np.dtype(np.float64): getattr(lib, "scipy_dsyevr_", None),
                  np.dtype(np.float32): getattr(lib, "scipy_ssyevr_", None)}
    return addresses


def _scipy_gemm():
    """SciPy's (dgemm, sgemm) for compiled code, checked: a missing symbol would end
    the process by a signal, not an exception."""
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
    from numba.extending import get_cython_function_address

    return tuple(get_cython_function_address("scipy.linalg.cython_blas", name)
                 for name in ("dgemm", "sgemm"))


PRIVATE = _Gemm()  # loaded when the first kernel that multiplies matrices is needed

_dgemm = types.ExternalFunction("fasthess_dgemm", types.void(*([types.voidptr] * 13)))
_sgemm = types.ExternalFunction("fasthess_sgemm", types.void(*([types.voidptr] * 13)))


def symmetric_eigenvalues(A):
    """All eigenvalues, ascending, of the symmetric float64 or float32 matrix ``A``
    (C- or Fortran-contiguous; overwritten), by LAPACK's ?syevr in the private
    single-threaded instance; None where there is none (the caller uses SciPy's)."""
    syevr = PRIVATE.syevr.get(A.dtype)
    if syevr is None or not (A.flags.c_contiguous or A.flags.f_contiguous):
        return None
    n = A.shape[0]
    c_int, byref = ctypes.c_int, ctypes.byref
    scalar = ctypes.c_double if A.dtype == np.float64 else ctypes.c_float
    w = np.empty(n, dtype=A.dtype)
    isuppz = np.empty(2 * max(1, n), dtype=np.int32)
    m, info = c_int(0), c_int(0)
    zero = scalar(0.0)
    z = np.empty(1, dtype=A.dtype)

    def call(work, lwork, iwork, liwork):
        # the symmetric A is the same matrix read in either order: no copy
        syevr(b"N", b"A", b"L", byref(c_int(n)), ctypes.c_void_p(A.ctypes.data),
              byref(c_int(max(1, n))), byref(zero), byref(zero), byref(c_int(1)),
              byref(c_int(n)), byref(zero), byref(m), ctypes.c_void_p(w.ctypes.data),
              ctypes.c_void_p(z.ctypes.data), byref(c_int(1)),
              ctypes.c_void_p(isuppz.ctypes.data), ctypes.c_void_p(work.ctypes.data),
              byref(c_int(lwork)), ctypes.c_void_p(iwork.ctypes.data), byref(c_int(liwork)),
              byref(info))

    work, iwork = np.empty(1, dtype=A.dtype), np.empty(1, dtype=np.int32)
    call(work, -1, iwork, -1)  # workspace query
    lwork, liwork = max(1, int(work[0])), max(1, int(iwork[0]))
    work, iwork = np.empty(lwork, dtype=A.dtype), np.empty(liwork, dtype=np.int32)
    call(work, lwork, iwork, liwork)
    if info.value != 0:
        raise np.linalg.LinAlgError(f"LAPACK ?syevr failed (info = {info.value})")
    return w[:m.value]


@inline_kernel
def gemm_nt(a, b, beta, out):
    """out = beta * out + a @ b.T, in place (float64 or float32, all the same dtype),
    by fasthess's GEMM.

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
    sizes = np.empty(6, dtype=np.int32)
    sizes[0] = n
    sizes[1] = m
    sizes[2] = k
    sizes[3] = b.strides[0] // b.itemsize
    sizes[4] = a.strides[0] // a.itemsize
    sizes[5] = out.strides[0] // out.itemsize
    trans = np.empty(2, dtype=np.uint8)
    trans[0] = _ORD_T
    trans[1] = _ORD_N
    if out.itemsize == 8:
        _dgemm(trans.ctypes, trans[1:].ctypes, sizes.ctypes, sizes[1:].ctypes, sizes[2:].ctypes,
               scalars.ctypes, b.ctypes, sizes[3:].ctypes, a.ctypes, sizes[4:].ctypes,
               scalars[1:].ctypes, out.ctypes, sizes[5:].ctypes)
    else:
        _sgemm(trans.ctypes, trans[1:].ctypes, sizes.ctypes, sizes[1:].ctypes, sizes[2:].ctypes,
               scalars.ctypes, b.ctypes, sizes[3:].ctypes, a.ctypes, sizes[4:].ctypes,
               scalars[1:].ctypes, out.ctypes, sizes[5:].ctypes)
