"""Batched SimCLR views and CSI rotations (alscope_cv.contrastive), the datasets that
offer them, and self-supervised training on a small synthetic image pool."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("alscope_cv", reason="alscope-cv is not installed (pip install ./alscope-cv)")

import numpy as np
import torch
from alscope_cv.backbones import SmallCNN
from alscope_cv.contrastive import ImageContrastiveViews
from alscope_cv.datasets.digits import MNIST
from alscope_cv.transforms import ImageBatchTransform
from cv_fakes import balanced_labels, pattern_images, write_mnist

from alscope import ssl
from alscope.data.base import ALDataset, InputSpec, LoadContext, TensorSource
from alscope.strategies.base import SSLRequest

RGB = ((0.5, 0.4, 0.3), (0.25, 0.2, 0.2))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rgb_batch(n: int = 6, size: int = 16) -> torch.Tensor:
    """Normalised RGB images, as the evaluation transform returns them."""
    raw = torch.from_numpy(pattern_images(balanced_labels(n, 3), 3, size))
    return ImageBatchTransform(*RGB)(raw)


def test_views_keep_shape_dtype_and_pixel_range_and_differ_between_views():
    views = ImageContrastiveViews(*RGB)
    x = rgb_batch()
    g = gen()
    a, b = views.views(x, g), views.views(x, g)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert not torch.allclose(a, b) and not torch.allclose(a, x)
    # back in [0, 1] pixel units the views are valid images
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in RGB)
    pixels = a * std + mean
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    # the generator decides everything: same seed, same view
    torch.testing.assert_close(views.views(x, gen(5)), views.views(x, gen(5)))
    assert views.views(x.double(), gen()).dtype == torch.float64


def test_full_area_crop_without_flip_or_colour_is_the_identity_and_flip_mirrors():
    x = rgb_batch()
    still = ImageContrastiveViews(
        *RGB, crop_scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=False, jitter_p=0.0, grayscale_p=0.0
    )
    torch.testing.assert_close(still.views(x, gen()), x, atol=1e-5, rtol=0)
    flips = replace(still, hflip=True).views(x, gen(1))
    for out, original in zip(flips, x, strict=True):
        assert torch.allclose(out, original, atol=1e-5) or torch.allclose(out, original.flip(-1), atol=1e-5)


def test_grayscale_and_jitter():
    grey = ImageContrastiveViews(*RGB, grayscale_p=1.0, jitter_p=0.0, crop_scale=(1.0, 1.0), ratio=(1, 1))
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in RGB)
    pixels = grey.views(rgb_batch(), gen()) * std + mean
    torch.testing.assert_close(pixels[:, 0], pixels[:, 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(pixels[:, 1], pixels[:, 2], atol=1e-5, rtol=0)
    # one channel: colour jitter changes brightness/contrast only, the shape stays
    mono = ImageContrastiveViews(
        (0.13,), (0.3,), jitter_p=1.0, crop_scale=(1.0, 1.0), ratio=(1, 1), hflip=False
    )
    x = torch.randn(5, 1, 12, 12)
    out = mono.views(x, gen())
    assert out.shape == x.shape and not torch.allclose(out, x)
    with pytest.raises(ValueError, match="channel"):
        mono.views(rgb_batch(), gen())


def test_rotations_are_the_shifted_instances():
    views = ImageContrastiveViews(*RGB)
    x = torch.zeros(1, 3, 4, 4)
    x[0, :, 0, 3] = 1.0  # top right
    assert torch.equal(views.shift(x, 0), x)
    quarter = views.shift(x, 1)  # counter-clockwise: top right goes to top left
    assert quarter[0, 0, 0, 0] == 1.0 and quarter.sum() == 3.0
    assert views.shift(x, 2)[0, 0, 3, 0] == 1.0  # half turn: bottom left
    assert views.shift(x, 3)[0, 0, 3, 3] == 1.0
    assert torch.equal(views.shift(views.shift(x, 1), 3), x)
    with pytest.raises(ValueError, match="outside"):
        views.shift(x, 4)
    # non-square images keep their shape: only the half turn
    wide = ImageContrastiveViews.for_transform(ImageBatchTransform(*RGB), (3, 8, 12), hflip=True)
    assert wide.n_shifts == 2
    y = torch.randn(2, 3, 8, 12)
    assert torch.equal(wide.shift(y, 1), torch.rot90(y, 2, dims=(2, 3)))


def test_image_datasets_offer_views_matching_their_normalisation(tmp_path: Path):
    write_mnist(tmp_path, 20, 10)
    data = MNIST({"verify_checksums": False}).load(LoadContext(tmp_path, 0))
    views = data.contrastive
    assert isinstance(views, ImageContrastiveViews)
    assert views.mean == (0.1307,) and views.std == (0.3081,) and views.normalized
    assert not views.hflip and views.n_shifts == 4  # digits are not flipped in training either
    unnormalized = MNIST({"verify_checksums": False, "normalize": False}).load(LoadContext(tmp_path, 0))
    assert isinstance(unnormalized.contrastive, ImageContrastiveViews)
    assert not unnormalized.contrastive.normalized


def synthetic(n: int = 48, size: int = 12) -> ALDataset:
    labels = balanced_labels(n, 4)
    images = torch.from_numpy(pattern_images(labels, 1, size))
    tf = ImageBatchTransform((0.2,), (0.3,))
    pool = TensorSource(images, labels, tf, tf)
    return ALDataset(
        name="blocks",
        domain="image",
        classes=["a", "b", "c", "d"],
        pool=pool,
        test=pool,
        input_spec=InputSpec("image", (1, size, size)),
        default_backbone="cv:cnn",
        contrastive=ImageContrastiveViews.for_transform(tf, (1, size, size), hflip=False),
    )


@pytest.mark.parametrize("method", ["simclr", "csi"])
def test_self_supervised_training_on_images(tmp_path: Path, method: str):
    data = synthetic()
    request = SSLRequest(method=method, epochs=3, dim=8, batch_size=16)

    def build():
        return SmallCNN.build(data.input_spec, 4, {"channels": [8], "hidden": 16})

    cpu = torch.device("cpu")
    with ssl.seeded(0, cpu):
        trained = ssl.train_encoder(request, data, np.arange(48), build(), device=cpu, seed=0)
    assert trained.n_shifts == (4 if method == "csi" else 1)
    assert all(np.isfinite(trained.losses)) and trained.losses[-1] < trained.losses[0]
    z = ssl.pool_embeddings(
        request, data, np.arange(0, 48, 2), build, cache_dir=tmp_path, device=cpu, seed=0, batch_size=32
    )
    assert z.shape == (48, trained.n_shifts * 8)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(48))
    assert len(list((tmp_path / "ssl").glob(f"blocks-{method}-*.pt"))) == 1
