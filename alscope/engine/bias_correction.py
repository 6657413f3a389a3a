"""PURE and LURE: unbiased risk estimators for actively acquired training sets.

Farquhar, Gal & Rainforth, ICLR 2021, "On Statistical Bias In Active Learning: How and
When to Fix It". Active acquisition makes the labeled set an unrepresentative sample of
the pool, so the plain mean of the training losses is a biased estimate of the
population risk. When sample ``m`` (of ``M`` acquired, in acquisition order) was drawn
with probability ``q_m`` from the ``N - m + 1`` samples still in the pool of ``N``:

* PURE: ``R = 1/M sum_m [ L_m / (N q_m) + 1/N sum_{t<m} L_t ]``, i.e. sample ``t``'s
  loss weighs ``1 / (N q_t) + (M - t) / N``;
* LURE: ``R = 1/M sum_m v_m L_m`` with
  ``v_m = 1 + (N - M) / (N - m) * (1 / ((N - m + 1) q_m) - 1)``.

Both need the acquisition probabilities, so only a stochastic strategy (one with a
:meth:`~alscope.strategies.base.Strategy.proposal`) can be corrected. The engine records
``q`` for every labeled sample in the trial state (the initial random set counts as
uniform draws, ``q_m = 1 / (N - m + 1)``, for which LURE's weights are exactly 1) and
recomputes the weights each cycle, since they depend on ``M``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np


def uniform_probabilities(n: int, n_pool: int) -> np.ndarray:
    """``q_m = 1 / (N - m + 1)`` for ``m = 1..n``: ``n`` uniform draws without replacement."""
    return 1.0 / (n_pool - np.arange(n, dtype=np.float64))


def bias_correction_weights(q: np.ndarray, n_pool: int, method: Literal["pure", "lure"]) -> np.ndarray:
    """Per-sample loss weights for samples acquired in order with probabilities ``q``
    from a pool of ``n_pool`` (``N``); ``M = len(q)``."""
    q = np.asarray(q, dtype=np.float64)
    m_total, n = len(q), float(n_pool)
    if m_total > n_pool:
        raise ValueError(f"{m_total} acquisitions from a pool of {n_pool}")
    if np.any(q <= 0) or np.any(q > 1):
        raise ValueError("acquisition probabilities must lie in (0, 1]")
    m = np.arange(1, m_total + 1, dtype=np.float64)
    if method == "pure":
        return 1.0 / (n * q) + (m_total - m) / n
    if method == "lure":
        # (N - M) / (N - m) is 0/0 only for m = M = N (the whole pool labeled): no bias left.
        ratio = np.divide(n - m_total, n - m, out=np.zeros_like(m), where=(n - m) > 0)
        return 1.0 + ratio * (1.0 / ((n - m + 1.0) * q) - 1.0)
    raise ValueError(f"unknown bias correction {method!r} (accepted: pure, lure)")
