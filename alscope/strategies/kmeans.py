"""k-means sampling: one representative per cluster of the unlabeled embeddings.

The k-means baseline of the core-set paper (Sener & Savarese, ICLR 2018) as DeepAL+
implements it (``KMeansSampling``): cluster the unlabeled pool's embeddings into
``budget`` clusters and query, from each cluster, the sample nearest to its centroid.
Lloyd's algorithm with k-means++ seeding runs in torch chunks on the run's device
(``O(N x k)`` work per iteration, ``O(N x D + k x D)`` memory).
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from alscope.components import Params
from alscope.strategies._distances import as_tensor, kmeans, min_sqdist, select_sequentially
from alscope.strategies.base import PoolView, Requirements, Strategy


class KMeansParams(Params):
    max_iter: int = Field(default=20, ge=1, description="most Lloyd iterations")
    tol: float = Field(
        default=1e-4,
        ge=0.0,
        description="stop when the squared centre shift is below tol x the mean feature variance",
    )


def representatives(
    x: torch.Tensor, labels: torch.Tensor, centres: torch.Tensor, d2: torch.Tensor
) -> np.ndarray:
    """Per cluster, the member nearest to its centre; a cluster left without members
    takes the nearest row not chosen yet. Positions, one per centre, distinct."""
    k = len(centres)
    order = torch.argsort(d2)  # nearest rows first
    lab = labels[order]
    # first occurrence of each label in distance order = its nearest member
    first = torch.full((k,), len(order), dtype=torch.long, device=x.device)
    first.scatter_reduce_(0, lab, torch.arange(len(order), device=x.device), reduce="amin")
    chosen = np.full(k, -1, dtype=np.int64)
    has = first < len(order)
    chosen[has.cpu().numpy()] = order[first[has]].cpu().numpy()
    missing = np.flatnonzero(chosen < 0)
    if len(missing):
        taken = np.zeros(len(x), bool)
        taken[chosen[chosen >= 0]] = True
        for c in missing.tolist():
            free = torch.from_numpy(np.flatnonzero(~taken)).to(x.device)
            _, pos = min_sqdist(centres[c : c + 1], x[free])
            j = int(free[int(pos[0])])
            chosen[c] = j
            taken[j] = True
    return chosen


class KMeansSampling(Strategy):
    """Cluster the unlabeled embeddings into ``budget`` clusters (k-means++ seeding with
    the cycle's generator, Lloyd iterations); query the sample nearest to each centroid."""

    component_name = "kmeans"
    Params = KMeansParams

    def requirements(self) -> Requirements:
        return Requirements(embeddings=True)

    @select_sequentially
    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        x = as_tensor(view.require("embeddings", self.component_name), view.device)
        x = x - x.mean(dim=0)
        labels, centres, d2 = kmeans(x, budget, rng, max_iter=self.params.max_iter, tol=self.params.tol)
        return view.unlabeled[representatives(x, labels, centres, d2)]
