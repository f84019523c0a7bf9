"""Sweeps: many teacher-student configurations measured on Dask, stored as they finish.

A *configuration* is one teacher network and its data; a *measure* is what is
computed for it. :func:`sweep` runs every configuration as one Dask task (a
LocalCluster by default, or any cluster through its client) and writes one record
per configuration to a *store* directory as soon as it finishes. A crash or Ctrl-C
loses nothing that finished, and rerunning the same sweep skips what the store
already holds. :func:`load_sweep` reads a store back.

One module per concern:

=====================================  ==============================================
:mod:`~fasthess.sweeps.configuration`  the configuration grammar, its canonical form,
                                       the ``n_samples`` rule and the seeds
:mod:`~fasthess.sweeps.measures`       the registry of built-in measures
:mod:`~fasthess.sweeps.grid`           grid files (TOML or JSON)
:mod:`~fasthess.sweeps.store`          the store directory, record keys, load_sweep
:mod:`~fasthess.sweeps.task`           one configuration run as one task
:mod:`~fasthess.sweeps.runner`         the Dask runner: :func:`sweep`
:mod:`~fasthess.sweeps.command`        ``fasthess sweep`` as a function
=====================================  ==============================================
"""
from .command import run_sweep_command
from .configuration import measure_seed, normalize_config, resolve_n_samples
from .grid import expand_grid, read_grid
from .measures import MEASURES
from .runner import WORKER_ENV, SweepReport, sweep
from .records import FORMAT_VERSION, record_key
from .store import StoreVersionError, load_sweep
from .task import run_config

__all__ = ["sweep", "load_sweep", "SweepReport", "StoreVersionError", "read_grid",
           "expand_grid", "run_config", "record_key", "normalize_config",
           "resolve_n_samples", "measure_seed", "MEASURES", "FORMAT_VERSION", "WORKER_ENV",
           "run_sweep_command"]
