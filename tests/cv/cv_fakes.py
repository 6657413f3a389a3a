"""Small datasets written in the exact standard on-disk formats, for the loader tests.

Images carry a class-dependent pattern (a bright block whose position depends on the
class, plus noise), so a model can learn them in a few epochs.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np


def pattern_images(labels: np.ndarray, channels: int, size: int, seed: int = 0) -> np.ndarray:
    """``(N, C, size, size)`` uint8: noise plus a bright block placed by the class."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    images = rng.integers(0, 60, size=(n, channels, size, size), dtype=np.uint8)
    block = max(2, size // 4)
    cells = max(1, (size - block) // block + 1)
    for i, label in enumerate(labels):
        row, col = divmod(int(label) % (cells * cells), cells)
        images[i, :, row * block : row * block + block, col * block : col * block + block] = (
            255 - (int(label) // (cells * cells)) * 40
        )
    return images


def balanced_labels(n: int, n_classes: int, seed: int = 0) -> np.ndarray:
    labels = np.arange(n) % n_classes
    return np.random.default_rng(seed).permutation(labels).astype(np.int64)


# -- IDX (MNIST, Fashion-MNIST, EMNIST) --------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = array.astype(array.dtype.newbyteorder(">")) if array.dtype.itemsize > 1 else array
    return header + data.tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = idx_bytes(array)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)
    return path


def write_mnist(
    folder: Path,
    n_train: int = 60,
    n_test: int = 40,
    *,
    splits: tuple[str, ...] = ("train", "test"),
    gz: bool = True,
    n_classes: int = 10,
    prefix: str = "",
    test_prefix: str = "t10k",
    seed: int = 0,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """MNIST-layout IDX files in ``folder``; returns (images (N, 28, 28), labels) per split."""
    out = {}
    for split in splits:
        n = n_train if split == "train" else n_test
        labels = balanced_labels(n, n_classes, seed + (split == "test"))
        images = pattern_images(labels, 1, 28, seed + 7 * (split == "test"))[:, 0]
        name = "train" if split == "train" else test_prefix
        suffix = ".gz" if gz else ""
        write_idx(folder / f"{prefix}{name}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{prefix}{name}-labels-idx1-ubyte{suffix}", labels.astype(np.uint8))
        out[split] = (images, labels)
    return out


# -- CIFAR python batches ------------------------------------------------------------------------


def write_pickle(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def write_cifar10(root: Path, per_batch: int = 12, n_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    """``root/cifar-10-batches-py`` with five data batches, a test batch and batches.meta."""
    folder = root / "cifar-10-batches-py"
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    write_pickle(folder / "batches.meta", {"label_names": names, "num_cases_per_batch": per_batch})
    all_x, all_y = [], []
    for b in range(1, 6):
        labels = balanced_labels(per_batch, 10, seed + b)
        images = pattern_images(labels, 3, 32, seed + b)
        write_pickle(
            folder / f"data_batch_{b}",
            {
                "batch_label": f"training batch {b} of 5",
                "labels": labels.tolist(),
                "data": images.reshape(len(labels), -1),
            },
        )
        all_x.append(images)
        all_y.append(labels)
    test_labels = balanced_labels(n_test, 10, seed + 99)
    test_images = pattern_images(test_labels, 3, 32, seed + 99)
    write_pickle(
        folder / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "labels": test_labels.tolist(),
            "data": test_images.reshape(n_test, -1),
        },
    )
    return {
        "train_x": np.concatenate(all_x),
        "train_y": np.concatenate(all_y),
        "test_x": test_images,
        "test_y": test_labels,
    }


def write_cifar100(root: Path, n_train: int = 60, n_test: int = 30, seed: int = 0) -> dict[str, np.ndarray]:
    """``root/cifar-100-python`` with train, test and meta (fine and coarse labels)."""
    folder = root / "cifar-100-python"
    fine_names = [f"fine{i}" for i in range(100)]
    coarse_names = [f"coarse{i}" for i in range(20)]
    write_pickle(folder / "meta", {"fine_label_names": fine_names, "coarse_label_names": coarse_names})
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        fine = balanced_labels(n, 100, seed + len(split))
        coarse = fine // 5
        images = pattern_images(fine, 3, 32, seed)
        write_pickle(
            folder / split,
            {
                "filenames": [f"{i}.png" for i in range(n)],
                "fine_labels": fine.tolist(),
                "coarse_labels": coarse.tolist(),
                "data": images.reshape(n, -1),
            },
        )
        out[f"{split}_x"], out[f"{split}_fine"], out[f"{split}_coarse"] = images, fine, coarse
    return out


# -- SVHN .mat -------------------------------------------------------------------------------------


def write_svhn(folder: Path, split: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``folder/<split>_32x32.mat`` with X (32, 32, 3, N) and y (N, 1), digit 0 labelled 10."""
    import scipy.io

    labels = balanced_labels(n, 10, seed)
    images = pattern_images(labels, 3, 32, seed)
    folder.mkdir(parents=True, exist_ok=True)
    stored = np.where(labels == 0, 10, labels).astype(np.uint8).reshape(-1, 1)
    scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": images.transpose(2, 3, 1, 0), "y": stored})
    return images, labels


# -- MedMNIST .npz -------------------------------------------------------------------------------


def write_medmnist(
    folder: Path,
    subset: str,
    channels: int,
    n_classes: int,
    size: int = 28,
    n: tuple[int, int, int] = (40, 10, 20),
) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for i, (split, count) in enumerate(zip(("train", "val", "test"), n, strict=True)):
        labels = balanced_labels(count, n_classes, i)
        images = pattern_images(labels, channels, size, i)
        images = images[:, 0] if channels == 1 else images.transpose(0, 2, 3, 1)
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels.reshape(-1, 1).astype(np.uint8)
    name = f"{subset}.npz" if size == 28 else f"{subset}_{size}.npz"
    np.savez_compressed(folder / name, **arrays)
    return arrays


# -- image files -------------------------------------------------------------------------------


def save_image(path: Path, array: np.ndarray) -> None:
    """``array`` (C, H, W) uint8 as PNG or JPEG by the file's suffix."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    hwc = array.transpose(1, 2, 0)
    image = Image.fromarray(hwc[:, :, 0] if hwc.shape[2] == 1 else hwc)
    image.save(path, quality=95) if path.suffix.lower() in {".jpg", ".jpeg"} else image.save(path)


def write_image_folder(
    root: Path,
    classes: tuple[str, ...] = ("cat", "dog", "fox"),
    per_class: int = 6,
    size: int = 24,
    suffixes: tuple[str, ...] = (".png", ".jpg"),
    seed: int = 0,
) -> dict[str, list[Path]]:
    """``root/<class>/img_<i><suffix>``, alternating suffixes; returns the paths per class."""
    out: dict[str, list[Path]] = {}
    for k, cls in enumerate(classes):
        labels = np.full(per_class, k)
        images = pattern_images(labels, 3, size, seed + k)
        out[cls] = []
        for i, image in enumerate(images):
            path = root / cls / f"img_{i:03d}{suffixes[i % len(suffixes)]}"
            save_image(path, image)
            out[cls].append(path)
    return out


def write_tiny_imagenet(
    root: Path, n_classes: int = 3, per_class: int = 5, val_per_class: int = 2, with_val: bool = True
) -> list[str]:
    """``root/tiny-imagenet-200`` with wnids.txt, words.txt, train/<wnid>/images and val/."""
    base = root / "tiny-imagenet-200"
    wnids = [f"n{10000000 + i:08d}" for i in range(n_classes)]
    base.mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n", encoding="utf-8")
    (base / "words.txt").write_text(
        "".join(f"{w}\tthing {i}, other name\n" for i, w in enumerate(wnids)) + "n99999999\tunused\n",
        encoding="utf-8",
    )
    for k, wnid in enumerate(wnids):
        images = pattern_images(np.full(per_class, k), 3, 64, k)
        for i, image in enumerate(images):
            save_image(base / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", image)
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("", encoding="utf-8")
    if with_val:
        lines = []
        count = 0
        for k, wnid in enumerate(wnids):
            images = pattern_images(np.full(val_per_class, k), 3, 64, 50 + k)
            for image in images:
                name = f"val_{count}.JPEG"
                save_image(base / "val" / "images" / name, image)
                lines.append(f"{name}\t{wnid}\t0\t0\t63\t63")
                count += 1
        (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return wnids


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep))])
