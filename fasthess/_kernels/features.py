"""Per-sample features in one pass: the pre-activations X w1^T (fasthess's GEMM), then
g, g', g'' and the maxima the overflow guards read. Apart from the activation kernels so
that importing those (which ``import fasthess`` does) loads no BLAS."""
from __future__ import annotations

import math

from ._jit import kernel
from .activation import activate
from .blas import gemm_nt


@kernel
def feature_rows(code, coeffs, X, w1, pre, out_g, out_d1, out_d2, r0, r1, maxima):
    """Rows r0 .. r1 - 1 of the per-sample features in one pass over them: the
    pre-activations pre = X w1^T (fasthess's single-threaded GEMM), then g, g', g'' of them,
    and maxima[0..4] = max |pre|, |g|, |g'|, |g''|, |X| over those rows, each inf if
    a value is not finite (the overflow guards read them; separate passes cost as
    much as a cheap g). Serial: callers run row ranges on threads of their own."""
    if r1 <= r0:
        for k in range(5):
            maxima[k] = 0.0
        return
    gemm_nt(X[r0:r1], w1, 0.0, pre[r0:r1])
    n_cols = pre.shape[1]
    m_pre = 0.0
    m_g = 0.0
    m_d1 = 0.0
    m_d2 = 0.0
    m_x = 0.0
    finite = True
    for r in range(r0, r1):
        for i in range(X.shape[1]):
            m_x = max(m_x, abs(X[r, i]))
        for c in range(n_cols):
            z = pre[r, c]
            g, d1, d2 = activate(code, coeffs, z)
            out_g[r, c] = g
            out_d1[r, c] = d1
            out_d2[r, c] = d2
            finite = finite and math.isfinite(z) and math.isfinite(g) \
                and math.isfinite(d1) and math.isfinite(d2)
            m_pre = max(m_pre, abs(z))
            m_g = max(m_g, abs(g))
            m_d1 = max(m_d1, abs(d1))
            m_d2 = max(m_d2, abs(d2))
    maxima[0] = m_pre
    maxima[1] = m_g
    maxima[2] = m_d1
    maxima[3] = m_d2
    maxima[4] = m_x
    if not finite:  # which one is found again by the caller (rare: an error path)
        for k in range(4):
            maxima[k] = math.inf
