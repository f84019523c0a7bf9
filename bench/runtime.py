"""The runtime's figures in one run, as users get them (NumPy imported first):

    python bench/runtime.py [--rounds 5] [--quick]

1. A busy core: beside one busy process, each workload with the default setting
   against one thread (fh.threads(1)): dense assembly N = 10 .. 60, a block product,
   the dense eigh route, eigsh. Target: at most 1.25x.
2. Right after a user's own BLAS call (a 500 x 500 NumPy matmul, a SciPy syrk), a
   fasthess call against the same call alone (after a pause). Target: at most 1.15x.
3. Speed: the DGEMM rate of this machine measured in the same run; N = 40 assembly's
   fraction of it on unique FLOPs and its speed-up over explicit J + syrk; N = 10 .. 30
   against plain NumPy J^T J; block products' fraction; time per column at 200 and
   2000 columns (linear in the number of columns).
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


def dgemm_rate(repeat=5):
    """Multiply-adds per second of one 2-thread-default DGEMM as large as assembly's."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((820, 2000))
    t = best_of(lambda: a @ a.T, repeat)
    return 820 * 820 * 2000 / t


def numpy_jtj(net, X):
    """Plain NumPy: J by broadcasting, then J^T J / P."""
    w1, w2 = net.w1, net.w2
    pre = X @ w1.T
    from scipy.special import erf

    g = erf(pre / np.sqrt(2))
    d1 = np.sqrt(2 / np.pi) * np.exp(-pre**2 / 2)
    J1 = (d1 * w2[0])[:, :, None] * X[:, None, :]
    J = np.concatenate([J1.reshape(len(X), -1), g], axis=1)
    return J.T @ J / len(X)


def speed(rounds):
    rows = []
    rate = dgemm_rate()
    rows.append(("DGEMM rate, 820 x 820 x 2000, default threads",
                 f"{rate / 1e9:.1f} G multiply-adds/s"))
    net, X = problem(40)
    fh.hessian(net, X)
    P, n = X.shape
    unique = P * (n * (n + 1) // 2) ** 2 + P * n * n * n  # S pairs + w1w2 block
    fractions, syrk = [], []
    for _ in range(rounds):
        t = best_of(lambda: fh.hessian(net, X), 3)
        fractions.append(unique / t / rate)

        def explicit():
            J = fh.jacobian(net, X)
            sblas.dsyrk(1.0 / P, J, trans=1)

        syrk.append(best_of(explicit, 2) / t)
    rows.append(("N=40 assembly, fraction of the DGEMM rate (unique FLOPs)", spread(fractions)))
    rows.append(("N=40 assembly vs explicit J + syrk", spread(syrk, "{:.2f}x")))
    for n in (10, 20, 30):
        net, X = problem(n)
        fh.hessian(net, X)
        ratios = []
        for _ in range(rounds):
            ratios.append(best_of(lambda: numpy_jtj(net, X), 3)
                          / best_of(lambda: fh.hessian(net, X), 3))
        rows.append((f"N={n}: fh.hessian vs plain NumPy J^T J / P", spread(ratios, "{:.2f}x")))
    net, X = problem(40)
    op = fh.hessian_operator(net, X)
    P, n = X.shape
    for cols in (20, 200):
        V = np.ones((net.n_params, cols))
        op @ V
        fr = [2 * P * n * n * cols / best_of(lambda: op @ V, 2) / rate for _ in range(rounds)]
        rows.append((f"hessian_operator @ V, N=40, {cols} columns, fraction of the DGEMM rate "
                     "(2 P Ni Nh multiply-adds a column)", spread(fr)))
    net, X = problem(60)
    op = fh.hessian_operator(net, X)
    per_col = {}
    for cols in (200, 2000):
        V = np.ones((net.n_params, cols))
        per_col[cols] = best_of(lambda: op @ V, 1) / cols
    rows.append(("N=60 block product, time per column at 2000 / at 200 columns",
                 f"{per_col[2000] / per_col[200]:.2f}x"))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="N up to 40, fewer sizes")
    parser.add_argument("--only", choices=["busy", "after", "speed", "interrupts"], default=None)
    args = parser.parse_args()
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    from fasthess._kernels.blas import PRIVATE

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or ''}"
          f" load average {load[0]:.2f} at the start; fasthess {fh.__version__}, private GEMM "
          f"{'yes' if PRIVATE.private else 'no (shared BLAS)'}; numpy {np.__version__}",
          flush=True)
    rows = []
    if args.only in (None, "speed"):
        rows += speed(args.rounds)
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
