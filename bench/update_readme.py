"""Regenerate the README's performance section from measurements made now.

    python bench/update_readme.py            # rewrites README.md between the markers
    python bench/update_readme.py --print    # only prints the section

Every number in that section comes from this script (ratios measured in one run,
never typed by hand). It takes a few minutes; jax and torch rows need those
packages installed (they are never fasthess dependencies) and are marked absent
otherwise.
"""
import argparse
import os
import platform
import re
import sys

import fasthess as fh  # first: sets the BLAS/OpenMP idle-thread defaults before numpy
from fasthess import benchmarking as B

# bench.peers must be importable here and in the peak-memory child processes
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))

START, END = "<!-- performance:start -->", "<!-- performance:end -->"
GIB = 2**30


def measure(log):
    out = {}
    out["assembly"] = B.compare("erf", [40, 60], 2.0, repeat=5, log=log)
    out["peers"] = B.compare("erf", [30], 2.0, peer_module="bench.peers", repeat=3, log=log)
    out["oom"] = {m: B.peak_memory(m, "erf", 50, 2.0, memory_limit=12 * GIB,
                                   peer_module="bench.peers")
                  for m in ("jax", "torch", "fasthess")}
    log(f"N=50 under a 12 GiB cap: {out['oom']}")
    eig = {}
    for label, act, n, factor in [("linear, Ni = Nh = 60, P = 2D", "linear", 60, 2.0),
                                  ("erf, Ni = Nh = 40, P = D/4", "erf", 40, 0.25)]:
        net, X = B._problem(act, n, factor)
        eig[label] = B.eigen_savings(net, X, repeat=3)
        log(f"eigenvalues {label}: {eig[label]}")
    out["eig"] = eig
    return out


def section(m):
    a40, a60 = m["assembly"]
    p30 = m["peers"][0]
    lines = [
        START,
        "Measured by `python bench/update_readme.py` on a 2-core machine "
        f"({platform.machine()}, {fh.get_num_threads()} threads); every figure is a ratio "
        "of times measured in the same run (best of interleaved repeats).",
        "",
        "Dense assembly of the Hessian at the optimum, erf, P = 2D:",
        "",
        B.markdown_table([a40, a60]),
        "",
        "`% of DGEMM rate`: the time of the unique-entry multiply-adds of DESIGN.md "
        "(P Nh(Nh+1)/2 Ni(Ni+1)/2) at the DGEMM rate, divided by the assembly time; the rate "
        "comes from a square DGEMM of as many multiply-adds, timed in the same interleaved "
        "rounds as the assembly. `peak / 8D^2 (traced)`: peak bytes NumPy allocates during "
        "`fh.hessian` (tracemalloc) over the bytes of H; `RSS` columns: peak resident "
        "memory a fresh process adds (includes BLAS buffers).",
        "",
        "Against autodiff (erf, N = 30, D = 930, P = 2D; `python -m bench.compare --n 30 --peers`):",
        "",
    ]
    for peer in ("jax", "torch"):
        if peer in p30["speedup"]:
            rss = p30["peak_over_H"].get(peer)
            lines.append(f"- fasthess is **{p30['speedup'][peer]:.0f}x** faster than "
                         f"`{peer}` ({'`jax.jit(jax.hessian(loss))`' if peer == 'jax' else '`torch.func.hessian(loss)`'}"
                         f", float64, after warm-up), which takes "
                         f"{'n/a' if rss is None else f'{rss:.0f}x'} the bytes of H in peak "
                         f"memory (fasthess: {p30['peak_over_H']['fasthess']:.1f}x).")
        else:
            lines.append(f"- `{peer}`: not installed when this was measured.")
    lines += ["", "At N = 50 (D = 2550, P = 5100) with each process capped at 12 GiB "
              "(`python -m bench.compare --n 50 --peers --memory-cap-gib 12`):", ""]
    for method, (peak, note) in m["oom"].items():
        if peak is not None:
            lines.append(f"- {method}: peak {peak / GIB:.2f} GiB")
        else:
            lines.append(f"- {method}: {note}")
    lines += ["", "Eigenvalues, `fh.eigenvalues(method=\"auto\")` against the dense route "
              "(assemble + `eigh`), same network and data:", ""]
    for label, e in m["eig"].items():
        lines.append(f"- {label}: auto takes the `{e['method']}` route, "
                     f"**{e['speedup']:.0f}x** faster")
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
