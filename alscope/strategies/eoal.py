"""EOAL: Entropic Open-set Active Learning.

Safaei, Vibashan, de Melo & Patel, WACV 2024 (code: github.com/bardisafa/EOAL). Built on
LfOSA's (C+1)-way detector (a separate copy of the backbone, see
:mod:`alscope.strategies._open_set`), with one-vs-all (OVA) binary heads over the known
classes on the detector's embedding: ``Linear(D, 2C, bias=False)``, read as ``(2, C)``
(negative, positive) logits per class.

Training, per detector batch, as the authors' ``train_A``:

* the temperature-scaled cross-entropy of the detector (class ``C`` for labeled OOD);
* the entropic OVA loss: for a known sample of class ``y``, ``-log p_y(pos)`` plus the
  hardest negative ``max_{c != y} -log p_c(neg)``, weighted ``1 - alpha`` once OOD samples
  are labeled; for a labeled OOD sample ``alpha / C * sum_c (-log p_c(pos) - log p_c(neg))``,
  which is lowest when every binary head is undecided (maximum entropy). Known and OOD
  halves are averaged (``0.5 (pos + neg)`` each);
* a cluster regulariser, weight ``reg_weight``: the labeled OOD samples' embeddings are
  clustered by k-means (``n_clusters``, by default the number of known classes) before
  each detector epoch, and each OOD sample is pulled to its centre and pushed from the
  others: ``0.1 * d_own + log(1 + sum_{j != own} exp(d_own - d_j))``.

Selection: the closed-set entropy ``E_c``, the mean binary entropy of the OVA heads
(bits, in [0, 1]), and the distance entropy ``E_o``, the entropy of
``softmax(-|f - mu_j|)`` over the OOD cluster centres normalised by ``log K``. A sample
near one OOD cluster has a low ``E_o``; a confident known sample has a low ``E_c``. The
authors rank by ``E_c - E_o`` ascending; here the score is ``E_o - E_c``, highest first.
Only samples the detector assigns to a known class are candidates. With ``diversity``
their embeddings are partitioned by FINCH (first-neighbour clustering, Sarfraz et al.
2019), at the finest level with at most ``budget`` clusters, as the authors do, and the
query goes round-robin over the clusters, each round taking every cluster's next ``per``
best-scoring samples (``per = budget // clusters``). If the candidates run out, the rest
come from the samples predicted unknown, by score.

Deviations: the OOD clusters come from scikit-learn's k-means (seeded from the hooks'
generator) with exactly ``n_clusters`` clusters; the authors ask FINCH for ``C`` clusters,
which FINCH reaches by merging its nearest level down, so both give ``C`` clusters of the
OOD embeddings. They are computed on evaluation-transformed inputs (the authors' loader
augments), and recomputed with the final detector for the pool pass (the authors' come
from the start of the last epoch). The last, partial round-robin round takes the
best-scoring samples rather than the first clusters in index order. A batch without
known or without OOD samples skips that half of the OVA loss (the authors' code averages
an empty tensor, a NaN).

Before any OOD sample is labeled there are no OOD clusters: the OVA heads train on the
known samples (weight 1), there is no regulariser, ``E_o`` is 0 and the score is the
closed-set entropy alone, as in the authors' first round; the same holds while fewer
than two OOD clusters exist (one cluster gives every sample the same ``E_o`` of 0).
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.cluster import KMeans
from torch import nn

from alscope.engine.hooks import FitContext
from alscope.errors import ModelError
from alscope.models.base import Backbone, BackboneOutput
from alscope.strategies._distances import l2_normalize, rows_per_block
from alscope.strategies._features import eval_forward
from alscope.strategies._open_set import DetectorHooks, DetectorParams, class_ids
from alscope.strategies.base import PoolView, Requirements, Strategy

CLASS, CLOSED, OPEN, FEATURES = "eoal_class", "eoal_closed_entropy", "eoal_open_entropy", "eoal_features"


class EOALParams(DetectorParams):
    pareto_alpha: float = Field(
        default=0.8,
        ge=0.0,
        le=1.0,
        description="alpha of the entropic OVA loss: the OOD samples' share, known samples weigh 1 - alpha "
        "(the authors' --pareta-alpha 0.8)",
    )
    reg_weight: float = Field(
        default=0.1, ge=0.0, description="weight of the OOD cluster regulariser (the authors' --reg-w 0.1)"
    )
    intra_weight: float = Field(
        default=0.1,
        ge=0.0,
        description="weight of the pull to the own cluster centre inside the regulariser (the authors' 0.1)",
    )
    n_clusters: int | None = Field(
        default=None,
        ge=1,
        description="k-means clusters of the labeled OOD embeddings (at most one per OOD sample); "
        "default: the number of known classes (the authors' w_unk_cls = 1)",
    )
    diversity: bool = Field(
        default=True, description="round-robin over clusters of the candidates (the authors' --diversity 1)"
    )


def pairwise_distance(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``(N, K)``, with a gradient that stays finite at distance 0
    (a one-member cluster's centre is its sample; ``torch.cdist``'s is NaN there)."""
    x, centres = x.float(), centres.float()
    sq = x.square().sum(1, keepdim=True) - 2 * x @ centres.T + centres.square().sum(1)[None, :]
    return sq.clamp_min(1e-12).sqrt()


def ova_entropy(ova_logits: torch.Tensor) -> torch.Tensor:
    """Closed-set entropy: the mean over classes of each OVA head's binary entropy, in bits
    (0 = every head decided, 1 = every head at 50/50). ``ova_logits`` is ``(B, 2, C)``."""
    log_p = F.log_softmax(ova_logits.float(), dim=1)
    return -(log_p.exp() * log_p).sum(1).mean(1) / math.log(2)


def distance_entropy(features: torch.Tensor, centres: torch.Tensor | None) -> torch.Tensor:
    """Entropy of ``softmax(-distance)`` over the OOD cluster centres, divided by ``log K``
    (in [0, 1]); 0 for every sample when fewer than two centres exist."""
    if centres is None or len(centres) < 2:
        return torch.zeros(len(features), device=features.device)
    log_p = F.log_softmax(-pairwise_distance(features, centres.to(features.device)), dim=1)
    return -(log_p.exp() * log_p).sum(1) / math.log(len(centres))


def entropic_ova_loss(
    ova_logits: torch.Tensor, y: torch.Tensor, ood: torch.Tensor, alpha: float, ood_labeled: bool
) -> torch.Tensor:
    """EOAL's entropic OVA loss on one batch (``ova_logits`` ``(B, 2, C)``, ``y`` the class,
    ``ood`` marks labeled OOD samples); ``ood_labeled``: OOD samples exist in the labeled set."""
    log_p = F.log_softmax(ova_logits.float(), dim=1)
    neg_log_neg, neg_log_pos = -log_p[:, 0, :], -log_p[:, 1, :]
    n_classes = ova_logits.shape[2]
    loss = ova_logits.new_zeros((), dtype=torch.float32)
    known = ~ood
    weight = 1.0 - alpha if ood_labeled else 1.0
    if known.any():
        yk = y[known]
        pos = neg_log_pos[known].gather(1, yk[:, None]).squeeze(1)
        # the hardest negative: the true class's negative term is masked out (0, and the
        # terms are >= 0, so it never wins the max over the others)
        others = neg_log_neg[known].scatter(1, yk[:, None], 0.0)
        neg = others.max(dim=1).values
        loss = loss + 0.5 * weight * (pos.mean() + neg.mean())
    if ood_labeled and ood.any():
        share = alpha / n_classes
        pos_u = (neg_log_pos[ood] * share).sum(1).mean()
        neg_u = (neg_log_neg[ood] * share).sum(1).mean()
        loss = loss + 0.5 * (pos_u + neg_u)
    return loss


def cluster_regulariser(
    features: torch.Tensor, centres: torch.Tensor, assigned: torch.Tensor, intra_weight: float = 0.1
) -> torch.Tensor:
    """``intra_weight * d_own + log(1 + sum_{j != own} exp(d_own - d_j))``, mean over the OOD
    samples: compact OOD clusters, apart from each other."""
    d = pairwise_distance(features, centres)
    own = d.gather(1, assigned[:, None])
    margin = (own - d).scatter(1, assigned[:, None], float("-inf"))
    inter = F.softplus(torch.logsumexp(margin, dim=1))
    return intra_weight * own.mean() + inter.mean()


class EOALHooks(DetectorHooks):
    """The detector with OVA heads, the OOD clusters, and the pool's two entropies."""

    self_trained = ("detector", "ova")

    def __init__(self, params: EOALParams, who: str) -> None:
        super().__init__(params, who)
        self.params: EOALParams = params
        #: OOD cluster centres ``(K, D)`` on the fit's device (None: no labeled OOD)
        self.centres: torch.Tensor | None = None
        self._cluster_of: torch.Tensor | None = None
        self._ood_labeled = False

    def extra_modules(self) -> dict[str, nn.Module]:
        return {"ova": nn.Linear(self.embedding_dim, 2 * self.n_classes, bias=False)}

    def on_fit_start(self, fit: FitContext) -> None:
        super().on_fit_start(fit)
        self.centres, self._cluster_of = None, None
        self._ood_labeled = len(fit.ood_indices) > 0

    def ova(self, embedding: torch.Tensor, modules: dict[str, nn.Module]) -> torch.Tensor:
        return modules["ova"](embedding.float()).view(len(embedding), 2, self.n_classes)

    @torch.no_grad()
    def cluster_ood(self, fit: FitContext) -> None:
        """k-means (seeded from the hooks' generator) on the labeled OOD samples' detector
        embeddings, in evaluation mode; sets the centres and each sample's cluster."""
        ood = np.asarray(fit.ood_indices, dtype=np.int64)
        if not len(ood) or fit.source is None:
            self.centres, self._cluster_of = None, None
            return
        detector = cast(Backbone, fit.modules[self.detector_name])
        chunks = [
            eval_forward(detector, batch.to(fit.device).inputs, features=False).embedding.float().cpu()
            for batch in fit.source.batches(ood, batch_size=self._config.eval_batch_size, train=False)
        ]
        features = torch.cat(chunks).double().numpy()
        k = min(self.params.n_clusters or self.n_classes, len(ood))
        seed = int(torch.randint(2**31 - 1, (1,), generator=fit.generator))
        found = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(features)
        self.centres = torch.as_tensor(found.cluster_centers_, dtype=torch.float32, device=fit.device)
        cluster_of = torch.full((len(fit.source),), -1, dtype=torch.long)
        cluster_of[torch.from_numpy(ood)] = torch.as_tensor(found.labels_, dtype=torch.long)
        self._cluster_of = cluster_of

    def before_detector_epoch(self, fit: FitContext) -> None:
        self.cluster_ood(fit)

    def after_training(self, fit: FitContext) -> None:
        self.cluster_ood(fit)

    def detector_loss(
        self,
        output: BackboneOutput,
        y: torch.Tensor,
        ood: torch.Tensor,
        indices: torch.Tensor,
        fit: FitContext,
    ) -> torch.Tensor:
        p = self.params
        loss = super().detector_loss(output, y, ood, indices, fit)
        ova = self.ova(output.embedding, fit.modules)
        loss = loss + entropic_ova_loss(ova, y, ood, p.pareto_alpha, self._ood_labeled)
        if self.centres is not None and self._cluster_of is not None and ood.any() and p.reg_weight > 0:
            assigned = self._cluster_of[indices.cpu()].to(y.device)[ood]
            loss = loss + p.reg_weight * cluster_regulariser(
                output.embedding[ood], self.centres, assigned, p.intra_weight
            )
        return loss

    def pool_batch_outputs(
        self, inputs: Any, output: BackboneOutput, modules: dict[str, nn.Module]
    ) -> dict[str, torch.Tensor]:
        del output
        out = self.detect(inputs, modules)
        embedding = out.embedding.float()
        return {
            CLASS: out.logits.float().argmax(dim=1).float(),
            CLOSED: ova_entropy(self.ova(embedding, modules)),
            OPEN: distance_entropy(embedding, self.centres),
            FEATURES: embedding,
        }


def eoal_score(closed_entropy: np.ndarray, open_entropy: np.ndarray) -> np.ndarray:
    """EOAL's query score, highest first: ``E_o - E_c`` (the authors sort ``E_c - E_o``
    ascending): confident known samples far from every OOD cluster come first."""
    return np.asarray(open_entropy, dtype=np.float64) - np.asarray(closed_entropy, dtype=np.float64)


def first_neighbours(x: torch.Tensor) -> np.ndarray:
    """Each row's nearest other row by cosine similarity, in row blocks (never ``N x N``)."""
    unit = l2_normalize(x.float())
    n = len(unit)
    out = torch.empty(n, dtype=torch.long, device=unit.device)
    rows = rows_per_block(n)
    for s in range(0, n, rows):
        e = min(n, s + rows)
        sim = unit[s:e] @ unit.T
        sim[torch.arange(e - s, device=unit.device), torch.arange(s, e, device=unit.device)] = float("-inf")
        out[s:e] = sim.argmax(dim=1)
    return out.cpu().numpy()


def finch_partition(x: torch.Tensor, max_clusters: int) -> np.ndarray:
    """Cluster labels of the finest FINCH partition (Sarfraz, Sharma & Stiefelhagen, CVPR
    2019) with at most ``max_clusters`` clusters: link every sample to its first (cosine)
    neighbour, take the connected components, and repeat on the clusters' means until
    few enough remain. Parameter-free and deterministic, as EOAL's diversity step uses it."""
    n = len(x)
    labels = np.zeros(n, dtype=np.int64) if n < 2 else np.arange(n)
    points = x.float()
    while len(points) > 1:
        m = len(points)
        graph = coo_matrix((np.ones(m), (np.arange(m), first_neighbours(points))), shape=(m, m))
        k, component = connected_components(graph, directed=True, connection="weak")
        labels = component[labels]
        if k <= max_clusters or k == 1:
            break
        index = torch.as_tensor(labels, device=points.device)
        sums = torch.zeros(k, x.shape[1], device=x.device).index_add_(0, index, x.float())
        points = sums / torch.bincount(index, minlength=k).clamp_min(1)[:, None]
    return labels


def round_robin(labels: np.ndarray, scores: np.ndarray, per: int, tie: np.ndarray) -> np.ndarray:
    """Positions in query order: round ``r`` takes each cluster's samples ranked
    ``r * per .. (r + 1) * per - 1`` by score; within a round, highest score first."""
    n = len(labels)
    order = np.lexsort((tie, -scores, labels))
    sorted_labels = labels[order]
    first = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - first
    return np.lexsort((tie, -scores, rank // max(per, 1)))


class EOAL(Strategy):
    """Likely-known samples (detector) ranked by the two entropies, spread over clusters."""

    Params = EOALParams
    component_name = "eoal"

    def requirements(self) -> Requirements:
        return Requirements(extra_outputs=(CLASS, CLOSED, OPEN, FEATURES))

    def training_hooks(self) -> EOALHooks:
        return EOALHooks(self.params, self.component_name)

    def _array(self, view: PoolView, name: str) -> np.ndarray:
        arr = view.require(name, self.component_name).detach().double().cpu().numpy()
        if not np.isfinite(arr).all():
            raise ModelError(
                f"strategy {self.component_name!r}: {name} has non-finite values; the detector diverged"
            )
        return arr

    def scores(self, view: PoolView) -> np.ndarray:
        return eoal_score(self._array(view, CLOSED).ravel(), self._array(view, OPEN).ravel())

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        scores = self.scores(view)
        predicted = class_ids(view.require(CLASS, self.component_name).ravel(), view.n_classes)
        n = view.n_unlabeled
        tie = rng.permutation(n)
        candidates = np.flatnonzero(predicted < view.n_classes)
        rest = np.flatnonzero(predicted >= view.n_classes)
        take = min(budget, len(candidates))
        if self.params.diversity and take > 1:
            features = self._array(view, FEATURES).reshape(n, -1)[candidates]
            x = torch.as_tensor(features, dtype=torch.float32, device=view.device)
            labels = finch_partition(x, budget)
            k = int(labels.max()) + 1
            first = candidates[round_robin(labels, scores[candidates], take // k, tie[candidates])]
        else:
            first = candidates[np.lexsort((tie[candidates], -scores[candidates]))]
        after = rest[np.lexsort((tie[rest], -scores[rest]))]
        chosen = np.concatenate([first[:budget], after])[:budget]
        return view.unlabeled[chosen]
