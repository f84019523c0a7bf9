"""Claims: which running sweep computes which key of a store, so concurrent sweeps skip it.

Sweeps running at once on one store do not redo each other's
work: before running a key, a sweep *claims* it by creating ``claims/<key>.claim``
exclusively, naming its owner, and holds an advisory lock (``flock``) on
``claims/<owner>.owner`` while it runs; the operating system drops the lock when
the process ends, however it ends, so a claim whose owner's lock is free is stale
and is taken over. Where ``fcntl`` is missing (Windows) there are no claims:
concurrent sweeps may then run a configuration twice, which is harmless (records
are replaced atomically, and both runs compute the same result from the seed).
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import uuid
from pathlib import Path

from .. import _io
from .files import DamagedRecordError, create_exclusive, read_regular

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, no claims
    fcntl = None

__all__ = ["Claims"]

# An owner id has the form of a store key: 32 hex digits.
_OWNER_RE = re.compile(r"^[0-9a-f]{32}$")


class Claims:
    """The keys one sweep is running, claimed so that concurrent sweeps skip them.

    Use it as a context manager: entering takes this sweep's owner lock, leaving
    releases every claim still held and the lock. See the module docstring.

    Parameters
    ----------
    directory : Path
        The store's ``claims/``.
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.owner = uuid.uuid4().hex
        self.held = set()
        self.enabled = fcntl is not None
        self._lock_fd = None

    def __enter__(self):
        if not self.enabled:
            return self
        # locked under a temporary name, then renamed: a lock file visible under its
        # final name is always locked while its owner lives
        tmp = self.directory / f"{_io.TMP_PREFIX}{self.owner}.owner"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:  # a file system without locks (ENOLCK, ENOTSUP, ...)
            os.close(fd)
            os.unlink(tmp)
            if exc.errno in (errno.EBADF, errno.EINTR):
                raise
            self.enabled = False  # no claims: duplicates are harmless, only wasted work
            return self
        os.replace(tmp, self._owner_path(self.owner))
        self._lock_fd = fd
        self._remove_dead_owners()
        return self

    def __exit__(self, *exc):
        for key in list(self.held):
            self.release(key)
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._owner_path(self.owner))
            os.close(self._lock_fd)  # drops the lock
            self._lock_fd = None
        return False

    def _owner_path(self, owner: str) -> Path:
        return self.directory / f"{owner}.owner"

    def _claim_path(self, key: str) -> Path:
        return self.directory / f"{key}.claim"

    def _alive(self, owner: str) -> bool:
        """Whether the sweep ``owner`` still runs: its lock is held."""
        if not _OWNER_RE.match(owner):  # an owner id has the form of a key
            return False
        try:
            fd = os.open(self._owner_path(owner), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:  # its owner file is gone: it ended
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def _remove_dead_owners(self):
        for path in self.directory.glob("*.owner"):
            owner = path.stem
            if owner != self.owner and not self._alive(owner):
                with contextlib.suppress(OSError):
                    path.unlink()

    def _owner_of(self, key: str):
        try:
            return read_regular(self._claim_path(key)).decode("ascii", "replace").strip()
        except FileNotFoundError:
            return None
        except (OSError, DamagedRecordError):
            return ""

    def claim(self, key: str) -> bool:
        """Claim ``key`` for this sweep: False if a live sweep holds it."""
        if not self.enabled:
            return True
        path = self._claim_path(key)
        if key in self.held:
            return True
        if create_exclusive(path, self.owner.encode("ascii")):
            self.held.add(key)
            return True
        if self._alive(self._owner_of(key) or ""):
            return False
        # stale: take it over, one sweep at a time (the lock serialises takeovers, and
        # the claim is read again under it: another sweep may have taken it over first)
        fd = os.open(self.directory / "takeover.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            owner = self._owner_of(key)
            if owner is not None and self._alive(owner):
                return False
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            if not create_exclusive(path, self.owner.encode("ascii")):
                return False
        finally:
            os.close(fd)
        self.held.add(key)
        return True

    def release(self, key: str) -> None:
        """Give ``key`` up (its record is written, or this sweep stops)."""
        if key in self.held:
            self.held.discard(key)
            with contextlib.suppress(FileNotFoundError):
                self._claim_path(key).unlink()
