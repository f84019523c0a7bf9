"""The layering of DESIGN.md, enforced: import-linter's contract, and no private imports."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fasthess"


def test_import_linter_layers_contract_is_kept(capsys):
    cli = pytest.importorskip("importlinter.cli")
    code = cli.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True,
                            no_logo=True)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "1 kept, 0 broken" in out


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(dotted: str) -> bool:
    base = ROOT / dotted.replace(".", "/")
    return base.with_suffix(".py").exists() or base.is_dir()


def _private_imports(source: str, module: str, is_package: bool = False):
    """(line, 'module:name') of every private name ``module`` imports from another module.

    A private *module* may be imported (a shared helper is a public name in a private
    module); a private *name* from another module may not.
    """
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom):
            continue
        base = package
        for _ in range(max(node.level - 1, 0)):
            base = base.rpartition(".")[0]
        origin = node.module or ""
        if node.level:
            origin = f"{base}.{origin}" if origin else base
        for alias in node.names:
            name = alias.name
            private = name.startswith("_") and not name.startswith("__")
            if private and origin != module and not _is_module(f"{origin}.{name}"):
                yield node.lineno, f"{origin}:{name}"


def test_no_module_imports_another_modules_private_names():
    offenders = [f"{path.relative_to(ROOT)}:{line} imports {what}"
                 for path in sorted(PACKAGE.rglob("*.py"))
                 for line, what in _private_imports(path.read_text(), _module_name(path),
                                                    path.name == "__init__.py")]
    assert offenders == []


def test_private_import_check_detects_violations():
    # the checker itself must be able to fail
    src = ("from .assembly import _private_helper, hessian\n"
           "from .. import _config\n"
           "from fasthess.operators import _secret\n")
    assert list(_private_imports(src, "fasthess._kernels.probe")) == [
        (1, "fasthess._kernels.assembly:_private_helper"), (3, "fasthess.operators:_secret")]


# A module holds one concept: aim at ~450 lines; past 500 it holds several (split it).
MAX_MODULE_LINES = 500
# Modules their owners are splitting now; remove each when its split lands.
BEING_SPLIT: set = set()


def test_no_module_is_a_house_of_several_concepts():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
            and str(p.relative_to(PACKAGE)) not in BEING_SPLIT}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_one_name_per_concept():
    import fasthess
    import fasthess.operators as operators

    # the Hessian operator has one public builder and one internal resolver
    for gone in ("operator_of", "products_operator"):
        assert not hasattr(operators, gone), gone
    assert fasthess.hessian_operator is operators.hessian_operator
    # the benchmark harness lives in bench/, its NumPy twin is tests/reference.py
    assert not (PACKAGE / "benchmarking.py").exists()
