"""``fasthess sweep``: what the command does, as a function of keyword arguments.

The command line itself (argparse) is :mod:`fasthess.cli`'s; this module prints the
summary and turns outcomes into exit codes.
"""
from __future__ import annotations

import sys

from .._optional import import_distributed
from .configuration import check_measures
from .grid import read_grid
from .runner import sweep
from .store import canonical_json

__all__ = ["run_sweep_command"]


def run_sweep_command(grid, store, *, scheduler=None, workers=None, rerun_failed=False,
                      progress=None) -> int:
    """Run the sweep of a grid file into a store, as ``fasthess sweep`` does.

    Parameters
    ----------
    grid : str or path
        A grid file (:mod:`fasthess.sweeps.grid`).
    store : str or path
        The store directory.
    scheduler : str, optional
        A Dask scheduler address; default a LocalCluster on this machine.
    workers : int, optional
        Workers of that LocalCluster; not allowed with ``scheduler``.
    rerun_failed : bool, default False
        Also rerun configurations recorded as failed.
    progress : bool, optional
        Show a progress bar; default only when stderr is a terminal.

    Returns
    -------
    int
        0 when every configuration run now succeeded; 1 when some failed (they are
        in the store with their errors) or were cancelled by the cluster; 2 when
        Dask is missing or the scheduler unreachable; 130 on Ctrl-C.

    Raises
    ------
    ValueError, TypeError
        A bad grid file or argument (the CLI prints the message and exits with 2).
    """
    configs, measure = read_grid(grid)
    if scheduler and workers is not None:
        raise ValueError("--workers sets the size of the local cluster; with --scheduler "
                         "the cluster's own workers are used")
    try:
        distributed = import_distributed()
    except ImportError as exc:
        print(f"fasthess: error: {exc}", file=sys.stderr)
        return 2
    try:
        client = distributed.Client(scheduler) if scheduler else None
    except (OSError, TimeoutError) as exc:
        print(f"fasthess: error: --scheduler {scheduler}: cannot connect: {exc}",
              file=sys.stderr)
        return 2
    names, _ = check_measures(measure)
    print(f"fasthess sweep: {len(configs)} configurations, measures {', '.join(names)}, "
          f"store {store}", file=sys.stderr)
    try:
        report = sweep(configs, measure, store, client=client, progress=progress,
                       n_workers=workers, rerun_failed=rerun_failed)
    except KeyboardInterrupt:
        print(f"fasthess sweep: interrupted; finished records are in {store}, rerun "
              f"the same command to continue", file=sys.stderr)
        return 130
    finally:
        if client is not None:
            client.close()
    print(f"fasthess sweep: {report.n_run} run ({report.n_failed} failed), "
          f"{report.n_skipped} already in the store {store}")
    if report.n_cancelled:
        print(f"fasthess sweep: {report.n_cancelled} cancelled by the cluster and not run; "
              f"rerun the same command to run them", file=sys.stderr)
    for cfg, error in report.failed[:10]:
        print(f"  failed {canonical_json(cfg)}: {error.splitlines()[0]}", file=sys.stderr)
    if len(report.failed) > 10:
        print(f"  ... and {len(report.failed) - 10} more (fasthess.load_sweep lists them)",
              file=sys.stderr)
    return 1 if report.n_failed or report.n_cancelled else 0
