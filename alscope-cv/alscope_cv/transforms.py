"""Batched image transforms for uint8 tensors held in memory.

A transform takes a whole ``(N, C, H, W)`` uint8 batch and the batch's generator (the
one :class:`~alscope.data.base.TensorSource` passes: the trainer's seeded generator),
and returns normalised float32 images. Augmentation is done with tensor ops on the
batch at once (random crops by gathering from a padded batch, flips by ``torch.where``),
which is much faster than per-sample PIL work and reproducible from the seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


class ImageBatchTransform:
    """uint8 ``(N, C, H, W)`` -> float32, optionally augmented, then normalised.

    Args:
        mean, std: per-channel statistics in [0, 1] units (one value per channel).
        crop_padding: random crop of the original size from the batch padded with zeros
            by this many pixels on each side (0: no crop).
        resized_crop: ``(smallest, largest)`` share of the area of a random crop (aspect
            ratio 3/4-4/3) resized back to the image's size, as torchvision's
            ``RandomResizedCrop`` does per sample (None: no such crop).
        hflip: random horizontal flip with probability 1/2.
        normalize: subtract ``mean`` and divide by ``std``; otherwise only scale to [0, 1].
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        crop_padding: int = 0,
        resized_crop: tuple[float, float] | None = None,
        hflip: bool = False,
        normalize: bool = True,
    ) -> None:
        if len(mean) != len(std):
            raise ValueError("mean and std need one value per channel")
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.crop_padding, self.hflip, self.normalize = int(crop_padding), bool(hflip), bool(normalize)
        self.resized_crop = None if resized_crop is None else (float(resized_crop[0]), float(resized_crop[1]))
        if self.resized_crop is not None and not 0 < self.resized_crop[0] <= self.resized_crop[1] <= 1:
            raise ValueError(f"resized_crop needs 0 < smallest <= largest <= 1, got {resized_crop}")
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
        return self.crop_padding > 0 or self.resized_crop is not None or self.hflip

    def __repr__(self) -> str:
        parts = [f"mean={self.mean}", f"std={self.std}"]
        if self.crop_padding:
            parts.append(f"crop_padding={self.crop_padding}")
        if self.resized_crop is not None:
            parts.append(f"resized_crop={self.resized_crop}")
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
        if self.resized_crop is not None:
            x = random_resized_crop(x.float(), self.resized_crop, generator, hflip=self.hflip)
            return x.mul_(self._scale).sub_(self._shift)
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


def random_resized_crop(
    images: torch.Tensor,
    scale: tuple[float, float],
    generator: torch.Generator | None,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    hflip: bool = False,
) -> torch.Tensor:
    """Per image of a float ``(N, C, H, W)`` batch: a crop of a random share ``scale`` of
    the area and an aspect ratio log-uniform in ``ratio``, resized back (bilinear), then
    flipped with probability 1/2 when ``hflip``.

    One ``grid_sample`` for the batch instead of torchvision's per-sample crop: on a CPU
    that keeps augmentation from costing more than the training step. A crop that would
    not fit is clipped to the image, where torchvision retries and then falls back to a
    centre crop."""
    n = len(images)
    area = uniform(n, *scale, generator)
    log_ratio = uniform(n, math.log(ratio[0]), math.log(ratio[1]), generator)
    aspect = log_ratio.exp()
    # half-extents in grid units ([-1, 1] spans the image)
    half_w = (area * aspect).sqrt().clamp(max=1.0)
    half_h = (area / aspect).sqrt().clamp(max=1.0)
    centre_x = (2 * torch.rand(n, generator=generator) - 1) * (1 - half_w)
    centre_y = (2 * torch.rand(n, generator=generator) - 1) * (1 - half_h)
    sign = torch.ones(n)
    if hflip:
        sign = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = half_w * sign
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = half_h
    theta[:, 1, 2] = centre_y
    grid = F.affine_grid(theta.to(images.device), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)
