"""Regenerate the README's measured sections from measurements made now.

    python bench/update_readme.py                       # every section (tens of minutes)
    python bench/update_readme.py --only compile        # one section (repeatable)
    python bench/update_readme.py --only figures --print   # print it, README untouched

Every timing in README.md lies between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``
markers and is written by this script, never typed by hand (tests/test_readme.py fails
on a timing outside them), each section headed by the machine that measured it:

- ``performance``: dense assembly, products, threads, import order, autodiff peers and
  eigenvalue routes, as ratios of times measured in the same interleaved rounds, in
  child processes that import NumPy before fasthess, as users do (several minutes;
  jax and torch rows need those packages, never fasthess dependencies);
- ``compile``: first call against steady state, with an empty and a warm kernel cache
  (bench/compile_time.py);
- ``figures``: ``fasthess figures --quick`` with an empty and a warm cache, and the
  full sizes (about as long as the full figures take);
- ``population``: bench/population_scale.py at D ~ 1e6, which also redraws
  docs/population_density.png (minutes; about 2 GiB of memory).
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

import numpy  # noqa: F401  (first, as in a user's script)

# bench.peers must be importable here and in the child processes
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))

from bench import harness as B  # noqa: E402  (after the root is on sys.path)

GIB = 2**30
SMALL, LARGE = [10, 20, 30], [40, 60]


def markers(name):
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


START, END = markers("performance")


def machine() -> str:
    """The machine in words: CPU model, cores, memory, OS, versions, load when measured."""
    import numba
    import psutil

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{model}, {os.cpu_count()} logical cores, "
            f"{psutil.virtual_memory().total / GIB:.0f} GiB, {platform.system()} "
            f"{platform.release()}; Python {platform.python_version()}, NumPy "
            f"{numpy.__version__}, Numba {numba.__version__}; load average {load:.1f} when "
            f"measured (other jobs on the machine slow every figure)")


def _headline(command):
    return f"Measured by `{command}` on {machine()}."


def measure(log):
    """The performance section's numbers."""
    out = {}
    out["small"] = B.measure_in_child(sizes=SMALL, repeat=7, memory=False, products=[],
                                      load=True)
    out["large"] = B.measure_in_child(sizes=LARGE, repeat=5, products=[40])
    out["peers"] = B.measure_in_child(sizes=[30], peer_module="bench.peers", repeat=3,
                                      products=[])["rows"][0]
    out["order"] = B.import_order("erf", 40, 2.0, rounds=5, log=log)
    out["oom"] = {m: B.peak_memory(m, "erf", 50, 2.0, memory_limit=12 * GIB,
                                   peer_module="bench.peers")
                  for m in ("jax", "torch", "fasthess")}
    log(f"N=50 under a 12 GiB cap: {out['oom']}")
    cases = [("linear, Ni = Nh = 60, P = 2D", "linear", 60, 2.0),
             ("erf, Ni = Nh = 40, P = D/4", "erf", 40, 0.25)]
    out["eig"] = {label: B.measure_in_child("eigen_savings_of", activation=act, n=n,
                                            factor=factor)
                  for label, act, n, factor in cases}
    return out


def _peer_line(p30, peer):
    if peer not in p30["speedup"]:
        return f"- `{peer}`: not installed when this was measured."
    call = "`jax.jit(jax.hessian(loss))`" if peer == "jax" else "`torch.func.hessian(loss)`"
    rss = p30.get("peak_over_H", {}).get(peer)
    mine = p30.get("peak_over_H", {}).get("fasthess")
    return (f"- fasthess is **{B.format_spread(p30['speedup'][peer], '{:.0f}', 'x')}** faster "
            f"than `{peer}` ({call}, float64, after warm-up), which takes "
            f"{'n/a' if rss is None else f'{rss:.0f}x'} the bytes of H in peak memory "
            f"(fasthess: {'n/a' if mine is None else f'{mine:.1f}x'}).")


def section(m):
    rows = m["small"]["rows"] + m["large"]["rows"]
    prod = m["large"]["products"][0]
    load = m["small"]["load"]
    order = m["order"]
    p30 = m["peers"]
    lines = [
        START,
        _headline("python bench/update_readme.py --only performance")
        + f" {rows[0]['threads']} threads, in processes that import NumPy before fasthess, "
        "as a user's script does. Every figure is a ratio of times measured in the same "
        "interleaved rounds, given as median (min-max) over the rounds.",
        "",
        "Dense assembly of the Hessian at the optimum, erf, P = 2D:",
        "",
        B.markdown_table(rows),
        "",
        "`numpy_jtj`: the Jacobian from NumPy broadcasting and `J.T @ J / P`, what one "
        "writes without fasthess; `jacobian_syrk`: the same Jacobian and BLAS `syrk`. "
        "`fraction of DGEMM rate`: the time of the unique-entry multiply-adds of DESIGN.md "
        "(P Nh(Nh+1)/2 Ni(Ni+1)/2) at the rate of a 1000^3 DGEMM timed in the same rounds, "
        "divided by the assembly time. `peak / 8D^2 (traced)`: peak bytes NumPy allocates "
        "during `fh.hessian` (tracemalloc) over the bytes of H; `RSS` columns: peak "
        "resident memory a fresh process adds (includes BLAS buffers); `-`: not measured "
        "at small N.",
        "",
        f"Matrix-free products, `hessian_operator(net, X) @ V` with {prod['columns']} columns "
        f"(erf, N = {prod['n']}, D = {prod['D']}, P = 2D): "
        f"**{B.format_spread(prod['dgemm_fraction'])}** of the DGEMM rate on their "
        "4 P Ni Nh FLOPs per column (the hot path of `eigsh`, `smallest_nonzero`, "
        "`spectral_density` and `trace`).",
        "",
        f"Threads under load: with a busy loop holding one of the cores, `fh.hessian` at "
        f"N = {load['n']} with {load['threads']} threads takes "
        f"{B.format_spread(load['all_over_one'], suffix='x')} the time it takes with one.",
        "",
        f"Import order: the same N = {order['n']} assembly in fresh processes that import "
        "NumPy first or fasthess first (alternating) takes "
        f"{B.format_spread(order['numpy_first_over_fasthess_first'], suffix='x')} the time "
        "with NumPy first (`import fasthess` changes no environment variable or setting).",
        "",
        f"Against autodiff (erf, N = 30, D = {p30['D']}, P = 2D; "
        "`python -m bench.compare --n 30 --peers`):",
        "",
        _peer_line(p30, "jax"),
        _peer_line(p30, "torch"),
        "",
        "At N = 50 (D = 2550, P = 5100) with each process capped at 12 GiB "
        "(`python -m bench.compare --n 50 --peers --memory-cap-gib 12`):",
        "",
    ]
    for method, (peak, note) in m["oom"].items():
        lines.append(f"- {method}: peak {peak / GIB:.2f} GiB" if peak is not None
                     else f"- {method}: {note}")
    lines += ["", "Eigenvalues, `fh.eigenvalues(method=\"auto\")` against the dense route "
              "(assemble + `eigh`), same network and data:", ""]
    for label, e in m["eig"].items():
        lines.append(f"- {label}: auto takes the `{e['method']}` route, "
                     f"**{B.format_spread(e['speedup'], '{:.0f}', 'x')}** faster")
    lines.append(END)
    return "\n".join(lines)


def measure_compile(log):
    from bench import compile_time

    return dict(scenarios=compile_time.measure(log=log), command=compile_time.measure_command())


def compile_section(m):
    from bench import compile_time

    cmd = m["command"]
    start, end = markers("compile")
    return "\n".join([
        start,
        _headline("python bench/update_readme.py --only compile")
        + " Each row: two fresh processes sharing a kernel cache that starts empty "
        "(`python bench/compile_time.py`); times are wall-clock, and the CPU time of the "
        "first call is what it would take on an idle core (compiling is single-threaded).",
        "",
        compile_time.markdown(m["scenarios"]),
        "",
        f"The `fasthess` command with its defaults took {cmd['cold']:.1f} s the first time "
        f"and {cmd['cached']:.1f} s once its kernels were cached (wall time, with Python's "
        "start and the eigensolve).",
        end])


def measure_figures(log):
    def run(cache, *extra):
        with tempfile.TemporaryDirectory(prefix="fasthess-figures-") as out:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "fasthess", "figures", "--out", out,
                            "--no-progress", *extra], check=True, capture_output=True,
                           env=dict(os.environ, NUMBA_CACHE_DIR=cache))
            return time.perf_counter() - t0

    with tempfile.TemporaryDirectory(prefix="fasthess-cache-") as cache:
        first = run(cache, "--quick")
        log(f"figures --quick, empty cache: {first:.1f} s")
        cached = run(cache, "--quick")
        log(f"figures --quick, cached: {cached:.1f} s")
        full = run(cache)
        log(f"figures, full sizes: {full:.1f} s")
    return dict(quick_first=first, quick_cached=cached, full=full)


def figures_section(m):
    start, end = markers("figures")
    return "\n".join([
        start,
        _headline("python bench/update_readme.py --only figures")
        + f" `fasthess figures --quick` took {m['quick_first']:.0f} s with an empty kernel "
        f"cache (compiling) and {m['quick_cached']:.0f} s cached; without `--quick`, the "
        f"full sizes took {m['full']:.0f} s (cached).",
        end])


def measure_population(log):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "population.json")
        subprocess.run([sys.executable, os.path.join(_ROOT, "bench", "population_scale.py"),
                        "--n", "1000", "--out",
                        os.path.join(_ROOT, "docs", "population_density.png"),
                        "--json", out], check=True)
        with open(out) as f:
            return json.load(f)


def population_section(m):
    start, end = markers("population")
    ms = {int(k): v * 1e3 for k, v in m["product_s"].items()}
    sizes = sorted(ms)
    return "\n".join([
        start,
        f"At D ~ 1e6 (`python bench/population_scale.py --n {m['n']} --out "
        f"docs/population_density.png`, erf, Ni = Nh = {m['n']}, D = {m['D']:,}; H_inf "
        f"itself would be {m['dense_bytes'] / 2**40:.1f} TiB): pair coefficients "
        f"{m['coefficients_s']:.0f} s, `fh.eigsh(net, fh.POPULATION, k=3)` {m['eigsh_s']:.0f} s "
        f"({m['eigsh_products']} products), `fh.spectral_density` with 4 probes x 40 Lanczos "
        f"steps {m['slq_s']:.0f} s, peak memory {m['peak_bytes'] / GIB:.1f} GiB (the Lanczos "
        "vectors, O(D x steps)). A product costs O(Nh^2 (Ni + No)) per column and grows as "
        "N^3 (" + ", ".join(f"{ms[n]:.2g}" for n in sizes[:-1]) + f" and {ms[sizes[-1]]:.3g} ms "
        "at N = " + ", ".join(str(n) for n in sizes[:-1]) + f" and {sizes[-1]}; asv: "
        "`bench/bench_population.py`). "
        + _headline("python bench/update_readme.py --only population"),
        end])


# What each section is: measured by the first, written by the second.
SECTIONS = {
    "performance": (measure, section),
    "compile": (measure_compile, compile_section),
    "figures": (measure_figures, figures_section),
    "population": (measure_population, population_section),
}


def replace_section(readme: str, name: str, text: str) -> str:
    """``readme`` with the section ``name`` (markers included) replaced by ``text``."""
    start, end = markers(name)
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if not pattern.search(readme):
        raise SystemExit(f"README.md has no {start} ... {end} markers")
    return pattern.sub(lambda _: text, readme)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print", action="store_true", help="print, do not edit README.md")
    parser.add_argument("--only", action="append", choices=list(SECTIONS), default=None,
                        help="regenerate this section only (repeatable; default all)")
    args = parser.parse_args()
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    path = os.path.join(_ROOT, "README.md")
    for name in args.only or SECTIONS:
        measure_, render = SECTIONS[name]
        text = render(measure_(log))
        if args.print:
            print(text)
            continue
        with open(path) as f:
            readme = f.read()
        with open(path, "w") as f:
            f.write(replace_section(readme, name, text))
        print(f"README.md: section {name} updated")


if __name__ == "__main__":
    main()
