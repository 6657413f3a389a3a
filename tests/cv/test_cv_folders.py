"""ImageFolder (PNG and JPEG) and Tiny ImageNet: files decoded in DataLoader workers, or
decoded once into memory."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("alscope_cv", reason="alscope-cv is not installed (pip install ./alscope-cv)")

import numpy as np
import torch
from alscope_cv.datasets.folders import ImageFolder, TinyImageNet
from alscope_cv.datasets.imagefiles import DecodeImage, FileImageSource
from alscope_cv.files import DatasetNote
from cv_fakes import save_image, truncate, write_image_folder, write_tiny_imagenet

from alscope.data.base import ALDataset, LoadContext, MapDatasetSource
from alscope.errors import ConfigError, DataError


def folder(root: Path, seed: int = 0, **params: Any) -> ALDataset:
    """The folder read from its files every epoch (``in_memory=True`` for the other path)."""
    params.setdefault("num_workers", 0)
    params.setdefault("in_memory", False)
    return ImageFolder({"path": root, **params}).load(LoadContext(root.parent, seed))


def all_batches(source: Any, train: bool = False, batch_size: int = 4, **kw: Any) -> list[Any]:
    return list(source.batches(np.arange(len(source)), batch_size=batch_size, train=train, **kw))


def test_image_folder_png_and_jpeg(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    written = write_image_folder(root, per_class=10, size=24)
    (root / "cat" / "notes.txt").write_text("not an image", encoding="utf-8")
    (root / "cat" / ".hidden.jpg").write_bytes(b"junk")
    ds = folder(root, image_size=16, test_fraction=0.2)
    assert ds.name == "photos" and ds.domain == "image"
    assert ds.classes == ["cat", "dog", "fox"]
    assert ds.input_spec.shape == (3, 16, 16) and ds.default_backbone == "cv:cnn"  # small images
    assert isinstance(ds.pool, MapDatasetSource) and isinstance(ds.pool, FileImageSource)
    assert (len(ds.pool), len(ds.test)) == (24, 6)
    assert np.bincount(ds.test.labels).tolist() == [2, 2, 2]
    everything = sorted(str(p) for paths in written.values() for p in paths)
    assert sorted([*ds.pool.paths.tolist(), *ds.test.paths.tolist()]) == everything
    for path, label in zip(ds.pool.paths, ds.pool.labels, strict=True):
        assert Path(str(path)).parent.name == ds.classes[label]
    batches = all_batches(ds.pool)
    assert [len(b) for b in batches] == [4] * 6
    x = batches[0].inputs
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32
    assert torch.equal(torch.cat([b.indices for b in batches]), torch.arange(24))
    np.testing.assert_array_equal(torch.cat([b.targets for b in batches]).numpy(), ds.pool.labels)


def test_image_folder_eval_is_deterministic_and_train_augments(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    write_image_folder(root, per_class=4, size=32)
    ds = folder(root, image_size=24, test_fraction=0.25)
    a = torch.cat([b.inputs for b in all_batches(ds.pool)])
    b = torch.cat([b.inputs for b in all_batches(ds.pool)])
    assert torch.equal(a, b)
    torch.manual_seed(0)
    t1 = torch.cat([b.inputs for b in all_batches(ds.pool, train=True)])
    torch.manual_seed(0)
    t2 = torch.cat([b.inputs for b in all_batches(ds.pool, train=True)])
    assert torch.equal(t1, t2)  # seeded through torch's generator
    assert not torch.equal(t1, a)
    plain = folder(root, image_size=24, test_fraction=0.25, augment=False)
    torch.testing.assert_close(torch.cat([b.inputs for b in all_batches(plain.pool, train=True)]), a)


def test_image_folder_pixels_and_normalisation(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    image = np.zeros((3, 8, 8), dtype=np.uint8)
    image[0] = 255
    for cls in ("a", "b"):
        for i in range(2):
            save_image(root / cls / f"{i}.png", image)
    ds = folder(root, image_size=8, test_fraction=0.5)
    (batch,) = all_batches(ds.test)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = (torch.from_numpy(image).float().div(255).unsqueeze(0) - mean) / std
    torch.testing.assert_close(batch.inputs, expected.expand(2, -1, -1, -1))
    grey = folder(root, image_size=8, test_fraction=0.5, grayscale=True, normalize=False)
    (g,) = all_batches(grey.test)
    assert g.inputs.shape == (2, 1, 8, 8) and grey.input_spec.shape == (1, 8, 8)
    torch.testing.assert_close(g.inputs, torch.full((2, 1, 8, 8), 76 / 255), atol=2 / 255, rtol=0)


def test_image_folder_separate_test_folder(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "train", per_class=5)
    write_image_folder(tmp_path / "test", classes=("dog", "fox"), per_class=2, seed=9)
    ds = folder(tmp_path / "train", test_path=tmp_path / "test", image_size=16)
    assert (len(ds.pool), len(ds.test)) == (15, 4)
    assert sorted(set(ds.test.labels.tolist())) == [1, 2]  # labelled by the training folder's classes
    write_image_folder(tmp_path / "test2", classes=("dog", "wolf"), per_class=2)
    with pytest.raises(DataError, match=r"classes that .* lacks: wolf"):
        folder(tmp_path / "train", test_path=tmp_path / "test2")


def test_image_folder_workers_and_caps(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    write_image_folder(root, per_class=8, size=16)
    ds = folder(root, image_size=16, num_workers=2, samples_per_class=3)
    assert np.bincount(ds.pool.labels).tolist() == [3, 3, 3]
    assert ds.pool.num_workers == 2
    serial = folder(root, image_size=16, num_workers=0, samples_per_class=3)
    a = torch.cat([b.inputs for b in all_batches(ds.pool, batch_size=2)])
    b = torch.cat([b.inputs for b in all_batches(serial.pool, batch_size=2)])
    assert torch.equal(a, b)
    sub = ds.pool.subset(np.array([4, 1]))
    assert isinstance(sub, FileImageSource) and sub.paths.tolist() == ds.pool.paths[[4, 1]].tolist()
    (batch,) = all_batches(sub)
    torch.testing.assert_close(batch.inputs, a[[4, 1]])


def test_image_folder_problems(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        folder(tmp_path / "nope")
    loose = tmp_path / "loose"
    save_image(loose / "a.png", np.zeros((3, 4, 4), dtype=np.uint8))
    with pytest.raises(
        DataError, match="holds 1 images directly: put each class's images in its own subfolder"
    ):
        folder(loose)
    single = tmp_path / "single"
    write_image_folder(single, classes=("only",), per_class=3)
    with pytest.raises(DataError, match="at least 2"):
        folder(single)
    with pytest.raises(ConfigError, match="path"):
        ImageFolder({})


def test_image_folder_empty_class_is_noted(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    write_image_folder(root, per_class=4)
    (root / "empty").mkdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = folder(root, test_fraction=0.25)
    assert ds.classes == ["cat", "dog", "fox"]
    assert any(issubclass(w.category, DatasetNote) and "empty" in str(w.message) for w in caught)


def test_image_folder_unreadable_file_fails_at_load(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    write_image_folder(root, per_class=4)
    (root / "dog" / "broken.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(DataError) as info:
        folder(root, test_fraction=0.25)
    msg = str(info.value)
    assert "broken.jpg" in msg and "not readable images" in msg and "verify_images=false" in msg


@pytest.mark.parametrize("workers", [0, 2])
def test_truncated_jpeg_fails_clearly_when_decoded(tmp_path: Path, workers: int) -> None:
    root = tmp_path / "photos"
    written = write_image_folder(root, per_class=4, size=64, suffixes=(".jpg",))
    truncate(written["dog"][1], 0.5)  # the header survives, the image data does not
    ds = folder(root, test_fraction=0.25, image_size=32, num_workers=workers)
    with pytest.raises(DataError) as info:
        for source in (ds.pool, ds.test):
            all_batches(source, batch_size=2)
    msg = str(info.value)
    assert "img_001.jpg cannot be decoded as an image" in msg
    assert "Traceback" not in msg and "\n" not in msg


def test_truncated_jpeg_fails_at_load_when_decoded_into_memory(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    written = write_image_folder(root, per_class=4, size=64, suffixes=(".jpg",))
    truncate(written["dog"][1], 0.5)
    with pytest.raises(DataError, match=r"^[^\n]*img_001.jpg cannot be decoded as an image[^\n]*$"):
        folder(root, test_fraction=0.25, image_size=32, in_memory=True)


def test_decode_image_draft_and_resize(tmp_path: Path) -> None:
    big = np.zeros((3, 400, 300), dtype=np.uint8)
    big[1, :, 150:] = 200
    save_image(tmp_path / "big.jpg", big)
    tf = DecodeImage(32, 3, (0.0,) * 3, (1.0,) * 3)
    x = tf(str(tmp_path / "big.jpg"))
    assert x.shape == (3, 32, 32)
    assert float(x[1, :, :12].mean()) < 0.1 and float(x[1, :, -12:].mean()) > 0.7
    import pickle

    clone = pickle.loads(pickle.dumps(tf))  # workers get a copy
    torch.testing.assert_close(clone(str(tmp_path / "big.jpg")), x)


# -- Tiny ImageNet -----------------------------------------------------------------------------------


def tiny(data_dir: Path, **params: Any) -> ALDataset:
    params.setdefault("num_workers", 0)
    return TinyImageNet(params).load(LoadContext(data_dir, 0))


def test_tiny_imagenet(tmp_path: Path) -> None:
    wnids = write_tiny_imagenet(tmp_path, n_classes=3, per_class=5, val_per_class=2)
    ds = tiny(tmp_path)
    assert ds.classes == ["thing 0", "thing 1", "thing 2"]
    assert ds.input_spec.shape == (3, 64, 64) and ds.default_backbone == "cv:resnet18"
    assert (len(ds.pool), len(ds.test)) == (15, 6)
    assert ds.pool.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert ds.test.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert all(wnids[y] in p for p, y in zip(ds.pool.paths, ds.pool.labels, strict=True))
    (batch,) = all_batches(ds.test, batch_size=8)
    assert batch.inputs.shape == (6, 3, 64, 64)
    torch.manual_seed(0)
    train = torch.cat([b.inputs for b in all_batches(ds.pool, train=True, batch_size=8)])
    evaluation = torch.cat([b.inputs for b in all_batches(ds.pool, batch_size=8)])
    assert train.shape == evaluation.shape and not torch.equal(train, evaluation)


def test_tiny_imagenet_layouts_and_carving(tmp_path: Path) -> None:
    write_tiny_imagenet(tmp_path, n_classes=2, per_class=6, with_val=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = tiny(tmp_path / "tiny-imagenet-200", test_fraction=0.5)  # data_dir = the folder itself
    assert (len(ds.pool), len(ds.test)) == (6, 6)
    assert any("no val images" in str(w.message) for w in caught)
    with pytest.raises(DataError, match=r"val/val_annotations\.txt"):
        tiny(tmp_path, split="official")


def test_tiny_imagenet_problems(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        tiny(tmp_path)
    msg = str(info.value)
    assert "Tiny ImageNet not found" in msg and "--download" in msg and "tiny-imagenet-200.zip" in msg
    wnids = write_tiny_imagenet(tmp_path, n_classes=3, per_class=2, val_per_class=1)
    base = tmp_path / "tiny-imagenet-200"
    annotations = base / "val" / "val_annotations.txt"
    annotations.write_text(annotations.read_text(encoding="utf-8") + "val_9.JPEG\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"val_annotations.txt, line 4"):
        tiny(tmp_path)
    lines = annotations.read_text(encoding="utf-8").splitlines()[:3]
    annotations.write_text("\n".join([*lines, f"val_77.JPEG\t{wnids[0]}"]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"1 images listed in .* are missing"):
        tiny(tmp_path)
    annotations.write_text("\n".join(lines) + "\n", encoding="utf-8")
    import shutil

    shutil.rmtree(base / "train" / wnids[1])
    with pytest.raises(DataError, match=f"1 of 3 class folders are missing .*{wnids[1]}"):
        tiny(tmp_path)


def test_tiny_imagenet_truncated_image(tmp_path: Path) -> None:
    wnids = write_tiny_imagenet(tmp_path, n_classes=2, per_class=3, val_per_class=1)
    truncate(tmp_path / "tiny-imagenet-200" / "train" / wnids[1] / "images" / f"{wnids[1]}_2.JPEG", 0.4)
    ds = tiny(tmp_path)
    with pytest.raises(DataError, match=f"{wnids[1]}_2.JPEG cannot be decoded"):
        all_batches(ds.pool, batch_size=8)
    assert len(all_batches(ds.test)) == 1  # the others still decode


def test_image_folder_offers_contrastive_views_and_rotations(tmp_path: Path) -> None:
    """Self-supervised strategies (CCAL, MQ-Net) get SimCLR views and CSI's rotations on
    folder datasets too, matching the decoder's normalisation."""
    from alscope_cv.contrastive import ImageContrastiveViews

    root = tmp_path / "photos"
    write_image_folder(root, per_class=4, size=24)
    ds = folder(root, image_size=16, test_fraction=0.25)
    views = ds.contrastive
    assert isinstance(views, ImageContrastiveViews) and views.n_shifts == 4 and views.normalized
    x = all_batches(ds.pool)[0].inputs
    a = views.views(x, torch.Generator().manual_seed(0))
    b = views.views(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.dtype == x.dtype and not torch.equal(a, b)
    assert torch.equal(views.shift(x, 2), torch.rot90(x, 2, dims=(2, 3)))


def test_image_folder_infers_size_backbone_and_workers(tmp_path: Path) -> None:
    """32-px images are not scaled to 224 for a ResNet: the median side and the small CNN,
    decoded in the training process (workers cost more than they save on such images)."""
    root = tmp_path / "small"
    write_image_folder(root, per_class=6, size=32)
    with pytest.warns(
        DatasetNote, match="32 px .*median side.*backbone cnn, decoded in the training process"
    ):
        ds = ImageFolder({"path": root, "in_memory": False}).load(LoadContext(root.parent, 0))
    assert ds.input_spec.shape == (3, 32, 32)
    assert ds.default_backbone == "cv:cnn"
    assert ds.pool.num_workers == 0 and ds.test.num_workers == 0
    big = tmp_path / "big"
    write_image_folder(big, per_class=5, size=96)
    with pytest.warns(DatasetNote, match="96 px"):
        ds = ImageFolder({"path": big, "num_workers": 0}).load(LoadContext(big.parent, 0))
    assert ds.default_backbone == "cv:resnet18" and ds.input_spec.shape == (3, 96, 96)
    with pytest.warns(DatasetNote, match="40 px \\(given\\)"):
        ds = ImageFolder({"path": big, "image_size": 40, "num_workers": 0}).load(LoadContext(big.parent, 0))
    assert ds.input_spec.shape == (3, 40, 40)


def test_image_folder_caps_the_test_set(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    write_image_folder(root, per_class=10, size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetNote)
        full = folder(root, image_size=16)
        capped = folder(root, image_size=16, max_test_size=3)
    assert len(full.test) == 6 and len(capped.test) == 3
    assert set(capped.test.paths.tolist()) <= set(full.test.paths.tolist())
    assert len(capped.pool) == len(full.pool)


def test_small_image_folder_is_decoded_once_into_memory(tmp_path: Path) -> None:
    """A folder whose decoded images fit in memory is decoded once: its evaluation pixels
    equal the file path's, training batches are augmented whole (reproducible from the
    generator), and nothing is decoded from the files again."""
    from alscope.data.base import TensorSource

    root = tmp_path / "photos"
    write_image_folder(root, per_class=6, size=24, suffixes=(".png", ".jpg"))
    with pytest.warns(DatasetNote, match=r"16 px \(given\).*decoded once into memory"):
        memory = ImageFolder({"path": root, "image_size": 16}).load(LoadContext(root.parent, 0))
    files = folder(root, image_size=16)
    assert isinstance(memory.pool, TensorSource) and isinstance(memory.test, TensorSource)
    assert memory.pool.inputs.dtype == torch.uint8 and memory.pool.inputs.shape == (
        len(files.pool),
        3,
        16,
        16,
    )
    np.testing.assert_array_equal(memory.pool.labels, files.pool.labels)
    for split in ("pool", "test"):
        torch.testing.assert_close(
            torch.cat([b.inputs for b in all_batches(getattr(memory, split))]),
            torch.cat([b.inputs for b in all_batches(getattr(files, split))]),
        )
    plain = torch.cat([b.inputs for b in all_batches(memory.pool)])
    for path in [*files.pool.paths, *files.test.paths]:
        Path(str(path)).unlink()  # in memory: the files are not read again
    first, again, other = (
        torch.cat([b.inputs for b in all_batches(memory.pool, train=True, generator=g)])
        for g in (
            torch.Generator().manual_seed(0),
            torch.Generator().manual_seed(0),
            torch.Generator().manual_seed(1),
        )
    )
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.shape == plain.shape and not torch.equal(first, plain)


def test_image_folder_over_the_memory_limit_is_read_from_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import alscope_cv.datasets.folders as folders

    root = tmp_path / "photos"
    write_image_folder(root, per_class=4, size=16)
    monkeypatch.setattr(folders, "IN_MEMORY_BYTES", 3 * 16 * 16 * 11)  # 11 of the 12 images
    with pytest.warns(DatasetNote, match="decoded in the training process every epoch"):
        ds = ImageFolder({"path": root, "num_workers": 0}).load(LoadContext(root.parent, 0))
    assert isinstance(ds.pool, FileImageSource)
    with pytest.warns(DatasetNote, match="decoded once into memory"):
        forced = ImageFolder({"path": root, "in_memory": True}).load(LoadContext(root.parent, 0))
    assert not isinstance(forced.pool, FileImageSource)


def test_in_memory_image_folder_trains_in_an_experiment(tmp_path: Path) -> None:
    from alscope.engine.experiment import run_experiment

    root = tmp_path / "photos"
    write_image_folder(root, per_class=12, size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetNote)
        result = run_experiment(
            {
                "strategy": "entropy",
                "dataset": {"name": "imagefolder", "params": {"path": str(root), "test_fraction": 0.25}},
                "cycles": 1,
                "n_initial": 6,
                "n_query": 6,
                "training": {"epochs": 1, "min_steps": 2},
                "results_dir": str(tmp_path / "results"),
                "tracking": {"enabled": False},
            }
        )
    (trial,) = result.trials
    assert len(trial.labeled) == 12 and len(set(trial.labeled)) == 12
    assert all(0 <= c.metrics["accuracy"] <= 1 for c in trial.cycles)
