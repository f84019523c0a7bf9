"""The runner: make figures from the registry, write their files, report their claims."""
from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

from .._io import atomic_write
from .._validation import check_real
from ._registry import FIGURES, figure_spec, resolve_names
from ._plotting import save_png

__all__ = ["make_figure", "make_figures"]


def make_figure(name, out, quick=False, scale=1.0, seed=0, progress=None, plot=True) -> dict:
    """Compute one figure and write ``out/<name>.npz`` and ``out/<name>.png``.

    Each file is written atomically (a temporary file renamed into place), so an
    interrupted run never leaves a partial file.

    Parameters
    ----------
    name : str
        One of :data:`~fasthess.figures.FIGURE_NAMES`.
    out : str or Path
        Existing folder.
    quick : bool
        The figure's quick sizes instead of its full ones.
    scale : float
        Multiplies the sizes (see each figure's ``scale``), > 0.
    seed : int
        Seeds the figure's teachers and data.
    progress : bool or None
        A tqdm bar (None: when stderr is a terminal).
    plot : bool
        False: the data file only (no matplotlib needed).

    Returns
    -------
    dict
        The figure's data, ``claim_holds`` included.

    Raises
    ------
    ValueError
        An unknown ``name`` (the message lists the valid names) or ``scale`` <= 0.

    Examples
    --------
    >>> import tempfile
    >>> from fasthess.figures import make_figure
    >>> with tempfile.TemporaryDirectory() as out:
    ...     data = make_figure("quadratic_spectrum", out, quick=True, scale=0.5,
    ...                        progress=False, plot=False)
    >>> data["ns"].tolist(), bool(data["claim_holds"])
    ([2, 3, 4, 6], True)
    """
    spec = figure_spec(name)
    scale = check_real(scale, "scale", positive=True)
    data = spec.data(seed=seed, progress=progress, **spec.kwargs(quick=quick, scale=scale))
    fig = spec.plot(data) if plot else None
    out = Path(out)
    atomic_write(out / f"{spec.name}.npz", lambda f: np.savez(f, **data))
    if fig is not None:
        atomic_write(out / f"{spec.name}.png", lambda f: save_png(fig, f))
    return data


def make_figures(out, *, quick=False, only=None, scale=1.0, seed=0, progress=None) -> int:
    """Make the figures, writing each one's data and PNG as soon as it is done.

    The library side of ``fasthess figures``. Makes each figure in turn, writing
    ``<out>/<name>.npz`` (the data) and ``<out>/<name>.png``, each atomically, and
    prints one line per figure with the numbers behind its claim. Ctrl-C stops it
    and keeps every figure already finished. Without matplotlib only the data
    files are written (a note on stderr says so).

    Parameters
    ----------
    out : str or Path
        Output folder, created if missing.
    quick : bool
        Small sizes (see ``fasthess figures --help`` for the time it takes).
    only : iterable of str, optional
        Figure names to make, in this order; default all of
        :data:`~fasthess.figures.FIGURE_NAMES`.
    scale : float
        Multiplies sizes and ensemble counts (teachers, Ni and Nh of
        linear_density; Ni and Nh of dynamics; N of the spectra; the largest N of
        rank_vs_n), > 0.
    seed : int
        Seeds every figure's teachers and data.
    progress : bool or None
        A tqdm bars (None: when stderr is a terminal).

    Returns
    -------
    int
        0 when every figure made shows its claim, 1 when one does not (its files
        are still written), 130 when interrupted.

    Raises
    ------
    ValueError
        An unknown name in ``only`` (the message lists the valid names), or
        ``scale`` <= 0; both checked before any work.

    Examples
    --------
    >>> import contextlib, io, tempfile
    >>> from fasthess.figures import make_figures
    >>> with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
    ...     code = make_figures(out, quick=True, only=["rank_vs_n"], scale=0.5,
    ...                         progress=False)
    >>> code                                   # 0: the figure shows its claim
    0
    """
    names = resolve_names(only)
    scale = check_real(scale, "scale", positive=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot = importlib.util.find_spec("matplotlib") is not None
    if not plot:
        print("fasthess figures: matplotlib is not installed: writing the data files only "
              "(pip install 'fasthess[plot]' for the PNGs)", file=sys.stderr)
    done, failed = [], []
    start = time.perf_counter()
    try:
        for name in names:
            t0 = time.perf_counter()
            data = make_figure(name, out, quick=quick, scale=scale, seed=seed,
                               progress=progress, plot=plot)
            ok = bool(data["claim_holds"])
            done.append(name)
            if not ok:
                failed.append(name)
            written = out / (name + (".png" if plot else ".npz"))
            print(f"{name}: {'ok' if ok else 'CLAIM NOT MET'}: "
                  f"{FIGURES[name].summary(data)} -> {written} "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)
    except KeyboardInterrupt:
        kept = ", ".join(done) if done else "none"
        print(f"fasthess figures: interrupted; finished figures kept in {out}: {kept}",
              file=sys.stderr, flush=True)
        return 130
    print(f"{len(done)} figure{'s' if len(done) != 1 else ''} in "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    if failed:
        print(f"fasthess figures: claim not met for {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
