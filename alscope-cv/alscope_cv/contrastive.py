"""SimCLR's image augmentations and CSI's rotations, on whole batches of tensors.

:class:`ImageContrastiveViews` is what image datasets put in
:attr:`ALDataset.contrastive <alscope.data.base.ALDataset>` for the self-supervised
encoders of ``alscope.ssl`` (MQ-Net, CCAL). It takes a batch as the evaluation
transform leaves it (float32 ``(N, C, H, W)``, normalised with the dataset's mean/std
or scaled to [0, 1]) and returns an augmented batch of the same shape and dtype:

* random resized crop (area share in ``crop_scale``, aspect ratio in ``ratio``) and,
  where the dataset's training flips are allowed, a horizontal flip: one affine
  ``grid_sample`` for the whole batch;
* with probability ``jitter_p`` colour jitter with per-image factors (brightness,
  contrast, saturation, hue) in a random order per batch;
* with probability ``grayscale_p`` conversion to grey.

These are SimCLR's (Chen et al., ICML 2020) with its CIFAR strengths, drawn per image
from the generator the caller passes, as CSI's batched ``transform_layers`` do (a loop
of per-image torchvision calls costs far more than the training step on small images).
Hue is rotated in the YIQ plane (a linear map per image) rather than through HSV.

``shift(x, k)`` rotates by ``k x 90`` degrees (CSI's shifting transformation, Tack et
al., NeurIPS 2020); non-square images only have the 180-degree rotation, which keeps
their shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from alscope_cv.transforms import random_resized_crop, uniform


class NormalizingTransform(Protocol):
    """What the views need of an evaluation transform: its channel statistics and whether
    it normalised with them (``ImageBatchTransform``, ``DecodeImage``)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    normalize: bool


# RGB -> YIQ (NTSC); hue is an angle in the IQ plane
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


@dataclass(frozen=True)
class ImageContrastiveViews:
    """Batched SimCLR views of evaluation-transformed images, and CSI's rotations.

    Args:
        mean, std: the per-channel statistics the evaluation transform normalised with
            (augmentations work in [0, 1] pixel units and normalise again).
        normalized: whether the inputs are normalised (else they are in [0, 1]).
        crop_scale: range of the crop's share of the image area.
        ratio: range of the crop's aspect ratio (width / height).
        hflip: flip half of the images left-right.
        jitter: strengths of brightness, contrast, saturation and hue.
        jitter_p: probability of colour jitter per image.
        grayscale_p: probability of conversion to grey per image.
        n_shifts: rotations offered to CSI (4, or 2 for non-square images: 0 and 180).
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    normalized: bool = True
    crop_scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: bool = True
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    n_shifts: int = 4
    _stats: tuple[torch.Tensor, torch.Tensor] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std):
            raise ValueError("mean and std need one value per channel")
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"crop_scale {self.crop_scale} must satisfy 0 < low <= high <= 1")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio {self.ratio} must satisfy 0 < low <= high")
        if self.n_shifts not in (0, 2, 4):
            raise ValueError(
                f"n_shifts must be 0, 2 (0/180 degrees) or 4 (multiples of 90), got {self.n_shifts}"
            )
        channels = len(self.mean)
        stats = (
            torch.tensor(self.mean).view(1, channels, 1, 1),
            torch.tensor(self.std).view(1, channels, 1, 1),
        )
        object.__setattr__(self, "_stats", stats)

    @classmethod
    def for_transform(
        cls, transform: NormalizingTransform, shape: Sequence[int], *, hflip: bool
    ) -> ImageContrastiveViews:
        """Views matching an evaluation transform (batched, or the per-file decoder of the
        folder datasets), for images of ``shape`` ``(C, H, W)``."""
        _, height, width = (int(d) for d in shape)
        return cls(
            transform.mean,
            transform.std,
            normalized=transform.normalize,
            hflip=hflip,
            n_shifts=4 if height == width else 2,
        )

    # -- the protocol --------------------------------------------------------------------

    def views(self, inputs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A SimCLR view of the batch ``inputs`` (same shape and dtype)."""
        if inputs.ndim != 4:
            raise ValueError(f"expected a (N, C, H, W) batch, got shape {tuple(inputs.shape)}")
        if inputs.shape[1] != len(self.mean):
            raise ValueError(f"{inputs.shape[1]}-channel images but {len(self.mean)} channel statistics")
        dtype = inputs.dtype
        x = self._to_unit(inputs.float())
        x = self.resized_crop(x, generator)
        x = self.color_jitter(x, generator)
        x = self.random_grayscale(x, generator)
        return self._from_unit(x).to(dtype)

    def shift(self, inputs: torch.Tensor, k: int) -> torch.Tensor:
        """Shifted instance ``k``: a rotation by ``k x 90`` degrees (``k x 180`` with two shifts)."""
        if not 0 <= k < max(self.n_shifts, 1):
            raise ValueError(f"shift {k} is outside 0..{max(self.n_shifts, 1) - 1}")
        quarter_turns = k if self.n_shifts == 4 else 2 * k
        return torch.rot90(inputs, quarter_turns, dims=(2, 3))

    # -- pieces ----------------------------------------------------------------------------

    def _to_unit(self, x: torch.Tensor) -> torch.Tensor:
        if not self.normalized:
            return x
        mean, std = (s.to(x.device) for s in self._stats)
        return x * std + mean

    def _from_unit(self, x: torch.Tensor) -> torch.Tensor:
        if not self.normalized:
            return x
        mean, std = (s.to(x.device) for s in self._stats)
        return (x - mean) / std

    def resized_crop(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Per image: a crop of random area and aspect ratio, resized back (bilinear), then
        flipped with probability 1/2 when ``hflip``; one ``grid_sample`` for the batch."""
        return random_resized_crop(x, self.crop_scale, generator, self.ratio, hflip=self.hflip)

    def color_jitter(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Brightness, contrast, saturation and hue with per-image factors, on a share
        ``jitter_p`` of the images, in a random order per batch (torchvision's order is
        per call); values stay in [0, 1]."""
        n, channels = x.shape[:2]
        apply = (torch.rand(n, generator=generator) < self.jitter_p).float()
        b, c, s, h = self.jitter
        # factors of the images left alone are the identity (1, 1, 1, 0)
        factors = {
            "brightness": 1 + apply * uniform(n, -b, b, generator),
            "contrast": 1 + apply * uniform(n, -c, c, generator),
            "saturation": 1 + apply * uniform(n, -s, s, generator),
            "hue": apply * uniform(n, -h, h, generator),
        }
        device = x.device
        for op in torch.randperm(4, generator=generator).tolist():
            if op == 0:
                x = (x * _per_image(factors["brightness"], device)).clamp_(0, 1)
            elif op == 1:
                grey_mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
                x = _blend(x, grey_mean, _per_image(factors["contrast"], device))
            elif op == 2 and channels == 3:
                x = _blend(x, _grey(x), _per_image(factors["saturation"], device))
            elif op == 3 and channels == 3:
                x = _rotate_hue(x, factors["hue"].to(device))
        return x

    def random_grayscale(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Grey (replicated over the channels) for a share ``grayscale_p`` of the images."""
        chosen = torch.rand(len(x), generator=generator) < self.grayscale_p
        if x.shape[1] != 3 or not bool(chosen.any()):
            return x
        return torch.where(chosen.to(x.device)[:, None, None, None], _grey(x).expand_as(x), x)


def _per_image(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    return values.to(device)[:, None, None, None]


def _grey(x: torch.Tensor) -> torch.Tensor:
    """``(N, 1, H, W)`` luminance (ITU-R 601 weights for RGB, the image itself for grey)."""
    if x.shape[1] != 3:
        return x
    from torchvision.transforms.v2.functional import rgb_to_grayscale  # imported when first used

    return rgb_to_grayscale(x)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``factor * x + (1 - factor) * other`` clipped to [0, 1], torchvision's blend."""
    return (factor * x + (1 - factor) * other).clamp_(0, 1)


def _rotate_hue(x: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    """Rotate each image's chroma by ``hue`` turns (in [-0.5, 0.5]) in the YIQ plane."""
    angle = 2 * math.pi * hue
    cos, sin = angle.cos(), angle.sin()
    rotation = torch.zeros(len(x), 3, 3, device=x.device)
    rotation[:, 0, 0] = 1.0
    rotation[:, 1, 1], rotation[:, 1, 2] = cos, -sin
    rotation[:, 2, 1], rotation[:, 2, 2] = sin, cos
    to_yiq, to_rgb = _RGB_TO_YIQ.to(x.device), _YIQ_TO_RGB.to(x.device)
    per_image = to_rgb @ rotation @ to_yiq  # (N, 3, 3)
    return torch.einsum("nij,njhw->nihw", per_image, x).clamp_(0, 1)
