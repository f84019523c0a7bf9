"""One configuration as one task: its teacher and data made concrete, its measures run.

:func:`execute` is the body of a sweep's Dask task and never raises for a
measurement error: the error becomes the configuration's failed record, and the
sweep goes on. :func:`run_config` runs it in this process, without Dask or a store.
"""
from __future__ import annotations

import contextlib
import numbers
import os
import socket
import sys
import time
import traceback

import numpy as np

from .configuration import (build_activation, check_measures, data_rng, measure_seed,
                            normalize_config, resolve_n_samples, teacher_rng)
from .measures import REGISTRY
from .store import flatten, key_of, make_record

__all__ = ["Problem", "execute", "run_config"]


class Problem:
    """A canonical configuration made concrete: teacher, data, and per-measure seeds.

    Parameters
    ----------
    config : dict
        A canonical configuration (:func:`fasthess.sweeps.normalize_config`).

    Attributes
    ----------
    config : dict
    net : TwoLayerNet
        The teacher.
    n_samples : int
        P.
    X : ndarray of shape (P, n_in)
        The inputs.
    """

    def __init__(self, config):
        from ..data import gaussian_inputs
        from ..network import TwoLayerNet

        self.config = config
        self._seed = config["seed"]
        self.net = TwoLayerNet.random(config["n_in"], config["n_hidden"], config["n_out"],
                                      activation=build_activation(config["activation"]),
                                      rng=teacher_rng(self._seed))
        self.n_samples = resolve_n_samples(config["n_samples"], self.net.n_params)
        self.X = gaussian_inputs(self.n_samples, config["n_in"], rng=data_rng(self._seed))
        self._eigenvalues = None

    def seed_for(self, name: str) -> int:
        """The seed of measure ``name`` (:func:`fasthess.sweeps.measure_seed`)."""
        return measure_seed(self._seed, name)

    def eigenvalues(self):
        """All eigenvalues of the Hessian, computed once for every measure that asks."""
        if self._eigenvalues is None:
            from ..spectrum import eigenvalues

            self._eigenvalues = eigenvalues(self.net, self.X, method="auto")
        return self._eigenvalues


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
    from .._runtime import threads

    return threads(int(n))


def execute(canon: dict, names, measures) -> dict:
    """Run one canonical configuration; a measurement error is returned, not raised.

    Parameters
    ----------
    canon : dict
        A canonical configuration.
    names, measures : list
        From :func:`fasthess.sweeps.configuration.check_measures`.

    Returns
    -------
    dict
        ``status`` ("ok" or "failed"), ``error``, ``traceback``, ``scalars``,
        ``arrays``, ``timings`` (seconds), ``worker``, ``host``, ``pid``.
    """
    with _task_threads():
        start = time.perf_counter()
        scalars, arrays, timings = {}, {}, {}
        status, error, tb = "ok", None, None
        try:
            t0 = time.perf_counter()
            problem = Problem(canon)
            scalars.update(D=problem.net.n_params, P=problem.n_samples)
            timings["setup_s"] = time.perf_counter() - t0
            for name, measure in zip(names, measures):
                t0 = time.perf_counter()
                if isinstance(measure, str):
                    s, a = REGISTRY[measure].function(problem)
                else:
                    out = measure(problem.net, problem.X, problem.seed_for(name))
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

    Parameters
    ----------
    config : dict
        A configuration (:mod:`fasthess.sweeps.configuration`).
    measure : str, callable or list of them
        Built-in measure names or module-level functions ``f(net, X, seed) -> dict``.

    Returns
    -------
    dict
        What :func:`fasthess.sweeps.load_sweep` returns for it: configuration keys,
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
    names, measures = check_measures(measure)
    canon = normalize_config(config, measure)
    result = execute(canon, names, measures)
    return flatten(make_record(key_of(canon, names), canon, names, result), result["arrays"])
