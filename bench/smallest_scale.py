"""Time fh.smallest_nonzero at D ~ 1e4: the matrix-free route against the exact one.

    python bench/smallest_scale.py --n 99 --inputs population --method lobpcg
    python bench/smallest_scale.py --n 99 --inputs population --method dense

erf, Ni = Nh = n (n = 99: D = 9900), at the optimum, k = 3; the sampled inputs are
P = 2D Gaussian. Each run compiles on a tiny problem first, so the time printed is
steady state; it prints the seconds, the peak RSS and the values (compare them across
methods: the matrix-free ones are certified to tol * max|lambda|).
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np

import fasthess as fh


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=99)
    p.add_argument("--inputs", choices=["population", "sampled"], default="population")
    p.add_argument("--method", default="auto")
    p.add_argument("--activation", default="erf")
    p.add_argument("--k", type=int, default=3)
    args = p.parse_args(argv)
    net = fh.TwoLayerNet.random(args.n, args.n, activation=args.activation, rng=0)
    population = args.inputs == "population"
    X = fh.POPULATION if population else fh.gaussian_inputs(2 * net.n_params, args.n, rng=1)
    small = fh.TwoLayerNet.random(12, 12, activation=args.activation, rng=0)
    Xs = fh.POPULATION if population else fh.gaussian_inputs(2 * small.n_params, 12, rng=1)
    fh.smallest_nonzero(small, Xs, k=args.k, method=args.method, rng=0)  # compile
    t = time.perf_counter()
    w = fh.smallest_nonzero(net, X, k=args.k, method=args.method, rng=0)
    seconds = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"{args.activation} {args.inputs} D={net.n_params} method={args.method}: "
          f"{seconds:.1f} s, peak RSS {rss:.2f} GiB, values {np.array2string(w, precision=6)}",
          flush=True)


if __name__ == "__main__":
    main()
