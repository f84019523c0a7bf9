"""Every tunable constant of fasthess, in one place (tests patch them here).

Modules read these at call time (``from . import _config`` then
``_config.NAME``), never copy them at import, so that a patch takes effect.
Each value has the reason it was chosen beside it. Nothing here imports
anything from fasthess: this is the bottom layer.
"""
from __future__ import annotations

import math

# ---------------------------------------------------------------- dense assembly
# Samples per chunk of the dense assembly: the chunk's factors are written by a kernel
# and read back by BLAS, ideally while in cache (CHUNK_CACHE_BYTES), but K = chunk must
# keep GEMM efficient (>= GEMM_CHUNK_SAMPLES): each chunk's GEMM also reads and writes
# all of S (~1/4 of the w1w1 block). Measured at N = 40 on 2 threads: the 820 x 820
# contraction over 3280 samples took 81 ms in chunks of 256, 67 ms in chunks of 512
# or 1024, 61 ms in one; fh.hessian 87-102 ms with chunks of 256 (pipelined), 80-86
# with the 565 its free rows hold.
CHUNK_CACHE_BYTES = 4 * 2**20
GEMM_CHUNK_SAMPLES = 1024
MAX_CHUNK_SAMPLES = 2048
# The factors live in the not-yet-written part of the output (peak memory); a chunk
# that fits there is used down to MIN_CHUNK_SAMPLES, below which a separate buffer of
# CHUNK_BYTES is allocated instead (outputs too small to host a useful chunk).
MIN_CHUNK_SAMPLES = 64
CHUNK_BYTES = 8 * 2**20
# Problems whose factors (all samples) and S take at most this many bytes are assembled
# in one kernel call, without Python between the steps (N ~ 10: the steps themselves
# take tens of microseconds). Its memory is apart from H: kept small.
ONE_CALL_BYTES = 2 * 2**20
# Peak bytes of dense assembly relative to the output (checked before allocating).
ASSEMBLY_OVERHEAD = 1.3
# Bytes that a single float64 Hessian entry may reach before summing P of them
# is refused as an overflow risk: max float / this.
OVERFLOW_MARGIN = 16.0

# ---------------------------------------------------------------- threads
# Fewest multiply-adds a product gives each of its threads (fasthess chooses the
# thread count of each product by its work, _resources.planned_threads): waking and
# joining a thread costs tens of microseconds; ~1 ms of work per thread amortises it.
MIN_MACS_PER_THREAD = 8_000_000
# Pieces per thread that run_pieces splits a product into: more balance the load
# when a thread is descheduled; fewer repeat less of BLAS's packing of the shared
# operand. Measured on 2 idle cores (465^2 and 820^2 outputs, K ~ 260): 2 pieces on 2
# threads 1.6-1.9x one call, 4 pieces the same within 5%, 6 pieces of 77 rows 1.4x.
PIECES_PER_THREAD = 2
# How long an idle worker of fasthess's own threads polls for the next round of pieces
# (yielding its core) before it sleeps: waking a sleeping thread took 90-170 us on a
# 2-core VM, rounds of one computation follow each other within tens of microseconds.
WORKER_SPIN_SECONDS = 0.0005
# Fewest rows of a GEMM's output in one piece: thinner pieces run BLAS's edge kernels
# and repack the shared operand too often (6 pieces of 77 rows ran 22% longer than one
# call, single-threaded).
MIN_PIECE_ROWS = 128

# ---------------------------------------------------------------- matrix-free products
# Bytes of the (chunk x Nh m) block that a Hessian-vector product streams between its
# two GEMMs: small enough to stay in cache between them.
PRODUCT_CHUNK_BYTES = 2 * 2**20

# ---------------------------------------------------------------- eigen routes
# LAPACK driver for eigenvalues only. For values only, syevd and syevr do the same
# work (sytrd tridiagonal reduction, then sterf), and measured the same within noise
# (D = 300..2000, 2 cores); syevr is also the driver of subset_by_index.
EIGH_DRIVER = "evr"

# ---------------------------------------------------------------- Lanczos / SLQ
# Lanczos stops a probe when beta falls below sqrt(eps) * ||T||: the Krylov space is
# then invariant to working accuracy, and the weight lost is O(eps).
LANCZOS_BREAKDOWN = math.sqrt(2.220446049250313e-16)
# Bytes of Lanczos bases (n_steps x D per probe) held at once; probes run in batches.
SLQ_BASIS_BYTES = 256 * 2**20
# Default density grid: +-GRID_PAD sigma beyond the extreme nodes (mass outside ~1e-9)
# with spacing sigma / GRID_PER_SIGMA (trapezoid on a Gaussian is then exact to ~1e-100).
GRID_PAD = 6.0
GRID_PER_SIGMA = 5.0
GRID_MAX_POINTS = 1_000_000
# Default smoothing: this fraction of the node range.
SIGMA_FRACTION = 0.01
# Hutchinson probes per operator product (bounds the (P, Nh, batch) workspace).
HUTCHINSON_BATCH = 32

# ---------------------------------------------------------------- distributed
# A vector block larger than this is scattered once per product instead of being
# embedded in every shard's task (which would serialise it n_shards times).
SCATTER_BYTES = 1 << 20

# ---------------------------------------------------------------- dynamics
# Default divergence rule of gradient_descent: stop once L_t > factor * (L_0 + floor).
DIVERGENCE_FACTOR = 1e6
# gradient_descent reports a run as escaped from the quadratic regime once its loss
# exceeds this multiple of the initial loss: in that regime, with a stable step, every
# mode contracts and the loss never rises.
ESCAPE_FACTOR = 2.0

# ---------------------------------------------------------------- theory
# Fixed seed of the exact-rank fallback, so effective_parameters is deterministic.
FALLBACK_SEED = 20240611
# Above this D the exact-rank fallback would take seconds or more.
FALLBACK_MAX_PARAMS = 1200
# The echelon basis of exact_rank is rank x D int64: 128 MB at D = 4000.
EXACT_MAX_PARAMS = 4000
# Midpoint nodes in the cos substitution of the linear density (THEORY.md b).
QUAD_NODES = 800
MAX_QUAD_NODES = 20000

# ---------------------------------------------------------------- sweeps
# Workers of the default LocalCluster of a sweep.
DEFAULT_WORKERS = 2
# A temporary file older than this is left over from a crash, never a live write.
STALE_TMP_SECONDS = 3600
