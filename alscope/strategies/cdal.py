"""CDAL: contextual diversity, selected by greedy k-center.

Agarwal, Arora, Anand & Arora, ECCV 2020, *Contextual diversity for active learning*;
official code github.com/sharat29ag/CDAL (``CDAL_CS.py``, ``preprocess.py``). A sample's
*context* for class ``c`` is the (entropy-weighted) mean of the softmax vectors of its
regions predicted as ``c``; two samples differ by the symmetric KL divergence between
their contexts, averaged over the classes both have. CDAL-CS then runs Sener &
Savarese's greedy k-center under that distance, from the labeled set.

For image (and text) classification a sample is one region: its context is its softmax
vector ``p`` itself, for its predicted class. As DeepCore's and DeepAL+'s
classification ports do, the distance is the symmetric KL between the two probability
vectors, ``d(a, b) = 1/2 sum_c (a_c - b_c)(log a_c - log b_c)``, whatever the two
predicted classes (the per-class average of the paper would be empty, hence 0, for two
samples predicted differently, and k-center would then never prefer a new class).

``d`` splits into inner products, ``1/2 (h_a + h_b - a . log b - b . log a)`` with
``h = p . log p``, so the distances from every candidate to a block of centres are two
matrix products, and the greedy loop costs one ``(N, C)`` pass per pick: memory and
time linear in the pool.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pydantic import Field

from alscope.components import Params
from alscope.strategies._distances import as_tensor, rows_per_block, select_sequentially
from alscope.strategies.base import PoolView, Requirements, Strategy


class CDALParams(Params):
    eps: float = Field(
        default=1e-8,
        gt=0.0,
        lt=0.1,
        description="probabilities are clipped to at least eps before the logarithm "
        "(the official code drops the NaN and infinite terms instead)",
    )


class ProbabilitySpace:
    """Softmax rows with their logarithms, for symmetric-KL distances by inner products."""

    def __init__(self, probs: torch.Tensor, eps: float) -> None:
        p = probs.double().clamp_min(eps)
        self.p = p / p.sum(dim=1, keepdim=True)
        self.log_p = self.p.log()
        self.h = (self.p * self.log_p).sum(dim=1)

    def __len__(self) -> int:
        return len(self.p)

    def to(self, rows: slice | torch.Tensor, other: ProbabilitySpace) -> torch.Tensor:
        """``(rows, len(other))`` symmetric KL divergences."""
        d = self.h[rows, None] + other.h[None, :]
        d -= self.p[rows] @ other.log_p.T
        d -= self.log_p[rows] @ other.p.T
        return d.mul_(0.5).clamp_min_(0.0)

    def to_row(self, j: int) -> torch.Tensor:
        """``(N,)`` symmetric KL divergences of every row to row ``j``."""
        d = self.h + self.h[j] - torch.mv(self.p, self.log_p[j]) - torch.mv(self.log_p, self.p[j])
        return d.mul_(0.5).clamp_min_(0.0)


def contextual_kcenter(
    candidates: ProbabilitySpace,
    budget: int,
    rng: np.random.Generator,
    centres: ProbabilitySpace | None = None,
) -> np.ndarray:
    """Greedy k-center under the symmetric KL: repeatedly the candidate farthest from
    every centre (the labeled set first; without one, a random first candidate). Exact
    ties go to the lowest row."""
    n = len(candidates)
    nearest = torch.full((n,), math.inf, dtype=torch.float64, device=candidates.p.device)
    if centres is not None and len(centres):
        step = rows_per_block(len(centres))
        for r0 in range(0, n, step):
            rows = slice(r0, min(n, r0 + step))
            nearest[rows] = candidates.to(rows, centres).min(dim=1).values
    picks: list[int] = []
    taken = torch.zeros(n, dtype=torch.bool, device=nearest.device)
    for _ in range(budget):
        if not picks and not torch.isfinite(nearest).any():
            j = int(rng.integers(n))
        else:
            j = int(torch.where(taken, -1.0, nearest).argmax())
        picks.append(j)
        taken[j] = True
        nearest = torch.minimum(nearest, candidates.to_row(j))
    return np.asarray(picks, dtype=np.int64)


class CDAL(Strategy):
    """Greedy k-center over the softmax vectors under the symmetric KL divergence,
    starting from the labeled set (CDAL-CS for classification)."""

    component_name = "cdal"
    Params = CDALParams

    def requirements(self) -> Requirements:
        return Requirements(probs=True, labeled_probs=True)

    @select_sequentially
    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        who = self.component_name
        probs = as_tensor(view.require("probs", who), view.device)
        candidates = ProbabilitySpace(probs, self.params.eps)
        centres = None
        known = view.labeled_known(who)
        if len(known):
            labeled = as_tensor(view.require("labeled_probs", who)[torch.from_numpy(known)], view.device)
            centres = ProbabilitySpace(labeled, self.params.eps)
        return view.unlabeled[contextual_kcenter(candidates, budget, rng, centres)]
