"""Helpers for strategies that run the trained model over the pool's inputs themselves
(``Requirements(model=True, pool_inputs=True)``): adversarial perturbations, perturbed
weights, per-sample losses and gradients."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from alscope.errors import ModelError


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode (dropout off, BatchNorm on its running statistics, as every
    pool pass runs it), its previous mode restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def float_inputs(inputs: Any, strategy: str) -> torch.Tensor:
    """The batch as a float32 tensor to perturb, or a clear error for inputs that are not
    real-valued features (token ids of a fine-tuned text encoder)."""
    if not isinstance(inputs, torch.Tensor) or not inputs.is_floating_point():
        kind = "a dict of tensors" if isinstance(inputs, dict) else type(inputs).__name__
        if isinstance(inputs, torch.Tensor):
            kind = f"{inputs.dtype} tensors"
        raise ModelError(
            f"strategy {strategy!r} perturbs the model's inputs, but they are {kind} (token ids), "
            f"where no input-space gradient exists; run the text backbone frozen "
            f"(--backbone-param mode=frozen), whose inputs are sentence embeddings"
        )
    return inputs.float()


def logits_of(model: nn.Module, inputs: Any) -> torch.Tensor:
    """Float32 logits of one forward pass (no autocast: these feed gradients)."""
    return model(inputs).logits.float()
