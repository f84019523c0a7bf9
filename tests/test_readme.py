"""README.md against the code: every Python block runs on its own, every command and
option it shows exists, every ``fh.name`` it cites resolves, and every timing in it was
written by bench/update_readme.py (between its markers, with the machine named)."""
import pathlib
import re
import shlex

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

import fasthess as fh
from fasthess.cli import SUBCOMMANDS, build_parser

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
SECTION = re.compile(r"<!-- (\w+):start -->(.*?)<!-- \1:end -->", re.S)


def blocks(language, text=README):
    return [m.group(2) for m in BLOCK.finditer(text) if m.group(1) == language]


def prose(text=README):
    """The README without its code blocks and generated sections."""
    return SECTION.sub("", BLOCK.sub("", text))


PYTHON = blocks("python")


def test_the_readme_has_python_blocks():
    assert len(PYTHON) >= 3


@pytest.mark.parametrize("index", range(len(PYTHON)))
def test_python_block_runs_on_its_own(index):
    # a fresh namespace per block: a name defined only in an earlier block fails here
    code = compile(PYTHON[index], f"README.md python block {index}", "exec")
    exec(code, {"__name__": f"readme_block_{index}"})


def test_block_check_catches_a_name_from_another_block():
    with pytest.raises(NameError):
        exec(compile("fh.hessian(teacher, X)", "probe", "exec"), {"fh": fh})


def _commands():
    for block in blocks("bash"):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            for command in filter(None, (c.strip() for c in line.split("&&"))):
                yield command


def _extras():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return set(tomllib.load(f)["project"]["optional-dependencies"])


def _check_command(command):
    words = shlex.split(command)
    if words[0] == "fasthess":
        argv = words[1:]
        if not argv or argv[0] not in (*SUBCOMMANDS, "-h", "--help", "--version"):
            argv = ["run"] + argv
        build_parser().parse_args(argv)  # SystemExit(2) on an unknown option
        for i, w in enumerate(words[:-1]):
            if w == "--grid":
                assert (ROOT / words[i + 1]).is_file(), words[i + 1]
    elif words[:2] == ["pip", "install"]:
        for spec in words[2:]:
            extras = re.search(r"\[(.*)\]", spec)
            if extras:
                assert set(extras.group(1).split(",")) <= _extras(), spec
    elif words[0] == "python":
        if words[1] == "-m":
            module = words[2]
            script = None if module == "pytest" else ROOT / (module.replace(".", "/") + ".py")
            args = words[3:]
        else:
            script, args = ROOT / words[1], words[2:]
        if script is not None:
            assert script.is_file(), command
            source = script.read_text()
            # an option the script takes is spelled in it (argparse or the module it wraps)
            for option in (a.split("=")[0] for a in args if a.startswith("--")):
                assert f'"{option}"' in source or _option_in_bench(option), (command, option)
        else:
            for path in (a for a in args if not a.startswith("-")):
                assert (ROOT / path).exists(), (command, path)
    elif words[0] == "asv":
        assert (ROOT / "asv.conf.json").is_file()
    else:
        raise AssertionError(f"README shows a command this test does not know: {command}")


def _option_in_bench(option):
    from fasthess.cli import add_bench_arguments
    import argparse

    p = argparse.ArgumentParser()
    add_bench_arguments(p)
    return option in p._option_string_actions


@pytest.mark.parametrize("command", sorted(set(_commands())))
def test_shell_command_exists_with_its_options(command):
    _check_command(command)


def test_command_check_catches_an_unknown_option():
    with pytest.raises(SystemExit):
        _check_command("fasthess figures --quick --no-such-option")
    with pytest.raises(AssertionError):
        _check_command("python bench/no_such_script.py")


def test_toml_block_is_a_grid_the_sweep_reads(tmp_path):
    from fasthess.sweeps.grid import read_grid

    (toml,) = blocks("toml")
    path = tmp_path / "grid.toml"
    path.write_text(toml)
    assert read_grid(str(path))


def _resolve(dotted):
    obj = fh
    for part in dotted.split(".")[1:]:
        obj = getattr(obj, part)
    return obj


NAMES = sorted(set(re.findall(r"\b(?:fh|fasthess)\.[A-Za-z_][\w.]*[A-Za-z_0-9]", README)))


@pytest.mark.parametrize("name", [n for n in NAMES if not n.endswith((".py", ".md"))])
def test_every_fasthess_name_in_the_readme_resolves(name):
    # fh.distributed.hessian_operator after `import fasthess as fh` included
    _resolve(name.replace("fasthess.", "fh.", 1))


def test_cli_options_in_the_prose_exist():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    known = set(parser._option_string_actions)
    for p in sub.values():
        known |= set(p._option_string_actions)
    bench_sources = "".join(p.read_text() for p in (ROOT / "bench").glob("*.py"))
    cited = set(re.findall(r"`[^`]*?(--[a-z][\w-]*)", prose()))
    others = {"--python", "--benchmark-disable"}  # asv's and pytest-benchmark's own
    unknown = [o for o in cited - others if o not in known and f'"{o}"' not in bench_sources]
    assert unknown == []


# A number with a unit of time or memory: a measurement.
TIMING = re.compile(r"\b\d[\d.,]*\s*(?:-\s*\d[\d.,]*\s*)?(?:s|ms|us|µs|min|minutes|seconds|"
                    r"GiB|MiB|TiB)\b")
# The section the runtime's own work rewrites (its numbers describe the thread runtime
# being replaced); every other timing must come from bench/update_readme.py.
_EXEMPT_HEADINGS = ("## Memory and threads",)


def _without_exempt(text):
    for heading in _EXEMPT_HEADINGS:
        start = text.index(heading)
        end = text.index("\n## ", start + 1)
        text = text[:start] + text[end:]
    return text


def test_every_timing_lies_in_a_generated_section():
    found = TIMING.findall(_without_exempt(prose()))
    assert found == []


def test_timing_check_sees_a_typed_timing():
    assert TIMING.findall(prose("the figures take about 25 s on 2 cores, 1.7 GiB"))


def test_generated_sections_are_those_of_the_script_and_name_the_machine():
    import importlib.util

    spec = importlib.util.spec_from_file_location("update_readme",
                                                  ROOT / "bench" / "update_readme.py")
    names = set(re.findall(r'^    "(\w+)": \(measure', spec.loader.get_data(spec.origin).decode(),
                           re.M))
    found = {m.group(1): m.group(2) for m in SECTION.finditer(README)}
    assert set(found) == names == {"performance", "compile", "figures", "population"}
    for name, text in found.items():
        assert "Measured by `python bench/update_readme.py" in text, name
        # the machine: its cores at least (the script now also writes the CPU model,
        # memory, versions and load average)
        assert re.search(r"\d+[- ](?:logical )?cores?", text), name


def test_top_level_markdown_files_are_not_empty():
    empty = [p.name for p in ROOT.glob("*.md") if not p.read_text().strip()]
    assert empty == []
