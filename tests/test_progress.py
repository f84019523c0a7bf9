"""Progress bars of the long computations: one helper (fasthess._io.progress), shown on a
terminal only, so tests and logs stay silent."""
from __future__ import annotations

import sys

import pytest

import fasthess as fh
from fasthess import _io

pytest.importorskip("tqdm")


@pytest.fixture
def problem():
    net = fh.TwoLayerNet.random(6, 5, activation="erf", rng=0)
    return net, fh.gaussian_inputs(80, 6, rng=1)


class _Recorder:
    """Stands in for the bar: records what the solver reported."""

    def __init__(self, log, total, desc, enabled):
        self.n, self.total, self.desc, self.enabled = 0, total, desc, enabled
        log.append(self)

    def update(self, n=1):
        self.n += n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("call, desc, total", [
    (lambda net, X, p: fh.eigsh(net, X, k=2, rng=0, progress=p), "fasthess eigsh", None),
    (lambda net, X, p: fh.spectral_density(net, X, n_probes=3, n_steps=10, rng=0, progress=p),
     "fasthess spectral_density", 30),
    (lambda net, X, p: fh.smallest_nonzero(net, fh.POPULATION, k=1, method="lobpcg", rng=0,
                                           progress=p), "fasthess smallest_nonzero", None),
])
def test_long_solvers_count_their_products(problem, capsys, monkeypatch, call, desc, total):
    net, X = problem
    call(net, X, None)
    assert capsys.readouterr().err == ""            # not a terminal: silent
    call(net, X, True)
    assert desc in capsys.readouterr().err          # asked for: a tqdm bar on stderr
    log = []
    monkeypatch.setattr(_io, "progress", lambda total=None, desc=None, enabled=None, **kw:
                        _Recorder(log, total, desc, enabled))
    for enabled in (None, True, False):
        call(net, X, enabled)
        bar = log[-1]
        assert (bar.desc, bar.total, bar.enabled) == (desc, total, enabled)
        # every product counted: ARPACK and LOBPCG take dozens, SLQ n_probes x n_steps
        assert bar.n == total if total is not None else bar.n > 10


def test_the_helper_shows_a_bar_on_a_terminal_only(monkeypatch):
    from tqdm import tqdm

    assert not isinstance(_io.progress(total=3), tqdm)   # pytest's stderr: not a terminal
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    with _io.progress(total=3, leave=False) as bar:
        assert isinstance(bar, tqdm)
    assert not isinstance(_io.progress(total=3, enabled=False), tqdm)


def test_progress_is_one_helper_that_checks_its_argument():
    with pytest.raises(TypeError, match="progress must be True, False or None"):
        _io.progress(total=3, enabled="yes")
    with pytest.raises(TypeError, match="progress must be True, False or None"):
        fh.eigsh(fh.TwoLayerNet.random(4, 3, rng=0), fh.gaussian_inputs(20, 4, rng=1), k=1,
                 progress=1)
