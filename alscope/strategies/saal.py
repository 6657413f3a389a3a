"""SAAL: sharpness-aware active learning (Kim et al., ICML 2023: *SAAL: sharpness-aware
active learning*; official code ``YoonyeongKim/SAAL``, ``max_sharpness_acquisition_pseudo``).

Each unlabeled sample's loss at its predicted label ``yhat`` is taken after the weight
perturbation that (to first order) increases it most within radius ``rho``, for that
sample alone (the authors score with ``pool_batch_size = 1``). As in their code the
perturbation is the adaptive (ASAM) one:

    g = grad_w CE(f_w(x), yhat)
    e = rho * w^2 * g / | |w| * g |_2        (elementwise products, all trainable weights)
    score(x) = CE(f_{w+e}(x), yhat)                     ("max", the authors' default)
             = CE(f_{w+e}(x), yhat) - CE(f_w(x), yhat)  ("diff")

``adaptive=False`` uses SAM's ``e = rho * g / |g|`` (the paper's notation). With
``diversity`` (the authors' default ``Max_Diversity``) the batch is k-means++ seeding over
the one-dimensional scores, the first pick the largest score, later ones drawn by the
squared score difference to the nearest pick; without it the top scores are taken.

Per-sample gradients and the perturbed losses are computed together with ``torch.func``
(``vmap`` over one sample's gradient, perturbation and second loss) in chunks, the model in
eval mode; memory is ``chunk`` copies of the parameters.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from alscope.components import Params
from alscope.strategies._distances import FeatureSpace, kmeans_pp
from alscope.strategies._pool_model import eval_mode
from alscope.strategies.base import PoolView, Requirements, ScoringStrategy, top_k
from alscope.strategies.data_diet import functional_loss, grad_chunk, predicted_labels


class SAALParams(Params):
    rho: float = Field(
        default=0.05, gt=0.0, description="radius of the weight perturbation (the authors' rho)"
    )
    adaptive: bool = Field(
        default=True, description="ASAM's w^2-scaled perturbation as the authors' code; False: SAM's"
    )
    mode: Literal["max", "diff"] = Field(
        default="max", description="max: the perturbed loss; diff: perturbed minus original loss"
    )
    diversity: bool = Field(default=True, description="k-means++ seeding over the scores (Max_Diversity)")
    chunk: int | None = Field(
        default=None, ge=1, description="samples per vmap (default: per-sample gradients within 256 MiB)"
    )


def sharpness_scores(
    model: torch.nn.Module, inputs: Any, rho: float, adaptive: bool, diff: bool
) -> torch.Tensor:
    """Each row's loss at its predicted label after its own worst-case weight step, ``(B,)``."""
    from torch.func import grad_and_value, vmap

    params, loss = functional_loss(model)

    def one(p: dict[str, torch.Tensor], x: Any, y: torch.Tensor) -> torch.Tensor:
        g, base = grad_and_value(loss)(p, x, y)
        scaled = {k: (p[k].abs() * g[k] if adaptive else g[k]) for k in g}
        norm = torch.sqrt(sum(v.square().sum() for v in scaled.values()))
        scale = rho / (norm + 1e-12)
        moved = {k: p[k] + scale * (p[k].abs() * scaled[k] if adaptive else scaled[k]) for k in p}
        perturbed = loss(moved, x, y)
        return perturbed - base if diff else perturbed

    return vmap(one, in_dims=(None, 0, 0))(params, inputs, predicted_labels(model, inputs))


class SAAL(ScoringStrategy):
    """Max-sharpness of the pseudo-labelled loss, diversified by k-means++ on the scores."""

    Params = SAALParams

    def requirements(self) -> Requirements:
        return Requirements(model=True, pool_inputs=True)

    def score(self, view: PoolView) -> torch.Tensor:
        who = self.component_name or "saal"
        p = self.params
        model = view.require_model(who)
        parts = []
        with eval_mode(model):
            for inputs in view.input_batches(who, grad_chunk(model, p.chunk)):
                parts.append(
                    sharpness_scores(model, inputs, p.rho, p.adaptive, p.mode == "diff").detach().cpu()
                )
        return torch.cat(parts) if parts else torch.empty(0)

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        scores = self.score(view).float()
        if not self.params.diversity:
            return view.unlabeled[top_k(scores.numpy(), budget, rng)]
        first = int(top_k(scores.numpy(), 1, rng)[0])
        picks = kmeans_pp(FeatureSpace(scores[:, None].to(view.device)), budget, rng, first=first)
        return view.unlabeled[np.asarray(picks, dtype=np.int64)]
