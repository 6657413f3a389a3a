"""The backbone contract.

A backbone is an ``nn.Module`` built from the dataset's :class:`InputSpec` and the
number of classes. Its forward returns logits, the penultimate embedding (the input
of the last linear layer, ``classifier``) and, when asked, the intermediate features
that Learning Loss, TiDAL and the like read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn

from alscope.components import Component, NoParams, validate_params
from alscope.data.base import ALDataset, InputSpec


@dataclass(frozen=True)
class PrepareContext:
    """What :meth:`Backbone.prepare_dataset` may use: a cache folder that outlives the run,
    the run's device and inference batch size, the experiment seed."""

    cache_dir: Path
    device: torch.device
    batch_size: int
    seed: int


@dataclass
class BackboneOutput:
    logits: torch.Tensor
    embedding: torch.Tensor
    features: list[torch.Tensor] | None = None


class Backbone(nn.Module):
    """Base class of backbones.

    Subclasses define ``Params`` (a pydantic model), build their layers in
    ``__init__(input_spec, n_classes, params)``, expose the last linear layer as
    ``self.classifier`` and implement :meth:`forward`.
    """

    Params: ClassVar[type[BaseModel]] = NoParams
    component_name: str = ""
    classifier: nn.Linear

    def __init__(self, input_spec: InputSpec, n_classes: int, params: Any) -> None:
        super().__init__()
        self.input_spec, self.n_classes, self.params = input_spec, n_classes, params

    @classmethod
    def build(
        cls, input_spec: InputSpec, n_classes: int, params: BaseModel | Mapping[str, Any] | None
    ) -> Backbone:
        checked = validate_params(cls.Params, params, f"backbone {cls.component_name or cls.__name__}")
        return cls(input_spec, n_classes, checked)

    @classmethod
    def parameter_table(cls) -> list[tuple[str, str, str, str]]:
        return Component.parameter_table.__func__(cls)  # type: ignore[attr-defined]

    @classmethod
    def prepare_dataset(cls, dataset: ALDataset, params: Any, ctx: PrepareContext) -> ALDataset:
        """Turn the loaded dataset into what this backbone consumes, once per experiment.

        The default returns it unchanged. A text backbone tokenises here (and caches the
        tokens under ``ctx.cache_dir``); a frozen encoder replaces the inputs by cached
        embeddings so that only its head trains. Pool and test keep their sizes and
        order: every index still means the same sample.
        """
        del params, ctx
        return dataset

    @classmethod
    def training_defaults(cls, params: Any, ctx: PrepareContext) -> dict[str, Any]:
        """Training settings this backbone needs unless the user set them (e.g. AdamW with a
        small learning rate and linear warm-up for fine-tuning a transformer). Keys are
        :class:`~alscope.config.TrainingConfig` fields; the default asks for nothing."""
        del params, ctx
        return {}

    def forward(self, inputs: Any, return_features: bool = False) -> BackboneOutput:
        raise NotImplementedError

    @property
    def embedding_dim(self) -> int:
        return self.classifier.in_features

    def dropout_modules(self) -> list[nn.Module]:
        return [m for m in self.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
