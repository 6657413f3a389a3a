"""A multilayer perceptron for feature vectors (the core's tabular backbone)."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import nn

from alscope.components import Params
from alscope.data.base import InputSpec
from alscope.errors import ConfigError
from alscope.models.base import Backbone, BackboneOutput


class MLPParams(Params):
    hidden_sizes: list[int] = Field(
        default=[256, 128], description="width of each hidden layer", min_length=1
    )
    dropout: float = Field(
        default=0.3, ge=0.0, lt=1.0, description="dropout before each hidden layer's output"
    )
    batch_norm: bool = Field(default=False, description="BatchNorm after each linear layer")


class MLP(Backbone):
    """Linear -> (BatchNorm) -> ReLU -> Dropout blocks, then a linear classifier."""

    Params = MLPParams
    component_name = "mlp"

    def __init__(self, input_spec: InputSpec, n_classes: int, params: Any) -> None:
        super().__init__(input_spec, n_classes, params)
        if input_spec.kind == "tokens":
            raise ConfigError(
                "backbone mlp takes feature vectors or images, not token sequences; "
                "use a text backbone from alscope-nlp"
            )
        in_features = 1
        for dim in input_spec.shape:
            in_features *= dim
        blocks: list[nn.Module] = []
        for width in params.hidden_sizes:
            layers: list[nn.Module] = [nn.Linear(in_features, width)]
            if params.batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers += [nn.ReLU(inplace=True), nn.Dropout(params.dropout)]
            blocks.append(nn.Sequential(*layers))
            in_features = width
        self.blocks = nn.ModuleList(blocks)
        self.classifier = nn.Linear(in_features, n_classes)

    def forward(self, inputs: torch.Tensor, return_features: bool = False) -> BackboneOutput:
        h = inputs.flatten(1).float()
        features = []
        for block in self.blocks:
            h = block(h)
            features.append(h)
        return BackboneOutput(self.classifier(h), h, features if return_features else None)
