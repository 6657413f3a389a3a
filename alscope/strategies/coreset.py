"""Core-set selection by greedy k-center.

Sener & Savarese, ICLR 2018: *Active learning for convolutional neural networks: a
core-set approach*. The labeled set is the initial set of centres; each pick is the
unlabeled sample farthest from every centre (``argmax_i min_j |x_i - x_j|``), which then
becomes a centre. This is the 2-approximation of the k-center problem that the paper
uses (its robust MIP refinement is :mod:`alscope.strategies.coreset_mip`).

Fast and exact on large pools (see :mod:`alscope.strategies._distances`): one
min-distance vector over the pool (``O(N x D)`` memory, never ``N x N`` or ``U x L``);
pool rows grouped once around seed rows, so that new centres skip every group the
triangle inequality rules out; a short list of the farthest rows that decides the picks
while it provably can, the pool being updated once per batch of picks; and the rare
float32 near-ties decided in float64, so the picks are those of an exact greedy.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from alscope.components import Params
from alscope.strategies._distances import (
    FeatureSpace,
    as_tensor,
    kcenter_greedy,
    project,
    row_mean,
    select_sequentially,
)
from alscope.strategies.base import PoolView, Requirements, Strategy


class CoresetParams(Params):
    projection: Literal["none", "pca", "random"] = Field(
        default="none",
        description="project the embeddings first: none, pca (principal axes, as DeepAL+'s "
        "KCenterGreedyPCA) or random (Gaussian Johnson-Lindenstrauss)",
    )
    projection_dim: int = Field(
        default=50, ge=1, description="dimensions kept by the projection (ignored for 'none')"
    )
    prune: bool = Field(
        default=True,
        description="skip work that cannot change a pick: pool groups the triangle inequality "
        "rules out, and full updates while a short list of the farthest samples decides "
        "(False: one full pass per pick; the picks are the same)",
    )


def pool_features(
    view: PoolView,
    strategy: str,
    projection: str = "none",
    projection_dim: int = 50,
    *,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Unlabeled and labeled embeddings on the run's device (projected when asked) and
    their common mean (to centre them on: distances are unchanged, float32 rounding
    shrinks; the tracker subtracts it from its own copy, so no extra copy is made)."""
    x = as_tensor(view.require("embeddings", strategy), view.device)
    lab = view.labeled_embeddings
    lab_t = as_tensor(lab, view.device) if lab is not None and len(lab) else None
    others = [lab_t] if lab_t is not None else []
    x, others = project(x, others, projection, projection_dim, rng)
    lab_t = others[0] if others else None
    return x, lab_t, row_mean([x] if lab_t is None else [x, lab_t]).float()


class CoreSet(Strategy):
    """Greedy k-center over the penultimate embeddings, starting from the labeled set.

    With nothing labeled (cold start: the embeddings are then the inputs themselves)
    the first centre is a uniformly drawn unlabeled sample.
    """

    component_name = "coreset"
    Params = CoresetParams

    def requirements(self) -> Requirements:
        return Requirements(embeddings=True, labeled_embeddings=True)

    @select_sequentially
    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        p = self.params
        x, lab, mean = pool_features(view, self.component_name, p.projection, p.projection_dim, rng=rng)
        picks, _ = kcenter_greedy(
            FeatureSpace(x),
            budget,
            rng,
            centres=FeatureSpace(lab) if lab is not None else None,
            n_groups=None if p.prune else 1,
            lazy=p.prune,
            shift=mean,
        )
        return view.unlabeled[picks]
