"""The side-by-side comparison with the autodiff peers:

    python -m bench.compare --n 30 --peers
    python -m bench.compare --n 50 --peers --memory-cap-gib 12

``--peers`` adds jax.hessian and torch.func.hessian (from bench/peers.py) when
they are installed. (This was ``fasthess bench`` up to fasthess 0.2.0.)
"""
import argparse
import sys

import numpy  # noqa: F401  (first, as in a user's script)

from bench.harness import run_bench


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
    """The keyword arguments of bench.harness.run_bench from parsed arguments."""
    return dict(activation=args.activation, sizes=args.n, samples_factor=args.samples_factor,
                threads=args.threads, repeat=args.repeat, memory_cap_gib=args.memory_cap_gib,
                memory=not args.no_memory, products=not args.no_products,
                with_load=args.under_load, with_import_order=args.import_order)


def run(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    add_bench_arguments(parser)
    parser.add_argument("--peers", action="store_true",
                        help="also time jax.hessian and torch.func.hessian when installed")
    args = parser.parse_args(argv)
    return run_bench(**bench_keywords(args), peer_module="bench.peers" if args.peers else None)


if __name__ == "__main__":
    sys.exit(run())
