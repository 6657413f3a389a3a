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

As in the paper's code, the score is the mean over the targets of the mutual
information from the joint ``(C, C)`` table of each (candidate, target) pair; here the
tables of a chunk of candidates come from one matrix product ``(b*C, K) @ (K, T*C)`` on
the run's device, memory O(b*T*C^2), never U x U.

**Targets.** The official code (github.com/fbickfordsmith/epig) keeps a target set
apart from the pool (e.g. 1,000 MNIST training images per class, split off before the
pool, so never a candidate) and at every acquisition scores the pool against a fresh
batch of ``n_target_samples = 100`` inputs shuffled out of it. The engine has no such
split, so each cycle sets ``n_targets`` unlabeled samples aside, drawn with the
cycle's generator, as that cycle's targets: they are not candidates in that cycle (a
candidate is never scored against itself), and the remaining unlabeled samples are.
When fewer than ``budget + n_targets`` samples are unlabeled the budget has to take
some targets: then every unlabeled sample is a candidate and a target's own score
leaves its own pair out (the mean over the other targets).

**Batches.** The paper acquires one label at a time (``acquisition.batch_size: 1``);
for larger batches the official code ranks the scores (a plain top-k) unless
``acquisition.stochasticity`` is set, in which case it perturbs them with Gumbel noise
first: stochastic batch acquisition (Kirsch, Farquhar, Atighehchian, Jesson,
Branchaud-Charron & Gal, TMLR 2023, which two of the EPIG authors wrote). Here the
stochastic ``power`` form is the default, ``p(i) ∝ EPIG_i ** beta`` drawn without
replacement by Gumbel-top-k, so a batch does not fill up with near-duplicates of the
single most informative sample; ``softmax`` (``∝ exp(beta * EPIG_i)``), ``softrank``
(``∝ rank_i ** -beta``) and the deterministic ``top_k`` are the other choices.
"""

from __future__ import annotations

import weakref
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from alscope.errors import ConfigError, ModelError
from alscope.strategies.base import PoolView, Requirements, Strategy, top_k
from alscope.strategies.bayesian import CHUNK_ELEMENTS, SampledParams, one_thread_on_cpu, require_mc
from alscope.strategies.uncertainty import entropy_scores

BatchForm = Literal["power", "softmax", "softrank", "top_k"]


class EPIGParams(SampledParams):
    n_targets: int = Field(
        default=100,
        ge=1,
        description="target inputs set aside from the unlabeled pool each cycle, not "
        "candidates in it; when budget + n_targets exceeds the unlabeled count, drawn among "
        "the candidates and each scored without itself",
    )
    batch: BatchForm = Field(
        default="power",
        description="how a batch is drawn from the EPIG scores: power (p ∝ EPIG^beta), "
        "softmax (p ∝ exp(beta*EPIG)) or softrank (p ∝ rank^-beta), each without "
        "replacement by Gumbel-top-k (Kirsch et al. 2023); top_k takes the highest scores",
    )
    beta: float = Field(
        default=1.0,
        ge=0.0,
        description="coldness of the stochastic batch forms: 0 samples uniformly (among "
        "positive scores for power), large values approach top-k; unused by top_k",
    )


_TINY = float(torch.finfo(torch.float32).tiny)


def epig_scores(
    probs: torch.Tensor,
    targets: torch.Tensor,
    device: torch.device | str = "cpu",
    own_target: torch.Tensor | None = None,
) -> torch.Tensor:
    """EPIG of every row of ``probs`` ``(U, K, C)`` w.r.t. ``targets`` ``(T, K, C)``, both
    holding the same K joint samples; ``(U,)`` float64 on the CPU.

    ``own_target`` ``(U,)``: for a row that is itself one of the targets, that target's
    position (else -1); the row's score is then the mean over the *other* targets, so
    no candidate is scored against itself (0 when it is the only target)."""
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
        mi.clamp_min_(0.0)
        if own_target is None:
            score = mi.mean(dim=1)
        else:
            own = own_target[start : start + b].to(device)
            rows = torch.nonzero(own >= 0).squeeze(1)
            mi[rows, own[rows]] = 0.0
            score = mi.sum(dim=1) / (t - (own >= 0).to(mi.dtype)).clamp_min(1.0)
        out[start : start + b] = score.to("cpu", torch.float64)
    return out


def split_targets(
    n_unlabeled: int, budget: int, n_targets: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(target positions, candidate positions) into the unlabeled pool, both sorted.

    ``n_targets`` targets drawn without replacement with ``rng`` and the rest the
    candidates, disjoint. When fewer than ``budget + n_targets`` samples are
    unlabeled, the budget must take some of the targets: then ``min(n_targets,
    n_unlabeled)`` targets are drawn and every sample is a candidate (scored
    leave-one-out, see :func:`epig_scores`' ``own_target``).
    """
    every = np.arange(n_unlabeled)
    if n_unlabeled - budget < n_targets:
        return np.sort(rng.choice(n_unlabeled, size=min(n_targets, n_unlabeled), replace=False)), every
    targets = np.sort(rng.choice(n_unlabeled, size=n_targets, replace=False))
    keep = np.ones(n_unlabeled, dtype=bool)
    keep[targets] = False
    return targets, every[keep]


def batch_log_weights(scores: np.ndarray, batch: BatchForm, beta: float) -> np.ndarray:
    """Log of the unnormalised proposal ``w_i`` of a stochastic batch form (``-inf``: never
    drawn while positive weight remains): ``beta*log s`` for power (``-inf`` at
    ``s <= 0``), ``beta*s`` for softmax, ``-beta*log rank`` for softrank (rank 1 the
    highest; tied scores share the best rank)."""
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    if batch == "power":
        out = np.full(len(s), -np.inf)
        positive = s > 0
        out[positive] = beta * np.log(s[positive])
        return out
    if batch == "softmax":
        return np.nan_to_num(beta * s, nan=-np.inf)  # beta = 0 with a NaN score
    if batch == "softrank":
        ranks = 1 + np.searchsorted(np.sort(-s), -s, side="left")  # 1 + #{j: s_j > s_i}
        return -beta * np.log(ranks)
    raise ConfigError(f"epig: batch {batch!r} has no proposal")


def draw_batch(log_weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of ``k`` draws without replacement with ``p ∝ exp(log_weights)``, in draw
    order (Gumbel-top-k); ``-inf`` weights come last, in random order."""
    finite = np.isfinite(log_weights)
    keys = np.full(len(log_weights), -np.inf)
    keys[finite] = log_weights[finite] + rng.gumbel(size=int(finite.sum()))
    return top_k(keys, k, rng)


class EPIG(Strategy):
    """Expected predictive information gain w.r.t. targets set aside from the pool; the
    batch is drawn by stochastic (power) acquisition unless ``batch="top_k"``."""

    component_name = "epig"
    Params = EPIGParams
    #: (view, proposal over view.unlabeled) of the latest stochastic selection
    _last: tuple[weakref.ref[PoolView], torch.Tensor] | None = None

    def requirements(self) -> Requirements:
        return Requirements(mc_samples=self.params.n_drop, consistent_mc=True)

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        mc = require_mc(view, self.component_name)
        targets, candidates = split_targets(len(mc), budget, self.params.n_targets, rng)
        own = None
        if len(candidates) == len(mc):  # targets among the candidates: leave-one-out
            own = torch.full((len(mc),), -1, dtype=torch.long)
            own[torch.from_numpy(targets)] = torch.arange(len(targets))
        with one_thread_on_cpu(view.device):
            scores = epig_scores(
                mc[torch.from_numpy(candidates)], mc[torch.from_numpy(targets)], view.device, own
            ).numpy()
        self._last = None
        if self.params.batch == "top_k":
            return view.unlabeled[candidates[top_k(scores, budget, rng)]]
        log_w = batch_log_weights(scores, self.params.batch, self.params.beta)
        picked = draw_batch(log_w, budget, rng)
        weights = torch.zeros(len(mc), dtype=torch.float64)
        finite = np.isfinite(log_w)
        if finite.any():
            w = np.where(finite, np.exp(log_w - log_w[finite].max()), 0.0)
            weights[torch.from_numpy(candidates)] = torch.from_numpy(w)
        self._last = (weakref.ref(view), weights)
        return view.unlabeled[candidates[picked]]

    def proposal(self, view: PoolView) -> torch.Tensor:
        """The weights over ``view.unlabeled`` that the latest :meth:`select` on this view
        drew its batch from (0 for that cycle's targets). They depend on the targets,
        which the selection drew with its generator, so ``select`` must come first."""
        if self.params.batch == "top_k":
            raise ConfigError(
                "epig with batch='top_k' is deterministic and has no proposal; use "
                "batch='power' (the default), 'softmax' or 'softrank' with bias correction"
            )
        last = self._last
        if last is None or last[0]() is not view:
            raise ModelError("epig: proposal(view) is known only after select() on that same view")
        return last[1].clone()
