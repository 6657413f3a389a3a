"""EL2N and GraNd scores (Paul, Ganguli & Dziugaite, NeurIPS 2021: *Deep learning on a
data diet: finding important examples early in training*), as query strategies.

The paper scores *labeled* training samples with their true labels; on the pool the
labels are unknown, so both scores take the model's prediction ``yhat = argmax p`` as
the label (pseudo-labels), as BADGE does for its gradient embedding:

* ``el2n``: ``|p(x) - onehot(yhat)|_2``, the error vector's norm.
* ``grand``: ``|grad_theta CE(f(x), yhat)|_2``, the per-sample gradient norm.
  ``parameters=all`` (the paper's: every trainable parameter) computes per-sample
  gradients with ``torch.func`` (``vmap`` over ``grad`` of a ``functional_call``) in
  chunks whose gradients fit 256 MiB (``chunk``), the model in eval mode;
  ``parameters=classifier`` is the closed form over the last linear layer, weight and
  bias, ``|p - onehot(yhat)|^2 (|h|^2 + 1)``, from one pool pass.

The paper averages each score over 10 independently trained models early in training;
here the one trained model of the cycle scores the pool (``--ensemble M`` does not
change that). Higher scores (harder samples) are queried first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from alscope.components import Params
from alscope.strategies._distances import as_tensor, gradient_factors
from alscope.strategies._pool_model import eval_mode
from alscope.strategies.base import PoolView, Requirements, ScoringStrategy
from alscope.strategies.uncertainty import chunked_probs

_GRAD_FLOATS = 2**26


def el2n_scores(probs: torch.Tensor) -> torch.Tensor:
    """``|p - onehot(argmax p)|_2`` per row."""
    return gradient_factors(probs).norm(dim=1)


class EL2N(ScoringStrategy):
    """Norm of the error vector against the predicted label."""

    def requirements(self) -> Requirements:
        return Requirements(probs=True)

    def score(self, view: PoolView) -> torch.Tensor:
        return chunked_probs(view, self.component_name or "el2n", el2n_scores)


class GraNdParams(Params):
    parameters: Literal["all", "classifier"] = Field(
        default="all",
        description="all: every trainable parameter (per-sample gradients, torch.func); "
        "classifier: the last linear layer in closed form",
    )
    chunk: int | None = Field(
        default=None,
        ge=1,
        description="samples per vmap of per-sample gradients (parameters=all); default: as many as "
        "keep their gradients within 2^26 floats (256 MiB), at most 1,024",
    )


Loss = Callable[[dict[str, torch.Tensor], Any, torch.Tensor], torch.Tensor]


def functional_loss(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], Loss]:
    """The trainable parameters and ``loss(params, x, y)``: the cross-entropy of ONE sample
    ``x`` (no batch axis) at label ``y`` under ``params`` (``torch.func.functional_call``;
    frozen parameters and buffers as the model holds them), ready for ``vmap``."""
    from torch.func import functional_call

    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    frozen = {k: v.detach() for k, v in model.named_parameters() if not v.requires_grad}
    buffers = dict(model.named_buffers())

    def loss(p: dict[str, torch.Tensor], x: Any, y: torch.Tensor) -> torch.Tensor:
        batch = torch.utils._pytree.tree_map(lambda t: t.unsqueeze(0), x)
        out = functional_call(model, (p, frozen, buffers), (batch,))
        return F.cross_entropy(out.logits.float(), y.unsqueeze(0))

    return params, loss


def predicted_labels(model: torch.nn.Module, inputs: Any) -> torch.Tensor:
    with torch.no_grad():
        return model(inputs).logits.argmax(1)


def per_sample_grad_norms(model: torch.nn.Module, inputs: Any) -> torch.Tensor:
    """``|grad_theta CE(f(x_i), yhat_i)|_2`` over the trainable parameters, ``(B,)``."""
    from torch.func import grad, vmap

    params, loss = functional_loss(model)
    grads = vmap(grad(loss), in_dims=(None, 0, 0))(params, inputs, predicted_labels(model, inputs))
    return torch.stack([g.flatten(1).square().sum(1) for g in grads.values()]).sum(0).sqrt()


def grad_chunk(model: torch.nn.Module, chunk: int | None) -> int:
    """Samples per ``vmap`` of per-sample gradients: ``chunk``, or as many as keep them
    within 2^26 floats (256 MiB), at most 1,024."""
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return chunk or max(1, min(1024, _GRAD_FLOATS // max(n_params, 1)))


class GraNd(ScoringStrategy):
    """Per-sample gradient norm of the loss at the predicted label."""

    Params = GraNdParams

    def requirements(self) -> Requirements:
        if self.params.parameters == "classifier":
            return Requirements(probs=True, embeddings=True)
        return Requirements(model=True, pool_inputs=True)

    def score(self, view: PoolView) -> torch.Tensor:
        who = self.component_name or "grand"
        if self.params.parameters == "classifier":
            a = gradient_factors(as_tensor(view.require("probs", who), view.device))
            h = as_tensor(view.require("embeddings", who), view.device)
            return (a.square().sum(1) * (h.square().sum(1) + 1.0)).sqrt().cpu()
        model = view.require_model(who)
        parts = []
        with eval_mode(model):
            for inputs in view.input_batches(who, grad_chunk(model, self.params.chunk)):
                parts.append(per_sample_grad_norms(model, inputs).cpu())
        return torch.cat(parts) if parts else torch.empty(0)
