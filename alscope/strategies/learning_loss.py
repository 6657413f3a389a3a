"""Learning Loss for Active Learning.

Yoo & Kweon, CVPR 2019, "Learning Loss for Active Learning" (LL4AL). A small
loss-prediction module reads the backbone's intermediate features (per feature: global
average pooling, ``Linear(D_i, 128)``, ReLU; concatenated; ``Linear(n x 128, 1)``) and is
trained with the classifier on the *margin ranking loss* of the paper: the batch is split
into pairs ``(i, B-1-i)`` and the module must order each pair's true losses with a
margin. The total loss is ``CE + lambda x ranking``. After ``epoch_loss`` epochs the
features are detached, so the module keeps learning but no longer shapes the backbone.

Selection takes the samples with the **highest** predicted loss (a widely copied port
took the lowest). As in the official code (Mephisto405/Learning-Loss-for-Active-Learning,
``main.py``), the backbone and the module are built once per trial and continue across
cycles (``training_defaults``: ``warm_start``), with fresh optimisers every cycle.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import AliasChoices, Field
from torch import nn

from alscope.components import Params
from alscope.data.base import DataSource
from alscope.engine.hooks import BatchContext, FitContext, TrainingHooks
from alscope.models.base import Backbone, BackboneOutput
from alscope.strategies._features import FeatureHead, features_of, maybe_detach, probe, stop_epoch
from alscope.strategies.base import PoolView, Requirements, ScoringStrategy


def ranking_loss(predicted: torch.Tensor, target: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """LL4AL's pairwise margin ranking loss: pair sample ``i`` with ``B-1-i`` (the middle
    sample of an odd batch sits out) and penalise ``max(0, margin - sign * (p_i - p_j))``
    where ``sign = +1`` if ``target_i > target_j`` else ``-1``; mean over pairs."""
    predicted = predicted.float().flatten()
    target = target.detach().float().flatten()
    half = len(predicted) // 2
    if half == 0:
        return predicted.sum() * 0.0
    p = (predicted - predicted.flip(0))[:half]
    t = (target - target.flip(0))[:half]
    sign = 2 * torch.sign(torch.clamp(t, min=0)) - 1
    return torch.clamp(margin - sign * p, min=0).sum() / half


class LearningLossParams(Params):
    weight: float = Field(
        default=1.0,
        ge=0.0,
        validation_alias=AliasChoices("weight", "lambda"),
        description="lambda: weight of the ranking loss in the total loss (also accepted as 'lambda')",
    )
    margin: float = Field(default=1.0, ge=0.0, description="margin of the ranking loss")
    epoch_loss: int | None = Field(
        default=None,
        ge=0,
        description="epoch from which the module's gradient stops reaching the backbone "
        "(ALScope's --epoch-loss, 120 of 200 there); default: epoch_loss_fraction of the epochs",
    )
    epoch_loss_fraction: float = Field(
        default=0.6, ge=0.0, le=1.0, description="used when epoch_loss is unset: 0.6 = 120 of 200 epochs"
    )
    width: int = Field(default=128, ge=1, description="hidden units per feature in the loss module")


class LossPredictionHooks(TrainingHooks):
    """Trains the loss-prediction module; its pool output is ``predicted_loss``."""

    wants_features = True
    module_name = "loss_module"

    def __init__(self, params: LearningLossParams, who: str = "learning_loss") -> None:
        self.params, self.who = params, who
        self.feature_dims: tuple[int, ...] = ()
        self.stop_at = 0
        self.epoch_losses: list[float] = []
        self._sum, self._count = 0.0, 0

    def bind(self, model: Backbone, source: DataSource) -> None:
        self.feature_dims = probe(model, source, self.who).feature_dims

    def modules(self) -> dict[str, nn.Module]:
        if not self.feature_dims:
            raise RuntimeError(f"{type(self).__name__}.bind(model, source) must run before modules()")
        return {self.module_name: FeatureHead(self.feature_dims, 1, self.params.width)}

    def on_fit_start(self, fit: FitContext) -> None:
        self.stop_at = stop_epoch(fit.epochs, self.params.epoch_loss, self.params.epoch_loss_fraction)
        self.epoch_losses = []

    def predict(
        self, output: BackboneOutput, modules: dict[str, nn.Module], detach: bool = False
    ) -> torch.Tensor:
        features = maybe_detach(features_of(output, self.who), detach)
        return modules[self.module_name](features).squeeze(1)

    def ranking(self, batch: BatchContext) -> torch.Tensor:
        """The un-weighted ranking loss of this batch (TA-VAAL reuses it)."""
        predicted = self.predict(batch.output, batch.fit.modules, detach=batch.epoch >= self.stop_at)
        loss = ranking_loss(predicted, batch.per_sample_loss, self.params.margin)
        self._sum += float(loss.detach()) * len(batch.indices)
        self._count += len(batch.indices)
        return loss

    def extra_loss(self, batch: BatchContext) -> torch.Tensor:
        return self.params.weight * self.ranking(batch)

    def on_epoch_end(self, epoch: int, fit: FitContext) -> None:
        self.epoch_losses.append(self._sum / max(self._count, 1))
        self._sum, self._count = 0.0, 0

    def pool_outputs(self, output: BackboneOutput, modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
        return {"predicted_loss": self.predict(output, modules)}


class LearningLoss(ScoringStrategy):
    """Queries the samples whose predicted loss is highest."""

    Params = LearningLossParams
    component_name = "learning_loss"

    def requirements(self) -> Requirements:
        return Requirements(extra_outputs=("predicted_loss",))

    def training_hooks(self) -> LossPredictionHooks:
        return LossPredictionHooks(self.params, self.component_name)

    def training_defaults(self) -> dict[str, Any]:
        return {"warm_start": True}

    def score(self, view: PoolView) -> torch.Tensor:
        return view.require("predicted_loss", self.component_name)
