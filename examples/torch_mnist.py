"""Your own torch model and training loop on the MNIST test set, queried by alscope.

python examples/torch_mnist.py [../shared/data/mnist] [--strategy badge]
"""

import argparse
import gzip
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alscope.integrations import ActiveLearner


def read_idx(path: Path, header: int) -> np.ndarray:
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=header)


def read_mnist_test(folder: Path) -> tuple[torch.Tensor, np.ndarray]:
    images = read_idx(folder / "t10k-images-idx3-ubyte.gz", 16)
    labels = read_idx(folder / "t10k-labels-idx1-ubyte.gz", 8)
    return torch.from_numpy(images.reshape(-1, 1, 28, 28) / 255.0).float(), labels.astype(np.int64)


def make_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 5 * 5, 128),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(128, 10),
    )


def train(model: nn.Module, labeled: torch.utils.data.Dataset, steps: int = 300) -> None:
    """Your own loop: Adam for a fixed number of steps, so that small labeled sets are fitted."""
    optimizer, loss = torch.optim.Adam(model.parameters(), lr=1e-3), nn.CrossEntropyLoss()
    loader, done = torch.utils.data.DataLoader(labeled, batch_size=64, shuffle=True), 0
    while done < steps:
        for x, y in loader:
            optimizer.zero_grad()
            loss(model(x), y).backward()
            optimizer.step()
            done += 1


def main(
    folder: Path,
    strategy: str = "entropy",
    n_pool: int = 8000,
    n_initial: int = 100,
    n_query: int = 100,
    rounds: int = 4,
    steps: int = 300,
    **learner_options,
) -> ActiveLearner:
    x, y = read_mnist_test(folder)
    x_pool, y_pool, x_test, y_test = x[:n_pool], y[:n_pool], x[8000:], y[8000:]
    learner = ActiveLearner(
        make_net,
        x_pool,
        n_classes=10,
        strategy=strategy,
        test=(x_test, y_test),
        train=lambda model, labeled: train(model, labeled, steps),
        **learner_options,
    )
    initial = np.random.default_rng(learner.seed).choice(len(x_pool), n_initial, replace=False)
    learner.teach(initial, y_pool[initial])  # your annotators' answers
    for _ in range(rounds):
        batch = learner.query(n_query)
        learner.teach(batch, y_pool[batch])
        last = learner.history[-1]  # the round that chose this batch
        print(f"trained on {last['n_labeled']:.0f} labels: test accuracy {last['accuracy']:.3f}")
    print(learner.finish())
    return learner


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "folder",
        nargs="?",
        type=Path,
        default=Path(os.environ.get("ALSCOPE_MNIST_DIR", "../shared/data/mnist")),
    )
    parser.add_argument("--strategy", default="entropy")
    main(**vars(parser.parse_args()))
