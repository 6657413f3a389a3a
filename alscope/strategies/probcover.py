"""ProbCover: maximum coverage of delta-balls, for low budgets and cold starts.

Yehuda, Dekel, Hacohen & Weinshall, NeurIPS 2022: *Active learning through a covering
lens*. In the (L2-normalised) embedding space every sample covers the samples closer
than ``delta``; a sample is covered when some labeled or queried sample covers it. The
query greedily maximises coverage: each pick is the unlabeled sample whose ball holds
the most still-uncovered samples (its out-degree in the delta-graph once edges into
covered samples are removed), as in the authors' code. Ties are broken uniformly at
random with the cycle's generator; once everything is covered the rest of the budget is
drawn uniformly (more balls cover nothing new).

``delta`` defaults to the paper's purity rule: k-means with one cluster per class, and
the largest ``delta`` for which at least ``purity`` of the balls hold a single cluster.
A ball around ``x`` is pure exactly when ``delta`` is at most the distance from ``x`` to
the nearest sample of another cluster, so the rule is a quantile of those distances
(estimated on ``purity_sample`` samples).

No graph is stored: the degrees are counted in blocks of rows against all samples and
lowered, after each pick, by the balls of the newly covered samples (balls are
symmetric): ``O(N^2 D)`` arithmetic overall, as building the delta-graph is, but
``O(N)`` memory instead of ``O(edges)``.

Embeddings (``embedding``) as :mod:`alscope.strategies.typiclust`: by default the pool's
SimCLR embeddings (the authors' L2-normalised self-supervised features, which the
purity rule and the covering argument assume), with ``embedding="model"`` the
classifier's; a view without SimCLR embeddings falls back to its ``embeddings`` with a
warning.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pydantic import Field

from alscope.strategies._distances import (
    is_big,
    kmeans,
    l2_normalize,
    parallel,
    rows_per_block,
    select_sequentially,
    sq_norms,
    sqdist,
)
from alscope.strategies.base import PoolView, Requirements, Strategy
from alscope.strategies.typiclust import EmbeddingParams, embedding_requirements, pool_embeddings


class ProbCoverParams(EmbeddingParams):
    delta: float | None = Field(
        default=None,
        gt=0.0,
        description="ball radius; default: chosen by the purity rule",
    )
    purity: float = Field(
        default=0.95, gt=0.0, le=1.0, description="share of pure balls the default delta keeps"
    )
    n_clusters: int | None = Field(
        default=None, ge=2, description="k-means clusters of the purity rule; default: the classes"
    )
    purity_sample: int = Field(
        default=5000, ge=10, description="samples whose nearest other-cluster distance sets delta"
    )
    normalize: bool = Field(
        default=True, description="L2-normalise the embeddings first (the authors' features are)"
    )


def ball_counts(x: torch.Tensor, targets: torch.Tensor, delta2: float) -> torch.Tensor:
    """For each row of ``x``, how many rows of ``targets`` lie closer than ``delta``."""
    out = torch.zeros(len(x), dtype=torch.long, device=x.device)
    if len(targets) == 0 or len(x) == 0:
        return out
    cols = min(len(targets), 8192)
    rows = rows_per_block(cols)
    # |x - t|^2 < delta^2  <=>  |t|^2 - 2 x.t < delta^2 - |x|^2
    limit = (delta2 - sq_norms(x))[:, None]
    with parallel(is_big(len(x), len(targets), x.shape[1])):
        for c0 in range(0, len(targets), cols):
            tb = targets[c0 : c0 + cols]
            t_sq = sq_norms(tb)[None, :]
            for r0 in range(0, len(x), rows):
                d = torch.addmm(t_sq, x[r0 : r0 + rows], tb.T, alpha=-2.0)
                out[r0 : r0 + rows] += (d < limit[r0 : r0 + rows]).sum(dim=1)
    return out


def within(x: torch.Tensor, j: int, delta2: float) -> torch.Tensor:
    """Positions of the rows of ``x`` closer than ``delta`` to row ``j`` (the same
    arithmetic as :func:`ball_counts`, so that counts and balls agree)."""
    t = x[j : j + 1]
    d = torch.addmm(sq_norms(t)[None, :], x, t.T, alpha=-2.0)[:, 0]
    return torch.nonzero(d < delta2 - sq_norms(x)).squeeze(1)


def purity_delta(
    x: torch.Tensor, n_clusters: int, purity: float, sample: int, rng: np.random.Generator
) -> float:
    """The paper's delta: the largest radius whose balls are pure (one k-means cluster)
    for a ``purity`` share of the samples."""
    labels, _, _ = kmeans(x, n_clusters, rng)
    n = len(x)
    idx = np.sort(rng.choice(n, size=min(sample, n), replace=False))
    probe = x[torch.from_numpy(idx).to(x.device)]
    probe_lab = labels[torch.from_numpy(idx).to(x.device)]
    nearest_other = torch.full((len(idx),), math.inf, device=x.device)
    cols = min(n, 8192)
    rows = rows_per_block(cols)
    p_sq = sq_norms(probe)
    for c0 in range(0, n, cols):
        xb, lb = x[c0 : c0 + cols], labels[c0 : c0 + cols]
        for r0 in range(0, len(idx), rows):
            d2 = sqdist(probe[r0 : r0 + rows], xb, p_sq[r0 : r0 + rows])
            d2[probe_lab[r0 : r0 + rows, None] == lb[None, :]] = math.inf
            nearest_other[r0 : r0 + rows] = torch.minimum(nearest_other[r0 : r0 + rows], d2.min(dim=1).values)
    r = nearest_other.sqrt().sort().values
    finite = r[torch.isfinite(r)]
    if len(finite) == 0:  # one cluster only: every ball is pure
        return float(torch.cdist(x[:1], x).max()) + 1.0
    # pure(delta) = share of r >= delta; the largest delta keeping a `purity` share
    pos = min(math.floor((1.0 - purity) * len(r)), len(r) - 1)
    return float(min(r[pos], finite[-1]))


class ProbCover(Strategy):
    """Greedy max coverage of delta-balls over the labeled and unlabeled embeddings."""

    component_name = "probcover"
    Params = ProbCoverParams

    def requirements(self) -> Requirements:
        return embedding_requirements(self.params)

    def delta_for(self, view: PoolView, x: torch.Tensor, rng: np.random.Generator) -> float:
        p = self.params
        if p.delta is not None:
            return float(p.delta)
        k = p.n_clusters or (view.n_classes if view.n_classes >= 2 else 10)
        return purity_delta(x, min(k, len(x)), p.purity, p.purity_sample, rng)

    @select_sequentially
    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        p = self.params
        x, lab_t = pool_embeddings(view, p, self.component_name)
        if p.normalize:
            x, lab_t = l2_normalize(x), l2_normalize(lab_t)
        delta = self.delta_for(view, torch.cat([x, lab_t]) if len(lab_t) else x, rng)
        self.last_delta = delta
        delta2 = delta * delta
        n = len(x)
        # covered by the labeled set: some labeled sample closer than delta
        covered = torch.zeros(n, dtype=torch.bool, device=x.device)
        if len(lab_t):
            covered = ball_counts(x, lab_t, delta2) > 0
        degree = ball_counts(x, x[~covered], delta2)
        chosen: list[int] = []
        picked = np.zeros(n, bool)
        while len(chosen) < budget:
            top = int(degree.max())
            if top <= 0:  # everything is covered: more balls add nothing
                rest = rng.permutation(np.flatnonzero(~picked))[: budget - len(chosen)]
                chosen.extend(rest.tolist())
                break
            ties = torch.nonzero(degree == top).squeeze(1).cpu().numpy()
            j = int(ties[rng.integers(len(ties))]) if len(ties) > 1 else int(ties[0])
            chosen.append(j)
            picked[j] = True
            ball = within(x, j, delta2)
            new = ball[~covered[ball]]
            covered[new] = True
            # every sample that held a newly covered one in its ball loses it
            degree -= ball_counts(x, x[new], delta2)
            degree[j] = -1  # never again (even if float rounding left a count behind)
        return view.unlabeled[np.asarray(chosen, dtype=np.int64)]
