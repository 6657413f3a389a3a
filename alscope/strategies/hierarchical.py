"""Hierarchical sampling (Dasgupta & Hsu, ICML 2008).

*Hierarchical sampling for active learning.* A cluster tree is built over the labeled
and unlabeled embeddings; a *pruning* (a set of disjoint subtrees covering every sample)
labels each of its subtrees with one class. Queries are drawn from the pruning's nodes
in proportion to ``size x (1 - p_LB(label))``, the node's size times the lower
confidence bound of the fraction of its labeled samples that carry its label, and then
uniformly among the node's unlabeled samples: impure or unexplored clusters are queried,
pure ones are not.

As in the reference implementation (google/active-learning
``sampling_methods/hierarchical_clustering_AL.py``): ``p_LB, p_UB = p -+ (1/n +
sqrt(p (1 - p) / n))``; a label is *admissible* at a node when
``1 - p_LB(l) < beta x min_{l' != l} (1 - p_UB(l'))``; a node's error is ``1 - p`` for an
admissible label and 1 otherwise, and the node is split when its children's
size-weighted errors are lower and it and all its ancestors have an admissible label.

Memory stays linear in the pool: at most ``max_leaves`` leaves. Small pools (``N <=
max_leaves``) use every sample as a leaf; larger ones k-means (``alscope``'s chunked
k-means, seeded from the cycle's ``rng``) into ``max_leaves`` clusters first, and the
tree is Ward linkage (scipy) over those leaves' centroids.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from alscope.components import Params
from alscope.scenarios.base import OOD
from alscope.strategies._distances import as_tensor, kmeans
from alscope.strategies.base import PoolView, Requirements, Strategy


class HierarchicalParams(Params):
    beta: float = Field(
        default=2.0, gt=0.0, description="admissibility slack: larger admits labels more easily (official: 2)"
    )
    max_leaves: int = Field(
        default=2000,
        ge=2,
        description="most tree leaves: above this many samples the leaves are k-means clusters",
    )


def label_bounds(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per node (rows of class ``counts``): labeled count, empirical class fractions
    (uniform without labels) and their lower and upper confidence bounds."""
    n = counts.sum(axis=1)
    c = counts.shape[1]
    safe = np.maximum(n, 1)[:, None]
    p = np.where(n[:, None] > 0, counts / safe, 1.0 / c)
    delta = 1.0 / safe + np.sqrt(p * (1.0 - p) / safe)
    lb = np.where(n[:, None] > 0, np.clip(p - delta, 0.0, None), 0.0)
    ub = np.where(n[:, None] > 0, np.clip(p + delta, None, 1.0), 1.0)
    return n, p, lb, ub


def admissible(lb: np.ndarray, ub: np.ndarray, beta: float) -> np.ndarray:
    """``1 - lb[l] < beta * min_{l' != l} (1 - ub[l'])`` for every node and label."""
    alt = 1.0 - ub
    order = np.sort(alt, axis=1)
    lowest, second = order[:, :1], order[:, 1:2]
    # the minimum over the other labels: the lowest, unless l is the lowest itself
    other_min = np.where(alt == lowest, second, lowest)
    return (1.0 - lb) < beta * other_min


def hierarchical_weights(
    children: np.ndarray, leaf_counts: np.ndarray, leaf_sizes: np.ndarray, beta: float
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """The pruning of the tree (``children[i]`` are the two children of node
    ``n_leaves + i``, children before parents, as scipy's linkage numbers them), each
    pruning node's label and sampling weight ``size x (1 - p_LB(label))``."""
    k = len(leaf_counts)
    m = k + len(children)
    counts = np.zeros((m, leaf_counts.shape[1]))
    sizes = np.zeros(m)
    counts[:k], sizes[:k] = leaf_counts, leaf_sizes
    for i, (left, right) in enumerate(children):
        counts[k + i] = counts[left] + counts[right]
        sizes[k + i] = sizes[left] + sizes[right]
    _, p, lb, ub = label_bounds(counts)
    adm = admissible(lb, ub, beta)
    has_adm: np.ndarray = np.asarray(adm.any(axis=1))
    error = np.where(adm, 1.0 - p, 1.0)
    best = error.argmin(axis=1)
    score = error[np.arange(m), best]
    root = m - 1
    # all ancestors admissible (top-down), as the split rule requires
    anc_ok = np.zeros(m, dtype=bool)
    anc_ok[root] = True
    for i in range(len(children) - 1, -1, -1):
        v = k + i
        for c in children[i]:
            anc_ok[c] = anc_ok[v] and has_adm[v]
    split = np.zeros(m, dtype=bool)
    for i, (left, right) in enumerate(children):  # bottom-up
        v = k + i
        if has_adm[v] and anc_ok[v]:
            s = (sizes[left] * score[left] + sizes[right] * score[right]) / sizes[v]
            if s < score[v]:
                score[v], split[v] = s, True
    label = np.where(has_adm, best, -1)
    pruning: list[int] = []
    stack = [root]
    while stack:
        v = stack.pop()
        if split[v]:
            left, right = children[v - k]
            for c in (left, right):
                if label[c] < 0:  # no admissible label of its own: the parent's
                    label[c] = label[v]
            stack.extend([int(right), int(left)])
        else:
            pruning.append(v)
    # the root without any admissible label: the empirical majority (uniform: class 0)
    labels = np.array([label[v] if label[v] >= 0 else int(p[v].argmax()) for v in pruning])
    weights = sizes[pruning] * (1.0 - lb[pruning, labels])
    return pruning, labels, weights


class HierarchicalSampling(Strategy):
    """Dasgupta & Hsu's hierarchical sampling over a cluster tree of the embeddings."""

    component_name = "hierarchical"
    Params = HierarchicalParams

    def requirements(self) -> Requirements:
        return Requirements(embeddings=True, labeled_embeddings=True)

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        from scipy.cluster.hierarchy import linkage

        p: HierarchicalParams = self.params
        x = as_tensor(view.require("embeddings", self.component_name), view.device)
        lab = view.labeled_embeddings
        has_lab = lab is not None and len(lab) > 0
        lab_x = as_tensor(lab, view.device) if has_lab else x[:0]  # type: ignore[arg-type]
        targets = np.asarray(view.labeled_targets) if has_lab else np.zeros(0, dtype=np.int64)
        if len(targets) != len(lab_x):
            targets = np.zeros(len(lab_x), dtype=np.int64) + OOD
        allx = torch.cat([lab_x, x])
        n_all, n_lab = len(allx), len(lab_x)
        allx = allx - allx.mean(dim=0)
        if n_all <= p.max_leaves:
            leaf_of = np.arange(n_all)
            centres = allx.double().cpu().numpy()
        else:
            labels_t, centres_t, _ = kmeans(allx, p.max_leaves, rng)
            leaf_of = labels_t.cpu().numpy()
            used = np.unique(leaf_of)
            remap = np.full(p.max_leaves, -1)
            remap[used] = np.arange(len(used))
            leaf_of = remap[leaf_of]
            centres = centres_t[torch.from_numpy(used).to(centres_t.device)].double().cpu().numpy()
        k = len(centres)
        c = max(view.n_classes, 1)
        known = targets != OOD
        leaf_counts = np.zeros((k, c))
        np.add.at(leaf_counts, (leaf_of[:n_lab][known], targets[known].astype(np.int64)), 1.0)
        leaf_sizes = np.bincount(leaf_of, minlength=k).astype(np.float64)
        if k >= 2:
            children = linkage(centres, method="ward")[:, :2].astype(np.int64)
        else:
            children = np.zeros((0, 2), dtype=np.int64)
        pruning, _, weights = hierarchical_weights(children, leaf_counts, leaf_sizes, p.beta)
        # each pruning node's unlabeled samples (positions in the view)
        node_of_leaf = np.empty(k + len(children), dtype=np.int64)
        node_of_leaf[:] = -1
        for j, v in enumerate(pruning):
            node_of_leaf[v] = j
        for i in range(len(children) - 1, -1, -1):  # push pruning membership down to leaves
            v = k + i
            if node_of_leaf[v] >= 0:
                node_of_leaf[children[i]] = node_of_leaf[v]
        member = node_of_leaf[leaf_of[n_lab:]]
        order = np.argsort(member, kind="stable")
        bounds = np.searchsorted(member[order], np.arange(len(pruning) + 1))
        pools = [list(rng.permutation(order[bounds[j] : bounds[j + 1]])) for j in range(len(pruning))]
        w = weights.copy()
        w[[len(q) == 0 for q in pools]] = 0.0
        picks: list[int] = []
        while len(picks) < budget:
            total = w.sum()
            if total > 0:
                j = int(rng.choice(len(w), p=w / total))
            else:  # only zero weights left (e.g. every impure node exhausted): uniform
                j = int(rng.choice(np.flatnonzero([len(q) > 0 for q in pools])))
            picks.append(int(pools[j].pop()))
            if not pools[j]:
                w[j] = 0.0
        return view.unlabeled[np.asarray(picks, dtype=np.int64)]
