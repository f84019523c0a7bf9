"""The runtime's figures in one run, as users get them (NumPy imported first):

    python bench/runtime.py [--rounds 5] [--quick]

1. A busy core: beside one busy process, each workload with the default setting
   against one thread (fh.threads(1)): dense assembly N = 10 .. 60, a block product,
   the dense eigh route, eigsh. Target: at most 1.25x.
2. Right after a user's own BLAS call (a 500 x 500 NumPy matmul, a SciPy syrk), a
   fasthess call against the same call alone (after a pause). Target: at most 1.15x.
3. Block products linear in the number of columns: time per column at 2000 against
   200 columns. (Assembly's fraction of the DGEMM rate and its speed-up over NumPy and
   explicit J + syrk: the README's performance section, ``bench/update_readme.py``.)
4. Ctrl-C: seconds from SIGINT to KeyboardInterrupt, alone and beside a busy process.

Each ratio is a median with the (min-max) of interleaved rounds; the machine and its
load are printed first.
"""
import argparse
import os
import platform
import subprocess
import sys
import time

import numpy as np  # first, as in a user's script
import scipy.linalg.blas as sblas

import fasthess as fh


def spread(values, fmt="{:.2f}"):
    values = sorted(values)
    return f"{fmt.format(np.median(values))} ({fmt.format(values[0])}-{fmt.format(values[-1])})"


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def best_of(fn, repeat):
    return min(timed(fn) for _ in range(repeat))


def problem(n, n_out=1, seed=0):
    net = fh.TwoLayerNet.random(n, n, n_out=n_out, rng=seed)
    return net, fh.gaussian_inputs(2 * net.n_params, n, rng=seed + 1)


def workloads(quick):
    sizes = (10, 20, 30, 40) if quick else (10, 20, 30, 40, 60)
    out = {}
    for n in sizes:
        net, X = problem(n)
        out[f"hessian N={n}"] = (lambda net=net, X=X: fh.hessian(net, X))
    net, X = problem(40)
    V = np.ones((net.n_params, 20))
    op = fh.hessian_operator(net, X)
    out["hessian_operator @ V, N=40, 20 columns"] = lambda: op @ V
    net30, X30 = problem(30)
    out["eigenvalues (dense eigh), N=30, D=930"] = lambda: fh.eigenvalues(net30, X30,
                                                                          method="dense")
    v0 = np.ones(net.n_params)
    out["eigsh k=6, N=40"] = lambda: fh.eigsh(net, X, k=6, v0=v0)
    return out


def busy_core(rounds, quick):
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        rows = []
        for name, fn in workloads(quick).items():
            fn()
            ratios = []
            for _ in range(rounds):
                t_all = best_of(fn, 2)
                with fh.threads(1):
                    t_one = best_of(fn, 2)
                ratios.append(t_all / t_one)
            rows.append((f"busy core: {name}, default / one thread", spread(ratios, "{:.2f}x")))
        return rows
    finally:
        busy.kill()


def after_blas(rounds):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 500))
    net, X = problem(40)
    op = fh.hessian_operator(net, X)
    V = np.ones((net.n_params, 20))
    rows = []
    for name, fn in (("hessian N=40", lambda: fh.hessian(net, X)),
                     ("hessian_operator @ V, N=40, 20 columns", lambda: op @ V)):
        fn()
        after_np, after_sp = [], []
        for _ in range(rounds):
            time.sleep(0.3)
            alone = timed(fn)
            time.sleep(0.3)
            a @ a
            t_np = timed(fn)
            time.sleep(0.3)
            sblas.dsyrk(1.0, a)
            t_sp = timed(fn)
            after_np.append(t_np / alone)
            after_sp.append(t_sp / alone)
        rows.append((f"right after a NumPy matmul: {name}, / alone", spread(after_np, "{:.2f}x")))
        rows.append((f"right after a SciPy syrk: {name}, / alone", spread(after_sp, "{:.2f}x")))
    return rows


def interrupt_latency(with_busy: bool, n_interrupts=16):
    """Seconds from a SIGINT to the KeyboardInterrupt in a child computing products,
    the NTK, dense and population assembly (tests/test_interrupts.py's child)."""
    import tempfile
    from pathlib import Path

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tests.test_interrupts import _interrupt_child

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if with_busy else None
    try:
        code, _, err, sent, caught, _ = _interrupt_child(Path(tempfile.mkdtemp()), "bench",
                                                         n_interrupts, 0)
    finally:
        if busy is not None:
            busy.kill()
    assert code == 0, err[-2000:]
    lat = [c - s for s, c in zip(sent, caught)]
    label = "beside a busy process" if with_busy else "alone"
    return [(f"Ctrl-C latency {label}, {n_interrupts} interrupts: median (min-max), s",
             spread(lat, "{:.3f}"))]


def columns_linear():
    """Time per column of a block product at 2000 columns against at 200 (N = 60)."""
    net, X = problem(60)
    op = fh.hessian_operator(net, X)
    per_col = {}
    for cols in (200, 2000):
        V = np.ones((net.n_params, cols))
        op @ V[:, :10]
        per_col[cols] = best_of(lambda: op @ V, 1) / cols
    return [("N=60 block product, time per column at 2000 / at 200 columns",
             f"{per_col[2000] / per_col[200]:.2f}x")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="N up to 40, fewer sizes")
    parser.add_argument("--only", choices=["busy", "after", "columns", "interrupts"],
                        default=None)
    args = parser.parse_args()
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    from fasthess._kernels.blas import PRIVATE

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or ''}"
          f" load average {load[0]:.2f} at the start; fasthess {fh.__version__}, private GEMM "
          f"{'yes' if PRIVATE.private else 'no (shared BLAS)'}; numpy {np.__version__}",
          flush=True)
    rows = []
    if args.only in (None, "columns"):
        rows += columns_linear()
    if args.only in (None, "busy"):
        rows += busy_core(args.rounds, args.quick)
    if args.only in (None, "after"):
        rows += after_blas(args.rounds)
    if args.only in (None, "interrupts"):
        rows += interrupt_latency(False) + interrupt_latency(True)
    print("| what | measured |\n|---|---|")
    for what, value in rows:
        print(f"| {what} | {value} |")


if __name__ == "__main__":
    main()
