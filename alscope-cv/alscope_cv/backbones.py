"""Image backbones: a small CNN for digits, ResNet-18/34/50 and VGG-16.

Every backbone sizes itself from the dataset's ``InputSpec("image", (C, H, W))``, so any
of them runs on 1-channel 28x28 digits as on 3-channel photos. ``forward`` returns the
logits, the penultimate embedding (the input of ``classifier``, the last linear layer)
and, with ``return_features=True``, the output of every block (what Learning Loss and
TiDAL read). A ``dropout`` layer sits before ``classifier`` for MC-dropout strategies.

ResNet and VGG come in two styles: ``cifar`` (3x3 stem without max-pool for ResNet,
a global-pooled 512-d head for VGG) for inputs up to 64 px, and ``imagenet``
(torchvision's architecture) above; ``style=auto`` picks by input size. Pretrained
ImageNet weights are loaded only when ``weights`` names them (torchvision's names,
e.g. ``DEFAULT`` or ``IMAGENET1K_V1``), from the torch hub cache or, when missing
there, by a download; offline, a missing file is a clear :class:`ModelError`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlparse

import torch
from pydantic import Field, field_validator
from torch import nn

from alscope.components import Params
from alscope.data.base import InputSpec
from alscope.errors import ConfigError, ModelError
from alscope.models.base import Backbone, BackboneOutput

Style = Literal["auto", "cifar", "imagenet"]
#: inputs up to this many pixels per side get the CIFAR-style network under style=auto
CIFAR_MAX_SIDE = 64


def image_shape(input_spec: InputSpec, backbone: str) -> tuple[int, int, int]:
    """(C, H, W) of an image input spec; anything else is a :class:`ConfigError`."""
    if input_spec.kind != "image" or len(input_spec.shape) != 3:
        raise ConfigError(
            f"backbone {backbone} takes images (C, H, W); the dataset gives {input_spec.kind} "
            f"inputs of shape {input_spec.shape}"
        )
    c, h, w = (int(d) for d in input_spec.shape)
    if min(c, h, w) < 1:
        raise ConfigError(f"backbone {backbone}: invalid image shape {input_spec.shape}")
    return c, h, w


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """NHWC memory layout: oneDNN's convolutions and pooling run about twice as fast on CPU
    with it (free for 1-channel images, whose layout does not change). Inside
    ``torch.func`` transforms (per-sample gradients: grand, saal) layouts cannot be
    queried, so the tensor is left as it is there."""
    if torch._C._functorch.is_functorch_wrapped_tensor(x):
        return x
    return x.contiguous(memory_format=torch.channels_last)


def plain(features: list[torch.Tensor]) -> list[torch.Tensor]:
    """Block outputs in the default layout, so that readers may ``.view`` them."""
    return [f.contiguous() for f in features]


def resolve_style(style: str, h: int, w: int) -> str:
    if style != "auto":
        return style
    return "cifar" if max(h, w) <= CIFAR_MAX_SIDE else "imagenet"


# -- pretrained weights ----------------------------------------------------------------------


def weights_enum(arch: str) -> Any:
    import torchvision.models

    return torchvision.models.get_model_weights(arch)


def check_weights_name(arch: str, name: str | None) -> str | None:
    if name is None or name.lower() in {"", "none", "null"}:
        return None
    enum = weights_enum(arch)
    accepted = list(enum.__members__)
    for member in accepted:
        if member.lower() == name.lower():
            return member
    raise ValueError(f"unknown weights {name!r} for {arch} (accepted: {', '.join(accepted)}, or none)")


def _cache_path(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


@functools.lru_cache(maxsize=2)
def _state_dict(url: str) -> dict[str, torch.Tensor]:
    return torch.hub.load_state_dict_from_url(url, progress=False, check_hash=True, map_location="cpu")


def pretrained_state(arch: str, name: str, backbone: str) -> Mapping[str, torch.Tensor]:
    """The state dict of torchvision's ``arch`` weights ``name`` (cache first, else a download)."""
    weights = weights_enum(arch)[name]
    cached = _cache_path(weights.url)
    try:
        return _state_dict(weights.url)
    except Exception as exc:
        what = f"backbone {backbone}: pretrained weights {arch} {name} ({cached.name})"
        reason = f"{type(exc).__name__}: {exc}"
        if cached.is_file():
            raise ModelError(
                f"{what} could not be loaded from {cached} ({reason}); delete the file to download it again"
            ) from None
        raise ModelError(
            f"{what} are not in the torch hub cache ({cached.parent}) and could not be downloaded "
            f"from {weights.url} ({reason}). Download them once with network access or copy the "
            f"file into {cached.parent}; without weights= the backbone trains from scratch"
        ) from None


def adapt_first_conv(conv: nn.Conv2d, channels: int, pretrained: bool, backbone: str) -> nn.Conv2d:
    """``conv`` for ``channels`` input channels; pretrained RGB filters are summed for grey input."""
    if conv.in_channels == channels:
        return conv
    new = nn.Conv2d(
        channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        conv.stride,  # type: ignore[arg-type]
        conv.padding,  # type: ignore[arg-type]
        bias=conv.bias is not None,
    )
    if pretrained:
        if channels != 1:
            raise ConfigError(
                f"backbone {backbone}: pretrained weights take 3-channel (or grey) images, the "
                f"dataset's have {channels} channels; drop weights= to train from scratch"
            )
        with torch.no_grad():
            new.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
            if conv.bias is not None and new.bias is not None:
                new.bias.copy_(conv.bias)
    return new


class PretrainedParams(Params):
    style: Style = Field(
        default="auto",
        description="cifar: small-image network; imagenet: torchvision's; auto: cifar up to 64 px",
    )
    weights: str | None = Field(
        default=None,
        description="torchvision ImageNet weights (DEFAULT, IMAGENET1K_V1, ...); none: from scratch",
    )

    #: torchvision architecture whose weight names are accepted
    arch: ClassVar[str] = ""

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: str | None) -> str | None:
        return check_weights_name(cls.arch, value) if cls.arch else value


# -- small CNN ---------------------------------------------------------------------------------


class CNNParams(Params):
    channels: list[int] = Field(
        default=[16, 32],
        min_length=1,
        description="output channels of each conv block (3x3 conv, ReLU, 2x2 max-pool)",
    )
    hidden: int = Field(default=128, ge=1, description="width of the hidden layer (the embedding)")
    conv_dropout: float = Field(
        default=0.25,
        ge=0.0,
        lt=1.0,
        description="dropout on the last conv block's output (Gal et al. 2017's MNIST CNN: 0.25)",
    )
    dropout: float = Field(
        default=0.5,
        ge=0.0,
        lt=1.0,
        description="dropout on the hidden layer, before the classifier (Gal et al.: 0.5)",
    )
    batch_norm: bool = Field(default=False, description="BatchNorm after each convolution")


class SmallCNN(Backbone):
    """Conv blocks, dropout, adaptive average pooling to at most 7x7, a hidden layer,
    dropout, classifier.

    The dropout sits where the Bayesian active learning papers put it (Gal, Islam &
    Ghahramani 2017; Kirsch et al. 2019): after the convolutions and after the hidden
    layer, so that MC dropout samples the convolutional features too, not only the
    last linear layer."""

    Params = CNNParams
    component_name = "cnn"

    def __init__(self, input_spec: InputSpec, n_classes: int, params: Any) -> None:
        super().__init__(input_spec, n_classes, params)
        c, h, w = image_shape(input_spec, "cnn")
        blocks: list[nn.Module] = []
        for width in params.channels:
            layers: list[nn.Module] = [nn.Conv2d(c, width, 3, padding=1, bias=not params.batch_norm)]
            if params.batch_norm:
                layers.append(nn.BatchNorm2d(width))
            # max-pool before ReLU: the same result (they commute) on a quarter of the values
            layers += [nn.MaxPool2d(2, ceil_mode=True), nn.ReLU(inplace=True)]
            blocks.append(nn.Sequential(*layers))
            c, h, w = width, -(-h // 2), -(-w // 2)
        self.blocks = nn.ModuleList(blocks)
        self.conv_dropout = nn.Dropout(params.conv_dropout)
        pooled = (min(h, 7), min(w, 7))
        self.pool = nn.AdaptiveAvgPool2d(pooled)
        self.hidden = nn.Sequential(
            nn.Flatten(), nn.Linear(c * pooled[0] * pooled[1], params.hidden), nn.ReLU(inplace=True)
        )
        self.dropout = nn.Dropout(params.dropout)
        self.classifier = nn.Linear(params.hidden, n_classes)
        self.to(memory_format=torch.channels_last)

    def forward(self, inputs: torch.Tensor, return_features: bool = False) -> BackboneOutput:
        x = channels_last(inputs)
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        embedding = self.hidden(self.pool(self.conv_dropout(x)).contiguous())
        logits = self.classifier(self.dropout(embedding))
        return BackboneOutput(logits, embedding, plain(features) if return_features else None)


# -- ResNet ------------------------------------------------------------------------------------


class ResNetParams(PretrainedParams):
    dropout: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="dropout before the classifier (MC dropout)"
    )


class ResNet18Params(ResNetParams):
    arch = "resnet18"


class ResNet34Params(ResNetParams):
    arch = "resnet34"


class ResNet50Params(ResNetParams):
    arch = "resnet50"


class _ResNet(Backbone):
    """torchvision's ResNet; with ``style=cifar`` its stem becomes a 3x3 stride-1 conv without max-pool."""

    arch: ClassVar[str] = "resnet18"

    def __init__(self, input_spec: InputSpec, n_classes: int, params: Any) -> None:
        super().__init__(input_spec, n_classes, params)
        import torchvision.models

        name = self.component_name or self.arch
        c, h, w = image_shape(input_spec, name)
        self.style = resolve_style(params.style, h, w)
        net = getattr(torchvision.models, self.arch)(weights=None)
        if params.weights is not None:
            net.load_state_dict(pretrained_state(self.arch, params.weights, name))
        if self.style == "cifar":
            conv1: nn.Module = nn.Conv2d(c, 64, kernel_size=3, stride=1, padding=1, bias=False)
            maxpool: nn.Module = nn.Identity()
        else:
            conv1 = adapt_first_conv(net.conv1, c, params.weights is not None, name)
            maxpool = net.maxpool
        self.stem = nn.Sequential(conv1, net.bn1, net.relu, maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(params.dropout)
        self.classifier = nn.Linear(net.fc.in_features, n_classes)
        self.to(memory_format=torch.channels_last)

    def forward(self, inputs: torch.Tensor, return_features: bool = False) -> BackboneOutput:
        x = self.stem(channels_last(inputs))
        features = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            features.append(x)
        embedding = torch.flatten(self.pool(x), 1).contiguous()
        logits = self.classifier(self.dropout(embedding))
        return BackboneOutput(logits, embedding, plain(features) if return_features else None)


class ResNet18(_ResNet):
    Params = ResNet18Params
    component_name = "resnet18"
    arch = "resnet18"


class ResNet34(_ResNet):
    Params = ResNet34Params
    component_name = "resnet34"
    arch = "resnet34"


class ResNet50(_ResNet):
    Params = ResNet50Params
    component_name = "resnet50"
    arch = "resnet50"


# -- VGG-16 ------------------------------------------------------------------------------------


class VGGParams(PretrainedParams):
    dropout: float = Field(
        default=0.5, ge=0.0, lt=1.0, description="dropout before the classifier (and in the imagenet head)"
    )
    batch_norm: bool = Field(default=True, description="VGG-16 with BatchNorm (torchvision's vgg16_bn)")

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: str | None) -> str | None:
        # the weight names of vgg16 and vgg16_bn are the same; the architecture is checked on load
        return check_weights_name("vgg16_bn", value)


class VGG16(Backbone):
    """torchvision's VGG-16: five conv stages; ``cifar`` style ends in global pooling and a
    512-d embedding, ``imagenet`` style in torchvision's two 4096-d layers."""

    Params = VGGParams
    component_name = "vgg16"

    def __init__(self, input_spec: InputSpec, n_classes: int, params: Any) -> None:
        super().__init__(input_spec, n_classes, params)
        import torchvision.models

        name = self.component_name or "vgg16"
        c, h, w = image_shape(input_spec, name)
        self.style = resolve_style(params.style, h, w)
        arch = "vgg16_bn" if params.batch_norm else "vgg16"
        net = getattr(torchvision.models, arch)(weights=None, dropout=params.dropout)
        if params.weights is not None:
            net.load_state_dict(pretrained_state(arch, params.weights, name))
        layers = list(net.features)
        layers[0] = adapt_first_conv(layers[0], c, params.weights is not None, name)
        stages, current = [], []
        for layer in layers:
            current.append(layer)
            if isinstance(layer, nn.MaxPool2d):
                if self.style == "cifar":
                    layer.ceil_mode = True  # 28 px inputs keep a 1x1 map after five pools
                stages.append(nn.Sequential(*current))
                current = []
        self.stages = nn.ModuleList(stages)
        if self.style == "cifar":
            self.head: nn.Module = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            width = 512
        else:
            self.head = nn.Sequential(net.avgpool, nn.Flatten(), *list(net.classifier)[:5])
            width = net.classifier[6].in_features
        self.dropout = nn.Dropout(params.dropout)
        self.classifier = nn.Linear(width, n_classes)
        self.to(memory_format=torch.channels_last)

    def forward(self, inputs: torch.Tensor, return_features: bool = False) -> BackboneOutput:
        x = channels_last(inputs)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        embedding = self.head(x.contiguous() if self.style == "imagenet" else x).contiguous()
        logits = self.classifier(self.dropout(embedding))
        return BackboneOutput(logits, embedding, plain(features) if return_features else None)
