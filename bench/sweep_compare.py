"""A sweep on a LocalCluster against the same configurations run serially in one process.

Run from the repository root::

    python bench/sweep_compare.py [--configs 40] [--workers 2] [--sizes 6 8 10 12 14]
                                  [--operator-n 10 40 80]

Prints the wall times, their ratio (the speed-up; ideal = number of workers) and the
per-task overhead of the Dask sweep, then the per-product overhead of the
sample-sharded Hessian operator (fasthess.distributed) against the local one.
Both sides are warm (JIT compiled and cached, workers started) before timing; the
cluster's start-up is reported on its own. The serial side uses one thread, as each
worker does. asv imports this module but finds no benchmark in it.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

try:
    import fasthess as fh
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
    import fasthess as fh

from fasthess import sweeps

ACTIVATIONS = ["erf", "tanh", "linear", "quadratic"]
MEASURE = ["eigenvalues", "rank"]


def make_configs(n_configs, sizes):
    """n_configs configurations: activations x sizes (Ni = Nh) x seeds."""
    configs = []
    seed = 0
    while len(configs) < n_configs:
        for act in ACTIVATIONS:
            for n in sizes:
                configs.append({"activation": act, "n": n, "n_samples": "2D", "seed": seed})
        seed += 1
    return configs[:n_configs]


def warm_up():
    """Compile (or load from cache) every kernel the measures use, in this process."""
    for act in ACTIVATIONS:
        sweeps.run_config({"activation": act, "n": 3}, MEASURE)
    return os.getpid()


def compare_sweep(client, n_configs, n_workers, sizes):
    configs = make_configs(n_configs, sizes)
    with fh.threads(1):
        warm_up()
        t0 = time.perf_counter()
        serial = [sweeps.run_config(c, MEASURE) for c in configs]
        t_serial = time.perf_counter() - t0
    assert all(r["status"] == "ok" for r in serial), [r["error"] for r in serial]
    client.run(warm_up)
    with tempfile.TemporaryDirectory() as store:
        t0 = time.perf_counter()
        report = sweeps.sweep(configs, MEASURE, store, client=client, progress=False)
        t_dask = time.perf_counter() - t0
        records = sweeps.load_sweep(store, arrays=False)
    assert report.n_failed == 0 and report.n_run == n_configs
    compute = sum(r["time_total"] for r in records)
    print(f"sweep of {n_configs} configurations ({', '.join(ACTIVATIONS)}; Ni = Nh in "
          f"{sizes}; P = 2D; measures {', '.join(MEASURE)})")
    print(f"  serial, one process, 1 thread   {t_serial:8.3f} s")
    print(f"  Dask, {n_workers} workers x 1 thread     {t_dask:8.3f} s")
    print(f"  ratio serial / Dask              {t_serial / t_dask:8.2f}   (ideal {n_workers})")
    per_task = (n_workers * t_dask - t_serial) / n_configs
    per_task_compute = (n_workers * t_dask - compute) / n_configs
    print(f"  overhead per task                {1e3 * per_task:8.1f} ms of worker time "
          f"(n_workers * wall - serial wall) / tasks")
    print(f"                                   {1e3 * per_task_compute:8.1f} ms against the "
          f"workers' own compute time ({1e3 * compute / n_configs:.1f} ms per task)")


def compare_operator(client, sizes, n_workers, repeat=20):
    from fasthess.distributed import hessian_operator

    print(f"Hessian-vector product: local operator vs {n_workers} shards on the cluster "
          f"(P = 2D, erf, one vector; median of {repeat})")
    for n in sizes:
        net = fh.TwoLayerNet.random(n, n, rng=0)
        X = fh.gaussian_inputs(2 * net.n_params, n, rng=1)
        v = np.random.default_rng(2).standard_normal(net.n_params)
        local = fh.hessian_operator(net, X)
        with fh.threads(1):
            t_local = _median_time(lambda: local @ v, repeat)
        with hessian_operator(net, X, client=client, n_shards=n_workers) as op:
            op @ v
            t_dist = _median_time(lambda: op @ v, repeat)
            err = np.max(np.abs(op @ v - local @ v)) / np.max(np.abs(local @ v))
        print(f"  Ni = Nh = {n:3d}  D = {net.n_params:6d}  local {1e3 * t_local:8.2f} ms  "
              f"distributed {1e3 * t_dist:8.2f} ms  overhead {1e3 * (t_dist - t_local):+8.2f} ms"
              f"  rel. diff {err:.1e}")


def _median_time(f, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[6, 8, 10, 12, 14],
                        help="Ni = Nh of the configurations (default 6 8 10 12 14)")
    parser.add_argument("--operator-n", type=int, nargs="*", default=[10, 40, 80],
                        help="Ni = Nh sizes for the operator comparison (none to skip)")
    args = parser.parse_args(argv)
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0", env=sweeps.WORKER_ENV)
    with cluster, Client(cluster) as client:
        print(f"LocalCluster of {args.workers} worker processes started in "
              f"{time.perf_counter() - t0:.2f} s ({os.cpu_count()} cores)")
        compare_sweep(client, args.configs, args.workers, args.sizes)
        if args.operator_n:
            compare_operator(client, args.operator_n, args.workers)


if __name__ == "__main__":
    main()
