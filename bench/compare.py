"""The side-by-side comparison with the autodiff peers:

    python -m bench.compare --n 30 --peers
    python -m bench.compare --n 50 --peers --memory-cap-gib 12

Same options as ``fasthess bench``; ``--peers`` adds jax.hessian and
torch.func.hessian (from bench/peers.py) when they are installed.
"""
import argparse
import sys

import numpy  # noqa: F401  (first, as in a user's script)

from fasthess.benchmarking import run_bench
from fasthess.cli import add_bench_arguments, bench_keywords


def run(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    add_bench_arguments(parser)
    parser.add_argument("--peers", action="store_true",
                        help="also time jax.hessian and torch.func.hessian when installed")
    args = parser.parse_args(argv)
    return run_bench(**bench_keywords(args), peer_module="bench.peers" if args.peers else None)


if __name__ == "__main__":
    sys.exit(run())
