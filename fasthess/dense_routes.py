"""How the dense Hessian is contracted from per-sample factors: the routes of dense
assembly (in cache-sized blocks by sample parts, or by chunks whose factors live in the
output's free rows), the scatter of the pair contraction S into the w1w1 tiles, and the
one-kernel-call route of small problems. :mod:`fasthess.assembly` holds the public
functions that validate and call :func:`assemble_into` / :func:`try_one_call`.
"""
from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np

from . import _config
from ._features import Features, Point, guarded_features, overflow_limit, weights
from ._runtime import pieces_for, plan_budget, planned_threads, run_pieces
from .gemm import gemm_pieces, row_blocks

__all__ = ["assemble_into", "try_one_call", "chunk_samples", "w1w1_layout"]


_kept = threading.local()


def _kept_workspace(n: int, dtype) -> np.ndarray:
    """A flat buffer of ``n`` elements (one block of factors, about
    ``_config.SAMPLE_BLOCK_BYTES``) kept between calls on this thread: fresh pages cost
    a fault each (N = 20: 1460 faults per call, as long as the arithmetic)."""
    buffers = _kept.__dict__  # {dtype: buffer}
    buf = buffers.get(dtype)
    if buf is None or buf.size < n:
        buf = buffers[dtype] = np.empty(n, dtype=dtype)
    return buf[:n]


def chunk_samples(n_samples: int, row_bytes: int) -> int:
    """Samples per chunk of the chunked route for per-sample factor rows of ``row_bytes``.

    As many as fit in ``_config.CHUNK_CACHE_BYTES`` (written by a kernel and read
    back by BLAS while in cache), at least ``GEMM_CHUNK_SAMPLES`` (GEMM efficiency
    in K when S is out of cache), at most ``MAX_CHUNK_SAMPLES`` and the number of samples.
    """
    cached = _config.CHUNK_CACHE_BYTES // max(1, row_bytes)
    return max(1, min(n_samples, _config.MAX_CHUNK_SAMPLES,
                      max(_config.GEMM_CHUNK_SAMPLES, cached)))


def _chunk_workspace(scratch, n_samples: int, width: int, dtype):
    """(samples per chunk, flat buffer of chunk * width) for per-sample factor rows.

    The buffer is ``scratch`` (not-yet-written output memory) when it holds the
    chunk of :func:`chunk_samples`; else a separate buffer of that chunk when it
    takes at most ``_config.CHUNK_BYTES`` (small outputs, where a few MB are nothing
    but a chunk of the few samples their free rows hold would take many small
    products); else the largest chunk ``scratch`` holds, down to
    ``MIN_CHUNK_SAMPLES`` (peak memory before speed); else a separate buffer of
    ``CHUNK_BYTES`` (of one chunk of ``MIN_CHUNK_SAMPLES`` at least).
    """
    itemsize = np.dtype(dtype).itemsize
    chunk = chunk_samples(n_samples, width * itemsize)
    fit = scratch.size // width
    if fit >= chunk:
        return chunk, scratch
    if chunk * width * itemsize <= _config.CHUNK_BYTES:
        return chunk, np.empty(chunk * width, dtype=dtype)
    if fit >= _config.MIN_CHUNK_SAMPLES:
        return fit, scratch
    chunk = min(chunk, max(_config.MIN_CHUNK_SAMPLES, _config.CHUNK_BYTES // (itemsize * width)))
    return chunk, np.empty(chunk * width, dtype=dtype)


def w1w1_layout(n_in: int, n_hidden: int, row_width: int, extra_rows: int = 0):
    """Where the pair contraction S lives inside the output while it is built.

    S ((Nh(Nh+1)/2 + extra_rows) x Ni(Ni+1)/2, ~1/4 of the w1w1 block) is stored in
    the rows of the last hidden units, from row ``u0 * Ni`` on; the rows above are
    free until the scatter (the chunks' factors live there). Returns (u0, row0), or
    None when S does not fit in the D1 rows of the block.
    """
    m_hidden = n_hidden * (n_hidden + 1) // 2 + extra_rows
    m_in = n_in * (n_in + 1) // 2
    rows_needed = -(-m_hidden * m_in // row_width)  # ceil
    units_needed = -(-rows_needed // n_in)
    if units_needed > n_hidden:
        return None
    u0 = n_hidden - units_needed
    return u0, u0 * n_in


def _late_rows(u0: int, n_hidden: int, m_in: int, off_optimum: bool, dtype) -> np.ndarray:
    """The buffer the scatter copies S's rows into before the late tiles overwrite them
    (S in the output from unit u0 on; u0 = Nh: S apart, nothing to copy)."""
    n_late = (n_hidden * (n_hidden + 1) - u0 * (u0 + 1)) // 2
    return np.empty((n_late + (n_hidden if off_optimum and u0 < n_hidden else 0), m_in),
                    dtype=dtype)


class _Layout(NamedTuple):
    """How the per-sample factors of a problem are laid out and contracted.

    ``by_inputs``: T[(j,i), c] = sum_mu G'_j x_i [A | r]_c is contracted from rows
    G' (x) x against [A | r] (else rows G' (x) [A | r] against x): the narrower
    product row moves less memory. ``heights``: rows per sample of each factor
    (:func:`fasthess._kernels.assembly.factor_heights`). ``parts``: the threads of
    the route by sample parts (each thread contracts its part of the samples, ``block``
    samples at a time, into sums of its own), 0 for the chunked route.
    """

    by_inputs: bool
    heights: tuple
    per_sample: int
    s_rows: int
    m_in: int
    n_rhs: int
    parts: int
    block: int

    @property
    def t_shape(self) -> tuple:
        """The shape of T, the w1w2 contraction (as ``by_inputs`` stores it)."""
        n_in, n_hidden = self.heights[:2]
        return ((n_hidden * n_in, self.n_rhs) if self.by_inputs
                else (n_in, n_hidden * self.n_rhs))


def _kernel_inputs(f: Features):
    """(X, G1, A, G2, residual, w2) of features ``f`` as the assembly kernels take them:
    G2 and the residual of shape (0, 0) at the optimum."""
    empty = np.empty((0, 0), dtype=f.X.dtype)
    off_optimum = f.residual is not None
    return (f.X, f.G1, f.A, f.G2 if off_optimum else empty,
            f.residual if off_optimum else empty, f.w2)


def _layout(n_samples, n_in, n_hidden, n_out, off_optimum, itemsize) -> _Layout:
    """The :class:`_Layout` of a problem, planned for every core (:func:`plan_budget`).

    By sample parts when a block of ``_config.MIN_BLOCK_SAMPLES`` samples' factors
    fits in ``SAMPLE_BLOCK_BYTES`` (so stays in cache between the kernel that writes
    it and BLAS) and the threads' copies of S in ``SAMPLE_PARTS_BYTES`` (so that
    adding each block to them stays in cache too); else chunked.
    """
    from ._kernels.assembly import factor_heights

    d1 = n_hidden * n_in
    m_in = n_in * (n_in + 1) // 2
    s_rows = n_hidden * (n_hidden + 1) // 2 + (n_hidden if off_optimum else 0)
    n_rhs = n_hidden + (n_out if off_optimum else 0)
    by_inputs = d1 <= n_hidden * n_rhs
    width = d1 if by_inputs else n_hidden * n_rhs
    # per sample: x, G', [A | r], G'' transposed, then the pairs and the w1w2 rows
    heights = factor_heights(n_in, n_hidden, n_out, off_optimum, by_inputs)
    per_sample = sum(heights)
    block = max(1, min(n_samples, _config.SAMPLE_BLOCK_BYTES // (per_sample * itemsize)))
    from ._kernels.blas import PRIVATE

    threads = planned_threads(n_samples * (s_rows * m_in + width * n_rhs), plan_budget())
    if not PRIVATE.private:  # the shared BLAS runs on its own threads: one part
        threads = 1
    parts = 0
    if (block >= min(n_samples, _config.MIN_BLOCK_SAMPLES)
            and threads * s_rows * m_in * itemsize <= _config.SAMPLE_PARTS_BYTES):
        parts = threads
    return _Layout(by_inputs, heights, per_sample, s_rows, m_in, n_rhs, parts, block)


def _s_in_output(layout: _Layout, w1w1, n_in, n_hidden):
    """(u0, start): S lies in ``w1w1`` (C-contiguous) from flat index ``start``, the
    rows of hidden units u0 on (:func:`w1w1_layout`); (Nh, None) when it does not fit
    there and lies apart."""
    place = w1w1_layout(n_in, n_hidden, w1w1.shape[1],
                        layout.s_rows - n_hidden * (n_hidden + 1) // 2)
    return (n_hidden, None) if place is None else (place[0], place[1] * w1w1.shape[1])


def _part_outputs(layout: _Layout, w1w1, n_in, n_hidden, dt):
    """The outputs of the route by sample parts: a copy of S per part (the first, which
    receives their sum, where :func:`w1w1_layout` places S in ``w1w1``, the others in
    the free rows just above it while they fit, else apart: H is most of the peak
    memory), ``u0`` of the scatter (:func:`_late_rows`), and T and A^T A per part."""
    parts, s_rows, m_in = layout.parts, layout.s_rows, layout.m_in
    s_size = s_rows * m_in
    u0, start = _s_in_output(layout, w1w1, n_in, n_hidden)
    flat = w1w1.reshape(-1)  # C-contiguous: a view
    copies = [flat[start - k * s_size:start - (k - 1) * s_size].reshape(s_rows, m_in)
              if start is not None and start - k * s_size >= 0
              else np.empty((s_rows, m_in), dtype=dt) for k in range(parts)]
    return (copies, u0, np.empty((parts, *layout.t_shape), dtype=dt),
            np.empty((parts, n_hidden, n_hidden), dtype=dt))


def _one_call(layout: _Layout, n_samples: int) -> bool:
    """Whether the whole assembly runs in one kernel call: one sample part, of one block.
    A small problem: at N ~ 10 Python between the steps would take as long as they do,
    and S may lie apart from H (the kernel allocates it; larger problems keep it in H and
    free the features before the scatter allocates, peak memory)."""
    return layout.parts == 1 and n_samples <= layout.block


def try_one_call(point: Point, out, mirror: bool):
    """The whole dense assembly in one kernel call, features included, where that is
    the plan: one sample part of one block (:func:`_one_call`) at the optimum with a
    built-in activation. At N = 10 the Python between the steps of the general route
    (:func:`features`, then :func:`assemble_into`) took 15-20 us of ~150. The kernel
    applies the overflow bounds of the guards to the maxima it finds; a point they
    refuse goes to the guards, which raise. ``out``: a callable returning the three
    outputs (allocated only on this route), as for :func:`assemble_into`. Returns
    whether this route ran.
    """
    net, X, dt = point.net, point.X, point.dtype
    activation = net.activation
    if point.teacher is not None or activation.code < 0:
        return False
    n_samples, n_in = X.shape
    n_hidden, n_out = net.n_hidden, net.n_out
    layout = _layout(n_samples, n_in, n_hidden, n_out, False, dt.itemsize)
    if not _one_call(layout, n_samples):
        return False
    from ._kernels.assembly import assemble_with_features

    w1, w2 = weights(point)
    pre, A, G1, G2 = (np.empty((n_samples, n_hidden), dtype=dt) for _ in range(4))
    maxima = np.empty(5)
    w1w1, w1w2, w2w2 = out()
    col0 = n_hidden * n_in if mirror else 0
    if assemble_with_features(activation.code, activation.kernel_coeffs(dt), X, w1, w2, pre, A,
                              G1, G2, maxima, overflow_limit(dt), 1.0 / n_samples,
                              layout.by_inputs, layout.block,
                              _kept_workspace(layout.block * layout.per_sample, dt),
                              layout.heights, w1w1, w1w2, col0, mirror, w2w2, col0):
        return True
    # refused by the bounds the guards share with the kernel: they raise, naming why
    guarded_features(point, w1, w2, pre, A, G1, G2, maxima.tolist())
    return False  # (not reached) the general route would assemble it


def assemble_into(f: Features, budget: int, w1w1, w1w2, w2w2, mirror: bool) -> None:
    """Write the Hessian of features ``f`` into its blocks (THEORY.md a), on up to
    ``budget`` threads.

    ``w1w1``: the output whose top-left (D1 x D1) block receives w1w1 (H itself, or
    the w1w1 array), C-contiguous; its memory is the workspace until then.
    ``mirror=True`` (full H): ``w1w1``, ``w1w2`` and ``w2w2`` are all H; w1w2 goes to
    H[:D1, D1:] and its transpose to H[D1:, :D1], w2w2 to H[D1:, D1:]. Otherwise
    they are the separate (D1 x D2) and (D2 x D2) arrays.

    Kernels write the per-sample factors, samples last
    (:func:`fasthess._kernels.assembly.chunk_factors`), and GEMMs contract them (the
    pairs of w1w1 with the R11 coefficients, the w1w2 products, A^T A); then kernels
    scatter S into the w1w1 tiles and write the other blocks. Two routes (:func:`_layout`):

    - by sample parts (S small enough to stay in cache, N up to ~40): each thread
      contracts its part of the samples, a block at a time, into sums of its own
      (:func:`fasthess._kernels.assembly.contract_samples`: the factors of a block are
      read back while in cache); the sums are added in a fixed order. One part: the
      whole assembly in one kernel call.
    - chunked: rounds of pieces (:func:`fasthess._runtime.run_pieces`) over chunks
      of samples whose factors live in the output's free rows, each GEMM piece one
      call of fasthess's single-threaded GEMM (:func:`fasthess.gemm.gemm_pieces`).

    The pieces are planned for every core (:func:`fasthess._runtime.plan_budget`), so
    the result is the same whatever ``budget`` is.
    """
    from ._kernels.assembly import (assemble_in_one_call, contract_samples, write_w1w2,
                                    write_w2w2)

    X, G1, A, G2, residual, w2 = _kernel_inputs(f)
    n_samples, n_in = X.shape
    n_out, n_hidden = w2.shape
    dt = X.dtype
    off_optimum = f.residual is not None
    layout = _layout(n_samples, n_in, n_hidden, n_out, off_optimum, dt.itemsize)
    by_inputs, heights, per_sample = layout.by_inputs, layout.heights, layout.per_sample
    d_w1w2 = n_hidden * n_in if mirror else 0
    scale = 1.0 / n_samples
    if layout.parts:
        parts, block = layout.parts, layout.block
        if _one_call(layout, n_samples):
            assemble_in_one_call(X, G1, A, G2, residual, w2, scale, by_inputs, block,
                                 _kept_workspace(block * per_sample, dt), heights, w1w1, w1w2,
                                 d_w1w2, mirror, w2w2, d_w1w2)
            return
        copies, u0, T, gram = _part_outputs(layout, w1w1, n_in, n_hidden, dt)

        def part(i):
            s0, s1 = n_samples * i // parts, n_samples * (i + 1) // parts
            contract_samples(X, G1, A, G2, residual, w2, s0, s1, block, by_inputs,
                             _kept_workspace(block * per_sample, dt), heights, copies[i],
                             T[i], gram[i])

        # one part per planned thread: a second per thread would add a copy of S
        run_pieces(part, parts, min(parts, budget))
        # the features are no longer read: free them before the scatter's copy of S's
        # late rows (peak memory)
        X = A = G1 = G2 = residual = None  # (the closure above shares them)
        f.A = f.G1 = f.G2 = None
        for i in range(1, parts):  # in a fixed order: the result depends on the plan only
            copies[0] += copies[i]
            T[0] += T[i]
            gram[0] += gram[i]
        S, T, gram = copies[0], T[0], gram[0]
        late = _late_rows(u0, n_hidden, layout.m_in, off_optimum, dt)
    else:
        S, late, u0, T, gram = _contract_in_chunks(f, layout, budget, w1w1)
    _scatter(S, late, u0, w2, scale, n_in, off_optimum, budget, w1w1, run_pieces)
    write_w1w2(T, by_inputs, n_in, w2, scale, off_optimum, w1w2, d_w1w2, mirror)
    write_w2w2(gram, scale, n_out, w2w2, d_w1w2)


def _contract_in_chunks(f: Features, layout: _Layout, budget: int, w1w1):
    """S (in ``w1w1``, or apart when it does not fit there), ``late``, u0, T and A^T A,
    by the chunked route of :func:`assemble_into`, on up to ``budget`` threads.
    Releases the features it no longer needs (``f.A``, ``f.G1``, ``f.G2``) before
    returning (peak memory)."""
    from ._kernels.assembly import chunk_factors

    X, G1, A, G2, residual, w2 = _kernel_inputs(f)
    n_samples, n_in = X.shape
    n_hidden = w2.shape[1]
    dt = X.dtype
    off_optimum = f.residual is not None
    by_inputs, heights, per_sample = layout.by_inputs, layout.heights, layout.per_sample
    s_rows, m_in = layout.s_rows, layout.m_in
    flat = w1w1.reshape(-1)  # C-contiguous: a view
    u0, start = _s_in_output(layout, w1w1, n_in, n_hidden)
    if start is None:  # tiny blocks: S apart, the whole output is workspace
        S, free = np.empty((s_rows, m_in), dtype=dt), flat
    else:
        S = flat[start:start + s_rows * m_in].reshape(s_rows, m_in)
        free = flat[:start]
    T = np.zeros(layout.t_shape, dtype=dt)
    chunk, work = _chunk_workspace(free, n_samples, per_sample, dt)
    # the threads a chunk's contraction is worth on all cores; its split into pieces
    # (so the result) is fixed by them
    planned = planned_threads(chunk * s_rows * m_in, plan_budget())
    from ._kernels.blas import PRIVATE

    if not PRIVATE.private:  # the shared BLAS runs on its own threads: no GEMMs side by side
        planned = 1
    if planned > 1 and work.size >= 2 * per_sample * chunk:
        # two workspaces: the factors of chunk k + 1 are built while chunk k is contracted
        spaces = (work[:chunk * per_sample], work[chunk * per_sample:2 * chunk * per_sample])
    else:
        spaces = (work,)
    pieces_s = pieces_for(planned, s_rows)
    pieces_t = pieces_for(planned, T.shape[0])
    gram = np.zeros((n_hidden, n_hidden), dtype=dt)
    starts = list(range(0, n_samples, chunk))

    def blocks(k):
        c = min(chunk, n_samples - starts[k])
        return c, row_blocks(spaces[k % len(spaces)], heights, c)

    # the factor writes are memory-bound: the threads they are worth (N = 30: 0.2 ms a
    # chunk on one thread, 0.4 ms in a round of two pieces)
    factor_split = planned_threads(chunk * per_sample, planned, _config.MIN_WRITES_PER_THREAD)

    def factor_tasks(k):
        c, b = blocks(k)
        return [lambda i=i: chunk_factors(X, G1, A, G2, residual, w2, starts[k], by_inputs, *b,
                                          c * i // factor_split, c * (i + 1) // factor_split)
                for i in range(factor_split)]

    def contraction_tasks(k):
        _, (xt, gt, rhst, g2t, upairs, xpairs, rows) = blocks(k)
        at = rhst[:n_hidden]
        return (gemm_pieces(S, upairs, xpairs, b_transposed=True, beta=0.0 if k == 0 else 1.0,
                            pieces=pieces_s)
                + gemm_pieces(T, *((rows, rhst) if by_inputs else (xt, rows)),
                              b_transposed=True, pieces=pieces_t)
                + gemm_pieces(gram, at, at, b_transposed=True))

    def run(tasks):
        run_pieces(lambda i: tasks[i](), len(tasks), min(planned, budget))

    if len(spaces) == 1:
        for k in range(len(starts)):
            run(factor_tasks(k))
            run(contraction_tasks(k))
    else:  # one round per chunk: its contraction beside the next chunk's factors
        run(factor_tasks(0))
        for k in range(len(starts)):
            run((factor_tasks(k + 1) if k + 1 < len(starts) else []) + contraction_tasks(k))
    # the per-sample factors are no longer read: free them before the copy of S's
    # late rows (peak memory)
    X = A = G1 = G2 = residual = work = spaces = None  # (the closures above share them)
    f.A = f.G1 = f.G2 = None
    return S, _late_rows(u0, n_hidden, m_in, off_optimum, dt), u0, T, gram


def _scatter(S, late, u0, w2, scale, n_in, off_optimum, budget, out, run_round):
    """Write the w1w1 block from S (THEORY.md a) in rounds of pieces for up to ``budget``
    threads: the copy of S's late rows (the rows of ``out`` that S occupies, from unit
    ``u0`` on; u0 = Nh when S lies apart) beside the early tiles (which never touch
    them), then the late tiles, then off the optimum the R11 blocks.
    ``run_round(task, n, threads)`` runs a round (:func:`run_pieces`)."""
    from ._kernels.assembly import add_residual_blocks, copy_late_rows, write_tiles

    n_hidden = w2.shape[1]
    Q = w2.T @ w2
    n_late = (n_hidden * (n_hidden + 1) - u0 * (u0 + 1)) // 2
    n_early = u0 * (u0 + 1) // 2
    # memory-bound writes of the D1^2 entries: the threads they are worth (N = 20:
    # 0.1 ms, less than a handoff between threads)
    planned = planned_threads((n_hidden * n_in) ** 2, plan_budget(),
                              _config.MIN_WRITES_PER_THREAD)
    split = pieces_for(planned, n_early + n_late)

    def ranges(n):
        return [(n * i // split, n * (i + 1) // split) for i in range(split)]

    def run(tasks):
        run_round(lambda i: tasks[i](), len(tasks), min(planned, budget))

    run([lambda r=r: copy_late_rows(S, late, u0, n_hidden, off_optimum, *r)
         for r in ranges(late.shape[0])]
        + [lambda r=r: write_tiles(S, late, u0, Q, scale, n_in, False, *r, out)
           for r in ranges(n_early)])
    run([lambda r=r: write_tiles(S, late, u0, Q, scale, n_in, True, *r, out)
         for r in ranges(n_late)])
    if off_optimum:
        coef, row0 = (late, n_late) if u0 < n_hidden else (S, n_hidden * (n_hidden + 1) // 2)
        run([lambda r=r: add_residual_blocks(coef, row0, scale, n_in, out, *r)
             for r in ranges(n_hidden)])
