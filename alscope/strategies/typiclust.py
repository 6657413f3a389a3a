"""TypiClust: typical samples of uncovered clusters, for low budgets and cold starts.

Hacohen, Dekel & Weinshall, ICML 2022: *Active learning on a budget: opposite
strategies suit high and low budgets*. The labeled and unlabeled embeddings are
clustered by k-means into ``|L| + B`` clusters (at most ``max_clusters``); clusters are
visited in order of fewest labeled members, then largest size, and from each the most
*typical* unlabeled member is queried, typicality being the inverse mean squared
distance to its ``K`` nearest neighbours within the cluster,
``1 / (mean_{k-NN} |x - x'|^2 + 1e-5)``. Visiting goes round-robin when the budget
exceeds the clusters, as in the authors' code, which skips clusters of at most
``min_cluster_size`` samples; here those are used only once the others are spent.

It needs embeddings only, so it can choose the initial labeled set (``n_initial=0``):
the engine then hands it the inputs themselves.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from alscope.components import Params
from alscope.strategies._distances import (
    as_tensor,
    kmeans,
    knn_mean_sqdist,
    l2_normalize,
    select_sequentially,
)
from alscope.strategies.base import PoolView, Requirements, Strategy


class TypiClustParams(Params):
    k_neighbors: int = Field(
        default=20, ge=1, description="K of the typicality (at most half the cluster's unlabeled samples)"
    )
    max_clusters: int = Field(default=500, ge=1, description="cap on the |L| + B clusters (the authors' 500)")
    min_cluster_size: int = Field(
        default=5, ge=0, description="clusters of at most this many samples are visited last"
    )
    max_cluster_sample: int = Field(
        default=5000,
        ge=2,
        description="typicality of a larger cluster is computed among this many of its "
        "unlabeled samples, drawn at random",
    )
    normalize: bool = Field(
        default=True, description="L2-normalise the embeddings first (the authors' features are)"
    )
    max_iter: int = Field(default=20, ge=1, description="most Lloyd iterations of the k-means")


def embeddings_with_labeled(view: PoolView, strategy: str, normalize: bool) -> tuple[torch.Tensor, int]:
    """Unlabeled rows, then labeled rows (when there are any), on the run's device."""
    x = as_tensor(view.require("embeddings", strategy), view.device)
    lab = view.labeled_embeddings
    n_lab = 0
    if lab is not None and len(lab):
        x = torch.cat([x, as_tensor(lab, view.device)])
        n_lab = len(lab)
    return (l2_normalize(x) if normalize else x), n_lab


def typicality(x: torch.Tensor, k: int) -> torch.Tensor:
    """``1 / (mean squared distance to the k nearest other rows + 1e-5)``, with k at most
    half the rows (the authors' rule for small clusters)."""
    k = max(1, min(k, len(x) // 2))
    return 1.0 / (knn_mean_sqdist(x, k) + 1e-5)


class TypiClust(Strategy):
    """Most typical unlabeled sample of each uncovered cluster, largest clusters first."""

    component_name = "typiclust"
    Params = TypiClustParams

    def requirements(self) -> Requirements:
        return Requirements(embeddings=True, labeled_embeddings=True)

    @select_sequentially
    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        p = self.params
        x, n_lab = embeddings_with_labeled(view, self.component_name, p.normalize)
        n_unl = view.n_unlabeled
        k = min(n_lab + budget, p.max_clusters, len(x))
        labels_t, _, _ = kmeans(x, k, rng, max_iter=p.max_iter)
        labels = labels_t.cpu().numpy()
        sizes = np.bincount(labels, minlength=k)
        labeled_counts = np.bincount(labels[n_unl:], minlength=k)
        # fewest labeled first, then largest; the authors skip clusters of at most
        # min_cluster_size samples, which here are used only once the others are spent
        order = np.lexsort((-sizes, labeled_counts))
        small = sizes[order] <= p.min_cluster_size
        tiers = [order[~small], order[small & (sizes[order] > 0)]]
        members = [np.flatnonzero(labels[:n_unl] == c) for c in range(k)]
        available = [np.ones(len(m), bool) for m in members]
        chosen: list[int] = []
        for tier in tiers:
            while len(chosen) < budget:
                progressed = False
                for c in tier.tolist():  # round-robin over the tier
                    if len(chosen) == budget:
                        break
                    free = members[c][available[c]]
                    if len(free) == 0:
                        continue
                    if len(free) > p.max_cluster_sample:
                        free = np.sort(rng.choice(free, size=p.max_cluster_sample, replace=False))
                    best = int(free[0])
                    if len(free) > 1:
                        typ = typicality(x[torch.from_numpy(free).to(x.device)], p.k_neighbors)
                        best = int(free[int(typ.argmax())])
                    chosen.append(best)
                    available[c][np.searchsorted(members[c], best)] = False
                    progressed = True
                if not progressed:
                    break
        return view.unlabeled[np.asarray(chosen, dtype=np.int64)]
