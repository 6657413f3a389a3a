"""DAL: discriminative active learning.

Gissin & Shalev-Shwartz, 2019: *Discriminative active learning*. A binary classifier
(an MLP) learns to tell the labeled set from the unlabeled pool in the model's
representation space; the samples it is most sure are *unlabeled* are the ones the
labeled set represents worst, and are queried. As in the official code
(``DiscriminativeRepresentationSampling``), the batch is chosen in ``sub_batches``
rounds: pick ``budget / sub_batches`` samples, treat them as labeled, train a fresh
discriminator, pick again. Each round the discriminator sees the labeled set and a
random subsample of at most ``unlabeled_ratio`` times as many unlabeled samples, and
the samples are picked from that subsample.

The discriminator follows the official ``get_discriminative_model``: three ReLU layers
of width 256 (20 when the embedding has fewer than 30 dimensions), a 2-way softmax,
Adam, class-weighted cross-entropy (each class weighted by ``n / n_class``), training
stopped as soon as an epoch's training accuracy exceeds 98 % (their
``DiscriminativeEarlyStopping``) or after ``max_epochs`` epochs. It trains on the
run's device with a torch generator seeded from the cycle's ``rng`` (initial weights,
batch order), so the same seed gives the same batch.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from pydantic import Field
from torch import nn

from alscope.components import Params
from alscope.strategies._distances import as_tensor, select_sequentially
from alscope.strategies.base import PoolView, Requirements, Strategy


class DALParams(Params):
    sub_batches: int = Field(
        default=10,
        ge=1,
        description="rounds per query, each retraining the discriminator (official: 20 on learned "
        "representations, 10 on pixels)",
    )
    unlabeled_ratio: float = Field(
        default=10.0,
        gt=0.0,
        description="each round trains on and picks from at most this many unlabeled samples per "
        "labeled one, drawn at random (official: 10)",
    )
    width: int | None = Field(
        default=None,
        ge=1,
        description="hidden width of the 3-layer MLP (default: 256, or 20 below 30 embedding dimensions)",
    )
    lr: float = Field(default=1e-3, gt=0.0, description="Adam learning rate of the discriminator")
    batch_size: int = Field(default=1024, ge=1, description="discriminator minibatch size (official: 1024)")
    max_epochs: int = Field(default=10, ge=1, description="most training epochs per round")
    stop_accuracy: float = Field(
        default=0.98,
        gt=0.0,
        le=1.0,
        description="stop training once an epoch's training accuracy exceeds this (official: 0.98)",
    )


def discriminator(dim: int, width: int, generator: torch.Generator, device: torch.device) -> nn.Module:
    """The official 3-hidden-layer ReLU MLP with 2 outputs, initialised from ``generator``
    (PyTorch's default ``nn.Linear`` scheme: uniform in ``+-1/sqrt(fan_in)``)."""
    sizes = [dim, width, width, width, 2]
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        lin = nn.Linear(fan_in, fan_out)
        bound = 1.0 / math.sqrt(fan_in)
        with torch.no_grad():
            lin.weight.copy_(torch.rand(fan_out, fan_in, generator=generator) * 2 * bound - bound)
            lin.bias.copy_(torch.rand(fan_out, generator=generator) * 2 * bound - bound)
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).to(device)


def train_discriminator(
    labeled: torch.Tensor,
    unlabeled: torch.Tensor,
    params: DALParams,
    generator: torch.Generator,
) -> nn.Module:
    """A fresh discriminator trained to output class 1 on ``unlabeled`` and 0 on ``labeled``."""
    device = unlabeled.device
    dim = unlabeled.shape[1]
    width = params.width or (20 if dim < 30 else 256)
    net = discriminator(dim, width, generator, device)
    x = torch.cat([labeled, unlabeled])
    y = torch.cat(
        [torch.zeros(len(labeled), dtype=torch.long), torch.ones(len(unlabeled), dtype=torch.long)]
    ).to(device)
    n = len(x)
    weight = torch.tensor([n / max(len(labeled), 1), n / max(len(unlabeled), 1)], device=device)
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    opt = torch.optim.Adam(net.parameters(), lr=params.lr)
    net.train()
    for _ in range(params.max_epochs):
        order = torch.randperm(n, generator=generator).to(device)
        correct = 0
        for s in range(0, n, params.batch_size):
            idx = order[s : s + params.batch_size]
            out = net(x[idx])
            loss = loss_fn(out, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            correct += int((out.argmax(dim=1) == y[idx]).sum())
        if correct / n > params.stop_accuracy:
            break
    net.eval()
    return net


def unlabeled_probability(net: nn.Module, x: torch.Tensor, block: int = 8192) -> torch.Tensor:
    """The discriminator's probability that each row of ``x`` is unlabeled."""
    with torch.no_grad():
        return torch.cat([torch.softmax(net(x[s : s + block]), dim=1)[:, 1] for s in range(0, len(x), block)])


class DAL(Strategy):
    """Query the samples a labeled-vs-unlabeled discriminator finds most "unlabeled",
    in ``sub_batches`` rounds that each retrain it with the picks counted as labeled."""

    component_name = "dal"
    Params = DALParams

    def requirements(self) -> Requirements:
        return Requirements(embeddings=True, labeled_embeddings=True)

    @select_sequentially
    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        p: DALParams = self.params
        x = as_tensor(view.require("embeddings", self.component_name), view.device)
        lab = view.labeled_embeddings
        lab_x = as_tensor(lab, view.device) if lab is not None and len(lab) else x[:0]
        generator = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        u = len(x)
        is_picked = np.zeros(u, dtype=bool)
        picked: list[int] = []
        step = max(1, budget // p.sub_batches)
        while len(picked) < budget:
            size = min(step, budget - len(picked))
            free = np.flatnonzero(~is_picked)
            n_labeled = len(lab_x) + len(picked)
            if n_labeled == 0:
                # nothing to discriminate against (cold start): the first round is uniform
                chosen = rng.choice(free, size=size, replace=False)
            else:
                n_sub = min(len(free), max(size, math.ceil(p.unlabeled_ratio * n_labeled)))
                sub = np.sort(rng.choice(free, size=n_sub, replace=False))
                sub_t = torch.from_numpy(sub).to(view.device)
                pick_t = torch.as_tensor(picked, dtype=torch.long, device=view.device)
                labeled = torch.cat([lab_x, x[pick_t]])
                net = train_discriminator(labeled, x[sub_t], p, generator)
                score = unlabeled_probability(net, x[sub_t]).cpu()
                # highest "unlabeled" probability first; exact ties in pool order
                order = torch.argsort(-score, stable=True)[:size].numpy()
                chosen = sub[order]
            picked.extend(int(i) for i in chosen)
            is_picked[chosen] = True
        return view.unlabeled[np.asarray(picked, dtype=np.int64)]
