"""First call against steady state: what Numba's compilation costs a user.

    python bench/compile_time.py                  # a Markdown table
    python bench/compile_time.py --json out.json  # the numbers, for bench/update_readme.py
    python bench/compile_time.py --only cli --only population
    python bench/compile_time.py --tree ../old-checkout --tree . --rounds 3   # before/after

Each scenario runs in two fresh processes that import NumPy first, as a user's script
does, sharing an on-disk cache that starts empty (``NUMBA_CACHE_DIR`` set to a new
temporary folder, which fasthess's cache locator honours): the first process compiles
(``cold``), the second loads the compiled kernels from the cache (``cached``). In each,
the scenario's call runs twice: the first call (compile or cache load, plus the work)
and the second (the work alone, steady state). ``jit`` is the time Numba held its
compiler lock during the first call (compiling or loading), as the ``fasthess`` command
reports it. ``first_cpu_s``, the CPU time of the first call, is what ``--tree``
comparisons rank by: compiling is single-threaded, so its CPU time varies less than its
wall time on a machine that other jobs share.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What each scenario calls: a user's first steps with fasthess.
SCENARIOS = {
    "cli": ("the `fasthess` command's assembly: erf, Ni = Nh = 30, P = 2D, float64",
            "net = fh.TwoLayerNet.random(30, 30, activation='erf', rng=0)\n"
            "X = fh.gaussian_inputs(2 * net.n_params, 30, rng=1)\n"
            "call = lambda: fh.hessian(net, X)"),
    "float32": ("the same in float32",
                "net = fh.TwoLayerNet.random(30, 30, activation='erf', rng=0, dtype=np.float32)\n"
                "X = fh.gaussian_inputs(2 * net.n_params, 30, rng=1, dtype=np.float32)\n"
                "call = lambda: fh.hessian(net, X)"),
    "small": ("`fh.hessian`, erf, Ni = Nh = 10, P = 2D (the one-call route of small networks)",
              "net = fh.TwoLayerNet.random(10, 10, activation='erf', rng=0)\n"
              "X = fh.gaussian_inputs(2 * net.n_params, 10, rng=1)\n"
              "call = lambda: fh.hessian(net, X)"),
    "both_routes": ("`fh.hessian` at Ni = Nh = 10, then at Ni = Nh = 30 (a session, the tests "
                    "or the figures, that meets both routes of the dense assembly)",
                    "nets = [fh.TwoLayerNet.random(n, n, activation='erf', rng=0)\n"
                    "        for n in (10, 30)]\n"
                    "Xs = [fh.gaussian_inputs(2 * m.n_params, m.n_in, rng=1) for m in nets]\n"
                    "call = lambda: [fh.hessian(m, x) for m, x in zip(nets, Xs)]"),
    "gradient_descent": ("`fh.gradient_descent`, erf, Ni = Nh = 20, P = 400, 200 steps",
                         "t = fh.TwoLayerNet.random(20, 20, activation='erf', rng=0)\n"
                         "X = fh.gaussian_inputs(400, 20, rng=1)\n"
                         "s = fh.perturb(t, 0.1, rng=2)\n"
                         "call = lambda: fh.gradient_descent(s, X, 0.1, 200, teacher=t)"),
    "population": ("`fh.eigsh(net, fh.POPULATION, k=3)`, erf, Ni = Nh = 20",
                   "net = fh.TwoLayerNet.random(20, 20, activation='erf', rng=0)\n"
                   "call = lambda: fh.eigsh(net, fh.POPULATION, k=3, rng=0)"),
}

_CHILD = """
import json, resource, time


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


t0 = time.perf_counter()
import numpy as np
import fasthess as fh
t_import = time.perf_counter() - t0
from numba.core import event
{setup}
jit = [0.0]
with event.install_timer("numba:compiler_lock", lambda s: jit.__setitem__(0, s)):
    t0, c0 = time.perf_counter(), cpu()
    call()
    first, first_cpu = time.perf_counter() - t0, cpu() - c0
t0 = time.perf_counter()
call()
second = time.perf_counter() - t0
print(json.dumps(dict(import_s=t_import, first_s=first, first_cpu_s=first_cpu, jit_s=jit[0],
                      steady_s=second)))
"""


def run_scenario(name, cache_dir, env=None):
    """One process: the scenario's first and second call (seconds), as a dict."""
    env = dict(os.environ if env is None else env, NUMBA_CACHE_DIR=cache_dir)
    code = _CHILD.format(setup=SCENARIOS[name][1])
    # cwd: the cache folder, so ``-c`` imports fasthess from the environment, not from cwd
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=cache_dir)
    return json.loads(out.stdout.strip().splitlines()[-1])


def time_command(cache_dir, env=None, cpu=False):
    """Seconds of ``python -m fasthess`` (its defaults) in a fresh process: wall time, or
    with ``cpu`` the CPU time of the process (user + system)."""
    env = dict(os.environ if env is None else env, NUMBA_CACHE_DIR=cache_dir)
    t0, c0 = time.perf_counter(), _children_cpu()
    subprocess.run([sys.executable, "-m", "fasthess"], env=env, capture_output=True, check=True,
                   cwd=cache_dir)
    return _children_cpu() - c0 if cpu else time.perf_counter() - t0


def _children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure_command():
    """The ``fasthess`` command end to end: {"cold": s, "cached": s}."""
    with tempfile.TemporaryDirectory(prefix="fasthess-compile-") as cache:
        return dict(cold=time_command(cache), cached=time_command(cache))


def measure(names=None, log=lambda s: None, env=None):
    """{scenario: {"cold": {...}, "cached": {...}}} measured now, each in fresh processes."""
    results = {}
    for name in names or SCENARIOS:
        with tempfile.TemporaryDirectory(prefix="fasthess-compile-") as cache:
            cold = run_scenario(name, cache, env)
            cached = run_scenario(name, cache, env)
        results[name] = dict(cold=cold, cached=cached)
        log(f"{name}: first call {cold['first_s']:.2f} s (Numba {cold['jit_s']:.2f} s), "
            f"then {cold['steady_s']:.3g} s; cached: first {cached['first_s']:.3g} s")
    return results


def compare(trees, names=None, rounds=3, log=lambda s: None):
    """First-call CPU seconds (empty cache) of each source tree, interleaved over rounds
    (for "command": the CPU time of the whole ``python -m fasthess`` process).

    {scenario: {tree: [seconds per round]}}; ``trees`` are source checkouts imported
    through PYTHONPATH (e.g. ``git worktree add`` of an older commit), so the ratios
    come from one machine under one load.
    """
    out = {name: {t: [] for t in trees} for name in names or [*SCENARIOS, "command"]}
    for r in range(rounds):
        for name in out:
            for tree in trees:
                env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
                with tempfile.TemporaryDirectory(prefix="fasthess-compile-") as cache:
                    out[name][tree].append(time_command(cache, env, cpu=True)
                                           if name == "command"
                                           else run_scenario(name, cache, env)["first_cpu_s"])
            log(f"round {r}: {name}: " + ", ".join(f"{t} {v[-1]:.2f} s"
                                                   for t, v in out[name].items()))
    return out


def markdown(results):
    lines = ["| what | first call, empty cache | of which compiling | its CPU time | "
             "first call, cached | steady state |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        c, w = r["cold"], r["cached"]
        lines.append(f"| {SCENARIOS[name][0]} | {c['first_s']:.1f} s | {c['jit_s']:.1f} s | "
                     f"{c['first_cpu_s']:.1f} s | {w['first_s']:.2f} s | "
                     f"{_short(c['steady_s'])} |")
    return "\n".join(lines)


def _short(seconds):
    return f"{seconds * 1e3:.2g} ms" if seconds < 0.1 else f"{seconds:.2g} s"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=[*SCENARIOS, "command"], default=None,
                        help="a scenario (repeatable); 'command': `python -m fasthess`, "
                             "with --tree only")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    parser.add_argument("--tree", action="append", default=None,
                        help="a source tree to compare (repeatable; the first is the "
                             "baseline): first calls only, interleaved over --rounds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--command", action="store_true",
                        help="also time the `fasthess` command end to end (two processes)")
    args = parser.parse_args()
    if args.tree:
        res = compare(args.tree, args.only, args.rounds,
                      log=lambda s: print(s, file=sys.stderr, flush=True))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=1)
        base = args.tree[0]
        print(f"| scenario | " + " | ".join(args.tree) + f" | ratio to {base} (median, min-max) |")
        print("|---" * (len(args.tree) + 2) + "|")
        for name, per in res.items():
            b = per[base]
            cells = [f"{statistics.median(v):.1f} s" for v in per.values()]
            ratios = [[x / y for x, y in zip(v, b)] for v in list(per.values())[1:]]
            text = "; ".join(f"{statistics.median(q):.2f} ({min(q):.2f}-{max(q):.2f})"
                             for q in ratios)
            print(f"| {name} | " + " | ".join(cells) + f" | {text} |")
        return
    results = measure(args.only, log=lambda s: print(s, file=sys.stderr, flush=True))
    command = measure_command() if args.command else None
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(scenarios=results, command=command), f, indent=1)
    print(markdown(results))
    if command:
        print(f"\n`python -m fasthess` (defaults), wall time: {command['cold']:.1f} s with an "
              f"empty cache, {command['cached']:.1f} s cached")


if __name__ == "__main__":
    main()
