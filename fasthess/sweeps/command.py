"""``fasthess sweep``: what the command does, as a function of keyword arguments.

The command line itself (argparse) is :mod:`fasthess.cli`'s; this module prints the
summary and turns outcomes into exit codes.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .._optional import import_distributed
from .configuration import check_measures
from .grid import read_grid
from .runner import sweep
from .records import canonical_json
from .store import Store

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
        Dask is missing, the scheduler unreachable, or the store cannot be created or
        written (one line on stderr names the path and the cause); 130 on Ctrl-C.

    Raises
    ------
    ValueError, TypeError
        A bad grid file or argument (the CLI prints the message and exits with 2).

    Examples
    --------
    On a scheduler running in this process (a real one would be ``tcp://HOST:8786``):

    >>> import os, shutil, tempfile
    >>> from distributed import Client
    >>> from fasthess.sweeps import load_sweep, run_sweep_command
    >>> tmp = tempfile.mkdtemp()
    >>> grid, store = os.path.join(tmp, "grid.toml"), os.path.join(tmp, "store")
    >>> with open(grid, "w") as f:
    ...     _ = f.write('measure = "rank"\\nactivation = ["erf", "linear"]\\nn = 2\\n')
    >>> with Client(processes=False, n_workers=1, threads_per_worker=1,
    ...             dashboard_address=":0") as client:
    ...     run_sweep_command(grid, store, scheduler=client.scheduler.address,
    ...                       progress=False)  # doctest: +ELLIPSIS
    fasthess sweep: 2 run (0 failed), 0 already in the store ...store
    0
    >>> sorted(record["status"] for record in load_sweep(store))
    ['ok', 'ok']
    >>> shutil.rmtree(tmp)
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
    try:
        try:
            Store(store, create=True)  # a store that cannot be made: one line, no output
        except OSError as exc:
            print(f"fasthess: error: {_os_error_line(exc, store)}", file=sys.stderr)
            return 2
        print(f"fasthess sweep: {len(configs)} configurations, measures "
              f"{', '.join(names)}, store {store}", file=sys.stderr)
        report = sweep(configs, measure, store, client=client, progress=progress,
                       n_workers=workers, rerun_failed=rerun_failed)
    except KeyboardInterrupt:
        print(f"fasthess sweep: interrupted; finished records are in {store}, rerun "
              f"the same command to continue", file=sys.stderr)
        return 130
    except OSError as exc:  # disk full or the store made read-only while it ran
        print(f"fasthess: error: {_os_error_line(exc, store)}", file=sys.stderr)
        return 2
    finally:
        if client is not None:
            client.close()
    print(f"fasthess sweep: {report.n_run} run ({report.n_failed} failed), "
          f"{report.n_skipped} already in the store {store}")
    if report.damaged:
        print(f"fasthess sweep: {len(report.damaged)} damaged record(s) were run again: "
              f"{report.damaged[0]}" + (" ..." if len(report.damaged) > 1 else ""),
              file=sys.stderr)
    if report.n_elsewhere:
        print(f"fasthess sweep: {report.n_elsewhere} left to another sweep running on this "
              f"store; rerun the same command after it ends to run any it did not finish",
              file=sys.stderr)
    if report.n_cancelled:
        print(f"fasthess sweep: {report.n_cancelled} cancelled by the cluster and not run; "
              f"rerun the same command to run them", file=sys.stderr)
    for cfg, error in report.failed[:10]:
        print(f"  failed {canonical_json(cfg)}: {error.splitlines()[0]}", file=sys.stderr)
    if len(report.failed) > 10:
        print(f"  ... and {len(report.failed) - 10} more (fasthess.load_sweep lists them)",
              file=sys.stderr)
    return 1 if report.n_failed or report.n_cancelled else 0


def _os_error_line(exc: OSError, store) -> str:
    """``exc`` in one line: the path and the cause, and the store when it is in it."""
    cause = exc.strerror or str(exc) or type(exc).__name__
    path = exc.filename
    if path is None:
        return f"{type(exc).__name__}: {cause}"
    if Path(path) == Path(store):
        return f"store {store}: {cause}"
    if Path(store) in Path(path).parents:
        return f"store {store}: {path}: {cause}"
    return f"{path}: {cause}"
