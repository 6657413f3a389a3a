"""The (C+1)-way detector that LfOSA and EOAL train next to the classifier.

Both papers keep two networks of the same architecture: the classifier, trained on the
labeled known samples, and a detector with one more output, trained on the labeled known
samples (their class) and the labeled out-of-distribution samples (class ``C``) with a
temperature-scaled cross-entropy, ``CE(z / T, y)``, ``T = known_temperature`` for known
and ``unknown_temperature`` for OOD samples (both 0.5 in the authors' commands).

Here the detector is a separate copy of the backbone, built as
``type(model)(model.input_spec, model.n_classes + 1, model.params)`` with fresh weights
(pretrained weights load as the classifier's do), not a head on the classifier's
features: the classifier must never see OOD samples, and a shared trunk would learn from
them through the detector's loss. The hooks train it themselves (``self_trained``) with
the run's optimiser recipe, as both papers train the two networks with the same SGD: after
each classifier epoch, one detector epoch over labeled known + labeled OOD, shuffled
together, exactly the authors' loop (``detector_epochs`` spreads more or fewer epochs over
the fit). Pacing the detector by classifier batches instead would give it fewer steps the
more OOD samples are labeled, since the trainer's batches cover the known samples only.

Before any OOD sample is labeled the detector trains on the known samples alone; its
extra output is never a target then, and selection runs unchanged, as in both authors'
first round.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from alscope.components import Params
from alscope.config import TrainingConfig
from alscope.data.base import Batch, DataSource
from alscope.engine.hooks import FitContext, TrainingHooks
from alscope.engine.trainer import (
    amp_enabled,
    autocast,
    build_optimizer,
    build_scheduler,
    epoch_batches,
    optimizer_step,
)
from alscope.errors import ModelError
from alscope.models.base import Backbone, BackboneOutput


class DetectorParams(Params):
    known_temperature: float = Field(
        default=0.5,
        gt=0.0,
        description="T of the detector's cross-entropy CE(z / T, y) for labeled known samples "
        "(the authors' --known-T 0.5; LfOSA: a low T separates the known and unknown samples' "
        "activations)",
    )
    unknown_temperature: float = Field(
        default=0.5,
        gt=0.0,
        description="T of the detector's cross-entropy for labeled OOD samples, target class C "
        "(the authors' --unknown-T 0.5)",
    )
    detector_epochs: int | None = Field(
        default=None,
        ge=1,
        description="epochs of the detector per cycle, spread over the classifier's epochs; "
        "default: as many as the classifier's (the authors' loop)",
    )


def build_detector(model: Backbone, who: str) -> Backbone:
    """A fresh copy of the classifier's architecture with ``C + 1`` outputs."""
    try:
        detector = type(model)(model.input_spec, model.n_classes + 1, model.params)
    except Exception as exc:  # a plugin backbone with another constructor
        raise ModelError(
            f"strategy {who!r} trains a (C+1)-way detector of the classifier's architecture, built as "
            f"{type(model).__name__}(input_spec, n_classes + 1, params); that failed: {exc}"
        ) from exc
    return detector


def temperature_ce(
    logits: torch.Tensor, y: torch.Tensor, ood: torch.Tensor, params: DetectorParams
) -> torch.Tensor:
    """``mean CE(z_i / T_i, y_i)`` with ``T_i`` the known or unknown temperature."""
    t = torch.full(y.shape, params.known_temperature, device=logits.device)
    t[ood] = params.unknown_temperature
    return F.cross_entropy(logits.float() / t[:, None], y)


class DetectorHooks(TrainingHooks):
    """Builds and trains the detector; subclasses add losses (EOAL) and pool outputs."""

    detector_name = "detector"
    self_trained: tuple[str, ...] = ("detector",)

    def __init__(self, params: DetectorParams, who: str) -> None:
        self.params, self.who = params, who
        self.template: Backbone | None = None
        self.n_classes = 0
        self.embedding_dim = 0
        #: mean detector loss of each detector epoch of the last fit
        self.detector_losses: list[float] = []
        self._done = 0
        self._optimizer: torch.optim.Optimizer | None = None
        self._scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self._scaler: torch.amp.GradScaler | None = None
        self._config = TrainingConfig()
        self._indices = np.empty(0, dtype=np.int64)
        self._lookup: torch.Tensor | None = None

    # -- building -------------------------------------------------------------------

    def bind(self, model: Backbone, source: DataSource) -> None:
        del source
        self.template = model
        self.n_classes = int(model.n_classes)

    def modules(self) -> dict[str, nn.Module]:
        if self.template is None:
            raise RuntimeError(f"{type(self).__name__}.bind(model, source) must run before modules()")
        detector = build_detector(self.template, self.who)
        self.embedding_dim = int(detector.embedding_dim)
        return {self.detector_name: detector, **self.extra_modules()}

    def extra_modules(self) -> dict[str, nn.Module]:
        """Modules trained with the detector by the same optimiser (EOAL's OVA heads)."""
        return {}

    # -- training -------------------------------------------------------------------

    def on_fit_start(self, fit: FitContext) -> None:
        if fit.source is None:
            raise ModelError(f"strategy {self.who!r} trains its detector on the pool; the fit has no source")
        self._config = fit.config or TrainingConfig()
        known = np.asarray(fit.labeled_indices, dtype=np.int64)
        ood = np.asarray(fit.ood_indices, dtype=np.int64)
        if fit.targets is None and len(known):
            raise ModelError(
                f"strategy {self.who!r} needs the labeled samples' targets to train its detector"
            )
        lookup = torch.full((len(fit.source),), -1, dtype=torch.long)
        if len(known):
            assert fit.targets is not None
            lookup[torch.from_numpy(known)] = fit.targets[torch.from_numpy(known)].long()
        lookup[torch.from_numpy(ood)] = self.n_classes
        known_targets = lookup[torch.from_numpy(known)].numpy()
        bad = known[(known_targets < 0) | (known_targets >= self.n_classes)]
        if len(bad):
            raise ModelError(
                f"strategy {self.who!r}: labeled samples {bad[:5].tolist()} have no known-class target"
            )
        self._lookup = lookup
        self._indices = np.concatenate([known, ood])
        params = [p for m in self._trained(fit).values() for p in m.parameters()]
        self._optimizer = build_optimizer(params, self._config)
        epochs = self.params.detector_epochs or fit.epochs
        steps = epochs * self._epoch_batches()[1]
        detector_config = self._config.model_copy(update={"epochs": epochs})
        self._scheduler = build_scheduler(self._optimizer, detector_config, steps)
        self._scaler = torch.amp.GradScaler("cuda", enabled=amp_enabled(self._config, fit.device))
        self._done = 0
        self.detector_losses = []

    def _trained(self, fit: FitContext) -> dict[str, nn.Module]:
        return {name: fit.modules[name] for name in self.self_trained}

    def _epoch_batches(self) -> tuple[bool, int]:
        """``(drop_last, steps per epoch)`` of the detector's epochs, as the trainer's."""
        return epoch_batches(len(self._indices), self._config.batch_size)

    def on_epoch_end(self, epoch: int, fit: FitContext) -> None:
        total = self.params.detector_epochs or fit.epochs
        due = round((epoch + 1) * total / max(fit.epochs, 1))
        while self._done < due:
            self.before_detector_epoch(fit)
            self.detector_losses.append(self._detector_epoch(fit))
            self._done += 1
        if epoch == fit.epochs - 1:
            self.after_training(fit)

    def before_detector_epoch(self, fit: FitContext) -> None:
        """Called before each detector epoch (EOAL re-clusters the labeled OOD here)."""

    def after_training(self, fit: FitContext) -> None:
        """Called once the last detector epoch of the fit is done."""

    def _batches(self, fit: FitContext) -> Iterator[Batch]:
        assert fit.source is not None
        yield from fit.source.batches(
            self._indices,
            batch_size=self._config.batch_size,
            train=True,
            shuffle=True,
            generator=fit.generator,
            drop_last=self._epoch_batches()[0],
        )

    def _detector_epoch(self, fit: FitContext) -> float:
        assert self._optimizer is not None and self._scaler is not None and self._lookup is not None
        modules = self._trained(fit)
        for m in modules.values():
            m.train()
        use_amp = amp_enabled(self._config, fit.device)
        per_step = self._config.scheduler == "linear"
        total, count = 0.0, 0
        for batch in self._batches(fit):
            inputs = batch.to(fit.device).inputs
            y = self._lookup[batch.indices].to(fit.device)
            ood = y == self.n_classes
            with autocast(fit.device, use_amp):
                output = fit.modules[self.detector_name](inputs)
                loss = self.detector_loss(output, y, ood, batch.indices, fit)
            optimizer_step(
                loss,
                [self._optimizer],
                self._scaler,
                self._config.grad_clip,
                [p for m in modules.values() for p in m.parameters()],
            )
            if per_step and self._scheduler is not None:
                self._scheduler.step()
            total += float(loss.detach()) * len(y)
            count += len(y)
        if not per_step and self._scheduler is not None:
            self._scheduler.step()
        return total / max(count, 1)

    def detector_loss(
        self,
        output: BackboneOutput,
        y: torch.Tensor,
        ood: torch.Tensor,
        indices: torch.Tensor,
        fit: FitContext,
    ) -> torch.Tensor:
        """The detector's loss on one batch (``y``: classes, ``C`` for the OOD samples,
        ``ood`` marks them, ``indices`` are pool indices): the temperature-scaled CE."""
        del indices, fit
        return temperature_ce(output.logits, y, ood, self.params)

    # -- pool pass ------------------------------------------------------------------

    def detect(self, inputs: Any, modules: dict[str, nn.Module]) -> BackboneOutput:
        """The detector's output on a batch (the pool pass has set it to eval mode)."""
        detector = modules.get(self.detector_name)
        if detector is None:
            raise ModelError(f"strategy {self.who!r}: the pool pass got no trained detector")
        return detector(inputs)


def class_ids(values: torch.Tensor | np.ndarray, n_classes: int) -> np.ndarray:
    """Predicted classes ``0..C`` (``C`` = unknown) from a float pool output, rounded and
    clamped, so any float array is read as class ids."""
    arr = np.asarray(values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values)
    arr = np.nan_to_num(arr.astype(np.float64), nan=float(n_classes))
    return np.clip(np.rint(arr), 0, n_classes).astype(np.int64)
