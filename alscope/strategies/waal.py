"""WAAL: Wasserstein adversarial active learning.

Shui, Zhou, Gagné & Wang, AISTATS 2020, "Deep Active Learning: Unified and Principled
Method for Query and Training". Training is a min-max game on the backbone's embedding:
a critic ``D`` (``embedding -> 512 -> 512 -> 1``, sigmoid) estimates the Wasserstein
distance between unlabeled and labeled embeddings,
``W = E_U[D(h)] - gamma x E_L[D(h)]`` with ``gamma = |L| / |U|`` (the paper's
"redundant trick" for unbalanced sets); the backbone minimises ``CE + alpha x W`` on
each labeled batch and an unlabeled batch drawn from the pool, and the critic maximises
``W`` under a gradient penalty (``W - gp_weight x GP``, WGAN-GP). The public code adds the
penalty to the critic's objective with the wrong sign, which rewards steep critics; here
it is penalised, with weight 1 by default: WGAN-GP's 10 assumes an unbounded critic, and
with WAAL's sigmoid critic it held the critic near a constant in our toy tests.

The query mixes uncertainty and diversity: ``score = -(L2 + L1) / 2 + selection x D(h)``
with ``L1 = sum_c -log p_c`` and ``L2 = ||log p||_2`` (upper bounds on the loss that are
smallest for uncertain predictions) and ``D(h)`` high for samples unlike the labeled set.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import nn

from alscope.components import Params
from alscope.data.base import DataSource
from alscope.engine.hooks import BatchContext, FitContext, TrainingHooks
from alscope.models.base import Backbone, BackboneOutput
from alscope.strategies._features import probe
from alscope.strategies.base import PoolView, Requirements, ScoringStrategy


class Critic(nn.Module):
    def __init__(self, in_dim: int, width: int = 512) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, 1),
            nn.Sigmoid(),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h.float()).squeeze(1)


def gradient_penalty(critic: nn.Module, h_u: torch.Tensor, h_l: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: ``E[(||grad D(x)|| - 1)^2]`` on random interpolates of paired samples."""
    n = min(len(h_u), len(h_l))
    if n == 0:
        return torch.zeros((), device=h_u.device)
    a, b = h_u[:n].float(), h_l[:n].float()
    t = torch.rand(n, 1, device=a.device)
    x = (a + t * (b - a)).requires_grad_(True)
    out = critic(x)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return ((grad.norm(2, dim=1) - 1) ** 2).mean()


def waal_uncertainty(probs: torch.Tensor) -> torch.Tensor:
    """``(L2 + L1) / 2`` of ``log p``; smaller means more uncertain."""
    log_p = probs.float().clamp_min(1e-12).log()
    return 0.5 * log_p.norm(2, dim=1) + 0.5 * (-log_p).sum(dim=1)


class WAALParams(Params):
    alpha: float = Field(
        default=2e-3, ge=0.0, description="weight of the Wasserstein term in the backbone's loss"
    )
    gp_weight: float = Field(
        default=1.0,
        ge=0.0,
        description="weight of the critic's gradient penalty (WGAN-GP's 10 stalls the sigmoid critic)",
    )
    selection: float = Field(
        default=10.0, ge=0.0, description="weight of the critic's diversity score in the query"
    )
    critic_lr: float = Field(default=1e-3, gt=0)
    critic_steps: int = Field(default=1, ge=1, description="critic updates per training batch")
    width: int = Field(default=512, ge=1, description="hidden width of the critic")


class WAALHooks(TrainingHooks):
    """Adversarial training of the embedding against a Wasserstein critic."""

    self_trained = ("critic",)

    def __init__(self, params: WAALParams, who: str = "waal") -> None:
        self.params, self.who = params, who
        self.embedding_dim = 0
        self.gamma = 1.0
        #: per epoch: mean critic estimate of W and mean critic loss
        self.distances: list[float] = []
        self.critic_losses: list[float] = []
        self._sums: list[list[torch.Tensor]] = []
        self._unlabeled: Any = None
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self._optimizer: torch.optim.Optimizer | None = None

    def bind(self, model: Backbone, source: DataSource) -> None:
        self.embedding_dim = probe(model, source, self.who, features=False).embedding_dim

    def modules(self) -> dict[str, nn.Module]:
        if not self.embedding_dim:
            raise RuntimeError("WAALHooks.bind(model, source) must run before modules()")
        return {"critic": Critic(self.embedding_dim, self.params.width)}

    def on_fit_start(self, fit: FitContext) -> None:
        self._optimizer = torch.optim.Adam(fit.modules["critic"].parameters(), lr=self.params.critic_lr)
        batch_size = fit.config.batch_size if fit.config is not None else 64
        self._unlabeled = fit.unlabeled_batches(batch_size)
        n_unl = len(fit.unlabeled_indices)
        self.gamma = len(fit.labeled_indices) / n_unl if n_unl else 1.0
        self.distances, self.critic_losses, self._sums = [], [], []

    def extra_loss(self, batch: BatchContext) -> torch.Tensor | None:
        if self._unlabeled is None:
            return None
        critic = batch.fit.modules["critic"]
        x_u = next(self._unlabeled).inputs
        h_u = batch.fit.model(x_u).embedding
        h_l = batch.output.embedding
        self._cache = (h_l.detach(), h_u.detach())
        distance = critic(h_u).mean() - self.gamma * critic(h_l).mean()
        return self.params.alpha * distance

    def on_batch_end(self, batch: BatchContext) -> None:
        if self._cache is None or self._optimizer is None:
            return
        critic = batch.fit.modules["critic"]
        h_l, h_u = self._cache
        self._cache = None
        for _ in range(self.params.critic_steps):
            distance = critic(h_u).mean() - self.gamma * critic(h_l).mean()
            loss = -distance + self.params.gp_weight * gradient_penalty(critic, h_u, h_l)
            self._optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self._optimizer.step()
        self._sums.append([distance.detach(), loss.detach()])

    def on_epoch_end(self, epoch: int, fit: FitContext) -> None:
        if self._sums:
            distance, loss = torch.stack([torch.stack(pair) for pair in self._sums]).mean(0).tolist()
            self.distances.append(distance)
            self.critic_losses.append(loss)
            self._sums = []

    def pool_outputs(self, output: BackboneOutput, modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
        return {"critic_score": modules["critic"](output.embedding)}


class WAAL(ScoringStrategy):
    """Queries uncertain samples that the critic finds unlike the labeled set."""

    Params = WAALParams
    component_name = "waal"

    def requirements(self) -> Requirements:
        return Requirements(probs=True, extra_outputs=("critic_score",))

    def training_hooks(self) -> WAALHooks:
        return WAALHooks(self.params, self.component_name)

    def score(self, view: PoolView) -> torch.Tensor:
        probs = view.require("probs", self.component_name)
        critic = view.require("critic_score", self.component_name)
        return -waal_uncertainty(probs) + self.params.selection * critic.float()
