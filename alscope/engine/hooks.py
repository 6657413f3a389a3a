"""Strategy training hooks: how a strategy adds modules and losses to training.

Learning Loss, TiDAL, VAAL and the like are written as plain strategies whose
:meth:`~alscope.strategies.base.Strategy.training_hooks` returns a
:class:`TrainingHooks`; the trainer calls it and never needs to know the strategy.

Once per cycle, before training: ``hooks.bind(model, source)`` (shapes may be probed
here), then ``hooks.modules()``. Order within one training batch::

    output = model(inputs, return_features=hooks.wants_features)
    loss = mean(weight * per_sample_loss) + extra_loss(batch)   # backbone + extra modules
    backward; step every optimiser (the backbone's and each extra module's, except
        the modules named in ``self_trained``, which the hooks step themselves)
    hooks.on_batch_end(batch)

The :class:`FitContext` gives hooks the whole pool (``source``), the unlabeled indices
and a generator of their own, so adversarial strategies (VAAL, WAAL) draw unlabeled
batches with :meth:`FitContext.unlabeled_batches` without touching the shuffling of the
labeled batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from alscope.models.base import Backbone, BackboneOutput

if TYPE_CHECKING:
    from alscope.config import TrainingConfig
    from alscope.data.base import Batch, DataSource


@dataclass
class FitContext:
    """What hooks can see of the whole fit.

    Attributes:
        labeled_indices: the pool indices trained on (the oracle's labels).
        source: the pool; hooks draw unlabeled samples from it.
        unlabeled_indices: pool indices without a label this cycle (empty when unknown).
        targets: pool-sized labels, ``-1`` where unknown (pseudo-labels filled in).
        pseudo_indices: pool indices trained on with pseudo-labels (CEAL), not labeled.
        ood_indices: labeled pool indices the oracle answered "out of distribution"
            (open-set pools); never in ``labeled_indices``, never trained on as a class,
            but open-set strategies' modules (LfOSA's detector) learn from them.
        generator: the hooks' own generator, seeded from the fit's seed, independent of
            the labeled batches' shuffling.
        config: the training recipe.
    """

    model: Backbone
    labeled_indices: Any
    epochs: int
    device: torch.device
    modules: dict[str, nn.Module] = field(default_factory=dict)
    source: DataSource | None = None
    unlabeled_indices: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    targets: torch.Tensor | None = None
    pseudo_indices: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    ood_indices: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    generator: torch.Generator = field(default_factory=torch.Generator)
    config: TrainingConfig | None = None

    @property
    def n_classes(self) -> int:
        return int(self.model.n_classes)

    def unlabeled_batches(self, batch_size: int, *, train: bool = True) -> Iterator[Batch] | None:
        """Endless shuffled batches of unlabeled pool samples (reshuffled after each pass,
        moved to the fit's device), or None when there is nothing unlabeled."""
        if self.source is None or len(self.unlabeled_indices) == 0:
            return None
        return _endless(self, batch_size, train)


def _endless(fit: FitContext, batch_size: int, train: bool) -> Iterator[Batch]:
    assert fit.source is not None
    size = max(1, min(batch_size, len(fit.unlabeled_indices)))
    while True:
        for batch in fit.source.batches(
            fit.unlabeled_indices, batch_size=size, train=train, shuffle=True, generator=fit.generator
        ):
            yield batch.to(fit.device)


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
    #: names of modules (from :meth:`modules`) that the hooks step themselves, e.g. an
    #: adversarial VAE and discriminator updated in :meth:`on_batch_end`; the trainer
    #: builds no optimiser for them
    self_trained: tuple[str, ...] = ()

    def bind(self, model: Backbone, source: DataSource) -> None:
        """Called before :meth:`modules` with the cycle's (untrained) backbone and the
        pool, so modules can be sized from ``model.n_classes``, ``model.input_spec`` or a
        probe forward pass (:func:`alscope.strategies._features.probe`)."""
        del model, source

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

    def pseudo_labels(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Pool indices and pseudo-labels trained on in this fit alongside the labeled
        samples (CEAL); they never join the labeled set. None: none."""
        return None

    def pool_outputs(self, output: BackboneOutput, modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
        """Per-sample values computed in the pool pass, e.g. ``{"predicted_loss": (B,)}``;
        they reach the strategy as ``view.extras``."""
        del output, modules
        return {}

    def pool_batch_outputs(
        self, inputs: Any, output: BackboneOutput, modules: dict[str, nn.Module]
    ) -> dict[str, torch.Tensor]:
        """What the pool pass calls: like :meth:`pool_outputs` with the batch's
        (evaluation-transformed) inputs too, for modules that read raw inputs (VAAL's
        VAE). The default calls :meth:`pool_outputs`."""
        del inputs
        return self.pool_outputs(output, modules)

    def pool_indexed_outputs(
        self, indices: torch.Tensor, inputs: Any, output: BackboneOutput, modules: dict[str, nn.Module]
    ) -> dict[str, torch.Tensor]:
        """What the pool pass calls for each batch: like :meth:`pool_batch_outputs` with
        the batch's dataset (pool) indices ``(B,)`` on the CPU too, for hooks that hand
        over per-sample state recorded during training (forgetting's prediction flips).
        The default calls :meth:`pool_batch_outputs`."""
        del indices
        return self.pool_batch_outputs(inputs, output, modules)
