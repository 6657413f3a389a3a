"""Folder datasets decoded from files: the user's own ImageFolder and Tiny ImageNet."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from alscope.components import Params
from alscope.data.base import ALDataset, DatasetFactory, DataSource, InputSpec, LoadContext, TensorSource
from alscope.data.splits import cap_pool, stratified_holdout
from alscope.errors import DataError
from alscope.progress import long_pass
from alscope_cv.contrastive import ImageContrastiveViews
from alscope_cv.datasets.common import SplitMode, choose_parts, describe_counts, gather
from alscope_cv.datasets.imagefiles import (
    IMAGE_EXTENSIONS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DecodeImage,
    FileImageFactory,
    FileImageSource,
    default_workers,
    is_image,
)
from alscope_cv.files import download_first, note, run_download, search_dirs
from alscope_cv.transforms import ImageBatchTransform


def sorted_images(folder: Path) -> list[str]:
    """Image files under ``folder`` (recursively, following links), in a stable order."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(os.path.join(dirpath, f) for f in sorted(filenames) if is_image(f))
    return found


def scan_class_folders(root: Path) -> tuple[list[str], list[list[str]], list[str]]:
    """(class names, image paths per class, empty class folders) of ``root/<class>/...``."""
    if not root.is_dir():
        raise DataError(f"image folder {str(root)!r} does not exist or is not a folder")
    subfolders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    classes, per_class, empty = [], [], []
    for folder in subfolders:
        images = sorted_images(folder)
        if images:
            classes.append(folder.name)
            per_class.append(images)
        else:
            empty.append(folder.name)
    return classes, per_class, empty


def check_headers(paths: list[str], root: Path) -> None:
    """Open every file's header (cheap) so that unreadable files fail before any training."""
    from PIL import Image

    bad: list[str] = []
    for path in paths:
        try:
            with Image.open(path) as img:
                img.size  # noqa: B018 - reading the header is the check
        except Exception as exc:
            bad.append(f"{path} ({type(exc).__name__}: {exc})")
    if bad:
        shown = "; ".join(bad[:3]) + (f"; and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise DataError(
            f"{len(bad)} of {len(paths)} files under {root} are not readable images: {shown}. "
            f"Remove or replace them (or pass --dataset-param verify_images=false to find out later)"
        )


def file_sources(
    paths: np.ndarray,
    labels: np.ndarray,
    train_tf: DecodeImage,
    eval_tf: DecodeImage,
    num_workers: int,
) -> FileImageSource:
    return FileImageSource(FileImageFactory(paths, labels, train_tf, eval_tf), num_workers)


class ImageFolderParams(Params):
    path: Path = Field(description="folder with one subfolder of images per class")
    test_path: Path | None = Field(
        default=None, description="test folder with the same class subfolders; default: a hold-out"
    )
    test_fraction: float = Field(
        default=0.2, gt=0, lt=1, description="share of each class held out as the test set (no test_path)"
    )
    max_pool_size: int | None = Field(default=None, ge=1, description="cap the pool, stratified")
    samples_per_class: int | None = Field(default=None, ge=1, description="cap the pool per class")
    max_test_size: int | None = Field(default=None, ge=1, description="cap the test set, stratified")
    image_size: int | None = Field(
        default=None,
        ge=8,
        le=1024,
        description="images are resized and cropped to this; default: the median side of the images "
        "(with the small CNN up to 64 px, ResNet-18 above)",
    )
    grayscale: bool = Field(default=False, description="read images as 1-channel grey instead of RGB")
    augment: bool = Field(
        default=True, description="augment training images: random resized crop (35-100 %) and flip"
    )
    normalize: bool = Field(default=True, description="normalise with ImageNet's mean/std")
    num_workers: int | None = Field(
        default=None,
        ge=0,
        description="DataLoader workers decoding images; default: none (in the training process) "
        "where decoding an image is quick, else min(4, CPUs)",
    )
    verify_images: bool = Field(
        default=True, description="open every file's header at load time so broken files fail early"
    )
    in_memory: bool | None = Field(
        default=None,
        description="decode every image once, into memory at image_size, and augment whole batches "
        "there instead of decoding files every epoch; default: when the decoded pool and test set "
        "take at most 2 GiB",
    )


class ImageFolder(DatasetFactory):
    """Your own images, ``<path>/<class>/<image>``: class names are the subfolder names
    (sorted), images are found recursively (JPEG, PNG, BMP, GIF, WebP, TIFF, PPM/PGM)."""

    domain = "image"
    Params = ImageFolderParams
    component_name = "imagefolder"
    params: Any

    def _scan(self, root: Path, what: str) -> tuple[list[str], list[list[str]]]:
        classes, per_class, empty = scan_class_folders(root)
        if empty:
            note(f"{what} {root}: class folders without images are left out: {', '.join(empty)}")
        if not classes:
            loose = [f for f in os.listdir(root) if is_image(f)]
            hint = (
                f"; it holds {len(loose)} images directly: put each class's images in its own subfolder"
                if loose
                else ""
            )
            raise DataError(
                f"{what} {root} has no class subfolders with images (expected {root}/<class>/<image>, "
                f"images ending in {', '.join(IMAGE_EXTENSIONS)}){hint}"
            )
        return classes, per_class

    def load(self, ctx: LoadContext) -> ALDataset:
        p = self.params
        root = Path(p.path).expanduser()
        classes, per_class = self._scan(root, "image folder")
        if len(classes) < 2:
            raise DataError(
                f"image folder {root} has {len(classes)} class ({classes[0]}); at least 2 are needed"
            )
        paths = np.array([f for files in per_class for f in files])
        labels = np.concatenate([np.full(len(f), i, dtype=np.int64) for i, f in enumerate(per_class)])
        if p.test_path is not None:
            test_root = Path(p.test_path).expanduser()
            test_classes, test_per_class = self._scan(test_root, "test folder")
            unknown = [c for c in test_classes if c not in classes]
            if unknown:
                raise DataError(
                    f"test folder {test_root} has classes that {root} lacks: {', '.join(unknown)} "
                    f"(classes of {root}: {', '.join(classes)})"
                )
            index = {c: i for i, c in enumerate(classes)}
            test_paths = np.array([f for files in test_per_class for f in files])
            test_labels = np.concatenate(
                [
                    np.full(len(f), index[c], dtype=np.int64)
                    for c, f in zip(test_classes, test_per_class, strict=True)
                ]
            )
            pool_paths, pool_labels = paths, labels
        else:
            pool_idx, test_idx = stratified_holdout(labels, p.test_fraction, ctx.seed)
            pool_paths, pool_labels = paths[pool_idx], labels[pool_idx]
            test_paths, test_labels = paths[test_idx], labels[test_idx]
        if p.verify_images:
            check_headers([str(x) for x in pool_paths] + [str(x) for x in test_paths], root)
        keep = cap_pool(pool_labels, ctx.seed, p.max_pool_size, p.samples_per_class)
        pool_paths, pool_labels = pool_paths[keep], pool_labels[keep]
        if p.max_test_size is not None:
            keep = cap_pool(test_labels, ctx.seed, p.max_test_size)
            test_paths, test_labels = test_paths[keep], test_labels[keep]
        name = root.name or "imagefolder"
        return image_dataset(
            name, classes, (pool_paths, pool_labels), (test_paths, test_labels), p, ctx.seed, root
        )


def image_dataset(
    name: str,
    classes: list[str],
    pool_files: tuple[np.ndarray, np.ndarray],
    test_files: tuple[np.ndarray, np.ndarray],
    p: Any,
    seed: int,
    root: Path,
) -> ALDataset:
    """Image files (paths and labels, ``-1`` where unlabeled) as a dataset: the image size
    (given, or the pool's median side), the decoding and augmentation of ``p``
    (:class:`ImageFolderParams`' fields), decoded once into memory where that fits."""
    pool_paths, pool_labels = pool_files
    test_paths, test_labels = test_files
    channels = 1 if p.grayscale else 3
    mean = (0.449,) if p.grayscale else IMAGENET_MEAN
    std = (0.226,) if p.grayscale else IMAGENET_STD
    size = p.image_size if p.image_size is not None else median_side(pool_paths, seed)
    backbone = "cv:cnn" if size <= SMALL_IMAGE else "cv:resnet18"
    eval_tf = DecodeImage(size, channels, mean, std, normalize=p.normalize)
    train_tf = DecodeImage(
        size,
        channels,
        mean,
        std,
        augment="resized_crop_flip" if p.augment else "none",
        normalize=p.normalize,
    )
    decoded_bytes = (len(pool_paths) + len(test_paths)) * channels * size * size
    in_memory = p.in_memory if p.in_memory is not None else decoded_bytes <= IN_MEMORY_BYTES
    chosen = (
        f"image folder {root}: {size} px "
        + ("(given)" if p.image_size is not None else "(the median side of its images)")
        + f", default backbone {backbone.split(':')[1]}, "
    )
    pool: DataSource
    test: DataSource
    if in_memory:
        note(chosen + f"decoded once into memory ({decoded_bytes / 2**20:.0f} MiB)")
        pool, test = memory_sources(
            eval_tf, (pool_paths, pool_labels), (test_paths, test_labels), augment=p.augment
        )
    else:
        workers = p.num_workers
        if workers is None:
            per_image = decode_seconds(train_tf, pool_paths, seed)
            workers = 0 if per_image < IN_PROCESS_DECODE_S else default_workers()
        note(
            chosen
            + (f"{workers} DataLoader workers" if workers else "decoded in the training process")
            + " every epoch"
        )
        pool = file_sources(pool_paths, pool_labels, train_tf, eval_tf, workers)
        test = file_sources(test_paths, test_labels, eval_tf, eval_tf, workers)
    return ALDataset(
        name=name,
        domain="image",
        classes=classes,
        pool=pool,
        test=test,
        input_spec=InputSpec("image", (channels, size, size)),
        default_backbone=backbone,
        contrastive=ImageContrastiveViews.for_transform(eval_tf, (channels, size, size), hflip=True),
    )


#: decoded images up to this size (pool and test set together, uint8) are held in memory
IN_MEMORY_BYTES = 2 * 2**30
#: share of the area of in-memory training crops, as the per-file RandomResizedCrop draws
RESIZED_CROP_SCALE = (0.35, 1.0)


def memory_sources(
    decoder: DecodeImage,
    pool: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    augment: bool,
) -> tuple[TensorSource, TensorSource]:
    """Pool and test set decoded once (resized and centre-cropped to the decoder's size),
    as uint8 tensors whose batches are augmented and normalised whole."""
    advance = long_pass("decoding images", len(pool[0]) + len(test[0]))

    def decode_all(paths: np.ndarray) -> torch.Tensor:
        out = torch.empty((len(paths), decoder.channels, decoder.size, decoder.size), dtype=torch.uint8)
        for i, path in enumerate(paths):
            out[i] = decoder.fitted(str(path))
            advance(1)
        return out

    pool_x, test_x = decode_all(pool[0]), decode_all(test[0])
    mean, std = decoder.mean, decoder.std
    evaluation = ImageBatchTransform(mean, std, normalize=decoder.normalize)
    training = (
        ImageBatchTransform(
            mean, std, resized_crop=RESIZED_CROP_SCALE, hflip=True, normalize=decoder.normalize
        )
        if augment
        else evaluation
    )
    return (
        TensorSource(pool_x, pool[1], training, evaluation),
        TensorSource(test_x, test[1], evaluation, evaluation),
    )


#: images up to this side go to the small CNN by default (ResNet-18 is for photos)
SMALL_IMAGE = 64
#: decoding faster than this per image (measured): workers' start-up and transfer cost more
#: than they save (200 x 32 px images: 16.1 s per cycle with 2 workers, 2.6 s without)
IN_PROCESS_DECODE_S = 0.002


def median_side(paths: np.ndarray, seed: int, n: int = 200) -> int:
    """The median of the larger side over up to ``n`` images (headers only), within 8-1024."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    chosen = paths if len(paths) <= n else paths[rng.choice(len(paths), n, replace=False)]
    sides = []
    for path in chosen:
        with Image.open(path) as img:
            sides.append(max(img.size))
    return int(np.clip(round(float(np.median(sides))), 8, 1024))


def decode_seconds(transform: Any, paths: np.ndarray, seed: int, n: int = 16) -> float:
    """Mean wall time to decode and transform one image, over up to ``n`` of them."""
    import time

    rng = np.random.default_rng(seed)
    chosen = paths if len(paths) <= n else paths[rng.choice(len(paths), n, replace=False)]
    try:
        transform(str(chosen[0]))  # builds the pipeline once, outside the timing
        start = time.perf_counter()
        for path in chosen:
            transform(str(path))
    except Exception:  # a broken file fails with its own message when it is decoded for real
        return float("inf")
    return (time.perf_counter() - start) / max(len(chosen), 1)


TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
TINY_FOLDER = "tiny-imagenet-200"


class TinyImageNetParams(Params):
    split: SplitMode = Field(
        default="auto",
        description="auto: train as pool and val as test when both are there, else carve from the one "
        "that is; official; train or test (the val images): carve from that one; all: merge, then carve",
    )
    test_fraction: float = Field(
        default=0.2, gt=0, lt=1, description="share of each class held out when the test set is carved"
    )
    max_pool_size: int | None = Field(default=None, ge=1, description="cap the pool, stratified")
    samples_per_class: int | None = Field(default=None, ge=1, description="cap the pool per class")
    augment: bool = Field(
        default=True, description="augment training images: random crop (8 px padding), flip"
    )
    normalize: bool = Field(default=True, description="normalise with Tiny ImageNet's mean/std")
    num_workers: int | None = Field(
        default=None,
        ge=0,
        description="DataLoader workers decoding images; default: none (in the training process) "
        "where decoding an image is quick, else min(4, CPUs)",
    )


class TinyImageNet(DatasetFactory):
    """Tiny ImageNet: 200 classes of 64x64 JPEGs; 500 training images per class in
    ``train/<wnid>/images``, 50 per class in ``val/images`` labelled by
    ``val/val_annotations.txt`` (used as the test set: the official test set has no labels)."""

    domain = "image"
    Params = TinyImageNetParams
    component_name = "tiny_imagenet"
    mean, std = (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)
    params: Any

    def _root(self, data_dir: Path) -> Path | None:
        for folder in search_dirs(
            data_dir, TINY_FOLDER, f"tiny_imagenet/{TINY_FOLDER}", f"TinyImageNet/{TINY_FOLDER}"
        ):
            if (folder / "wnids.txt").is_file():
                return folder
        return None

    def _missing(self, data_dir: Path, what: str) -> DataError:
        base = Path(data_dir).expanduser()
        return DataError(
            f"Tiny ImageNet not found: {what}. Run with --download to fetch {TINY_URL} into {base}, "
            f"or unzip it there yourself (it holds {TINY_FOLDER}/wnids.txt, train/, val/)"
        )

    def _train(self, root: Path, wnids: list[str]) -> tuple[list[str], np.ndarray] | None:
        train = root / "train"
        if not train.is_dir():
            return None
        missing = [w for w in wnids if not (train / w).is_dir()]
        if missing:
            raise DataError(
                f"Tiny ImageNet: {len(missing)} of {len(wnids)} class folders are missing in {train} "
                f"(e.g. {', '.join(missing[:5])}); the archive was not fully unpacked"
            )
        paths: list[str] = []
        labels: list[int] = []
        for label, wnid in enumerate(wnids):
            folder = train / wnid / "images"
            folder = folder if folder.is_dir() else train / wnid
            files = sorted(f for f in os.listdir(folder) if is_image(f))
            if not files:
                raise DataError(f"Tiny ImageNet: {folder} holds no images")
            paths.extend(str(folder / f) for f in files)
            labels.extend([label] * len(files))
        return paths, np.asarray(labels, dtype=np.int64)

    def _val(self, root: Path, wnids: list[str]) -> tuple[list[str], np.ndarray] | None:
        val = root / "val"
        annotations = val / "val_annotations.txt"
        index = {w: i for i, w in enumerate(wnids)}
        if annotations.is_file():
            paths, labels = [], []
            lines = annotations.read_text(encoding="utf-8", errors="replace").splitlines()
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                fields = line.split("\t")
                if len(fields) < 2 or fields[1] not in index:
                    raise DataError(
                        f"{annotations}, line {number}: expected '<file>\\t<wnid>...' with a wnid from "
                        f"wnids.txt, found {line[:80]!r}"
                    )
                paths.append(str(val / "images" / fields[0]))
                labels.append(index[fields[1]])
            absent = [p for p in paths if not os.path.isfile(p)]
            if absent:
                raise DataError(
                    f"Tiny ImageNet: {len(absent)} images listed in {annotations} are missing "
                    f"(e.g. {', '.join(absent[:3])})"
                )
            if not paths:
                raise DataError(f"Tiny ImageNet: {annotations} lists no images")
            return paths, np.asarray(labels, dtype=np.int64)
        if val.is_dir() and any((val / w).is_dir() for w in wnids):
            # a val folder already sorted into class folders
            paths, label_list = [], []
            for wnid in wnids:
                for f in sorted_images(val / wnid) if (val / wnid).is_dir() else []:
                    paths.append(f)
                    label_list.append(index[wnid])
            return paths, np.asarray(label_list, dtype=np.int64)
        return None

    def _class_names(self, root: Path, wnids: list[str]) -> list[str]:
        words = root / "words.txt"
        names: dict[str, str] = {}
        if words.is_file():
            for line in words.read_text(encoding="utf-8", errors="replace").splitlines():
                wnid, _, text = line.partition("\t")
                if wnid in wnids:
                    names[wnid] = text.split(",")[0].strip() or wnid
        return [names.get(w, w) for w in wnids]

    def load(self, ctx: LoadContext) -> ALDataset:
        p = self.params
        root = self._root(ctx.data_dir)
        if root is None and ctx.download:
            base = Path(ctx.data_dir).expanduser()
            run_download(
                "Tiny ImageNet",
                lambda: download_first([TINY_URL], f"{TINY_FOLDER}.zip", TINY_MD5, base, extract=True),
                base,
                f"Check the connection, or download {TINY_URL} and unzip it in {base}.",
            )
            root = self._root(ctx.data_dir)
        if root is None:
            searched = ", ".join(str(d / "wnids.txt") for d in search_dirs(ctx.data_dir, TINY_FOLDER))
            raise self._missing(ctx.data_dir, f"no {searched}")
        wnids = [
            w.strip() for w in (root / "wnids.txt").read_text(encoding="utf-8").splitlines() if w.strip()
        ]
        if len(wnids) < 2 or len(set(wnids)) != len(wnids):
            raise DataError(
                f"{root / 'wnids.txt'}: expected distinct class ids, one per line; found {len(wnids)}"
            )
        wanted = ("train", "test") if p.split in ("auto", "official", "all") else (p.split,)
        found: dict[str, tuple[list[str], np.ndarray] | None] = {
            "train": self._train(root, wnids) if "train" in wanted else None,
            "test": self._val(root, wnids) if "test" in wanted else None,
        }
        mode = p.split
        if mode == "auto":
            present = [s for s in ("train", "test") if found[s] is not None]
            if not present:
                raise self._missing(ctx.data_dir, f"{root} has neither train/ nor val/")
            mode = "official" if len(present) == 2 else present[0]
        need = ("train", "test") if mode in ("official", "all") else (mode,)
        for split in need:
            if found[split] is None:
                what = "train/<wnid>/images" if split == "train" else "val/val_annotations.txt and val/images"
                raise self._missing(ctx.data_dir, f"{root} has no {what} (split={p.split!r} needs it)")
        paths = {s: np.array(found[s][0]) for s in need}  # type: ignore[index]
        labels = {s: found[s][1] for s in need}  # type: ignore[index]
        pool_parts, test_parts = choose_parts(labels, mode, ("train", "test"), p.test_fraction, ctx.seed)
        pool_paths, pool_labels = gather(paths, pool_parts), gather(labels, pool_parts)
        test_paths, test_labels = gather(paths, test_parts), gather(labels, test_parts)
        if p.split == "auto" and mode != "official":
            other = "val" if mode == "train" else "train"
            note(
                f"tiny_imagenet: {root} has no {other} images, so the pool and the test set are both carved "
                f"from the {'train' if mode == 'train' else 'val'} images: "
                f"{describe_counts(len(pool_labels), len(test_labels))} (test_fraction={p.test_fraction})"
            )
        keep = cap_pool(pool_labels, ctx.seed, p.max_pool_size, p.samples_per_class)
        pool_paths, pool_labels = pool_paths[keep], pool_labels[keep]
        eval_tf = DecodeImage(64, 3, self.mean, self.std, normalize=p.normalize)
        train_tf = DecodeImage(
            64,
            3,
            self.mean,
            self.std,
            augment="crop_flip" if p.augment else "none",
            padding=8,
            normalize=p.normalize,
        )
        workers = default_workers() if p.num_workers is None else p.num_workers
        return ALDataset(
            name="tiny_imagenet",
            domain="image",
            classes=self._class_names(root, wnids),
            pool=file_sources(pool_paths, pool_labels, train_tf, eval_tf, workers),
            test=file_sources(test_paths, test_labels, eval_tf, eval_tf, workers),
            input_spec=InputSpec("image", (3, 64, 64)),
            default_backbone="cv:resnet18",
            contrastive=ImageContrastiveViews.for_transform(eval_tf, (3, 64, 64), hflip=True),
        )
