"""UncertainGCN and CoreGCN: sequential GCN for active learning.

Caramalau, Bhattarai & Kim, CVPR 2021: *Sequential graph convolutional network for
active learning*. The labeled set and a random subset of the unlabeled pool (official
``SUBSET = 10000``) become the nodes of a graph whose adjacency comes from the
L2-normalised embeddings ``f``: as the official ``aff_to_adj``,
``A = (F F^T - I) diag(1 / colsum) + I`` with ``colsum_j = sum_i f_i . f_j - 1``. A GCN
(``relu(A X W1)``, dropout, ``sigmoid(A H W3)``: the official forward, whose middle layer
is unused) learns to output 1 on labeled and 0 on unlabeled nodes with the official loss
``-mean log s(labeled) - lambda mean log(1 - s(unlabeled))``, 200 full-graph Adam steps.
*UncertainGCN* queries the unlabeled nodes whose output is closest to ``s_margin``;
*CoreGCN* runs greedy k-center on the GCN's hidden features, the labeled nodes as the
initial centres.

The adjacency is never built: ``A S = F (F^T (S / colsum)) - S / colsum + S`` is the
same product in ``O(n x D x H)`` time and ``O(n x (D + H))`` memory, so the official
dense graph is reproduced exactly at any subset size. Weights and dropout masks come
from a torch generator seeded from the cycle's ``rng``, on ``view.device``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pydantic import Field

from alscope.components import Params
from alscope.strategies._distances import FeatureSpace, as_tensor, kcenter_greedy, l2_normalize
from alscope.strategies.base import PoolView, Requirements, Strategy, top_k


class GCNParams(Params):
    subset: int = Field(
        default=10000, ge=1, description="unlabeled nodes drawn at random into the graph (official SUBSET)"
    )
    hidden: int = Field(default=128, ge=1, description="GCN hidden units (official: 128)")
    dropout: float = Field(
        default=0.3, ge=0.0, lt=1.0, description="dropout on the hidden layer (official: 0.3)"
    )
    lambda_loss: float = Field(
        default=1.2, ge=0.0, description="weight of the unlabeled term of the loss (official: 1.2)"
    )
    epochs: int = Field(default=200, ge=1, description="full-graph Adam steps (official: 200)")
    lr: float = Field(default=1e-3, gt=0.0, description="Adam learning rate (official: 1e-3)")
    weight_decay: float = Field(default=5e-4, ge=0.0, description="Adam weight decay (official: 5e-4)")


class UncertainGCNParams(GCNParams):
    s_margin: float = Field(
        default=0.1, description="query the nodes whose GCN output is closest to this (official: 0.1)"
    )


class SimilarityGraph:
    """The official normalised-similarity adjacency, applied in factorised form."""

    def __init__(self, f: torch.Tensor) -> None:
        self.f = f
        col = f @ f.sum(dim=0) - 1.0  # column sums of F F^T - I
        self.inv_col = 1.0 / col

    def apply(self, s: torch.Tensor) -> torch.Tensor:
        scaled = s * self.inv_col[:, None]
        return self.f @ (self.f.T @ scaled) - scaled + s


def _uniform(shape: tuple[int, ...], bound: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return (torch.rand(shape, generator=g, device=device) * 2.0 - 1.0) * bound


def train_gcn(
    f: torch.Tensor, is_labeled: torch.Tensor, p: GCNParams, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train the GCN on nodes ``f`` (L2-normalised features) to output 1 on labeled nodes;
    returns each node's output and hidden features, in eval mode (no dropout)."""
    device = f.device
    graph = SimilarityGraph(f)
    d, h = f.shape[1], p.hidden
    # the official GraphConvolution init: uniform in +-1/sqrt(out_features)
    w1 = _uniform((d, h), 1.0 / math.sqrt(h), g, device).requires_grad_()
    b1 = _uniform((h,), 1.0 / math.sqrt(h), g, device).requires_grad_()
    w3 = _uniform((h, 1), 1.0, g, device).requires_grad_()
    b3 = _uniform((1,), 1.0, g, device).requires_grad_()
    params = [w1, b1, w3, b3]
    opt = torch.optim.Adam(params, lr=p.lr, weight_decay=p.weight_decay)
    ax = graph.apply(f)  # A X is fixed: (A X) W1 = A (X W1)
    lab, unl = is_labeled, ~is_labeled
    eps = 1e-7

    def forward(train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = torch.relu(ax @ w1 + b1)
        feat = hidden
        if train and p.dropout > 0:
            keep = torch.rand(hidden.shape, generator=g, device=device) >= p.dropout
            feat = hidden * keep / (1.0 - p.dropout)
        out = torch.sigmoid(graph.apply(feat @ w3) + b3).squeeze(1)
        return out, hidden

    for _ in range(p.epochs):
        out, _ = forward(True)
        loss = -p.lambda_loss * torch.log((1.0 - out[unl]).clamp_min(eps)).mean()
        if bool(lab.any()):
            loss = loss - torch.log(out[lab].clamp_min(eps)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return forward(False)


class _GCNStrategy(Strategy):
    def requirements(self) -> Requirements:
        return Requirements(embeddings=True, labeled_embeddings=True)

    def _graph(
        self, view: PoolView, budget: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The subset (positions in the view), the GCN outputs and hidden features of its
        nodes and of the labeled nodes."""
        p: GCNParams = self.params
        x = as_tensor(view.require("embeddings", self.component_name), view.device)
        lab = view.labeled_embeddings
        lab_x = as_tensor(lab, view.device) if lab is not None and len(lab) else x[:0]
        n_sub = min(len(x), max(p.subset, budget))
        sub = np.sort(rng.choice(len(x), size=n_sub, replace=False))
        nodes = torch.cat([x[torch.from_numpy(sub).to(view.device)], lab_x])
        is_labeled = torch.zeros(len(nodes), dtype=torch.bool, device=view.device)
        is_labeled[n_sub:] = True
        g = torch.Generator(device=view.device).manual_seed(int(rng.integers(2**63 - 1)))
        out, hidden = train_gcn(l2_normalize(nodes), is_labeled, p, g)
        return sub, out[:n_sub], hidden[:n_sub], hidden[n_sub:]


class UncertainGCN(_GCNStrategy):
    """Query the subset nodes whose GCN labeled-vs-unlabeled output is closest to s_margin."""

    component_name = "uncertain_gcn"
    Params = UncertainGCNParams

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        sub, out, _, _ = self._graph(view, budget, rng)
        closeness = -(out - self.params.s_margin).abs().cpu().numpy()
        return view.unlabeled[sub[top_k(closeness, budget, rng)]]


class CoreGCN(_GCNStrategy):
    """Greedy k-center on the GCN's hidden features, from the labeled nodes."""

    component_name = "core_gcn"
    Params = GCNParams

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        sub, _, feat, lab_feat = self._graph(view, budget, rng)
        centres = FeatureSpace(lab_feat.contiguous()) if len(lab_feat) else None
        picks, _ = kcenter_greedy(FeatureSpace(feat.contiguous()), budget, rng, centres=centres)
        return view.unlabeled[sub[picks]]
