"""Numerical rank of a spectrum: a documented tolerance and the gap that supports it."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from . import _config
from ._validation import check_bool, check_float_array, check_real

__all__ = ["numerical_rank", "RankResult", "UndeterminedRankWarning"]


class UndeterminedRankWarning(UserWarning):
    """:func:`numerical_rank` found no gap at its tolerance: zero and nonzero are not told apart.

    Examples
    --------
    >>> import warnings, fasthess as fh
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     r = fh.numerical_rank([3e-15, 1.0])    # 7x the tolerance 4.4e-16
    >>> r.undetermined, caught[0].category.__name__
    (True, 'UndeterminedRankWarning')
    """


@dataclass(frozen=True, eq=False)
class RankResult:
    """The result of :func:`numerical_rank`: a rank, its tolerance and the gap that supports it.

    ``int(r)`` and ``operator.index(r)`` give the rank; ``r == 7`` compares the rank.

    Attributes
    ----------
    rank : int
        Number of eigenvalues with ``|lambda| > tolerance``.
    tolerance : float
        ``rtol * max|lambda|``.
    rtol : float
        The relative tolerance used.
    gap_decades : float
        log10(smallest kept |lambda| / largest dropped |lambda|): how many decades
        separate "nonzero" from "zero". ``inf`` when nothing is dropped or every dropped
        eigenvalue is exactly 0; ``nan`` when nothing is kept (all eigenvalues are 0).
        Trust a rank only with a wide gap (> 8 decades, THEORY.md c).
    n_eigenvalues : int or None
        How many eigenvalues were examined (None if unknown).
    undetermined : bool
        True when the gap is under ``_config.RANK_MIN_GAP_DECADES`` (one decade), or,
        when nothing is dropped, the smallest eigenvalue is less than that above the
        tolerance: the eigenvalues run through the cut without a gap, so the rank
        depends on where the cut is put, not on H. Typical
        of float32 (round-off at ~1e-7 of the largest eigenvalue swamps genuine small
        eigenvalues). Recompute in float64, with ``method="svd"``, or use the
        tolerance-free :func:`fasthess.theory.exact_rank`.

    Examples
    --------
    >>> import fasthess as fh
    >>> r = fh.numerical_rank([1e-17, 0.5, 2.0])
    >>> r
    RankResult(rank=2 of 3, tolerance=1.33e-15, gap=16.7 decades)
    >>> int(r), r == 2, r.gap_summary
    (2, True, 'gap 16.7 decades')
    >>> fh.numerical_rank([0.5, 2.0]).gap_summary
    'full rank: no gap'
    """

    rank: int
    tolerance: float
    rtol: float
    gap_decades: float
    n_eigenvalues: int | None = None
    undetermined: bool = False

    @property
    def gap_summary(self) -> str:
        """The gap in words, e.g. ``'gap 12.3 decades'`` or ``'full rank: no gap'``.

        Examples
        --------
        >>> import fasthess as fh
        >>> fh.numerical_rank([0.0, 0.0, 1.0]).gap_summary
        'the dropped eigenvalues are exactly 0: no gap'
        """
        if self.undetermined:
            return (f"undetermined: no gap at the tolerance (gap {self.gap_decades:.1f} "
                    f"decades)" if math.isfinite(self.gap_decades)
                    else "undetermined: the smallest eigenvalue is within a decade of the tolerance")
        if math.isnan(self.gap_decades):
            return "all eigenvalues are 0: no gap"
        if math.isinf(self.gap_decades):
            if self.n_eigenvalues is None or self.rank == self.n_eigenvalues:
                return "full rank: no gap"
            return "the dropped eigenvalues are exactly 0: no gap"
        return f"gap {self.gap_decades:.1f} decades"

    def __int__(self):
        return self.rank

    def __index__(self):
        return self.rank

    def __eq__(self, other):
        if isinstance(other, RankResult):
            return (self.rank, self.tolerance, self.rtol) == (other.rank, other.tolerance,
                                                              other.rtol)
        if isinstance(other, (int, np.integer)) and not isinstance(other, bool):
            return self.rank == int(other)
        return NotImplemented

    def __hash__(self):
        return hash(self.rank)

    def __repr__(self):
        of = "" if self.n_eigenvalues is None else f" of {self.n_eigenvalues}"
        gap = (f"gap={self.gap_decades:.1f} decades" if math.isfinite(self.gap_decades)
               else self.gap_summary)
        flag = ", undetermined" if self.undetermined and math.isfinite(self.gap_decades) else ""
        return f"RankResult(rank={self.rank}{of}, tolerance={self.tolerance:.3g}, {gap}{flag})"


def numerical_rank(eigenvalues, rtol=None, *, warn=True) -> RankResult:
    """Count the eigenvalues that are nonzero to working precision, with the gap.

    Like :func:`numpy.linalg.matrix_rank`: an eigenvalue counts when
    ``|lambda| > tolerance = rtol * max|lambda|``.

    Parameters
    ----------
    eigenvalues : array_like, shape (n,), or Spectrum
        The spectrum, e.g. from :func:`fasthess.eigenvalues`. A Spectrum's
        multiplicities count: each value is one eigenvalue per multiplicity.
    rtol : float, optional
        Relative tolerance, >= 0. Default n * eps of the eigenvalues' dtype (n = D
        for a full spectrum; for a :class:`Spectrum`, its ``solved_size``, the order
        of the largest matrix decomposed, e.g. Nh (r + No) on the "reduced" route).
        For a :class:`Spectrum` from method "svd" the default
        is (n * eps)^2: there the error is eps * s_max on each singular value s,
        i.e. eps^2 * lambda_max on the eigenvalue scale (the matrix_rank rule
        applied to J).
    warn : bool, default True
        Warn (:class:`UndeterminedRankWarning`) when the rank is undetermined: a gap
        under one decade (``_config.RANK_MIN_GAP_DECADES``) at the tolerance, or, with
        nothing dropped, the smallest eigenvalue within a decade above it. ``False``
        for callers that read ``.undetermined`` themselves.

    Returns
    -------
    RankResult
        ``.rank``, ``.tolerance``, ``.rtol`` and ``.gap_decades``, the log10 ratio of
        the smallest kept to the largest dropped |lambda|: a rank is trustworthy only
        when it sits in a wide gap; ``.undetermined`` when it sits in none.

    Notes
    -----
    When to use ``method="svd"``: eigh of H resolves eigenvalues down to about 1e-16
    of the largest (backward error eps * ||H||), and zero modes come out at that
    level. Genuine eigenvalues can be smaller: erf and tanh networks, and cubic (or
    higher) polynomials at Nh >> Ni, have eigenvalues near 1e-10 relative and below
    (THEORY.md c), and a tiny coefficient (g = z + 1e-10 z^2) gives 1e-20. Singular
    values of J have absolute error eps * s_max, i.e. eigenvalues are resolved down
    to ~1e-30 relative, and zero modes come out near 1e-32. If the gap from eigh is
    small (a few decades) or the rank disagrees with
    :func:`fasthess.theory.effective_parameters`, recompute with
    ``eigenvalues(net, X, method="svd")``.

    Examples
    --------
    >>> import fasthess as fh
    >>> net = fh.TwoLayerNet.random(4, 5, activation="linear", rng=0)
    >>> r = fh.numerical_rank(fh.eigenvalues(net, fh.gaussian_inputs(100, 4, rng=1)))
    >>> int(r), bool(r.gap_decades > 8)       # No * Ni = 4 of D = 25
    (4, True)
    """
    # a Spectrum (fasthess.eigenvalues) carries its route; the svd route resolves more
    svd = getattr(eigenvalues, "method", None) == "svd"
    mult = getattr(eigenvalues, "multiplicities", None)
    if mult is not None:  # a Spectrum: its stored values, each with its multiplicity
        n = int(eigenvalues.solved_size)
        values = eigenvalues.values
    else:
        values = eigenvalues
    ev = check_float_array(values, "eigenvalues", ndim=1)
    if mult is None:
        mult = np.ones(ev.size, dtype=np.int64)
        n = ev.size
    total = int(mult.sum())
    eps = float(np.finfo(ev.dtype).eps)
    if rtol is None:
        rtol = n * eps
        if svd:
            rtol = rtol * rtol
    else:
        rtol = check_real(rtol, "rtol", nonnegative=True)
    warn = check_bool(warn, "warn")
    a = np.abs(ev.astype(np.float64))
    top = float(a.max())
    tol = rtol * top
    kept = a > tol
    rank = int(mult[kept].sum())
    if rank == 0:
        gap = math.nan
    elif rank == total:
        gap = math.inf
    else:
        small, big = float(a[kept].min()), float(a[~kept].max())
        gap = math.inf if big == 0.0 else math.log10(small / big)
    undetermined = _undetermined(a, kept, tol)
    result = RankResult(rank, tol, rtol, gap, total, undetermined)
    if undetermined and warn:
        warnings.warn(_undetermined_advice(result, ev.dtype, svd), UndeterminedRankWarning,
                      stacklevel=2)
    return result


def _undetermined(a, kept, tol) -> bool:
    """No gap at the cut: kept and dropped eigenvalues less than RANK_MIN_GAP_DECADES apart,
    or, when none is dropped, the smallest less than that above the tolerance.

    Round-off zeros lying close below the cut are normal (eigh puts them near eps
    lambda_max, the cut is n eps lambda_max); what matters is their distance to the
    smallest kept eigenvalue.
    """
    if tol == 0.0 or not np.any(kept):
        return False  # every eigenvalue exactly 0, or an rtol >= 1 that keeps none
    width = 10.0 ** _config.RANK_MIN_GAP_DECADES
    small = float(a[kept].min())
    if np.all(kept):
        return small < width * tol
    big = float(a[~kept].max())
    return big > 0.0 and small < width * big


def _undetermined_advice(r, dtype, svd) -> str:
    """The warning of an undetermined rank: what was seen and what to do."""
    eps = float(np.finfo(dtype).eps)
    fixes = []
    if dtype == np.float32:
        fixes.append("compute the eigenvalues in float64 (dtype=np.float64)")
    if not svd:
        fixes.append("use fasthess.eigenvalues(net, X, method='svd'), which resolves "
                     "eigenvalues down to ~eps^2 of the largest")
    fixes.append("use fasthess.theory.exact_rank for a rank without a tolerance")
    gap = (f"gap {r.gap_decades:.1f} decades" if math.isfinite(r.gap_decades)
           else "nothing dropped")
    return (f"numerical_rank: the rank {r.rank} of {r.n_eigenvalues} is undetermined: "
            f"no gap of {_config.RANK_MIN_GAP_DECADES:g} decade at the tolerance "
            f"{r.tolerance:.3g} ({gap}), so {np.dtype(dtype).name} (eps {eps:.2g}) "
            f"does not separate zero from nonzero eigenvalues here; " + "; or ".join(fixes))
