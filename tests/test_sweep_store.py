"""The sweep store under damage, links, races, full disks and huge or deep grids.

No Dask here: records are written through the store from configurations run in this
process (fasthess.sweeps.task.execute), exactly as the runner writes them. The faults
of running sweeps (reruns, concurrent sweeps, a disk filling mid-sweep) are in
test_sweeps.py, beside its cluster.
"""
import errno
import json
import os
import re
import threading

import numpy as np
import pytest

from fasthess import _io
from fasthess.cli import main as cli_main
from fasthess.sweeps import expand_grid, load_sweep, read_grid, run_config
from fasthess.sweeps.configuration import check_measures, normalize_config
from fasthess._config import MAX_GRID_CONFIGS as MAX_CONFIGS
from fasthess.sweeps.store import (FORMAT_VERSION, DamagedRecordError, DamagedRecordWarning,
                                   Store, key_of, make_record)
from fasthess.sweeps.task import execute


def first_column(net, X, seed):
    """A measure with an array and a scalar, so records have a .npz."""
    return {"x0": X[:, 0].copy(), "total": float(X.sum())}


def _config(seed):
    return {"activation": "erf", "n": 2, "seed": seed}


def write_records(path, seeds):
    """A store holding the records of ``seeds``, written as a sweep writes them."""
    st = Store(path, create=True)
    names, measures = check_measures(first_column)
    keys = {}
    for seed in seeds:
        canon = normalize_config(_config(seed), first_column)
        keys[seed] = key = key_of(canon, names)
        result = execute(canon, names, measures)
        st.write(make_record(key, canon, names, result), result["arrays"])
    return st, keys


# ---------------------------------------------------------------------- damaged records
def test_each_damaged_file_is_named_skipped_and_not_done(tmp_path):
    st, keys = write_records(tmp_path / "s", range(7))

    def rec(s):
        return st.records / f"{keys[s]}.json"

    text = rec(0).read_text()
    rec(0).write_text(text[: len(text) // 2])                  # truncated
    rec(1).write_bytes(b"\x00\xff not json")                    # garbage
    rec(2).write_text("[1, 2, 3]")                              # a JSON list
    npz = st.records / f"{keys[3]}.npz"
    npz.write_bytes(npz.read_bytes()[:100])                     # truncated arrays
    rec(4).write_text(rec(5).read_text())                       # another key's content
    body = json.loads(rec(6).read_text())
    del body["status"]
    rec(6).write_text(json.dumps(body))                         # no "status"
    stray = st.records / "README.json"
    stray.write_text("{}")

    with pytest.warns(DamagedRecordWarning) as caught:
        rows = load_sweep(st.path)
    assert len(caught) == 1  # one warning listing every skipped file
    message = str(caught[0].message)
    assert message.startswith(f"load_sweep: skipped 7 damaged file(s) of the store {st.path}")
    for expected in [f"{rec(0)} is not valid JSON", f"{rec(1)} is not valid JSON",
                     f"{rec(2)} holds a JSON list, not a record",
                     f"{npz} does not match the checksum in {rec(3)}",
                     f"{rec(4)} holds the record of another configuration (key {keys[5]})",
                     f"{rec(6)} does not match its checksum",
                     f"{stray} is not a record"]:
        assert expected in message
    # the one whole record is read back exactly
    assert [r["seed"] for r in rows] == [5]
    np.testing.assert_array_equal(rows[0]["x0"], run_config(_config(5), first_column)["x0"])
    # a damaged record is not done (a sweep runs it again: test_sweeps.py)
    assert {s: st.state(k)[0] for s, k in keys.items()} == {
        0: "damaged", 1: "damaged", 2: "damaged", 3: "damaged", 4: "damaged", 5: "ok",
        6: "damaged"}
    with pytest.raises(DamagedRecordError, match=re.escape(str(stray))):
        load_sweep(st.path, on_damaged="raise")
    stray.unlink()
    first = min(k for s, k in keys.items() if s != 5)  # records are read in key order
    with pytest.raises(DamagedRecordError, match=re.escape(str(st.records / first))):
        load_sweep(st.path, on_damaged="raise")
    with pytest.raises(ValueError, match="on_damaged must be 'warn' or 'raise'"):
        load_sweep(st.path, on_damaged="ignore")


def test_a_record_is_checked_whole_before_it_counts(tmp_path):
    st, keys = write_records(tmp_path / "s", [0])
    path = st.records / f"{keys[0]}.json"
    record = json.loads(path.read_text())
    assert record["format_version"] == FORMAT_VERSION and len(record["checksum"]) == 64
    record["scalars"]["total"] += 1.0                           # an edit keeps valid JSON
    path.write_text(json.dumps(record))
    assert st.state(keys[0]) == ("damaged", f"{path} does not match its checksum (edited, "
                                            f"or not written by fasthess)")
    (st.records / f"{keys[0]}.npz").unlink()
    write_records(st.path, [0])                                 # rewritten: whole again
    assert st.state(keys[0]) == ("ok", None)
    (st.records / f"{keys[0]}.npz").unlink()                    # arrays gone
    status, reason = st.state(keys[0])
    assert status == "damaged" and f"{keys[0]}.npz" in reason and "cannot be read" in reason


def test_symlinks_in_the_store_are_not_followed(tmp_path):
    st, keys = write_records(tmp_path / "s", [0, 1])
    linked = st.records / f"{keys[0]}.json"
    outside = tmp_path / "outside.json"
    os.replace(linked, outside)
    os.symlink(outside, linked)                 # a whole record, but behind a link
    with pytest.warns(DamagedRecordWarning,
                      match=re.escape(f"{linked} is a symbolic link (not followed)")):
        rows = load_sweep(st.path)
    assert [r["seed"] for r in rows] == [1]
    assert st.state(keys[0])[0] == "damaged"
    before = outside.read_bytes()
    write_records(st.path, [0])                 # a rerun replaces the link, not its target
    assert not os.path.islink(linked) and outside.read_bytes() == before
    assert st.state(keys[0]) == ("ok", None)

    for part in ("records", "manifest.json", "claims"):
        store = tmp_path / f"linked-{part}"
        write_records(store, [0])
        os.rename(store / part, tmp_path / f"real-{part}")
        os.symlink(tmp_path / f"real-{part}", store / part)
        match = re.escape(f"{store / part} is a symbolic link")
        with pytest.raises(ValueError, match=match):
            Store(store, create=True)
        if part != "claims":  # reading needs no claims
            with pytest.raises(ValueError, match=match):
                load_sweep(store)


# ---------------------------------------------------------------------- concurrency
def test_creating_one_store_from_many_threads_at_once(tmp_path):
    """Each round, 6 threads open the same new store at the same moment."""
    n_threads, errors = 6, []
    for round_ in range(20):
        path = tmp_path / f"s{round_}"
        barrier = threading.Barrier(n_threads)

        def create(path=path, barrier=barrier):
            barrier.wait()
            try:
                Store(path, create=True)
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=create) for _ in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(os.listdir(path)) == ["claims", "manifest.json", "records"]
        assert json.loads((path / "manifest.json").read_text())["format_version"] == \
            FORMAT_VERSION
    assert errors == []


def test_claims(tmp_path):
    st = Store(tmp_path / "s", create=True)
    with st.claims() as mine, st.claims() as theirs:
        assert mine.claim("a" * 32) and not theirs.claim("a" * 32)
        assert theirs.claim("b" * 32) and not mine.claim("b" * 32)
        mine.release("a" * 32)
        assert theirs.claim("a" * 32)
    # leaving gives every claim up, and the owner files go with them
    assert os.listdir(st.claims_dir) == []


# ---------------------------------------------------------------------- disk faults
def _grid(tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text('measure = "rank"\nactivation = "erf"\nn = 2\n')
    return grid


def _cli(grid, store, capsys):
    rc = cli_main(["sweep", "--grid", str(grid), "--store", str(store), "--no-progress"])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("under", [True, False])
def test_store_path_with_a_file_in_the_way(tmp_path, capsys, under):
    grid = _grid(tmp_path)
    blocker = tmp_path / "results"
    blocker.write_text("mine")
    store = blocker / "s" if under else blocker
    rc, err = _cli(grid, store, capsys)
    assert rc == 2 and err.count("\n") == 1
    cause = f"{blocker} is a file, not a directory" if under else "exists and is not a directory"
    assert err == f"fasthess: error: store {store}: {cause}\n"
    assert blocker.read_text() == "mine" and sorted(os.listdir(tmp_path)) == ["g.toml",
                                                                               "results"]


def test_read_only_store_directory(tmp_path, capsys, monkeypatch):
    """Writes into the store refused as on a read-only mount (EROFS); simulated, since
    permission bits do not stop root."""
    grid = _grid(tmp_path)
    store = tmp_path / "ro"
    store.mkdir()
    real_open = os.open

    def read_only_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR) and str(path).startswith(str(store)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only_open)
    rc, err = _cli(grid, store, capsys)
    monkeypatch.undo()
    assert rc == 2
    assert err == (f"fasthess: error: store {store}: {store / 'manifest.json'}: "
                   f"{os.strerror(errno.EROFS)}\n")
    assert os.listdir(store) == []  # no temporary, no half manifest


def _disk_full_after(n_bytes):
    """An ``atomic_write`` whose writes fail with ENOSPC after ``n_bytes`` bytes."""
    real = _io.atomic_write

    def atomic_write(path, write, sync_dir=True):
        def write_until_full(f):
            class Full:
                def write(self, data):
                    f.write(bytes(data)[:n_bytes])
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            write(Full())

        real(path, write_until_full, sync_dir=sync_dir)

    return atomic_write


def test_disk_full_while_creating_the_store(tmp_path, capsys, monkeypatch):
    grid = _grid(tmp_path)
    store = tmp_path / "new" / "store"
    monkeypatch.setattr(_io, "atomic_write", _disk_full_after(10))
    rc, err = _cli(grid, store, capsys)
    monkeypatch.undo()
    assert rc == 2
    assert err == (f"fasthess: error: store {store}: {store / 'manifest.json'}: "
                   f"{os.strerror(errno.ENOSPC)}\n")
    assert sorted(os.listdir(tmp_path)) == ["g.toml"]  # the directories made are gone


def test_disk_full_while_writing_a_record_leaves_none_of_it(tmp_path, monkeypatch):
    st, keys = write_records(tmp_path / "s", [0])
    names, measures = check_measures(first_column)
    canon = normalize_config(_config(1), first_column)
    result = execute(canon, names, measures)
    record = make_record(key_of(canon, names), canon, names, result)
    real = _io.atomic_write
    full = _disk_full_after(50)

    def full_at_json(path, write, sync_dir=True):  # the arrays fit, the JSON does not
        (full if str(path).endswith(".json") else real)(path, write, sync_dir=sync_dir)

    monkeypatch.setattr(_io, "atomic_write", full_at_json)
    with pytest.raises(OSError) as info:
        st.write(record, result["arrays"])
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == str(st.records / f"{record['key']}.json")
    assert sorted(os.listdir(st.records)) == [f"{keys[0]}.json", f"{keys[0]}.npz"]
    assert [r["seed"] for r in load_sweep(st.path)] == [0]


# ---------------------------------------------------------------------- huge or deep grids
def test_huge_grid_is_refused_before_it_is_expanded(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"the grid has 1000000000 configurations "
                                         r"\(1000000000 seeds\), more than the "
                                         rf"{MAX_CONFIGS} one sweep takes"):
        expand_grid({"measure": "rank", "activation": "erf", "n": 3, "seeds": 10**9})
    with pytest.raises(ValueError, match=r"has 2000000000 configurations"):
        expand_grid({"measure": "rank", "activation": ["erf", "relu"], "n": 3,
                     "seeds": 10**9})
    with pytest.raises(ValueError, match=r"has 2000000000 configurations"):
        expand_grid({"measure": "rank", "seeds": 10**9, "configs": [
            {"activation": "erf", "n": 3}, {"activation": "relu", "n": 3}]})
    with pytest.raises(ValueError, match="seeds must be >= 0"):
        expand_grid({"measure": "rank", "activation": "erf", "n": 3, "seeds": -1})
    grid = tmp_path / "huge.toml"
    grid.write_text('measure = "rank"\nactivation = "erf"\nn = 3\nseeds = 1000000000\n')
    rc, err = _cli(grid, tmp_path / "s", capsys)
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith(f"fasthess: error: grid {grid}: the grid has 1000000000 "
                          f"configurations")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("suffix, text", [
    (".toml", 'measure = "rank"\nactivation = ' + "[" * 5000 + "]" * 5000 + "\n"),
    (".json", '{"measure": "rank", "activation": ' + "[" * 100000 + "]" * 100000 + "}"),
])
def test_deeply_nested_grid_file_is_a_clear_error(tmp_path, suffix, text):
    path = tmp_path / f"deep{suffix}"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(f"grid: cannot read {path}: it is nested "
                                                   f"too deeply")):
        read_grid(path)


def test_deeply_nested_grid_value_is_a_clear_error():
    deep = 0.5
    for _ in range(100000):  # parses as a value, but no check or repr can walk it
        deep = [deep]
    with pytest.raises(ValueError, match="a value of the grid is nested too deeply"):
        expand_grid({"measure": "rank", "n": 3, "activation": {"polynomial": [deep]}})
    with pytest.raises(ValueError, match="activation must be a name"):
        expand_grid({"measure": "rank", "n": 3, "activation": [deep]})
