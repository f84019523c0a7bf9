"""Regenerate the README's performance section from measurements made now.

    python bench/update_readme.py            # rewrites README.md between the markers
    python bench/update_readme.py --print    # only prints the section

Every number in that section comes from this script (ratios measured in one run,
never typed by hand), timed in child processes that import NumPy before fasthess,
as users do. It takes several minutes; jax and torch rows need those packages
installed (they are never fasthess dependencies) and are marked absent otherwise.
"""
import argparse
import os
import platform
import re
import sys

import numpy  # noqa: F401  (first, as in a user's script)

# bench.peers must be importable here and in the child processes
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))

from bench import harness as B  # noqa: E402  (after the root is on sys.path)

START, END = "<!-- performance:start -->", "<!-- performance:end -->"
GIB = 2**30
SMALL, LARGE = [10, 20, 30], [40, 60]


def measure(log):
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
        "Measured by `python bench/update_readme.py` on a "
        f"{os.cpu_count()}-core machine ({platform.machine()}, {rows[0]['threads']} threads), "
        "in processes that import NumPy before fasthess, as a user's script does. Every "
        "figure is a ratio of times measured in the same interleaved rounds, given as "
        "median (min-max) over the rounds.",
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print", action="store_true", help="print, do not edit README.md")
    args = parser.parse_args()
    m = measure(lambda s: print(s, file=sys.stderr))
    text = section(m)
    if args.print:
        print(text)
        return
    path = os.path.join(_ROOT, "README.md")
    readme = open(path).read()
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(readme):
        raise SystemExit(f"README.md has no {START} ... {END} markers")
    open(path, "w").write(pattern.sub(lambda _: text, readme))
    print("README.md performance section updated")


if __name__ == "__main__":
    main()
