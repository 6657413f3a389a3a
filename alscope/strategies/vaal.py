"""The VAAL family: a VAE and a discriminator trained adversarially on labeled versus
unlabeled inputs, next to the classifier.

* ``vaal``: Sinha, Ebrahimi & Darrell, ICCV 2019, "Variational Adversarial Active
  Learning". The VAE encodes labeled and unlabeled inputs and reconstructs them; the
  discriminator reads the latent mean and learns **labeled = 1, unlabeled = 0**; the VAE
  is also trained to make the discriminator call *every* sample labeled. The query takes
  the unlabeled samples the discriminator finds *least* labeled-looking. (DeepAL+'s port
  gives the discriminator the same target for both sets, so it learns nothing.)
* ``ta_vaal``: Kim, Song, Kim, Kim & Choi, CVPR 2021, "Task-Aware Variational
  Adversarial Active Learning". Adds Learning Loss's ranked loss prediction (trained on
  the classifier with the margin ranking loss); its squashed output ``r = sigmoid(l̂)``
  conditions the VAE's decoder and the discriminator (``[z, r]``), so the query is aware
  of the task model's expected loss.
* ``sraal``: Zhang, Li, Yang, Wang, Zha & Huang, CVPR 2020, "State-Relabeling
  Adversarial Active Learning". The generator also classifies the labeled samples from
  the latent code (its supervised target learner), and the discriminator's target for an
  unlabeled sample is relabeled with the online uncertainty indicator of the classifier's
  prediction: ``1 - OUI(p)`` instead of 0, where ``OUI(p) = 1 - max(p) x minVar(p) /
  Var(p)`` and ``minVar(p)`` is the least variance a distribution with the same top
  probability can have (the rest spread evenly). Confident unlabeled samples look
  labeled; uncertain ones keep a target near 0 and are queried first.

One *adversarial iteration* is ``vae_steps`` VAE updates and ``adversary_steps``
discriminator updates on a labeled batch and an unlabeled batch of the same size drawn
from the pool; the hooks step the VAE and the discriminator with their own Adam
optimisers. Each training batch runs one (after the classifier's step, on that batch).
VAAL's code runs ``num_images x train_epochs // batch_size`` iterations per cycle,
``num_images`` being the whole training set, so the adversarial part gets as many
updates at 100 labels as at 10,000; tied to the classifier's batches it would get two
per epoch at 100 labels and batch 64. So the hooks top up: after each epoch they run
adversarial-only iterations (labeled batches of their own, from the fit's generator)
until ``(epoch + 1) / epochs`` of the cycle's target is reached, the target being
``adversarial_iterations`` or, unset, the official count capped at
``max_adversarial_iterations``. Spreading the top-up over the epochs keeps the VAE and
discriminator training next to the classifier (TA-VAAL's and SRAAL's conditioning reads
the classifier of that epoch), needs no engine change and survives early stopping.

The VAE fits the inputs: an MLP over feature vectors (tabular data, text in frozen
mode) or a small convolutional VAE over ``(C, H, W)`` images. Token inputs (dicts) need
the frozen text mode.

Losses are averaged per element (reconstruction MSE and KL both means), so that the
reconstruction, KL and adversarial terms keep comparable scales for any input size;
VAAL's code sums the KL, which then dominates.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal, cast

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from alscope.components import Params
from alscope.data.base import Batch, DataSource
from alscope.engine.hooks import BatchContext, FitContext, TrainingHooks
from alscope.errors import ModelError
from alscope.models.base import Backbone, BackboneOutput
from alscope.strategies._features import eval_forward, probe
from alscope.strategies.base import PoolView, Requirements, ScoringStrategy
from alscope.strategies.learning_loss import LearningLossParams, LossPredictionHooks

Variant = Literal["vaal", "ta_vaal", "sraal"]


# -- networks -----------------------------------------------------------------------------


class VectorVAE(nn.Module):
    """MLP VAE over flattened feature vectors; ``cond_dim`` extra inputs to the decoder."""

    def __init__(self, in_dim: int, z_dim: int, width: int, cond_dim: int = 0, n_classes: int = 0) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(in_dim, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU())
        self.mu = nn.Linear(width, z_dim)
        self.logvar = nn.Linear(width, z_dim)
        self.decoder = nn.Sequential(
            nn.Linear(z_dim + cond_dim, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, in_dim),
        )
        self.classifier = nn.Linear(z_dim, n_classes) if n_classes else None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x.flatten(1).float())
        return self.mu(h), self.logvar(h).clamp(-10.0, 10.0)

    def decode(self, z: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        return self.decoder(z).view(shape)


class ConvVAE(nn.Module):
    """Small convolutional VAE over ``(C, H, W)`` images: stride-2 convolutions down to
    about 4 x 4 (at most 4 of them), a linear latent, mirrored transposed convolutions,
    resized to the input size when odd sizes do not divide."""

    def __init__(
        self, shape: tuple[int, int, int], z_dim: int, width: int, cond_dim: int = 0, n_classes: int = 0
    ) -> None:
        super().__init__()
        c, h, w = shape
        self.shape = shape
        n_down = 1
        while n_down < 4 and min(h, w) // 2 ** (n_down + 1) >= 4:
            n_down += 1
        chans = [min(width, 32 * 2**i) for i in range(n_down)]
        enc: list[nn.Module] = []
        prev = c
        for ch in chans:
            enc += [nn.Conv2d(prev, ch, 4, 2, 1), nn.ReLU()]
            prev = ch
        self.encoder = nn.Sequential(*enc)
        with torch.no_grad():
            self.enc_shape = tuple(self.encoder(torch.zeros(1, c, h, w)).shape[1:])
        flat = int(torch.tensor(self.enc_shape).prod())
        self.mu = nn.Linear(flat, z_dim)
        self.logvar = nn.Linear(flat, z_dim)
        self.fc = nn.Linear(z_dim + cond_dim, flat)
        dec: list[nn.Module] = []
        for i in range(n_down - 1, 0, -1):
            dec += [nn.ConvTranspose2d(chans[i], chans[i - 1], 4, 2, 1), nn.ReLU()]
        dec.append(nn.ConvTranspose2d(chans[0], c, 4, 2, 1))
        self.decoder = nn.Sequential(*dec)
        self.classifier = nn.Linear(z_dim, n_classes) if n_classes else None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x.float()).flatten(1)
        return self.mu(h), self.logvar(h).clamp(-10.0, 10.0)

    def decode(self, z: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        h = F.relu(self.fc(z)).view(len(z), *self.enc_shape)
        out = self.decoder(h)
        if out.shape[2:] != shape[2:]:
            out = F.interpolate(out, size=tuple(shape[2:]), mode="bilinear", align_corners=False)
        return out


class Discriminator(nn.Module):
    """VAAL's discriminator: ``[z, cond] -> 512 -> 512 -> 1`` logit of "labeled"."""

    def __init__(self, in_dim: int, width: int = 512) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(1)


VAE = VectorVAE | ConvVAE


def build_vae(inputs: Any, z_dim: int, width: int, cond_dim: int, n_classes: int, who: str) -> VAE:
    """The VAE that fits these inputs (a sample batch): MLP for vectors, conv for images."""
    if isinstance(inputs, dict) or not isinstance(inputs, torch.Tensor):
        raise ModelError(
            f"strategy {who!r} trains a VAE on the raw inputs, which here are token sequences; "
            f"use the frozen text mode of the text backbone (inputs become cached embedding "
            f"vectors) or a strategy that reads the classifier only"
        )
    if inputs.dim() == 4:
        c, h, w = (int(s) for s in inputs.shape[1:])
        return ConvVAE((c, h, w), z_dim, width, cond_dim, n_classes)
    in_dim = int(inputs[0].numel())
    return VectorVAE(in_dim, z_dim, width, cond_dim, n_classes)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)), averaged over the batch and the latent dimensions."""
    return -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())


def online_uncertainty(probs: torch.Tensor) -> torch.Tensor:
    """SRAAL's online uncertainty indicator ``1 - max(p) x minVar(p) / Var(p)`` in
    ``[0, 1]``: 0 for a one-hot prediction, near 1 when the top classes tie, 1 for a
    uniform one (where both variances vanish). For a given top probability it grows as
    the rest of the mass concentrates on fewer rivals."""
    probs = probs.float()
    c = probs.shape[1]
    if c < 2:
        return torch.zeros(len(probs), device=probs.device)
    top = probs.max(dim=1).values
    var = ((probs - 1.0 / c) ** 2).mean(dim=1)
    min_var = ((top - 1.0 / c) ** 2 + (c - 1) * ((1 - top) / (c - 1) - 1.0 / c) ** 2) / c
    ratio = torch.where(var > 1e-12, min_var / var.clamp_min(1e-12), torch.zeros_like(var))
    return (1 - ratio.clamp(max=1.0) * top).clamp(0.0, 1.0)


# -- parameters ---------------------------------------------------------------------------


class VAALParams(Params):
    z_dim: int = Field(default=32, ge=1, description="latent size of the VAE")
    width: int = Field(
        default=256, ge=8, description="hidden width of the MLP VAE (channel cap of the conv VAE)"
    )
    beta: float = Field(default=1.0, ge=0.0, description="weight of the VAE's KL term")
    adversary_weight: float = Field(default=1.0, ge=0.0, description="weight of the VAE's adversarial term")
    vae_steps: int = Field(default=2, ge=1, description="VAE updates per adversarial iteration (VAAL: 2)")
    adversary_steps: int = Field(
        default=1, ge=1, description="discriminator updates per adversarial iteration (VAAL: 1)"
    )
    vae_lr: float = Field(default=5e-4, gt=0)
    discriminator_lr: float = Field(default=5e-4, gt=0)
    adversarial_iterations: int | None = Field(
        default=None,
        ge=0,
        description="adversarial iterations per cycle (each vae_steps VAE and adversary_steps "
        "discriminator updates); the training batches count, adversarial-only iterations after "
        "each epoch make up the rest; unset: VAAL's pool size x epochs // batch size, capped at "
        "max_adversarial_iterations; 0: one per training batch only",
    )
    max_adversarial_iterations: int = Field(
        default=5000,
        ge=0,
        description="cap of the derived (official) iteration count, so a CPU run stays short",
    )


class TAVAALParams(VAALParams):
    ranking_weight: float = Field(
        default=1.0, ge=0.0, description="lambda of the loss-prediction ranking loss"
    )
    margin: float = Field(default=1.0, ge=0.0, description="margin of the ranking loss")
    epoch_loss: int | None = Field(
        default=None, ge=0, description="epoch from which the loss module stops reaching the backbone"
    )
    epoch_loss_fraction: float = Field(default=0.6, ge=0.0, le=1.0)


class SRAALParams(VAALParams):
    sti_weight: float = Field(
        default=1.0, ge=0.0, description="weight of the generator's classification loss"
    )


# -- hooks --------------------------------------------------------------------------------


def _endless_labeled(fit: FitContext, batch_size: int) -> Iterator[Batch]:
    """Endless shuffled training-transform batches of the labeled set for the top-up
    iterations (full batches, as VAAL's ``drop_last`` loader), from the hooks' generator."""
    assert fit.source is not None
    labeled = np.asarray(fit.labeled_indices, dtype=np.int64)
    size = max(1, min(batch_size, len(labeled)))
    while True:
        for batch in fit.source.batches(
            labeled, batch_size=size, train=True, shuffle=True, generator=fit.generator, drop_last=True
        ):
            yield batch.to(fit.device)


class AdversarialHooks(TrainingHooks):
    """VAE + discriminator on labeled vs unlabeled inputs (and TA-VAAL's ranker)."""

    self_trained = ("vae", "discriminator")

    def __init__(self, params: VAALParams, variant: Variant, who: str) -> None:
        self.params, self.variant, self.who = params, variant, who
        self.ranker: LossPredictionHooks | None = None
        if isinstance(params, TAVAALParams):
            self.ranker = LossPredictionHooks(
                LearningLossParams(
                    weight=params.ranking_weight,
                    margin=params.margin,
                    epoch_loss=params.epoch_loss,
                    epoch_loss_fraction=params.epoch_loss_fraction,
                ),
                who,
            )
        self.wants_features = self.ranker is not None
        self.sample_inputs: Any = None
        self.n_classes = 0
        #: per epoch: mean VAE loss (reconstruction + KL, labeled and unlabeled) and mean
        #: discriminator loss over its batches
        self.vae_losses: list[float] = []
        self.discriminator_losses: list[float] = []
        self._sums: list[list[torch.Tensor]] = []
        #: adversarial iterations this fit (training batches + top-up) and this fit's target
        self.iterations = 0
        self.extra_iterations = 0
        self.target_iterations = 0
        self._unlabeled: Any = None
        self._labeled: Any = None
        self._optimizers: dict[str, torch.optim.Optimizer] = {}

    @property
    def cond_dim(self) -> int:
        return 1 if self.ranker is not None else 0

    def bind(self, model: Backbone, source: DataSource) -> None:
        found = probe(model, source, self.who, features=self.ranker is not None)
        self.sample_inputs, self.n_classes = found.inputs, found.n_classes
        build_vae(self.sample_inputs, 1, 8, 0, 0, self.who)  # refuse token inputs before training
        if self.ranker is not None:
            self.ranker.feature_dims = found.feature_dims

    def modules(self) -> dict[str, nn.Module]:
        if self.sample_inputs is None:
            raise RuntimeError("AdversarialHooks.bind(model, source) must run before modules()")
        p = self.params
        n_cls = self.n_classes if self.variant == "sraal" else 0
        out: dict[str, nn.Module] = {
            "vae": build_vae(self.sample_inputs, p.z_dim, p.width, self.cond_dim, n_cls, self.who),
            "discriminator": Discriminator(p.z_dim + self.cond_dim),
        }
        if self.ranker is not None:
            out.update(self.ranker.modules())
        return out

    def on_fit_start(self, fit: FitContext) -> None:
        p = self.params
        self._optimizers = {
            "vae": torch.optim.Adam(fit.modules["vae"].parameters(), lr=p.vae_lr),
            "discriminator": torch.optim.Adam(
                fit.modules["discriminator"].parameters(), lr=p.discriminator_lr
            ),
        }
        batch_size = fit.config.batch_size if fit.config is not None else 64
        self._unlabeled = fit.unlabeled_batches(batch_size)
        self._labeled = _endless_labeled(fit, batch_size) if len(fit.labeled_indices) else None
        self.target_iterations = self.planned_iterations(fit)
        self.iterations = self.extra_iterations = 0
        self.vae_losses, self.discriminator_losses, self._sums = [], [], []
        if self.ranker is not None:
            self.ranker.on_fit_start(fit)

    def planned_iterations(self, fit: FitContext) -> int:
        """The cycle's adversarial iterations: ``adversarial_iterations`` or VAAL's
        ``num_images x train_epochs // batch_size`` (whole pool, configured epochs), capped
        at ``max_adversarial_iterations``; 0 when nothing is unlabeled."""
        p = self.params
        if self._unlabeled is None:
            return 0
        if p.adversarial_iterations is not None:
            return p.adversarial_iterations
        cfg = fit.config
        epochs = cfg.epochs if cfg is not None else fit.epochs
        batch_size = cfg.batch_size if cfg is not None else 64
        pool = len(fit.source) if fit.source is not None else 0
        pool = max(pool, len(fit.labeled_indices) + len(fit.unlabeled_indices))
        return min(pool * epochs // max(1, batch_size), p.max_adversarial_iterations)

    def extra_loss(self, batch: BatchContext) -> torch.Tensor | None:
        return self.ranker.extra_loss(batch) if self.ranker is not None else None

    def on_epoch_end(self, epoch: int, fit: FitContext) -> None:
        self._top_up(epoch, fit)
        if self._sums:
            vae_loss, d_loss = torch.stack([torch.stack(pair) for pair in self._sums]).mean(0).tolist()
            self.vae_losses.append(vae_loss)
            self.discriminator_losses.append(d_loss)
            self._sums = []
        if self.ranker is not None:
            self.ranker.on_epoch_end(epoch, fit)

    def _cond(self, output: BackboneOutput, modules: dict[str, nn.Module]) -> torch.Tensor | None:
        if self.ranker is None:
            return None
        with torch.no_grad():
            return torch.sigmoid(self.ranker.predict(output, modules, detach=True).float()).unsqueeze(1)

    @staticmethod
    def _cat(z: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        return z if cond is None else torch.cat([z, cond.to(z.dtype)], dim=1)

    def _vae_loss(
        self, vae: VAE, x: torch.Tensor, cond: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ELBO terms of one batch and its latent mean."""
        mu, logvar = vae.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        recon = vae.decode(self._cat(z, cond), x.shape)
        loss = F.mse_loss(recon, x.float()) + self.params.beta * kl_divergence(mu, logvar)
        return loss, mu

    def on_batch_end(self, batch: BatchContext) -> None:
        if self._unlabeled is None:
            return
        x_l = batch.inputs
        if not isinstance(x_l, torch.Tensor):
            raise ModelError(f"strategy {self.who!r} needs tensor inputs, got {type(x_l).__name__}")
        self._iteration(batch.fit, x_l.float(), batch.targets, self._cond(batch.output, batch.fit.modules))

    def _top_up(self, epoch: int, fit: FitContext) -> None:
        """Adversarial-only iterations until ``(epoch + 1) / epochs`` of the target are done."""
        if self._unlabeled is None or self._labeled is None:
            return
        due = -(-self.target_iterations * (epoch + 1) // max(1, fit.epochs))  # ceil
        while self.iterations < due:
            batch = next(self._labeled)
            x_l = batch.inputs
            if not isinstance(x_l, torch.Tensor):
                raise ModelError(f"strategy {self.who!r} needs tensor inputs, got {type(x_l).__name__}")
            y_l = batch.targets if fit.targets is None else fit.targets[batch.indices]
            cond_l = None
            if self.ranker is not None:
                with torch.no_grad():
                    cond_l = self._cond(eval_forward(fit.model, x_l, features=True), fit.modules)
            self.extra_iterations += 1
            self._iteration(fit, x_l.float(), y_l.to(fit.device), cond_l)

    def _iteration(
        self, fit: FitContext, x_l: torch.Tensor, y_l: torch.Tensor, cond_l: torch.Tensor | None
    ) -> None:
        """One adversarial iteration on this labeled batch and the next unlabeled one."""
        assert self._unlabeled is not None
        modules = fit.modules
        vae, disc = cast(VAE, modules["vae"]), modules["discriminator"]
        x_u = next(self._unlabeled).inputs.float()
        cond_u = None
        target_u = torch.zeros(len(x_u), device=x_u.device)
        if self.ranker is not None or self.variant == "sraal":
            with torch.no_grad():
                out_u = eval_forward(fit.model, x_u, features=self.ranker is not None)
                cond_u = self._cond(out_u, modules)
                if self.variant == "sraal":
                    target_u = 1.0 - online_uncertainty(torch.softmax(out_u.logits.float(), dim=1))
        ones_l = torch.ones(len(x_l), device=x_l.device)
        ones_u = torch.ones(len(x_u), device=x_u.device)
        p = self.params
        for _ in range(p.vae_steps):
            loss_l, mu_l = self._vae_loss(vae, x_l, cond_l)
            loss_u, mu_u = self._vae_loss(vae, x_u, cond_u)
            fool = F.binary_cross_entropy_with_logits(
                disc(self._cat(mu_l, cond_l)), ones_l
            ) + F.binary_cross_entropy_with_logits(disc(self._cat(mu_u, cond_u)), ones_u)
            total = loss_l + loss_u + p.adversary_weight * fool
            if isinstance(p, SRAALParams) and vae.classifier is not None:
                total = total + p.sti_weight * F.cross_entropy(vae.classifier(mu_l), y_l)
            self._optimizers["vae"].zero_grad(set_to_none=True)
            total.backward()
            self._optimizers["vae"].step()
        with torch.no_grad():
            mu_l = vae.encode(x_l)[0]
            mu_u = vae.encode(x_u)[0]
        for _ in range(p.adversary_steps):
            d_loss = F.binary_cross_entropy_with_logits(
                disc(self._cat(mu_l, cond_l)), ones_l
            ) + F.binary_cross_entropy_with_logits(disc(self._cat(mu_u, cond_u)), target_u)
            self._optimizers["discriminator"].zero_grad(set_to_none=True)
            d_loss.backward()
            self._optimizers["discriminator"].step()
        self.iterations += 1
        self._sums.append([(loss_l + loss_u).detach(), d_loss.detach()])

    def labeled_probability(
        self, inputs: Any, output: BackboneOutput, modules: dict[str, nn.Module]
    ) -> torch.Tensor:
        """The discriminator's probability that each sample is labeled."""
        if not isinstance(inputs, torch.Tensor):
            build_vae(inputs, 1, 8, 0, 0, self.who)  # raises the token-input error
        mu = cast(VAE, modules["vae"]).encode(inputs.float())[0]
        return torch.sigmoid(modules["discriminator"](self._cat(mu, self._cond(output, modules))))

    def pool_batch_outputs(
        self, inputs: Any, output: BackboneOutput, modules: dict[str, nn.Module]
    ) -> dict[str, torch.Tensor]:
        return {"labeled_probability": self.labeled_probability(inputs, output, modules)}


# -- strategies ---------------------------------------------------------------------------


class VAAL(ScoringStrategy):
    """Queries the unlabeled samples the discriminator finds least likely to be labeled."""

    Params = VAALParams
    component_name = "vaal"
    variant: Variant = "vaal"

    def requirements(self) -> Requirements:
        return Requirements(extra_outputs=("labeled_probability",))

    def training_hooks(self) -> AdversarialHooks:
        return AdversarialHooks(self.params, self.variant, self.component_name)

    def score(self, view: PoolView) -> torch.Tensor:
        return -view.require("labeled_probability", self.component_name)


class TAVAAL(VAAL):
    Params = TAVAALParams
    component_name = "ta_vaal"
    variant: Variant = "ta_vaal"


class SRAAL(VAAL):
    Params = SRAALParams
    component_name = "sraal"
    variant: Variant = "sraal"
