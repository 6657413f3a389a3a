"""What every image dataset shares: parameters, the choice of pool and test split, and the
in-memory dataset base (decoded uint8 tensors in a :class:`TensorSource`).

Split choice (``split`` parameter):

* ``auto`` (default): the official train and test splits when both are on disk (or
  downloaded with ``--download``); when only one is there, the pool and the test set are
  both carved from it with a seeded, stratified hold-out, and a note says so;
* ``official``: the training split is the pool, the test split the test set;
* ``train`` / ``test``: only that split, carved into pool and test set;
* ``all``: both splits merged, then carved.

Then the pool is capped (``samples_per_class``, then ``max_pool_size``, stratified).
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from alscope.components import Params
from alscope.data.base import ALDataset, DatasetFactory, InputSpec, LoadContext, TensorSource
from alscope.data.splits import cap_pool, stratified_holdout
from alscope.errors import DataError
from alscope_cv.contrastive import ImageContrastiveViews
from alscope_cv.files import Need, folders, list_names, note, run_download, search_dirs, verify
from alscope_cv.transforms import ImageBatchTransform

SplitMode = Literal["auto", "official", "train", "test", "all"]
Parts = list[tuple[str, np.ndarray]]


class ImageParams(Params):
    """Split, capping, augmentation and checks, shared by the image datasets."""

    split: SplitMode = Field(
        default="auto",
        description="auto: official train/test when both are on disk, else carve pool and test from "
        "the one that is; official; train or test: carve from that split only; all: merge, then carve",
    )
    test_fraction: float = Field(
        default=0.2,
        gt=0,
        lt=1,
        description="share of each class held out as the test set when it is carved from the pool",
    )
    max_pool_size: int | None = Field(
        default=None, ge=1, description="cap the pool at this many images, stratified (ALScope --subset)"
    )
    samples_per_class: int | None = Field(
        default=None,
        ge=1,
        description="cap the pool at this many images per class (ALScope --samples-per-class)",
    )
    augment: bool = Field(default=False, description="augment training batches (none for digits)")
    normalize: bool = Field(default=True, description="normalise with the dataset's per-channel mean/std")
    verify_checksums: bool = Field(
        default=True, description="compare files with their published MD5 sums before reading them"
    )


class AugmentedImageParams(ImageParams):
    augment: bool = Field(
        default=True, description="augment training batches: random crop (4 px padding) and flip"
    )


def full(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64)


def choose_parts(
    labels: dict[str, np.ndarray], mode: str, official: tuple[str, str], fraction: float, seed: int
) -> tuple[Parts, Parts]:
    """Pool and test as lists of ``(split, indices into that split)``."""
    train, test = official
    if mode == "official":
        return [(train, full(len(labels[train])))], [(test, full(len(labels[test])))]
    if mode in ("train", "test"):
        split = train if mode == "train" else test
        pool, held = stratified_holdout(labels[split], fraction, seed)
        return [(split, pool)], [(split, held)]
    if mode == "all":
        n_train = len(labels[train])
        pool, held = stratified_holdout(np.concatenate([labels[train], labels[test]]), fraction, seed)

        def back(idx: np.ndarray) -> Parts:
            return [(train, idx[idx < n_train]), (test, idx[idx >= n_train] - n_train)]

        return back(pool), back(held)
    raise DataError(f"split={mode!r} is invalid (accepted: auto, official, train, test, all)")


def gather(arrays: dict[str, np.ndarray], parts: Parts) -> np.ndarray:
    """Concatenate the selected rows; a whole split in order is used without a copy."""
    pieces = []
    for split, idx in parts:
        data = arrays[split]
        whole = len(idx) == len(data) and (len(idx) == 0 or (idx[0] == 0 and np.all(np.diff(idx) == 1)))
        pieces.append(data if whole else data[idx])
    pieces = [p for p in pieces if len(p)]
    if not pieces:
        first = arrays[parts[0][0]]
        return first[:0]
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def describe_counts(n_pool: int, n_test: int) -> str:
    return f"{n_pool:,} pool / {n_test:,} test"


class SplitFiles:
    """Where each needed file of a dataset was found (None: missing)."""

    def __init__(self, needs: dict[str, list[Need]], dirs: list[Path]) -> None:
        self.needs, self.dirs = needs, dirs
        self.paths: dict[str, dict[str, Path | None]] = {
            group: {n.label: n.find(dirs) for n in group_needs} for group, group_needs in needs.items()
        }

    def missing(self, group: str) -> list[Need]:
        return [n for n in self.needs[group] if self.paths[group][n.label] is None]

    def complete(self, group: str) -> bool:
        return not self.missing(group)

    def found(self, group: str) -> dict[str, Path]:
        return {label: path for label, path in self.paths[group].items() if path is not None}

    def where(self, group: str) -> str:
        found = sorted({str(p.parent) for p in self.found(group).values()})
        return ", ".join(found) or "(nowhere)"


class InMemoryImageDataset(DatasetFactory):
    """Base of datasets that fit in memory: decoded once into uint8 ``(N, C, H, W)`` tensors,
    transformed batch-wise (see :class:`~alscope_cv.transforms.ImageBatchTransform`).

    Subclasses say which files each split needs (``needs``), how to download them
    (``download``) and how to read a split (``read_split``).
    """

    domain = "image"
    Params: ClassVar[type[ImageParams]] = ImageParams
    #: name in messages, e.g. "MNIST"
    title: ClassVar[str] = ""
    #: folders under --data-dir searched before --data-dir itself
    subdirs: ClassVar[tuple[str, ...]] = ()
    #: per-channel statistics in [0, 1] units; None: computed from the pool
    mean: ClassVar[tuple[float, ...] | None] = None
    std: ClassVar[tuple[float, ...] | None] = None
    #: training augmentation when ``augment`` is on
    crop_padding: ClassVar[int] = 4
    hflip: ClassVar[bool] = True
    default_backbone: ClassVar[str] = "cv:cnn"
    #: names of the (pool-side, test-side) official splits
    official: ClassVar[tuple[str, str]] = ("train", "test")

    params: Any

    # -- what subclasses provide ------------------------------------------------------

    @abstractmethod
    def needs(self) -> dict[str, list[Need]]:
        """Files per group: each official split's name, plus ``"shared"`` (meta files)."""

    @abstractmethod
    def read_split(self, split: str, files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray]:
        """``(N, C, H, W)`` uint8 images and ``(N,)`` labels of one split."""

    @abstractmethod
    def class_names(self, files: dict[str, Path]) -> list[str]:
        """Class names, given every file found (``files`` maps need labels to paths)."""

    def download(self, data_dir: Path, groups: list[str]) -> None:
        """Fetch the files of ``groups`` (torchvision's download functions)."""
        raise DataError(f"{self.title} cannot be downloaded automatically; {self.manual_hint(data_dir)}")

    def download_dir(self, data_dir: Path) -> Path:
        return Path(data_dir).expanduser()

    def manual_hint(self, data_dir: Path) -> str:
        return f"put the files in {self.download_dir(data_dir)}"

    def name(self) -> str:
        return self.component_name or type(self).__name__.lower()

    # -- loading -----------------------------------------------------------------------

    def _groups_for(self, mode: str) -> list[str]:
        train, test = self.official
        if mode == "train":
            return [train]
        if mode == "test":
            return [test]
        return [train, test]

    def _missing_error(
        self, files: SplitFiles, groups: list[str], data_dir: Path, reason: str = ""
    ) -> DataError:
        missing = [n for g in groups for n in files.missing(g)]
        how = (
            f"Run with --download to fetch {'it' if len(missing) == 1 else 'them'} into "
            f"{self.download_dir(data_dir)}, or {self.manual_hint(data_dir)}."
        )
        return DataError(
            f"{self.title} not found: {list_names(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} in none of {folders(files.dirs)}{reason}. {how}"
        )

    def _locate(self, ctx: LoadContext) -> tuple[SplitFiles, str]:
        """The files to read and the effective split mode, downloading when allowed."""
        mode = self.params.split
        dirs = search_dirs(ctx.data_dir, *self.subdirs)
        needs = self.needs()
        needs.setdefault("shared", [])
        files = SplitFiles(needs, dirs)
        wanted = [*self._groups_for(mode), "shared"]
        if ctx.download and not all(files.complete(g) for g in wanted):
            groups = [g for g in wanted if not files.complete(g)]
            target = self.download_dir(ctx.data_dir)
            run_download(
                self.title,
                lambda: self.download(ctx.data_dir, groups),
                target,
                f"Check the connection, or {self.manual_hint(ctx.data_dir)}.",
            )
            files = SplitFiles(needs, dirs)
        if not files.complete("shared"):
            raise self._missing_error(files, wanted, ctx.data_dir)
        if mode == "auto":
            train, test = self.official
            present = [g for g in (train, test) if files.complete(g)]
            if len(present) == 2:
                return files, "official"
            if not present:
                raise self._missing_error(files, [train, test], ctx.data_dir)
            return files, "train" if present[0] == train else "test"
        groups = self._groups_for(mode)
        if not all(files.complete(g) for g in groups):
            raise self._missing_error(files, groups, ctx.data_dir, f" (split={mode!r} needs them)")
        return files, mode

    def load(self, ctx: LoadContext) -> ALDataset:
        p = self.params
        files, mode = self._locate(ctx)
        groups = self._groups_for(mode)
        needs = self.needs()
        for group in [*groups, "shared"]:
            for need in needs.get(group, []):
                path = files.paths[group][need.label]
                assert path is not None
                verify(path, need, self.title, p.verify_checksums)
        all_files = {label: path for g in [*groups, "shared"] for label, path in files.found(g).items()}
        arrays: dict[str, np.ndarray] = {}
        labels: dict[str, np.ndarray] = {}
        for split in groups:
            arrays[split], labels[split] = self.read_split(split, all_files)
            if len(arrays[split]) != len(labels[split]):
                raise DataError(
                    f"{self.title}: the {split} split has {len(arrays[split]):,} images but "
                    f"{len(labels[split]):,} labels ({files.where(split)})"
                )
        classes = self.class_names(all_files)
        for split in groups:
            bad = labels[split][(labels[split] < 0) | (labels[split] >= len(classes))]
            if len(bad):
                raise DataError(
                    f"{self.title}: the {split} split has labels outside 0..{len(classes) - 1} "
                    f"(e.g. {int(bad[0])}) ({files.where(split)})"
                )
        shapes = {split: arrays[split].shape[1:] for split in groups}
        if len(set(shapes.values())) > 1:
            raise DataError(f"{self.title}: the splits hold images of different shapes {shapes}")
        pool_parts, test_parts = choose_parts(labels, mode, self.official, p.test_fraction, ctx.seed)
        pool_y, test_y = gather(labels, pool_parts), gather(labels, test_parts)
        pool_x, test_x = gather(arrays, pool_parts), gather(arrays, test_parts)
        if p.split == "auto" and mode != "official":
            only = groups[0]
            other = self.official[1] if only == self.official[0] else self.official[0]
            note(
                f"{self.name()}: only the {only} split is in {files.where(only)} "
                f"({list_names(files.missing(other))} missing), so the pool and the test set are both "
                f"carved from its {len(labels[only]):,} images: {describe_counts(len(pool_y), len(test_y))} "
                f"(test_fraction={p.test_fraction}, seed {ctx.seed}). --download fetches the {other} "
                f"split; --dataset-param split={mode} makes this choice explicit"
            )
        keep = cap_pool(pool_y, ctx.seed, p.max_pool_size, p.samples_per_class)
        if len(keep) < len(pool_y):
            pool_x, pool_y = pool_x[keep], pool_y[keep]
        return self.build(classes, pool_x, pool_y, test_x, test_y)

    def statistics(self, pool_x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std used to normalise (the dataset's, else the pool's)."""
        if self.mean is not None and self.std is not None:
            return self.mean, self.std
        return pool_statistics(pool_x)

    def augmentation(self) -> tuple[int, bool]:
        """(crop padding, horizontal flip) of training batches when ``augment`` is on."""
        return self.crop_padding, self.hflip

    def transforms(self, pool_x: np.ndarray) -> tuple[ImageBatchTransform, ImageBatchTransform]:
        channels = pool_x.shape[1]
        mean, std = self.statistics(pool_x)
        if len(mean) != channels:
            raise DataError(f"{self.title}: {channels}-channel images but {len(mean)} channel statistics")
        p = self.params
        evaluation = ImageBatchTransform(mean, std, normalize=p.normalize)
        if not p.augment:
            return evaluation, evaluation
        padding, flip = self.augmentation()
        train = ImageBatchTransform(mean, std, crop_padding=padding, hflip=flip, normalize=p.normalize)
        return train, evaluation

    def build(
        self,
        classes: list[str],
        pool_x: np.ndarray,
        pool_y: np.ndarray,
        test_x: np.ndarray,
        test_y: np.ndarray,
    ) -> ALDataset:
        if len(pool_y) == 0 or len(test_y) == 0:
            raise DataError(
                f"{self.title}: the pool holds {len(pool_y)} and the test set {len(test_y)} images; "
                f"both need at least one"
            )
        train_tf, eval_tf = self.transforms(pool_x)
        return ALDataset(
            name=self.name(),
            domain="image",
            classes=classes,
            pool=TensorSource(torch.from_numpy(np.ascontiguousarray(pool_x)), pool_y, train_tf, eval_tf),
            test=TensorSource(torch.from_numpy(np.ascontiguousarray(test_x)), test_y, eval_tf, eval_tf),
            input_spec=InputSpec("image", tuple(int(d) for d in pool_x.shape[1:])),
            default_backbone=self.default_backbone,
            contrastive=ImageContrastiveViews.for_transform(eval_tf, pool_x.shape[1:], hflip=self.hflip),
        )


def pool_statistics(
    images: np.ndarray, max_images: int = 20_000
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units (over at most ``max_images`` images)."""
    sample = images[:: max(1, len(images) // max_images)]
    x = torch.from_numpy(np.ascontiguousarray(sample)).double().div_(255.0)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(mean.tolist()), tuple(std.tolist())
