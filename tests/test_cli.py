"""The `fasthess` command: its version, its help, and what `fasthess run` prints."""
import argparse
import re
import subprocess
import sys

import pytest

import fasthess as fh
from fasthess.cli import build_parser, indefinite_article, main, package_version


def _run_parser():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["run"]


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out == f"fasthess {package_version()}"
    assert re.fullmatch(r"fasthess \d+\.\d+\.\d+\S*", out), out


def test_installed_version_is_the_package_version():
    # the version the command prints (the installed distribution's) is the one of the
    # code: a mismatch means a stale install or a version bumped in one place only
    version = package_version()
    if version.startswith("unknown"):
        pytest.skip("fasthess is not installed here (no distribution metadata to compare)")
    assert version == fh.__version__


def test_version_flag_from_the_console_entry_point():
    out = subprocess.run([sys.executable, "-m", "fasthess", "--version"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == f"fasthess {package_version()}"


@pytest.mark.parametrize("parser", ["top", "run"])
def test_every_option_has_help(parser):
    p = build_parser() if parser == "top" else _run_parser()
    options = [a for a in p._actions if a.option_strings]
    assert options
    missing = [a.option_strings for a in options if not a.help or a.help == argparse.SUPPRESS]
    assert missing == []


def test_seed_and_dtype_help_say_what_they_do(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--seed SEED random seed: the teacher is drawn with rng=SEED" in text
    assert "--dtype {float64,float32} working precision" in text
    assert "--version" not in text  # a top-level option
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--version print the version of fasthess and exit" in " ".join(
        capsys.readouterr().out.split())


@pytest.mark.parametrize("word, article", [("erf", "an"), ("linear", "a"), ("quadratic", "a"),
                                           ("tanh", "a"), ("relu", "a"), ("ERF", "an"),
                                           ("z+0.5z^2", "a"), ("identity", "an"),
                                           ("softplus", "a")])
def test_article_follows_the_sound(word, article):
    assert indefinite_article(word) == article


def _run(capsys, *argv):
    assert main(["run", *argv]) == 0
    return capsys.readouterr().out


def test_run_prints_grammar_and_full_rank(capsys):
    out = _run(capsys, "--n-in", "4", "--n-hidden", "3", "--activation", "erf")
    assert "Hessian at the optimum of an erf teacher" in out
    assert "a erf" not in out
    # erf at P = 2D has full rank D = 15: no dropped eigenvalue, so no gap to report
    assert "numerical rank 15 of 15" in out
    assert "full rank: no gap" in out and "inf decades" not in out
    assert "predicted effective parameters 15" in out


def test_run_prints_the_gap_of_a_rank_deficient_hessian(capsys):
    out = _run(capsys, "--n-in", "4", "--n-hidden", "4", "--activation", "quadratic",
               "--seed", "3")
    assert "of a quadratic teacher" in out
    # z + z^2 at Ni = Nh = 4: rank N (N + 3) / 2 = 14 of D = 20, zeros ~1e-16 below
    rank = re.search(r"numerical rank (\d+) of 20 \(tolerance \S+, gap (\d+\.\d) decades\)",
                     out)
    assert rank is not None, out
    assert int(rank.group(1)) == 14 and float(rank.group(2)) > 8


def test_run_seed_is_reproducible(capsys):
    first = _run(capsys, "--n-in", "3", "--n-hidden", "2", "--seed", "5")
    second = _run(capsys, "--n-in", "3", "--n-hidden", "2", "--seed", "5")
    other = _run(capsys, "--n-in", "3", "--n-hidden", "2", "--seed", "6")

    def eigenvalue_line(text):
        return next(line for line in text.splitlines() if "eigenvalues" in line)

    assert eigenvalue_line(first) == eigenvalue_line(second) != eigenvalue_line(other)


def test_run_reports_bad_input_without_a_traceback(capsys):
    assert main(["run", "--activation", "softsign", "--n-in", "3", "--n-hidden", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fasthess: error: activation: unknown name 'softsign'")
    assert "Traceback" not in err


def test_run_float32_says_when_the_rank_is_undetermined(capsys):
    out = _run(capsys, "--n-in", "8", "--n-hidden", "8", "--dtype", "float32", "--no-progress")
    assert "undetermined" in out and "--dtype float64" in out and "exact_rank" in out
    out64 = _run(capsys, "--n-in", "8", "--n-hidden", "8", "--no-progress")
    assert "undetermined" not in out64


def test_run_shows_its_stages_on_a_terminal_only(capsys, monkeypatch):
    pytest.importorskip("tqdm")
    _run(capsys, "--n-in", "3", "--n-hidden", "2")
    assert "fasthess run" not in capsys.readouterr().err  # stderr is not a terminal here
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    main(["run", "--n-in", "3", "--n-hidden", "2"])
    err = capsys.readouterr().err
    assert "fasthess run" in err and "/2" in err and "eigh" in err
    main(["run", "--n-in", "3", "--n-hidden", "2", "--no-progress"])
    assert "fasthess run" not in capsys.readouterr().err


def _seconds(out, label):
    match = re.search(rf"^  {label}\s+([\d.]+) s", out, re.M)
    assert match is not None, out
    return float(match.group(1))


def test_run_times_compilation_apart_from_the_assembly(tmp_path):
    # With an empty kernel cache the default run (Ni = Nh = 30) compiles for seconds
    # while its assembly takes tens of milliseconds: the compile must not be reported as
    # assembly (a warm-up on two samples took the small networks' route and left this
    # one's compile in the assembly time).
    import os

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    argv = [sys.executable, "-m", "fasthess", "--n-in", "30", "--n-hidden", "30"]
    first = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    again = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    assert _seconds(first, "compile") > 10 * _seconds(first, "assembly")
    # the second process loads the kernels from the cache the first wrote
    assert _seconds(again, "compile") < _seconds(first, "compile") / 2
