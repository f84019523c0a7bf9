"""Sweeps: many teacher-student configurations measured on Dask, stored as they finish.

A *configuration* is one teacher network and its data; a *measure* is what is computed
for it. :func:`sweep` runs every configuration as one Dask task (a LocalCluster by
default, or any cluster through its client) and writes one record per configuration
to a *store* directory as soon as it finishes. A crash or Ctrl-C loses nothing that
finished, and rerunning the same sweep skips what the store already holds.
:func:`load_sweep` reads a store back.

Configurations
--------------
A configuration is a dict with the keys

========================  ============================================================
``activation``            a name (``"linear"``, ``"quadratic"``, ``"erf"``, ``"tanh"``,
                          ``"relu"``), ``{"polynomial": [c0, c1, ...]}`` (c[m]
                          multiplies z**m) or ``{"quadratic": eps}`` (z + eps z^2)
``n_in``, ``n_hidden``    Ni and Nh; ``n`` sets both (Ni = Nh = n)
``n_out``                 No, default 1
``n_samples``             P: an int, or a string relative to D = Nh (Ni + No) of the
                          form ``[a][*]D[/b][+c or -c]``, giving ceil(a D / b) + c:
                          ``"2D"``, ``"D/4"``, ``"0.5D"``, ``"2D+20"``. Default ``"2D"``.
``seed``                  int >= 0, default 0
``k``                     eigenvalues for measure ``smallest_nonzero`` (default 5)
``n_probes``, ``n_steps``  Lanczos probes and steps for measure ``density``
                          (defaults 20, 60)
``lr``, ``steps``,        gradient descent for measure ``dynamics``: learning rate
``perturbation``          (stable below 2 / lambda_max), updates, and the standard
                          deviation of the student's offset from the teacher
                          (defaults 0.01, 200, 0.01)
========================  ============================================================

The measure parameters (``k``, ...) may only be given with their measure. A
configuration is reproducible from its seed alone: the teacher, the data and each
measure's randomness come from ``numpy.random.SeedSequence(seed)`` with fixed spawn
keys (teacher ``(0,)``, data ``(1,)``, measure ``(2, crc32(name))``), whichever worker
runs it. The same seed gives the same teacher weights and inputs for every activation.

Measures
--------
``"eigenvalues"``       all eigenvalues (``fasthess.eigenvalues``, method "auto")
``"rank"``              numerical rank of those eigenvalues, its tolerance and gap,
                        and the predicted effective parameters (``fasthess.theory``)
``"smallest_nonzero"``  the k smallest nonzero eigenvalues
``"density"``           stochastic Lanczos quadrature spectral density
``"dynamics"``          the loss curve of gradient descent from a perturbed student

``measure`` is one of these names, a list of them, or a module-level function
``f(net, X, seed) -> dict`` of scalars and arrays (its ``name`` attribute, else
``"module:qualname"``, identifies it in the store).

Grid file (``fasthess sweep --grid FILE``)
------------------------------------------
TOML (``.toml``) or JSON (``.json``) holding one table. ``measure`` (a name or a
list) is required. Either a *product grid*: every configuration key may be a single
value or a list, and the sweep is every combination (``seeds = N`` means seeds
0..N-1)::

    measure = ["eigenvalues", "rank"]
    activation = ["erf", "linear"]
    n = [10, 20]              # Ni = Nh; or n_in = [...] and n_hidden = [...]
    n_samples = "2D"
    seeds = 5                 # 2 x 2 x 5 = 20 configurations

or an explicit list under ``configs``, whose entries take the table's other
(single-valued) keys as defaults (``seeds = N`` repeats each entry over seeds
0..N-1)::

    measure = "rank"
    n_samples = "2D"
    [[configs]]
    activation = "erf"
    n_in = 10
    n_hidden = 5
    [[configs]]
    activation = {polynomial = [0.0, 1.0, 0.5]}
    n = 8
    seed = 3

Store
-----
A directory with ``manifest.json`` (the store format version) and ``records/``,
holding per configuration ``<key>.json`` (config, measures, status "ok" or
"failed", error message and traceback, scalars, timings, worker, host, pid) and,
when there are arrays, ``<key>.npz``. The key is a hash of the canonical JSON of
(configuration with defaults filled in, measure names, format version). Each file
is written to a temporary file in the same directory, fsynced, then renamed over
its final name, the ``.npz`` before the ``.json``: a record exists exactly when its
``.json`` does, and is then complete. A store of another format version is refused.

``dask[distributed]`` is imported only when a sweep runs (``pip install
fasthess[dist]``); :func:`load_sweep` and :func:`run_config` do not need it.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import itertools
import json
import math
import numbers
import os
import re
import socket
import sys
import time
import traceback
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import _io
from ._optional import import_distributed

__all__ = ["sweep", "load_sweep", "SweepReport", "StoreVersionError", "read_grid",
           "expand_grid", "run_config", "record_key", "normalize_config",
           "resolve_n_samples", "measure_seed", "MEASURES", "FORMAT_VERSION", "main"]

#: Version of the store layout and record schema; part of every key.
FORMAT_VERSION = 1
_STORE_KIND = "fasthess-sweep-store"
MEASURES = ("eigenvalues", "rank", "smallest_nonzero", "density", "dynamics")

# Parameters each measure takes from the configuration, with their defaults. A
# default is written into the canonical config (and so into the key): changing a
# default here changes the keys instead of silently mixing old and new results.
_MEASURE_PARAMS = {
    "smallest_nonzero": {"k": 5},
    "density": {"n_probes": 20, "n_steps": 60},
    # lr well inside 2 / lambda_max for the sizes a sweep usually covers (lambda_max
    # ~ 50 for quadratic at Ni = Nh = 40, ~ 7 for relu)
    "dynamics": {"lr": 0.01, "steps": 200, "perturbation": 0.01},
}
_PARAM_TYPES = {"k": int, "n_probes": int, "n_steps": int, "steps": int,
                "lr": float, "perturbation": float}
_BASE_DEFAULTS = {"n_out": 1, "n_samples": "2D", "seed": 0}
_SIZE_KEYS = ("n_in", "n_hidden", "n_out")
_CONFIG_KEYS = ("activation", "n", "n_in", "n_hidden", "n_out", "n_samples", "seed",
                *_PARAM_TYPES)

# Workers of the LocalCluster run one task at a time with one thread: a sweep's
# parallelism is across configurations, and Numba plus BLAS threads on top would
# oversubscribe the cores. Set in the worker processes only, never in this one;
# FASTHESS_NUM_THREADS is the one each task applies (see _task_threads).
_WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1", "FASTHESS_NUM_THREADS": "1"}
_DEFAULT_WORKERS = 2
# A temporary file older than this is left over from a crash, never a live write.
_STALE_TMP_SECONDS = 3600
# How long the default LocalCluster waits for a killed worker's nanny to restart it.
_LOST_WORKER_TIMEOUT = "10 minutes"


class StoreVersionError(ValueError):
    """The store was written by another store format version."""


# ---------------------------------------------------------------------- configurations
_NSAMPLES_RE = re.compile(
    r"^\s*(?:(?P<a>\d+(?:\.\d*)?|\.\d+)\s*\*?\s*)?D\s*(?:/\s*(?P<b>\d+(?:\.\d*)?|\.\d+))?"
    r"\s*(?:(?P<sign>[+-])\s*(?P<c>\d+))?\s*$")


def resolve_n_samples(n_samples, n_params: int) -> int:
    """P from an int or a string relative to D (``"2D"``, ``"D/4"``, ``"2D+20"``).

    A string ``[a][*]D[/b][+c or -c]`` gives ``ceil(a * D / b) + c``. The result is not
    range-checked here: a P < 1 is refused where the data are drawn.
    """
    if isinstance(n_samples, numbers.Integral) and not isinstance(n_samples, bool):
        return int(n_samples)
    m = _NSAMPLES_RE.match(n_samples) if isinstance(n_samples, str) else None
    if m is None:
        raise ValueError(
            f"n_samples must be an int or a string like '2D', 'D/4', '0.5D' or '2D+20' "
            f"(D = number of parameters), got {n_samples!r}")
    a = float(m["a"]) if m["a"] else 1.0
    b = float(m["b"]) if m["b"] else 1.0
    if b == 0:
        raise ValueError(f"n_samples: division by zero in {n_samples!r}")
    c = int(m["c"]) * (-1 if m["sign"] == "-" else 1) if m["c"] else 0
    # round before ceil so that "0.1D" with D = 30 is 3, not 4 from 3.0000000000000004
    return math.ceil(round(a * n_params / b, 9)) + c


def _check_activation_spec(spec):
    """The canonical JSON form of an activation, without building it."""
    from .activations import ACTIVATION_NAMES

    if isinstance(spec, str):
        if spec.lower() not in ACTIVATION_NAMES:
            raise ValueError(f"activation: unknown name {spec!r}; expected one of "
                             f"{', '.join(ACTIVATION_NAMES)}, or a table "
                             f"{{polynomial = [c0, c1, ...]}} or {{quadratic = eps}}")
        return spec.lower()
    if isinstance(spec, dict) and len(spec) == 1:
        (kind, value), = spec.items()
        if kind == "polynomial" and isinstance(value, (list, tuple)) and value:
            return {"polynomial": [_as_float(c, "activation.polynomial") for c in value]}
        if kind == "quadratic":
            return {"quadratic": _as_float(value, "activation.quadratic")}
    raise ValueError(
        f"activation must be a name, {{'polynomial': [c0, c1, ...]}} or "
        f"{{'quadratic': eps}}, got {spec!r}")


def _build_activation(spec):
    from .activations import Polynomial, Quadratic

    if isinstance(spec, str):
        return spec
    if "polynomial" in spec:
        return Polynomial(spec["polynomial"])
    return Quadratic(spec["quadratic"])


def _as_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _as_float(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    return float(value)


def _measure_name(m) -> str:
    if isinstance(m, str):
        if m not in MEASURES:
            raise ValueError(f"measure: unknown name {m!r}; expected one of "
                             f"{', '.join(MEASURES)}, or a module-level function")
        return m
    if callable(m):
        name = getattr(m, "name", None) or (
            f"{getattr(m, '__module__', '?')}:{getattr(m, '__qualname__', '?')}")
        if "<" in name:  # a lambda or a nested function: no stable name for the key
            raise ValueError(
                f"measure: a function must be defined at module level (or have a 'name' "
                f"attribute) so that its name identifies it in the store, got {name!r}")
        return name
    raise TypeError(f"measure must be a name ({', '.join(MEASURES)}), a function, or a "
                    f"list of them, got {type(m).__name__}")


def _check_measures(measure):
    """(names, functions) in canonical (sorted) order, duplicates dropped."""
    items = measure if isinstance(measure, (list, tuple)) else [measure]
    if not items:
        raise ValueError("measure: give at least one measure")
    by_name = {}
    for m in items:
        by_name[_measure_name(m)] = m
    names = sorted(by_name)
    return names, [by_name[n] for n in names]


def normalize_config(config, measure) -> dict:
    """The canonical configuration: types checked, defaults filled in, sorted keys.

    Types and the grammar of ``n_samples`` are checked here, before any work; size
    ranges (e.g. n_in >= 1) are checked where the network is built, so that a bad
    size becomes a failed record instead of stopping the sweep.
    """
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    unknown = sorted(set(config) - set(_CONFIG_KEYS))
    if unknown:
        raise ValueError(f"config: unknown key(s) {', '.join(map(repr, unknown))}; "
                         f"allowed: {', '.join(_CONFIG_KEYS)}")
    names, _ = _check_measures(measure)
    cfg = dict(config)
    if "n" in cfg:
        if "n_in" in cfg or "n_hidden" in cfg:
            raise ValueError("config: give either n (Ni = Nh = n) or n_in and n_hidden, "
                             f"not both; got {config!r}")
        cfg["n_in"] = cfg["n_hidden"] = cfg.pop("n")
    for key in ("activation", "n_in", "n_hidden"):
        if key not in cfg:
            raise ValueError(f"config: missing key {key!r} in {config!r}")
    out = {"activation": _check_activation_spec(cfg["activation"])}
    for key, default in _BASE_DEFAULTS.items():
        cfg.setdefault(key, default)
    for key in _SIZE_KEYS:
        out[key] = _as_int(cfg[key], key)
    out["seed"] = _as_int(cfg["seed"], "seed")
    if out["seed"] < 0:
        raise ValueError(f"seed must be >= 0, got {out['seed']}")
    n_samples = cfg["n_samples"]
    resolve_n_samples(n_samples, 1)  # grammar only; P itself is checked on the worker
    # "2 * D" and "2D" are one configuration: one spelling in the key
    out["n_samples"] = (re.sub(r"[\s*]", "", n_samples) if isinstance(n_samples, str)
                        else int(n_samples))
    wanted = {p: d for m in names for p, d in _MEASURE_PARAMS.get(m, {}).items()}
    for key, kind in _PARAM_TYPES.items():
        if key in cfg and key not in wanted:
            owners = [m for m, ps in _MEASURE_PARAMS.items() if key in ps]
            raise ValueError(f"config: {key!r} is a parameter of measure {owners[0]!r}, "
                             f"which this sweep does not run (measures: {names})")
        if key in wanted:
            value = cfg.get(key, wanted[key])
            out[key] = _as_int(value, key) if kind is int else _as_float(value, key)
    return dict(sorted(out.items()))


def _canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _key_of(canon: dict, names) -> str:
    payload = {"config": canon, "measure": list(names), "format_version": FORMAT_VERSION}
    return hashlib.sha256(_canonical_json(payload).encode("ascii")).hexdigest()[:32]


def record_key(config, measure) -> str:
    """The store key of (config, measure): a hash of their canonical JSON and the
    store format version. Defaults filled in or spelled out give the same key."""
    names, _ = _check_measures(measure)
    return _key_of(normalize_config(config, measure), names)


# ---------------------------------------------------------------------- grid files
def read_grid(path):
    """Read a grid file (TOML or JSON): returns ``(configs, measure)``.

    See the module docstring for the format. Errors name the file and the key.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            with open(path, "rb") as f:
                table = _toml().load(f)
        elif suffix == ".json":
            with open(path, encoding="utf-8") as f:
                table = json.load(f)
        else:
            raise ValueError(f"grid: {path} must end in .toml or .json, got {suffix!r}")
    except (ValueError, OSError) as exc:  # tomllib and json errors are ValueErrors
        if isinstance(exc, FileNotFoundError):
            raise ValueError(f"grid: no such file {path}") from None
        raise ValueError(f"grid: cannot read {path}: {exc}") from None
    try:
        return expand_grid(table)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"grid {path}: {exc}") from None


def _toml():
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib
        except ImportError:
            raise ImportError("TOML grid files need Python >= 3.11 or the tomli package "
                              "(pip install tomli); or write the grid as JSON") from None
    return tomllib


def expand_grid(table: dict):
    """``(configs, measure)`` from a grid table (the parsed content of a grid file)."""
    if not isinstance(table, dict):
        raise TypeError(f"the grid must be a table (a dict), got {type(table).__name__}")
    table = dict(table)
    if "measure" not in table:
        raise ValueError(f"missing key 'measure' (one of {', '.join(MEASURES)}, or a list)")
    measure = table.pop("measure")
    names, _ = _check_measures(measure)
    seeds = table.pop("seeds", None)
    if seeds is not None:
        if "seed" in table:
            raise ValueError("give either 'seeds' or 'seed', not both")
        seeds = seeds if isinstance(seeds, list) else list(range(_as_int(seeds, "seeds")))
    if "configs" in table:
        explicit = table.pop("configs")
        if not isinstance(explicit, list) or not all(isinstance(c, dict) for c in explicit):
            raise TypeError("'configs' must be a list of tables")
        listed = [k for k, v in table.items() if isinstance(v, list)]
        if listed:
            raise ValueError(f"with 'configs', the other keys are single-valued defaults; "
                             f"{listed} are lists")
        configs = [{**table, **c} for c in explicit]
        if seeds is not None:  # every listed configuration once per seed
            seeded = [c for c in configs if "seed" in c]
            if seeded:
                raise ValueError(f"'seeds' repeats every entry of 'configs' over the seeds; "
                                 f"remove 'seed' from {seeded[0]}")
            configs = [{**c, "seed": s} for c in configs for s in seeds]
    else:
        if seeds is not None:
            table["seed"] = seeds
        order = [k for k in _CONFIG_KEYS if k in table]
        unknown = sorted(set(table) - set(order))
        if unknown:
            raise ValueError(f"unknown key(s) {unknown}; allowed: measure, configs, seeds, "
                             f"{', '.join(_CONFIG_KEYS)}")
        axes = [table[k] if isinstance(table[k], list) else [table[k]] for k in order]
        empty = [k for k, a in zip(order, axes) if not a]
        if empty:
            raise ValueError(f"empty list for {empty}")
        configs = [dict(zip(order, values)) for values in itertools.product(*axes)]
    for c in configs:
        normalize_config(c, names)  # fail on the first bad entry, before any work
    return configs, measure


# ---------------------------------------------------------------------- one configuration
def measure_seed(seed: int, name: str) -> int:
    """The int seed measure ``name`` gets in the configuration with ``seed``."""
    ss = np.random.SeedSequence(seed, spawn_key=(2, zlib.crc32(name.encode())))
    return int(ss.generate_state(1)[0])


class _Problem:
    """A configuration made concrete: teacher, data, and per-measure seeds."""

    def __init__(self, config):
        from .data import gaussian_inputs
        from .network import TwoLayerNet

        self.config = config
        seed = self._seed = config["seed"]
        teacher_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
        data_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
        self.net = TwoLayerNet.random(config["n_in"], config["n_hidden"], config["n_out"],
                                      activation=_build_activation(config["activation"]),
                                      seed=teacher_rng)
        self.n_samples = resolve_n_samples(config["n_samples"], self.net.n_params)
        self.X = gaussian_inputs(self.n_samples, config["n_in"], seed=data_rng)
        self._eigenvalues = None

    def seed_for(self, name: str) -> int:
        return measure_seed(self._seed, name)

    def eigenvalues(self):
        if self._eigenvalues is None:
            from .spectrum import eigenvalues

            self._eigenvalues = eigenvalues(self.net, self.X, method="auto")
        return self._eigenvalues


def _measure_eigenvalues(p: _Problem):
    r = p.eigenvalues()
    return {"eigenvalues_method": r.method}, {"eigenvalues": r.eigenvalues}


def _measure_rank(p: _Problem):
    from .spectrum import numerical_rank
    from .theory import effective_parameters

    r = numerical_rank(p.eigenvalues().eigenvalues)
    c = p.config
    try:
        predicted = effective_parameters(p.net.activation, c["n_in"], c["n_hidden"],
                                         c["n_out"], n_samples=p.n_samples)
    except (ValueError, NotImplementedError):  # no closed form for this activation
        predicted = None
    return {"rank": r.rank, "rank_tolerance": r.tolerance, "rank_gap_decades": r.gap_decades,
            "effective_parameters": predicted}, {}


def _measure_smallest_nonzero(p: _Problem):
    from .spectrum import smallest_nonzero

    return {}, {"smallest_nonzero": smallest_nonzero(p.net, p.X, p.config["k"])}


def _measure_density(p: _Problem):
    from .spectrum import spectral_density

    c = p.config
    r = spectral_density(p.net, p.X, n_probes=c["n_probes"], n_steps=c["n_steps"],
                         seed=p.seed_for("density"))
    return {}, {"density_grid": r.grid, "density": r.density, "density_nodes": r.nodes,
                "density_weights": r.weights}


def _measure_dynamics(p: _Problem):
    from .dynamics import gradient_descent, perturb

    c = p.config
    student = perturb(p.net, c["perturbation"], seed=p.seed_for("dynamics"))
    r = gradient_descent(student, p.net, p.X, c["lr"], c["steps"])
    return ({"diverged": bool(r.diverged), "final_loss": float(r.loss[-1])},
            {"dynamics_loss": r.loss, "dynamics_steps": r.steps})


_BUILTIN_MEASURES = {
    "eigenvalues": _measure_eigenvalues, "rank": _measure_rank,
    "smallest_nonzero": _measure_smallest_nonzero, "density": _measure_density,
    "dynamics": _measure_dynamics,
}


def _split_outputs(name, out):
    """A user measure's dict split into JSON scalars and numeric arrays."""
    if not isinstance(out, dict):
        raise TypeError(f"measure {name!r} must return a dict, got {type(out).__name__}")
    scalars, arrays = {}, {}
    for k, v in out.items():
        if v is None or isinstance(v, (bool, str)):
            scalars[k] = v
            continue
        a = np.asarray(v)
        # checked here, on the worker: a value JSON or allow_pickle=False cannot take
        # becomes this configuration's error, not a crash of the sweep's writer
        if a.dtype.kind not in "biuf":
            raise TypeError(f"measure {name!r}: {k!r} must be None, a bool, a string, a "
                            f"real number or a real array, got {type(v).__name__} of "
                            f"dtype {a.dtype}")
        if isinstance(v, (numbers.Real, np.generic)):
            scalars[k] = a.item()
        else:
            arrays[k] = a
    return scalars, arrays


def _json_scalar(v):
    return v.item() if isinstance(v, np.generic) else v


def _where() -> dict:
    """Which worker, host and process ran the task (the worker is None outside Dask)."""
    worker = None
    dist = sys.modules.get("distributed")  # only look when Dask is already loaded
    if dist is not None:
        try:
            worker = dist.get_worker().address
        except ValueError:  # not inside a worker task
            pass
    return {"worker": worker, "host": socket.gethostname(), "pid": os.getpid()}


def _task_threads():
    """``FASTHESS_NUM_THREADS`` threads for Numba and BLAS during a task, if it is set.

    Set on the workers of the default LocalCluster (1). It is applied per task, not
    through NUMBA_NUM_THREADS, because a worker process may have imported Numba
    before its environment was set (spawn re-imports the parent's main module).
    """
    n = os.environ.get("FASTHESS_NUM_THREADS")
    if not n:
        return contextlib.nullcontext()
    from ._resources import threads

    return threads(int(n))


def _execute(canon: dict, names, functions) -> dict:
    """Run one configuration; never raises for a measurement error (it is recorded)."""
    with _task_threads():
        start = time.perf_counter()
        scalars, arrays, timings = {}, {}, {}
        status, error, tb = "ok", None, None
        try:
            t0 = time.perf_counter()
            problem = _Problem(canon)
            scalars.update(D=problem.net.n_params, P=problem.n_samples)
            timings["setup_s"] = time.perf_counter() - t0
            for name, fn in zip(names, functions):
                t0 = time.perf_counter()
                if isinstance(fn, str):
                    s, a = _BUILTIN_MEASURES[fn](problem)
                else:
                    out = fn(problem.net, problem.X, problem.seed_for(name))
                    s, a = _split_outputs(name, out)
                clash = (set(s) | set(a)) & (set(scalars) | set(arrays))
                if clash:
                    raise ValueError(f"measure {name!r} returned {sorted(clash)}, which "
                                     f"another measure (or D, P) already set")
                scalars.update({k: _json_scalar(v) for k, v in s.items()})
                arrays.update(a)
                timings[f"{name}_s"] = time.perf_counter() - t0
        except Exception as exc:  # recorded as a failed configuration; the sweep goes on
            status, error, tb = "failed", f"{type(exc).__name__}: {exc}", traceback.format_exc()
        timings["total_s"] = time.perf_counter() - start
        return {"status": status, "error": error, "traceback": tb, "scalars": scalars,
                "arrays": arrays, "timings": timings, **_where()}


def run_config(config, measure) -> dict:
    """Run one configuration in this process and return its record (no store, no Dask).

    The record is what :func:`load_sweep` returns for it: configuration keys,
    ``status``, ``error``, scalars, ``time_*`` timings and arrays. A measurement
    error is returned as ``status == "failed"``, not raised.

    Examples
    --------
    >>> from fasthess.sweeps import run_config
    >>> def n_rows(net, X, seed):
    ...     return {"n_rows": X.shape[0]}
    >>> run_config({"activation": "erf", "n": 3, "n_samples": "D/2"}, n_rows)["n_rows"]
    6
    """
    names, functions = _check_measures(measure)
    canon = normalize_config(config, measure)
    result = _execute(canon, names, functions)
    return _flatten(_record(_key_of(canon, names), canon, names, result), result["arrays"])


def _record(key, canon, names, result) -> dict:
    """The JSON part of a record (its arrays go to the .npz beside it)."""
    return {
        "format_version": FORMAT_VERSION, "key": key, "config": canon,
        "measure": list(names), "status": result["status"], "error": result["error"],
        "traceback": result["traceback"], "scalars": result["scalars"],
        "arrays": sorted(result["arrays"]), "timings": result["timings"],
        "worker": result["worker"], "host": result["host"], "pid": result["pid"],
        "fasthess_version": _version(),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _flatten(record: dict, arrays: dict | None) -> dict:
    """One flat dict per record: config keys, status, scalars, time_*, arrays."""
    flat = {"key": record["key"], "status": record["status"], "error": record["error"]}
    flat.update(record["config"])
    flat["measure"] = record["measure"]
    flat.update(record["scalars"])
    flat.update({f"time_{k[:-2] if k.endswith('_s') else k}": v
                 for k, v in record["timings"].items()})
    flat.update(worker=record["worker"], host=record["host"], pid=record["pid"],
                traceback=record["traceback"])
    if arrays is not None:
        flat.update(arrays)
    return flat


def _version():
    from . import __version__

    return __version__


# ---------------------------------------------------------------------- the store
class _Store:
    """A sweep store directory: ``manifest.json`` + ``records/<key>.json|.npz``."""

    def __init__(self, path, create: bool):
        self.path = Path(path)
        self.records = self.path / "records"
        manifest = self.path / "manifest.json"
        if manifest.exists():
            self._check_manifest(manifest)
        elif not create:
            raise FileNotFoundError(f"store: {self.path} is not a fasthess sweep store "
                                    f"(no manifest.json)")
        elif self.path.exists() and any(self.path.iterdir()):
            raise ValueError(f"store: {self.path} exists, is not empty and has no "
                             f"manifest.json; it is not a fasthess sweep store (give a new "
                             f"or empty directory)")
        else:
            self.records.mkdir(parents=True, exist_ok=True)
            body = {"kind": _STORE_KIND, "format_version": FORMAT_VERSION,
                    "created_by": f"fasthess {_version()}"}
            _io.atomic_write(manifest, lambda f: f.write(_pretty_json(body)))
        if create:
            self._remove_stale_temporaries()

    def _check_manifest(self, manifest: Path):
        try:
            body = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"store: cannot read {manifest}: {exc}") from None
        if not isinstance(body, dict) or body.get("kind") != _STORE_KIND:
            raise ValueError(f"store: {manifest} is not a fasthess sweep store manifest")
        version = body.get("format_version")
        if version != FORMAT_VERSION:
            raise StoreVersionError(
                f"store: {self.path} was written with store format version {version} "
                f"({body.get('created_by', 'unknown fasthess')}); this fasthess "
                f"({_version()}) reads and writes format version {FORMAT_VERSION}. Use a new "
                f"store directory, or the fasthess version that wrote this one")
        self.records.mkdir(exist_ok=True)

    def _remove_stale_temporaries(self):
        now = time.time()
        for tmp in self.records.glob(f"{_io.TMP_PREFIX}*"):
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime > _STALE_TMP_SECONDS:
                    tmp.unlink()

    def has(self, key: str) -> bool:
        return (self.records / f"{key}.json").exists()

    def write(self, record: dict, arrays: dict) -> None:
        """Arrays first, then the JSON that makes the record exist."""
        key = record["key"]
        if arrays:
            # one directory fsync, after the JSON, covers both renames (same directory)
            _io.atomic_write(self.records / f"{key}.npz", lambda f: np.savez(f, **arrays),
                             sync_dir=False)
        _io.atomic_write(self.records / f"{key}.json", lambda f: f.write(_pretty_json(record)))

    def keys(self):
        return sorted(p.stem for p in self.records.glob("*.json")
                      if not p.name.startswith(_io.TMP_PREFIX))

    def read(self, key: str, arrays: bool = True):
        record = json.loads((self.records / f"{key}.json").read_text(encoding="utf-8"))
        loaded = None
        if arrays:
            loaded = {}
            if record["arrays"]:
                with np.load(self.records / f"{key}.npz", allow_pickle=False) as npz:
                    loaded = {name: npz[name] for name in record["arrays"]}
        return record, loaded


def _pretty_json(obj) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode("utf-8")


def load_sweep(store, arrays: bool = True, as_frame: bool = False):
    """The records of a sweep store, one flat dict per configuration.

    Parameters
    ----------
    store : str or path
        A directory written by :func:`sweep`.
    arrays : bool, default True
        Load the arrays (eigenvalues, densities, loss curves) too.
    as_frame : bool, default False
        Return a pandas DataFrame (pandas must be installed).

    Returns
    -------
    list of dict (or DataFrame)
        Keys: ``key``, ``status`` ("ok" or "failed"), ``error``, the configuration
        (``activation``, ``n_in``, ``n_hidden``, ``n_out``, ``n_samples`` as given,
        ``seed``, measure parameters), ``measure``, scalars (``D``, ``P`` and the
        measures' own: ``rank``, ``effective_parameters``, ...), ``time_<part>``
        seconds, ``worker``, ``host``, ``pid``, ``traceback`` and the arrays by name.
        Sorted by key.

    Raises
    ------
    StoreVersionError
        If the store was written by another store format version.
    """
    if as_frame:
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError(f"load_sweep(as_frame=True) needs pandas (pip install "
                              f"pandas); importing it failed: {exc}") from exc
    st = _Store(store, create=False)
    rows = [_flatten(*st.read(k, arrays=arrays)) for k in st.keys()]
    return pd.DataFrame(rows) if as_frame else rows


# ---------------------------------------------------------------------- the sweep
@dataclass
class SweepReport:
    """What :func:`sweep` did.

    Attributes
    ----------
    store : Path
    keys : list of str
        The store key of each configuration, in the order given (duplicates kept).
    n_run, n_skipped, n_failed : int
        Distinct configurations run now, found already in the store, and run now
        but failed.
    n_cancelled : int
        Tasks cancelled from outside (e.g. ``client.restart()``): not run, not
        recorded; rerunning the sweep runs them.
    failed : list of (dict, str)
        (configuration, error message) of each failure of this run.
    """

    store: Path
    keys: list = field(default_factory=list)
    n_run: int = 0
    n_skipped: int = 0
    n_failed: int = 0
    n_cancelled: int = 0
    failed: list = field(default_factory=list)


@contextlib.contextmanager
def _cluster_client(client, n_workers, retries):
    """The given client, or one on a new LocalCluster closed on exit."""
    distributed = import_distributed()
    if client is not None:
        if not isinstance(client, distributed.Client):
            raise TypeError(f"client must be a distributed.Client or None, got "
                            f"{type(client).__name__}")
        yield client
        return
    import dask

    # worker deaths count against the same retry budget as errors (the LocalCluster's
    # scheduler runs in this process and reads this when it starts); the cluster gives
    # up a dead worker whose nanny has not restarted it within lost-worker-timeout
    # (read when a worker dies, so set for the cluster's whole life): the 15 s default
    # is shorter than a restart on a busy machine, and the cluster then shrinks for good
    with dask.config.set({"distributed.scheduler.allowed-failures": retries,
                          "distributed.deploy.lost-worker-timeout": _LOST_WORKER_TIMEOUT}):
        # the dashboard takes a free port, since a fixed one may be taken by another
        # cluster
        cluster = distributed.LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True,
            dashboard_address=":0", env=_WORKER_ENV)
        try:
            with distributed.Client(cluster) as c:
                yield c
        finally:
            cluster.close()


def sweep(configs, measure, store, client=None, progress=None, retries=2, *,
          n_workers=None, rerun_failed=False) -> SweepReport:
    """Measure every configuration as a Dask task; store each record as it finishes.

    Parameters
    ----------
    configs : iterable of dict
        Configurations (see the module docstring): ``activation``, ``n_in`` and
        ``n_hidden`` (or ``n``), optional ``n_out``, ``n_samples``, ``seed`` and
        measure parameters.
    measure : str, function or list of them
        Names from :data:`MEASURES`, or module-level functions
        ``f(net, X, seed) -> dict`` of scalars and numeric arrays.
    store : str or path
        Results directory; created if needed. Keys already in it are skipped.
    client : distributed.Client, optional
        Run on this client's cluster. Default: a new LocalCluster of ``n_workers``
        processes with one thread each (and one Numba/BLAS thread), its dashboard on
        a free port, closed at the end. It spawns processes, so a script calling this needs an
        ``if __name__ == "__main__":`` guard.
    progress : bool, optional
        Show a tqdm progress bar; default only when stderr is a terminal.
    retries : int, default 2
        Extra attempts of a task whose worker died or that raised outside the
        measurement (passed to ``Client.submit``; on the default LocalCluster also
        the scheduler's allowed worker deaths per task). A measurement that raises
        is not retried: it is recorded as failed, and the sweep goes on. Dask counts
        a worker's death against every task the worker held, so a task lost with
        ``KilledWorker`` runs again alone on the cluster after the others: it is
        recorded as failed only if it then kills its workers on its own.
    n_workers : int, optional
        Workers of the default LocalCluster (default 2); not allowed with ``client``.
    rerun_failed : bool, default False
        Also rerun configurations whose stored record is "failed".

    Returns
    -------
    SweepReport

    Raises
    ------
    StoreVersionError
        If ``store`` was written by another store format version.
    ImportError
        If dask[distributed] is not installed (``pip install fasthess[dist]``).
    """
    names, functions = _check_measures(measure)
    retries = _as_int(retries, "retries")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    if client is not None and n_workers is not None:
        raise ValueError("n_workers applies to the default LocalCluster; with client= the "
                         "cluster's own workers are used")
    n_workers = _DEFAULT_WORKERS if n_workers is None else _as_int(n_workers, "n_workers")
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    canons = [normalize_config(c, measure) for c in configs]
    distributed = import_distributed()  # before touching the disk
    report = SweepReport(Path(store), [_key_of(c, names) for c in canons])
    st = _Store(store, create=True)
    todo = {}
    for key, canon in zip(report.keys, canons):
        if key in todo or (st.has(key) and not (
                rerun_failed and st.read(key, arrays=False)[0]["status"] == "failed")):
            continue
        todo[key] = canon
    report.n_skipped = len(set(report.keys)) - len(todo)
    if not todo:
        return report
    with _cluster_client(client, n_workers, retries) as c, \
            _io.progress(total=len(todo), desc="fasthess sweep", enabled=progress,
                         unit="config", postfix=f"{report.n_skipped} in store") as bar:
        futures = {}

        def submit(key):
            # unique task keys: a task of an interrupted sweep may still be cancelling on
            # the scheduler, and a new task under its key would be cancelled with it
            fut = c.submit(_execute, todo[key], names, functions, retries=retries,
                           key=f"fasthess-sweep-{key}-{uuid.uuid4().hex[:8]}")
            futures[fut] = key
            return fut

        def settle(fut, result):
            """Store the outcome of a finished future; False if it was not stored."""
            key = futures[fut]
            if fut.status == "cancelled":  # by someone else (a restart): no record
                report.n_cancelled += 1
                return True
            if fut.status != "finished":  # the task was lost (its workers kept dying)
                exc = fut.exception()  # `result` holds it in a version-dependent form
                if not isolated and isinstance(exc, distributed.KilledWorker):
                    return False
                result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                          "traceback": None, "scalars": {}, "arrays": {},
                          "timings": {}, "worker": None, "host": None, "pid": None}
            st.write(_record(key, todo[key], names, result), result["arrays"])
            report.n_run += 1
            if result["status"] == "failed":
                report.n_failed += 1
                report.failed.append((todo[key], result["error"]))
            bar.update(1)
            return True

        isolated = False
        suspects = []
        try:
            for key in todo:
                submit(key)
            # with_results: results are fetched in the background as tasks finish,
            # not by one round trip per future from this loop
            for fut, result in distributed.as_completed(list(futures), with_results=True,
                                                        raise_errors=False):
                if not settle(fut, result):
                    suspects.append(futures[fut])
                fut.release()  # free the worker's copy of the result at once
            # Dask counts a worker's death against every task the worker held, not only
            # the one that killed it: a task lost with KilledWorker may be innocent. Each
            # runs again alone on the cluster, and only one that still kills its workers
            # (allowed-failures + 1 of them) is recorded as failed.
            isolated = True
            for key in suspects:
                fut = submit(key)
                distributed.wait([fut])
                settle(fut, fut.result() if fut.status == "finished" else None)
                fut.release()
        finally:
            # Ctrl-C or an error here: stop the rest; what was written stays written
            pending = [f for f in futures if not f.done()]
            if pending:
                c.cancel(pending)
    return report


# ---------------------------------------------------------------------- command line
def main(args) -> int:
    """``fasthess sweep --grid FILE --store DIR [--scheduler ADDRESS] [--workers N]
    [--no-progress]``. Returns 0 when every configuration run now succeeded, 1 when
    some failed (they are in the store with their errors) or were cancelled by the
    cluster, 2 when Dask is missing or the scheduler unreachable, 130 on Ctrl-C."""
    configs, measure = read_grid(args.grid)
    if args.scheduler and args.workers is not None:
        raise ValueError("--workers sets the size of the local cluster; with --scheduler "
                         "the cluster's own workers are used")
    try:
        distributed = import_distributed()
    except ImportError as exc:
        print(f"fasthess: error: {exc}", file=sys.stderr)
        return 2
    try:
        client = distributed.Client(args.scheduler) if args.scheduler else None
    except (OSError, TimeoutError) as exc:
        print(f"fasthess: error: --scheduler {args.scheduler}: cannot connect: {exc}",
              file=sys.stderr)
        return 2
    progress = False if args.no_progress else None
    names, _ = _check_measures(measure)
    print(f"fasthess sweep: {len(configs)} configurations, measures {', '.join(names)}, "
          f"store {args.store}", file=sys.stderr)
    try:
        report = sweep(configs, measure, args.store, client=client, progress=progress,
                       n_workers=args.workers,
                       rerun_failed=getattr(args, "rerun_failed", False))
    except KeyboardInterrupt:
        print(f"fasthess sweep: interrupted; finished records are in {args.store}, rerun "
              f"the same command to continue", file=sys.stderr)
        return 130
    finally:
        if client is not None:
            client.close()
    print(f"fasthess sweep: {report.n_run} run ({report.n_failed} failed), "
          f"{report.n_skipped} already in the store {args.store}")
    if report.n_cancelled:
        print(f"fasthess sweep: {report.n_cancelled} cancelled by the cluster and not run; "
              f"rerun the same command to run them", file=sys.stderr)
    for cfg, error in report.failed[:10]:
        print(f"  failed {_canonical_json(cfg)}: {error.splitlines()[0]}", file=sys.stderr)
    if len(report.failed) > 10:
        print(f"  ... and {len(report.failed) - 10} more (fasthess.load_sweep lists them)",
              file=sys.stderr)
    return 1 if report.n_failed or report.n_cancelled else 0
