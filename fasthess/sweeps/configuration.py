"""Configurations: the grammar of one teacher-student configuration of a sweep.

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
measure parameters        ``k``, ``lr``, ...: see :mod:`fasthess.sweeps.measures`
========================  ============================================================

A measure parameter may only be given with its measure. :func:`normalize_config`
turns a configuration into its canonical form (types checked, defaults filled in,
one spelling), from which the store key is computed: two spellings of one
configuration are one record.

A configuration is reproducible from its seed alone: the teacher, the data and each
measure's randomness come from ``numpy.random.SeedSequence(seed)`` with fixed spawn
keys (teacher ``(0,)``, data ``(1,)``, measure ``(2, crc32(name))``), whichever worker
runs it. The same seed gives the same teacher weights and inputs for every activation.

A *measure* is a built-in name (:data:`fasthess.sweeps.measures.MEASURES`) or a
module-level function ``f(net, X, seed) -> dict`` of scalars and arrays; its
``name`` attribute, else ``"module:qualname"``, identifies it in the store.
"""
from __future__ import annotations

import math
import numbers
import re
import zlib

import numpy as np

from .._validation import check_int, check_real
from .measures import REGISTRY

__all__ = ["BASE_DEFAULTS", "config_keys", "resolve_n_samples", "normalize_config",
           "canonical_activation", "build_activation", "check_measures",
           "measure_seed", "teacher_rng", "data_rng"]

#: Defaults of the configuration keys that are not measure parameters.
BASE_DEFAULTS = {"n_out": 1, "n_samples": "2D", "seed": 0}
_BASE_KEYS = ("activation", "n", "n_in", "n_hidden", "n_out", "n_samples", "seed")
_SIZE_KEYS = ("n_in", "n_hidden", "n_out")


def _parameters() -> dict:
    """Every measure parameter of the registry, read now (a measure may be added)."""
    parameters = {}
    for m in REGISTRY.values():
        for key, parameter in m.parameters.items():
            if key in _BASE_KEYS:
                raise ValueError(f"measure {m.name!r}: parameter {key!r} shadows the "
                                 f"configuration key {key!r}")
            parameters[key] = parameter
    return parameters


def config_keys() -> tuple:
    """Every key a configuration may hold, in the order a product grid iterates them.

    Examples
    --------
    >>> from fasthess.sweeps.configuration import config_keys
    >>> config_keys()[:7]
    ('activation', 'n', 'n_in', 'n_hidden', 'n_out', 'n_samples', 'seed')
    """
    return (*_BASE_KEYS, *_parameters())


_NSAMPLES_RE = re.compile(
    r"^\s*(?:(?P<a>\d+(?:\.\d*)?|\.\d+)\s*\*?\s*)?D\s*(?:/\s*(?P<b>\d+(?:\.\d*)?|\.\d+))?"
    r"\s*(?:(?P<sign>[+-])\s*(?P<c>\d+))?\s*$")


def resolve_n_samples(n_samples, n_params: int) -> int:
    """P from an int or a string relative to D (``"2D"``, ``"D/4"``, ``"2D+20"``).

    Parameters
    ----------
    n_samples : int or str
        An int, or a string ``[a][*]D[/b][+c or -c]``, giving ``ceil(a * D / b) + c``.
    n_params : int
        D, the number of parameters of the network.

    Returns
    -------
    int
        P. It is not range-checked here: a P < 1 is refused where the data are drawn.

    Examples
    --------
    >>> from fasthess.sweeps import resolve_n_samples
    >>> resolve_n_samples("2D+20", 30), resolve_n_samples("D/4", 30), resolve_n_samples(7, 30)
    (80, 8, 7)
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


def canonical_activation(spec):
    """The canonical JSON form of an activation spec, checked without building it."""
    from ..activations import ACTIVATION_NAMES

    if isinstance(spec, str):
        if spec.lower() not in ACTIVATION_NAMES:
            raise ValueError(f"activation: unknown name {spec!r}; expected one of "
                             f"{', '.join(ACTIVATION_NAMES)}, or a table "
                             f"{{polynomial = [c0, c1, ...]}} or {{quadratic = eps}}")
        return spec.lower()
    if isinstance(spec, dict) and len(spec) == 1:
        (kind, value), = spec.items()
        if kind == "polynomial" and isinstance(value, (list, tuple)) and value:
            return {"polynomial": [check_real(c, "activation.polynomial") for c in value]}
        if kind == "quadratic":
            return {"quadratic": check_real(value, "activation.quadratic")}
    raise ValueError(
        f"activation must be a name, {{'polynomial': [c0, c1, ...]}} or "
        f"{{'quadratic': eps}}, got {_short_repr(spec)}")


def build_activation(spec):
    """The activation of a canonical spec: a name, a Polynomial or a Quadratic."""
    from ..activations import Polynomial, Quadratic

    if isinstance(spec, str):
        return spec
    if "polynomial" in spec:
        return Polynomial(spec["polynomial"])
    return Quadratic(spec["quadratic"])


def _short_repr(value, limit: int = 200) -> str:
    """repr(value) cut to ``limit`` characters (a grid value may be huge or deep)."""
    try:
        text = repr(value)
    except RecursionError:
        return f"<{type(value).__name__} nested too deeply to show>"
    return text if len(text) <= limit else text[:limit] + "..."


def _measure_name(m) -> str:
    if isinstance(m, str):
        if m not in REGISTRY:
            raise ValueError(f"measure: unknown name {m!r}; expected one of "
                             f"{', '.join(REGISTRY)}, or a module-level function")
        return m
    if callable(m):
        name = getattr(m, "name", None) or (
            f"{getattr(m, '__module__', '?')}:{getattr(m, '__qualname__', '?')}")
        if "<" in name:  # a lambda or a nested function: no stable name for the key
            raise ValueError(
                f"measure: a function must be defined at module level (or have a 'name' "
                f"attribute) so that its name identifies it in the store, got {name!r}")
        return name
    raise TypeError(f"measure must be a name ({', '.join(REGISTRY)}), a function, or a "
                    f"list of them, got {type(m).__name__}")


def check_measures(measure):
    """``(names, measures)`` in canonical (sorted) order, duplicates dropped.

    Parameters
    ----------
    measure : str, callable or list of them
        Built-in measure names and module-level functions.

    Returns
    -------
    names : list of str
        Sorted names: the order measures run in and are keyed by.
    measures : list of str or callable
        The measure given for each name.

    Examples
    --------
    >>> from fasthess.sweeps.configuration import check_measures
    >>> check_measures(["rank", "eigenvalues", "rank"])
    (['eigenvalues', 'rank'], ['eigenvalues', 'rank'])
    """
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

    Parameters
    ----------
    config : dict
        A configuration (see the module docstring).
    measure : str, callable or list of them
        The measures it is run with: they decide which parameters it takes.

    Returns
    -------
    dict
        The canonical configuration, keys sorted.

    Examples
    --------
    >>> from fasthess.sweeps import normalize_config
    >>> normalize_config({"activation": "ERF", "n": 3, "n_samples": "2 * D"}, "rank")
    {'activation': 'erf', 'n_hidden': 3, 'n_in': 3, 'n_out': 1, 'n_samples': '2D', 'seed': 0}
    """
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    allowed = config_keys()
    unknown = sorted(set(config) - set(allowed), key=str)
    if unknown:
        raise ValueError(f"config: unknown key(s) {', '.join(map(repr, unknown))}; "
                         f"allowed: {', '.join(allowed)}")
    names, _ = check_measures(measure)
    cfg = dict(config)
    if "n" in cfg:
        if "n_in" in cfg or "n_hidden" in cfg:
            raise ValueError("config: give either n (Ni = Nh = n) or n_in and n_hidden, "
                             f"not both; got {_short_repr(config)}")
        cfg["n_in"] = cfg["n_hidden"] = cfg.pop("n")
    for key in ("activation", "n_in", "n_hidden"):
        if key not in cfg:
            raise ValueError(f"config: missing key {key!r} in {_short_repr(config)}")
    out = {"activation": canonical_activation(cfg["activation"])}
    for key, default in BASE_DEFAULTS.items():
        cfg.setdefault(key, default)
    for key in _SIZE_KEYS:
        out[key] = check_int(cfg[key], key)
    out["seed"] = check_int(cfg["seed"], "seed", minimum=0)
    n_samples = cfg["n_samples"]
    resolve_n_samples(n_samples, 1)  # grammar only; P itself is checked on the worker
    # "2 * D" and "2D" are one configuration: one spelling in the key
    out["n_samples"] = (re.sub(r"[\s*]", "", n_samples) if isinstance(n_samples, str)
                        else int(n_samples))
    wanted = {key for name in names if name in REGISTRY for key in REGISTRY[name].parameters}
    for key, parameter in _parameters().items():
        if key in cfg and key not in wanted:
            owner = next(m.name for m in REGISTRY.values() if key in m.parameters)
            raise ValueError(f"config: {key!r} is a parameter of measure {owner!r}, "
                             f"which this sweep does not run (measures: {names})")
        if key in wanted:
            value = cfg.get(key, parameter.default)
            out[key] = (check_int(value, key) if parameter.kind is int
                        else check_real(value, key))
    return dict(sorted(out.items()))


def measure_seed(seed: int, name: str) -> int:
    """The int seed measure ``name`` gets in the configuration with ``seed``.

    Parameters
    ----------
    seed : int
        The configuration's seed.
    name : str
        The measure's name.

    Returns
    -------
    int
        A seed drawn from ``SeedSequence(seed, spawn_key=(2, crc32(name)))``.

    Examples
    --------
    >>> from fasthess.sweeps import measure_seed
    >>> measure_seed(0, "density") == measure_seed(0, "density") != measure_seed(1, "density")
    True
    """
    ss = np.random.SeedSequence(seed, spawn_key=(2, zlib.crc32(name.encode())))
    return int(ss.generate_state(1)[0])


def teacher_rng(seed: int) -> np.random.Generator:
    """The generator of the teacher's weights of the configuration with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))


def data_rng(seed: int) -> np.random.Generator:
    """The generator of the inputs of the configuration with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
