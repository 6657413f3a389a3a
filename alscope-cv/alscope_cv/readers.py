"""Small, fast readers of the standard raw files, into numpy uint8 arrays.

``(N, C, H, W)`` uint8 images and ``(N,)`` int64 labels; every malformed or truncated
file is a :class:`~alscope.errors.DataError` that names it.
"""

from __future__ import annotations

import gzip
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from alscope.errors import DataError

# IDX type codes (http://yann.lecun.com/exdb/mnist/): big-endian element types
_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _corrupt(path: Path, what: str) -> DataError:
    return DataError(
        f"{path} is not a valid {what}; it may be truncated or corrupt: delete it and run again "
        f"with --download, or replace it with the original file"
    )


def read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when its name ends in ``.gz``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(
            f"{path} cannot be read ({type(exc).__name__}: {exc}); it may be truncated or corrupt: "
            f"delete it and run again with --download, or replace it with the original file"
        ) from None


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST, Fashion-MNIST, EMNIST), plain or gzip-compressed."""
    data = read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise _corrupt(path, "IDX file (bad magic number)")
    dtype, ndim = _IDX_TYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _corrupt(path, "IDX file (short header)")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(
            f"{path} is truncated or corrupt: its header announces {'x'.join(map(str, dims))} values "
            f"({expected:,} bytes) but {len(data) - header:,} bytes follow; delete it and run again "
            f"with --download, or replace it with the original file"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx_images(path: Path) -> np.ndarray:
    """``(N, 1, H, W)`` uint8 from an IDX image file."""
    images = read_idx(path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{path}: expected a 3-D uint8 IDX image file, found {images.dtype} {images.shape}")
    return images[:, None, :, :]


def read_idx_labels(path: Path) -> np.ndarray:
    labels = read_idx(path)
    if labels.ndim != 1:
        raise DataError(f"{path}: expected a 1-D IDX label file, found shape {labels.shape}")
    return labels.astype(np.int64)


def read_pickle(path: Path) -> dict[str, Any]:
    """A CIFAR python batch (Python 2 pickles: read with ``latin1`` as torchvision does)."""
    try:
        with open(path, "rb") as fh:
            entry = pickle.load(fh, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DataError(
            f"{path} is not a readable CIFAR batch ({type(exc).__name__}: {exc}); it may be truncated "
            f"or corrupt: delete it and run again with --download, or replace it with the original file"
        ) from None
    if not isinstance(entry, dict):
        raise _corrupt(path, "CIFAR batch (not a dict)")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in entry.items()}


def read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 3, 32, 32)`` uint8 images and their labels from one CIFAR batch file."""
    entry = read_pickle(path)
    if "data" not in entry or label_key not in entry:
        raise DataError(f"{path}: a CIFAR batch needs 'data' and {label_key!r}; found {sorted(entry)}")
    data = np.asarray(entry["data"], dtype=np.uint8)
    labels = np.asarray(entry[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError(
            f"{path}: expected data of shape (N, 3072) and N labels, found {data.shape} and {labels.shape}"
        )
    return data.reshape(-1, 3, 32, 32), labels


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 3, 32, 32)`` uint8 images and labels 0-9 from an SVHN ``*_32x32.mat`` file."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several types for malformed files
        raise DataError(
            f"{path} is not a readable MATLAB file ({type(exc).__name__}: {exc}); it may be truncated "
            f"or corrupt: delete it and run again with --download, or replace it with the original file"
        ) from None
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{path}: an SVHN file needs arrays 'X' and 'y'; found {sorted(mat)}")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).astype(np.int64).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise DataError(
            f"{path}: expected X of shape (32, 32, 3, N) with N labels, found {x.shape}, {y.shape}"
        )
    y[y == 10] = 0  # SVHN labels the digit 0 as 10
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1), dtype=np.uint8), y


def read_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named arrays of an ``.npz`` file (MedMNIST)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data]
            if missing:
                raise DataError(f"{path}: arrays {missing} are missing (found {sorted(data.keys())})")
            return {k: np.asarray(data[k]) for k in keys}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"{path} is not a readable .npz file ({type(exc).__name__}: {exc}); it may be truncated "
            f"or corrupt: delete it and run again with --download, or replace it with the original file"
        ) from None
