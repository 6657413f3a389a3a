"""Forgetting events, adapted to the unlabeled pool.

Toneva, Sordoni, Combes, Trischler, Bengio & Gordon, ICLR 2019, "An empirical study of
example forgetting during deep neural network learning" (official code
``mtoneva/example_forgetting``: ``run_cifar.py`` records each training sample's
correctness at every presentation, ``order_examples_by_forgetting.py`` counts the
1 -> 0 transitions). A *forgetting event* is a sample going from correctly classified to
misclassified between two successive presentations; samples never learned get the
maximal count (the number of presentations).

The pool's labels are unknown, so correctness cannot be measured. Here the sample's own
predicted class is the label it can forget: during the cycle's training, at every
checkpoint (end of an epoch, every ``every_epochs`` epochs or every ``every_steps``
steps, and always after the last epoch) the model, in eval mode without gradients,
predicts each measured unlabeled sample, and a *flip* is counted whenever the predicted
class differs from the previous checkpoint's. The samples with the most flips are
queried; ties are broken by the final model's uncertainty (``tie_break``) and then at
random with the cycle's generator. "Never learned" has no counterpart: every sample
always has a predicted class, which it agrees with.

Cost: one forward pass over the measured samples per checkpoint, batched, the
predictions kept as one integer per measured sample (memory linear in the pool).
``subset`` measures a random subset of the unlabeled pool only; the unmeasured samples
rank after every measured one.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from alscope.components import Params
from alscope.engine.hooks import BatchContext, FitContext, TrainingHooks
from alscope.errors import ModelError
from alscope.models.base import BackboneOutput
from alscope.strategies._pool_model import eval_mode
from alscope.strategies.base import PoolView, Requirements, ScoringStrategy, top_k
from alscope.strategies.uncertainty import entropy_scores, least_confidence_scores, margin_scores

#: the pool pass's name for each sample's flip count (-1: not measured)
FLIPS = "forgetting_flips"


def tie_break_scores(probs: torch.Tensor, rule: str) -> torch.Tensor:
    """The final prediction's uncertainty in ``[0, 1]`` (1: most uncertain), so that
    ``flips + 0.5 x uncertainty`` never moves a sample past one with more flips."""
    n_classes = probs.shape[1]
    if rule == "random" or n_classes < 2:
        return torch.zeros(len(probs), dtype=torch.float64)
    probs = probs.double()
    if rule == "margin":
        return 1.0 + margin_scores(probs)
    if rule == "entropy":
        return entropy_scores(probs) / math.log(n_classes)
    return least_confidence_scores(probs) / (1.0 - 1.0 / n_classes)


class ForgettingParams(Params):
    every_epochs: int | None = Field(
        default=None,
        ge=1,
        description="record the pool's predictions after every k-th epoch; default: "
        "spaced so that about n_checkpoints records are taken",
    )
    n_checkpoints: int = Field(
        default=20,
        ge=2,
        description="records per cycle when every_epochs and every_steps are unset "
        "(bounds the cost when min_steps raises the epochs)",
    )
    every_steps: int | None = Field(
        default=None,
        ge=1,
        description="record after every N optimiser steps instead of at epoch ends",
    )
    subset: int | None = Field(
        default=None,
        ge=1,
        description="measure only this many unlabeled samples, drawn at random each cycle; "
        "the others rank after every measured one",
    )
    tie_break: Literal["margin", "entropy", "least_confidence", "random"] = Field(
        default="margin",
        description="order among equal flip counts: the final prediction's uncertainty, or random",
    )
    batch_size: int | None = Field(
        default=None, ge=1, description="batch of the recording passes; default: training.eval_batch_size"
    )


class ForgettingHooks(TrainingHooks):
    """Records the predicted class of the measured unlabeled samples at each checkpoint
    and counts its changes; hands the counts to the pool pass by dataset index."""

    def __init__(self, params: ForgettingParams, who: str = "forgetting") -> None:
        self.params, self.who = params, who
        self.measured = np.empty(0, dtype=np.int64)  # sorted dataset indices
        self.last_prediction = torch.empty(0, dtype=torch.int64)
        self.flips = torch.empty(0, dtype=torch.int64)
        self.n_records = 0
        self.every_epochs = 1
        self._last_step = -1  # optimiser steps done at the last record
        self._steps = 0

    def on_fit_start(self, fit: FitContext) -> None:
        unlabeled = np.asarray(fit.unlabeled_indices, dtype=np.int64)
        if fit.source is None:
            unlabeled = unlabeled[:0]
        subset = self.params.subset
        if subset is not None and subset < len(unlabeled):
            # the hooks' own generator: the labeled batches' shuffling is untouched
            keep = torch.randperm(len(unlabeled), generator=fit.generator)[:subset].numpy()
            unlabeled = unlabeled[keep]
        self.measured = np.sort(unlabeled)
        self.last_prediction = torch.full((len(self.measured),), -1, dtype=torch.int64)
        self.flips = torch.zeros(len(self.measured), dtype=torch.int64)
        self.n_records, self._last_step, self._steps = 0, -1, 0
        self.every_epochs = self.params.every_epochs or max(
            1, math.ceil(fit.epochs / self.params.n_checkpoints)
        )

    @torch.no_grad()
    def record(self, fit: FitContext) -> None:
        """One checkpoint: predict every measured sample and count the changed classes."""
        if not len(self.measured) or fit.source is None:
            return
        from alscope.engine.trainer import amp_enabled, autocast

        config = fit.config
        batch_size = self.params.batch_size or (config.eval_batch_size if config is not None else 1024)
        amp = config is not None and amp_enabled(config, fit.device)
        predicted = torch.empty(len(self.measured), dtype=torch.int64)
        start = 0
        with eval_mode(fit.model) as model:
            for batch in fit.source.batches(self.measured, batch_size=batch_size, train=False):
                with autocast(fit.device, amp):
                    logits = model(batch.to(fit.device).inputs).logits
                predicted[start : start + len(batch)] = logits.float().argmax(dim=1).cpu()
                start += len(batch)
        if self.n_records:
            self.flips += predicted != self.last_prediction
        self.last_prediction = predicted
        self.n_records += 1
        self._last_step = self._steps

    def on_batch_end(self, batch: BatchContext) -> None:
        self._steps += 1
        every = self.params.every_steps
        if every is not None and self._steps % every == 0:
            self.record(batch.fit)

    def on_epoch_end(self, epoch: int, fit: FitContext) -> None:
        due = self.params.every_steps is None and (epoch + 1) % self.every_epochs == 0
        # the trained model is always a checkpoint, unless a step record just took it
        last = epoch == fit.epochs - 1 and self._last_step != self._steps
        if due or last:
            self.record(fit)

    def pool_indexed_outputs(
        self, indices: torch.Tensor, inputs: Any, output: BackboneOutput, modules: dict[str, nn.Module]
    ) -> dict[str, torch.Tensor]:
        del inputs, output, modules
        if not self.n_records:
            raise ModelError(
                f"strategy {self.who!r} recorded no predictions of the pool during training "
                f"(the trainer was given no pool or no unlabeled indices); it has no flips to rank"
            )
        # the measured indices are sorted: a binary search finds each batch row's count
        idx = indices.numpy()
        position = np.searchsorted(self.measured, idx).clip(max=len(self.measured) - 1)
        found = self.measured[position] == idx
        flips = torch.full((len(idx),), -1.0)
        flips[torch.from_numpy(found)] = self.flips[torch.from_numpy(position[found])].float()
        return {FLIPS: flips}


class Forgetting(ScoringStrategy):
    """Queries the unlabeled samples whose predicted class flipped most often during the
    cycle's training."""

    Params = ForgettingParams
    component_name = "forgetting"

    def requirements(self) -> Requirements:
        return Requirements(probs=self.params.tie_break != "random", extra_outputs=(FLIPS,))

    def training_hooks(self) -> ForgettingHooks:
        return ForgettingHooks(self.params, self.component_name)

    def score(self, view: PoolView) -> torch.Tensor:
        """``flips + 0.5 x uncertainty`` in float64: the flips decide, the final
        prediction's uncertainty orders equal flip counts (unmeasured samples: -1)."""
        flips = view.require(FLIPS, self.component_name).double()
        if self.params.tie_break == "random":
            return flips
        probs = view.require("probs", self.component_name)
        return flips + 0.5 * tie_break_scores(probs, self.params.tie_break)

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        # float64 throughout: float32 would blur the uncertainty behind large flip counts
        return view.unlabeled[top_k(self.score(view).cpu().numpy(), budget, rng)]
