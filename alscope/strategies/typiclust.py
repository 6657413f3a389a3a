"""TypiClust: typical samples of uncovered clusters, for low budgets and cold starts.

Hacohen, Dekel & Weinshall, ICML 2022: *Active learning on a budget: opposite
strategies suit high and low budgets* (official code github.com/avihu111/TypiClust,
``deep-al/pycls/al/typiclust.py``). The labeled and unlabeled embeddings are clustered
by k-means into ``|L| + B`` clusters (at most ``max_clusters``); clusters are visited in
order of fewest labeled members, then largest size, and from each the most *typical*
unlabeled member is queried, typicality being the inverse mean squared distance to its
``K`` nearest neighbours within the cluster, ``1 / (mean_{k-NN} |x - x'|^2 + 1e-5)``.
Visiting goes round-robin when the budget exceeds the clusters, as in the authors' code,
which skips clusters of at most ``min_cluster_size`` samples; here those are used only
once the others are spent.

Embeddings (``embedding``): the authors cluster L2-normalised self-supervised features
of the pool (SimCLR trained by SCAN's pretext step for CIFAR and TinyImageNet, DINO for
ImageNet), never the classifier's. ``embedding="simclr"`` (the default) asks the engine
for SimCLR embeddings of the pool (:class:`~alscope.strategies.base.SSLRequest`, trained
once per pool on the unlabeled data and cached, ``alscope.ssl``); they need no trained
model, so the strategy can choose the initial labeled set (``n_initial=0``).
``embedding="model"`` reads the classifier's penultimate embeddings, or the inputs
themselves at cold start. A view built outside the engine without SimCLR embeddings
(:meth:`PoolView.from_arrays`) falls back to its ``embeddings`` with a warning: a
library user's own features are what they handed over. Unlike the authors' features
(SCAN's backbone output before the projection head, 500 epochs), ``alscope.ssl`` gives the
normalised projection-head output of a short schedule (docs/strategies-diversity.md).
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from alscope.components import Params
from alscope.errors import ModelError
from alscope.strategies._distances import (
    as_tensor,
    kmeans,
    knn_mean_sqdist,
    l2_normalize,
    select_sequentially,
)
from alscope.strategies.base import PoolView, Requirements, SSLRequest, Strategy

#: the self-supervised method ``embedding="simclr"`` asks for
SSL_METHOD = "simclr"


class EmbeddingParams(Params):
    """Where TypiClust and ProbCover take their embedding space from."""

    embedding: Literal["simclr", "model"] = Field(
        default="simclr",
        description="simclr: self-supervised SimCLR embeddings of the pool (the authors'; trained once "
        "per pool and cached); model: the classifier's penultimate embeddings (the inputs at cold start)",
    )
    ssl_epochs: int = Field(default=20, ge=1, description="epochs of the SimCLR encoder (embedding=simclr)")
    ssl_dim: int = Field(default=128, ge=1, description="projection dimension of the SimCLR encoder")
    ssl_temperature: float = Field(default=0.5, gt=0, description="NT-Xent temperature of the SimCLR encoder")
    ssl_batch_size: int = Field(default=256, ge=2, description="samples per contrastive batch")
    ssl_lr: float = Field(default=1e-3, gt=0, description="Adam learning rate of the SimCLR encoder")


def embedding_requirements(p: EmbeddingParams) -> Requirements:
    """The pool's SimCLR embeddings, or the model's embeddings of both sets."""
    if p.embedding == "model":
        return Requirements(embeddings=True, labeled_embeddings=True)
    request = SSLRequest(
        SSL_METHOD,
        epochs=p.ssl_epochs,
        dim=p.ssl_dim,
        temperature=p.ssl_temperature,
        batch_size=p.ssl_batch_size,
        lr=p.ssl_lr,
    )
    return Requirements(ssl=(request,))


def pool_embeddings(view: PoolView, p: EmbeddingParams, strategy: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The unlabeled ``(U, D)`` and labeled ``(L, D)`` rows of the embedding space that
    ``p.embedding`` names, on the run's device.

    With ``simclr`` and a view that carries no SimCLR embeddings (one built with
    :meth:`PoolView.from_arrays`), the view's ``embeddings`` are used instead, with a
    warning; a view with neither is a :class:`ModelError`."""
    if p.embedding == SSL_METHOD:
        if SSL_METHOD in view.ssl_embeddings:
            unl, lab = view.ssl_pair(SSL_METHOD, strategy)
            return as_tensor(unl, view.device), as_tensor(lab, view.device)
        if view.embeddings is None:
            raise ModelError(
                f"strategy {strategy!r} (embedding={SSL_METHOD!r}) needs {SSL_METHOD} self-supervised "
                f"embeddings in the pool view (view.ssl_embeddings[{SSL_METHOD!r}]), or embeddings to "
                f"fall back on; run it through the engine, or pass embedding='model' with embeddings"
            )
        warnings.warn(
            f"strategy {strategy!r}: the pool view carries no {SSL_METHOD} self-supervised embeddings "
            f"(a view built outside the engine), so it uses view.embeddings instead; pass "
            f"embedding='model' to say so, or put self-supervised features in "
            f"view.ssl_embeddings[{SSL_METHOD!r}] and view.labeled_ssl_embeddings[{SSL_METHOD!r}]",
            UserWarning,
            stacklevel=2,
        )
    unl = as_tensor(view.require("embeddings", strategy), view.device)
    labeled = view.labeled_embeddings
    if labeled is None or not len(labeled):
        return unl, unl[:0]
    return unl, as_tensor(labeled, view.device)


class TypiClustParams(EmbeddingParams):
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
        return embedding_requirements(self.params)

    @select_sequentially
    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        p = self.params
        unl, lab = pool_embeddings(view, p, self.component_name)
        x, n_lab = torch.cat([unl, lab]), len(lab)
        if p.normalize:
            x = l2_normalize(x)
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
