"""Single-pass uncertainty sampling on the predicted class distribution.

Lewis & Gale (1994) "A sequential algorithm for training text classifiers" (least
confidence); Scheffer et al. (2001) "Active hidden Markov models for information
extraction" (margin); Shannon entropy as in Settles (2009) "Active Learning
Literature Survey"; the margin ratio p2/p1 ("ratio of confidence", Monarch (2021)
"Human-in-the-Loop Machine Learning"). Each scores ``(U, C)`` probabilities in torch
chunks on the run's device; higher scores are queried first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch

from alscope.strategies.base import PoolView, Requirements, ScoringStrategy

_CHUNK = 65_536


def chunked_probs(view: PoolView, strategy: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``fn`` applied to ``view.probs`` in row chunks on ``view.device``; ``(U,)`` on the CPU."""
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


def ratio_scores(probs: torch.Tensor) -> torch.Tensor:
    """p_top2 / p_top1 in [0, 1]: 1 when the two likeliest classes tie, 0 when one class
    takes all the mass (or there is a single class)."""
    if probs.shape[1] < 2:
        return torch.zeros(len(probs), dtype=probs.dtype, device=probs.device)
    top2 = probs.topk(2, dim=1).values
    return top2[:, 1] / top2[:, 0].clamp_min(torch.finfo(probs.dtype).tiny)


class ProbabilityScoring(ScoringStrategy):
    """Scores each unlabeled sample by a function of its predicted class distribution."""

    scores_of: ClassVar[staticmethod[[torch.Tensor], torch.Tensor]]

    def requirements(self) -> Requirements:
        return Requirements(probs=True)

    def score(self, view: PoolView) -> torch.Tensor:
        return chunked_probs(view, self.component_name, type(self).scores_of)


class LeastConfidence(ProbabilityScoring):
    component_name = "least_confidence"
    scores_of = staticmethod(least_confidence_scores)


class MarginSampling(ProbabilityScoring):
    component_name = "margin"
    scores_of = staticmethod(margin_scores)


class EntropySampling(ProbabilityScoring):
    component_name = "entropy"
    scores_of = staticmethod(entropy_scores)


class MarginRatio(ProbabilityScoring):
    """Margin ratio: the second-likeliest class's probability over the likeliest's.

    Scale-free where margin is not: ``[.45 .35 .2]`` and ``[.3 .2 .2 .2 .1]`` have the same
    margin (.1), but ratios .78 and .67, so the ratio prefers the first. Higher is more
    uncertain (Monarch, 2021, "ratio of confidence").
    """

    component_name = "ratio"
    scores_of = staticmethod(ratio_scores)
