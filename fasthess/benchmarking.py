"""Side-by-side comparison, ``fasthess bench``: ratios measured in one run, as users run.

Everything is timed in a child process that imports NumPy before fasthess (the
order of a user's script), after warm-up, in interleaved rounds; every ratio is
reported with its spread over the rounds (min, median, max). For each
(activation, N = Ni = Nh, P = factor * D) it times fasthess dense assembly against

(a) the explicit Jacobian from NumPy broadcasting and ``J.T @ J / P`` (what a user
    writes without fasthess),
(b) the explicit Jacobian and BLAS syrk (the naive limit),
(c) the unique-entry FLOP limit at the DGEMM rate measured in the same rounds,
(d) autodiff peers (jax.hessian, torch.func.hessian) when a peer module is given:
    ``python -m bench.compare --peers`` from the repository passes ``bench.peers``,
    so no autodiff framework is ever imported by the package itself,

then ``fasthess.eigenvalues(method="auto")`` against dense eigh of the same H, the
matrix-free product ``hessian_operator @ V`` against the DGEMM rate on its FLOPs,
and the peak memory of each method, measured in a fresh process so allocations
outside NumPy (jax, torch) count too. Optional: fasthess with one thread against
all threads while a busy loop holds one core (``under_load``), and the same
assembly in processes that import NumPy or fasthess first (``import_order``).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import numpy as np

from ._runtime import get_num_threads, set_num_threads, threads
from .assembly import hessian
from .data import gaussian_inputs
from .network import TwoLayerNet
from .operators import hessian_operator
from .spectrum import eigenvalues

__all__ = ["METHODS", "compare", "measure", "run_bench", "interleaved_times", "spread",
           "dgemm_fraction", "product_dgemm_fraction", "product_macs", "unique_entry_macs",
           "peak_memory", "eigen_savings", "eigen_savings_of", "under_load", "import_order",
           "markdown_table", "measure_in_child", "product_row",
           "format_spread", "load_peers"]

METHODS = ("fasthess", "numpy_jtj", "jacobian_syrk")
# OpenBLAS workers spin ~0.1 s after a call before they sleep (measured: their CPU use
# stops within 0.15 s). Each method runs untimed for this long before its timed calls,
# so that the previous method's spinning BLAS threads do not slow it (a user runs one
# of them, not all in turn), and so that it is timed warm: after an idle pause the
# cores of this 2-core VM ran the next 20-40 ms at half speed (N = 30: 36 ms instead
# of 21 after sleeping 0.25 s), which a loop of calls, as in a sweep, never sees.
SETTLE_SECONDS = 0.2
# A timing sample lasts at least this long (tiny calls are repeated within it).
MIN_SAMPLE_SECONDS = 0.02
_RESULT_MARK = "FASTHESS-BENCH-RESULT "


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


def _numpy_activation(activation, pre):
    """g(pre) and g'(pre) with NumPy / SciPy ufuncs, as a user writes them without
    fasthess (polynomials by Horner on the coefficients; other activations through
    their own single-threaded evaluation)."""
    name = activation.name
    if name == "erf":
        from scipy.special import erf

        return erf(pre / np.sqrt(2.0)), np.sqrt(2.0 / np.pi) * np.exp(-0.5 * pre * pre)
    if name == "tanh":
        t = np.tanh(pre)
        return t, 1.0 - t * t
    if name == "relu":
        return np.maximum(pre, 0.0), (pre > 0).astype(pre.dtype)
    coeffs = activation.coeffs
    if coeffs.size:
        g, d1 = np.zeros_like(pre), np.zeros_like(pre)
        for c in coeffs[::-1]:
            d1 = d1 * pre + g
            g = g * pre + c
        return g, d1
    A, G1, G2 = np.empty_like(pre), np.empty_like(pre), np.empty_like(pre)
    with threads(1):
        activation.apply(pre, A, G1, G2)
    return A, G1


def _explicit_jacobian(net, X):
    """J (P No x D) from NumPy broadcasting, as a user writes it without fasthess."""
    P = X.shape[0]
    w1, w2 = net.w1, net.w2
    n_out, n_hidden = w2.shape
    A, G1 = _numpy_activation(net.activation, X @ w1.T)
    J = np.zeros((P, n_out, net.n_params))
    d1 = w1.size
    J[:, :, :d1] = ((G1[:, None, :] * w2[None, :, :])[:, :, :, None]
                    * X[:, None, None, :]).reshape(P, n_out, d1)
    for k in range(n_out):
        J[:, k, d1 + k * n_hidden:d1 + (k + 1) * n_hidden] = A
    return J.reshape(P * n_out, -1)


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
    """Multiply-adds of the pair contraction: P * Nh(Nh+1)/2 * Ni(Ni+1)/2 (~P Nh^2 Ni^2/4).

    Examples
    --------
    >>> from fasthess.benchmarking import unique_entry_macs
    >>> unique_entry_macs(40, 40, 3280)
    2205472000
    """
    return n_samples * (n_hidden * (n_hidden + 1) // 2) * (n_in * (n_in + 1) // 2)


def product_macs(n_in, n_hidden, n_samples, columns):
    """Multiply-adds of H V (the two GEMMs with X): 2 P Ni Nh per column (4 P Ni Nh FLOPs).

    Examples
    --------
    >>> from fasthess.benchmarking import product_macs
    >>> product_macs(40, 40, 3280, 20)
    209920000
    """
    return 2 * n_samples * n_in * n_hidden * columns


def spread(values) -> dict:
    """The spread of repeated measurements.

    Parameters
    ----------
    values : sequence of float

    Returns
    -------
    dict
        {"min", "median", "max"} of ``values``, as floats.

    Examples
    --------
    >>> from fasthess.benchmarking import spread
    >>> spread([3.0, 1.0, 2.0])
    {'min': 1.0, 'median': 2.0, 'max': 3.0}
    """
    v = np.asarray(values, dtype=float)
    return {"min": float(v.min()), "median": float(np.median(v)), "max": float(v.max())}


def format_spread(s: dict, fmt="{:.2f}", suffix="") -> str:
    """'median (min-max)' of a :func:`spread`, each number by ``fmt`` then ``suffix``.

    Examples
    --------
    >>> from fasthess.benchmarking import format_spread
    >>> format_spread({"min": 1.5, "median": 1.75, "max": 2.0}, suffix="x")
    '1.75x (1.50x-2.00x)'
    """
    f = (fmt + suffix).format
    return f"{f(s['median'])} ({f(s['min'])}-{f(s['max'])})"


def interleaved_times(funcs: dict, repeat=5, settle=SETTLE_SECONDS,
                      min_sample=MIN_SAMPLE_SECONDS) -> dict:
    """Seconds per call of each callable, in each of ``repeat`` interleaved rounds.

    Rounds alternate between the callables, so a slow spell of a shared machine hits
    every method alike; ratios are then taken round by round. Before its sample in a
    round, each callable runs untimed for ``settle`` seconds (at least once); a call
    shorter than ``min_sample`` is repeated within its sample (the mean of the
    sample is its time).

    Parameters
    ----------
    funcs : dict
        {name: zero-argument callable}.
    repeat : int
        Rounds.
    settle, min_sample : float
        Seconds, as above.

    Returns
    -------
    dict
        {name: ndarray of ``repeat`` seconds per call}.

    Examples
    --------
    >>> from fasthess.benchmarking import interleaved_times
    >>> t = interleaved_times({"a": lambda: None, "b": lambda: sum(range(1000))},
    ...                       repeat=2, settle=0.0, min_sample=0.001)
    >>> sorted(t), t["a"].shape
    (['a', 'b'], (2,))
    """
    number = {}
    for name, f in funcs.items():
        f()  # warm-up
        t0 = time.perf_counter()
        f()
        number[name] = max(1, math.ceil(min_sample / max(time.perf_counter() - t0, 1e-9)))
    times = {name: np.empty(repeat) for name in funcs}
    for r in range(repeat):
        for name, f in funcs.items():
            warm_until = time.perf_counter() + settle
            f()
            while time.perf_counter() < warm_until:
                f()
            t0 = time.perf_counter()
            for _ in range(number[name]):
                f()
            times[name][r] = (time.perf_counter() - t0) / number[name]
    return times


def _dgemm_reference(macs):
    """A square DGEMM of about ``macs`` multiply-adds (at least 1000^3, so that BLAS
    reaches its peak; at most 3000^3) through SciPy's BLAS, the one fasthess uses.
    Returns (callable, its multiply-adds)."""
    from scipy.linalg.blas import dgemm

    side = int(np.clip(round(macs ** (1 / 3)), 1000, 3000))
    rng = np.random.default_rng(0)
    a, b = np.asfortranarray(rng.standard_normal((side, side))), \
        np.asfortranarray(rng.standard_normal((side, side)))
    return (lambda: dgemm(1.0, a, b)), side**3


def timed_with_dgemm_limit(routes: dict, repeat=5):
    """Per-round times of ``routes`` and of a reference DGEMM (key "dgemm"), interleaved,
    and the reference's multiply-adds; the rate of a round is macs / times["dgemm"]."""
    ref, ref_macs = _dgemm_reference(1e9)
    times = interleaved_times({**routes, "dgemm": ref}, repeat)
    return times, ref_macs


def dgemm_fraction(net, X, repeat=5):
    """Median fraction of the DGEMM rate that fasthess.hessian achieves on the unique-entry
    multiply-adds (DESIGN.md), both timed in the same rounds."""
    macs = unique_entry_macs(net.n_in, net.n_hidden, X.shape[0])
    times, ref_macs = timed_with_dgemm_limit({"fasthess": lambda: hessian(net, X)}, repeat)
    return spread(macs * times["dgemm"] / ref_macs / times["fasthess"])["median"]


def product_dgemm_fraction(net, X, columns=20, repeat=5):
    """Median fraction of the DGEMM rate of ``hessian_operator(net, X) @ V`` on its
    multiply-adds (:func:`product_macs`), V with ``columns`` columns."""
    op = hessian_operator(net, X)
    V = np.random.default_rng(0).standard_normal((net.n_params, columns))
    macs = product_macs(net.n_in, net.n_hidden, X.shape[0], columns)
    times, ref_macs = timed_with_dgemm_limit({"product": lambda: op @ V}, repeat)
    return spread(macs * times["dgemm"] / ref_macs / times["product"])["median"]


# ---------------------------------------------------------------------- memory
def _status_bytes(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None


def _child_code(body: str) -> str:
    """Python source for a child process that imports NumPy first, as users do."""
    return "import numpy\nimport json, sys\n" + body


def peak_memory(method, activation, n, factor, memory_limit=None, timeout=900,
                peer_module=None):
    """Peak resident bytes that computing H by ``method`` adds, in a fresh process.

    Returns (bytes or None, note). ``memory_limit`` (bytes) caps the child's
    address space, to show a route running out of memory at that limit.
    """
    code = _child_code(
        "from fasthess.benchmarking import _child_peak\n"
        f"print(json.dumps(_child_peak({method!r}, {activation!r}, {n}, {factor}, "
        f"{memory_limit!r}, {peer_module!r})))")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=timeout, env=dict(os.environ))
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


def traced_peak(func):
    """Peak bytes NumPy allocates during func() (tracemalloc sees NumPy's buffers)."""
    import tracemalloc

    tracemalloc.start()
    try:
        func()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------------- report
def compare(activation="erf", sizes=(10, 20, 30, 40), factor=2.0, peer_module=None,
            repeat=5, memory=True, memory_cap=None, memory_min_n=30, log=print):
    """Dense assembly by every route, timed in this process, with its spread.

    Parameters
    ----------
    activation : str
        The activation of the benchmark networks (Ni = Nh = N, P = factor * D).
    sizes : sequence of int
        The N of each row.
    factor : float
        P / D.
    peer_module : str or None
        An importable module with a ``PEERS`` dict of extra routes (the repository's
        ``bench.peers`` holds jax and torch).
    repeat : int
        Interleaved rounds (:func:`interleaved_times`).
    memory : bool
        Also the peak memory of each route (in fresh processes) for N >= ``memory_min_n``.
    memory_cap : int or None
        Bytes that cap the address space of those processes; with a cap, a route that
        runs out of memory under it is reported as such and not timed.
    memory_min_n : int
    log : callable
        Receives one line per row.

    Returns
    -------
    list of dict
        One row per N: times, the fraction of the DGEMM rate on unique-entry FLOPs
        and the speed-up over each route, each a :func:`spread` over the rounds.
    """
    rows = []
    peers = load_peers(peer_module)
    methods = list(METHODS) + list(peers)
    for n in sizes:
        net, X = _problem(activation, n, factor)
        D, P = net.n_params, X.shape[0]
        peaks, notes = {}, {}
        with_memory = memory and n >= memory_min_n
        if with_memory:
            for method in methods:
                peaks[method], notes[method] = peak_memory(method, activation, n, factor,
                                                           memory_cap, peer_module=peer_module)
        H = hessian(net, X)
        routes = {}
        for method in methods:
            if notes.get(method) == "not installed" or (
                    memory_cap is not None and with_memory and peaks.get(method) is None):
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
        times, ref_macs = timed_with_dgemm_limit(routes, repeat)
        t_fh = times["fasthess"]
        macs = unique_entry_macs(n, n, P)
        eig = eigen_savings(net, X, repeat)
        row = dict(activation=activation, n=n, D=D, P=P, threads=get_num_threads(),
                   fasthess_s=spread(t_fh),
                   dgemm_fraction=spread(macs * times["dgemm"] / ref_macs / t_fh),
                   dgemm_rate=spread(ref_macs / times["dgemm"]),
                   speedup={m: spread(t / t_fh) for m, t in times.items()
                            if m not in ("fasthess", "dgemm")},
                   eig_auto_method=eig["method"], eig_speedup=eig["speedup"])
        if with_memory:
            row["traced_peak_over_H"] = traced_peak(routes["fasthess"]) / (8 * D * D)
            row["peak_over_H"] = {m: None if v is None else v / (8 * D * D)
                                  for m, v in peaks.items()}
            row["peak_notes"] = notes
        rows.append(row)
        log(format_row(row))
    return rows


def product_row(activation="erf", n=40, factor=2.0, columns=20, repeat=5, log=print):
    """``hessian_operator(net, X) @ V`` (V with ``columns`` columns) against the DGEMM rate
    on its multiply-adds, checked against the dense H first."""
    net, X = _problem(activation, n, factor)
    op = hessian_operator(net, X)
    V = np.random.default_rng(0).standard_normal((net.n_params, columns))
    H = hessian(net, X)
    err = np.max(np.abs(op @ V - H @ V)) / np.max(np.abs(H @ V))
    if err > 1e-9:
        raise AssertionError(f"hessian_operator @ V disagrees with H @ V: {err:.2e}")
    macs = product_macs(n, n, X.shape[0], columns)
    times, ref_macs = timed_with_dgemm_limit({"product": lambda: op @ V}, repeat)
    row = dict(activation=activation, n=n, D=net.n_params, P=X.shape[0], columns=columns,
               product_s=spread(times["product"]),
               dgemm_fraction=spread(macs * times["dgemm"] / ref_macs / times["product"]))
    log(f"{activation} N={n} D={row['D']} P={row['P']}: hessian_operator @ V ({columns} "
        f"columns) at {format_spread(row['dgemm_fraction'])} of the DGEMM rate on "
        f"4 P Ni Nh FLOPs per column")
    return row


def eigen_savings(net, X, repeat=3):
    """Time of eigenvalues(method="auto") against the dense route (assemble + eigh),
    on the same network and data; returns the route auto took and the ratio's spread."""
    auto = eigenvalues(net, X, method="auto")
    dense = eigenvalues(net, X, method="dense")
    err = np.max(np.abs(auto.eigenvalues - dense.eigenvalues)) / np.max(np.abs(dense.eigenvalues))
    if err > 1e-9:
        raise AssertionError(f"eigenvalues auto ({auto.method}) disagrees with dense: {err:.2e}")
    times = interleaved_times({"auto": lambda: eigenvalues(net, X, method="auto"),
                               "dense": lambda: eigenvalues(net, X, method="dense")}, repeat)
    return {"method": auto.method, "speedup": spread(times["dense"] / times["auto"]),
            "auto_s": spread(times["auto"]), "dense_s": spread(times["dense"])}


def eigen_savings_of(activation, n, factor, repeat=3, log=print):
    """:func:`eigen_savings` on the benchmark problem (activation, N = Ni = Nh, P = factor D)."""
    net, X = _problem(activation, n, factor)
    result = eigen_savings(net, X, repeat)
    log(f"eigenvalues(auto) on {activation} N={n} P={X.shape[0]}: the {result['method']} "
        f"route, {format_spread(result['speedup'], '{:.1f}', 'x')} faster than dense")
    return result


def under_load(activation="erf", n=20, factor=2.0, repeat=5, busy=True, log=print):
    """fasthess.hessian with all threads against one thread, beside a busy loop.

    Parameters
    ----------
    activation, n, factor, repeat
        As in :func:`compare`.
    busy : bool
        Run a busy loop (a child process started and stopped here) on one core
        meanwhile; False: the machine as it is.
    log : callable

    Returns
    -------
    dict
        ``all_over_one``: the spread of t(all threads) / t(one thread); ``one_s``,
        ``all_s``: the times.
    """
    net, X = _problem(activation, n, factor)
    loop = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        if loop is not None:
            time.sleep(0.5)  # let the busy loop take its core

        def one():
            with threads(1):
                hessian(net, X)

        times = interleaved_times({"one": one, "all": lambda: hessian(net, X)}, repeat)
    finally:
        if loop is not None:
            loop.kill()
            loop.wait()
    row = dict(activation=activation, n=n, threads=get_num_threads(), busy=busy,
               one_s=spread(times["one"]), all_s=spread(times["all"]),
               all_over_one=spread(times["all"] / times["one"]))
    log(f"{'under load (a busy loop on one core)' if busy else 'threads'}, N={n}: "
        f"{row['threads']} threads take {format_spread(row['all_over_one'], suffix='x')} "
        "the time of one thread")
    return row


def import_order(activation="erf", n=40, factor=2.0, rounds=5, calls=7, log=print):
    """fasthess.hessian in fresh processes that import NumPy first or fasthess first.

    Parameters
    ----------
    activation, n, factor
        As in :func:`compare`.
    rounds : int
        Pairs of processes, one of each order, alternating.
    calls : int
        Each process reports its best of this many calls, after one to warm up.
    log : callable

    Returns
    -------
    dict
        ``numpy_first_over_fasthess_first``: the spread of the ratio over the rounds.
    """
    body = ("import time\n"
            "from fasthess.benchmarking import _problem\n"
            f"net, X = _problem({activation!r}, {n}, {factor})\n"
            "fasthess.hessian(net, X)\n"
            "best = float('inf')\n"
            f"for _ in range({calls}):\n"
            "    t0 = time.perf_counter(); fasthess.hessian(net, X)\n"
            "    best = min(best, time.perf_counter() - t0)\n"
            "print(best)\n")
    codes = {"numpy_first": "import numpy\nimport fasthess\n" + body,
             "fasthess_first": "import fasthess\nimport numpy\n" + body}
    times = {k: [] for k in codes}
    for _ in range(rounds):
        for key, code in codes.items():
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True, env=dict(os.environ))
            times[key].append(float(out.stdout.split()[-1]))
    ratio = np.asarray(times["numpy_first"]) / np.asarray(times["fasthess_first"])
    row = dict(activation=activation, n=n, numpy_first_s=spread(times["numpy_first"]),
               fasthess_first_s=spread(times["fasthess_first"]),
               numpy_first_over_fasthess_first=spread(ratio))
    log(f"import order, N={n}: numpy-first time / fasthess-first time "
        f"{format_spread(row['numpy_first_over_fasthess_first'])}")
    return row


def format_row(row):
    s = (f"{row['activation']} N={row['n']} D={row['D']} P={row['P']}: fasthess "
         f"{format_spread(row['fasthess_s'], '{:.3g}', ' s')}; "
         f"{format_spread(row['dgemm_fraction'])} of the DGEMM rate "
         f"({row['dgemm_rate']['median'] / 1e9:.0f} G multiply-adds/s) on unique-entry FLOPs; "
         "speed-up vs "
         + ", ".join(f"{m} {format_spread(x, suffix='x')}" for m, x in row["speedup"].items())
         + f"; eigenvalues(auto={row['eig_auto_method']}) vs dense route "
         f"{format_spread(row['eig_speedup'], '{:.1f}', 'x')}")
    if "peak_over_H" in row:
        peaks = (f"n/a ({row['peak_notes'][m]})" if v is None else f"{v:.2f}"
                 for m, v in row["peak_over_H"].items())
        s += (f"; NumPy-traced peak/8D^2 {row['traced_peak_over_H']:.2f}; RSS peak/8D^2: "
              + ", ".join(f"{m} {p}" for m, p in zip(row["peak_over_H"], peaks)))
    return s


def markdown_table(rows):
    """The dense-assembly rows as a Markdown table: medians with (min-max) of the rounds."""
    names = list(dict.fromkeys(m for r in rows for m in [*r["speedup"], *r.get("peak_notes", {})]))
    methods = [m for m in names if m != "fasthess"]
    head = (["activation", "N", "D", "P", "fasthess", "fraction of DGEMM rate"]
            + [f"speed-up vs {m}" for m in methods]
            + ["peak / 8D^2 (traced)", "peak RSS / 8D^2"]
            + [f"RSS {m}" for m in methods])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def peak_cell(r, m):
        if "peak_over_H" not in r:
            return "-"
        v = r["peak_over_H"].get(m)
        note = r.get("peak_notes", {}).get(m) or "n/a"
        return note.split(":")[0] if v is None else f"{v:.2f}"

    for r in rows:
        t = r["fasthess_s"]["median"]
        cells = [r["activation"], str(r["n"]), str(r["D"]), str(r["P"]),
                 f"{t * 1e3:.3g} ms", format_spread(r["dgemm_fraction"])]
        cells += [format_spread(r["speedup"][m], suffix="x") if m in r["speedup"] else "n/a"
                  for m in methods]
        traced = r.get("traced_peak_over_H")
        cells += ["-" if traced is None else f"{traced:.2f}", peak_cell(r, "fasthess")]
        cells += [peak_cell(r, m) for m in methods]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------- entry points
def measure(activation="erf", sizes=(10, 20, 30, 40), factor=2.0, threads=None,
            repeat=5, memory=True, memory_cap=None, peer_module=None, products=(40,),
            load=False, log=print) -> dict:
    """Everything ``fasthess bench`` reports, measured in this process.

    Parameters
    ----------
    activation, sizes, factor, repeat, memory, memory_cap, peer_module, log
        As in :func:`compare`.
    threads : int or None
        The thread setting to measure with (:func:`fasthess.set_num_threads`).
    products : sequence of int
        The N of the matrix-free product rows (:func:`product_row`).
    load : bool
        Also :func:`under_load` at N = 20.

    Returns
    -------
    dict
        {"rows": dense-assembly rows, "products": product rows, "load": row or None}.
    """
    if threads is not None:
        set_num_threads(threads)
    rows = compare(activation, sizes, factor, peer_module=peer_module, repeat=repeat,
                   memory=memory, memory_cap=memory_cap, log=log)
    prods = [product_row(activation, n, factor, repeat=repeat, log=log) for n in products]
    loaded = under_load(activation, 20, factor, repeat=repeat, log=log) if load else None
    return {"rows": rows, "products": prods, "load": loaded}


def measure_in_child(function="measure", timeout=None, **kwargs):
    """``function`` of this module (default :func:`measure`) with ``kwargs``, run in a
    fresh process that imports NumPy before fasthess, as a user's script does; its log
    lines go to this process's stderr. Returns what it returns (JSON-compatible)."""
    code = _child_code(
        "from fasthess import benchmarking as B\n"
        "kwargs = json.loads(sys.argv[2])\n"
        "result = getattr(B, sys.argv[1])(**kwargs, "
        "log=lambda s: print(s, file=sys.stderr, flush=True))\n"
        "print(B._RESULT_MARK + json.dumps(result))\n")
    out = subprocess.run([sys.executable, "-c", code, function, json.dumps(kwargs)],
                         stdout=subprocess.PIPE, text=True, timeout=timeout, env=dict(os.environ))
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith(_RESULT_MARK)]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"the benchmark process failed (exit {out.returncode}); its "
                           "error is printed above")
    return json.loads(lines[-1][len(_RESULT_MARK):])


def run_bench(*, activation="erf", sizes=None, samples_factor=2.0, threads=None, repeat=5,
              memory_cap_gib=None, memory=True, products=True, with_load=False,
              with_import_order=False, peer_module=None) -> int:
    """``fasthess bench`` (and ``python -m bench.compare``, which adds the peers).

    Measures in a child process that imports NumPy first (:func:`measure_in_child`)
    and prints the tables.

    Parameters
    ----------
    activation : str
    sizes : list of int or None
        N of the rows (default 10, 20, 30, 40).
    samples_factor : float
        P / D.
    threads : int or None
    repeat : int
    memory_cap_gib : float or None
    memory : bool
    products : bool
        The matrix-free product row at the largest N.
    with_load : bool
        Also :func:`under_load` (N = 20).
    with_import_order : bool
        Also :func:`import_order` (the largest N).
    peer_module : str or None

    Returns
    -------
    int
        0, the exit status.
    """
    sizes = list(sizes or [10, 20, 30, 40])
    cap = None if memory_cap_gib is None else int(memory_cap_gib * 2**30)
    result = measure_in_child(activation=activation, sizes=sizes, factor=samples_factor,
                              threads=threads, repeat=repeat, memory=memory, memory_cap=cap,
                              peer_module=peer_module,
                              products=[max(sizes)] if products else [], load=with_load)
    print()
    print(markdown_table(result["rows"]))
    for p in result["products"]:
        print(f"\nhessian_operator @ V ({p['columns']} columns), {p['activation']} N={p['n']} "
              f"P={p['P']}: {format_spread(p['dgemm_fraction'])} of the DGEMM rate on "
              "4 P Ni Nh FLOPs per column")
    if result["load"] is not None:
        r = result["load"]
        print(f"\nunder load (busy loop on one core), N={r['n']}: {r['threads']} threads / 1 "
              f"thread = {format_spread(r['all_over_one'], suffix='x')}")
    if with_import_order:
        import_order(activation, max(sizes), samples_factor, log=lambda s: print("\n" + s))
    return 0
