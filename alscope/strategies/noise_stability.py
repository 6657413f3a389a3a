"""Noise stability: how much do a sample's predictions move when the weights are shaken?

Li et al., AAAI 2024: *Deep active learning via noise stability*. ``K`` noisy copies of
the trained model are drawn; in each, every module's ``weight`` gets Gaussian noise
scaled to that weight's norm, ``W + noise_scale * |W| / |Z| * Z`` with ``Z ~ N(0, I)``
(Frobenius norms, as the authors' ``add_noise_to_weights``, BatchNorm and embedding
weights included, biases not). A sample's feature is the concatenation over the copies
of its softmax deviation ``(p_k(x) - p(x)) / |p(x)|``, ``(U, K*C)``; the batch is greedy
k-center over these features started from the origin (the first pick is the largest
deviation, as the authors' ``kcenter_greedy`` with ``mu = 0`` does), which joins
uncertainty (large deviations) and diversity (different directions).

Every copy is one forward pass over the pool in eval mode (no input gradients, so text
backbones work whether their inputs are token ids or embeddings); the noise is drawn on
the CPU from a generator seeded by the cycle's ``rng`` (the same noise on every device).
Memory is ``O(U x K x C)`` for the features plus one copy of the model.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from pydantic import Field
from torch import nn

from alscope.components import Params
from alscope.engine.trainer import autocast
from alscope.strategies._distances import FeatureSpace, kcenter_greedy
from alscope.strategies._pool_model import eval_mode
from alscope.strategies.base import PoolView, Requirements, Strategy


class NoiseStabilityParams(Params):
    n_sampling: int = Field(
        default=30, ge=1, description="noisy copies of the model (the authors' -k; 30 in their runs)"
    )
    noise_scale: float = Field(
        default=0.001, gt=0.0, description="noise norm relative to each weight's norm (NOISE_SCALE)"
    )
    batch_size: int | None = Field(
        default=None, ge=1, description="pool samples per forward pass (default: the inference batch size)"
    )


def noisy_weights(model: nn.Module) -> list[nn.Parameter]:
    """The ``weight`` parameter of every module that has one (what the authors perturb)."""
    found = (getattr(m, "weight", None) for m in model.modules())
    return [w for w in found if isinstance(w, nn.Parameter)]


@torch.no_grad()
def add_weight_noise(weights: list[nn.Parameter], scale: float, generator: torch.Generator) -> None:
    """``W += scale * |W| / |Z| * Z`` for each weight, ``Z`` standard normal."""
    for w in weights:
        z = torch.randn(w.shape, generator=generator).to(w.device, w.dtype)
        w.add_(z * (scale * w.norm() / z.norm().clamp_min(1e-30)))


@torch.no_grad()
def pool_probs(model: nn.Module, view: PoolView, who: str, batch_size: int | None) -> torch.Tensor:
    """Softmax probabilities of the unlabeled pool, ``(U, C)`` on the view's device."""
    amp = view.pool_inputs is not None and view.pool_inputs.amp
    parts = []
    for inputs in view.input_batches(who, batch_size):
        with autocast(view.device, amp):
            logits = model(inputs).logits
        parts.append(torch.softmax(logits.float(), dim=1))
    return torch.cat(parts) if parts else torch.empty(0, view.n_classes, device=view.device)


def deviation_features(
    model: nn.Module,
    view: PoolView,
    who: str,
    n_sampling: int,
    scale: float,
    seed: int,
    batch_size: int | None,
) -> torch.Tensor:
    """``(U, K*C)``: per noisy copy, ``(p_k - p) / |p|`` of every unlabeled sample."""
    generator = torch.Generator().manual_seed(seed)
    with eval_mode(model):
        clean = pool_probs(model, view, who, batch_size)
        norm = clean.norm(dim=1, keepdim=True).clamp_min(1e-12)
        c = clean.shape[1]
        feats = torch.empty(len(clean), n_sampling * c, device=clean.device)
        noisy = copy.deepcopy(model).eval()
        weights, originals = noisy_weights(noisy), [w.detach().clone() for w in noisy_weights(noisy)]
        for k in range(n_sampling):
            with torch.no_grad():
                for w, w0 in zip(weights, originals, strict=True):
                    w.copy_(w0)
            add_weight_noise(weights, scale, generator)
            feats[:, k * c : (k + 1) * c] = (pool_probs(noisy, view, who, batch_size) - clean) / norm
    return feats


class NoiseStability(Strategy):
    """Greedy k-center, from the origin, over the softmax deviations under weight noise."""

    Params = NoiseStabilityParams

    def requirements(self) -> Requirements:
        return Requirements(model=True, pool_inputs=True)

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        who = self.component_name or type(self).__name__
        p = self.params
        model = view.require_model(who)
        seed = int(rng.integers(0, 2**63 - 1))
        feats = deviation_features(model, view, who, p.n_sampling, p.noise_scale, seed, p.batch_size)
        origin = FeatureSpace(torch.zeros(1, feats.shape[1], device=feats.device))
        picks, _ = kcenter_greedy(FeatureSpace(feats), budget, rng, centres=origin)
        return view.unlabeled[np.asarray(picks, dtype=np.int64)]
