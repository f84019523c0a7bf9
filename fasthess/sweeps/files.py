"""Files of a sweep store written whole and read without following links.

Shared by the records (:mod:`fasthess.sweeps.store`) and the claims
(:mod:`fasthess.sweeps.claims`): a write goes to a temporary file renamed into place
(:func:`fasthess._io.atomic_write`), an exclusive create links a complete temporary
file to its name, and a read refuses symbolic links and non-regular files.
"""
from __future__ import annotations

import contextlib
import os
import stat
import uuid
from pathlib import Path

from .. import _io

__all__ = ["DamagedRecordError", "read_regular", "atomic_write_bytes", "create_exclusive"]


class DamagedRecordError(ValueError):
    """A file in a store's ``records/`` is not a whole record (the message names it)."""



def read_regular(path: Path) -> bytes:
    """The bytes of a regular file, never through a symbolic link."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise DamagedRecordError(f"{path} is a symbolic link (not followed)")
    if not stat.S_ISREG(info.st_mode):
        raise DamagedRecordError(f"{path} is not a regular file")
    # O_NOFOLLOW: a link swapped in after the lstat is refused too
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        return f.read()


def atomic_write_bytes(path: Path, data: bytes, sync_dir: bool = True, named=None) -> None:
    """:func:`fasthess._io.atomic_write` of ``data``; an OSError names ``named`` (default
    ``path``), not the temporary file it was writing."""
    try:
        _io.atomic_write(path, lambda f: f.write(data), sync_dir=sync_dir)
    except OSError as exc:
        if exc.errno is None:
            raise
        raise type(exc)(exc.errno, exc.strerror, str(named or path)) from None


def create_exclusive(path: Path, data: bytes) -> bool:
    """Write ``path`` whole, only if it does not exist yet; False if it did."""
    tmp = path.parent / f"{_io.TMP_PREFIX}{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    atomic_write_bytes(tmp, data, sync_dir=False, named=path)
    try:
        os.link(tmp, path)  # atomic, and fails if path exists: no reader sees half of it
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: exclusive create, then write
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            return False
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:  # never leave half of it
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return True
