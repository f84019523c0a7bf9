"""All eigenvalues of the population Hessian at D ~ 1e8 by the span reduction (THEORY.md g).

    python bench/population_span_scale.py [--n-in 1000000] [--n-hidden 100] [--teacher 0]

Builds an erf network with Ni = n_in, Nh = n_hidden, No = 1 (and, with --teacher M, a
teacher of M hidden units: the spectrum off the optimum), then times
``fh.eigenvalues(net, fh.POPULATION, teacher=...)`` (method "reduced") and measures the
bytes it allocates at its peak with tracemalloc (NumPy's allocations are traced), against
the bytes of W1. Run it in a fresh process per size: the peak resident set size
(ru_maxrss) it also prints includes building the network. numpy is imported first, as
in a user's script. Prints one JSON line.
"""
import argparse
import json
import resource
import time
import tracemalloc

import numpy as np

import fasthess as fh


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-in", type=int, default=1_000_000)
    parser.add_argument("--n-hidden", type=int, default=100)
    parser.add_argument("--teacher", type=int, default=0,
                        help="hidden units of a teacher (0: at the optimum)")
    parser.add_argument("--activation", default="erf")
    args = parser.parse_args(argv)

    net = fh.TwoLayerNet.random(args.n_in, args.n_hidden, activation=args.activation, rng=0)
    teacher = None
    if args.teacher:
        teacher = fh.TwoLayerNet.random(args.n_in, args.teacher, activation=args.activation,
                                        rng=1)
    tracemalloc.start()
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    spec = fh.eigenvalues(net, fh.POPULATION, teacher=teacher)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rank = fh.numerical_rank(spec)
    print(json.dumps({
        "n_in": args.n_in, "n_hidden": args.n_hidden, "teacher_hidden": args.teacher,
        "activation": args.activation, "D": len(spec), "method": spec.method,
        "stored_values": int(spec.values.size), "seconds": round(seconds, 2),
        "reduction_seconds": round(spec.assembly_seconds, 2),
        "solve_seconds": round(spec.solve_seconds, 2),
        "peak_bytes": peak, "w1_bytes": net.w1.nbytes,
        "peak_over_w1": round(peak / net.w1.nbytes, 3),
        "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "min": float(spec[0]), "max": float(spec[-1]), "rank": int(rank),
        "gap_decades": rank.gap_decades}))


if __name__ == "__main__":
    main()
