"""alscope-cv's hooks: image datasets and backbones, registered as specs.

Imported by every ``alscope`` command, so it stays cheap: no torch, no torchvision,
no component module. Each spec names a ``module:attr`` target that the registry
imports only when the component is used.
"""

from __future__ import annotations

import os
from typing import Any

from alscope.hookspecs import hookimpl
from alscope.specs import BackboneSpec, ComponentSpec, DatasetSpec
from alscope_cv.medmnist_info import parse_subset_name

_D = "alscope_cv.datasets"
_B = "alscope_cv.backbones"
_IMAGE: dict[str, Any] = {"domains": ("image",)}


@hookimpl
def alscope_register_datasets() -> list[ComponentSpec]:
    return [
        DatasetSpec(
            "mnist",
            f"{_D}.digits:MNIST",
            "MNIST handwritten digits, 28x28 grey, 10 classes (60,000 train / 10,000 test; "
            "the test files alone also work)",
            aliases=("MNIST",),
            paper="LeCun et al., Proc. IEEE 1998: Gradient-based learning applied to document recognition",
            **_IMAGE,
        ),
        DatasetSpec(
            "fashion_mnist",
            f"{_D}.digits:FashionMNIST",
            "Fashion-MNIST clothing, 28x28 grey, 10 classes (60,000 train / 10,000 test)",
            aliases=("FashionMNIST", "FMNIST", "Fashion"),
            paper="Xiao et al., arXiv:1708.07747 (2017): Fashion-MNIST",
            **_IMAGE,
        ),
        DatasetSpec(
            "emnist",
            f"{_D}.digits:EMNIST",
            "EMNIST handwritten letters and digits, 28x28 grey; 'balanced': 47 classes "
            "(112,800 train / 18,800 test)",
            aliases=("EMNIST",),
            paper="Cohen et al., IJCNN 2017: EMNIST, an extension of MNIST to handwritten letters",
            **_IMAGE,
        ),
        DatasetSpec(
            "cifar10",
            f"{_D}.cifar:CIFAR10",
            "CIFAR-10, 32x32 colour, 10 classes (50,000 train / 10,000 test)",
            aliases=("CIFAR10", "CIFAR-10", "cifar"),
            paper="Krizhevsky, 2009: Learning multiple layers of features from tiny images",
            **_IMAGE,
        ),
        DatasetSpec(
            "cifar100",
            f"{_D}.cifar:CIFAR100",
            "CIFAR-100, 32x32 colour, 100 classes or 20 superclasses (50,000 train / 10,000 test)",
            aliases=("CIFAR100", "CIFAR-100"),
            paper="Krizhevsky, 2009: Learning multiple layers of features from tiny images",
            **_IMAGE,
        ),
        DatasetSpec(
            "svhn",
            f"{_D}.svhn:SVHN",
            "SVHN street-view house numbers, 32x32 colour, 10 classes (73,257 train / 26,032 test, "
            "531,131 extra)",
            aliases=("SVHN",),
            paper="Netzer et al., NIPS workshop 2011: Reading digits in natural images with "
            "unsupervised feature learning",
            **_IMAGE,
        ),
        DatasetSpec(
            "tiny_imagenet",
            f"{_D}.folders:TinyImageNet",
            "Tiny ImageNet, 64x64 colour JPEGs, 200 classes (100,000 train / 10,000 val as test), "
            "decoded in DataLoader workers",
            aliases=("TinyImageNet", "TINYIMAGENET", "tiny-imagenet-200", "tinyimagenet200"),
            paper="Le & Yang, Stanford CS231N 2015: Tiny ImageNet visual recognition challenge",
            **_IMAGE,
        ),
        DatasetSpec(
            "medmnist",
            f"{_D}.medmnist:MedMNIST",
            "MedMNIST 2D medical images from their .npz files (subset=pathmnist, bloodmnist, ...; "
            "28 to 224 px); --dataset pathmnist works too",
            aliases=("MedMNIST",),
            paper="Yang et al., Scientific Data 2023: MedMNIST v2, a large-scale lightweight benchmark "
            "for 2D and 3D biomedical image classification",
            **_IMAGE,
        ),
        DatasetSpec(
            "imagefolder",
            f"{_D}.folders:ImageFolder",
            "your own images: one subfolder per class (path=...), a test folder (test_path=...) "
            "or a seeded stratified hold-out",
            aliases=("ImageFolder", "folder", "image_folder"),
            **_IMAGE,
        ),
    ]


@hookimpl
def alscope_register_backbones() -> list[ComponentSpec]:
    resnet_paper = "He et al., CVPR 2016: Deep residual learning for image recognition"
    return [
        BackboneSpec(
            "cnn",
            f"{_B}:SmallCNN",
            "small CNN (two conv blocks, a hidden layer, dropout) for 28x28 digits; fast on CPU",
            aliases=("CNN", "SmallCNN", "ConvNet"),
            **_IMAGE,
        ),
        BackboneSpec(
            "resnet18",
            f"{_B}:ResNet18",
            "ResNet-18: CIFAR stem (3x3, no max-pool) up to 64 px, torchvision's above; "
            "optional ImageNet weights",
            aliases=("ResNet18", "ResNet-18"),
            paper=resnet_paper,
            **_IMAGE,
        ),
        BackboneSpec(
            "resnet34",
            f"{_B}:ResNet34",
            "ResNet-34: CIFAR stem up to 64 px, torchvision's above; optional ImageNet weights",
            aliases=("ResNet34", "ResNet-34"),
            paper=resnet_paper,
            **_IMAGE,
        ),
        BackboneSpec(
            "resnet50",
            f"{_B}:ResNet50",
            "ResNet-50 (bottleneck): CIFAR stem up to 64 px, torchvision's above; optional ImageNet weights",
            aliases=("ResNet50", "ResNet-50"),
            paper=resnet_paper,
            **_IMAGE,
        ),
        BackboneSpec(
            "vgg16",
            f"{_B}:VGG16",
            "VGG-16 (batch norm): 512-d global-pooled head up to 64 px, torchvision's 4096-d head above",
            aliases=("VGG16", "VGG-16", "VGG"),
            paper="Simonyan & Zisserman, ICLR 2015: Very deep convolutional networks for large-scale "
            "image recognition",
            **_IMAGE,
        ),
    ]


@hookimpl
def alscope_claim_name(kind: str, name: str) -> dict[str, Any] | None:
    """``--dataset pathmnist`` (ALScope's and AutoAL's spelling of a MedMNIST subset) and
    ``--dataset ./my/photos`` (a folder of class subfolders)."""
    if kind != "dataset":
        return None
    parsed = parse_subset_name(name)
    if parsed is not None:
        subset, size = parsed
        return {"name": "medmnist", "params": {"subset": subset, "size": size}}
    looks_like_path = os.sep in name or "/" in name or name.startswith(("~", "."))
    if looks_like_path and os.path.isdir(os.path.expanduser(name)):
        return {"name": "imagefolder", "params": {"path": os.path.expanduser(name)}}
    return None
