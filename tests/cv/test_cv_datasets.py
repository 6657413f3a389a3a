"""Every in-memory loader on small files in the exact standard formats: layouts, split
choice, caps, transforms, checksums, missing and truncated files, downloads."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("alscope_cv", reason="alscope-cv is not installed (pip install ./alscope-cv)")

import numpy as np
import torch
from alscope_cv import files as cv_files
from alscope_cv.datasets.cifar import CIFAR10, CIFAR100
from alscope_cv.datasets.digits import EMNIST, MNIST, FashionMNIST
from alscope_cv.datasets.medmnist import MedMNIST
from alscope_cv.datasets.svhn import SVHN
from alscope_cv.files import DatasetNote
from cv_fakes import (
    truncate,
    write_cifar10,
    write_cifar100,
    write_medmnist,
    write_mnist,
    write_svhn,
)

from alscope.data.base import ALDataset, DatasetFactory, LoadContext, TensorSource
from alscope.errors import ConfigError, DataError

NO_MD5 = {"verify_checksums": False}


def load(
    cls: type[DatasetFactory], data_dir: Path, seed: int = 0, download: bool = False, **params: Any
) -> ALDataset:
    return cls({**NO_MD5, **params}).load(LoadContext(data_dir, seed, download))


def load_noted(cls: type[DatasetFactory], data_dir: Path, **params: Any) -> tuple[ALDataset, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load(cls, data_dir, **params)
    return ds, [str(w.message) for w in caught if issubclass(w.category, DatasetNote)]


def rows(source: Any) -> np.ndarray:
    assert isinstance(source, TensorSource)
    return source.inputs.numpy()


def row_index(images: np.ndarray) -> dict[bytes, int]:
    return {img.tobytes(): i for i, img in enumerate(images)}


# -- MNIST ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["MNIST/raw", "mnist", "."])
@pytest.mark.parametrize("gz", [True, False])
def test_mnist_official_split_in_each_layout(tmp_path: Path, layout: str, gz: bool) -> None:
    written = write_mnist(tmp_path / layout, 60, 40, gz=gz)
    ds, notes = load_noted(MNIST, tmp_path)
    assert notes == []
    assert ds.name == "mnist" and ds.domain == "image"
    assert len(ds.classes) == 10 and ds.classes[0] == "0 - zero"
    assert ds.input_spec.kind == "image" and ds.input_spec.shape == (1, 28, 28)
    assert ds.default_backbone == "cv:cnn"
    np.testing.assert_array_equal(rows(ds.pool)[:, 0], written["train"][0])
    np.testing.assert_array_equal(ds.pool.labels, written["train"][1])
    np.testing.assert_array_equal(rows(ds.test)[:, 0], written["test"][0])
    np.testing.assert_array_equal(ds.test.labels, written["test"][1])
    assert ds.pool.inputs.dtype == torch.uint8


def test_mnist_test_files_alone_are_carved_with_a_note(tmp_path: Path) -> None:
    written = write_mnist(tmp_path / "mnist", n_test=100, splits=("test",))
    # the training labels alone (as in ../shared/data) do not make a training split
    write_mnist(tmp_path / "aside", 30, splits=("train",))
    (tmp_path / "aside" / "train-labels-idx1-ubyte.gz").rename(
        tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    )
    ds, notes = load_noted(MNIST, tmp_path, test_fraction=0.2)
    assert len(ds.pool) == 80 and len(ds.test) == 20
    (note,) = notes
    assert "only the test split" in note and "train-images-idx3-ubyte(.gz) missing" in note
    assert "80 pool / 20 test" in note and "--download" in note
    # every image appears once, in the pool or the test set; classes are stratified
    images, labels = written["test"]
    where = row_index(images)
    idx = [where[r.tobytes()] for r in np.concatenate([rows(ds.pool)[:, 0], rows(ds.test)[:, 0]])]
    assert sorted(idx) == list(range(100))
    np.testing.assert_array_equal(np.concatenate([ds.pool.labels, ds.test.labels]), labels[idx])
    assert np.bincount(ds.test.labels, minlength=10).tolist() == [2] * 10
    # explicit split=test: the same split, no note
    ds2, notes2 = load_noted(MNIST, tmp_path, split="test", test_fraction=0.2)
    assert notes2 == []
    np.testing.assert_array_equal(ds2.test.labels, ds.test.labels)


def test_mnist_split_is_seeded(tmp_path: Path) -> None:
    write_mnist(tmp_path, n_test=100, splits=("test",))
    a = load(MNIST, tmp_path, split="test", seed=0)
    b = load(MNIST, tmp_path, split="test", seed=0)
    c = load(MNIST, tmp_path, split="test", seed=1)
    assert torch.equal(a.test.inputs, b.test.inputs)
    assert not torch.equal(a.test.inputs, c.test.inputs)


def test_mnist_split_modes(tmp_path: Path) -> None:
    write_mnist(tmp_path, 60, 40)
    official = load(MNIST, tmp_path, split="official")
    assert (len(official.pool), len(official.test)) == (60, 40)
    train = load(MNIST, tmp_path, split="train", test_fraction=0.5)
    assert (len(train.pool), len(train.test)) == (30, 30)
    test = load(MNIST, tmp_path, split="test", test_fraction=0.25)
    assert (len(test.pool), len(test.test)) == (30, 10)
    merged = load(MNIST, tmp_path, split="all", test_fraction=0.2)
    assert (len(merged.pool), len(merged.test)) == (80, 20)


def test_mnist_caps(tmp_path: Path) -> None:
    write_mnist(tmp_path, 100, 20)
    per_class = load(MNIST, tmp_path, samples_per_class=3)
    assert np.bincount(per_class.pool.labels).tolist() == [3] * 10
    capped = load(MNIST, tmp_path, max_pool_size=50)
    assert len(capped.pool) == 50 and np.bincount(capped.pool.labels).tolist() == [5] * 10
    assert len(capped.test) == 20


def test_mnist_missing_everything(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load(MNIST, tmp_path)
    msg = str(info.value)
    assert "MNIST not found" in msg
    for name in ("train-images-idx3-ubyte(.gz)", "t10k-labels-idx1-ubyte(.gz)"):
        assert name in msg
    assert str(tmp_path / "MNIST" / "raw") in msg and str(tmp_path / "mnist") in msg
    assert "--download" in msg


def test_mnist_official_split_needs_both(tmp_path: Path) -> None:
    write_mnist(tmp_path, splits=("test",))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\(\.gz\), train-labels.*split='official'"):
        load(MNIST, tmp_path, split="official")


def test_mnist_truncated_file(tmp_path: Path) -> None:
    write_mnist(tmp_path, splits=("test",))
    truncate(tmp_path / "t10k-images-idx3-ubyte.gz", 0.6)
    with pytest.raises(DataError) as info:
        load(MNIST, tmp_path)
    assert "t10k-images-idx3-ubyte.gz" in str(info.value)


def test_mnist_images_and_labels_disagree(tmp_path: Path) -> None:
    write_mnist(tmp_path, splits=("test",), n_test=20)
    write_mnist(tmp_path / "other", splits=("test",), n_test=30)
    (tmp_path / "other" / "t10k-labels-idx1-ubyte.gz").replace(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match=r"20 images but .* 30 labels"):
        load(MNIST, tmp_path)


def test_mnist_checksums_are_checked_by_default(tmp_path: Path) -> None:
    write_mnist(tmp_path, splits=("test",))
    with pytest.raises(DataError) as info:
        MNIST().load(LoadContext(tmp_path, 0))
    msg = str(info.value)
    assert "has MD5" in msg and "9fb629c4189551a2d022fa330f9573f3" in msg  # torchvision's sum
    assert "verify_checksums=false" in msg


def test_mnist_transforms(tmp_path: Path) -> None:
    write_mnist(tmp_path, 20, 10)
    ds = load(MNIST, tmp_path)
    (evaluation,) = list(ds.pool.batches(np.arange(20), batch_size=32, train=False))
    expected = (ds.pool.inputs.float() / 255 - 0.1307) / 0.3081
    torch.testing.assert_close(evaluation.inputs, expected)
    # digits: no augmentation by default, so training batches equal evaluation batches
    (training,) = list(ds.pool.batches(np.arange(20), batch_size=32, train=True))
    torch.testing.assert_close(training.inputs, expected)
    augmented = load(MNIST, tmp_path, augment=True)
    gen = torch.Generator().manual_seed(0)
    (shifted,) = list(augmented.pool.batches(np.arange(20), batch_size=32, train=True, generator=gen))
    assert not torch.equal(shifted.inputs, expected)
    (pool_scored,) = list(augmented.pool.batches(np.arange(20), batch_size=32, train=False))
    torch.testing.assert_close(pool_scored.inputs, expected)  # the pool is scored without augmentation


def test_fashion_mnist(tmp_path: Path) -> None:
    write_mnist(tmp_path / "FashionMNIST" / "raw", 30, 20)
    ds = load(FashionMNIST, tmp_path)
    assert ds.name == "fashion_mnist" and ds.classes[0] == "T-shirt/top" and ds.classes[-1] == "Ankle boot"
    assert (len(ds.pool), len(ds.test)) == (30, 20)


def test_fashion_mnist_is_not_confused_with_mnist(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist", 30, 20)
    with pytest.raises(DataError, match="Fashion-MNIST not found"):
        load(FashionMNIST, tmp_path)


# -- EMNIST ----------------------------------------------------------------------------------------


def test_emnist_balanced_is_transposed(tmp_path: Path) -> None:
    written = write_mnist(
        tmp_path / "EMNIST" / "raw", 94, 47, n_classes=47, prefix="emnist-balanced-", test_prefix="test"
    )
    ds = load(EMNIST, tmp_path)
    assert ds.name == "emnist" and len(ds.classes) == 47 and ds.classes[10] == "A" and ds.classes[-1] == "t"
    np.testing.assert_array_equal(rows(ds.pool)[:, 0], written["train"][0].transpose(0, 2, 1))
    # no published statistics: the pool's own mean and std normalise
    (b,) = list(ds.pool.batches(np.arange(len(ds.pool)), batch_size=1000, train=False))
    assert abs(float(b.inputs.mean())) < 1e-3 and abs(float(b.inputs.std()) - 1) < 1e-2


def test_emnist_letters_shift_labels(tmp_path: Path) -> None:
    write_mnist(tmp_path / "emnist", 52, 26, n_classes=27, prefix="emnist-letters-", test_prefix="test")
    for name in ("train", "test"):
        path = tmp_path / "emnist" / f"emnist-letters-{name}-labels-idx1-ubyte.gz"
        from cv_fakes import write_idx

        labels = (np.arange(52 if name == "train" else 26) % 26 + 1).astype(np.uint8)
        write_idx(path, labels)
    ds = load(EMNIST, tmp_path, variant="letters")
    assert ds.classes[0] == "a" and len(ds.classes) == 26
    assert ds.pool.labels.min() == 0 and ds.pool.labels.max() == 25


def test_emnist_missing_names_the_variant_files(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load(EMNIST, tmp_path, variant="digits")
    msg = str(info.value)
    assert "emnist-digits-train-images-idx3-ubyte(.gz)" in msg and "gzip.zip" in msg


def test_emnist_unknown_variant() -> None:
    with pytest.raises(ConfigError, match="variant"):
        EMNIST({"variant": "nope"})


# -- CIFAR -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", [".", "cifar10"])
def test_cifar10(tmp_path: Path, layout: str) -> None:
    written = write_cifar10(tmp_path / layout)
    ds = load(CIFAR10, tmp_path)
    assert ds.classes[0] == "airplane" and len(ds.classes) == 10
    assert ds.input_spec.shape == (3, 32, 32) and ds.default_backbone == "cv:resnet18"
    np.testing.assert_array_equal(rows(ds.pool), written["train_x"])
    np.testing.assert_array_equal(ds.pool.labels, written["train_y"])
    np.testing.assert_array_equal(rows(ds.test), written["test_x"])
    # CIFAR trains with random crops and flips; evaluation and pool scoring use none
    gen = torch.Generator().manual_seed(0)
    (train,) = list(ds.pool.batches(np.arange(60), batch_size=64, train=True, generator=gen))
    (evaluation,) = list(ds.pool.batches(np.arange(60), batch_size=64, train=False))
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    torch.testing.assert_close(evaluation.inputs, (ds.pool.inputs.float() / 255 - mean) / std)
    assert not torch.equal(train.inputs, evaluation.inputs)
    assert train.inputs.shape == evaluation.inputs.shape
    no_aug = load(CIFAR10, tmp_path, augment=False)
    (plain,) = list(no_aug.pool.batches(np.arange(60), batch_size=64, train=True, generator=gen))
    torch.testing.assert_close(plain.inputs, evaluation.inputs)


def test_cifar10_missing_batch(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    # auto: the test batch alone is used, carved
    ds, notes = load_noted(CIFAR10, tmp_path, test_fraction=0.5)
    assert (len(ds.pool), len(ds.test)) == (10, 10) and "data_batch_3" in notes[0]
    with pytest.raises(DataError, match="data_batch_3"):
        load(CIFAR10, tmp_path, split="official")


def test_cifar10_missing_meta(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "batches.meta").unlink()
    with pytest.raises(DataError, match=r"batches\.meta"):
        load(CIFAR10, tmp_path)


def test_cifar10_truncated_batch(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    truncate(tmp_path / "cifar-10-batches-py" / "data_batch_2", 0.5)
    with pytest.raises(DataError, match="data_batch_2"):
        load(CIFAR10, tmp_path)


def test_cifar10_checksum(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    with pytest.raises(DataError, match=r"has MD5 .* c99cafc152244af753f735de768cd75f"):
        CIFAR10().load(LoadContext(tmp_path, 0))


def test_cifar100_fine_and_coarse(tmp_path: Path) -> None:
    written = write_cifar100(tmp_path)
    fine = load(CIFAR100, tmp_path)
    assert len(fine.classes) == 100 and fine.classes[7] == "fine7"
    np.testing.assert_array_equal(fine.pool.labels, written["train_fine"])
    coarse = load(CIFAR100, tmp_path, labels="coarse")
    assert len(coarse.classes) == 20 and coarse.classes[0] == "coarse0"
    np.testing.assert_array_equal(coarse.test.labels, written["test_coarse"])


# -- SVHN ----------------------------------------------------------------------------------------


def test_svhn(tmp_path: Path) -> None:
    train_x, train_y = write_svhn(tmp_path / "svhn", "train", 30)
    write_svhn(tmp_path / "svhn", "test", 20, seed=1)
    ds = load(SVHN, tmp_path)
    np.testing.assert_array_equal(rows(ds.pool), train_x)
    np.testing.assert_array_equal(ds.pool.labels, train_y)
    assert ds.classes == [str(d) for d in range(10)] and len(ds.test) == 20
    with pytest.raises(DataError, match=r"extra_32x32\.mat"):
        load(SVHN, tmp_path, include_extra=True, split="official")
    write_svhn(tmp_path / "svhn", "extra", 10, seed=2)
    assert len(load(SVHN, tmp_path, include_extra=True).pool) == 40


def test_svhn_truncated(tmp_path: Path) -> None:
    write_svhn(tmp_path, "test", 20)
    truncate(tmp_path / "test_32x32.mat", 0.5)
    with pytest.raises(DataError, match=r"test_32x32\.mat"):
        load(SVHN, tmp_path)


# -- MedMNIST --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("subset", "channels", "n_classes"), [("pathmnist", 3, 9), ("pneumoniamnist", 1, 2)])
def test_medmnist(tmp_path: Path, subset: str, channels: int, n_classes: int) -> None:
    arrays = write_medmnist(tmp_path / "medmnist", subset, channels, n_classes)
    ds = load(MedMNIST, tmp_path, subset=subset)
    assert ds.name == subset and len(ds.classes) == n_classes
    assert ds.input_spec.shape == (channels, 28, 28)
    assert (len(ds.pool), len(ds.test)) == (40, 20)
    np.testing.assert_array_equal(ds.pool.labels, arrays["train_labels"][:, 0])
    first = arrays["train_images"][0]
    expected = first[None] if channels == 1 else first.transpose(2, 0, 1)
    np.testing.assert_array_equal(rows(ds.pool)[0], expected)
    (b,) = list(ds.test.batches(np.arange(2), batch_size=2, train=False))
    torch.testing.assert_close(b.inputs, (ds.test.inputs[:2].float() / 255 - 0.5) / 0.5)
    with_val = load(MedMNIST, tmp_path, subset=subset, include_val=True)
    assert len(with_val.pool) == 50


def test_medmnist_size_and_name(tmp_path: Path) -> None:
    write_medmnist(tmp_path, "bloodmnist", 3, 8, size=64, n=(16, 8, 8))
    ds = load(MedMNIST, tmp_path, subset="BloodMNIST", size=64)
    assert ds.name == "bloodmnist_64" and ds.input_spec.shape == (3, 64, 64)


def test_medmnist_params() -> None:
    with pytest.raises(ConfigError, match="3D subset"):
        MedMNIST({"subset": "organmnist3d"})
    with pytest.raises(ConfigError, match="multi-label"):
        MedMNIST({"subset": "chestmnist"})
    with pytest.raises(ConfigError, match="unknown MedMNIST subset"):
        MedMNIST({"subset": "catmnist"})
    with pytest.raises(ConfigError, match="size"):
        MedMNIST({"size": 32})


def test_medmnist_missing_and_truncated(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load(MedMNIST, tmp_path, subset="dermamnist")
    msg = str(info.value)
    assert "dermamnist.npz" in msg and "zenodo.org" in msg and "--download" in msg
    write_medmnist(tmp_path, "dermamnist", 3, 7)
    truncate(tmp_path / "dermamnist.npz", 0.5)
    with pytest.raises(DataError, match=r"dermamnist\.npz"):
        load(MedMNIST, tmp_path, subset="dermamnist")


# -- downloads (network replaced by a fake) --------------------------------------------------


def test_download_only_when_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[list[str], str, Any, Path, bool]] = []
    source = tmp_path / "server"
    write_mnist(source, 30, 20)

    def fake_download(urls: list[str], filename: str, md5: Any, root: Path, extract: bool) -> None:
        calls.append((urls, filename, md5, root, extract))
        root.mkdir(parents=True, exist_ok=True)
        (root / filename).write_bytes((source / filename).read_bytes())

    monkeypatch.setattr(cv_files, "download_first", fake_download)
    monkeypatch.setattr("alscope_cv.datasets.digits.download_first", fake_download)
    data = tmp_path / "data"
    with pytest.raises(DataError, match="not found"):
        load(MNIST, data)
    assert calls == []
    ds = load(MNIST, data, download=True)
    assert (len(ds.pool), len(ds.test)) == (30, 20)
    assert sorted(c[1] for c in calls) == sorted(
        [
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        ]
    )
    assert all(c[3] == data / "MNIST" / "raw" for c in calls)
    assert calls[0][0][0].startswith("https://ossci-datasets.s3.amazonaws.com/mnist/")
    assert calls[0][2] is not None  # torchvision's MD5 goes with every download
    calls.clear()
    load(MNIST, data, download=True)  # present now: nothing is fetched
    assert calls == []


def test_download_failure_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: Any, **kwargs: Any) -> None:
        raise OSError("https://www.cs.toronto.edu/...: URLError: <urlopen error [Errno -3] name resolution>")

    monkeypatch.setattr("alscope_cv.datasets.cifar.download_first", offline)
    with pytest.raises(DataError) as info:
        load(CIFAR10, tmp_path, download=True)
    msg = str(info.value)
    assert "downloading into" in msg and "name resolution" in msg and "cifar-10-python.tar.gz" in msg


def test_download_uses_torchvision_functions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.utils as tv_utils

    seen: list[dict[str, Any]] = []

    def fake(
        url: str, download_root: str, filename: str | None = None, md5: str | None = None, **kw: Any
    ) -> None:
        seen.append({"url": url, "root": download_root, "filename": filename, "md5": md5})
        raise OSError("offline")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake)
    with pytest.raises(DataError, match="offline"):
        load(CIFAR10, tmp_path, download=True)
    assert seen == [
        {
            "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "root": str(tmp_path),
            "filename": "cifar-10-python.tar.gz",
            "md5": "c58f30108f718f92721af3b95e74349a",
        }
    ]
