"""CEAL: cost-effective active learning.

Wang, Zhang, Li, Zhang & Lin, IEEE TCSVT 2016, "Cost-Effective Active Learning for Deep
Image Classification". Each cycle a base strategy (default: entropy) picks the samples
the oracle labels, and the unlabeled samples the model is most sure of (entropy below
``delta``) are added to the *next* training run with their predicted class as a
pseudo-label. The threshold decays by ``dr`` per cycle, ``delta_t = delta - dr x t``, so
fewer pseudo-labels are trusted as the labeled set grows. Pseudo-labels live only in the
strategy's state: they never join the oracle's labeled set, its answers or the learning
curve's labeled count, and each cycle replaces the previous cycle's.

In the paper the model is fine-tuned on labeled plus pseudo-labeled samples right after
the query; here the next cycle trains on them (from scratch or warm, as configured),
which is the same data in the same order of events.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from alscope.components import Params
from alscope.data.base import DataSource
from alscope.engine.hooks import BatchContext, FitContext, TrainingHooks
from alscope.models.base import Backbone, BackboneOutput
from alscope.strategies.base import PoolView, Requirements, Strategy, make_base_strategy


class CEALParams(Params):
    base: str = Field(default="entropy", description="the strategy that picks what the oracle labels")
    base_params: dict[str, Any] = Field(default_factory=dict, description="parameters of the base strategy")
    delta: float = Field(
        default=0.005, ge=0.0, description="entropy threshold (nats) below which a sample is pseudo-labeled"
    )
    dr: float = Field(default=0.00033, ge=0.0, description="decay of the threshold per cycle")


class PseudoLabelHooks(TrainingHooks):
    """Adds pseudo-labeled samples to training and forwards everything else to the base
    strategy's hooks (if any)."""

    def __init__(self, inner: TrainingHooks | None, indices: np.ndarray, labels: np.ndarray) -> None:
        self.inner = inner or TrainingHooks()
        self.indices, self.labels = indices, labels
        self.wants_features = self.inner.wants_features
        self.self_trained = self.inner.self_trained

    def pseudo_labels(self) -> tuple[np.ndarray, np.ndarray] | None:
        if len(self.indices):
            return self.indices, self.labels
        return self.inner.pseudo_labels()

    def bind(self, model: Backbone, source: DataSource) -> None:
        self.inner.bind(model, source)

    def modules(self) -> dict[str, nn.Module]:
        return self.inner.modules()

    def make_optimizer(self, name: str, module: nn.Module, config: Any) -> torch.optim.Optimizer | None:
        return self.inner.make_optimizer(name, module, config)

    def on_fit_start(self, fit: FitContext) -> None:
        self.inner.on_fit_start(fit)

    def extra_loss(self, batch: BatchContext) -> torch.Tensor | None:
        return self.inner.extra_loss(batch)

    def on_batch_end(self, batch: BatchContext) -> None:
        self.inner.on_batch_end(batch)

    def on_epoch_end(self, epoch: int, fit: FitContext) -> None:
        self.inner.on_epoch_end(epoch, fit)

    def pool_outputs(self, output: BackboneOutput, modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
        return self.inner.pool_outputs(output, modules)

    def pool_batch_outputs(
        self, inputs: Any, output: BackboneOutput, modules: dict[str, nn.Module]
    ) -> dict[str, torch.Tensor]:
        return self.inner.pool_batch_outputs(inputs, output, modules)

    def pool_indexed_outputs(
        self, indices: torch.Tensor, inputs: Any, output: BackboneOutput, modules: dict[str, nn.Module]
    ) -> dict[str, torch.Tensor]:
        return self.inner.pool_indexed_outputs(indices, inputs, output, modules)


class CEAL(Strategy):
    """A base strategy's query plus high-confidence pseudo-labels for training."""

    Params = CEALParams
    component_name = "ceal"

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.base: Strategy = make_base_strategy(self.params.base, self.params.base_params, CEAL)
        self.cycle = 0
        self.pseudo_indices = np.empty(0, dtype=np.int64)
        self.pseudo_labels = np.empty(0, dtype=np.int64)

    def requirements(self) -> Requirements:
        return replace(self.base.requirements(), probs=True)

    def threshold(self, cycle: int | None = None) -> float:
        """``delta - dr x t`` for the t-th query (0-based)."""
        return self.params.delta - self.params.dr * (self.cycle if cycle is None else cycle)

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        chosen = np.asarray(self.base.select(view, budget, rng))
        probs = view.require("probs", self.component_name).float()
        entropy = -(torch.special.xlogy(probs, probs)).sum(dim=1).numpy()
        sure = (entropy < self.threshold()) & ~np.isin(view.unlabeled, chosen)
        self.pseudo_indices = view.unlabeled[sure].astype(np.int64)
        self.pseudo_labels = probs[torch.from_numpy(sure)].argmax(dim=1).numpy().astype(np.int64)
        self.cycle += 1
        return chosen

    def training_hooks(self) -> PseudoLabelHooks:
        return PseudoLabelHooks(self.base.training_hooks(), self.pseudo_indices, self.pseudo_labels)

    def state_dict(self) -> dict[str, Any]:
        return {
            "cycle": self.cycle,
            "pseudo_indices": self.pseudo_indices.tolist(),
            "pseudo_labels": self.pseudo_labels.tolist(),
            "base": self.base.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.cycle = int(state["cycle"])
        self.pseudo_indices = np.asarray(state["pseudo_indices"], dtype=np.int64)
        self.pseudo_labels = np.asarray(state["pseudo_labels"], dtype=np.int64)
        self.base.load_state_dict(state.get("base", {}))
