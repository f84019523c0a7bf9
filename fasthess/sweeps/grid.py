"""Grid files: a sweep's configurations written as one TOML or JSON table.

``fasthess sweep --grid FILE`` reads a TOML (``.toml``) or JSON (``.json``) file
holding one table. ``measure`` (a name or a list) is required. Either a *product
grid*: every configuration key may be a single value or a list, and the sweep is
every combination (``seeds = N`` means seeds 0..N-1)::

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

The configuration keys are those of :mod:`fasthess.sweeps.configuration`. Every
configuration is checked when the file is read, before any work.
"""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

from .. import _config
from .._validation import check_int
from .configuration import check_measures, config_keys, normalize_config
from .measures import REGISTRY

__all__ = ["read_grid", "expand_grid"]



def read_grid(path):
    """Read a grid file (TOML or JSON): returns ``(configs, measure)``.

    See the module docstring for the format. Errors name the file and the key.

    Parameters
    ----------
    path : str or path
        A ``.toml`` or ``.json`` file.

    Returns
    -------
    configs : list of dict
        The configurations, in the grid's order.
    measure : str or list of str
        The grid's ``measure``.

    Examples
    --------
    >>> import os, tempfile
    >>> from fasthess.sweeps import read_grid
    >>> path = os.path.join(tempfile.mkdtemp(), "grid.toml")
    >>> with open(path, "w") as f:
    ...     _ = f.write('measure = "rank"\\nactivation = "erf"\\nn = [3, 4]\\nseeds = 2\\n')
    >>> configs, measure = read_grid(path)
    >>> len(configs), configs[0]
    (4, {'activation': 'erf', 'n': 3, 'seed': 0})
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
    except RecursionError:
        raise ValueError(f"grid: cannot read {path}: it is nested too deeply") from None
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
    """``(configs, measure)`` from a grid table (the parsed content of a grid file).

    Parameters
    ----------
    table : dict
        The grid (see the module docstring).

    Returns
    -------
    configs : list of dict
        The configurations, in the grid's order.
    measure : str or list of str
        The grid's ``measure``.

    Examples
    --------
    >>> from fasthess.sweeps import expand_grid
    >>> configs, _ = expand_grid({"measure": "rank", "activation": ["erf", "relu"], "n": 3})
    >>> configs
    [{'activation': 'erf', 'n': 3}, {'activation': 'relu', 'n': 3}]
    """
    try:
        return _expand(table)
    except RecursionError:  # a value nested a thousand deep, reached by a check or repr
        raise ValueError("a value of the grid is nested too deeply") from None


def _expand(table):
    if not isinstance(table, dict):
        raise TypeError(f"the grid must be a table (a dict), got {type(table).__name__}")
    table = dict(table)
    if "measure" not in table:
        raise ValueError(f"missing key 'measure' (one of {', '.join(REGISTRY)}, or a list)")
    measure = table.pop("measure")
    names, _ = check_measures(measure)
    seeds = table.pop("seeds", None)
    if seeds is not None:
        if "seed" in table:
            raise ValueError("give either 'seeds' or 'seed', not both")
        if not isinstance(seeds, list):
            seeds = range(check_int(seeds, "seeds", minimum=0))  # not expanded yet
    if "configs" in table:
        explicit = table.pop("configs")
        if not isinstance(explicit, list) or not all(isinstance(c, dict) for c in explicit):
            raise TypeError("'configs' must be a list of tables")
        listed = [k for k, v in table.items() if isinstance(v, list)]
        if listed:
            raise ValueError(f"with 'configs', the other keys are single-valued defaults; "
                             f"{listed} are lists")
        _check_count(len(explicit) * (1 if seeds is None else len(seeds)), seeds)
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
        allowed = config_keys()
        order = [k for k in allowed if k in table]
        unknown = sorted(set(table) - set(order))
        if unknown:
            raise ValueError(f"unknown key(s) {unknown}; allowed: measure, configs, seeds, "
                             f"{', '.join(allowed)}")
        axes = [table[k] if isinstance(table[k], (list, range)) else [table[k]]
                for k in order]
        empty = [k for k, a in zip(order, axes) if not a]
        if empty:
            raise ValueError(f"empty list for {empty}")
        _check_count(math.prod(len(a) for a in axes), seeds)
        configs = [dict(zip(order, values)) for values in itertools.product(*axes)]
    for c in configs:
        normalize_config(c, names)  # fail on the first bad entry, before any work
    return configs, measure


def _check_count(count: int, seeds) -> None:
    """Refuse a grid of more than ``_config.MAX_GRID_CONFIGS`` configurations, before
    expanding it."""
    if count > _config.MAX_GRID_CONFIGS:
        of_seeds = f" ({len(seeds)} seeds)" if seeds is not None else ""
        raise ValueError(f"the grid has {count} configurations{of_seeds}, more than the "
                         f"{_config.MAX_GRID_CONFIGS} one sweep takes; split it into several grids")
