"""Single-pass uncertainty sampling on the predicted class distribution.

Lewis & Gale (1994) "A sequential algorithm for training text classifiers" (least
confidence); Scheffer et al. (2001) "Active hidden Markov models for information
extraction" (margin); Shannon entropy as in Settles (2009) "Active Learning
Literature Survey". Each scores ``(U, C)`` probabilities in torch chunks on the run's
device; higher scores are queried first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch

from alscope.strategies.base import PoolView, Requirements, ScoringStrategy

_CHUNK = 65_536


def _chunked(view: PoolView, strategy: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    probs = view.require("probs", strategy)
    out = torch.empty(len(probs), dtype=torch.float32)
    for start in range(0, len(probs), _CHUNK):
        chunk = probs[start : start + _CHUNK].to(view.device, torch.float32)
        out[start : start + _CHUNK] = fn(chunk).cpu()
    return out


def least_confidence_scores(probs: torch.Tensor) -> torch.Tensor:
    """1 - max_c p(c|x)."""
    return 1.0 - probs.max(dim=1).values


def margin_scores(probs: torch.Tensor) -> torch.Tensor:
    """-(p_top1 - p_top2): a small margin between the two likeliest classes is informative."""
    top2 = (
        probs.topk(2, dim=1).values
        if probs.shape[1] > 1
        else torch.cat([probs, torch.zeros_like(probs)], dim=1)
    )
    return -(top2[:, 0] - top2[:, 1])


def entropy_scores(probs: torch.Tensor) -> torch.Tensor:
    """-sum_c p log p, with 0 log 0 = 0."""
    return -(torch.special.xlogy(probs, probs)).sum(dim=1)


class ProbabilityScoring(ScoringStrategy):
    """Scores each unlabeled sample by a function of its predicted class distribution."""

    scores_of: ClassVar[staticmethod[[torch.Tensor], torch.Tensor]]

    def requirements(self) -> Requirements:
        return Requirements(probs=True)

    def score(self, view: PoolView) -> torch.Tensor:
        return _chunked(view, self.component_name, type(self).scores_of)


class LeastConfidence(ProbabilityScoring):
    component_name = "least_confidence"
    scores_of = staticmethod(least_confidence_scores)


class MarginSampling(ProbabilityScoring):
    component_name = "margin"
    scores_of = staticmethod(margin_scores)


class EntropySampling(ProbabilityScoring):
    component_name = "entropy"
    scores_of = staticmethod(entropy_scores)
