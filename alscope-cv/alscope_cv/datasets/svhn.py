"""SVHN (cropped digits) from ``train_32x32.mat`` / ``test_32x32.mat`` (and ``extra_32x32.mat``).

Searched, in order: ``<data_dir>/svhn``, ``<data_dir>/SVHN`` and ``<data_dir>`` itself
(torchvision's layout with ``root=<data_dir>``). Each file is checked against
torchvision's MD5 sum; the digit 0, labelled 10 in the files, becomes class 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from alscope_cv import catalog
from alscope_cv.datasets.common import ImageParams, InMemoryImageDataset
from alscope_cv.files import Need, download_first
from alscope_cv.readers import read_svhn_mat


class SVHNParams(ImageParams):
    augment: bool = Field(
        default=True, description="augment training batches: random crop (4 px padding), no flips (digits)"
    )
    include_extra: bool = Field(
        default=False, description="add the 531,131 'extra' images (extra_32x32.mat) to the training split"
    )


class SVHN(InMemoryImageDataset):
    """SVHN: 73,257 training and 26,032 test images of house-number digits, 32x32 colour."""

    Params = SVHNParams
    component_name = "svhn"
    title = "SVHN"
    subdirs = ("svhn", "SVHN")
    mean, std = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)
    crop_padding = 4
    hflip = False
    default_backbone = "cv:resnet18"

    def _splits(self) -> dict[str, tuple[str, str, str]]:
        return catalog.SVHN

    def needs(self) -> dict[str, list[Need]]:
        info = self._splits()
        train = [Need.one(info["train"][1], info["train"][2])]
        if self.params.include_extra:
            train.append(Need.one(info["extra"][1], info["extra"][2]))
        return {"train": train, "test": [Need.one(info["test"][1], info["test"][2])]}

    def manual_hint(self, data_dir: Path) -> str:
        return (
            f"download them from http://ufldl.stanford.edu/housenumbers/ into {Path(data_dir).expanduser()}"
        )

    def download(self, data_dir: Path, groups: list[str]) -> None:
        info = self._splits()
        wanted = [g for g in groups if g in ("train", "test")]
        if "train" in wanted and self.params.include_extra:
            wanted.append("extra")
        for split in wanted:
            url, filename, md5 = info[split]
            download_first([url], filename, md5, Path(data_dir).expanduser(), extract=False)

    def read_split(self, split: str, files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray]:
        info = self._splits()
        x, y = read_svhn_mat(files[info[split][1]])
        if split == "train" and self.params.include_extra:
            ex, ey = read_svhn_mat(files[info["extra"][1]])
            x, y = np.concatenate([x, ex]), np.concatenate([y, ey])
        return x, y

    def class_names(self, files: dict[str, Path]) -> list[str]:
        return [str(d) for d in range(10)]
