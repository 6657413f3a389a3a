"""EGL: expected gradient length of the last layer.

Settles, Craven & Ray, NIPS 2008: *Multiple-instance active learning* (expected gradient
length); Huang et al., 2016: *Active learning for speech recognition: the power of
gradients*. A sample's score is the norm of the gradient of its cross-entropy loss that
labelling it would give, expected over the model's predicted label distribution:
``EGL(x) = sum_y p(y|x) |grad_theta CE(f(x), y)|``. The gradient is taken with respect to
the last layer (``classifier``: weight ``W`` and bias ``b`` on the penultimate embedding
``h``), where it has a closed form per sample: ``grad_W = (p - e_y) h^T`` and
``grad_b = p - e_y``, so ``|grad| = |p - e_y| sqrt(|h|^2 + 1)`` (``+ 1`` only with the
bias) and ``|p - e_y|^2 = |p|^2 - 2 p_y + 1``. Nothing of size ``C x D`` is built and no
batch-mean loss is differentiated: each sample gets its own gradient norm.
"""

from __future__ import annotations

import torch
from pydantic import Field

from alscope.components import Params
from alscope.strategies._distances import BLOCK_ELEMENTS, as_tensor
from alscope.strategies.base import PoolView, Requirements, ScoringStrategy


class EGLParams(Params):
    bias: bool = Field(
        default=True,
        description="count the classifier's bias in the gradient (backbones' last layers have one)",
    )


def egl_scores(probs: torch.Tensor, h: torch.Tensor, bias: bool = True) -> torch.Tensor:
    """``sum_y p_y |p - e_y| sqrt(|h|^2 + bias)`` of every row, float64."""
    p = probs.double()
    p_sq = p.square().sum(dim=1, keepdim=True)
    residual = (p_sq - 2.0 * p + 1.0).clamp_min(0.0).sqrt()  # |p - e_y| for every y
    h_norm = (h.double().square().sum(dim=1) + (1.0 if bias else 0.0)).sqrt()
    return (p * residual).sum(dim=1) * h_norm


class EGL(ScoringStrategy):
    """The largest expected last-layer gradient norm under the predicted labels."""

    component_name = "egl"
    Params = EGLParams

    def requirements(self) -> Requirements:
        return Requirements(probs=True, embeddings=True)

    def score(self, view: PoolView) -> torch.Tensor:
        probs = view.require("probs", self.component_name)
        h = view.require("embeddings", self.component_name)
        out = torch.empty(len(probs), dtype=torch.float64)
        step = max(1, BLOCK_ELEMENTS // max(1, probs.shape[1] + h.shape[1]))
        for r0 in range(0, len(probs), step):
            p = as_tensor(probs[r0 : r0 + step], view.device)
            x = as_tensor(h[r0 : r0 + step], view.device)
            out[r0 : r0 + step] = egl_scores(p, x, self.params.bias).cpu()
        return out
