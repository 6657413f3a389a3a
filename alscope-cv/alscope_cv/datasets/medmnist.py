"""The 2D subsets of MedMNIST from their ``.npz`` files (as AutoAL reads them).

One file per subset and size, ``<subset>.npz`` (28 px) or ``<subset>_<size>.npz``, holding
``train_images``, ``train_labels``, ``val_images``, ``val_labels``, ``test_images`` and
``test_labels``. Searched, in order: ``<data_dir>/medmnist``, ``<data_dir>/MedMNIST`` and
``<data_dir>`` itself (the ``medmnist`` package keeps them in ``~/.medmnist``: pass
``--data-dir ~/.medmnist``). Files are checked against the MD5 sums the authors publish.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from alscope.errors import DataError
from alscope_cv.datasets.common import ImageParams, InMemoryImageDataset
from alscope_cv.files import Need, download_first
from alscope_cv.medmnist_info import SUBSETS, SUBSETS_3D, Subset
from alscope_cv.readers import read_npz


class MedMNISTParams(ImageParams):
    subset: str = Field(
        default="pathmnist", description=f"2D subset: {', '.join(SUBSETS)} (multi-label chestmnist excluded)"
    )
    size: Literal[28, 64, 128, 224] = Field(default=28, description="image size of the file (MedMNIST+)")
    include_val: bool = Field(default=False, description="add the validation images to the training split")
    augment: bool = Field(
        default=False, description="augment training batches: random crop (1/8 padding), no flips"
    )

    @field_validator("subset")
    @classmethod
    def _subset(cls, value: str) -> str:
        key = value.lower().replace("_", "").replace("-", "")
        if key in SUBSETS_3D:
            raise ValueError(
                f"{value!r} is a 3D subset; alscope-cv reads the 2D subsets: {', '.join(SUBSETS)}"
            )
        if key not in SUBSETS:
            raise ValueError(f"unknown MedMNIST subset (accepted: {', '.join(SUBSETS)})")
        if SUBSETS[key].multi_label:
            raise ValueError(
                f"{key} is multi-label ({SUBSETS[key].task}); alscope classifies one label per image "
                f"(accepted: {', '.join(k for k, s in SUBSETS.items() if not s.multi_label)})"
            )
        return key


class MedMNIST(InMemoryImageDataset):
    """A 2D MedMNIST subset: train (+ val) as the pool, test as the test set."""

    Params = MedMNISTParams
    component_name = "medmnist"
    title = "MedMNIST"
    subdirs = ("medmnist", "MedMNIST", ".medmnist")
    # MedMNIST's own examples normalise with mean 0.5, std 0.5 per channel
    hflip = False
    default_backbone = "cv:resnet18"

    @property
    def info(self) -> Subset:
        return SUBSETS[self.params.subset]

    def name(self) -> str:
        size = self.params.size
        return self.params.subset if size == 28 else f"{self.params.subset}_{size}"

    def statistics(self, pool_x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
        channels = pool_x.shape[1]
        return (0.5,) * channels, (0.5,) * channels

    def augmentation(self) -> tuple[int, bool]:
        return max(1, self.params.size // 8), False

    def needs(self) -> dict[str, list[Need]]:
        filename = self.info.filename(self.params.size)
        return {"train": [], "test": [], "shared": [Need.one(filename, self.info.md5.get(self.params.size))]}

    def manual_hint(self, data_dir: Path) -> str:
        return (
            f"download {self.info.url(self.params.size)} as {self.info.filename(self.params.size)} "
            f"into {Path(data_dir).expanduser()}"
        )

    def download(self, data_dir: Path, groups: list[str]) -> None:
        size = self.params.size
        md5s = self.info.md5.get(size, ())
        download_first(
            [self.info.url(size)],
            self.info.filename(size),
            md5s[0] if md5s else None,
            Path(data_dir).expanduser(),
            extract=False,
        )

    def _arrays(self, files: dict[str, Path]) -> dict[str, np.ndarray]:
        path = files[self.info.filename(self.params.size)]
        cached = getattr(self, "_cache", None)
        if cached is not None and cached[0] == path:
            return cached[1]
        keys = tuple(f"{s}_{k}" for s in ("train", "val", "test") for k in ("images", "labels"))
        arrays = read_npz(path, keys)
        self._cache = (path, arrays)
        return arrays

    def read_split(self, split: str, files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray]:
        arrays = self._arrays(files)
        path = files[self.info.filename(self.params.size)]
        names = ["train", "val"] if split == "train" and self.params.include_val else [split]
        xs, ys = [], []
        for name in names:
            x, y = arrays[f"{name}_images"], arrays[f"{name}_labels"]
            if y.ndim == 2 and y.shape[1] == 1:
                y = y[:, 0]
            if y.ndim != 1:
                raise DataError(f"{path}: {name}_labels has shape {y.shape}; expected one label per image")
            if x.dtype != np.uint8 or x.ndim not in (3, 4):
                raise DataError(
                    f"{path}: {name}_images is {x.dtype} {x.shape}; expected uint8 (N, H, W) or (N, H, W, C)"
                )
            x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
            xs.append(np.ascontiguousarray(x))
            ys.append(y.astype(np.int64))
        return np.concatenate(xs), np.concatenate(ys)

    def class_names(self, files: dict[str, Path]) -> list[str]:
        return list(self.info.labels)
