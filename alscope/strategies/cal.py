"""CAL: contrastive active learning.

Margatina, Vernikos, Barrault & Aletras, EMNLP 2021: *Active learning by acquiring
contrastive examples*. A contrastive example is close to labeled examples in the model's
feature space but predicted differently. As the official code (``acquisition/cal.py``,
the standard ``cls``/``mean`` setting) does: embeddings are L2-normalised, each unlabeled
candidate finds its ``k`` nearest labeled neighbours, and its score is the mean over them
of ``KL(p_neighbour || p_candidate)`` (PyTorch's ``KLDivLoss(log p_candidate,
p_neighbour)`` summed over classes); the ``budget`` highest are queried.

Neighbours are found in blocks of candidates against the labeled set (memory
``O(block x L)``, never ``U x L``), and the mean KL factorises:
``mean_k KL(n_k || p) = mean_k sum_c n_kc log n_kc - (mean_k n_k) . log p``.
Labeled samples the oracle answered out-of-distribution are not neighbours (they are
not part of the classifier's training set).
"""

from __future__ import annotations

import torch
from pydantic import Field

from alscope.components import Params
from alscope.strategies._distances import BLOCK_ELEMENTS, as_tensor, l2_normalize
from alscope.strategies.base import PoolView, Requirements, ScoringStrategy


class CALParams(Params):
    n_neighbors: int = Field(
        default=10,
        ge=1,
        description="labeled neighbours per candidate (official num_nei); with about 10 labels a "
        "class, 1-3 keeps the neighbourhood local (MNIST: 10 queries one class, 1 beats random)",
    )
    normalize: bool = Field(
        default=True, description="L2-normalise the embeddings before the neighbour search (official)"
    )


def nearest_labeled(x: torch.Tensor, lab: torch.Tensor, k: int, cosine: bool) -> torch.Tensor:
    """Positions in ``lab`` of the ``k`` nearest rows to each row of ``x`` (Euclidean; for
    unit rows, the largest inner products), ``(len(x), min(k, len(lab)))``, one block."""
    sim = x @ lab.T
    if not cosine:  # -|x - l|^2 + |x|^2
        sim = sim.mul_(2.0).sub_(lab.square().sum(dim=1)[None, :])
    return sim.topk(min(k, len(lab)), dim=1).indices


def cal_scores(
    probs: torch.Tensor,
    emb: torch.Tensor,
    lab_probs: torch.Tensor,
    lab_emb: torch.Tensor,
    k: int,
    normalize: bool = True,
) -> torch.Tensor:
    """Mean ``KL(p_neighbour || p_candidate)`` over the ``k`` nearest labeled rows, in
    blocks of candidates."""
    if normalize:
        emb, lab_emb = l2_normalize(emb), l2_normalize(lab_emb)
    tiny = torch.finfo(torch.float32).tiny
    lab_neg_h = torch.special.xlogy(lab_probs, lab_probs).sum(dim=1)
    out = torch.empty(len(probs), device=probs.device)
    step = max(1, BLOCK_ELEMENTS // max(1, len(lab_emb), min(k, len(lab_emb)) * probs.shape[1]))
    for r0 in range(0, len(probs), step):
        idx = nearest_labeled(emb[r0 : r0 + step], lab_emb, k, cosine=normalize)
        mean_neigh = lab_probs[idx].mean(dim=1)  # (B, C)
        log_p = torch.log(probs[r0 : r0 + step].clamp_min(tiny))
        out[r0 : r0 + step] = lab_neg_h[idx].mean(dim=1) - (mean_neigh * log_p).sum(dim=1)
    return out


class CAL(ScoringStrategy):
    """Largest mean KL divergence between a candidate's prediction and those of its
    nearest labeled neighbours in embedding space."""

    component_name = "cal"
    Params = CALParams

    def requirements(self) -> Requirements:
        return Requirements(probs=True, embeddings=True, labeled_embeddings=True, labeled_probs=True)

    def score(self, view: PoolView) -> torch.Tensor:
        who = self.component_name
        probs = as_tensor(view.require("probs", who), view.device)
        emb = as_tensor(view.require("embeddings", who), view.device)
        known = torch.from_numpy(view.labeled_known(who))
        if not len(known):  # nothing labeled with a known class: no contrast to measure
            return torch.zeros(len(probs))
        lab_probs = as_tensor(view.require("labeled_probs", who)[known], view.device)
        lab_emb = as_tensor(view.require("labeled_embeddings", who)[known], view.device)
        p = self.params
        return cal_scores(probs, emb, lab_probs, lab_emb, p.n_neighbors, p.normalize).cpu()
