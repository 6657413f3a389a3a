"""Batched image transforms for uint8 tensors held in memory.

A transform takes a whole ``(N, C, H, W)`` uint8 batch and the batch's generator (the
one :class:`~alscope.data.base.TensorSource` passes: the trainer's seeded generator),
and returns normalised float32 images. Augmentation is done with tensor ops on the
batch at once (random crops by gathering from a padded batch, flips by ``torch.where``),
which is much faster than per-sample PIL work and reproducible from the seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


class ImageBatchTransform:
    """uint8 ``(N, C, H, W)`` -> float32, optionally augmented, then normalised.

    Args:
        mean, std: per-channel statistics in [0, 1] units (one value per channel).
        crop_padding: random crop of the original size from the batch padded with zeros
            by this many pixels on each side (0: no crop).
        hflip: random horizontal flip with probability 1/2.
        normalize: subtract ``mean`` and divide by ``std``; otherwise only scale to [0, 1].
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        crop_padding: int = 0,
        hflip: bool = False,
        normalize: bool = True,
    ) -> None:
        if len(mean) != len(std):
            raise ValueError("mean and std need one value per channel")
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.crop_padding, self.hflip, self.normalize = int(crop_padding), bool(hflip), bool(normalize)
        channels = len(self.mean)
        if normalize:
            std_t = torch.tensor(self.std)
            self._scale = (1.0 / (255.0 * std_t)).view(1, channels, 1, 1)
            self._shift = (torch.tensor(self.mean) / std_t).view(1, channels, 1, 1)
        else:
            self._scale = torch.full((1, channels, 1, 1), 1.0 / 255.0)
            self._shift = torch.zeros(1, channels, 1, 1)

    @property
    def augments(self) -> bool:
        return self.crop_padding > 0 or self.hflip

    def __repr__(self) -> str:
        parts = [f"mean={self.mean}", f"std={self.std}"]
        if self.crop_padding:
            parts.append(f"crop_padding={self.crop_padding}")
        if self.hflip:
            parts.append("hflip")
        if not self.normalize:
            parts.append("normalize=False")
        return f"ImageBatchTransform({', '.join(parts)})"

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if images.ndim != 4:
            raise ValueError(f"expected a (N, C, H, W) batch, got shape {tuple(images.shape)}")
        x = images
        if self.crop_padding:
            x = random_crop(x, self.crop_padding, generator)
        if self.hflip:
            x = random_hflip(x, generator)
        # uint8 x float32 promotes to float32: scaling and conversion in one pass
        return torch.mul(x, self._scale).sub_(self._shift)


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator | None) -> torch.Tensor:
    """Per-sample random crops of the original size from the zero-padded batch."""
    n, c, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    rows = (top[:, None] + torch.arange(h))[:, None, :, None]  # (n, 1, h, 1)
    cols = (left[:, None] + torch.arange(w))[:, None, None, :]  # (n, 1, 1, w)
    return padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]


def random_hflip(images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Flip each image left-right with probability 1/2."""
    flip = torch.rand(len(images), generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)
