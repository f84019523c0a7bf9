"""The speed ratios users see, measured in one run (NumPy imported first):

    python bench/user_speed.py                 # prints a Markdown table
    python bench/user_speed.py --peers         # adds jax.hessian at N = 30 (if installed)

Dense assembly at N = 10 .. 40 against NumPy J^T J and explicit J + syrk, its
fraction of the DGEMM rate, the matrix-free product's fraction, thread scaling on
the machine as it is and beside a busy loop, and the import order. Every timing runs
in a child process that imports NumPy before fasthess; each ratio is a median with
the (min-max) of its interleaved rounds. It uses only bench.harness, so
the same script measures an older checkout given this module.
"""
import argparse
import os
import sys

import numpy  # noqa: F401  (first, as in a user's script)

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))

from bench import harness as B  # noqa: E402  (after the root is on sys.path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", action="store_true", help="add jax.hessian at N = 30")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    dense = B.measure_in_child(sizes=[10, 20, 30, 40], repeat=args.repeat, memory=False,
                               products=[40])
    rows = {r["n"]: r for r in dense["rows"]}
    scaling = B.measure_in_child("under_load", n=30, repeat=args.repeat, busy=False)
    loaded = B.measure_in_child("under_load", n=20, repeat=args.repeat, busy=True)
    order = B.import_order("erf", 40, 2.0, rounds=5, log=log)
    f = B.format_spread
    prod = dense["products"][0]
    rows_ = [
        ("dense assembly N=40 vs explicit J + syrk", f(rows[40]["speedup"]["jacobian_syrk"],
                                                      suffix="x")),
        ("dense assembly N=40, fraction of DGEMM rate (unique-entry FLOPs)",
         f(rows[40]["dgemm_fraction"])),
        ("fh.hessian N=40, numpy-first time / fasthess-first time (separate processes)",
         f(order["numpy_first_over_fasthess_first"], suffix="x")),
        (f"N=30, {scaling['threads']} threads (the default) vs 1 thread",
         f"{f(scaling['all_s'], '{:.3g}')} s vs {f(scaling['one_s'], '{:.3g}')} s"),
    ]
    if args.peers:
        peer = B.measure_in_child(sizes=[30], peer_module="bench.peers", repeat=3,
                                  memory=False, products=[])["rows"][0]
        jax = peer["speedup"].get("jax")
        rows_.append(("vs jax.hessian N=30", "not installed" if jax is None
                      else f(jax, "{:.0f}", "x")))
    rows_ += [(f"N={n}: fh.hessian vs NumPy J^T J / P", f(rows[n]["speedup"]["numpy_jtj"],
                                                         suffix="x")) for n in (10, 20, 30)]
    rows_ += [
        (f"under load (busy loop on one core), N=20: {loaded['threads']} threads / 1 thread",
         f(loaded["all_over_one"], suffix="x")),
        ("hessian_operator @ V (20 columns, N=40, P=2D), fraction of DGEMM rate "
         "(4 P Ni Nh FLOPs per column)", f(prod["dgemm_fraction"])),
    ]
    table = ["| what | measured |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows_]
    print("\n".join(table))


if __name__ == "__main__":
    main()
