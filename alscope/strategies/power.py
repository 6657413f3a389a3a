"""Stochastic batch acquisition: sample the batch with probability proportional to score^beta.

Kirsch, Farquhar, Atighehchian, Jesson, Branchaud-Charron & Gal, TMLR 2023:
"Stochastic Batch Acquisition: A Simple Baseline for Deep Active Learning". Top-k
acquisition assumes that the scores of a batch's later points do not change as earlier
points are acquired; power acquisition instead draws the batch *without replacement*
from ``p(i) ∝ s_i ** beta``. The draw is the Gumbel-top-k trick: the ``budget`` largest
of ``beta * log s_i + g_i`` with ``g_i ~ Gumbel(0, 1)`` drawn from the cycle's
generator, so the same seed gives the same batch.

Power acquisition needs non-negative scores. Entropy and BALD are; for margin we use
``1 - (p_top1 - p_top2)`` in ``[0, 1]``, which orders samples exactly as margin
sampling does and is 0 only for a prediction that puts all its mass on one class.
A zero score has probability 0: such samples are drawn only when the budget exceeds
the samples with positive scores (then uniformly among them).
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from alscope.components import Params
from alscope.strategies.base import PoolView, Requirements, Strategy, top_k
from alscope.strategies.bayesian import SampledParams, bald_scores, chunked_mc
from alscope.strategies.uncertainty import chunked_probs, entropy_scores, margin_scores


def power_top_k(scores: np.ndarray, k: int, beta: float, rng: np.random.Generator) -> np.ndarray:
    """Positions of ``k`` samples drawn without replacement with ``p ∝ scores ** beta``.

    Gumbel-top-k on ``beta * log(score)``; scores <= 0 (and NaN) get ``-inf`` and come
    last, in random order.
    """
    s = np.asarray(scores, dtype=np.float64)
    positive = s > 0
    keys = np.full(len(s), -np.inf)
    keys[positive] = beta * np.log(s[positive]) + rng.gumbel(size=int(positive.sum()))
    return top_k(keys, k, rng)


class PowerParams(Params):
    beta: float = Field(
        default=1.0,
        ge=0.0,
        description="exponent of the scores: p(i) ∝ score^beta; 0 samples uniformly among "
        "positive scores, large values approach top-k",
    )


class PowerSampledParams(SampledParams, PowerParams):
    """``n_drop`` and ``beta``."""


class PowerAcquisition(Strategy):
    """Draws the batch with probability proportional to ``score(view) ** beta``."""

    Params = PowerParams

    def score(self, view: PoolView) -> torch.Tensor:
        """Non-negative informativeness of each unlabeled sample, ``(U,)``."""
        raise NotImplementedError

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        scores = self.score(view).detach().double().cpu().numpy()
        return view.unlabeled[power_top_k(scores, budget, self.params.beta, rng)]

    def proposal(self, view: PoolView) -> torch.Tensor:
        """``score ** beta``: Gumbel-top-k returns the picks in the order a sequential draw
        without replacement from these weights makes them, which is what PURE/LURE need."""
        s = self.score(view).detach().double().cpu()
        return torch.where(s > 0, s.clamp_min(1e-300) ** self.params.beta, torch.zeros_like(s))


def one_minus_margin_scores(probs: torch.Tensor) -> torch.Tensor:
    """``1 - (p_top1 - p_top2)`` in ``[0, 1]``: margin sampling's order, non-negative."""
    return 1.0 + margin_scores(probs)


class PowerEntropy(PowerAcquisition):
    component_name = "power_entropy"

    def requirements(self) -> Requirements:
        return Requirements(probs=True)

    def score(self, view: PoolView) -> torch.Tensor:
        return chunked_probs(view, self.component_name, entropy_scores)


class PowerMargin(PowerAcquisition):
    component_name = "power_margin"

    def requirements(self) -> Requirements:
        return Requirements(probs=True)

    def score(self, view: PoolView) -> torch.Tensor:
        return chunked_probs(view, self.component_name, one_minus_margin_scores)


class PowerBALD(PowerAcquisition):
    component_name = "power_bald"
    Params = PowerSampledParams

    def requirements(self) -> Requirements:
        return Requirements(mc_samples=self.params.n_drop)

    def score(self, view: PoolView) -> torch.Tensor:
        return chunked_mc(view, self.component_name, bald_scores, torch.float64)
