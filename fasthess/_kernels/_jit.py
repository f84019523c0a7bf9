"""The one place that sets Numba options for every fasthess kernel.

Kernels never spell out ``cache=`` or ``fastmath=`` themselves;
they use :func:`kernel` (or :func:`inline_kernel`) so that a policy change is one
edit. Per-kernel overrides are arguments of the decorator, never other options.

Where compiled kernels are cached
---------------------------------
Not beside the package: Numba's default writes ``*.nbi``/``*.nbc`` files into
``fasthess/_kernels/__pycache__``, which ``pip uninstall`` leaves behind, and a
leftover ``fasthess/`` holding only them shadows a later editable install as a
namespace package. fasthess gives its dispatchers a cache locator of its own
(:class:`_KernelCacheLocator`) that writes under :func:`cache_directory`: the user's
cache directory (``~/.cache/fasthess`` on Linux, or ``$NUMBA_CACHE_DIR/fasthess``
when the user sets that variable) in a folder named after the fasthess, Python and
Numba versions and the installed package's path. An upgrade or a reinstall elsewhere
therefore starts a fresh folder; old folders are never read again and can be
deleted. Nothing here sets an environment variable or changes Numba's defaults for
other libraries.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pathlib
import sys

import numba
from numba.core import caching, event
from numba.core.dispatcher import Dispatcher

# No fastmath because rank-critical results depend on IEEE behaviour (tiny
# eigenvalues, signed zeros). Every kernel is serial and releases the GIL (nogil):
# fasthess runs kernels over ranges on threads of its own (fasthess._runtime), never
# through Numba's threading layer, whose GNU OpenMP backend aborts forked children and
# whose workqueue backend aborts when two threads launch kernels at once.
_POLICY = dict(nogil=True, error_model="numpy", fastmath=False)

_KERNELS_DIR = pathlib.Path(__file__).resolve().parent

__all__ = ["kernel", "inline_kernel", "cache_directory", "jit_timer"]


@functools.lru_cache(maxsize=None)
def _fasthess_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fasthess")
    except PackageNotFoundError:  # a source tree that was never installed
        return "source"


def cache_directory() -> pathlib.Path:
    """The folder where this installation's compiled kernels are cached.

    Keyed by the fasthess, Python and Numba versions and by where the package is
    installed, so no other installation reads or overwrites it.
    """
    root = numba.config.CACHE_DIR  # the user's NUMBA_CACHE_DIR, if set
    if root:
        root = pathlib.Path(root) / "fasthess"
    else:
        from numba.misc.appdirs import AppDirs

        root = pathlib.Path(AppDirs(appname="fasthess", appauthor=False).user_cache_dir)
    where = hashlib.sha1(str(_KERNELS_DIR).encode()).hexdigest()[:12]
    key = (f"{_fasthess_version()}-py{sys.version_info[0]}{sys.version_info[1]}"
           f"-numba{numba.__version__}-{where}")
    return root / key


@functools.lru_cache(maxsize=None)
def _sources_stamp() -> str:
    # Kernels inline helpers from sibling files: a change in any of them must
    # invalidate every cached kernel, not only those of the edited file (Numba's own
    # stamp covers one file).
    digest = hashlib.sha256()
    for path in sorted(_KERNELS_DIR.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


class _KernelCacheLocator(caching._CacheLocator):
    """Numba cache locator for fasthess's kernels: :func:`cache_directory`."""

    def __init__(self, py_func, py_file):
        self._lineno = py_func.__code__.co_firstlineno
        self._path = str(cache_directory() / pathlib.Path(py_file).stem)

    def get_cache_path(self):
        return self._path

    def get_source_stamp(self):
        return _sources_stamp()

    def get_disambiguator(self):
        return str(self._lineno)

    @classmethod
    def from_function(cls, py_func, py_file):
        if pathlib.Path(py_file).resolve().parent != _KERNELS_DIR:
            return None
        self = cls(py_func, py_file)
        try:
            self.ensure_cache_path()
        except OSError:  # unwritable: no disk cache rather than one beside the package
            return None
        return self


class _KernelCacheImpl(caching.CompileResultCacheImpl):
    _locator_classes = [_KernelCacheLocator]


class _KernelCache(caching.FunctionCache):
    _impl_class = _KernelCacheImpl


def _with_disk_cache(dispatcher):
    if not isinstance(dispatcher, Dispatcher):  # NUMBA_DISABLE_JIT: a plain function
        return dispatcher
    try:
        # Numba's own ``cache=True`` does ``dispatcher.enable_caching()``, which
        # would pick the in-tree locator; this is the same step with ours.
        dispatcher._cache = _KernelCache(dispatcher.py_func)
    except RuntimeError:  # no writable cache directory: compile in each process
        pass
    return dispatcher


def kernel(func=None, *, cache: bool = True):
    """Compile ``func`` with the project's Numba policy.

    Parameters
    ----------
    func : function, optional
        The kernel; omit it to use ``kernel(...)`` as a decorator factory.
    cache : bool
        Cache to disk, under :func:`cache_directory`. False only for kernels that
        close over a user's own jitted functions (a CustomActivation): Numba cannot
        key a disk cache on those.
    """
    def wrap(f):
        dispatcher = numba.njit(cache=False, **_POLICY)(f)
        return _with_disk_cache(dispatcher) if cache else dispatcher
    if func is None:
        return wrap
    return wrap(func)


def inline_kernel(func):
    """A small helper called from other kernels (compiled, cached, never parallel)."""
    return _with_disk_cache(numba.njit(inline="always", cache=False, **_POLICY)(func))


@contextlib.contextmanager
def jit_timer():
    """Measure the seconds spent compiling kernels, or loading them from the cache.

    Yields a one-element list whose item is the running total (Numba's compiler-lock
    events: nested compiles count once), so ``with jit_timer() as t: ...; t[0]``.
    """
    total = [0.0]

    def add(seconds):
        total[0] += seconds

    with event.install_timer("numba:compiler_lock", add):
        yield total
