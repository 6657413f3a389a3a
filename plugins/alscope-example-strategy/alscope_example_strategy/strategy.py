"""Information density sampling (Settles & Craven, EMNLP 2008).

    score(x) = H(p(x)) * (1/U * sum_u cos(x, x_u)) ** beta

Uncertainty sampling alone favours outliers: a sample far from everything else may be
uncertain yet tell the model little about the rest of the pool. Weighting the entropy
by how representative the sample is (its mean cosine similarity to the unlabeled pool)
prefers uncertain samples in dense regions.

The mean similarity takes O(N·D) time and memory, not an N x N matrix: with unit
vectors e_i, mean_j cos(e_i, e_j) = mean_j e_i·e_j = e_i · mean_j e_j. Both passes run
in chunks on the run's device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from alscope.components import Params
from alscope.strategies.base import PoolView, Requirements, ScoringStrategy
from alscope.strategies.uncertainty import entropy_scores

_CHUNK = 65_536


class InformationDensityParams(Params):
    beta: float = Field(
        default=1.0,
        ge=0,
        description="exponent of the density term (0: plain entropy sampling)",
    )


def mean_cosine_similarity(
    embeddings: torch.Tensor, device: torch.device | str = "cpu", chunk: int = _CHUNK
) -> torch.Tensor:
    """Mean cosine similarity of each row to all rows (itself included), ``(N,)``.

    Rows of zeros have similarity 0 to everything.
    """
    n = len(embeddings)
    if n == 0:
        return torch.empty(0, dtype=torch.float32)
    centroid = torch.zeros(embeddings.shape[1], dtype=torch.float32, device=device)
    for start in range(0, n, chunk):
        e = F.normalize(embeddings[start : start + chunk].to(device, torch.float32), dim=1)
        centroid += e.sum(dim=0)
    centroid /= n
    out = torch.empty(n, dtype=torch.float32)
    for start in range(0, n, chunk):
        e = F.normalize(embeddings[start : start + chunk].to(device, torch.float32), dim=1)
        out[start : start + chunk] = (e @ centroid).cpu()
    return out


class InformationDensity(ScoringStrategy):
    """Entropy times the mean cosine similarity to the unlabeled pool, to the ``beta``.

    A negative mean similarity (possible only when embeddings have negative
    components; the ReLU embeddings of the core's MLP have none) is clipped to 0,
    which ranks such samples last unless ``beta`` is 0.
    """

    Params = InformationDensityParams
    component_name = "information_density"

    def requirements(self) -> Requirements:
        return Requirements(probs=True, embeddings=True)

    def score(self, view: PoolView) -> torch.Tensor:
        name = self.component_name or "information_density"
        probs = view.require("probs", name)
        embeddings = view.require("embeddings", name)
        density = mean_cosine_similarity(embeddings, view.device).clamp_min(0.0)
        out = torch.empty(len(probs), dtype=torch.float32)
        beta = float(self.params.beta)
        for start in range(0, len(probs), _CHUNK):
            p = probs[start : start + _CHUNK].to(view.device, torch.float32)
            d = density[start : start + _CHUNK].to(view.device)
            out[start : start + _CHUNK] = (entropy_scores(p) * d.pow(beta)).cpu()
        return out
