"""Waiting without the GIL: how fasthess's own threads hand work to each other.

A thread that polls for its next piece of work from Python holds the GIL between
polls, and a thread blocked on a lock or a condition is woken through the kernel:
on a 2-core VM either costs 50-100 us per handoff, as long as a piece of an N = 10
Hessian. These kernels poll a flag in memory with the GIL released, giving the core
away between polls (``sched_yield``; ``SwitchToThread`` on Windows): a handoff then
takes a few microseconds.
"""
from __future__ import annotations

import sys

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._jit import kernel

# Called by symbol name, so that the kernels below stay cacheable on disk.
_YIELD_SYMBOL = "SwitchToThread" if sys.platform == "win32" else "sched_yield"


@intrinsic
def yield_core(typingctx):
    """Let another runnable thread have this core (returns the call's int result)."""
    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(32), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, _YIELD_SYMBOL)
        return builder.call(fn, [])
    return types.int32(), codegen


@kernel
def wait_for_change(flag, index, old, max_polls):
    """flag[index] once it differs from ``old``, polled at most ``max_polls`` times
    with the core yielded between polls; ``old`` if it never changed (the caller then
    sleeps on a condition). The load is repeated after each (opaque) call, so the
    compiler cannot hoist it out of the loop."""
    for _ in range(max_polls):
        value = flag[index]
        if value != old:
            return value
        yield_core()
    return flag[index]


@intrinsic
def memory_fence(typingctx):
    """A full memory fence: what one thread wrote before it is seen by another
    thread that sees what it wrote after (a no-op on x86 beyond ordering the compiler)."""
    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()
    return types.none(), codegen


@kernel
def finish_and_wait(flags, done_index, generation, max_polls):
    """Mark job ``generation`` done in flags[done_index] (after a fence: the job's
    outputs are visible first), then :func:`wait_for_change` of flags[0] (the next
    job's generation), all without the GIL: the thread that waits for this one
    takes the GIL back uncontended."""
    memory_fence()
    flags[done_index] = generation
    return wait_for_change(flags, 0, generation, max_polls)


@kernel
def wait_until_done(flags, done_indices, generation):
    """Poll until flags[i] == ``generation`` for every i in ``done_indices``, the core
    yielded between polls (no limit: the job is the caller's own and finishes)."""
    for i in done_indices:
        while flags[i] != generation:
            yield_core()
    memory_fence()
