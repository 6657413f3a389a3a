"""CIFAR-10 and CIFAR-100 from their python pickle batches.

Searched, in order: ``<data_dir>/cifar-10-batches-py`` (torchvision's layout; CIFAR-100:
``cifar-100-python``), the same under ``<data_dir>/cifar10`` or ``<data_dir>/CIFAR10``,
and ``<data_dir>`` itself. Every batch is checked against torchvision's MD5 sums.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from alscope.errors import DataError
from alscope_cv import catalog
from alscope_cv.datasets.common import AugmentedImageParams, InMemoryImageDataset
from alscope_cv.files import Need, download_first
from alscope_cv.readers import read_cifar_batch, read_pickle


class CifarBase(InMemoryImageDataset):
    Params = AugmentedImageParams
    crop_padding = 4
    hflip = True
    default_backbone = "cv:resnet18"
    info: ClassVar[catalog.CifarSet] = catalog.CIFAR10

    def label_key(self) -> str:
        return "labels"

    def needs(self) -> dict[str, list[Need]]:
        info = self.info
        return {
            "train": [Need.one(name, md5) for name, md5 in info.train_list],
            "test": [Need.one(name, md5) for name, md5 in info.test_list],
            "shared": [Need.one(info.meta[0], info.meta[2])],
        }

    def manual_hint(self, data_dir: Path) -> str:
        where = Path(data_dir).expanduser()
        return f"download {self.info.url} and unpack it in {where} (it holds {self.info.base_folder}/)"

    def download(self, data_dir: Path, groups: list[str]) -> None:
        info = self.info
        download_first([info.url], info.filename, info.tgz_md5, Path(data_dir).expanduser(), extract=True)

    def read_split(self, split: str, files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray]:
        names = [name for name, _ in (self.info.train_list if split == "train" else self.info.test_list)]
        parts = [read_cifar_batch(files[name], self.label_key()) for name in names]
        return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])

    def class_names(self, files: dict[str, Path]) -> list[str]:
        meta_name = self.info.meta[0]
        key = self.meta_key()
        meta = read_pickle(files[meta_name])
        if key not in meta:
            raise DataError(f"{files[meta_name]}: no {key!r} (found {sorted(meta)})")
        return [str(n) for n in meta[key]]

    def meta_key(self) -> str:
        return self.info.meta[1]


class CIFAR10(CifarBase):
    """CIFAR-10: 50,000 training and 10,000 test images, 32x32 colour, 10 classes."""

    component_name = "cifar10"
    title = "CIFAR-10"
    subdirs = ("cifar-10-batches-py", "cifar10/cifar-10-batches-py", "CIFAR10/cifar-10-batches-py")
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    info = catalog.CIFAR10


class CIFAR100Params(AugmentedImageParams):
    labels: Literal["fine", "coarse"] = Field(
        default="fine", description="fine: the 100 classes; coarse: the 20 superclasses"
    )


class CIFAR100(CifarBase):
    """CIFAR-100: 50,000 training and 10,000 test images, 32x32 colour, 100 classes
    (or their 20 superclasses with ``labels=coarse``)."""

    Params = CIFAR100Params
    component_name = "cifar100"
    title = "CIFAR-100"
    subdirs = ("cifar-100-python", "cifar100/cifar-100-python", "CIFAR100/cifar-100-python")
    mean, std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    info = catalog.CIFAR100

    def label_key(self) -> str:
        return f"{self.params.labels}_labels"

    def meta_key(self) -> str:
        return f"{self.params.labels}_label_names"
