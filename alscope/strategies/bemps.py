"""BEMPS: expected score reduction under strictly proper scoring rules (CoreMSE, CoreLog).

Tan, Du & Buntine, NeurIPS 2021: *Diversity enhanced active learning with strictly
proper scoring rules*. ``E`` sampled models ``theta_e`` (MC dropout with consistent masks,
or the members of ``--ensemble``) with a uniform prior stand in for the posterior. For a
candidate ``x`` and label ``y`` the posterior reweights them,
``q_e(x, y) = p(y | theta_e, x) / sum_f p(y | theta_f, x)``, and the predictive at a
reference point ``x'`` becomes ``m(x, y, x') = sum_e q_e p(. | theta_e, x')``. Each
candidate gets, for every reference point, the expected (over ``y ~ p(y | L, x)``) score
between the sampled predictions at ``x'`` and that updated predictive, as the official
code computes it (``src/queryStrategy.py``):

* ``score="mse"`` (CoreMSE, Brier):
  ``rr[x, x'] = sum_y p(y|x) sum_e |p(.|theta_e, x') - m(x, y, x')|^2``;
* ``score="log"`` (CoreLog):
  ``rr[x, x'] = sum_y p(y|x) sum_e KL(p(.|theta_e, x') || m(x, y, x'))``.

Batch mode (the paper's and ALScope's default): the candidates with the largest
``sum_x' rr[x, x']`` (the top ``top_fraction``) are clustered by k-means on their
L2-normalised change vectors ``rr[x, :]`` into ``budget`` clusters, and the candidate
nearest each centre is queried. ``diverse=False`` is the official top-k mode.

Memory stays linear in the pool: the ``(U, R, C, E, C)`` tensor of the official code is
never built. For the Brier score the sum over ``e`` and ``y`` factorises exactly into
``rr[x, x'] = A(x') - (2/E)|S(x')|^2 + E <M(x), G(x')>`` with ``G(x') = P' P'^T``
(``E x E``), ``S(x') = sum_e P'_e``, ``A(x') = |P'|^2`` and
``M(x) = (1/E) sum_y P_y P_y^T / sum_e P_ey``, one ``(U, E^2) x (E^2, R)`` product; the
log score is computed in blocks of candidates and reference points. Only the
``(U, R)`` change vectors are kept (``R <= max_reference``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from alscope.strategies._distances import (
    BLOCK_ELEMENTS,
    kmeans,
    l2_normalize,
    select_sequentially,
)
from alscope.strategies.base import PoolView, Requirements, Strategy, top_k
from alscope.strategies.bayesian import SampledParams, require_mc
from alscope.strategies.kmeans import representatives


class BempsParams(SampledParams):
    score: Literal["mse", "log"] = Field(
        default="mse", description="strictly proper scoring rule: mse (CoreMSE, Brier) or log (CoreLog)"
    )
    reference_fraction: float = Field(
        default=0.1,
        gt=0.0,
        le=1.0,
        description="fraction of the unlabeled pool drawn as reference points x' (official: "
        "0.0939; ALScope: 0.1)",
    )
    max_reference: int = Field(
        default=500, ge=1, description="at most this many reference points (bounds time and memory)"
    )
    diverse: bool = Field(
        default=True,
        description="k-means over the change vectors of the top candidates (the batch mode); "
        "False: the top-k expected score reduction",
    )
    top_fraction: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="fraction of the pool with the largest reduction that is clustered (official T)",
    )
    max_iter: int = Field(default=20, ge=1, description="most Lloyd iterations of the k-means")


def mse_changes(mc: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """CoreMSE's ``rr[x, x']``, ``(len(mc), len(ref))``, for samples ``mc`` ``(U, E, C)``
    and reference samples ``ref`` ``(R, E, C)`` (the same E models), in closed form."""
    e = mc.shape[1]
    gram = torch.bmm(ref, ref.transpose(1, 2)).reshape(len(ref), e * e)  # (R, E^2)
    s = ref.sum(dim=1)
    const = ref.square().sum(dim=(1, 2)) - (2.0 / e) * s.square().sum(dim=1)
    out = torch.empty(len(mc), len(ref), device=mc.device)
    step = max(1, BLOCK_ELEMENTS // (e * e + e * mc.shape[2] + len(ref)))
    for r0 in range(0, len(mc), step):
        p = mc[r0 : r0 + step]  # (B, E, C)
        den = p.sum(dim=1, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)
        m = torch.bmm(p, (p / den).transpose(1, 2)).reshape(len(p), e * e)  # E * M(x)
        out[r0 : r0 + step] = torch.addmm(const[None, :], m, gram.T)
    return out


def log_changes(mc: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """CoreLog's ``rr[x, x']``, ``(len(mc), len(ref))``, in blocks of candidates and
    reference points (never more than about ``BLOCK_ELEMENTS`` updated predictives)."""
    u, e, c = mc.shape
    r = len(ref)
    neg_h = torch.special.xlogy(ref, ref).sum(dim=(1, 2))  # sum_e sum_c p log p, (R,)
    s = ref.sum(dim=1)  # (R, C)
    ref_flat = ref.permute(1, 0, 2).reshape(e, r * c)  # (E, R*C)
    tiny = torch.finfo(mc.dtype).tiny
    out = torch.empty(u, r, device=mc.device)
    r_step = max(1, min(r, BLOCK_ELEMENTS // (c * c)))
    step = max(1, BLOCK_ELEMENTS // (c * c * r_step))
    for r0 in range(0, u, step):
        p = mc[r0 : r0 + step]
        b = len(p)
        den = p.sum(dim=1)  # (B, C): E * p(y | L, x)
        q = (p / den.clamp_min(tiny)[:, None, :]).transpose(1, 2).reshape(b * c, e)  # q_e(x, y)
        weight = den / e  # p(y | L, x)
        for c0 in range(0, r, r_step):
            c1 = min(r, c0 + r_step)
            m = q @ ref_flat[:, c0 * c : c1 * c]  # (B*C, r*C): updated predictives
            cross = (torch.log(m.clamp_min(tiny)).view(b * c, c1 - c0, c) * s[None, c0:c1]).sum(dim=2)
            cross = (cross.view(b, c, c1 - c0) * weight[:, :, None]).sum(dim=1)
            out[r0 : r0 + step, c0:c1] = neg_h[None, c0:c1] - cross
    return out


def score_changes(mc: torch.Tensor, ref: torch.Tensor, score: str) -> torch.Tensor:
    """``rr[x, x']`` of every candidate against every reference point."""
    return mse_changes(mc, ref) if score == "mse" else log_changes(mc, ref)


class Bemps(Strategy):
    """CoreMSE / CoreLog: expected score reduction from sampled models, then k-means over
    the per-candidate change vectors of the most promising candidates."""

    component_name = "bemps"
    Params = BempsParams

    def requirements(self) -> Requirements:
        # q_e reweights model e at x and at x': sample e must be one sub-network everywhere
        return Requirements(mc_samples=self.params.n_drop, consistent_mc=True)

    @select_sequentially
    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        p = self.params
        mc = require_mc(view, self.component_name).to(view.device, torch.float32)
        u = len(mc)
        n_ref = int(min(p.max_reference, u, max(1, round(u * p.reference_fraction))))
        ref_pos = torch.from_numpy(np.sort(rng.choice(u, size=n_ref, replace=False))).to(view.device)
        rr = score_changes(mc, mc[ref_pos], p.score)
        total = rr.sum(dim=1, dtype=torch.float64).cpu().numpy()
        if not p.diverse:
            return view.unlabeled[top_k(total, budget, rng)]
        n_top = int(min(u, max(budget, round(u * p.top_fraction))))
        cand = top_k(total, n_top, rng)
        if n_top == budget:
            return view.unlabeled[cand]
        feats = l2_normalize(rr[torch.from_numpy(cand).to(view.device)])
        labels, centres, d2 = kmeans(feats, budget, rng, max_iter=p.max_iter)
        return view.unlabeled[cand[representatives(feats, labels, centres, d2)]]
