"""The backbones: shapes from the InputSpec, embeddings, features, dropout, pretrained weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("alscope_cv", reason="alscope-cv is not installed (pip install ./alscope-cv)")

import torch
from alscope_cv import backbones as bb
from alscope_cv.backbones import VGG16, ResNet18, ResNet34, ResNet50, SmallCNN
from torch import nn

from alscope.data.base import InputSpec
from alscope.engine.mc_dropout import dropout_modules, mc_dropout
from alscope.errors import ConfigError, ModelError
from alscope.models.base import Backbone

DIGITS = InputSpec("image", (1, 28, 28))
CIFAR = InputSpec("image", (3, 32, 32))
PHOTO = InputSpec("image", (3, 96, 96))


def build(cls: type[Backbone], spec: InputSpec, n_classes: int = 7, **params: Any) -> Backbone:
    torch.manual_seed(0)
    return cls.build(spec, n_classes, params)


SMALL = InputSpec("image", (3, 16, 16))

CASES = [
    (SmallCNN, DIGITS, 128, 2),
    (SmallCNN, CIFAR, 128, 2),
    (ResNet18, DIGITS, 512, 4),
    (ResNet18, CIFAR, 512, 4),
    (ResNet18, PHOTO, 512, 4),
    (ResNet34, SMALL, 512, 4),
    (ResNet50, SMALL, 2048, 4),
    (VGG16, DIGITS, 512, 5),
]


@pytest.mark.parametrize(("cls", "spec", "dim", "n_features"), CASES)
def test_outputs(cls: type[Backbone], spec: InputSpec, dim: int, n_features: int) -> None:
    model = build(cls, spec).eval()
    x = torch.randn(2, *spec.shape)
    with torch.no_grad():
        out = model(x)
        full = model(x, return_features=True)
    assert out.logits.shape == (2, 7) and out.embedding.shape == (2, dim)
    assert out.features is None
    assert isinstance(model.classifier, nn.Linear) and model.embedding_dim == dim
    # the classifier is the last layer: logits = classifier(embedding) in eval mode
    torch.testing.assert_close(model.classifier(out.embedding), out.logits)
    assert full.features is not None and len(full.features) == n_features
    assert all(f.shape[0] == 2 and f.ndim == 4 and f.is_contiguous() for f in full.features)
    full.features[0].view(2, -1)  # plain layout: readers may view them
    torch.testing.assert_close(full.logits, out.logits)


def test_styles() -> None:
    cifar = build(ResNet18, CIFAR)
    assert isinstance(cifar.stem[0], nn.Conv2d) and cifar.stem[0].kernel_size == (3, 3)
    assert isinstance(cifar.stem[3], nn.Identity)  # no max-pool
    photo = build(ResNet18, PHOTO)
    assert photo.stem[0].kernel_size == (7, 7) and isinstance(photo.stem[3], nn.MaxPool2d)
    forced = build(ResNet18, CIFAR, style="imagenet")
    assert forced.stem[0].kernel_size == (7, 7)
    vgg_photo = build(VGG16, PHOTO, batch_norm=False).eval()
    assert vgg_photo.embedding_dim == 4096
    with torch.no_grad():
        assert vgg_photo(torch.randn(1, 3, 96, 96)).embedding.shape == (1, 4096)
    grey = build(ResNet18, InputSpec("image", (1, 96, 96)))
    assert grey.stem[0].in_channels == 1


def test_training_step_and_backward() -> None:
    model = build(ResNet18, DIGITS).train()
    x = torch.randn(4, 1, 28, 28)
    out = model(x, return_features=True)
    loss = out.logits.logsumexp(1).mean() + sum(f.mean() for f in out.features)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_init_is_seeded() -> None:
    a, b = build(SmallCNN, DIGITS), build(SmallCNN, DIGITS)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_dropout_for_mc_strategies() -> None:
    cnn = build(SmallCNN, DIGITS)
    # where Gal et al. and Kirsch et al. put it: after the convolutions and the hidden layer
    assert [m.p for m in dropout_modules(cnn)] == [0.25, 0.5]
    assert cnn.conv_dropout.p == 0.25 and cnn.dropout.p == 0.5
    assert len(dropout_modules(build(SmallCNN, DIGITS, conv_dropout=0.0))) == 1
    x = torch.randn(5, 1, 28, 28)
    cnn.eval()
    with torch.no_grad(), mc_dropout(cnn):
        a, b = cnn(x).logits, cnn(x).logits
    assert not torch.equal(a, b)  # dropout samples
    resnet = build(ResNet18, CIFAR)  # no dropout by default: MC strategies refuse it clearly
    with pytest.raises(ModelError, match=r"dropout=0\.3"), mc_dropout(resnet):
        pass
    assert len(dropout_modules(build(ResNet18, CIFAR, dropout=0.3))) == 1
    bn = build(ResNet18, CIFAR, dropout=0.3)
    bn.eval()
    with mc_dropout(bn):
        assert not bn.stem[1].training  # BatchNorm stays in eval mode


def test_params_are_validated() -> None:
    with pytest.raises(ConfigError, match="dropout"):
        SmallCNN.build(DIGITS, 10, {"dropout": 1.5})
    with pytest.raises(
        ConfigError, match=r"unknown weights 'imagenet22k' for resnet18 \(accepted: IMAGENET1K_V1, DEFAULT"
    ):
        ResNet18.build(CIFAR, 10, {"weights": "imagenet22k"})
    with pytest.raises(ConfigError, match="unknown parameter 'widht'"):
        SmallCNN.build(DIGITS, 10, {"widht": 3})
    with pytest.raises(ConfigError, match="style"):
        ResNet18.build(CIFAR, 10, {"style": "huge"})
    assert ResNet50.Params(weights="default").weights == "DEFAULT"
    assert ResNet18.Params(weights="none").weights is None


@pytest.mark.parametrize("cls", [SmallCNN, ResNet18, VGG16])
def test_refuses_non_images(cls: type[Backbone]) -> None:
    with pytest.raises(ConfigError, match="takes images"):
        cls.build(InputSpec("vector", (64,)), 10, {})


# -- pretrained weights ------------------------------------------------------------------------


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    bb._state_dict.cache_clear()
    yield tmp_path / "torch" / "hub" / "checkpoints"
    bb._state_dict.cache_clear()


def test_offline_weights_fail_clearly(torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.error

    def offline(url: str, dst: str, *args: Any, **kwargs: Any) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ModelError) as info:
        ResNet18.build(CIFAR, 10, {"weights": "DEFAULT"})
    msg = str(info.value)
    assert "resnet18-f37072fd.pth" in msg and "not in the torch hub cache" in msg
    assert str(torch_home) in msg and "name resolution" in msg and "without weights=" in msg


def test_weights_from_the_cache(torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("must not download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    torch.manual_seed(123)
    reference = torchvision.models.resnet18()
    torch_home.mkdir(parents=True)
    torch.save(reference.state_dict(), torch_home / "resnet18-f37072fd.pth")
    photo = build(ResNet18, PHOTO, weights="IMAGENET1K_V1")
    assert torch.equal(photo.layer3[0].conv1.weight, reference.layer3[0].conv1.weight)
    assert torch.equal(photo.stem[0].weight, reference.conv1.weight)
    assert photo.classifier.out_features == 7  # a new head
    grey = build(ResNet18, InputSpec("image", (1, 96, 96)), weights="DEFAULT")
    torch.testing.assert_close(grey.stem[0].weight, reference.conv1.weight.sum(dim=1, keepdim=True))
    with pytest.raises(ConfigError, match="4 channels"):
        build(ResNet18, InputSpec("image", (4, 96, 96)), weights="DEFAULT")
    small = build(ResNet18, CIFAR, weights="DEFAULT")  # CIFAR stem: new 3x3 conv, pretrained blocks
    assert torch.equal(small.layer1[0].conv2.weight, reference.layer1[0].conv2.weight)
    (torch_home / "resnet18-f37072fd.pth").write_bytes(b"garbage")
    bb._state_dict.cache_clear()
    with pytest.raises(ModelError, match=r"could not be loaded from .*delete the file"):
        build(ResNet18, PHOTO, weights="DEFAULT")
