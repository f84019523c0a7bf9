"""Shared setup for the asv suite: seeded problems, thread control, the DGEMM rate.

The grid: N = Ni = Nh in {10, 20, 40, 60}, P in
{D/4, 2D}, activations linear / quadratic / erf. Every ``setup`` warms the JIT so
``time_*`` measures steady state; compile time has its own ``timeraw_*`` benchmark.
NumPy is imported before fasthess, the order of a user's script.
"""
import os

import numpy  # noqa: F401  (first, as users import it)

import fasthess as fh

SIZES = [10, 20, 40, 60]
# The small networks that sweeps run by the thousand.
SMALL_SIZES = [10, 20, 30]
SAMPLE_RULES = ["D/4", "2D"]
ACTIVATIONS = ["linear", "quadratic", "erf"]
# One thread count for Numba and BLAS together (never more than the cores).
THREADS = int(os.environ.get("FASTHESS_NUM_THREADS", os.cpu_count() or 1))


def n_samples(rule: str, n_params: int) -> int:
    return max(1, n_params // 4) if rule == "D/4" else 2 * n_params


def problem(activation, n, rule, n_out=1, seed=0):
    fh.set_num_threads(THREADS)
    net = fh.TwoLayerNet.random(n, n, n_out=n_out, activation=activation, rng=seed)
    X = fh.gaussian_inputs(n_samples(rule, net.n_params), n, rng=seed + 1)
    return net, X
