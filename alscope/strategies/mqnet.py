"""MQ-Net: a meta query network that trades purity against informativeness.

Park et al., NeurIPS 2022, "Meta-Query-Net: Resolving Purity-Informativeness Dilemma in
Open-set Active Learning" (official code github.com/kaist-dmlab/MQNet). In an open-set
pool the most informative samples are often out of distribution, and the purest ones
teach little; MQ-Net learns from the answers to its own queries how to weigh the two.

Per unlabeled sample, two scores:

* **purity**: CSI's score, the highest cosine similarity of the sample's self-supervised
  CSI feature to a labeled *known* sample's, times the feature's norm (Tack et al. 2020).
  The CSI embeddings come from ``alscope.ssl`` (cached per pool); they are unit-norm there
  (the ensemble over rotations), so the score is the max cosine, as the official code
  computes it (its norm factor is commented out).
* **informativeness**: ``1 - max softmax`` of the classifier (the official ``CONF`` mode),
  or the predicted loss of a Learning Loss module trained with the classifier
  (``learning_loss``, the official ``LL`` mode; the module of
  :mod:`alscope.strategies.learning_loss`).

Each score is standardised over the unlabeled pool and passed through ``exp`` (the
official ``standardize``), giving the meta-input ``[informativeness, purity]``. The meta
query network is the official QueryNet: ``sigmoid(x relu(W1) + b1) relu(W2) + b2`` with
64 hidden units and uniform ``[0, 1)`` initial weights; the ``relu`` on the weights and
the monotone activation make its output non-decreasing in both inputs, the paper's
*skyline constraint* (a sample at least as pure and as informative never ranks lower).

Meta-training (official ``meta_train``): each queried sample is scored by its
*usefulness*, the classifier's cross-entropy on its true class if it turned out known
and 0 if it was answered OOD, with the classifier that selected it (its probabilities
are kept from the query); the network learns to rank queried samples by usefulness with
a margin ranking loss, ``max(0, margin - sign(t_i - t_j)(y_i - y_j))`` (SGD, lr 0.01, the
rate divided by 10 halfway, as the official schedule). Kept across cycles (and resumes,
via ``state_dict``): the network's weights and every queried sample's meta-input and
probabilities; each cycle the network continues training on all samples queried so far.

Deviations, and why: pairs are all non-tied pairs within a minibatch (the official code
pairs sample ``i`` with ``B - 1 - i`` and ranks tied targets, e.g. two OOD samples, in an
arbitrary direction; the paper's loss gives a tie no gradient); meta-inputs are
standardised with the pool statistics of the cycle that queried them (the official code
standardises the queried batch by its own statistics at training time but the pool by
the pool's at selection, so the same sample could get two different inputs); the
official code scores a random subset of the pool, here the whole pool is scored; fewer
SGD steps by default (``meta_steps``; the official 1,000 epochs x 150 steps are for a
ResNet-scale run and converge far earlier on this 2-input network).

First query (nothing queried yet, or no two queried samples with different usefulness,
e.g. only OOD answers so far): the official cycle-0 rule, informativeness plus the
standardised purity, with informativeness standardised too only in ``learning_loss``
mode. In ``confidence`` mode the raw ``1 - max p`` (at most ``1 - 1/C``) is then small
next to ``exp(z)`` of the purity, so the first batch is chosen mostly for purity: the
meta network's first training set is not flooded with OOD samples, which a well-trained
classifier finds the most uncertain (standardising both scores here, as an earlier
version did, made the first queries on digits 65% OOD and the network never recovered).
Before any OOD is labeled (all answers known) the network is trained all the same: it
then learns to rank by the classifier's loss. Without any labeled known sample the purity
is 0 everywhere and only informativeness ranks.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from alscope.components import Params
from alscope.errors import ModelError
from alscope.scenarios.base import OOD
from alscope.strategies._distances import as_tensor, l2_normalize, max_cosine, rows_per_block, sequential
from alscope.strategies.base import PoolView, Requirements, SSLRequest, Strategy, top_k
from alscope.strategies.learning_loss import LearningLossParams, LossPredictionHooks


class MQNetParams(Params):
    informativeness: Literal["confidence", "learning_loss"] = Field(
        default="confidence",
        description="informativeness score: confidence (1 - max softmax, the official CONF mode) or "
        "learning_loss (a loss-prediction module trained with the classifier, the official LL mode)",
    )
    ssl_epochs: int = Field(default=20, ge=1, description="epochs of the CSI encoder (each sees every shift)")
    ssl_dim: int = Field(default=128, ge=1, description="projection dimension of the CSI encoder")
    ssl_batch_size: int = Field(default=256, ge=2, description="samples per contrastive batch")
    hidden: int = Field(default=64, ge=1, description="hidden units of the meta query network")
    meta_steps: int = Field(
        default=5000, ge=1, description="SGD steps of meta-training per cycle (the rate / 10 halfway)"
    )
    meta_lr: float = Field(default=0.01, gt=0.0, description="SGD learning rate of the meta query network")
    meta_batch_size: int = Field(
        default=64, ge=2, description="queried samples per meta-training step (all their pairs are ranked)"
    )
    margin: float = Field(default=1.0, ge=0.0, description="margin of the ranking loss")


class QueryNet(nn.Module):
    """The official meta query network over ``[informativeness, purity]``: non-negative
    effective weights and a monotone activation, so the output is non-decreasing in each
    input (the skyline constraint)."""

    def __init__(self, hidden: int = 64, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.rand(2, hidden, generator=generator))
        self.b1 = nn.Parameter(torch.rand(hidden, generator=generator))
        self.w2 = nn.Parameter(torch.rand(hidden, 1, generator=generator))
        self.b2 = nn.Parameter(torch.rand(1, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.sigmoid(x @ F.relu(self.w1) + self.b1)
        return (h @ F.relu(self.w2) + self.b2).squeeze(-1)

    def to_state(self) -> dict[str, Any]:
        return {name: p.detach().cpu().tolist() for name, p in self.named_parameters()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> QueryNet:
        w1 = torch.tensor(state["w1"], dtype=torch.float32)
        net = cls(hidden=w1.shape[1])
        with torch.no_grad():
            for name, p in net.named_parameters():
                value = torch.tensor(state[name], dtype=torch.float32)
                if value.shape != p.shape:
                    raise ModelError(f"strategy 'mqnet': saved {name} has shape {tuple(value.shape)}")
                p.copy_(value)
        return net


def ranking_loss(scores: torch.Tensor, targets: torch.Tensor, margin: float) -> torch.Tensor | None:
    """Mean of ``max(0, margin - sign(t_i - t_j)(s_i - s_j))`` over every pair with
    ``t_i != t_j`` (None when all targets tie: nothing to rank)."""
    diff_t = targets[:, None] - targets[None, :]
    upper = torch.triu(torch.ones_like(diff_t, dtype=torch.bool), diagonal=1) & (diff_t != 0)
    if not bool(upper.any()):
        return None
    diff_s = scores[:, None] - scores[None, :]
    return F.relu(margin - torch.sign(diff_t[upper]) * diff_s[upper]).mean()


def meta_train(
    net: QueryNet,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    steps: int,
    lr: float,
    batch_size: int,
    margin: float,
    generator: torch.Generator,
) -> list[float]:
    """SGD on the ranking loss over random minibatches of the queried samples (the rate
    divided by 10 after half the steps, the official MultiStepLR); returns the losses."""
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[max(1, steps // 2)], gamma=0.1)
    n = len(inputs)
    losses: list[float] = []
    net.train()
    with sequential(inputs.device):  # thousands of tiny steps: threads only add barriers
        for _ in range(steps):
            idx = torch.randperm(n, generator=generator)[:batch_size] if n > batch_size else torch.arange(n)
            loss = ranking_loss(net(inputs[idx]), targets[idx], margin)
            if loss is not None:
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
            sched.step()
    net.eval()
    return losses


def standardize(scores: torch.Tensor) -> torch.Tensor:
    """The official ``standardize``: z-score over the pool, then ``exp`` (a constant score
    maps to 1)."""
    scores = scores.double()
    std, mean = torch.std_mean(scores, unbiased=False)
    z = (scores - mean) / std if float(std) > 0 else torch.zeros_like(scores)
    return torch.exp(z).float()


def csi_purity(unlabeled: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """CSI's score: highest cosine similarity to a known sample times the feature norm, in
    blocks of rows (0 everywhere without known samples)."""
    norm = unlabeled.norm(dim=1)
    if len(known) == 0:
        return torch.zeros_like(norm)
    return max_cosine(l2_normalize(unlabeled), l2_normalize(known))[0] * norm


def _pack(a: np.ndarray) -> dict[str, Any]:
    a = np.ascontiguousarray(a)
    return {"dtype": str(a.dtype), "shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode()}


def _unpack(d: dict[str, Any]) -> np.ndarray:
    raw = base64.b64decode(d["data"])
    return np.frombuffer(raw, dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()


class MQNet(Strategy):
    """Ranks the pool by a meta query network over purity and informativeness, trained on
    the answers to earlier queries."""

    Params = MQNetParams
    component_name = "mqnet"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.net: QueryNet | None = None
        self.queried = np.empty(0, dtype=np.int64)  # dataset indices, in query order
        self.inputs = np.empty((0, 2), dtype=np.float32)  # their meta-inputs when queried
        self.probs: np.ndarray | None = None  # their class probabilities when queried
        self.meta_losses: list[float] = []

    def requirements(self) -> Requirements:
        p = self.params
        ssl = SSLRequest("csi", epochs=p.ssl_epochs, dim=p.ssl_dim, batch_size=p.ssl_batch_size)
        extra = ("predicted_loss",) if p.informativeness == "learning_loss" else ()
        return Requirements(probs=True, extra_outputs=extra, ssl=(ssl,))

    def training_hooks(self) -> LossPredictionHooks | None:
        if self.params.informativeness != "learning_loss":
            return None
        return LossPredictionHooks(LearningLossParams(), self.component_name)

    # state: the network and every queried sample's inputs outlive the cycle (and a resume)

    def state_dict(self) -> dict[str, Any]:
        if not len(self.queried):
            return {}
        assert self.probs is not None
        return {
            "net": self.net.to_state() if self.net is not None else None,
            "queried": _pack(self.queried),
            "inputs": _pack(self.inputs),
            "probs": _pack(self.probs),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.net = QueryNet.from_state(state["net"]) if state.get("net") else None
        self.queried = _unpack(state["queried"]).astype(np.int64)
        self.inputs = _unpack(state["inputs"]).astype(np.float32)
        self.probs = _unpack(state["probs"]).astype(np.float32)

    # selection

    def meta_input(self, view: PoolView) -> tuple[torch.Tensor, torch.Tensor]:
        """``(U, 2)`` standardised ``[informativeness, purity]`` and the probabilities."""
        who = self.component_name
        probs = view.require("probs", who).float().cpu()
        if self.params.informativeness == "learning_loss":
            informative = view.require("predicted_loss", who).float().cpu().flatten()
        else:
            informative = 1.0 - probs.max(dim=1).values
        purity = self._purity(view).cpu()
        if not (len(informative) == len(purity) == len(probs) == view.n_unlabeled):
            raise ModelError(
                f"strategy {who!r}: scores do not cover the {view.n_unlabeled} unlabeled samples"
            )
        return torch.stack([standardize(informative), standardize(purity)], dim=1), probs

    def _purity(self, view: PoolView) -> torch.Tensor:
        unl, lab = view.ssl_pair("csi", self.component_name)
        known = view.labeled_known(self.component_name)
        u = as_tensor(unl, view.device)
        k = as_tensor(lab, view.device)[torch.from_numpy(known).to(view.device)]
        return csi_purity(u, k)

    def first_query_scores(self, inputs: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """The official cycle-0 rule: informativeness (raw in confidence mode, standardised
        in learning-loss mode) plus the standardised purity."""
        informative = inputs[:, 0].double()
        if self.params.informativeness == "confidence":
            informative = 1.0 - probs.double().max(dim=1).values
        return informative + inputs[:, 1].double()

    def training_set(self, view: PoolView) -> tuple[torch.Tensor, torch.Tensor]:
        """Meta-inputs and usefulness (cross-entropy if answered known, 0 if OOD) of the
        queried samples that the view shows answered."""
        if (
            not len(self.queried)
            or not len(view.labeled)
            or view.labeled_targets is None
            or self.probs is None
        ):
            return torch.empty(0, 2), torch.empty(0)
        order = np.argsort(view.labeled)
        pos = np.searchsorted(view.labeled, self.queried, sorter=order)
        pos = np.minimum(pos, len(order) - 1)
        answered = view.labeled[order[pos]] == self.queried
        labels = np.asarray(view.labeled_targets)[order[pos[answered]]].astype(np.int64)
        probs = self.probs[answered]
        known = labels != OOD
        if known.any() and (labels[known].max() >= probs.shape[1] or labels[known].min() < 0):
            raise ModelError(
                f"strategy {self.component_name!r}: a queried sample's class exceeds the "
                f"{probs.shape[1]} classes its probabilities were kept for"
            )
        p_true = probs[np.arange(len(labels)), np.where(known, labels, 0)]
        usefulness = np.where(known, -np.log(np.clip(p_true, 1e-12, None)), 0.0)
        return torch.from_numpy(self.inputs[answered]), torch.from_numpy(usefulness).float()

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        p = self.params
        inputs, probs = self.meta_input(view)
        train_x, train_t = self.training_set(view)
        generator = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        if len(train_t) >= 2 and bool((train_t != train_t[0]).any()):
            if self.net is None or self.net.w1.shape[1] != p.hidden:
                self.net = QueryNet(p.hidden, generator)
            self.meta_losses = meta_train(
                self.net, train_x, train_t, p.meta_steps, p.meta_lr, p.meta_batch_size, p.margin, generator
            )
        if self.net is not None:
            step = rows_per_block(p.hidden)  # the hidden layer of a block at a time
            with torch.no_grad():
                scores = torch.cat([self.net(inputs[s : s + step]) for s in range(0, len(inputs), step)])
            scores = scores.double()
        else:
            scores = self.first_query_scores(inputs, probs)
        if not bool(torch.isfinite(scores).all()):
            raise ModelError(
                f"strategy {self.component_name!r}: the meta query network gave non-finite scores"
            )
        chosen = top_k(scores.numpy(), budget, rng)
        self._remember(view.unlabeled[chosen], inputs[chosen].numpy(), probs[chosen].numpy())
        return view.unlabeled[chosen]

    def _remember(self, indices: np.ndarray, inputs: np.ndarray, probs: np.ndarray) -> None:
        if self.probs is not None and self.probs.shape[1] != probs.shape[1]:
            raise ModelError(
                f"strategy {self.component_name!r}: the classifier has {probs.shape[1]} classes, "
                f"earlier queries {self.probs.shape[1]}"
            )
        self.queried = np.concatenate([self.queried, indices.astype(np.int64)])
        self.inputs = np.concatenate([self.inputs, inputs.astype(np.float32)])
        self.probs = probs.astype(np.float32) if self.probs is None else np.concatenate([self.probs, probs])
