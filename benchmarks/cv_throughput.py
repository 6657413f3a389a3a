"""Images per second of alscope-cv's in-memory pipeline next to a plain per-sample one.

    python benchmarks/cv_throughput.py [--data-dir ../shared/data] [--train-images 4096]
                                       [--workers 0,2] [--repeat 3]

Both pipelines feed the same small CNN (``cv:cnn``, same initial weights) on the CPU:

* **alscope-cv**: MNIST decoded once into a uint8 tensor (``TensorSource``), batches
  sliced and normalised as whole tensors;
* **per-sample torchvision**: a ``Dataset`` whose ``__getitem__`` does what
  ``torchvision.datasets.MNIST`` does (uint8 array -> PIL image -> ``ToTensor`` ->
  ``Normalize``), batched by a ``DataLoader`` (``--workers`` worker processes).

For each it prints images/s of one training epoch (forward, backward, Adam step, batch
64, shuffled) and of a pool inference pass (no grad, batch 1024), and of the data
pipelines alone, then the ratio. The MNIST test images come from ``--data-dir`` (or
``ALSCOPE_SHARED_DATA``, default ``../shared/data``); without them, random images in
the same format are used. Figures are best-of ``--repeat`` on this machine and noisy
on shared machines, which is why they are printed here and not asserted in tests.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from alscope_cv.backbones import SmallCNN
from alscope_cv.datasets.digits import MNIST

from alscope.data.base import InputSpec, LoadContext, TensorSource

MEAN, STD = 0.1307, 0.3081


class PerSampleMNIST(torch.utils.data.Dataset):
    """What ``torchvision.datasets.MNIST.__getitem__`` does for every sample."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        from torchvision import transforms

        self.images, self.labels = torch.from_numpy(images), labels
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        img = Image.fromarray(self.images[i].numpy(), mode="L")
        return self.transform(img), int(self.labels[i])


def load_images(data_dir: Path) -> tuple[np.ndarray, np.ndarray, str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = MNIST({"split": "test", "test_fraction": 0.01}).load(LoadContext(data_dir, 0))
        assert isinstance(ds.pool, TensorSource)
        x = np.concatenate([ds.pool.inputs.numpy(), ds.test.inputs.numpy()])[:, 0]
        y = np.concatenate([ds.pool.labels, ds.test.labels])
        return x, y, f"the MNIST test set from {data_dir} ({len(y):,} images)"
    except Exception as exc:
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, size=(10_000, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, size=10_000)
        return x, y, f"10,000 random 28x28 images (no MNIST in {data_dir}: {exc})"


def ours(images: np.ndarray, labels: np.ndarray) -> TensorSource:
    from alscope_cv.transforms import ImageBatchTransform

    tf = ImageBatchTransform((MEAN,), (STD,))
    return TensorSource(torch.from_numpy(images[:, None].copy()), labels, tf, tf)


def our_batches(source: TensorSource, indices: np.ndarray, batch: int, train: bool) -> Iterable[Any]:
    gen = torch.Generator().manual_seed(0)
    for b in source.batches(indices, batch_size=batch, train=train, shuffle=train, generator=gen):
        yield b.inputs, b.targets


def loader_batches(
    dataset: PerSampleMNIST, indices: np.ndarray, batch: int, train: bool, workers: int
) -> Iterable[Any]:
    subset = torch.utils.data.Subset(dataset, indices.tolist())
    gen = torch.Generator().manual_seed(0)
    yield from torch.utils.data.DataLoader(
        subset, batch_size=batch, shuffle=train, num_workers=workers, generator=gen
    )


def rate(n: int, run: Callable[[], None], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return n / best


def drain(batches: Callable[[], Iterable[Any]]) -> Callable[[], None]:
    def run() -> None:
        for _ in batches():
            pass

    return run


def train_epoch(model: SmallCNN, batches: Callable[[], Iterable[Any]]) -> Callable[[], None]:
    def run() -> None:
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for x, y in batches():
            loss = torch.nn.functional.cross_entropy(model(x).logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return run


def infer(model: SmallCNN, batches: Callable[[], Iterable[Any]]) -> Callable[[], None]:
    def run() -> None:
        model.eval()
        with torch.no_grad():
            for x, _ in batches():
                torch.softmax(model(x).logits, dim=1)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default_dir = os.environ.get(
        "ALSCOPE_SHARED_DATA", str(Path(__file__).resolve().parents[1].parent / "shared" / "data")
    )
    parser.add_argument("--data-dir", type=Path, default=Path(default_dir))
    parser.add_argument("--train-images", type=int, default=4096, help="images in the training epoch")
    parser.add_argument("--pool-images", type=int, default=10_000, help="images in the inference pass")
    parser.add_argument(
        "--workers", default="0", help="DataLoader workers of the per-sample pipeline, e.g. 0,2"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    opts = parser.parse_args()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    images, labels, what = load_images(opts.data_dir)
    n_train, n_pool = min(opts.train_images, len(labels)), min(opts.pool_images, len(labels))
    train_idx, pool_idx = np.arange(n_train), np.arange(n_pool)
    print(f"data: {what}; CPU threads: {torch.get_num_threads()}; cores: {os.cpu_count()}")
    print(f"training: one epoch over {n_train:,} images, batch 64; inference: {n_pool:,} images, batch 1024")
    torch.manual_seed(0)
    model = SmallCNN.build(InputSpec("image", (1, 28, 28)), 10, {})
    initial = {k: v.clone() for k, v in model.state_dict().items()}

    source = ours(images, labels)
    dataset = PerSampleMNIST(images, labels)
    pipelines: list[tuple[str, Callable[[np.ndarray, int, bool], Iterable[Any]]]] = [
        ("alscope-cv TensorSource", lambda idx, b, t: our_batches(source, idx, b, t)),
    ]
    for w in (int(v) for v in opts.workers.split(",")):
        pipelines.append(
            (
                f"per-sample torchvision ({w} workers)",
                lambda idx, b, t, w=w: loader_batches(dataset, idx, b, t, w),
            )
        )
    rows = []
    for name, make in pipelines:
        model.load_state_dict(initial)
        row = {
            "pipeline": name,
            "data train": rate(n_train, drain(lambda make=make: make(train_idx, 64, True)), opts.repeat),
            "data infer": rate(n_pool, drain(lambda make=make: make(pool_idx, 1024, False)), opts.repeat),
            "train": rate(
                n_train, train_epoch(model, lambda make=make: make(train_idx, 64, True)), opts.repeat
            ),
            "infer": rate(n_pool, infer(model, lambda make=make: make(pool_idx, 1024, False)), opts.repeat),
        }
        rows.append(row)
    columns = ["train", "infer", "data train", "data infer"]
    header = f"{'pipeline':38}" + "".join(f"{c + ' img/s':>18}" for c in columns)
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['pipeline']:38}" + "".join(f"{row[c]:>18,.0f}" for c in columns))
    base = rows[0]
    for row in rows[1:]:
        ratios = "".join(f"{base[c] / row[c]:>17.1f}x" for c in columns)
        print(f"{'ratio vs ' + row['pipeline']:38}" + ratios)


if __name__ == "__main__":
    main()
