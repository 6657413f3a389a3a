"""File names, MD5 sums, URLs and class names of the standard datasets, as torchvision has them.

Importing ``torchvision.datasets`` costs seconds, so reading a dataset from disk uses this
copy and imports torchvision only to download. ``tests/cv/test_catalog.py`` checks that
every entry equals torchvision's own class attributes, so the copy cannot drift.
"""

from __future__ import annotations

import string
from dataclasses import dataclass


@dataclass(frozen=True)
class IdxSet:
    """An MNIST-like dataset (``torchvision.datasets.MNIST`` and subclasses)."""

    mirrors: tuple[str, ...]
    resources: tuple[tuple[str, str], ...]  # (file name, MD5) of the .gz files
    classes: tuple[str, ...]


MNIST = IdxSet(
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    resources=(
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ),
    classes=(
        "0 - zero",
        "1 - one",
        "2 - two",
        "3 - three",
        "4 - four",
        "5 - five",
        "6 - six",
        "7 - seven",
        "8 - eight",
        "9 - nine",
    ),
)

FASHION_MNIST = IdxSet(
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    resources=(
        ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    ),
    classes=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
)

EMNIST_URL = "https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip"
EMNIST_MD5 = "58c8d27c78d21e728a6bc7b3cc06412e"
_EMNIST_MERGED = set("cijklmopsuvwxyz")
_EMNIST_ALL = set(string.digits + string.ascii_letters)
EMNIST_CLASSES: dict[str, tuple[str, ...]] = {
    "byclass": tuple(sorted(_EMNIST_ALL)),
    "bymerge": tuple(sorted(_EMNIST_ALL - _EMNIST_MERGED)),
    "balanced": tuple(sorted(_EMNIST_ALL - _EMNIST_MERGED)),
    "letters": tuple(string.ascii_lowercase),  # torchvision: ("N/A", a..z) for labels 0..26
    "digits": tuple(string.digits),
    "mnist": tuple(string.digits),
}


@dataclass(frozen=True)
class CifarSet:
    """``torchvision.datasets.CIFAR10`` / ``CIFAR100``."""

    base_folder: str
    url: str
    filename: str
    tgz_md5: str
    train_list: tuple[tuple[str, str], ...]
    test_list: tuple[tuple[str, str], ...]
    meta: tuple[str, str, str]  # (file name, key of the class names, MD5)


CIFAR10 = CifarSet(
    base_folder="cifar-10-batches-py",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    filename="cifar-10-python.tar.gz",
    tgz_md5="c58f30108f718f92721af3b95e74349a",
    train_list=(
        ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
        ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
        ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
        ("data_batch_4", "634d18415352ddfa80567beed471001a"),
        ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
    ),
    test_list=(("test_batch", "40351d587109b95175f43aff81a1287e"),),
    meta=("batches.meta", "label_names", "5ff9c542aee3614f3951f8cda6e48888"),
)

CIFAR100 = CifarSet(
    base_folder="cifar-100-python",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    filename="cifar-100-python.tar.gz",
    tgz_md5="eb9058c3a382ffc7106e4002c42a8d85",
    train_list=(("train", "16019d7e3df5f24257cddd939b257f8d"),),
    test_list=(("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),),
    meta=("meta", "fine_label_names", "7973b15100ade9c7d40fb424638fde48"),
)

#: ``torchvision.datasets.SVHN.split_list``: split -> (URL, file name, MD5)
SVHN: dict[str, tuple[str, str, str]] = {
    "train": (
        "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
        "train_32x32.mat",
        "e26dedcc434d2e4c54c9b2d4a06d8373",
    ),
    "test": (
        "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
        "test_32x32.mat",
        "eb5a983be6a315427106f1b164d9cef3",
    ),
    "extra": (
        "http://ufldl.stanford.edu/housenumbers/extra_32x32.mat",
        "extra_32x32.mat",
        "a93ce644f1a588dc4d68dda5feec44a7",
    ),
}
