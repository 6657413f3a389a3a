"""Cluster-Margin: lowest-margin samples spread round-robin over HAC clusters.

Citovsky et al., NeurIPS 2021: *Batch active learning at scale*. The pool is clustered
once, by hierarchical agglomerative clustering with average linkage cut at a distance
threshold ``epsilon``, from the embeddings of the first model; the clusters are reused in
every later round. Each round takes the ``k_m = margin_multiplier x budget`` unlabeled
samples with the smallest margin between the two likeliest classes, groups them by
cluster, sorts those groups by size, smallest first, and picks one random sample from
each in turn (round-robin), until ``budget`` samples are chosen.

Keeping HAC affordable: average linkage needs all pairwise distances of what it
clusters, so it runs on at most ``max_hac_samples`` unlabeled samples (all of them in a
smaller pool, else a random subset); every other pool sample joins the cluster whose
centroid is nearest. Memory is ``O(max_hac_samples^2)`` once, ``O(N)`` afterwards. The
cluster of every pool sample is part of the strategy's state, so a resumed run reuses
the same clusters.
"""

from __future__ import annotations

import base64
import math
import zlib
from typing import Any

import numpy as np
import torch
from pydantic import Field

from alscope.components import Params
from alscope.strategies._distances import as_tensor, assign, is_big, parallel, select_sequentially, sqdist
from alscope.strategies.base import PoolView, Requirements, Strategy, top_k
from alscope.strategies.uncertainty import margin_scores


class ClusterMarginParams(Params):
    margin_multiplier: float = Field(
        default=10.0, ge=1.0, description="k_m / budget: how many lowest-margin samples are spread"
    )
    distance_threshold: float | None = Field(
        default=None,
        gt=0.0,
        description="HAC cut (epsilon, in embedding units); default: cut into as many clusters "
        "as the first query's budget",
    )
    max_hac_samples: int = Field(
        default=5000, ge=2, description="samples clustered by HAC; the rest join the nearest centroid"
    )


def _pack(a: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(np.ascontiguousarray(a, dtype=np.int64).tobytes())).decode()


def _unpack(s: str) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(s)), dtype=np.int64).copy()


def hac_average(x: torch.Tensor, threshold: float | None, n_clusters: int) -> np.ndarray:
    """Average-linkage HAC labels (0..k-1) of the rows of ``x``: cut at ``threshold``,
    or into ``n_clusters`` clusters when no threshold is given."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    n = len(x)
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    xd = x.double()
    with parallel(is_big(n, n, x.shape[1])):
        dist = sqdist(xd, xd).sqrt_().cpu().numpy()
    np.fill_diagonal(dist, 0.0)
    tree = linkage(squareform(dist, checks=False), method="average")
    del dist
    if threshold is not None:
        labels = fcluster(tree, t=threshold, criterion="distance")
    else:
        labels = fcluster(tree, t=max(1, min(n_clusters, n)), criterion="maxclust")
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


class ClusterMargin(Strategy):
    """Margin sampling over ``margin_multiplier x budget`` candidates, diversified by
    round-robin over average-linkage HAC clusters computed once, smallest first."""

    component_name = "cluster_margin"
    Params = ClusterMarginParams

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._pool: np.ndarray | None = None  # dataset indices, sorted
        self._clusters: np.ndarray | None = None  # their clusters

    def requirements(self) -> Requirements:
        return Requirements(probs=True, embeddings=True)

    # state: the clusters outlive the cycle (and a resume)

    def state_dict(self) -> dict[str, Any]:
        if self._pool is None or self._clusters is None:
            return {}
        return {"pool": _pack(self._pool), "clusters": _pack(self._clusters)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("pool") and state.get("clusters"):
            self._pool, self._clusters = _unpack(state["pool"]), _unpack(state["clusters"])

    def cluster_pool(self, view: PoolView, budget: int, rng: np.random.Generator) -> None:
        """HAC (average linkage) over at most ``max_hac_samples`` unlabeled samples; every
        other one joins the cluster with the nearest centroid."""
        p = self.params
        x = as_tensor(view.require("embeddings", self.component_name), view.device)
        n = len(x)
        if n <= p.max_hac_samples:
            sub = np.arange(n)
        else:
            sub = np.sort(rng.choice(n, size=p.max_hac_samples, replace=False))
        sub_t = torch.from_numpy(sub).to(x.device)
        sub_labels = hac_average(x[sub_t], p.distance_threshold, budget)
        labels = np.empty(n, dtype=np.int64)
        labels[sub] = sub_labels
        if len(sub) < n:
            k = int(sub_labels.max()) + 1
            lab_t = torch.from_numpy(sub_labels).to(x.device)
            sums = torch.zeros(k, x.shape[1], device=x.device).index_add_(0, lab_t, x[sub_t])
            centroids = sums / torch.bincount(lab_t, minlength=k).clamp_min(1)[:, None]
            rest = np.setdiff1d(np.arange(n), sub)
            nearest, _ = assign(x[torch.from_numpy(rest).to(x.device)], centroids)
            labels[rest] = nearest.cpu().numpy()
        order = np.argsort(view.unlabeled)
        self._pool, self._clusters = view.unlabeled[order], labels[order]

    def clusters_of(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        cached = self._pool is not None and self._clusters is not None
        if cached:
            assert self._pool is not None and self._clusters is not None
            pos = np.searchsorted(self._pool, view.unlabeled)
            pos = np.minimum(pos, len(self._pool) - 1)
            if np.array_equal(self._pool[pos], view.unlabeled):
                return self._clusters[pos]
        # first round (or a pool this strategy has not clustered): cluster it once
        self.cluster_pool(view, budget, rng)
        return self.clusters_of(view, budget, rng)

    @select_sequentially
    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        clusters = self.clusters_of(view, budget, rng)
        probs = as_tensor(view.require("probs", self.component_name), view.device)
        scores = margin_scores(probs).cpu().numpy()  # -(p1 - p2): higher = smaller margin
        k_m = min(view.n_unlabeled, max(budget, math.ceil(self.params.margin_multiplier * budget)))
        candidates = top_k(scores, k_m, rng)
        return view.unlabeled[round_robin(clusters[candidates], candidates, budget, rng)]


def round_robin(
    cand_clusters: np.ndarray, candidates: np.ndarray, budget: int, rng: np.random.Generator
) -> np.ndarray:
    """The paper's sampling: candidate groups by cluster, smallest group first (ties in
    random order), one random member of each group in turn until ``budget``."""
    ids, sizes = np.unique(cand_clusters, return_counts=True)
    shuffle = rng.permutation(len(ids))
    ids, sizes = ids[shuffle], sizes[shuffle]
    ids = ids[np.argsort(sizes, kind="stable")]
    groups = [rng.permutation(candidates[cand_clusters == c]) for c in ids]
    chosen: list[int] = []
    depth = 0
    while len(chosen) < budget:
        for g in groups:
            if depth < len(g):
                chosen.append(int(g[depth]))
                if len(chosen) == budget:
                    break
        depth += 1
    return np.asarray(chosen, dtype=np.int64)
