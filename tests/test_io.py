"""The shared file and progress helpers of fasthess._io (used by figures and sweeps)."""
import io
import os
import sys

import pytest

from fasthess import _io


# ---------------------------------------------------------------------- atomic_write
def test_atomic_write_replaces_the_file(tmp_path):
    target = tmp_path / "x.json"
    target.write_bytes(b"old")
    _io.atomic_write(target, lambda f: f.write(b"new"))
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


@pytest.mark.parametrize("sync_dir", [True, False])
def test_atomic_write_interrupted_keeps_old_file(tmp_path, sync_dir):
    target = tmp_path / "x.npz"
    target.write_bytes(b"old")

    def half_then_interrupt(f):
        f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _io.atomic_write(target, half_then_interrupt, sync_dir=sync_dir)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]  # no temporary left


def test_atomic_write_temporary_is_named_with_the_prefix(tmp_path):
    seen = []

    def look(f):
        seen.extend(p.name for p in tmp_path.iterdir())
        f.write(b"x")

    _io.atomic_write(tmp_path / "rec.json", look)
    assert len(seen) == 1 and seen[0].startswith(_io.TMP_PREFIX + "rec.")
    assert seen[0].endswith(".json")


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_honours_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        _io.atomic_write(tmp_path / "f.bin", lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "f.bin").st_mode & 0o777 == mode


# ---------------------------------------------------------------------- progress
def test_progress_disabled_is_a_silent_stand_in(capsys):
    bar = _io.progress(range(3), 3, "x", enabled=False)
    assert list(bar) == [0, 1, 2]
    with _io.progress(total=5, enabled=False, unit="config", postfix="note") as bar:
        bar.update(2)
        bar.set_postfix_str("more")
    bar.close()
    assert list(_io.progress(enabled=False)) == []
    assert capsys.readouterr().err == ""


def test_progress_default_follows_stderr_being_a_terminal(monkeypatch, capsys):
    pytest.importorskip("tqdm")

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert list(_io.progress(range(2), 2, "quiet")) == [0, 1]  # captured: not a tty
    assert capsys.readouterr().err == ""
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert list(_io.progress(range(2), 2, "shown")) == [0, 1]
    assert "shown" in terminal.getvalue()


def test_progress_bar_and_missing_tqdm(monkeypatch, capsys):
    pytest.importorskip("tqdm")
    with _io.progress(total=2, desc="counting", enabled=True, unit="config") as bar:
        bar.update(2)
    assert "counting" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "tqdm", None)  # not installed: silently no bar
    with _io.progress(total=2, desc="counting", enabled=True, unit="config") as bar:
        bar.update(2)
    assert list(_io.progress(range(2), enabled=True)) == [0, 1]
    assert capsys.readouterr().err == ""
