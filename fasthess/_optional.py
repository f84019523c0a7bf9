"""Optional dependencies, imported only when a feature that needs them runs.

Each helper returns the module or raises an ImportError that says which extra
installs it, so ``import fasthess`` never loads them.
"""
from __future__ import annotations

__all__ = ["import_distributed"]


def import_distributed():
    """``dask.distributed``, or an ImportError that says how to install it."""
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(
            "fasthess sweeps and distributed operators need dask[distributed] "
            f"(pip install fasthess[dist]); importing it failed: {exc}") from exc
    return distributed
