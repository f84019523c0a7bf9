"""Side-by-side comparison, ``fasthess bench``: ratios measured in one run.

For each (activation, N = Ni = Nh, P = factor * D) it times, in this process and
after warm-up, fasthess dense assembly against

(a) a plain NumPy explicit Jacobian and J^T J,
(b) the explicit Jacobian and BLAS syrk (the naive limit),
(c) the unique-entry FLOP limit at the DGEMM rate measured in the same run,
(d) autodiff peers (jax.hessian, torch.func.hessian) when a peer module is given:
    ``python -m bench.compare --peers`` from the repository passes ``bench.peers``,
    so no autodiff framework is ever imported by the package itself,

then fasthess.eigenvalues(method="auto") against dense eigh of the same H, and
the peak memory of each method, measured in a child process so allocations
outside NumPy (jax, torch) count too.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

from ._resources import set_num_threads
from .assembly import hessian
from .data import gaussian_inputs
from .network import TwoLayerNet
from .spectrum import eigenvalues

METHODS = ("fasthess", "numpy_jtj", "jacobian_syrk")


def load_peers(peer_module):
    """{name: builder(net, X) -> callable or None} from a module's ``PEERS`` dict."""
    if peer_module is None:
        return {}
    import importlib

    return dict(importlib.import_module(peer_module).PEERS)


# ---------------------------------------------------------------------- routes
def _problem(activation, n, factor, seed=0):
    net = TwoLayerNet.random(n, n, activation=activation, rng=seed)
    X = gaussian_inputs(max(1, int(round(factor * net.n_params))), n, rng=seed + 1)
    return net, X


def _explicit_jacobian(net, X):
    """J (P x D) materialised in memory with NumPy broadcasting (the naive route)."""
    from ._features import check_point, features
    from .products import jacobian_from_features

    return jacobian_from_features(features(check_point(net, X)))


def _route(method, net, X, peers=None):
    """A zero-argument callable computing H by ``method``, or None if unavailable.

    ``peers``: extra routes, {name: builder(net, X) -> callable or None}.
    """
    if peers and method in peers:
        return peers[method](net, X)
    P = X.shape[0]
    if method == "fasthess":
        return lambda: hessian(net, X)
    if method == "numpy_jtj":
        def numpy_jtj():
            J = _explicit_jacobian(net, X)
            return J.T @ J / P
        return numpy_jtj
    if method == "jacobian_syrk":
        from scipy.linalg.blas import dsyrk

        def jacobian_syrk():
            J = _explicit_jacobian(net, X)
            # C-ordered J is Fortran J^T: syrk(J^T, trans=0) = J^T J, upper triangle
            return dsyrk(1.0 / P, J.T, trans=0)
        return jacobian_syrk
    raise ValueError(f"method: unknown {method!r}; expected one of {METHODS} or a peer")


# ---------------------------------------------------------------------- timing
def unique_entry_macs(n_in, n_hidden, n_samples):
    """Multiply-adds of the pair contraction: P * Nh(Nh+1)/2 * Ni(Ni+1)/2 (~P Nh^2 Ni^2/4)."""
    return n_samples * (n_hidden * (n_hidden + 1) // 2) * (n_in * (n_in + 1) // 2)


def _status_bytes(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None


def peak_memory(method, activation, n, factor, memory_limit=None, timeout=900,
                peer_module=None):
    """Peak resident bytes that computing H by ``method`` adds, in a fresh process.

    Returns (bytes or None, note). ``memory_limit`` (bytes) caps the child's
    address space, to show a route running out of memory at that limit.
    """
    code = (
        "import sys, json; from fasthess.benchmarking import _child_peak; "
        f"print(json.dumps(_child_peak({method!r}, {activation!r}, {n}, {factor}, "
        f"{memory_limit!r}, {peer_module!r})))")
    env = dict(os.environ)
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None, "timed out"
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"failed (exit {out.returncode}): {tail[:120]}"
    result = json.loads(lines[-1])
    return result["peak_bytes"], result["note"]


def _child_peak(method, activation, n, factor, memory_limit=None, peer_module=None):
    peers = load_peers(peer_module)
    net, X = _problem(activation, n, factor)
    small_net, small_X = _problem(activation, 3, 2.0)
    warm = _route(method, small_net, small_X, peers)
    if warm is None:
        return {"peak_bytes": None, "note": "not installed"}
    warm()
    base = _status_bytes("VmRSS")
    if memory_limit is not None:
        import resource

        vm = _status_bytes("VmSize")
        resource.setrlimit(resource.RLIMIT_AS, (vm + memory_limit, vm + memory_limit))
    try:
        # the route itself builds the problem-specific closures (jit tracing included)
        _route(method, net, X, peers)()
    except MemoryError:
        return {"peak_bytes": None, "note": f"out of memory at {memory_limit / 2**30:.0f} GiB"}
    except Exception as exc:  # autodiff peers report OOM as their own errors
        msg = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
        return {"peak_bytes": None, "note": f"failed: {msg}"}
    return {"peak_bytes": _status_bytes("VmHWM") - base, "note": ""}


# ---------------------------------------------------------------------- report
def interleaved_best(funcs: dict, repeat=3):
    """Best time of each callable over ``repeat`` rounds that alternate between them,
    so a slow spell of a shared machine hits every method alike (ratios in one run)."""
    for f in funcs.values():
        f()  # warm-up
    best = {name: np.inf for name in funcs}
    for _ in range(repeat):
        for name, f in funcs.items():
            t0 = time.perf_counter()
            f()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def timed_with_dgemm_limit(routes: dict, macs: int, repeat=3):
    """Best times of ``routes`` and the DGEMM rate, all timed in the same interleaved
    rounds; the rate comes from a square GEMM of about ``macs`` multiply-adds (at
    least 1000^3, so that BLAS reaches its peak), so a slow spell of a shared
    machine affects the routes and the limit alike."""
    side = int(np.clip(round(macs ** (1 / 3)), 1000, 3000))
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((side, side)), rng.standard_normal((side, side))
    times = interleaved_best({**routes, "dgemm": lambda: a @ b}, repeat)
    return times, side**3 / times.pop("dgemm")


def dgemm_fraction(net, X, repeat=5):
    """Achieved fraction of the DGEMM rate of fasthess.hessian on the unique-entry
    multiply-adds (DESIGN.md), both timed in the same rounds."""
    macs = unique_entry_macs(net.n_in, net.n_hidden, X.shape[0])
    times, rate = timed_with_dgemm_limit({"fasthess": lambda: hessian(net, X)}, macs, repeat)
    return macs / rate / times["fasthess"]


def traced_peak(func):
    """Peak bytes NumPy allocates during func() (tracemalloc sees NumPy's buffers)."""
    import tracemalloc

    tracemalloc.start()
    try:
        func()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def compare(activation="erf", sizes=(20, 40), factor=2.0, peer_module=None, repeat=3,
            memory=True, memory_cap=None, log=print):
    """Measure every route; returns a list of row dicts (also logged line by line).

    ``peer_module``: an importable module with a ``PEERS`` dict of extra routes
    (the repository's ``bench.peers`` holds jax and torch).

    ``memory_cap`` (bytes) caps the address space of the peak-memory child
    processes; with a cap, peak memory is measured first, and a route that runs
    out of memory under it is reported as such and not timed.
    """
    rows = []
    for n in sizes:
        net, X = _problem(activation, n, factor)
        D, P = net.n_params, X.shape[0]
        peers = load_peers(peer_module)
        methods = list(METHODS) + list(peers)
        peaks, notes = {}, {}
        if memory:
            for method in methods:
                peaks[method], notes[method] = peak_memory(method, activation, n, factor,
                                                           memory_cap, peer_module=peer_module)
        H = hessian(net, X)
        routes = {}
        for method in methods:
            if notes.get(method) == "not installed" or (
                    memory_cap is not None and peaks.get(method) is None):
                log(f"  {method}: {notes.get(method)}; not timed")
                continue
            route = _route(method, net, X, peers)
            if route is None:
                log(f"  {method}: not installed, skipped")
                continue
            if method != "fasthess":
                got = np.asarray(route())
                got = np.triu(got) + np.triu(got, 1).T if method == "jacobian_syrk" else got
                err = np.max(np.abs(got - H)) / np.max(np.abs(H))
                if err > 1e-9:
                    raise AssertionError(f"{method} disagrees with fasthess: {err:.2e}")
            routes[method] = route
        times, rate = timed_with_dgemm_limit(routes, unique_entry_macs(n, n, P), repeat)
        t_fh = times["fasthess"]
        limit = unique_entry_macs(n, n, P) / rate
        eig = eigen_savings(net, X, repeat)
        row = dict(activation=activation, n=n, D=D, P=P, fasthess_s=t_fh,
                   dgemm_fraction=limit / t_fh, dgemm_rate=rate,
                   speedup={m: t / t_fh for m, t in times.items() if m != "fasthess"},
                   eig_auto_method=eig["method"], eig_speedup=eig["speedup"])
        if memory:
            row["traced_peak_over_H"] = traced_peak(routes["fasthess"]) / (8 * D * D)
            row["peak_over_H"] = {m: None if v is None else v / (8 * D * D)
                                  for m, v in peaks.items()}
            row["peak_notes"] = notes
        rows.append(row)
        log(format_row(row))
    return rows


def eigen_savings(net, X, repeat=3):
    """Time of eigenvalues(method="auto") against the dense route (assemble + eigh),
    on the same network and data; returns the route auto took and the ratio."""
    auto = eigenvalues(net, X, method="auto")
    dense = eigenvalues(net, X, method="dense")
    err = np.max(np.abs(auto.eigenvalues - dense.eigenvalues)) / np.max(np.abs(dense.eigenvalues))
    if err > 1e-9:
        raise AssertionError(f"eigenvalues auto ({auto.method}) disagrees with dense: {err:.2e}")
    best = interleaved_best({"auto": lambda: eigenvalues(net, X, method="auto"),
                             "dense": lambda: eigenvalues(net, X, method="dense")}, repeat)
    return {"method": auto.method, "speedup": best["dense"] / best["auto"],
            "auto_s": best["auto"], "dense_s": best["dense"]}


def format_row(row):
    s = (f"{row['activation']} N={row['n']} D={row['D']} P={row['P']}: "
         f"{row['dgemm_fraction']:.0%} of DGEMM rate ({row['dgemm_rate'] / 1e9:.0f} G "
         "multiply-adds/s) on unique-entry FLOPs; speed-up vs "
         + ", ".join(f"{m} {x:.1f}x" for m, x in row["speedup"].items())
         + f"; eigenvalues(auto={row['eig_auto_method']}) vs dense route "
         f"{row['eig_speedup']:.1f}x")
    if "peak_over_H" in row:
        s += (f"; NumPy-traced peak/8D^2 {row['traced_peak_over_H']:.2f}; RSS peak/8D^2: "
              + ", ".join(f"{m} {'n/a (' + row['peak_notes'][m] + ')' if v is None else f'{v:.2f}'}"
                          for m, v in row["peak_over_H"].items()))
    return s


def markdown_table(rows):
    names = list(dict.fromkeys(m for r in rows for m in [*r["speedup"], *r.get("peak_notes", {})]))
    methods = [m for m in names if m != "fasthess"]
    head = (["activation", "N", "D", "P", "% of DGEMM rate"] + [f"speed-up vs {m}" for m in methods]
            + ["peak / 8D^2 (traced)", "peak RSS / 8D^2"]
            + [f"RSS {m}" for m in methods])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def peak_cell(r, m):
        v = r.get("peak_over_H", {}).get(m)
        note = r.get("peak_notes", {}).get(m) or "n/a"
        return note.split(":")[0] if v is None else f"{v:.2f}"

    for r in rows:
        cells = [r["activation"], str(r["n"]), str(r["D"]), str(r["P"]),
                 f"{r['dgemm_fraction']:.0%}"]
        cells += [f"{r['speedup'][m]:.1f}x" if m in r["speedup"] else "n/a" for m in methods]
        traced = r.get("traced_peak_over_H")
        cells += ["n/a" if traced is None else f"{traced:.2f}", peak_cell(r, "fasthess")]
        cells += [peak_cell(r, m) for m in methods]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(args, peer_module=None) -> int:
    """``fasthess bench`` (and ``python -m bench.compare``, which adds the peers)."""
    if args.threads is not None:
        set_num_threads(args.threads)
    sizes = args.n or [20, 40]
    cap = None if args.memory_cap_gib is None else int(args.memory_cap_gib * 2**30)
    rows = compare(args.activation, sizes, args.samples_factor, peer_module=peer_module,
                   repeat=args.repeat, memory_cap=cap)
    print()
    print(markdown_table(rows))
    return 0
