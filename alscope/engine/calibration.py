"""Temperature scaling (Guo, Pleiss, Sun & Weinberger, ICML 2017, "On Calibration of
Modern Neural Networks").

With ``training.calibrate: temperature`` the engine holds out ``calibration_fraction``
of the labeled set each cycle, trains on the rest, fits one temperature ``T`` on the
held-out logits by minimising their negative log-likelihood, and wraps the model so
that every later pass (test metrics, the pool view the strategy scores) sees
``logits / T``. Accuracy and the ranking of one sample's classes do not change; the
confidence does, which is what probability-scoring strategies read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from alscope.models.base import Backbone, BackboneOutput

#: the fitted temperature is kept inside this range (a guard against degenerate held-out sets)
T_RANGE = (0.05, 100.0)


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, max_iter: int = 200) -> float:
    """The temperature minimising the NLL of ``softmax(logits / T)`` (LBFGS on ``log T``)."""
    logits = logits.detach().double().cpu()
    targets = targets.detach().long().cpu()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    if not np.isfinite(t):
        return 1.0
    return float(np.clip(t, *T_RANGE))


class TemperatureScaled(Backbone):
    """A backbone whose logits are divided by a fixed temperature; embeddings and
    features pass through unchanged. ``inner`` is the trained model itself (shared)."""

    def __init__(self, inner: Backbone, temperature: float) -> None:
        nn.Module.__init__(self)
        self.inner = inner
        self.input_spec, self.n_classes, self.params = inner.input_spec, inner.n_classes, inner.params
        self.component_name = inner.component_name
        self.temperature = float(temperature)
        self.classifier = inner.classifier  # the same layer (embedding_dim, last-layer access)

    def forward(self, inputs: Any, return_features: bool = False) -> BackboneOutput:
        out = self.inner(inputs, return_features=return_features)
        return BackboneOutput(out.logits / self.temperature, out.embedding, out.features)
