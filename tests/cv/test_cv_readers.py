"""The raw-file readers and the batched image transforms."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

pytest.importorskip("alscope_cv", reason="alscope-cv is not installed (pip install ./alscope-cv)")

import numpy as np
import torch
from alscope_cv.files import Need, md5_of, search_dirs, verify
from alscope_cv.readers import read_cifar_batch, read_idx, read_idx_images, read_npz, read_svhn_mat
from alscope_cv.transforms import ImageBatchTransform, random_crop, random_hflip
from cv_fakes import idx_bytes, truncate, write_idx, write_pickle, write_svhn

from alscope.errors import DataError

# -- IDX -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path: Path, suffix: str) -> None:
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    path = write_idx(tmp_path / f"x-images-idx3-ubyte{suffix}", images)
    np.testing.assert_array_equal(read_idx(path), images)
    assert read_idx_images(path).shape == (5, 1, 28, 28)


def test_idx_int32(tmp_path: Path) -> None:
    values = np.array([[1, -2], [300000, 4]], dtype=np.int32)
    path = write_idx(tmp_path / "v.idx", values)
    out = read_idx(path)
    np.testing.assert_array_equal(out, values)
    assert out.dtype.byteorder in ("=", "<", "|")


def test_idx_truncated_payload(tmp_path: Path) -> None:
    path = tmp_path / "t-images-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((10, 28, 28), dtype=np.uint8))[:-100])
    with pytest.raises(DataError, match=r"truncated or corrupt: its header announces 10x28x28"):
        read_idx(path)


def test_idx_truncated_gzip(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "t-images-idx3-ubyte.gz", np.ones((50, 28, 28), dtype=np.uint8))
    truncate(path, 0.5)
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert str(path) in str(info.value) and "--download" in str(info.value)


def test_idx_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "x-images-idx3-ubyte"
    path.write_bytes(b"\x12\x34\x08\x03" + b"\0" * 20)
    with pytest.raises(DataError, match="bad magic number"):
        read_idx(path)


def test_not_gzip(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(b"plain text, not gzip")
    with pytest.raises(DataError, match="cannot be read"):
        read_idx(path)


def test_idx_labels_are_not_images(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "l.gz", np.arange(5, dtype=np.uint8))
    with pytest.raises(DataError, match="3-D uint8"):
        read_idx_images(path)


# -- CIFAR, SVHN, npz --------------------------------------------------------------------------


def test_cifar_batch(tmp_path: Path) -> None:
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    write_pickle(tmp_path / "b", {"data": data, "labels": [3, 7]})
    x, y = read_cifar_batch(tmp_path / "b", "labels")
    assert x.shape == (2, 3, 32, 32) and x.dtype == np.uint8
    np.testing.assert_array_equal(x.reshape(2, -1), data)
    assert y.tolist() == [3, 7]


def test_cifar_batch_bytes_keys_and_errors(tmp_path: Path) -> None:
    data = np.zeros((1, 3072), dtype=np.uint8)
    write_pickle(tmp_path / "b", {b"data": data, b"labels": [1]})
    assert read_cifar_batch(tmp_path / "b", "labels")[1].tolist() == [1]
    write_pickle(tmp_path / "c", {"data": data})
    with pytest.raises(DataError, match="needs 'data' and 'labels'"):
        read_cifar_batch(tmp_path / "c", "labels")
    write_pickle(tmp_path / "d", {"data": np.zeros((2, 100), dtype=np.uint8), "labels": [1, 2]})
    with pytest.raises(DataError, match=r"\(N, 3072\)"):
        read_cifar_batch(tmp_path / "d", "labels")
    write_pickle(tmp_path / "e", {"data": data, "labels": [1]})
    truncate(tmp_path / "e", 0.3)
    with pytest.raises(DataError, match="not a readable CIFAR batch"):
        read_cifar_batch(tmp_path / "e", "labels")


def test_svhn_mat(tmp_path: Path) -> None:
    images, labels = write_svhn(tmp_path, "train", 12)
    x, y = read_svhn_mat(tmp_path / "train_32x32.mat")
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)  # 10 became 0
    assert 0 in y and 10 not in y
    truncate(tmp_path / "train_32x32.mat", 0.4)
    with pytest.raises(DataError, match="not a readable MATLAB file"):
        read_svhn_mat(tmp_path / "train_32x32.mat")


def test_npz(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", a=np.arange(3), b=np.ones(2))
    assert read_npz(tmp_path / "a.npz", ("a",))["a"].tolist() == [0, 1, 2]
    with pytest.raises(DataError, match=r"arrays \['c'\] are missing"):
        read_npz(tmp_path / "a.npz", ("a", "c"))
    truncate(tmp_path / "a.npz", 0.5)
    with pytest.raises(DataError, match=r"not a readable \.npz file"):
        read_npz(tmp_path / "a.npz", ("a",))


# -- locating and checksums ------------------------------------------------------------------


def test_search_dirs_order(tmp_path: Path) -> None:
    assert search_dirs(tmp_path, "MNIST/raw", "mnist") == [
        tmp_path / "MNIST/raw",
        tmp_path / "mnist",
        tmp_path,
    ]


def test_need_prefers_uncompressed(tmp_path: Path) -> None:
    need = Need.gz("x-images-idx3-ubyte", "0" * 32)
    (tmp_path / "x-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"x"))
    assert need.find([tmp_path]) == tmp_path / "x-images-idx3-ubyte.gz"
    (tmp_path / "x-images-idx3-ubyte").write_bytes(b"x")
    assert need.find([tmp_path]) == tmp_path / "x-images-idx3-ubyte"
    assert need.find([tmp_path / "nowhere"]) is None


def test_verify_checksum(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"hello")
    good = Need.one("f.bin", md5_of(path))
    verify(path, good, "X", True)
    bad = Need.one("f.bin", "0" * 32)
    with pytest.raises(DataError) as info:
        verify(path, bad, "X", True)
    msg = str(info.value)
    assert "has MD5 5d41402abc4b2a76b9719d911017c592" in msg and "verify_checksums=false" in msg
    verify(path, bad, "X", False)  # turned off
    verify(path, Need.one("f.bin"), "X", True)  # no known checksum


# -- batched transforms ----------------------------------------------------------------------


def batch(n: int = 8, c: int = 3, size: int = 8) -> torch.Tensor:
    return torch.randint(0, 256, (n, c, size, size), generator=torch.Generator().manual_seed(1)).to(
        torch.uint8
    )


def test_normalisation() -> None:
    x = batch()
    tf = ImageBatchTransform((0.5, 0.25, 0.0), (0.5, 0.25, 1.0))
    out = tf(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    expected = (x.float() / 255 - torch.tensor([0.5, 0.25, 0.0]).view(1, 3, 1, 1)) / torch.tensor(
        [0.5, 0.25, 1.0]
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(out, expected)
    raw = ImageBatchTransform((0.5,) * 3, (0.5,) * 3, normalize=False)(x)
    torch.testing.assert_close(raw, x.float() / 255)
    assert not tf.augments


def test_eval_transform_is_deterministic_and_does_not_touch_the_generator() -> None:
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    tf = ImageBatchTransform((0.5,), (0.5,))
    x = batch(c=1)
    assert torch.equal(tf(x, gen), tf(x, gen))
    assert torch.equal(gen.get_state(), state)


def test_random_crop_shifts_content_and_pads_with_zeros() -> None:
    x = torch.arange(1, 17, dtype=torch.uint8).view(1, 1, 4, 4).repeat(200, 1, 1, 1)
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    seen = {tuple(o.flatten().tolist()) for o in out}
    assert len(seen) > 10  # many different shifts
    for o in out:
        # a crop is a shifted window: its nonzero part is a contiguous block of x, the rest zeros
        rows = (o[0] > 0).any(dim=1).nonzero().flatten()
        cols = (o[0] > 0).any(dim=0).nonzero().flatten()
        sub = o[0, rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        found = any(
            torch.equal(sub, x[0, 0, r : r + sub.shape[0], c : c + sub.shape[1]])
            for r in range(5 - sub.shape[0])
            for c in range(5 - sub.shape[1])
        )
        assert found
    # no shift at all happens too
    assert any(torch.equal(o, x[0]) for o in out)


def test_flip_probability_and_content() -> None:
    x = torch.arange(12, dtype=torch.uint8).view(1, 1, 3, 4).repeat(400, 1, 1, 1)
    out = random_hflip(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, x[0].flip(-1)) for o in out])
    kept = torch.tensor([torch.equal(o, x[0]) for o in out])
    assert bool((flipped | kept).all())
    assert 150 < int(flipped.sum()) < 250


def test_augmentation_is_seeded() -> None:
    tf = ImageBatchTransform((0.5,) * 3, (0.5,) * 3, crop_padding=4, hflip=True)
    x = batch(n=32, size=16)
    a = tf(x, torch.Generator().manual_seed(3))
    b = tf(x, torch.Generator().manual_seed(3))
    c = tf(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert tf.augments and "crop_padding=4" in repr(tf)


def test_transform_rejects_non_batches() -> None:
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        ImageBatchTransform((0.5,), (0.5,))(torch.zeros(3, 4, 4, dtype=torch.uint8))


def test_random_resized_crop_keeps_shape_and_full_area_is_the_identity() -> None:
    from alscope_cv.transforms import random_resized_crop

    images = torch.rand(5, 3, 12, 12)
    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(random_resized_crop(images, (1.0, 1.0), g, ratio=(1.0, 1.0)), images)
    flipped = random_resized_crop(
        images, (1.0, 1.0), torch.Generator().manual_seed(0), (1.0, 1.0), hflip=True
    )
    for original, out in zip(images, flipped, strict=True):  # each either kept or mirrored
        assert torch.allclose(out, original, atol=1e-5) or torch.allclose(out, original.flip(-1), atol=1e-5)
    # a quarter of the area, square: a 2x zoom of some 6x6 window of the image
    step = torch.arange(12.0).view(1, 1, 1, 12).expand(1, 1, 12, 12).contiguous()
    zoomed = random_resized_crop(step, (0.25, 0.25), torch.Generator().manual_seed(3), (1.0, 1.0))
    row = zoomed[0, 0, 0]
    assert zoomed.shape == step.shape and 5.0 - 1e-4 <= float(row[-1] - row[0]) <= 6.0
    assert torch.all(row[1:] - row[:-1] > 0)  # not flipped, values grow left to right


def test_batch_transform_with_resized_crop_augments_reproducibly() -> None:
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    train = ImageBatchTransform((0.5,) * 3, (0.25,) * 3, resized_crop=(0.35, 1.0), hflip=True)
    evaluation = ImageBatchTransform((0.5,) * 3, (0.25,) * 3)
    assert train.augments and "resized_crop=(0.35, 1.0)" in repr(train)
    a = train(images, torch.Generator().manual_seed(0))
    b = train(images, torch.Generator().manual_seed(0))
    assert a.dtype == torch.float32 and a.shape == images.shape and torch.equal(a, b)
    assert not torch.allclose(a, evaluation(images))
    with pytest.raises(ValueError, match="resized_crop"):
        ImageBatchTransform((0.5,), (0.25,), resized_crop=(0.5, 0.2))
