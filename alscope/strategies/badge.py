"""BADGE: batch active learning by diverse gradient embeddings.

Ash et al., ICLR 2020: *Deep batch active learning by diverse, uncertain gradient lower
bounds*. Each unlabeled sample's hypothetical last-layer gradient, taking its predicted
class as the label, is ``g_i = (p_i - onehot(yhat_i)) (x) h_i`` (``p`` the softmax
probabilities, ``h`` the penultimate embedding); the batch is k-means++ seeding over
these embeddings: the first centre is the largest gradient norm (as the reference
implementation does), each next one is drawn with probability proportional to the
squared distance to the nearest centre chosen so far.

The ``N x (C*D)`` gradient embeddings are never built: with ``a = p - onehot(yhat)``,
``|g_i - g_j|^2 = |a_i|^2|h_i|^2 + |a_j|^2|h_j|^2 - 2 (a_i.a_j)(h_i.h_j)``, so memory is
``O(N x (C + D))`` and ``C = 100`` costs about what ``C = 10`` does. The D^2 draws are
lazy and exact: a sample is proposed by its squared distance at the last full update
(an upper bound) and accepted with probability ``(current / stale)^2``, so the pool is
updated once per batch of centres, in blocked products, instead of once per centre.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from alscope.components import Params
from alscope.strategies._distances import (
    GradientSpace,
    as_tensor,
    gradient_factors,
    kmeans_pp,
    select_sequentially,
)
from alscope.strategies.base import PoolView, Requirements, Strategy


class BadgeParams(Params):
    lazy: bool = Field(
        default=True,
        description="draw by rejection against distances refreshed in batches of centres "
        "(False: one full pass per centre); both draw from exactly the k-means++ distribution",
    )


def gradient_space(view: PoolView, strategy: str) -> GradientSpace:
    """The factorised gradient embeddings ``(p - onehot(argmax p)) (x) h`` of the pool."""
    probs = as_tensor(view.require("probs", strategy), view.device)
    h = as_tensor(view.require("embeddings", strategy), view.device)
    return GradientSpace(gradient_factors(probs), h)


def gradient_distances(a: torch.Tensor, h: torch.Tensor, a2: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
    """``(len(a), len(a2))`` squared distances between gradient embeddings
    ``a (x) h`` and ``a2 (x) h2``, in factorised form (no ``C*D``-wide rows)."""
    sq1 = a.square().sum(1) * h.square().sum(1)
    sq2 = a2.square().sum(1) * h2.square().sum(1)
    return (sq1[:, None] + sq2[None, :] - 2.0 * (a @ a2.T) * (h @ h2.T)).clamp_min(0.0)


class Badge(Strategy):
    """k-means++ seeding over factorised gradient embeddings, first centre the largest
    gradient norm, then D^2 sampling with the cycle's generator."""

    component_name = "badge"
    Params = BadgeParams

    def requirements(self) -> Requirements:
        return Requirements(probs=True, embeddings=True)

    @select_sequentially
    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        space = gradient_space(view, self.component_name)
        first = int(torch.argmax(space.sq))
        # Grouping the pool buys nothing here: in the C*D-dimensional gradient space the
        # group radii are as large as the distances (measured), so no group is skipped.
        picks = kmeans_pp(space, budget, rng, first=first, n_groups=1, lazy=self.params.lazy)
        return view.unlabeled[picks]
