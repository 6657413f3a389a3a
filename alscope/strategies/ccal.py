"""CCAL: contrastive coding for active learning under class distribution mismatch.

Du et al., ICCV 2021 ("Contrastive Coding for Active Learning under Class Distribution
Mismatch"; official code github.com/RUC-DWBI-ML/CCAL, ``evals/eval.py``). Two
self-supervised encoders are trained on the unlabeled pool (``alscope.ssl``, cached):

* a **semantic** encoder (SimCLR): an unlabeled sample's *semantic score* is its highest
  cosine similarity to a labeled known-class sample, min-max normalised over the
  unlabeled pool to ``s`` in [0, 1]; the labeled sample's class is the sample's pseudo
  class. A soft threshold keeps the likely in-distribution samples:
  ``tanh(k (s - t) / 2) = (1 - e^{-k(s-t)}) / (1 + e^{-k(s-t)})``, close to +1 above ``t``
  and to -1 below it (``k = 100``, ``t = 0.9`` as the official code);
* a **distinctive** encoder (CSI: SimCLR with rotated copies as negatives): per known
  class ``c``, with ``v1 >= v2`` the two highest cosine similarities of the sample to the
  labeled samples of ``c`` and ``A``, ``B`` those two anchors,
  ``d_c = (v1 - v2) + cos(A, B) + v1`` (high when the sample sits close to one labeled
  sample, far from the boundary between two, among anchors that agree: redundant),
  min-max normalised over the unlabeled pool; the *distinctive score* is ``1 - d_c``.

A sample's score is the thresholded semantic score plus the distinctive score of its
pseudo class; each known class ranks the samples whose pseudo class it is, and the query
takes the classes' best samples in turn (the official code's equal quota per class; a
class that runs out leaves its share to the others). Since the threshold term is about
+-1 and the distinctive term lies in [0, 1], samples above the threshold come first and
are ordered by distinctiveness: the paper's "semantic filter, then distinctive pick".

Details as in the official code: only labeled *known* samples are anchors (labeled OOD
answers are not used, so nothing changes before or after the first OOD is labeled);
the CSI features enter as the ensemble over rotations (``alscope.ssl`` concatenates the
normalised rotated projections, so a cosine is the mean over rotations; the code
averages ``d_c`` over rotations instead, each with its own two nearest anchors). A
class with a single labeled sample has ``v2 = v1`` and ``cos(A, B) = 1`` (its two nearest
anchors coincide). Deviations: the features are those of the un-augmented input, not an
average over ten random augmentations (the pool's embeddings are computed once and
cached); similarities are computed in chunks (never an ``U x L`` matrix beyond a block).

Cold start: with no labeled known sample there is nothing to compare with, so the query
is the ``budget`` k-means representatives of the semantic embeddings (the sample
nearest each centroid: typical, diverse samples; the same as ``kmeans`` on SSL features).
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from alscope.components import Params
from alscope.strategies._distances import (
    as_tensor,
    kmeans,
    l2_normalize,
    max_cosine,
    rows_per_block,
    sequential,
)
from alscope.strategies.base import PoolView, Requirements, SSLRequest, Strategy, top_k
from alscope.strategies.kmeans import representatives


class CCALParams(Params):
    semantic_epochs: int = Field(default=20, ge=1, description="epochs of the semantic (SimCLR) encoder")
    distinctive_epochs: int = Field(
        default=20, ge=1, description="epochs of the distinctive (CSI) encoder (each sees 4 rotations)"
    )
    ssl_dim: int = Field(default=128, ge=1, description="projection dimension of both encoders")
    temperature: float = Field(default=0.5, gt=0, description="NT-Xent temperature of both encoders")
    ssl_batch_size: int = Field(default=256, ge=2, description="samples per contrastive batch")
    ssl_lr: float = Field(default=1e-3, gt=0, description="Adam learning rate of the encoders")
    k: float = Field(default=100.0, gt=0, description="steepness of the soft semantic threshold")
    t: float = Field(
        default=0.9, ge=0, le=1, description="semantic threshold on the min-max normalised similarity"
    )
    class_quota: bool = Field(
        default=True,
        description="take the pseudo classes' best samples in turn (official code); false: one "
        "ranking of all samples by score",
    )


class CCAL(Strategy):
    """Semantic (SimCLR) similarity to the labeled known samples as a soft filter, the
    distinctive (CSI) score within each pseudo class to rank."""

    Params = CCALParams
    component_name = "ccal"

    def requirements(self) -> Requirements:
        p = self.params
        common = {
            "dim": p.ssl_dim,
            "temperature": p.temperature,
            "batch_size": p.ssl_batch_size,
            "lr": p.ssl_lr,
        }
        return Requirements(
            ssl=(
                SSLRequest("simclr", epochs=p.semantic_epochs, **common),
                SSLRequest("csi", epochs=p.distinctive_epochs, **common),
            )
        )

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        semantic_u, semantic_l = self._features(view, "simclr")
        known = view.labeled_known(self.component_name)
        if len(known) == 0:
            return view.unlabeled[self._cold_start(semantic_u, budget, rng)]
        known_t = torch.from_numpy(known).to(semantic_l.device)
        known_y = np.asarray(view.labeled_targets)[known].astype(np.int64)
        distinctive_u, distinctive_l = self._features(view, "csi")
        similarity, nearest = max_cosine(semantic_u, semantic_l[known_t])
        pseudo = known_y[nearest.cpu().numpy()]
        semantic = soft_threshold(minmax(similarity), self.params.k, self.params.t)
        distinctive = torch.zeros(len(view.unlabeled), dtype=torch.float64)
        for c in np.unique(known_y):
            anchors = distinctive_l[torch.from_numpy(known[known_y == c]).to(known_t.device)]
            score_c = 1.0 - minmax(redundancy(distinctive_u, anchors))
            members = torch.from_numpy(pseudo == c)
            distinctive[members] = score_c.cpu()[members]
        scores = (semantic.cpu() + distinctive).numpy()
        if not self.params.class_quota:
            return view.unlabeled[top_k(scores, budget, rng)]
        return view.unlabeled[round_robin(scores, pseudo, budget, rng)]

    def _features(self, view: PoolView, method: str) -> tuple[torch.Tensor, torch.Tensor]:
        unl, lab = view.ssl_pair(method, self.component_name)
        return l2_normalize(as_tensor(unl, view.device)), l2_normalize(as_tensor(lab, view.device))

    def _cold_start(self, semantic_u: torch.Tensor, budget: int, rng: np.random.Generator) -> np.ndarray:
        with sequential(semantic_u.device):
            x = semantic_u - semantic_u.mean(dim=0)
            labels, centres, d2 = kmeans(x, budget, rng)
            return representatives(x, labels, centres, d2)


def redundancy(x: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """CCAL's ``(v1 - v2) + cos(A, B) + v1`` of every unit row of ``x`` against the unit
    rows ``anchors`` of one class (``v1 >= v2`` the two highest similarities, ``A``, ``B``
    their anchors); one anchor counts twice. In blocks of rows."""
    out = torch.empty(len(x), device=x.device)
    step = rows_per_block(len(anchors))
    two = min(2, len(anchors))
    for r0 in range(0, len(x), step):
        values, pos = (x[r0 : r0 + step] @ anchors.T).topk(two, dim=1)
        v1 = values[:, 0]
        if two == 1:
            out[r0 : r0 + step] = v1 + 1.0
            continue
        v2 = values[:, 1]
        agree = (anchors[pos[:, 0]] * anchors[pos[:, 1]]).sum(dim=1)
        out[r0 : r0 + step] = (v1 - v2) + agree + v1
    return out


def minmax(x: torch.Tensor) -> torch.Tensor:
    """``(x - min) / (max - min)`` in float64; a constant vector carries no ranking and
    maps to ones."""
    x = x.double().cpu()
    lo, hi = x.min(), x.max()
    if float(hi - lo) <= 0.0:
        return torch.ones_like(x)
    return (x - lo) / (hi - lo)


def soft_threshold(s: torch.Tensor, k: float, t: float) -> torch.Tensor:
    """CCAL's ``(1 - e^{-k(s-t)}) / (1 + e^{-k(s-t)})``, which is ``tanh(k (s - t) / 2)``
    (the tanh form does not overflow for large ``k``)."""
    return torch.tanh(k * (s - t) / 2)


def round_robin(scores: np.ndarray, classes: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Each class's best-scored positions in turn (classes in a random order per query);
    classes that run out leave their turns to the others."""
    queues: list[np.ndarray] = []
    for c in rng.permutation(np.unique(classes)):
        in_c = np.flatnonzero(classes == c)
        queues.append(in_c[top_k(scores[in_c], len(in_c), rng)])  # best first, ties in random order
    depth = np.concatenate([np.arange(len(q)) for q in queues])
    turn = np.concatenate([np.full(len(q), i) for i, q in enumerate(queues)])
    members = np.concatenate(queues)
    order = np.lexsort((turn, depth))  # by depth, then by the classes' order
    return members[order[:budget]]
