"""File and terminal helpers shared by the figures and the sweeps (one concept, one place).

:func:`atomic_write` writes a file so that an interruption (Ctrl-C, a killed worker,
a power loss) leaves either the old file or the complete new one, never half of one.
:func:`progress` is a tqdm bar when tqdm is installed and a bar is wanted, and a
silent stand-in with the same small interface otherwise.

Nothing here imports tqdm at module import: ``import fasthess`` must not load it.
"""
from __future__ import annotations

import contextlib
import os
import sys
import uuid
from pathlib import Path

from ._validation import check_progress

__all__ = ["TMP_PREFIX", "atomic_write", "progress"]

#: Name prefix of the temporary files of :func:`atomic_write` (readers skip them,
#: cleaners glob for them).
TMP_PREFIX = ".tmp-"


def _fsync_dir(path) -> None:
    """Make a rename in directory ``path`` durable (POSIX).

    A no-op where directories cannot be opened or synced (e.g. Windows).
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, write, sync_dir: bool = True) -> None:
    """Write ``path`` through ``write(fileobj)``, all or nothing.

    The bytes go to a temporary file beside ``path`` (same directory, so the rename
    cannot cross file systems), which is flushed, fsynced and renamed over ``path``
    with :func:`os.replace`.

    Parameters
    ----------
    path : str or Path
        The final file; its directory must exist.
    write : callable
        ``write(f)`` writes the content to the binary file object ``f``.
    sync_dir : bool, default True
        Also fsync the directory, so that the rename itself survives a power loss.
        Several files renamed in one directory need this only after the last one.

    Notes
    -----
    The file gets mode ``0o666 & ~umask``, like any file the process creates
    (:func:`tempfile.mkstemp` would make it ``0o600``, unreadable by a group sharing
    the directory). The temporary file is named ``.tmp-<stem>.<pid>.<random><suffix>``
    (:data:`TMP_PREFIX`) and is removed if ``write`` raises; one left behind by a
    killed process can be recognised by that prefix.
    """
    path = Path(path)
    tmp = path.parent / (f"{TMP_PREFIX}{path.stem}.{os.getpid()}."
                         f"{uuid.uuid4().hex[:8]}{path.suffix}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt too: never leave the temporary behind
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync_dir:
        _fsync_dir(path.parent)


class _NoBar:
    """What :func:`progress` returns when there is no bar: iterates, updates nothing."""

    def __init__(self, iterable):
        self._iterable = iterable

    def __iter__(self):
        return iter(() if self._iterable is None else self._iterable)

    def update(self, n=1):
        pass

    def set_postfix_str(self, s="", refresh=True):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def progress(iterable=None, total=None, desc=None, enabled=None, **tqdm_kwargs):
    """A progress bar on stderr: ``tqdm`` when installed and enabled, else a no-op.

    Parameters
    ----------
    iterable : iterable, optional
        Wrap it: iterating the result iterates it. Omit it for a bar advanced by
        ``update(n)``.
    total : int, optional
        Number of steps expected.
    desc : str, optional
        Label in front of the bar.
    enabled : bool or None
        Show the bar; None (default): only when stderr is a terminal, so logs and
        pipes stay free of bar redraws.
    **tqdm_kwargs
        Passed to ``tqdm`` (``unit``, ``leave``, ``postfix``, ...); ignored without
        a bar.

    Returns
    -------
    tqdm or a stand-in
        Either way it supports iteration (over ``iterable``), ``update(n)``,
        ``set_postfix_str(s)``, ``close()`` and use as a context manager, so callers
        need no branch for the bar-less case.
    """
    enabled = check_progress(enabled)
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return _NoBar(iterable)
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional: no bar rather than no result
        return _NoBar(iterable)
    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, **tqdm_kwargs)
