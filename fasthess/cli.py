"""The ``fasthess`` command (also ``python -m fasthess``).

``fasthess`` alone (or ``fasthess run``) builds a teacher, assembles its Hessian at
the optimum, and prints D, P, the time taken, the extreme eigenvalues and the
numerical rank next to the predicted effective number of parameters.
Subcommands: ``figures``, ``bench``, ``sweep``.
"""
from __future__ import annotations

import argparse
import sys
import time

SUBCOMMANDS = ("run", "figures", "bench", "sweep")


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--activation", default="erf",
                   help="activation of the teacher: linear, quadratic, erf, tanh or relu "
                        "(default erf)")
    p.add_argument("--n-in", type=int, default=30, help="input dimension Ni (default 30)")
    p.add_argument("--n-hidden", type=int, default=30, help="hidden width Nh (default 30)")
    p.add_argument("--n-out", type=int, default=1, help="outputs No (default 1)")
    p.add_argument("--samples", type=int, default=None,
                   help="number of samples P (default 2*D, enough for the full rank)")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed: the teacher is drawn with rng=SEED and the inputs "
                        "with rng=SEED+1, so a run is reproducible (default 0)")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                   help="working precision of the assembly and the eigensolver "
                        "(default float64; float32 halves the memory and resolves "
                        "eigenvalues only down to ~1e-7 of the largest)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for Numba and BLAS together (default: all cores)")


def package_version() -> str:
    """The installed version of fasthess (what ``fasthess --version`` prints)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fasthess")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fasthess",
        description="Exact Hessians of two-layer teacher-student networks at the optimum.",
        epilog="`fasthess` with no subcommand (or only options) runs `fasthess run`; "
               "see `fasthess run --help` for its options.")
    parser.add_argument("--version", action="version",
                        version=f"fasthess {package_version()}",
                        help="print the version of fasthess and exit")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser(
        "run", help="assemble and diagonalise one Hessian (the default)",
        description="Draw a random teacher, assemble the Hessian of the loss at the optimum "
                    "(student = teacher) on Gaussian inputs, and print its extreme "
                    "eigenvalues and numerical rank beside the predicted number of "
                    "effective parameters.")
    _add_run_arguments(run)
    figures = sub.add_parser("figures", help="reproduce the paper's figures (PNG + data)")
    _add_figures_arguments(figures)
    bench = sub.add_parser(
        "bench", help="side-by-side speed ratios against naive routes",
        description="Side-by-side ratios against NumPy J^T J, Jacobian + syrk and the DGEMM "
                    "limit. From a repository checkout, `python -m bench.compare --peers` adds "
                    "jax.hessian and torch.func.hessian.")
    add_bench_arguments(bench)
    sweep = sub.add_parser("sweep", help="run a grid of configurations on Dask")
    _add_sweep_arguments(sweep)
    return parser


def _add_figures_arguments(p):
    from .figures import FIGURE_NAMES

    p.add_argument("--out", default="figures_out",
                   help="output directory, created if missing (default figures_out)")
    p.add_argument("--quick", action="store_true",
                   help="small sizes: about 8 s on 2 cores (about 25 s the first time, "
                        "while the kernels compile); without it, the full sizes take about "
                        "25 s")
    p.add_argument("--only", action="append", default=None, metavar="NAME",
                   help=f"make only this figure (repeatable): {', '.join(FIGURE_NAMES)}")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply sizes and ensemble counts by this factor (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the teachers and data of every figure (default 0)")


def add_bench_arguments(p):
    p.add_argument("--activation", default="erf")
    p.add_argument("--n", type=int, action="append", default=None,
                   help="Ni = Nh (repeatable; default 10, 20, 30 and 40)")
    p.add_argument("--samples-factor", type=float, default=2.0, help="P = factor * D")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for Numba and BLAS together (default: all cores)")
    p.add_argument("--repeat", type=int, default=5, help="interleaved rounds of timing")
    p.add_argument("--memory-cap-gib", type=float, default=None,
                   help="cap each route's memory when measuring its peak (shows OOM)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    p.add_argument("--no-products", action="store_true",
                   help="skip the matrix-free product row (hessian_operator @ V, 20 columns)")
    p.add_argument("--under-load", action="store_true",
                   help="also time N = 20 with all threads and with one while a busy loop "
                        "holds one core")
    p.add_argument("--import-order", action="store_true",
                   help="also time the largest N in processes importing numpy or fasthess first")


def bench_keywords(args) -> dict:
    """The keyword arguments of fasthess.benchmarking.run_bench from parsed bench arguments."""
    return dict(activation=args.activation, sizes=args.n, samples_factor=args.samples_factor,
                threads=args.threads, repeat=args.repeat, memory_cap_gib=args.memory_cap_gib,
                memory=not args.no_memory, products=not args.no_products,
                with_load=args.under_load, with_import_order=args.import_order)


def _add_sweep_arguments(p):
    p.add_argument("--grid", required=True, help="TOML or JSON grid file (see README)")
    p.add_argument("--store", required=True, help="results directory")
    p.add_argument("--scheduler", default=None,
                   help="Dask scheduler address (default: a LocalCluster on this machine)")
    p.add_argument("--workers", type=int, default=None, help="LocalCluster workers")
    p.add_argument("--rerun-failed", action="store_true",
                   help="run configurations recorded as failed again")
    p.add_argument("--no-progress", action="store_true")


# Activation names read with a vowel sound although spelled with a consonant, or the
# reverse ("erf" is said "erf"; "relu" is said "ree-loo").
_VOWEL_SOUND = {"erf": True, "relu": False, "linear": False, "quadratic": False,
                "tanh": False}


def indefinite_article(word: str) -> str:
    """"a" or "an" before ``word``, by its sound ("an erf", "a relu", "a tanh")."""
    sound = _VOWEL_SOUND.get(word.lower(), word[:1].lower() in "aeiou")
    return "an" if sound else "a"


def run(args) -> int:
    import numpy as np
    from scipy.linalg import eigh

    from . import theory
    from ._runtime import set_num_threads
    from .assembly import hessian
    from .data import gaussian_inputs
    from .network import TwoLayerNet
    from .rank import numerical_rank

    if args.threads is not None:
        set_num_threads(args.threads)
    net = TwoLayerNet.random(args.n_in, args.n_hidden, n_out=args.n_out,
                             activation=args.activation, rng=args.seed, dtype=args.dtype)
    D = net.n_params
    P = args.samples if args.samples is not None else 2 * D
    X = gaussian_inputs(P, args.n_in, rng=args.seed + 1, dtype=args.dtype)
    t0 = time.perf_counter()
    hessian(net, X[:2])  # load (or compile, on first use) the kernels
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    H = hessian(net, X)
    t_assembly = time.perf_counter() - t0
    t0 = time.perf_counter()
    ev = eigh(H, eigvals_only=True, overwrite_a=True, check_finite=False)
    t_eigh = time.perf_counter() - t0
    rank = numerical_rank(ev)
    name = net.activation.name
    print(f"fasthess {package_version()}: Hessian at the optimum of "
          f"{indefinite_article(name)} {name} teacher")
    print(f"  n_in={args.n_in} n_hidden={args.n_hidden} n_out={args.n_out}  "
          f"D={D}  P={P}  dtype={np.dtype(args.dtype).name}")
    print(f"  kernels load  {t_load:9.3f} s (compiles once, then cached on disk)")
    print(f"  assembly      {t_assembly:9.3f} s")
    print(f"  eigh          {t_eigh:9.3f} s")
    print(f"  eigenvalues   smallest {ev[0]: .6e}   largest {ev[-1]: .6e}")
    print(f"  numerical rank {rank.rank} of {D} (tolerance {rank.tolerance:.3e}, "
          f"{rank.gap_summary})")
    try:
        predicted = theory.effective_parameters(net.activation, args.n_in, args.n_hidden,
                                                args.n_out, n_samples=P)
        print(f"  predicted effective parameters {predicted}")
    except (ValueError, NotImplementedError) as exc:  # no closed form for this case
        print(f"  predicted effective parameters: n/a ({exc})")
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv = ["run"] + argv
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return run(args)
        if args.command == "figures":
            from .figures import make_figures

            return make_figures(args.out, quick=args.quick, only=args.only, scale=args.scale,
                                seed=args.seed, progress=False if args.no_progress else None)
        if args.command == "bench":
            from .benchmarking import run_bench

            return run_bench(**bench_keywords(args))
        if args.command == "sweep":
            from .sweeps import run_sweep_command

            return run_sweep_command(args.grid, args.store, scheduler=args.scheduler,
                                     workers=args.workers, rerun_failed=args.rerun_failed,
                                     progress=False if args.no_progress else None)
    except (ValueError, TypeError, MemoryError) as exc:
        print(f"fasthess: error: {exc}", file=sys.stderr)
        return 2
    return 0
