"""The population Hessian at D ~ 1e6: eigsh and the SLQ density, timed.

    python bench/population_scale.py [--n 1000] [--out docs/population_density.png]
                                     [--product-sizes 100 300] [--json results.json]

Builds an erf teacher with Ni = Nh = n (D = n^2 + n), then on H_inf (fasthess.POPULATION,
no samples, no D x D matrix anywhere) times

* fh.eigsh(net, fh.POPULATION, k=3): the three largest eigenvalues (ARPACK, SciPy defaults),
* fh.spectral_density(net, fh.POPULATION, n_probes=4, n_steps=40): the SLQ density,

prints the times, the product count, the peak resident memory, and the time of one
product (one column) at each of ``--product-sizes`` and at n; draws the density (with
the eigsh eigenvalues marked) to a PNG whose caption says what was computed and how
long it took; ``--json`` writes the numbers (bench/update_readme.py reads them). numpy
is imported before fasthess, as in a user's script.
"""
import argparse
import json
import os
import resource
import time

import numpy as np  # noqa: F401  (first, as users do)

from scipy.sparse.linalg import LinearOperator

import fasthess as fh


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="Ni = Nh (default 1000: D ~ 1e6)")
    parser.add_argument("--out", default=None, help="PNG of the density (default: none)")
    parser.add_argument("--rng", type=int, default=0, help="seed of the teacher and probes")
    parser.add_argument("--product-sizes", type=int, nargs="*", default=[100, 300],
                        help="also time one product at these Ni = Nh (default 100 300)")
    parser.add_argument("--json", default=None, help="write the numbers to this file")
    args = parser.parse_args(argv)

    net = fh.TwoLayerNet.random(args.n, args.n, activation="erf", rng=args.rng)
    d = net.n_params
    t0 = time.perf_counter()
    op = fh.hessian_operator(net, fh.POPULATION)
    t_coef = time.perf_counter() - t0
    calls = {"columns": 0}

    def matmat(V):  # count the columns multiplied (a product of m columns counts m)
        calls["columns"] += V.shape[1]
        return op.matmat(V)

    counted = LinearOperator(op.shape, matvec=lambda v: matmat(v.reshape(-1, 1))[:, 0],
                             matmat=matmat, dtype=op.dtype)
    t0 = time.perf_counter()
    w, _ = fh.eigsh(net, None, k=3, which="LA", operator=counted, rng=args.rng)
    t_eigsh = time.perf_counter() - t0
    n_eigsh = calls["columns"]
    t0 = time.perf_counter()
    sd = fh.spectral_density(net, None, n_probes=4, n_steps=40, rng=args.rng,
                             operator=counted)
    t_slq = time.perf_counter() - t0
    n_slq = calls["columns"] - n_eigsh
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"erf, Ni = Nh = {args.n}, D = {d}, X = fh.POPULATION")
    print(f"  pair coefficients       {t_coef:8.1f} s")
    print(f"  eigsh k=3 (largest)     {t_eigsh:8.1f} s  ({n_eigsh} products)  {np.round(w, 6)}")
    print(f"  SLQ 4 probes x 40 steps {t_slq:8.1f} s  ({n_slq} product columns)")
    print(f"  peak resident memory    {peak / 2**30:8.2f} GiB  (H_inf would be "
          f"{8 * d * d / 2**40:.1f} TiB)")
    products = {n: _product_seconds(n, args.rng) for n in {*args.product_sizes, args.n}}
    for n in sorted(products):
        print(f"  one product at N = {n:<5}  {products[n] * 1e3:8.1f} ms")
    if args.out:
        _plot(sd, w, args, d, t_coef, t_eigsh, t_slq, peak)
        print(f"  density drawn to {args.out}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(n=args.n, D=d, coefficients_s=t_coef, eigsh_s=t_eigsh,
                           eigsh_products=n_eigsh, slq_s=t_slq, slq_products=n_slq,
                           peak_bytes=peak, dense_bytes=8 * d * d,
                           product_s={str(k): v for k, v in sorted(products.items())}), f)


def _product_seconds(n, seed, repeat=5):
    """Best of ``repeat`` single-column products with H_inf at Ni = Nh = n (erf)."""
    net = fh.TwoLayerNet.random(n, n, activation="erf", rng=seed)
    op = fh.hessian_operator(net, fh.POPULATION)
    v = np.random.default_rng(seed).standard_normal((net.n_params, 1))
    op.matmat(v)  # compile and first touch
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        op.matmat(v)
        best = min(best, time.perf_counter() - t0)
    return best


def _plot(sd, top, args, d, t_coef, t_eigsh, t_slq, peak):
    from fasthess.figures._plotting import add_caption, new_figure

    fig, ax, _ = new_figure(None)
    ax.plot(sd.grid, sd.density, color="#0072B2", lw=1.8,
            label="SLQ density, 4 probes x 40 Lanczos steps")
    for i, v in enumerate(top):
        ax.axvline(v, color="#D55E00", ls="--", lw=1,
                   label="3 largest eigenvalues (eigsh)" if i == 0 else None)
    ax.set_yscale("log")
    ax.set_ylim(bottom=max(1e-6, sd.density.max() * 1e-7))
    ax.set_xlabel(r"eigenvalue $\lambda$ of $H_\infty$")
    ax.set_ylabel(r"density $\rho(\lambda)$")
    ax.set_title(f"Population Hessian of an erf teacher, $N_i = N_h$ = {args.n}, "
                 f"D = {d:,}", fontsize="medium")
    ax.legend(frameon=False, fontsize="small")
    add_caption(fig, f"X = fasthess.POPULATION (x ~ N(0, I), P -> infinity): no samples and "
                     f"no D x D matrix (it would be {8 * d * d / 2**40:.1f} TiB). On "
                     f"{os.cpu_count()} logical cores: "
                     f"pair coefficients {t_coef:.0f} s, eigsh (k = 3) {t_eigsh:.0f} s, SLQ "
                     f"{t_slq:.0f} s, peak memory {peak / 2**30:.1f} GiB. Teacher and probes "
                     f"from rng = {args.rng}; Gaussian smoothing 1% of the node range.")
    fig.savefig(args.out, dpi=120)


if __name__ == "__main__":
    main()
