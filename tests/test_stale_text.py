"""Text that goes stale: references to issue numbers (a reader of the code has no
tracker), and measurements attributed to "the 2-core VM" or "this machine" (which one?).
A test, a comment or a docstring says what it checks or why, and a measured number says
on what kind of machine it was measured."""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
STALE = {
    "an issue number": re.compile(r"\bissues? ?#?\d+", re.I),
    "the issue tracker": re.compile(r"\bissue tracker\b", re.I),
    "an unnamed machine": re.compile(r"\b(?:the|this) \d+-core (?:VM|machine)\b", re.I),
}
# Files of the thread runtime, being replaced with their own text (and renamed, for the
# two tests); remove them from here when that lands.
_RUNTIME_FILES = {"fasthess/_resources.py", "tests/test_threads.py",
                  "tests/test_reliability.py"}


def _files():
    for pattern in ("fasthess/**/*.py", "tests/**/*.py", "bench/**/*.py", "*.md", "docs/*.md",
                    "examples/*"):
        for path in ROOT.glob(pattern):
            rel = path.relative_to(ROOT).as_posix()
            if path.is_file() and rel not in _RUNTIME_FILES and rel != "tests/test_stale_text.py":
                yield rel, path.read_text(errors="replace")


def stale(text):
    return [(what, m.group(0)) for what, rx in STALE.items() for m in rx.finditer(text)]


def test_no_stale_references():
    found = [(rel, *hit) for rel, text in _files() for hit in stale(text)]
    assert found == []


@pytest.mark.parametrize("text", ["Regression tests of issue 10: ...",
                                  "measured on the 2-core VM measured",
                                  "Sizes follow the issue tracker's grid"])
def test_the_check_sees_stale_text(text):
    assert stale(text)


def test_test_files_are_named_after_what_they_test():
    # a contributor finds a test by the module's name, not by an issue's
    names = [p.name for p in (ROOT / "tests").glob("test_*.py")]
    assert [n for n in names if re.search(r"issue|\d", n)] == []
