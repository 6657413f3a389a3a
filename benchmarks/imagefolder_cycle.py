"""Training seconds per cycle of an ``imagefolder`` run on CIFAR-10-sized PNGs.

    python benchmarks/imagefolder_cycle.py [--images 4000] [--side 32] [--cycles 4]
                                           [--data-dir ../shared/data] [--threads 2]
                                           [--in-memory auto|true|false] [--epochs E] [--min-steps S]

It writes ``--images`` RGB PNGs of ``--side`` pixels in 10 class folders into a
temporary folder (MNIST test digits, padded and tinted per class, from ``--data-dir``
or ``ALSCOPE_SHARED_DATA``; random images where MNIST is absent), then runs what a
user runs on their own folder::

    alscope run --dataset imagefolder --dataset-param path=<folder> \
        --dataset-param max_test_size=500 --backbone cv:cnn \
        --initial 200 --query-size 200 --cycles 4

with the default recipe (the test set is a 25 % hold-out of the folder, capped at 500,
so the pool holds 3,000 images). It prints, per cycle, the labeled count, the training
seconds, the test accuracy, and the mean. The figures are wall clock on this machine,
noisy on shared machines, which is why they are printed here and not asserted in tests.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def digits(data_dir: Path, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(count, 28, 28) uint8 images and their labels: MNIST test digits, or noise."""
    rng = np.random.default_rng(seed)
    try:
        from alscope_cv.datasets.digits import MNIST

        from alscope.data.base import LoadContext

        data = MNIST({"split": "test", "test_fraction": 0.01}).load(
            LoadContext(data_dir=data_dir, seed=seed, download=False)
        )
        images = np.asarray(data.pool.inputs).reshape(-1, 28, 28)
        labels = data.pool.labels
        pick = rng.choice(len(labels), min(count, len(labels)), replace=False)
        return images[pick], labels[pick]
    except Exception as exc:
        print(f"MNIST not read ({type(exc).__name__}: {exc}); writing random images")
        return rng.integers(0, 256, (count, 28, 28), dtype=np.uint8), rng.integers(0, 10, count)


def write_folder(root: Path, count: int, side: int, data_dir: Path, seed: int) -> None:
    from PIL import Image

    images, labels = digits(data_dir, count, seed)
    rng = np.random.default_rng(seed)
    tints = rng.uniform(0.4, 1.0, (10, 3))
    pad = max(0, side - 28)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        grey = np.pad(image, ((pad // 2, pad - pad // 2), (pad // 2, pad - pad // 2)))[:side, :side]
        rgb = (grey[..., None] * tints[label]).astype(np.uint8)
        folder = root / f"class{int(label)}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb, "RGB").save(folder / f"{i:05d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--side", type=int, default=32)
    parser.add_argument("--cycles", type=int, default=4)
    parser.add_argument("--initial", type=int, default=200)
    parser.add_argument("--query", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("ALSCOPE_SHARED_DATA", "../shared/data"))
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="default: the recipe's")
    parser.add_argument("--min-steps", type=int, help="default: the recipe's")
    parser.add_argument("--in-memory", choices=["auto", "true", "false"], default="auto")
    opts = parser.parse_args()

    from alscope.engine.experiment import run_experiment

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        start = time.perf_counter()
        write_folder(root, opts.images, opts.side, opts.data_dir, opts.seed)
        print(f"wrote {opts.images} PNGs of {opts.side} px in {time.perf_counter() - start:.1f} s")
        config = {
            "strategy": "entropy",
            "dataset": {
                "name": "imagefolder",
                "params": {"path": str(root), "test_fraction": 0.25, "max_test_size": 500}
                | ({} if opts.in_memory == "auto" else {"in_memory": opts.in_memory == "true"}),
            },
            "backbone": "cv:cnn",
            "trials": 1,
            "cycles": opts.cycles,
            "n_initial": opts.initial,
            "n_query": opts.query,
            "seed": opts.seed,
            "results_dir": str(Path(tmp) / "results"),
            "training": {"threads": opts.threads},
            "tracking": {"enabled": False},
        }
        for key in ("epochs", "min_steps"):
            if getattr(opts, key) is not None:
                config["training"][key] = getattr(opts, key)
        start = time.perf_counter()
        result = run_experiment(config)
        wall = time.perf_counter() - start
    cycles = result.trials[0].cycles
    print(f"{'labeled':>8} {'train s':>8} {'select s':>9} {'train acc':>10} {'test acc':>9}")
    for c in cycles:
        m = c.metrics
        print(
            f"{c.n_labeled:>8} {m.get('train_time', float('nan')):>8.1f} "
            f"{m.get('selection_time', float('nan')):>9.2f} {m.get('train_accuracy', float('nan')):>10.3f} "
            f"{m['accuracy']:>9.3f}"
        )
    train = [c.metrics["train_time"] for c in cycles]
    print(f"mean training time per cycle: {np.mean(train):.2f} s; whole run {wall:.1f} s")


if __name__ == "__main__":
    main()
