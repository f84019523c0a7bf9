"""Install fasthess as users and contributors do, in fresh virtual environments, and check
that no order of installs leaves compiled kernels that break the next one.

    python tests/install_sequences.py                 # all sequences, dependencies from PyPI
    python tests/install_sequences.py --reuse-deps    # NumPy, Numba, ... from this environment
    python tests/install_sequences.py --only upgrade

Sequences (each in a new venv, each install followed by a run that compiles a kernel):

- ``regular_then_editable``: ``pip install .`` then ``pip install -e .`` (the order of
  the README's quick start);
- ``editable_then_regular``: the reverse;
- ``upgrade``: ``pip install .`` then ``pip install`` of a copy whose version and kernel
  sources differ.

After each install a fresh process, started outside the source tree, imports fasthess,
runs a kernel, and reports where fasthess was imported from, where Numba cached the
kernel, and any ``*.nbi``/``*.nbc`` file inside the installed package; the checks are
that the import comes from the install just made and that no cache file lies in or
beside the package. ``--reuse-deps`` installs fasthess with ``--no-deps`` and makes this
environment's packages visible to the new venvs (a ``.pth`` file), so a run needs the
network only for pip's isolated build of fasthess itself. Takes about a minute.
Exit status 0 when every check passes.
"""
import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import venv

ROOT = pathlib.Path(__file__).resolve().parents[1]

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
    file=fasthess.__file__, version=fasthess.__version__,
    cache=str(_jit.cache_directory()),
    cached=sorted(str(p) for p in _jit.cache_directory().rglob("*.nb*")),
    beside=sorted(str(p) for p in package.rglob("*.nb*")),
    hits=sum(apply_activation_value.stats.cache_hits.values()),
)))
"""


class Failure(AssertionError):
    pass


def _run(cmd, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if out.returncode:
        raise Failure(f"{' '.join(map(str, cmd))} failed ({out.returncode}):\n"
                      f"{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return out.stdout


class Env:
    """A fresh venv in ``where`` with its own user cache directory."""

    def __init__(self, where: pathlib.Path, reuse_deps: bool):
        self.where = where
        venv.EnvBuilder(with_pip=True).create(where / "venv")
        self.python = where / "venv" / "bin" / "python"
        self.reuse_deps = reuse_deps
        purelib = _run([self.python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                        "['purelib'])"]).strip()
        self.site = pathlib.Path(purelib)
        if reuse_deps:  # this environment's packages after the venv's own, .pth files unread
            here = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
            (self.site / "zz_reused_deps.pth").write_text("\n".join(sorted(here)) + "\n")
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("PYTHONPATH", "NUMBA_CACHE_DIR", "VIRTUAL_ENV")}
        self.env["XDG_CACHE_HOME"] = str(where / "user-cache")
        self.run_dir = where / "elsewhere"
        self.run_dir.mkdir()

    def pip_install(self, source: pathlib.Path, editable: bool):
        cmd = [self.python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        if self.reuse_deps:
            cmd.append("--no-deps")
        cmd += ["-e", str(source)] if editable else [str(source)]
        _run(cmd, env=self.env, cwd=self.run_dir)

    def probe(self) -> dict:
        return json.loads(_run([self.python, "-c", _PROBE], env=self.env,
                               cwd=self.run_dir).strip().splitlines()[-1])

    def leftovers(self) -> list:
        """Files of a package named fasthess left in site-packages (none after an
        editable install replaced a regular one)."""
        return sorted(str(p) for p in (self.site / "fasthess").rglob("*") if p.is_file())


def _check(probe: dict, expect_under: pathlib.Path, expect_version: str, env: Env):
    file = pathlib.Path(probe["file"]).resolve()
    if expect_under.resolve() not in file.parents:
        raise Failure(f"fasthess imported from {file}, expected under {expect_under}")
    if probe["version"] != expect_version:
        raise Failure(f"fasthess {probe['version']} imported, expected {expect_version}")
    if probe["beside"]:
        raise Failure(f"compiled kernels written inside the package: {probe['beside']}")
    if not probe["cached"]:
        raise Failure(f"nothing cached in {probe['cache']}")
    cache = pathlib.Path(probe["cache"])
    if env.where.resolve() not in cache.resolve().parents:
        raise Failure(f"kernel cache {cache} outside the test's user cache directory")
    if expect_version not in cache.name:
        raise Failure(f"kernel cache {cache} not keyed by the version {expect_version}")


def _version(source: pathlib.Path) -> str:
    return re.search(r'^version = "([^"]+)"', (source / "pyproject.toml").read_text(),
                     re.M).group(1)


def _copy_source(dest: pathlib.Path) -> pathlib.Path:
    ignore = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "build", ".asv",
                                    "figures_out", "*.nbi", "*.nbc")
    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


def _next_version(source: pathlib.Path) -> str:
    """Give the copy at ``source`` a later version and a changed kernel file."""
    old = _version(source)
    new = old + ".post1"
    for name in ("pyproject.toml", "fasthess/__init__.py"):
        path = source / name
        path.write_text(path.read_text().replace(f'"{old}"', f'"{new}"', 1))
    kernel = source / "fasthess" / "_kernels" / "activation.py"
    kernel.write_text("# the next version's kernels: a changed source file\n" + kernel.read_text())
    return new


def regular_then_editable(tmp, reuse_deps):
    env, src = Env(tmp, reuse_deps), _copy_source(tmp / "src")
    env.pip_install(src, editable=False)
    _check(env.probe(), env.site, _version(src), env)
    env.pip_install(src, editable=True)
    if env.leftovers():
        raise Failure(f"left in site-packages after the editable install: {env.leftovers()}")
    _check(env.probe(), src, _version(src), env)


def editable_then_regular(tmp, reuse_deps):
    env, src = Env(tmp, reuse_deps), _copy_source(tmp / "src")
    env.pip_install(src, editable=True)
    _check(env.probe(), src, _version(src), env)
    env.pip_install(src, editable=False)
    _check(env.probe(), env.site, _version(src), env)


def upgrade(tmp, reuse_deps):
    env, src = Env(tmp, reuse_deps), _copy_source(tmp / "src")
    env.pip_install(src, editable=False)
    first = env.probe()
    _check(first, env.site, _version(src), env)
    nxt = _copy_source(tmp / "src-next")
    version = _next_version(nxt)
    env.pip_install(nxt, editable=False)
    second = env.probe()
    _check(second, env.site, version, env)
    if second["cache"] == first["cache"]:
        raise Failure("the upgrade reused the previous version's kernel cache folder")
    again = env.probe()  # a second process loads what the first compiled
    if not again["hits"]:
        raise Failure("the upgraded install did not load its cached kernel")


SEQUENCES = {f.__name__: f for f in (regular_then_editable, editable_then_regular, upgrade)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=list(SEQUENCES), default=None)
    parser.add_argument("--reuse-deps", action="store_true",
                        help="take NumPy, Numba, SciPy... from this environment (--no-deps)")
    args = parser.parse_args(argv)
    failed = 0
    for name in args.only or SEQUENCES:
        with tempfile.TemporaryDirectory(prefix=f"fasthess-{name}-") as tmp:
            try:
                SEQUENCES[name](pathlib.Path(tmp), args.reuse_deps)
                print(f"{name}: ok")
            except Failure as exc:
                failed += 1
                print(f"{name}: FAILED\n{exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
