"""MNIST, Fashion-MNIST and EMNIST from their IDX files (plain or ``.gz``).

Searched, in order: ``<data_dir>/MNIST/raw`` (torchvision's layout), ``<data_dir>/mnist``
and ``<data_dir>`` itself (likewise ``FashionMNIST``/``fashion_mnist`` and ``EMNIST``/
``emnist``). Each split is used only when both its image and its label file are there,
so a folder holding only the 10,000 MNIST test images works (``split=auto`` carves pool
and test set from them and says so).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from alscope.errors import DataError
from alscope_cv import catalog
from alscope_cv.datasets.common import ImageParams, InMemoryImageDataset
from alscope_cv.files import Need, download_first
from alscope_cv.readers import read_idx_images, read_idx_labels


class DigitParams(ImageParams):
    augment: bool = Field(
        default=False, description="augment training batches with random 2-pixel shifts (no flips)"
    )


class IdxDataset(InMemoryImageDataset):
    """A dataset of IDX files laid out like torchvision's MNIST."""

    Params = DigitParams
    crop_padding = 2
    hflip = False
    default_backbone = "cv:cnn"
    #: torchvision's file names, MD5 sums, mirrors and classes
    info: ClassVar[catalog.IdxSet] = catalog.MNIST
    #: torchvision's folder name (downloads go to <data_dir>/<folder>/raw)
    folder: ClassVar[str] = "MNIST"
    #: file prefix per split
    prefixes: ClassVar[dict[str, str]] = {"train": "train", "test": "t10k"}

    def _md5(self) -> dict[str, str]:
        return dict(self.info.resources)

    def image_file(self, split: str) -> str:
        return f"{self.prefixes[split]}-images-idx3-ubyte"

    def label_file(self, split: str) -> str:
        return f"{self.prefixes[split]}-labels-idx1-ubyte"

    def needs(self) -> dict[str, list[Need]]:
        md5 = self._md5()
        return {
            split: [
                Need.gz(self.image_file(split), md5.get(self.image_file(split) + ".gz")),
                Need.gz(self.label_file(split), md5.get(self.label_file(split) + ".gz")),
            ]
            for split in self.prefixes
        }

    def download_dir(self, data_dir: Path) -> Path:
        return Path(data_dir).expanduser() / self.folder / "raw"

    def manual_hint(self, data_dir: Path) -> str:
        return f"put the files (from {self.info.mirrors[0]}) in {self.download_dir(data_dir)}"

    def download(self, data_dir: Path, groups: list[str]) -> None:
        target = self.download_dir(data_dir)
        md5 = self._md5()
        for split in groups:
            if split == "shared":
                continue
            for base in (self.image_file(split), self.label_file(split)):
                name = base + ".gz"
                urls = [f"{mirror}{name}" for mirror in self.info.mirrors]
                download_first(urls, name, md5.get(name), target, extract=True)

    def read_split(self, split: str, files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray]:
        images = read_idx_images(files[f"{self.image_file(split)}(.gz)"])
        labels = read_idx_labels(files[f"{self.label_file(split)}(.gz)"])
        if len(images) != len(labels):
            raise DataError(
                f"{self.title}: {files[f'{self.image_file(split)}(.gz)']} holds {len(images):,} images but "
                f"{files[f'{self.label_file(split)}(.gz)']} holds {len(labels):,} labels"
            )
        return images, labels

    def class_names(self, files: dict[str, Path]) -> list[str]:
        return list(self.info.classes)


class MNIST(IdxDataset):
    """MNIST: 60,000 training and 10,000 test images of handwritten digits, 28x28 grey."""

    component_name = "mnist"
    title = "MNIST"
    subdirs = ("MNIST/raw", "mnist/raw", "MNIST", "mnist")
    mean, std = (0.1307,), (0.3081,)
    info = catalog.MNIST
    folder = "MNIST"


class FashionMNIST(IdxDataset):
    """Fashion-MNIST: 60,000 training and 10,000 test images of clothing, 28x28 grey."""

    component_name = "fashion_mnist"
    title = "Fashion-MNIST"
    subdirs = (
        "FashionMNIST/raw",
        "fashion_mnist/raw",
        "FashionMNIST",
        "fashion_mnist",
        "fashion-mnist",
        "fashionmnist",
    )
    mean, std = (0.2860,), (0.3530,)
    info = catalog.FASHION_MNIST
    folder = "FashionMNIST"


EMNISTVariant = Literal["balanced", "byclass", "bymerge", "letters", "digits", "mnist"]


class EMNISTParams(DigitParams):
    variant: EMNISTVariant = Field(
        default="balanced",
        description="EMNIST split: balanced (47 classes), byclass (62), bymerge (47), letters (26), "
        "digits (10), mnist (10)",
    )


class EMNIST(IdxDataset):
    """EMNIST handwritten characters (the ``balanced`` split by default: 47 classes).

    The raw files store each image transposed; images are turned upright when read.
    """

    Params = EMNISTParams
    component_name = "emnist"
    title = "EMNIST"
    subdirs = ("EMNIST/raw", "emnist/raw", "EMNIST", "emnist", "EMNIST/raw/gzip", "emnist/gzip", "gzip")
    mean = std = None  # computed from the pool: no published statistics per variant
    folder = "EMNIST"

    def image_file(self, split: str) -> str:
        return f"emnist-{self.params.variant}-{split}-images-idx3-ubyte"

    def label_file(self, split: str) -> str:
        return f"emnist-{self.params.variant}-{split}-labels-idx1-ubyte"

    def _md5(self) -> dict[str, str]:
        return {}  # torchvision checks only the archive (gzip.zip)

    def manual_hint(self, data_dir: Path) -> str:
        return (
            f"download {catalog.EMNIST_URL}, unzip it and put the emnist-{self.params.variant}-* files "
            f"in {self.download_dir(data_dir)}"
        )

    def download(self, data_dir: Path, groups: list[str]) -> None:
        from torchvision.datasets.utils import extract_archive

        raw = self.download_dir(data_dir)
        download_first([catalog.EMNIST_URL], "gzip.zip", catalog.EMNIST_MD5, raw, extract=True)
        gzip_folder = raw / "gzip"
        for gz in sorted(gzip_folder.glob("*.gz")):
            extract_archive(str(gz), str(raw))
        shutil.rmtree(gzip_folder, ignore_errors=True)

    def read_split(self, split: str, files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray]:
        images, labels = super().read_split(split, files)
        images = np.ascontiguousarray(images.transpose(0, 1, 3, 2))
        if self.params.variant == "letters":
            labels = labels - 1  # letters are labelled 1..26
        return images, labels

    def class_names(self, files: dict[str, Path]) -> list[str]:
        return list(catalog.EMNIST_CLASSES[self.params.variant])
