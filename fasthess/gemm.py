"""Matrix products of fasthess's own work: fasthess's single-threaded GEMM
(:mod:`fasthess._kernels.blas`) in pieces of rows, run on fasthess's threads within the
caller's budget (:mod:`fasthess._runtime`), and the per-sample factor blocks that the
products read. Unlike ``a @ b`` on the BLAS NumPy and SciPy share, these honour
fasthess's thread setting and the limits set outside, and change no shared setting.
"""
from __future__ import annotations

import numpy as np

__all__ = ["gemm_into", "gemm_pieces", "row_blocks"]


def row_blocks(buffer, heights, c):
    """Consecutive C-ordered blocks (h x c) for h in ``heights`` of the flat ``buffer``:
    per-sample factors of a chunk of c samples, stored samples last."""
    blocks, start = [], 0
    for h in heights:
        blocks.append(buffer[start:start + h * c].reshape(h, c))
        start += h * c
    return blocks


def gemm_into(out, a, b, *, b_transposed: bool, beta: float = 1.0, pieces: int | None = None,
              threads: int | None = None) -> None:
    """out = beta out + a @ (b.T if b_transposed else b), in place: the calls of
    :func:`gemm_pieces`, run on up to ``threads`` threads by
    :func:`fasthess._runtime.run_pieces` (the result depends on the pieces, never on
    the threads). By default the pieces are planned for every core and run on the
    threads the caller may use: unlike ``a @ b`` on the shared BLAS, this honours
    fasthess's thread setting and the limits set outside."""
    from ._runtime import compute_budget, pieces_for, plan_budget, planned_threads, run_pieces

    if pieces is None:
        planned = planned_threads(out.shape[0] * out.shape[1] * a.shape[1], plan_budget())
        pieces = pieces_for(planned, out.shape[0])
        threads = min(planned, compute_budget()) if threads is None else threads
    tasks = gemm_pieces(out, a, b, b_transposed=b_transposed, beta=beta, pieces=pieces)
    if len(tasks) == 1:
        tasks[0]()
    else:
        run_pieces(lambda i: tasks[i](), len(tasks), threads or 1)


def gemm_pieces(out, a, b, *, b_transposed: bool, beta: float = 1.0, pieces: int = 1) -> list:
    """out = beta out + a @ (b.T if b_transposed else b) as zero-argument callables, one
    per piece of rows of out, each one call of fasthess's single-threaded GEMM
    (``fasthess._kernels.blas.PRIVATE``, called through ctypes, which releases the GIL).
    Each holds the
    views it writes and reads.

    out (m x n), a (m x k), b (n x k) or (k x n): the dtype of out, each with
    contiguous rows (C-ordered blocks, or row ranges of them). Without a private GEMM
    (:data:`fasthess._kernels.blas.PRIVATE`), one piece: SciPy's BLAS on its own threads.
    """
    import ctypes

    from ._kernels.blas import PRIVATE

    m = out.shape[0]
    if m == 0 or out.shape[1] == 0:
        return []
    if a.shape[1] == 0:  # nothing to add: BLAS would leave out as it is, scale it here
        return [lambda: out.__imul__(beta) if beta != 0.0 else out.fill(0.0)]
    pieces = max(1, min(pieces if PRIVATE.private else 1, m))

    gemm = PRIVATE.functions[out.dtype]
    scalar = ctypes.c_double if out.dtype == np.float64 else ctypes.c_float
    c_int, byref, item = ctypes.c_int, ctypes.byref, out.itemsize

    def call(o, x):  # o = beta o + x @ op(b): BLAS sees the C-ordered arrays transposed
        gemm(b"T" if b_transposed else b"N", b"N", byref(c_int(o.shape[1])),
             byref(c_int(o.shape[0])), byref(c_int(x.shape[1])), byref(scalar(1.0)),
             b.ctypes.data, byref(c_int(b.strides[0] // item)), x.ctypes.data,
             byref(c_int(x.strides[0] // item)), byref(scalar(beta)), o.ctypes.data,
             byref(c_int(o.strides[0] // item)))

    def piece(r0, r1):
        return lambda: call(out[r0:r1], a[r0:r1])

    return [piece(m * i // pieces, m * (i + 1) // pieces) for i in range(pieces)]
