"""ALFA-Mix: active learning by feature mixing.

Parvaneh et al., CVPR 2022: *Active learning by feature mixing*. Each unlabeled
embedding ``z`` is interpolated toward the anchor of every class (the mean labeled
embedding of that class), ``z~ = (1 - alpha) z + alpha z*``; a sample whose predicted
label (through the trained ``classifier``) flips for some anchor is a candidate: its
neighbourhood crosses the decision boundary. The candidates are clustered by k-means on
their L2-normalised embeddings into ``budget`` clusters and the candidate nearest each
centre is queried; if there are fewer candidates than the budget, all are taken and the
rest is drawn at random, as the official code does.

``alpha`` is the official closed-form approximation (``--alpha_closed_form_approx``,
the variant the official README recommends with ``--alpha_cap 0.2``): with ``g`` the
gradient of the cross-entropy loss at ``z`` for its predicted label (computed by
autograd through the classifier, one sample at a time in effect), the optimal ``alpha``
within an L2 ball of radius ``eps |z* - z|`` is
``alpha = eps |z* - z| / |g| * g / (z* - z)`` (element-wise, ``eps = cap / sqrt(D)``), so
``z~ = z + eps |z* - z| g / |g|``. The cap grows by ``alpha_cap`` until it reaches 1 or
more candidates than the budget are found (candidates accumulate over caps).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from alscope.components import Params
from alscope.errors import ModelError
from alscope.strategies._distances import BLOCK_ELEMENTS, as_tensor, kmeans, l2_normalize, select_sequentially
from alscope.strategies._pool_model import eval_mode
from alscope.strategies.base import PoolView, Requirements, Strategy
from alscope.strategies.kmeans import representatives


class AlfaMixParams(Params):
    alpha_cap: float = Field(
        default=0.2,
        gt=0.0,
        le=1.0,
        description="step of the interpolation cap, grown until 1 or enough candidates (official "
        "closed-form setting: 0.2)",
    )
    max_iter: int = Field(default=20, ge=1, description="most Lloyd iterations of the k-means")


def classifier_of(view: PoolView, strategy: str) -> nn.Module:
    """The trained model's last layer (embeddings to logits), or a clear error."""
    clf = getattr(view.require_model(strategy), "classifier", None)
    if not isinstance(clf, nn.Module):
        raise ModelError(f"strategy {strategy!r} needs the trained model's classifier (its last layer)")
    return clf


def class_anchors(lab: torch.Tensor, targets: np.ndarray, n_classes: int) -> torch.Tensor:
    """Mean labeled embedding of each class; a class without labeled samples takes the
    mean of all of them (as the official code)."""
    overall = lab.mean(dim=0)
    anchors = overall.repeat(n_classes, 1)
    y = torch.from_numpy(np.asarray(targets, dtype=np.int64)).to(lab.device)
    counts = torch.bincount(y, minlength=n_classes)[:n_classes]
    sums = torch.zeros(n_classes, lab.shape[1], device=lab.device).index_add_(0, y, lab)
    has = counts > 0
    anchors[has] = sums[has] / counts[has, None]
    return anchors


def loss_gradients(clf: nn.Module, z: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Per-sample gradients of ``CE(clf(z_i), pred_i)`` with respect to ``z_i`` (the rows
    are independent, so the gradient of the summed loss is each row's own)."""
    with torch.enable_grad():
        v = z.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(clf(v), pred, reduction="sum")
        (grad,) = torch.autograd.grad(loss, v)
    return grad.detach()


def flipped(clf: nn.Module, z: torch.Tensor, anchors: torch.Tensor, eps: float, step: int) -> torch.Tensor:
    """Rows of ``z`` whose predicted label changes when mixed toward some anchor with the
    closed-form alpha of cap ``eps`` (``eps`` already divided by ``sqrt(D)``)."""
    out = torch.zeros(len(z), dtype=torch.bool, device=z.device)
    for r0 in range(0, len(z), step):
        u = z[r0 : r0 + step]
        with torch.no_grad():
            pred = clf(u).argmax(dim=1)
        g = loss_gradients(clf, u, pred)
        direction = g / g.norm(dim=1, keepdim=True).clamp_min(torch.finfo(g.dtype).tiny)
        with torch.no_grad():
            for anchor in anchors:
                radius = eps * (anchor[None, :] - u).norm(dim=1, keepdim=True)
                out[r0 : r0 + step] |= clf(u + radius * direction).argmax(dim=1) != pred
    return out


class AlfaMix(Strategy):
    """Candidates whose prediction flips when their embedding is mixed toward a labeled
    class anchor, then k-means over the candidates."""

    component_name = "alfa_mix"
    Params = AlfaMixParams

    def requirements(self) -> Requirements:
        return Requirements(embeddings=True, labeled_embeddings=True, model=True)

    @select_sequentially
    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        who = self.component_name
        clf = classifier_of(view, who)
        device = next(clf.parameters()).device
        z = as_tensor(view.require("embeddings", who), device)
        lab = as_tensor(view.require("labeled_embeddings", who), device)
        if not len(lab):
            raise ModelError(f"strategy {who!r} needs labeled samples for its class anchors")
        known = view.labeled_known(who)
        if len(known):
            targets = np.asarray(view.labeled_targets)[known]
            anchors = class_anchors(lab[torch.from_numpy(known).to(device)], targets, view.n_classes)
        else:  # every labeled answer was out-of-distribution: one anchor, their mean
            anchors = lab.mean(dim=0).repeat(view.n_classes, 1)
        step = max(1, BLOCK_ELEMENTS // max(1, z.shape[1] + view.n_classes))
        candidate = torch.zeros(len(z), dtype=torch.bool, device=device)
        cap, n_steps = 0.0, 0
        with eval_mode(clf):
            while cap < 1.0:
                n_steps += 1
                cap = n_steps * self.params.alpha_cap
                candidate |= flipped(clf, z, anchors, cap / math.sqrt(z.shape[1]), step)
                if int(candidate.sum()) > budget:
                    break
        cand = torch.nonzero(candidate).squeeze(1).cpu().numpy()
        if len(cand) > budget:
            feats = l2_normalize(z[torch.from_numpy(cand).to(device)])
            labels, centres, d2 = kmeans(feats, budget, rng, max_iter=self.params.max_iter)
            chosen = cand[representatives(feats, labels, centres, d2)]
        else:
            rest = np.flatnonzero(~candidate.cpu().numpy())
            chosen = np.concatenate([cand, rng.permutation(rest)[: budget - len(cand)]])
        return view.unlabeled[chosen]
