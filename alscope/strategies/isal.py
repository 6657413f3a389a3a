"""ISAL: influence selection for active learning, on the last layer.

Liu et al., ICCV 2021: *Influence selection for active learning*; official code
github.com/dragonlzm/ISAL (``classification/src/utils.py``: ``s_test`` and
``calc_influence_funtion``). The influence of adding an unlabeled sample ``z`` (with its
pseudo-label, the predicted class) on the loss is ``-grad L(z)^T s_test / N`` with
``s_test ~ H^-1 v``, ``v`` the summed loss gradient of a reference set (here the labeled
set, with its true labels) and ``H`` the Hessian of the training loss, estimated by
LiSSA: ``h <- v + (1 - damp) h - H_i h / scale`` over ``depth`` labeled samples ``i``,
restarted ``repeats`` times and averaged. The samples with the *lowest* influence (the
largest ``grad L(z)^T s_test``, the largest expected loss reduction) are queried.

Restricted to the last layer's weight ``W`` (``C x D``; the official code takes every
weight of at least two dimensions, no biases), everything has a closed form on the
embeddings ``h`` and probabilities ``p``: ``grad L = (p - e_y) h^T``; a sample's Hessian
applied to ``V`` is ``(diag(p) - p p^T) V h h^T``. So ``v`` and the LiSSA recursion cost
``O(L x C x D)`` and ``O(depth x repeats x C x D)``, and each candidate's score
``(p - e_yhat)^T S h`` costs ``O(C x D)``: no autograd, no model needed.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from alscope.components import Params
from alscope.strategies._distances import BLOCK_ELEMENTS, as_tensor, gradient_factors
from alscope.strategies.base import PoolView, Requirements, Strategy, top_k


class ISALParams(Params):
    depth: int = Field(default=250, ge=1, description="LiSSA recursion steps per estimate (official img_num)")
    repeats: int = Field(default=4, ge=1, description="LiSSA estimates averaged (official: 4)")
    damp: float = Field(default=0.01, ge=0.0, lt=1.0, description="LiSSA damping (official 0.01)")
    scale: float = Field(default=1e4, gt=0.0, description="LiSSA scale (official 1e4)")


def hessian_vector(v: torch.Tensor, p: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The CE Hessian of one sample with respect to ``W`` applied to ``v`` ``(C, D)``:
    ``(diag(p) - p p^T) v h h^T`` (``p`` its probabilities, ``h`` its embedding)."""
    u = v @ h
    a = p * u - p * (p @ u)
    return torch.outer(a, h)


def lissa(
    v: torch.Tensor,
    probs: torch.Tensor,
    h: torch.Tensor,
    order: np.ndarray,
    damp: float,
    scale: float,
) -> torch.Tensor:
    """The official recursion ``h_est <- v + (1 - damp) h_est - H_i h_est / scale`` over
    the rows ``order`` ``(repeats, depth)`` of the labeled set, averaged over repeats."""
    total = torch.zeros_like(v)
    for run in order:
        est = v.clone()
        for i in run.tolist():
            est = v + (1.0 - damp) * est - hessian_vector(est, probs[i], h[i]) / scale
        total += est
    return total / len(order)


def influence_scores(s_test: torch.Tensor, probs: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``grad L(z, yhat)^T s_test = (p - e_yhat)^T S h`` of every row, in blocks."""
    out = torch.empty(len(probs), dtype=probs.dtype, device=probs.device)
    step = max(1, BLOCK_ELEMENTS // max(1, h.shape[1] + 2 * probs.shape[1]))
    for r0 in range(0, len(probs), step):
        a = gradient_factors(probs[r0 : r0 + step])  # p - e_yhat
        out[r0 : r0 + step] = (a * (h[r0 : r0 + step] @ s_test.T)).sum(dim=1)
    return out


class ISAL(Strategy):
    """Largest expected reduction of the labeled loss by influence functions on the last
    layer (LiSSA inverse-Hessian-vector product, pseudo-labeled candidate gradients)."""

    component_name = "isal"
    Params = ISALParams

    def requirements(self) -> Requirements:
        return Requirements(probs=True, embeddings=True, labeled_embeddings=True, labeled_probs=True)

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        who, p = self.component_name, self.params
        probs = as_tensor(view.require("probs", who), view.device)
        h = as_tensor(view.require("embeddings", who), view.device)
        known = view.labeled_known(who)
        if not len(known):  # no labeled loss to reduce: every influence is 0
            return view.unlabeled[top_k(np.zeros(len(probs)), budget, rng)]
        rows = torch.from_numpy(known)
        lab_p = as_tensor(view.require("labeled_probs", who)[rows], view.device)
        lab_h = as_tensor(view.require("labeled_embeddings", who)[rows], view.device)
        y = torch.from_numpy(np.asarray(view.labeled_targets)[known].astype(np.int64)).to(view.device)
        residual = lab_p.clone()
        residual[torch.arange(len(y), device=view.device), y] -= 1.0
        v = residual.T @ lab_h  # summed labeled-loss gradient w.r.t. W, (C, D)
        # each repeat walks the labeled set in a fresh random order (cycling when it is short)
        order = np.stack(
            [
                np.concatenate([rng.permutation(len(known)) for _ in range(-(-p.depth // len(known)))])[
                    : p.depth
                ]
                for _ in range(p.repeats)
            ]
        )
        s_test = lissa(v, lab_p, lab_h, order, p.damp, p.scale)
        scores = influence_scores(s_test, probs, h).cpu().numpy()
        return view.unlabeled[top_k(scores, budget, rng)]
