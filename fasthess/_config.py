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
# The route by sample parts (dense_routes._layout): each part of the samples (one per core,
# whichever thread runs it) is contracted into a copy of S of its own, a block of
# samples at a time; the block's factors
# (at most SAMPLE_BLOCK_BYTES, about the L2 cache of a core) are written by a kernel and
# read back by BLAS while in cache, and a 820 x 820 x K GEMM that adds to S runs at the
# same rate for K = 32 as for K = 1024 (26-27 G multiply-adds/s on one core) while S
# stays in cache. So the copies of S of all threads must fit in SAMPLE_PARTS_BYTES (half
# a 32 MiB L3, that of the 2-core x86-64 VM of these measurements); blocks of fewer than
# MIN_BLOCK_SAMPLES would take many small products: both go to the chunked route. Measured on 2 threads against
# the chunked route: N = 30 11.5 against 13.0 ms, N = 40 55 against 61 ms (blocks of
# 0.5 / 1 / 2 / 4 MiB: 59 / 55 / 55 / 58 ms), N = 45 (2 x 8.6 MB of S) equal, N = 50
# 220 against 201 ms.
SAMPLE_BLOCK_BYTES = 1 * 2**20
MIN_BLOCK_SAMPLES = 16
SAMPLE_PARTS_BYTES = 16 * 2**20
# Requests of at most this many bytes are not checked against the system's available
# memory (psutil takes ~50 us, a quarter of fh.hessian at N = 10); FASTHESS_MEMORY_LIMIT
# still applies to them. A machine without 64 MiB free fails in Python itself.
MEMORY_CHECK_FLOOR = 64 * 2**20
# Fewest activations (g, g', g'' of one pre-activation) worth a thread of their own:
# ~25 ns each for erf (measured on a 2-core x86-64 VM), so ~0.2 ms of work, twice a
# handoff between Python threads there (~50-100 us).
MIN_ACTIVATIONS_PER_THREAD = 8_000
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
# Fewest entries of H written per thread by the scatter of the w1w1 block (memory-bound,
# ~0.5-1.5 ns each, measured on a 2-core x86-64 VM): ~0.4 ms of writes, a few handoffs.
MIN_WRITES_PER_THREAD = 400_000
# Pieces per thread that run_pieces splits a product into: more balance the load
# when a thread is descheduled; fewer repeat less of BLAS's packing of the shared
# operand. Measured on 2 idle cores (465^2 and 820^2 outputs, K ~ 260): 2 pieces on 2
# threads 1.6-1.9x one call, 4 pieces the same within 5%, 6 pieces of 77 rows 1.4x.
PIECES_PER_THREAD = 2
# How often (seconds) a caller waiting for the pieces running on other threads wakes
# up: the wait itself ends as soon as they finish (a condition); the timeout only keeps
# the wait responsive to KeyboardInterrupt on every platform.
WAIT_POLL_SECONDS = 0.05
# Fewest rows of a GEMM's output in one piece: thinner pieces run BLAS's edge kernels
# and repack the shared operand too often (6 pieces of 77 rows ran 22% longer than one
# call, single-threaded).
MIN_PIECE_ROWS = 128

# ---------------------------------------------------------------- matrix-free products
# Bytes of the (chunk x Nh m) block that a Hessian-vector product streams between its
# two GEMMs: small enough to stay in cache between them.
PRODUCT_CHUNK_BYTES = 2 * 2**20
# Fewest samples in a chunk of a Hessian-vector product: blocks of columns are narrowed
# until a chunk holds this many, so that its GEMMs stay matrix-matrix products.
MIN_PRODUCT_CHUNK = 128

# ---------------------------------------------------------------- eigen routes
# LAPACK driver for eigenvalues only. For values only, syevd and syevr do the same
# work (sytrd tridiagonal reduction, then sterf), and measured the same within noise
# (D = 300..2000, 2 cores); syevr is also the driver of subset_by_index.
EIGH_DRIVER = "evr"

# ---------------------------------------------------------------- Lanczos / SLQ
# Lanczos stops a probe when beta falls below sqrt(eps) * ||T||: the Krylov space is
# then invariant to working accuracy, and the weight lost is O(eps).
LANCZOS_BREAKDOWN = math.sqrt(2.220446049250313e-16)
# Bytes of Lanczos bases (n_steps x D per probe) held at once (and at most a quarter of
# the available memory); probes run in batches that share each product. 2 GiB holds 4
# probes x 40 steps at D ~ 1e6 (the population Hessian at Ni = Nh = 1000).
SLQ_BASIS_BYTES = 2 * 2**30
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
# What online SGD may train: both layers, or the first only (the soft committee machine).
ONLINE_TRAIN_CHOICES = ("both", "w1")
# Step counts beyond this cannot be indexed by the int64 records of the GD kernels.
MAX_STEPS = 2**62
# What gradient descent and gradient flow may train: both layers, or one of them.
TRAIN_CHOICES = ("both", "w1", "w2")
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

# ---------------------------------------------------------------- population (P -> infinity)
# Convergence target of the doubling rule for tanh and custom activations.
POP_QUAD_RTOL = 1e-12
# First node count per axis of the doubling rule (tanh at |w| ~ 1 ends at 256-512).
POP_QUAD_START_NODES = 32
# Beyond this many nodes per axis the doubling rule gives up (raises).
POP_QUAD_MAX_NODES = 4096
# Tensor nodes with w_a w_b below this are dropped: they lie outside the disk
# |z| < 12.9, whose Gaussian tail mass is e^{-83} ~ 1e-36 (the same at every n).
POP_QUAD_WEIGHT_FLOOR = 1e-36
# The doubling check runs on all pairs of this many units with the largest norms
# (the integrands vary fastest there: g(|w| z)).
POP_QUAD_CHECK_UNITS = 8
# Bytes of the per-block node values of the quadrature (4 arrays of pairs x nodes).
POP_QUAD_BLOCK_BYTES = 32 * 2**20
# |cos| above this: the pair angle is recomputed from the rows (Kahan's formula);
# below it sqrt(1 - cos^2) loses at most a factor 1 / sin = 7 of accuracy.
POP_REFINE_COS = 0.99
# relu pairs with sin(angle) below this carry their tile in an orthonormal basis:
# in U = [w_j, w_k] the relu M grows like 1 / sin and the product would lose eps / sin.
POP_PARALLEL_SINE = 1e-2
# Bytes of the two Nh x Nh x (columns) work arrays of one block of hessian_matmat.
POP_PRODUCT_BLOCK_BYTES = 256 * 2**20

# ---------------------------------------------------------------- activations
# Where a declaration about a CustomActivation's g is checked: both signs, several
# scales, no kink at 0.
ACTIVATION_CHECK_POINTS = (-2.9, -1.3, -0.37, 0.41, 1.7, 3.1)
# g(z) is compared with c^d g(z / c) at this c (a declared homogeneous degree d).
ACTIVATION_HOMOGENEITY_FACTOR = 2.5
# Agreement asked of a declaration (round-off of a few operations, not a tolerance of theory).
ACTIVATION_DECLARATION_RTOL = 1e-9

# ---------------------------------------------------------------- figures
# linear_density: allowance for the finite-size error of the large-N law (it uses the
# Marchenko-Pastur limit for W1^T W1): THEORY.md b measured KS distances up to 0.030 at
# min(Ni, Nh) = 30, and 0.010 at (Ni, Nh) = (20, 30) and (12, 18) with 4000 teachers,
# where the sampling error is ~0.01.
FIG_KS_FINITE_SIZE = 0.03
# linear_density: failure probability of the sampling part of ks_bound.
FIG_KS_ALPHA = 1e-3
# linear_density: the plotted range extends until the law's mass beyond it is below this.
FIG_TAIL_MASS = 1e-6
# dynamics (THEORY.md d): GD stops, at the latest, where the quadratic model reaches this
# loss. The float64 round-off floor of the loss lies far below (measured ~1e-30 at D = 42
# and ~7e-29 at D = 164, where GD's loss stops falling), so what is drawn is dynamics.
FIG_LOSS_FLOOR = 1e-22
# dynamics: relative tolerance of the claim (measured late slope vs 2 log(1 - lr lambda_min)).
FIG_SLOPE_RTOL = 0.05
# dynamics: records kept per GD run (the loss every n_steps // this steps).
FIG_GD_RECORDS = 2000
# dynamics: first horizon of the quadratic-model plan; doubled until the plan is complete.
FIG_FIRST_HORIZON = 4096
# spectra: eigenvalues at or below this fraction of the largest are drawn at it on log
# axes (exact zeros have no logarithm); svd zero modes sit near 1e-32, above it.
FIG_PLOT_FLOOR = 1e-34
# population figure (ii): the root mean square of sqrt(P) ||H_P - H_inf||_F / sigma over
# the data sets lies in [1 / t, t]. Its mean square is exactly 1; measured RMS over the
# data sets: 0.87..1.18 over 20 seeds x 3 P at the quick size (4 data sets), 0.97..1.06
# over 6 seeds at the full size (8 data sets).
FIG_FROBENIUS_TOLERANCE = 1.25
# population figure (iii): |slope + 1/2| <= this. Measured: slopes -0.71..-0.41 (mean
# -0.58) over 20 seeds at the quick size, -0.64..-0.52 over 6 seeds at the full size.
# The fit is steeper than -1/2 because P = D/2 < D: H_P then has rank P, and the D - P
# missing eigenvalues add to d(P) beyond the O(P^{-1/2}) fluctuation.
FIG_SLOPE_TOLERANCE = 0.25
# population figure: samples per Jacobian block in the Monte Carlo estimate of E||a||^4.
FIG_MC_BLOCK = 10_000
# rank_vs_n: relu's rank needs data in every activation sector (THEORY.md c). At Ni = 2
# two units leave a wedge of random angle theta that no point hits with probability
# ~1 / (P + 1) on average: P = 2D + 20 = 32 gave rank D - Nh - 1 for one N = 2 teacher;
# THEORY.md c met D - Nh at P = 2000 on its misses. So relu uses at least this many.
FIG_RELU_MIN_SAMPLES = 1000
# rank_vs_n_population: a population rank (eigh of H_inf, no svd route: there is no J)
# is resolved only inside a gap this wide (THEORY.md c); a full rank, where nothing is
# dropped, only when the smallest eigenvalue is this far above eps lambda_max, the
# level at which eigh puts the zero modes it does find.
FIG_MIN_GAP_DECADES = 8.0
# Resolution of the PNG files, and characters per caption line at the default width.
FIG_DPI = 150
FIG_CAPTION_WIDTH = 105

# ---------------------------------------------------------------- smallest_nonzero
# "auto" goes matrix-free (LOBPCG) for the population from this D on. Measured with
# bench/smallest_scale.py on a 2-core x86-64 VM while other jobs ran (load ~8), erf Ni = Nh,
# k = 3, dense route against LOBPCG, the same values to 7 digits: N = 50 (D = 2550)
# 11.8 s against 10.6 s; N = 70 (D = 4970) 57.5 s against 15.6 s; N = 99 (D = 9900)
# 347 s against 62 s (at a load ~2.5, with the dense eigh on the private LAPACK:
# 69.2 s against 11.6 s). The dense route grows as D^3, a product as D^1.5. Sampled inputs
# never go matrix-free while the dense route fits: a product costs O(P D) per column,
# and LOBPCG needs thousands (N = 40, P = 2D: 9.9 s dense against 71 s).
SMALLEST_MATRIX_FREE_MIN_D = 3000
# Block vectors beyond the zeros and the k wanted: LOBPCG's last vectors converge
# slowest, so the k wanted converge before the block does.
SMALLEST_GUARD_VECTORS = 3
# The largest block: past it the unknown null space is too big to carry (z^2 has about
# D / 2 zeros) and the exact route is the way.
SMALLEST_MAX_BLOCK = 64
# Default residual tolerance, in eps of the working dtype, relative to max|lambda|:
# 1e5 eps = 2.2e-11 in float64. An eigenvalue ~1e-8 max|lambda| a gap of ~3e-9 from
# the next is then within (2.2e-11)^2 / 3e-9 ~ 2e-13 max|lambda| (2e-5 of itself).
# The block-preconditioned LOBPCG reached 7e-12 in 3000 iterations at N = 99 (erf,
# population, D = 9900); eigh's own backward error there is D eps = 2.2e-12.
SMALLEST_RESIDUAL_EPS = 1e5
# The most LOBPCG iterations: erf needed ~4000 for 1e-13 at N = 30 and N = 50.
SMALLEST_MAX_ITERATIONS = 5000
# max|lambda| only scales tolerances: this relative accuracy is plenty.
SMALLEST_TOP_RTOL = 1e-6

# ---------------------------------------------------------------- numerical rank
# numerical_rank calls a rank undetermined (and warns) when the kept and dropped
# eigenvalues are less than this many decades apart (or, nothing dropped, the smallest
# is that close above the tolerance): a continuum through the cut, not a gap. float32
# erf at N = 30 put eigenvalues on both sides of the cut with a gap of 0.0 decades;
# float64 round-off zeros sit 0-1 decade below the cut with genuine eigenvalues 10+
# decades above, which is determined.
RANK_MIN_GAP_DECADES = 1.0

# ---------------------------------------------------------------- sweeps
# Workers of the default LocalCluster of a sweep.
DEFAULT_WORKERS = 2
# A temporary file older than this is left over from a crash, never a live write.
STALE_TMP_SECONDS = 3600
# The most configurations one grid may hold: each is one Dask task and one record
# file, and the whole list is built in memory first; larger grids are refused before
# they are expanded.
MAX_GRID_CONFIGS = 1_000_000
# How long the default LocalCluster waits for a killed worker's nanny to restart it.
LOST_WORKER_TIMEOUT = "10 minutes"

# ---------------------------------------------------------------------- online SGD (online.py)
# Records of online_sgd_ode (default alpha_eval) and online_sgd (default record_every).
ONLINE_DEFAULT_RECORDS = 201
# Gauss-Hermite rule of the 4-variate lr^2 term for smooth non-closed-form activations:
# nodes per axis doubled from START until the term moves by <= RTOL of its largest entry.
# The rule converges slowly for tanh at pre-activation variances ~2 (3e-4 from 32 to 64
# nodes, measured), fast below 1 (and for erf: 1e-10 at 16 nodes); the term is the
# lr^2 correction, so 1e-6 of it is far below the simulation's fluctuations.
ONLINE_QUAD_START_NODES = 8
ONLINE_QUAD_RTOL = 1e-6
ONLINE_QUAD_MAX_NODES = 64
# The bivariate expectations of the drift (cheap: n^2 nodes per pair) to this, at most
# this many nodes per axis.
ONLINE_PAIR_RTOL = 1e-11
ONLINE_PAIR_MAX_NODES = 1024
# A direction of a 4 x 4 covariance with remaining variance <= this times its largest
# variance is dropped from the rule (j = k, identical units, zero rows).
ONLINE_CHOLESKY_RTOL = 1e-13
# Records of gradient_flow (default t_eval).
FLOW_DEFAULT_RECORDS = 201
