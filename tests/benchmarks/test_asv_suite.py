"""Smoke test of the asv suite in bench/: every benchmark method runs once on the
smallest parameters, so CI proves the suite still works (asv itself is slow to
start a process per benchmark; see README "Benchmarks")."""
import importlib
import inspect
import itertools

import pytest

MODULES = ["bench.bench_assembly", "bench.bench_spectrum", "bench.bench_dynamics",
           "bench.bench_population", "bench.bench_online"]


def _cases():
    for modname in MODULES:
        mod = importlib.import_module(modname)
        for name, cls in inspect.getmembers(mod, inspect.isclass):
            if cls.__module__ != modname:
                continue
            methods = [m for m in dir(cls) if m.startswith(("time_", "peakmem_", "track_"))]
            if not methods:
                continue
            params = getattr(cls, "params", ())
            params = params if params and isinstance(params[0], (list, tuple)) else (params,)
            # the smallest size (first value of every parameter), and each method choice
            combos = [tuple(p[0] for p in params)] if params != ((),) else [()]
            names = getattr(cls, "param_names", [])
            if "method" in names:
                i = names.index("method")
                combos = [c[:i] + (m,) + c[i + 1:] for c in combos for m in params[i]]
            for combo, method in itertools.product(combos, methods):
                yield pytest.param(cls, method, combo, id=f"{name}.{method}{list(combo)}")


@pytest.mark.parametrize("cls,method,combo", list(_cases()))
def test_benchmark_runs_once(cls, method, combo):
    bench = cls()
    try:
        bench.setup(*combo) if hasattr(bench, "setup") else None
    except NotImplementedError:  # asv's way of skipping a parameter combination
        return
    result = getattr(bench, method)(*combo)
    if method.startswith("track_"):
        assert result > 0


def test_first_call_benchmarks_are_runnable_code():
    from bench.bench_assembly import FirstCall

    for name in ("timeraw_first_call_compile", "timeraw_cached_call"):
        compile(getattr(FirstCall(), name)(), name, "exec")
