"""Strategy training hooks: how a strategy adds modules and losses to training.

Learning Loss, TiDAL, VAAL and the like are written as plain strategies whose
:meth:`~alscope.strategies.base.Strategy.training_hooks` returns a
:class:`TrainingHooks`; the trainer calls it and never needs to know the strategy.

Order within one training batch::

    output = model(inputs, return_features=hooks.wants_features)
    loss = mean(per_sample_loss) + sum(extra_loss(batch))   # backbone + extra modules
    backward; step every optimiser (the backbone's and each extra module's)
    hooks.on_batch_end(batch)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from alscope.models.base import Backbone, BackboneOutput

if TYPE_CHECKING:
    from alscope.config import TrainingConfig


@dataclass
class FitContext:
    """What hooks can see of the whole fit."""

    model: Backbone
    labeled_indices: Any
    epochs: int
    device: torch.device
    modules: dict[str, nn.Module] = field(default_factory=dict)


@dataclass
class BatchContext:
    """One training batch, after the forward pass.

    Attributes:
        indices: dataset (pool) indices of the samples, on the CPU.
        output: the backbone's output (``features`` filled when ``wants_features``).
        per_sample_loss: the unreduced classification loss, ``(B,)``.
    """

    epoch: int
    step: int
    indices: torch.Tensor
    inputs: Any
    targets: torch.Tensor
    output: BackboneOutput
    per_sample_loss: torch.Tensor
    fit: FitContext


class TrainingHooks:
    """Override what you need; every method has a do-nothing default."""

    #: ask the backbone for intermediate features in training and pool passes
    wants_features: bool = False

    def modules(self) -> dict[str, nn.Module]:
        """Extra modules trained alongside the classifier (moved to the run's device)."""
        return {}

    def make_optimizer(
        self, name: str, module: nn.Module, config: TrainingConfig
    ) -> torch.optim.Optimizer | None:
        """The extra module's own optimiser; None uses the backbone's recipe."""
        del name, module, config
        return None

    def on_fit_start(self, fit: FitContext) -> None:
        """Called once before the first epoch (reset per-sample state here)."""

    def extra_loss(self, batch: BatchContext) -> torch.Tensor | None:
        """A scalar added to the classification loss of this batch."""
        del batch
        return None

    def on_batch_end(self, batch: BatchContext) -> None:
        """After the optimiser step; sees indices, outputs and features of the batch."""

    def on_epoch_end(self, epoch: int, fit: FitContext) -> None:
        """After each epoch."""

    def pool_outputs(self, output: BackboneOutput, modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
        """Per-sample values computed in the pool pass, e.g. ``{"predicted_loss": (B,)}``;
        they reach the strategy as ``view.extras``."""
        del output, modules
        return {}
