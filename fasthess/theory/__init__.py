"""Closed forms the measured spectra are compared with.

* Rank of the Hessian at a generic optimum, i.e. the effective number of
  parameters (:func:`effective_parameters`), and the exact generic rank computed
  over a finite field (:func:`exact_rank`), which certifies it without a tolerance.
* Linear networks: the exact reduced spectrum (:func:`linear_spectrum_exact`) and
  the large-size pooled eigenvalue density (:func:`linear_density`,
  :func:`linear_cdf`) built from the Marchenko-Pastur law
  (:func:`marchenko_pastur_pdf`) and a scaled chi-square (:func:`scaled_chi2_pdf`).

The mathematics, with what has been verified and how, is in THEORY.md
(sections b and c). Two modules: :mod:`fasthess.theory.ranks` (the rank formulas) and
:mod:`fasthess.theory.laws` (the spectral laws); this namespace holds both.
"""
from __future__ import annotations

from .laws import (linear_cdf, linear_density, linear_spectrum, linear_spectrum_exact,
                   marchenko_pastur_pdf, scaled_chi2_pdf)
from .ranks import SPORADIC_DEFECTS, effective_parameters, exact_rank

__all__ = [
    "effective_parameters",
    "exact_rank",
    "marchenko_pastur_pdf",
    "scaled_chi2_pdf",
    "linear_density",
    "linear_cdf",
    "linear_spectrum_exact",
    "SPORADIC_DEFECTS",
]
