"""EPIG: expected predictive information gain.

Bickford Smith, Kirsch, Farquhar, Gal, Foster & Rainforth, AISTATS 2023:
"Prediction-oriented Bayesian active learning". BALD values information about the
parameters, much of which may not matter for the predictions we care about; EPIG
values information about the predictions on target inputs ``x* ~ p*(x*)``:

    EPIG(x) = E_{x*}[ I(y; y* | x, x*) ]
            = E_{x*}[ H[y] + H[y*] - H[y, y*] ],

where, from K joint samples of the model (MC dropout samples or ensemble members,
the same sample k for every input),

    p(y, y*) = 1/K sum_k p_k(y | x) p_k(y* | x*),   p(y) = 1/K sum_k p_k(y | x).

Without a separate target set, the targets are ``n_targets`` inputs drawn from the
unlabeled pool with the cycle's generator (the paper's pool-based setting). As in the
paper's code, the score is the mean over the targets of the mutual information from
the joint ``(C, C)`` table of each (candidate, target) pair; here the tables of a chunk
of candidates come from one matrix product ``(b*C, K) @ (K, T*C)`` on the run's device,
memory O(b*T*C^2), never U x U.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from alscope.strategies.base import PoolView, Requirements, Strategy, top_k
from alscope.strategies.bayesian import CHUNK_ELEMENTS, SampledParams, one_thread_on_cpu, require_mc
from alscope.strategies.uncertainty import entropy_scores


class EPIGParams(SampledParams):
    n_targets: int = Field(
        default=100,
        ge=1,
        description="target inputs drawn from the unlabeled pool (all of it when smaller)",
    )


_TINY = float(torch.finfo(torch.float32).tiny)


def epig_scores(
    probs: torch.Tensor, targets: torch.Tensor, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """EPIG of every row of ``probs`` ``(U, K, C)`` w.r.t. ``targets`` ``(T, K, C)``, both
    holding the same K joint samples; ``(U,)`` float64 on the CPU."""
    device = torch.device(device)
    u, k, c = probs.shape
    t = len(targets)
    q = targets.to(device, torch.float32)
    h_target = entropy_scores(q.mean(dim=1))  # (T,)
    q_flat = q.permute(1, 0, 2).reshape(k, t * c) / k  # (K, T*C)
    out = torch.empty(u, dtype=torch.float64)
    step = max(1, CHUNK_ELEMENTS // (t * c * c))
    for start in range(0, u, step):
        p = probs[start : start + step].to(device, torch.float32)  # (b, K, C)
        b = len(p)
        joint = p.permute(0, 2, 1).reshape(b * c, k) @ q_flat  # (b*C, T*C): p(y, y*)
        nats = torch.log(joint.clamp_min(_TINY)).mul_(joint).view(b, c, t, c).sum(dim=(1, 3))  # -H[y, y*]
        mi = entropy_scores(p.mean(dim=1))[:, None] + h_target[None, :] + nats  # (b, T)
        out[start : start + b] = mi.clamp_min_(0.0).mean(dim=1).to("cpu", torch.float64)
    return out


class EPIG(Strategy):
    """Expected predictive information gain w.r.t. targets drawn from the pool."""

    component_name = "epig"
    Params = EPIGParams

    def requirements(self) -> Requirements:
        return Requirements(mc_samples=self.params.n_drop, consistent_mc=True)

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        mc = require_mc(view, self.component_name)
        n_targets = min(self.params.n_targets, len(mc))
        targets = torch.from_numpy(np.sort(rng.choice(len(mc), size=n_targets, replace=False)))
        with one_thread_on_cpu(view.device):
            scores = epig_scores(mc, mc[targets], view.device).float().numpy()
        return view.unlabeled[top_k(scores, budget, rng)]
