"""Helpers shared by the model-based strategies: pooling a backbone's intermediate
features, probing their shapes, and the per-feature head of Learning Loss and TiDAL.

The backbone contract gives intermediate features as ``output.features``, a list of
tensors: ``(B, C, H, W)`` for CNN blocks, ``(B, D)`` for MLP blocks, ``(B, T, D)`` for
transformer layers. :func:`pool_feature` turns each into ``(B, D)``: global average
pooling over space for 4-D maps, the mean over tokens for 3-D hidden states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from alscope.data.base import DataSource
from alscope.errors import ModelError
from alscope.models.base import Backbone, BackboneOutput


def pool_feature(feature: torch.Tensor) -> torch.Tensor:
    """``(B, D)`` from one intermediate feature: GAP for ``(B, C, H, W)``, mean over
    tokens for ``(B, T, D)``, unchanged for ``(B, D)``, flattened otherwise."""
    if feature.dim() == 4:
        return feature.float().mean(dim=(2, 3))
    if feature.dim() == 3:
        return feature.float().mean(dim=1)
    if feature.dim() == 2:
        return feature.float()
    return feature.float().flatten(1)


def features_of(output: BackboneOutput, who: str) -> list[torch.Tensor]:
    """The output's intermediate features, or a clear error naming the strategy."""
    if not output.features:
        raise ModelError(
            f"strategy {who!r} needs intermediate features, but the backbone returned none; "
            f"its forward must fill BackboneOutput.features when called with return_features=True"
        )
    return list(output.features)


@dataclass(frozen=True)
class Probe:
    """What one evaluation batch of two samples shows about a backbone and its inputs."""

    inputs: Any
    feature_dims: tuple[int, ...]
    embedding_dim: int
    n_classes: int


@torch.no_grad()
def probe(model: Backbone, source: DataSource, who: str, features: bool = True) -> Probe:
    """One evaluation-mode forward pass on the pool's first samples (on the model's
    current device, usually the CPU before training), restoring every module's mode.
    Draws no random numbers, so it changes nothing in a seeded run."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        n = min(2, len(source))
        batch = next(iter(source.batches(np.arange(n, dtype=np.int64), batch_size=n, train=False)))
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        inputs = _to(batch.inputs, device)
        out = model(inputs, return_features=features)
    finally:
        for module, mode in modes.items():
            module.training = mode
    dims = tuple(int(pool_feature(f).shape[1]) for f in features_of(out, who)) if features else ()
    return Probe(batch.inputs, dims, int(out.embedding.shape[1]), int(out.logits.shape[1]))


def _to(inputs: Any, device: torch.device) -> Any:
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device)
    if isinstance(inputs, dict):
        return {k: _to(v, device) for k, v in inputs.items()}
    return inputs


class FeatureHead(nn.Module):
    """Learning Loss's loss-prediction module, generalised to any feature shapes:
    per feature, pool -> Linear(D_i, width) -> ReLU; concatenate; Linear(n x width, out).

    Yoo & Kweon (2019) use width 128 and one output (the predicted loss); TiDAL uses the
    same layout with one output per class.
    """

    def __init__(self, feature_dims: tuple[int, ...], out_dim: int, width: int = 128) -> None:
        super().__init__()
        if not feature_dims:
            raise ValueError("FeatureHead needs at least one feature")
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(d, width), nn.ReLU()) for d in feature_dims)
        self.out = nn.Linear(width * len(feature_dims), out_dim)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if len(features) != len(self.blocks):
            raise ModelError(
                f"the backbone returned {len(features)} intermediate features, the head was built for "
                f"{len(self.blocks)}"
            )
        hidden = [block(pool_feature(f)) for block, f in zip(self.blocks, features, strict=True)]
        return self.out(torch.cat(hidden, dim=1))


def maybe_detach(features: list[torch.Tensor], detach: bool) -> list[torch.Tensor]:
    return [f.detach() for f in features] if detach else features


def stop_epoch(epochs: int, absolute: int | None, fraction: float) -> int:
    """The epoch from which the head's gradient no longer reaches the backbone:
    ``absolute`` when given, else ``round(fraction * epochs)``."""
    return int(absolute) if absolute is not None else round(fraction * epochs)


@torch.no_grad()
def eval_forward(model: Backbone, inputs: Any, features: bool = True) -> BackboneOutput:
    """A forward pass in evaluation mode inside training (BatchNorm statistics and
    dropout untouched), restoring every module's mode afterwards."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        return model(inputs, return_features=features)
    finally:
        for module, mode in modes.items():
            module.training = mode
