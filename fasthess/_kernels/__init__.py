"""Numba kernels: pure functions of contiguous arrays and ints, writing into
caller-allocated outputs, never validating. Public modules import them lazily
(inside functions) so ``import fasthess`` compiles nothing."""
