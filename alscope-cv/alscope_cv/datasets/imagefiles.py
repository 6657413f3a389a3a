"""Images read from files, decoded in DataLoader workers (ImageFolder, Tiny ImageNet).

Labels come from the folder layout (or an annotation file), never from decoding an
image. A sample is decoded with PIL (JPEG drafts at a reduced scale when the target is
much smaller), resized or cropped with torchvision's v2 transforms, augmented when it is
a training sample, and normalised.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch

from alscope.data.base import Batch, MapDatasetSource
from alscope.errors import DataError

#: file name endings read as images (case-insensitive)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")

#: ImageNet's per-channel statistics (what pretrained torchvision weights expect)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

Augment = Literal["none", "resized_crop_flip", "crop_flip"]


def is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)


class DecodeImage:
    """Path -> normalised ``(C, size, size)`` float tensor (a picklable per-sample transform).

    Args:
        size: output height and width.
        channels: 1 (grey) or 3 (RGB).
        mean, std: per-channel statistics in [0, 1] units (used when ``normalize``).
        augment: ``none``; ``resized_crop_flip`` (random resized crop of 35-100 % of the
            area and a horizontal flip: photos); ``crop_flip`` (random crop after
            ``padding`` pixels of zero padding and a flip: Tiny ImageNet).
        padding: padding of ``crop_flip``.
    """

    def __init__(
        self,
        size: int,
        channels: int,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        augment: Augment = "none",
        padding: int = 0,
        normalize: bool = True,
    ) -> None:
        self.size, self.channels = int(size), int(channels)
        self.mean, self.std = tuple(mean), tuple(std)
        self.augment, self.padding, self.normalize = augment, int(padding), normalize
        self._pipeline: tuple[Callable[[Any], Any], Callable[[Any], Any]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_pipeline"] = None  # rebuilt in each worker
        return state

    def _build(self) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
        """(fit to size, augment and convert to a uint8 tensor)."""
        from torchvision.transforms import v2

        if self.augment == "resized_crop_flip":
            fit: Any = v2.RandomResizedCrop(self.size, scale=(0.35, 1.0), antialias=True)
            rest: list[Any] = [v2.RandomHorizontalFlip()]
        else:
            fit = v2.Compose([v2.Resize(self.size, antialias=True), v2.CenterCrop(self.size)])
            rest = []
            if self.augment == "crop_flip":
                rest = [v2.RandomCrop(self.size, padding=self.padding), v2.RandomHorizontalFlip()]
        return fit, v2.Compose([*rest, v2.PILToTensor()])

    def decode(self, path: str) -> Any:
        from PIL import Image

        mode = "L" if self.channels == 1 else "RGB"
        try:
            with Image.open(path) as img:
                if img.format == "JPEG":
                    scale = 2 if self.augment == "resized_crop_flip" else 1
                    img.draft(mode, (self.size * scale, self.size * scale))
                return img.convert(mode)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise DataError(
                f"{path} cannot be decoded as an image ({type(exc).__name__}: {exc}); fix or remove it"
            ) from None

    def fitted(self, path: str) -> torch.Tensor:
        """The image at ``path`` resized and centre-cropped to ``size``, as a uint8
        ``(C, size, size)`` tensor: not augmented, not normalised."""
        from torchvision.transforms import v2

        image = self.decode(path)
        if image.size != (self.size, self.size):
            image = v2.functional.center_crop(
                v2.functional.resize(image, self.size, antialias=True), [self.size, self.size]
            )
        return v2.functional.pil_to_tensor(image)

    def __call__(self, path: str) -> torch.Tensor:
        if self._pipeline is None:
            self._pipeline = self._build()
        fit, finish = self._pipeline
        image = self.decode(path)
        if image.size != (self.size, self.size) or self.augment == "resized_crop_flip":
            image = fit(image)
        x = finish(image)
        if not self.normalize:
            return x.float().div_(255.0)
        scale = 1.0 / (255.0 * torch.tensor(self.std).view(-1, 1, 1))
        shift = torch.tensor(self.mean).view(-1, 1, 1) / torch.tensor(self.std).view(-1, 1, 1)
        return torch.mul(x, scale).sub_(shift)


class FileImageDataset(torch.utils.data.Dataset):
    """Map-style dataset over image files: item ``i`` is ``(decoded image, label)``."""

    def __init__(self, paths: np.ndarray, labels: np.ndarray, transform: DecodeImage) -> None:
        # numpy string arrays, not lists of str: forked workers then share pages
        # instead of copying them on reference-count updates.
        self.paths, self.labels, self.transform = paths, labels, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(str(self.paths[i])), int(self.labels[i])


class FileImageFactory:
    """``make_dataset(train)`` of :class:`MapDatasetSource` (a class, so spawned workers can pickle it)."""

    def __init__(
        self, paths: np.ndarray, labels: np.ndarray, train_transform: DecodeImage, eval_transform: DecodeImage
    ) -> None:
        self.paths, self.labels = paths, labels
        self.train_transform, self.eval_transform = train_transform, eval_transform

    def __call__(self, train: bool) -> FileImageDataset:
        return FileImageDataset(
            self.paths, self.labels, self.train_transform if train else self.eval_transform
        )


def _worker_message(message: str) -> str:
    """The DataError's own text out of a DataLoader worker's re-raised traceback."""
    marker = "DataError: "
    if "Traceback" in message and marker in message:
        return message.rsplit(marker, 1)[1].strip()
    return message


class FileImageSource(MapDatasetSource):
    """:class:`MapDatasetSource` over image files whose decoding errors stay one clear line."""

    factory: FileImageFactory

    def __init__(
        self, factory: FileImageFactory, num_workers: int = 0, index_map: np.ndarray | None = None
    ) -> None:
        super().__init__(factory, factory.labels, None, num_workers, index_map)
        self.factory = factory

    @property
    def paths(self) -> np.ndarray:
        return self.factory.paths[self.index_map]

    def batches(
        self,
        indices: np.ndarray,
        *,
        batch_size: int,
        train: bool,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        source: MapDatasetSource = self
        if self.num_workers and len(indices) <= batch_size:
            # One batch: decoding it here beats starting worker processes.
            source = copy.copy(self)  # shares the cached datasets
            source.num_workers = 0
        try:
            yield from MapDatasetSource.batches(
                source,
                indices,
                batch_size=batch_size,
                train=train,
                shuffle=shuffle,
                generator=generator,
                drop_last=drop_last,
            )
        except DataError as exc:
            raise DataError(_worker_message(str(exc))) from None

    def subset(self, indices: np.ndarray) -> FileImageSource:
        return FileImageSource(
            self.factory, self.num_workers, self.index_map[np.asarray(indices, dtype=np.int64)]
        )
