"""KeyboardInterrupt (Ctrl-C, a notebook's interrupt button) at random moments: child
processes computing products, the NTK, dense and population assembly are interrupted
about eight times each. After each interrupt, canary arrays (and arrays allocated
right after it) stay untouched; no child dies by a signal; each interrupt acts within
a second; at the end a child's results equal a fresh process's, its thread settings
are those it started with and its pieces run on several threads again."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CHILD = r"""
import json, os, sys, threading, time
import numpy as np
import fasthess as fh
from fasthess import _runtime
from threadpoolctl import threadpool_info

def blas_counts():  # the shared BLAS libraries (not fasthess's private GEMM)
    return sorted(i["num_threads"] for i in threadpool_info()
                  if i["user_api"] == "blas" and "scipy_openblas32" not in i["filepath"])

rng = np.random.default_rng(0)
net40 = fh.TwoLayerNet.random(40, 40, rng=1)
X40 = fh.gaussian_inputs(2 * net40.n_params, 40, rng=2)
net20 = fh.TwoLayerNet.random(20, 20, n_out=2, rng=3)
X20 = fh.gaussian_inputs(2 * net20.n_params, 20, rng=4)
teacher20 = fh.TwoLayerNet.random(20, 20, n_out=2, rng=5)
net_ntk = fh.TwoLayerNet.random(30, 20, rng=6)
X_ntk = fh.gaussian_inputs(3000, 30, rng=7)
pop = fh.TwoLayerNet.random(400, 400, rng=8)
pop_dense = fh.TwoLayerNet.random(50, 50, rng=9)
V40 = rng.standard_normal((net40.n_params, 400))
Vpop = rng.standard_normal((pop.n_params, 8))

def final_results():
    return {"H20": fh.hessian(net20, X20, teacher=teacher20),
            "HV": fh.hessian_operator(net40, X40) @ V40[:, :20],
            "K": fh.ntk(net_ntk, X_ntk[:500]),
            "pop": fh.hessian_operator(pop, fh.POPULATION) @ Vpop[:, :2]}

if sys.argv[1] == "fresh":
    np.savez(sys.argv[2], **final_results())
    sys.exit(0)

works = [
    lambda: fh.hessian_operator(net40, X40) @ V40,
    lambda: fh.ntk(net_ntk, X_ntk),
    lambda: fh.hessian(net40, X40),
    lambda: fh.hessian(net20, X20, teacher=teacher20),
    lambda: fh.hessian(pop_dense, fh.POPULATION),
    lambda: fh.hessian_operator(pop, fh.POPULATION) @ Vpop,
]
canaries = [np.full(n, float(k + 1)) for k, n in enumerate((1000, 10**5, 10**6, 3 * 10**6))]
start = {"blas": blas_counts(), "budget": fh.get_num_threads()}
for w in works:  # compiled and warm before the first interrupt
    w()
interrupts, latencies, bad = 0, [], []

def guarded(fn):
    global interrupts
    while True:
        try:
            return fn()
        except KeyboardInterrupt:
            interrupts += 1

def verify():
    for k, c in enumerate(canaries):
        if not (c == float(k + 1)).all():
            bad.append(f"canary {k} overwritten")
    probes = [np.full(n, -3.0) for n in (10**4, 10**6, 4 * 10**6)]
    time.sleep(0.05)
    for p in probes:
        if not (p == -3.0).all():
            bad.append("an array allocated after the interrupt was overwritten")

print("READY", flush=True)
k = done = 0
while True:
    try:  # the whole step: an interrupt may also fall between two computations
        if os.path.exists(sys.argv[2]):
            break
        k += 1  # the next interrupt falls in the next kind of computation
        works[k % len(works)]()
        done += 1
    except KeyboardInterrupt:
        latencies.append(time.monotonic())
        interrupts += 1
        guarded(verify)
        guarded(lambda: print("CAUGHT", latencies[-1], flush=True))

def finish():
    results = final_results()
    seen = set()
    _runtime.run_pieces(lambda i: (seen.add(threading.get_ident()), time.sleep(0.02)), 8, 2)
    np.savez(sys.argv[3], **results)
    print(json.dumps({"interrupts": interrupts, "caught": latencies, "bad": bad,
                      "start": start, "end": {"blas": blas_counts(),
                                              "budget": fh.get_num_threads()},
                      "threads_used": len(seen), "works_done": done, "works_started": k}),
          flush=True)

guarded(finish)
"""


def _env():
    return {**os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}


def _interrupt_child(tmp_path, name, n_interrupts, seed):
    stop, out = tmp_path / f"{name}.stop", tmp_path / f"{name}.npz"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, "storm", str(stop), str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=_env(), cwd=ROOT)
    try:
        assert child.stdout.readline().strip() == "READY"
        chooser = random.Random(seed)
        sent, caught = [], []
        for _ in range(n_interrupts):
            time.sleep(chooser.uniform(0.05, 0.7))  # a random moment of some computation
            sent.append(time.monotonic())
            child.send_signal(signal.SIGINT)
            # the next one once this one is handled (two at once would be one exception)
            line = child.stdout.readline().split()
            if line[:1] != ["CAUGHT"]:  # the child ended: say how
                child.kill()
                _, err = child.communicate()
                raise AssertionError(f"no CAUGHT after interrupt {len(sent)}: {line}; "
                                     f"exit {child.returncode}; stderr: {err[-2000:]}")
            caught.append(float(line[1]))
        stop.touch()
        stdout, stderr = child.communicate(timeout=600)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()  # (closes the pipes)
    return child.returncode, stdout, stderr, sent, caught, out


@pytest.mark.parametrize("seed", [1, 2])
def test_an_interrupt_storm_leaves_the_process_as_a_fresh_one(tmp_path, seed):
    import numpy as np

    fresh = tmp_path / "fresh.npz"
    subprocess.run([sys.executable, "-c", _CHILD, "fresh", str(fresh)], check=True,
                   env=_env(), cwd=ROOT, timeout=600)
    code, stdout, stderr, sent, caught, out = _interrupt_child(tmp_path, f"storm{seed}", 8,
                                                               seed)
    assert code == 0, (code, stderr[-3000:])  # no death by a signal, no crash
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["bad"] == []
    assert report["interrupts"] == len(sent)  # every interrupt was seen, once
    # each acted soon after it was sent (the clock is the machine's monotonic one): on an
    # idle machine or beside one busy process within a second (bench/runtime.py measures
    # it); the bound here holds on a machine loaded several times over, where a piece
    # in flight takes several times as long (seen: up to 1.07 s at a load of 9 on 2
    # cores), and still catches an interrupt that waits for a whole product (8-13 s)
    latencies = [c - s for s, c in zip(sent, caught)]
    assert max(latencies) < 3.0, latencies
    assert report["end"] == report["start"]  # BLAS counts and the thread budget
    assert report["threads_used"] == min(2, os.cpu_count() or 1)
    got, expected = np.load(out), np.load(fresh)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
