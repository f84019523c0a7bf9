"""The runner: every configuration of a sweep as one Dask task, each stored as it ends.

``dask[distributed]`` is imported only when a sweep runs (``pip install
fasthess[dist]``).
"""
from __future__ import annotations

import ast
import contextlib
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .. import _config, _io
from .._optional import import_distributed
from .._validation import check_int
from .configuration import check_measures, normalize_config
from .records import key_of, make_record
from .store import Store
from .task import execute

__all__ = ["WORKER_ENV", "SweepReport", "sweep", "MAIN_GUARD_ADVICE"]

#: How to fix a script that starts a sweep's worker processes without a main guard.
MAIN_GUARD_ADVICE = (
    "fasthess.sweep starts worker processes for its LocalCluster, and each new process "
    "imports your script again (Python's 'spawn' start method, which Dask uses): a "
    "script that calls sweep outside an `if __name__ == \"__main__\":` block would start "
    "the sweep again in every worker. Put the call under that guard:\n\n"
    "    if __name__ == \"__main__\":\n"
    "        fh.sweep(configs, measure, store)\n\n"
    "(or pass client= a distributed.Client you created under that guard)")

#: Environment of the default LocalCluster's worker processes. They run one task at
#: a time with one thread: a sweep's parallelism is across configurations, and Numba
#: plus BLAS threads on top would oversubscribe the cores. Set in the worker
#: processes only, never in this one; FASTHESS_NUM_THREADS is the one each task
#: applies.
WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "MKL_NUM_THREADS": "1", "FASTHESS_NUM_THREADS": "1"}


@dataclass
class SweepReport:
    """What :func:`sweep` did.

    Attributes
    ----------
    store : Path
        The store directory.
    keys : list of str
        The store key of each configuration, in the order given (duplicates kept).
    n_run, n_skipped, n_failed : int
        Distinct configurations run now, found already in the store, and run now
        but failed.
    n_cancelled : int
        Tasks cancelled from outside (e.g. ``client.restart()``): not run, not
        recorded; rerunning the sweep runs them.
    n_elsewhere : int
        Configurations claimed by another sweep running on the same store: not run
        here (rerunning once it ends runs any it did not finish).
    failed : list of (dict, str)
        (configuration, error message) of each failure of this run.
    damaged : list of str
        What was wrong with each damaged record found in the store (naming its
        file); those configurations were run again.
    """

    store: Path
    keys: list = field(default_factory=list)
    n_run: int = 0
    n_skipped: int = 0
    n_failed: int = 0
    n_cancelled: int = 0
    n_elsewhere: int = 0
    failed: list = field(default_factory=list)
    damaged: list = field(default_factory=list)


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
                          "distributed.deploy.lost-worker-timeout": _config.LOST_WORKER_TIMEOUT}):
        # the dashboard takes a free port: a fixed one may be taken by another cluster
        cluster = distributed.LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True,
            dashboard_address=":0", env=WORKER_ENV)
        try:
            with distributed.Client(cluster) as c:
                yield c
        finally:
            cluster.close()


class _Run:
    """The tasks of one sweep on one client, and the recording of their outcomes."""

    def __init__(self, client, distributed, store, claims, todo, names, measures, retries,
                 report, bar):
        self.client, self.distributed = client, distributed
        self.store, self.claims = store, claims
        self.todo, self.names, self.measures = todo, names, measures
        self.retries, self.report, self.bar = retries, report, bar
        self.futures = {}

    def submit(self, key):
        # unique task keys: a task of an interrupted sweep may still be cancelling on
        # the scheduler, and a new task under its key would be cancelled with it
        fut = self.client.submit(execute, self.todo[key], self.names, self.measures,
                                 retries=self.retries,
                                 key=f"fasthess-sweep-{key}-{uuid.uuid4().hex[:8]}")
        self.futures[fut] = key
        return fut

    def run(self):
        """Run every task; those lost with KilledWorker run again alone at the end."""
        for key in self.todo:
            self.submit(key)
        suspects = []
        # with_results: results are fetched in the background as tasks finish, not by
        # one round trip per future from this loop
        for fut, result in self.distributed.as_completed(list(self.futures),
                                                         with_results=True,
                                                         raise_errors=False):
            if self._killed_worker(fut):
                suspects.append(self.futures[fut])
            else:
                self.settle(fut, result)
            fut.release()  # free the worker's copy of the result at once
        # Dask counts a worker's death against every task the worker held, not only the
        # one that killed it: a task lost with KilledWorker may be innocent. Each runs
        # again alone on the cluster, and is recorded as failed only if it still kills
        # its workers (allowed-failures + 1 of them) on its own.
        for key in suspects:
            fut = self.submit(key)
            self.distributed.wait([fut])
            self.settle(fut, fut.result() if fut.status == "finished" else None)
            fut.release()

    def _killed_worker(self, fut) -> bool:
        return (fut.status == "error"
                and isinstance(fut.exception(), self.distributed.KilledWorker))

    def settle(self, fut, result):
        """Record the outcome of a finished task."""
        key = self.futures[fut]
        report = self.report
        if fut.status == "cancelled":  # by someone else (a restart): no record
            report.n_cancelled += 1
            self.claims.release(key)
            return
        if fut.status != "finished":  # the task was lost (its workers kept dying)
            exc = fut.exception()  # `result` holds it in a version-dependent form
            result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                      "traceback": None, "scalars": {}, "arrays": {}, "timings": {},
                      "worker": None, "host": None, "pid": None}
        self.store.write(make_record(key, self.todo[key], self.names, result),
                         result["arrays"])
        self.claims.release(key)
        report.n_run += 1
        if result["status"] == "failed":
            report.n_failed += 1
            report.failed.append((self.todo[key], result["error"]))
        self.bar.update(1)

    def cancel_pending(self):
        pending = [f for f in self.futures if not f.done()]
        if pending:
            self.client.cancel(pending)


def sweep(configs, measure, store, client=None, progress=None, retries=2, *,
          n_workers=None, rerun_failed=False) -> SweepReport:
    """Measure every configuration as a Dask task; store each record as it finishes.

    A crash or Ctrl-C loses nothing that finished, and rerunning the same sweep skips
    what the store already holds, runs again what it holds damaged, and leaves to
    another sweep running on the same store the configurations that sweep claimed
    (:mod:`fasthess.sweeps.store`).

    Parameters
    ----------
    configs : iterable of dict
        Configurations (:mod:`fasthess.sweeps.configuration`): ``activation``,
        ``n_in`` and ``n_hidden`` (or ``n``), optional ``n_out``, ``n_samples``,
        ``seed`` and measure parameters.
    measure : str, function or list of them
        Names from :data:`fasthess.sweeps.MEASURES`, or module-level functions
        ``f(net, X, seed) -> dict`` of scalars and numeric arrays.
    store : str or path
        Results directory (:mod:`fasthess.sweeps.store`); created if needed. Keys
        already in it are skipped.
    client : distributed.Client, optional
        Run on this client's cluster. Default: a new LocalCluster of ``n_workers``
        processes with one thread each (and one Numba/BLAS thread), its dashboard on
        a free port, closed at the end. It spawns processes, which import the calling
        script again, so a script must call this under an
        ``if __name__ == "__main__":`` guard: without one, ``RuntimeError`` says so
        before any process starts.
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
        Workers of the default LocalCluster (default ``_config.DEFAULT_WORKERS``);
        not allowed with ``client``.
    rerun_failed : bool, default False
        Also rerun configurations whose stored record is "failed".

    Returns
    -------
    SweepReport
        What was run, skipped and failed, and the key of each configuration.

    Raises
    ------
    StoreVersionError
        If ``store`` was written by another store format version.
    ImportError
        If dask[distributed] is not installed (``pip install fasthess[dist]``).
    RuntimeError
        Without ``client``, when called from a script's top level outside an
        ``if __name__ == "__main__":`` block (:data:`MAIN_GUARD_ADVICE`).
    OSError
        If the store cannot be created or written (read-only, disk full, a file in
        the way); the error names the path. Records written before stay whole.

    Examples
    --------
    A measure is a module-level function (or a built-in name); here a tiny one, on
    an in-process cluster:

    >>> import shutil, tempfile
    >>> from distributed import Client
    >>> from fasthess.sweeps import load_sweep, sweep
    >>> def n_rows(net, X, seed):
    ...     return {"n_rows": X.shape[0]}
    >>> store = tempfile.mkdtemp()
    >>> configs = [{"activation": "erf", "n": n} for n in (2, 3)]
    >>> with Client(processes=False, n_workers=1, threads_per_worker=1,
    ...             dashboard_address=":0") as client:
    ...     report = sweep(configs, n_rows, store, client=client, progress=False)
    ...     again = sweep(configs, n_rows, store, client=client, progress=False)
    >>> (report.n_run, report.n_failed), (again.n_run, again.n_skipped)
    ((2, 0), (0, 2))
    >>> sorted(record["n_rows"] for record in load_sweep(store))  # P = 2D
    [12, 24]
    >>> shutil.rmtree(store)
    """
    names, measures = check_measures(measure)
    retries = check_int(retries, "retries", minimum=0)
    if client is not None and n_workers is not None:
        raise ValueError("n_workers applies to the default LocalCluster; with client= the "
                         "cluster's own workers are used")
    n_workers = check_int(_config.DEFAULT_WORKERS if n_workers is None else n_workers,
                          "n_workers", minimum=1)
    if client is None:
        _check_main_guard()
    canons = [normalize_config(c, measure) for c in configs]
    distributed = import_distributed()  # before touching the disk
    report = SweepReport(Path(store), [key_of(c, names) for c in canons])
    st = Store(store, create=True)
    with st.claims() as claims:
        todo = _claim_todo(st, claims, report, canons, rerun_failed)
        if not todo:
            return report
        with _cluster_client(client, n_workers, retries) as c, \
                _io.progress(total=len(todo), desc="fasthess sweep", enabled=progress,
                             unit="config", postfix=f"{report.n_skipped} in store") as bar:
            run = _Run(c, distributed, st, claims, todo, names, measures, retries, report,
                       bar)
            try:
                run.run()
            finally:
                # Ctrl-C or an error here: stop the rest; what was written stays written
                # (and leaving `claims` gives up the keys not run)
                run.cancel_pending()
    return report


def _check_main_guard() -> None:
    """Refuse, with :data:`MAIN_GUARD_ADVICE`, a sweep that its worker processes would rerun.

    Two cases: this process is a worker re-importing the script (``__main__`` is then
    named ``__mp_main__``); or this is the script, and the module-level line that led
    here is outside an ``if __name__ == "__main__":`` block (read from its source).
    Interactive sessions, notebooks and ``python -c`` have no script file: nothing to check.
    """
    main = sys.modules.get("__main__")
    if getattr(main, "__name__", None) == "__mp_main__":
        raise RuntimeError(MAIN_GUARD_ADVICE)
    path = getattr(main, "__file__", None)
    spec = getattr(main, "__spec__", None)
    if not path or (spec is not None and spec.name.endswith(".__main__")):
        return  # multiprocessing does not re-run a package's __main__ (python -m pkg)
    frame, line = sys._getframe(1), None
    while frame is not None:  # the outermost line of the script's own top level
        if frame.f_globals is vars(main) and frame.f_code.co_name == "<module>":
            line = frame.f_lineno
        frame = frame.f_back
    if line is None:
        return  # not called from the script's top level (a thread, an embedded call)
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return  # no readable source: nothing to tell
    for node in ast.walk(tree):
        if (isinstance(node, ast.If) and _is_main_test(node.test)
                and node.body[0].lineno <= line <= (node.body[-1].end_lineno or line)):
            return
    raise RuntimeError(MAIN_GUARD_ADVICE)


def _is_main_test(test) -> bool:
    """Whether ``test`` is ``__name__ == "__main__"`` (either way round)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    values = [s.value for s in sides if isinstance(s, ast.Constant)]
    return names == ["__name__"] and values == ["__main__"]


def _claim_todo(st, claims, report, canons, rerun_failed) -> dict:
    """``{key: canonical config}`` to run now, each claimed for this sweep."""

    def done(status):
        return status == "ok" or (status == "failed" and not rerun_failed)

    todo = {}
    distinct = dict(zip(report.keys, canons))
    for key, canon in distinct.items():
        if done(st.state(key)[0]):
            continue
        if not claims.claim(key):  # another sweep on this store is running it
            report.n_elsewhere += 1
            continue
        status, damage = st.state(key)  # again: another sweep may have finished it since
        if done(status):
            claims.release(key)
            continue
        if status == "damaged":
            report.damaged.append(damage)
        todo[key] = canon
    report.n_skipped = len(distinct) - len(todo) - report.n_elsewhere
    return todo
