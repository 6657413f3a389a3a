"""Adversarial margin strategies: how far is each sample from the decision boundary?

Both strategies perturb the *input* of every unlabeled sample until the trained model's
predicted label flips and query the samples that needed the smallest perturbation
(squared L2 norm, smallest first), as DeepAL and DeepAL+ do:

* ``adversarial_bim`` (basic iterative method, Kurakin et al. 2017, as DeepAL's
  ``AdversarialBIM``): steps ``eta += eps * sign(grad_x CE(f(x + eta), yhat))`` that
  raise the loss of the originally predicted label ``yhat``.
* ``dfal`` (Ducoffe & Precioso 2018, *Adversarial active learning for deep networks:
  a margin based approach*): DeepFool (Moosavi-Dezfooli et al., CVPR 2016) steps to
  the linearised nearest boundary ``r = |f_k - f_yhat| / |w_k|^2 w_k`` with
  ``w_k = grad f_k - grad f_yhat`` and ``k`` the class of the nearest boundary.

The pool is processed in batches on the run's device: each iteration is one forward and
one backward pass (BIM) or one forward and one backward pass batched over the ``C``
classes (DeepFool, ``is_grads_batched``) over the samples of the batch whose label has
not flipped yet, so a batch costs at most ``max_iter`` such passes. The model stays in
eval mode (dropout off, BatchNorm on its running statistics), samples are independent of
each other, and the gradients are float32 (no autocast). Inputs must be real-valued
(images, tabular features, the sentence embeddings of a frozen text encoder); token ids
are refused (:func:`~alscope.strategies._pool_model.float_inputs`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from alscope.components import Params
from alscope.strategies._pool_model import eval_mode, float_inputs, logits_of
from alscope.strategies.base import PoolView, Requirements, ScoringStrategy


def _sq_norm(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).square().sum(1)


def attack(
    model: nn.Module,
    x: torch.Tensor,
    max_iter: int,
    step: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Iterate ``delta += step(x_adv, logits, yhat)`` on the rows whose predicted label
    has not flipped yet, at most ``max_iter`` times, where ``x_adv = x + scale * delta``
    requires grad and ``yhat`` is the label predicted on ``x``. Returns the final
    perturbation ``scale * delta`` ``(B, ...)`` (each row's at its flip) and which rows
    flipped ``(B,)``."""
    n = len(x)
    delta = torch.zeros_like(x)
    flipped_all = torch.zeros(n, dtype=torch.bool, device=x.device)
    active = torch.arange(n, device=x.device)
    with torch.no_grad():
        y0 = logits_of(model, x).argmax(1)
    for i in range(max_iter + 1):
        need_grad = i < max_iter
        xa = (x[active] + scale * delta[active]).requires_grad_(need_grad)
        with torch.set_grad_enabled(need_grad):
            out = logits_of(model, xa)
        flipped = out.argmax(1) != y0[active]
        flipped_all[active[flipped]] = True
        if not need_grad or bool(flipped.all()):
            break
        increment = step(xa, out, y0[active]).detach()
        keep = ~flipped
        active = active[keep]
        delta[active] += increment[keep]
    return scale * delta, flipped_all


def bim_distances(model: nn.Module, x: torch.Tensor, eps: float, max_iter: int) -> torch.Tensor:
    """Squared L2 norm of the BIM perturbation that flips each row's predicted label,
    ``(B,)``. A row still unflipped after ``max_iter`` steps gets the norm of one step
    more than the bound allows, ``eps^2 * dim * (max_iter + 1)^2``: it ranks after every
    flipped row."""

    def step(xa: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        (grad,) = torch.autograd.grad(F.cross_entropy(out, y, reduction="sum"), xa)
        return eps * grad.sign()

    delta, flipped = attack(model, x, max_iter, step)
    bound = eps**2 * x[0].numel() * (max_iter + 1) ** 2
    return torch.where(flipped, _sq_norm(delta), torch.full_like(flipped, bound, dtype=x.dtype))


#: floats of class gradients computed in one batched backward pass (256 MiB)
_W_FLOATS = 2**26


def deepfool_step(xa: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One DeepFool step per row: ``(|f_k - f_y| + 1e-4) / |w_k|^2 w_k`` towards the
    linearised boundary nearest in ``|f_k - f_y| / |w_k|``, ``w_k = grad f_k - grad f_y``
    (the 1e-4 as in DeepFool's code). The ``w_k`` of several classes come from one
    batched backward pass (``is_grads_batched``), as many classes at a time as fit
    2^26 floats."""
    b, c = out.shape
    eye = torch.eye(c, device=out.device, dtype=out.dtype)
    f = (out.detach() - out.detach().gather(1, y[:, None])).abs()  # (b, c)
    per = max(1, min(c, _W_FLOATS // max(xa.numel(), 1)))
    rows = torch.arange(b, device=out.device)
    best = torch.full((b,), float("inf"), device=out.device)
    r = torch.zeros_like(xa)
    for k0 in range(0, c, per):
        ks = torch.arange(k0, min(c, k0 + per), device=out.device)
        seeds = eye[ks][:, None, :] - eye[y][None]  # (m, b, c): d(f_k - f_y)/d logits
        (w,) = torch.autograd.grad(
            out, xa, grad_outputs=seeds, is_grads_batched=True, retain_graph=k0 + per < c
        )
        w2 = w.flatten(2).square().sum(2)  # (m, b)
        fk = f[:, ks].T
        value = torch.where((ks[:, None] != y[None]) & (w2 > 0), fk / w2.clamp_min(1e-30).sqrt(), torch.inf)
        low, arg = value.min(0)
        better = low < best
        best = torch.where(better, low, best)
        coef = (fk[arg, rows] + 1e-4) / w2[arg, rows].clamp_min(1e-30)
        step = coef.view(-1, *[1] * (xa.dim() - 1)) * w[arg, rows]
        r = torch.where(better.view(-1, *[1] * (xa.dim() - 1)), step, r)
    return r


def deepfool_distances(model: nn.Module, x: torch.Tensor, max_iter: int, overshoot: float) -> torch.Tensor:
    """Squared L2 norm of each row's DeepFool perturbation ``(1 + overshoot) r_total``,
    ``(B,)``: the accumulated linearised steps until the predicted label flips, or after
    ``max_iter`` steps for a row that has not flipped."""
    delta, _ = attack(model, x, max_iter, deepfool_step, scale=1.0 + overshoot)
    return _sq_norm(delta)


class AdversarialParams(Params):
    max_iter: int = Field(default=50, ge=1, description="perturbation steps per sample at most")
    batch_size: int | None = Field(
        default=None, ge=1, description="pool samples perturbed together (default: the inference batch size)"
    )


class BIMParams(AdversarialParams):
    eps: float = Field(default=0.05, gt=0.0, description="step size of each sign-gradient step (L-inf)")
    max_iter: int = Field(default=100, ge=1, description="perturbation steps per sample at most")


class DFALParams(AdversarialParams):
    overshoot: float = Field(
        default=0.02, ge=0.0, description="DeepFool's overshoot: the perturbation is scaled by 1 + overshoot"
    )


class _Adversarial(ScoringStrategy):
    def requirements(self) -> Requirements:
        return Requirements(model=True, pool_inputs=True)

    def distances(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score(self, view: PoolView) -> torch.Tensor:
        """Minus the squared norm of the label-flipping perturbation: the samples nearest
        the decision boundary are queried first."""
        who = self.component_name or type(self).__name__
        model = view.require_model(who)
        parts = []
        with eval_mode(model):
            for inputs in view.input_batches(who, self.params.batch_size):
                parts.append(self.distances(model, float_inputs(inputs, who).detach()).cpu())
        if not parts:
            return torch.empty(0)
        return -torch.cat(parts)


class AdversarialBIM(_Adversarial):
    """Smallest BIM (sign-gradient) perturbation that flips the predicted label."""

    Params = BIMParams

    def distances(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return bim_distances(model, x, self.params.eps, self.params.max_iter)


class DFAL(_Adversarial):
    """Smallest DeepFool perturbation that flips the predicted label."""

    Params = DFALParams

    def distances(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return deepfool_distances(model, x, self.params.max_iter, self.params.overshoot)
