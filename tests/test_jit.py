"""fasthess/_kernels/_jit.py: where compiled kernels are cached, how many
specialisations a call compiles, and how compile time is measured.

The full install sequences (pip install . then -e ., the reverse, an upgrade) run
in fresh venvs from tests/install_sequences.py (about a minute, needs pip's network
for the build backend): see that script.
"""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import fasthess as fh
from fasthess._kernels import _jit

PACKAGE = pathlib.Path(fh.__file__).resolve().parent

# A process that compiles one small kernel and reports where Numba put it.
_PROBE = """
import json, pathlib
import numpy as np
import fasthess
from fasthess._kernels import _jit
from fasthess._kernels.activation import apply_activation_value
out = np.empty((2, 3))
apply_activation_value(0, np.zeros(1), np.ones((2, 3)), out)
package = pathlib.Path(fasthess.__file__).parent
print(json.dumps(dict(
    cache=str(_jit.cache_directory()),
    cached=sorted(str(p) for p in _jit.cache_directory().rglob("*.nb*")),
    hits=sum(apply_activation_value.stats.cache_hits.values()),
    misses=sum(apply_activation_value.stats.cache_misses.values()),
)))
"""


def _probe(env_updates, cwd):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(env_updates)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE.parent),
                                                      env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, cwd=cwd, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _beside_package():
    return {p: p.stat().st_mtime_ns for p in PACKAGE.rglob("*.nb*")}


def test_compiled_kernels_go_to_the_user_cache_not_beside_the_package(tmp_path):
    before = _beside_package()
    first = _probe({"XDG_CACHE_HOME": str(tmp_path / "xdg")}, tmp_path)
    second = _probe({"XDG_CACHE_HOME": str(tmp_path / "xdg")}, tmp_path)
    # nothing written (or rewritten) inside the package, where pip uninstall leaves it
    assert _beside_package() == before
    cache = pathlib.Path(first["cache"])
    assert cache.is_relative_to(tmp_path / "xdg" / "fasthess")
    assert first["cached"] and all(pathlib.Path(p).is_relative_to(cache)
                                   for p in first["cached"])
    # the second process loads what the first compiled
    assert (first["misses"], second["hits"], second["misses"]) == (1, 1, 0)


def test_numba_cache_dir_of_the_user_is_honoured(tmp_path):
    got = _probe({"XDG_CACHE_HOME": str(tmp_path / "xdg"),
                  "NUMBA_CACHE_DIR": str(tmp_path / "numba")}, tmp_path)
    assert pathlib.Path(got["cache"]).is_relative_to(tmp_path / "numba" / "fasthess")
    assert got["cached"] and not (tmp_path / "xdg").exists()


def test_cache_folder_is_keyed_by_versions_and_install_location():
    import numba

    name = _jit.cache_directory().name
    version = _jit._fasthess_version()
    assert version in (fh.__version__, "source")
    assert name.startswith(f"{version}-py{sys.version_info[0]}{sys.version_info[1]}-"
                           f"numba{numba.__version__}-")
    # the location part differs between two installs of the same version
    assert len(name.rsplit("-", 1)[1]) == 12


def test_source_stamp_covers_every_kernel_file(tmp_path, monkeypatch):
    # a kernel inlines helpers from sibling files: editing any of them must invalidate all
    for f in _jit._KERNELS_DIR.glob("*.py"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    monkeypatch.setattr(_jit, "_KERNELS_DIR", tmp_path)
    stamp = _jit._sources_stamp.__wrapped__
    before = stamp()
    helper = tmp_path / "blas.py"
    helper.write_text(helper.read_text() + "\n# changed\n")
    assert stamp() != before


def test_no_environment_variable_is_set_by_compiling(tmp_path):
    before = dict(os.environ)
    kernel = _jit.kernel(lambda x: x + 1.0, cache=False)
    assert kernel(1.0) == 2.0
    assert dict(os.environ) == before


def test_jit_timer_counts_compiling_not_running():
    @_jit.kernel(cache=False)
    def add_one(x):
        return x + 1.0

    with _jit.jit_timer() as first:
        add_one(1.0)
    with _jit.jit_timer() as second:
        add_one(2.0)
    assert first[0] > 0.0
    assert second[0] == 0.0


_SPECIALISATIONS = """
import gc, json
import numpy as np
from numba.core.dispatcher import Dispatcher
import fasthess as fh
for dtype in (np.float64, np.float32):
    for n in (6, 30):
        net = fh.TwoLayerNet.random(n, n, activation="erf", rng=0, dtype=dtype)
        X = fh.gaussian_inputs(2 * net.n_params, n, rng=1, dtype=dtype)
        fh.hessian(net, X)
        fh.hessian(fh.perturb(net, 0.1, rng=2), X, teacher=net)
print(json.dumps({f"{d.py_func.__module__}.{d.py_func.__qualname__}":
                  [str(s) for s in d.signatures] for d in gc.get_objects()
                  if isinstance(d, Dispatcher) and d.py_func.__module__.startswith("fasthess.")}))
"""

def test_each_kernel_compiles_one_specialisation_per_dtype(tmp_path):
    # Both dense routes (one call for small networks, chunks for larger), on and off the
    # optimum, in float64 and float32, in a fresh process: a literal argument passed
    # between kernels (0, True) would compile a second copy of the callee beside the one
    # the Python callers use, seconds of compile for nothing.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(PACKAGE.parent), os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-c", _SPECIALISATIONS], env=env, cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    signatures = json.loads(out.stdout.strip().splitlines()[-1])
    assert "fasthess._kernels.assembly.contract_samples" in signatures
    checked = signatures
    literal = {k: s for k, v in checked.items() for s in v if "Literal" in s}
    assert literal == {}
    assert {k: v for k, v in checked.items() if len(v) > 2} == {}


def test_specialisation_check_sees_a_literal_argument():
    @_jit.kernel(cache=False)
    def callee(a, b):
        return a + b

    @_jit.kernel(cache=False)
    def caller(a):
        return callee(a, 0)

    caller(1)
    assert any("Literal" in str(s) for s in callee.signatures)  # what the test above catches
