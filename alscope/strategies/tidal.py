"""TiDAL: training dynamics for active learning.

Kye, Choi, Kim, Kim & Cho, ICCV 2023, "TiDAL: Learning Training Dynamics for Active
Learning". Each labeled sample's *training dynamics* is the running mean of its softmax
output over training, ``p̄(x) = 1/T sum_t p_t(x)``, recorded per dataset index after
every batch that contains it. A prediction module on the intermediate features (Learning
Loss's layout with **one output per class**, softmax) is trained to match it with
``KL(p̄ || m(x))``; the total loss is ``CE + weight x KL``. The official code
(hyperconnect/TiDAL, ``train_test.py``) never detaches the features for TiDAL (only its
Learning Loss baseline does), so by default the module's gradient reaches the backbone
throughout; ``epoch_loss`` / ``epoch_loss_fraction`` < 1 add a Learning Loss-style stop.
As there, the backbone and the module continue across cycles (``warm_start``).
Unlabeled samples have no dynamics, so the module predicts them, and the query takes
the highest entropy (or the smallest margin) of the predicted dynamics.

ALScope's port builds the module with a single output, so its softmax is always 1 and
the entropy is 0 for every sample (the query is then random); here the output size is
the number of classes, checked in the tests.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from alscope.components import Params
from alscope.data.base import DataSource
from alscope.engine.hooks import BatchContext, FitContext, TrainingHooks
from alscope.models.base import Backbone, BackboneOutput
from alscope.strategies._features import FeatureHead, features_of, maybe_detach, probe, stop_epoch
from alscope.strategies.base import PoolView, Requirements, ScoringStrategy


def dynamics_scores(probs: torch.Tensor, query: str) -> torch.Tensor:
    """Higher is queried first: entropy, or the negative top-2 margin."""
    if query == "entropy":
        return -(torch.special.xlogy(probs, probs)).sum(dim=1)
    if probs.shape[1] < 2:
        return torch.zeros(len(probs), dtype=probs.dtype, device=probs.device)
    top2 = probs.topk(2, dim=1).values
    return -(top2[:, 0] - top2[:, 1])


class TiDALParams(Params):
    query: Literal["entropy", "margin"] = Field(
        default="entropy", description="score of the predicted dynamics: entropy or margin"
    )
    weight: float = Field(default=1.0, ge=0.0, description="weight of the module's KL loss")
    epoch_loss: int | None = Field(
        default=None,
        ge=0,
        description="epoch from which the module's gradient stops reaching the backbone; "
        "default: epoch_loss_fraction of the epochs",
    )
    epoch_loss_fraction: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="used when epoch_loss is unset; 1.0: never detached, as the official code",
    )
    width: int = Field(default=128, ge=1, description="hidden units per feature in the module")


class TiDALHooks(TrainingHooks):
    """Records the training dynamics and trains the module that predicts them."""

    wants_features = True

    def __init__(self, params: TiDALParams, who: str = "tidal") -> None:
        self.params, self.who = params, who
        self.feature_dims: tuple[int, ...] = ()
        self.n_classes = 0
        self.mean_probs = torch.empty(0)
        self.counts = torch.empty(0)
        self.stop_at = 0
        self.epoch_losses: list[float] = []
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None
        self._sum, self._count = 0.0, 0

    def bind(self, model: Backbone, source: DataSource) -> None:
        found = probe(model, source, self.who)
        self.feature_dims, self.n_classes = found.feature_dims, found.n_classes

    def modules(self) -> dict[str, nn.Module]:
        if not self.feature_dims:
            raise RuntimeError("TiDALHooks.bind(model, source) must run before modules()")
        return {"dynamics_module": FeatureHead(self.feature_dims, self.n_classes, self.params.width)}

    def on_fit_start(self, fit: FitContext) -> None:
        n = len(fit.source) if fit.source is not None else 0
        if fit.source is None:  # used outside the engine: size on demand
            n = int(max(fit.labeled_indices, default=-1)) + 1
        self.mean_probs = torch.zeros(n, self.n_classes, device=fit.device)
        self.counts = torch.zeros(n, device=fit.device)
        self.stop_at = stop_epoch(fit.epochs, self.params.epoch_loss, self.params.epoch_loss_fraction)
        self.epoch_losses = []

    def predict_log_probs(
        self, output: BackboneOutput, modules: dict[str, nn.Module], detach: bool = False
    ) -> torch.Tensor:
        features = maybe_detach(features_of(output, self.who), detach)
        return F.log_softmax(modules["dynamics_module"](features).float(), dim=1)

    def extra_loss(self, batch: BatchContext) -> torch.Tensor:
        idx = batch.indices.to(self.mean_probs.device)
        probs = torch.softmax(batch.output.logits.detach().float(), dim=1)
        count = self.counts[idx].unsqueeze(1)
        target = (self.mean_probs[idx] * count + probs) / (count + 1)  # includes this step
        self._pending = (idx, target)
        log_pred = self.predict_log_probs(batch.output, batch.fit.modules, detach=batch.epoch >= self.stop_at)
        loss = F.kl_div(log_pred, target, reduction="batchmean")
        self._sum += float(loss.detach()) * len(idx)
        self._count += len(idx)
        return self.params.weight * loss

    def on_batch_end(self, batch: BatchContext) -> None:
        if self._pending is not None:
            idx, target = self._pending
            self.mean_probs[idx] = target
            self.counts[idx] += 1
            self._pending = None

    def on_epoch_end(self, epoch: int, fit: FitContext) -> None:
        self.epoch_losses.append(self._sum / max(self._count, 1))
        self._sum, self._count = 0.0, 0

    def pool_outputs(self, output: BackboneOutput, modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
        probs = self.predict_log_probs(output, modules).exp()
        return {"tidal_score": dynamics_scores(probs, self.params.query)}


class TiDAL(ScoringStrategy):
    """Queries the samples whose predicted training dynamics are most uncertain."""

    Params = TiDALParams
    component_name = "tidal"

    def requirements(self) -> Requirements:
        return Requirements(extra_outputs=("tidal_score",))

    def training_hooks(self) -> TiDALHooks:
        return TiDALHooks(self.params, self.component_name)

    def training_defaults(self) -> dict[str, Any]:
        return {"warm_start": True}

    def score(self, view: PoolView) -> torch.Tensor:
        return view.require("tidal_score", self.component_name)
