"""The trainer: epochs over the labeled set with a floor of optimiser steps, optional
early stopping on a held-out part of it, and strategy training hooks.

A fixed number of epochs is a different amount of training for every labeled-set size:
at 100 samples and batch 64, 10 epochs are 20 optimiser steps and the model ends
far from fitting its labels, at 10,000 samples they are 1,570. Uncertainty scores of an
under-fitted model are not informative (entropy then takes most of a query from one
class), so the trainer raises the epochs of a cycle until at least ``min_steps``
batches are trained (``planned_epochs``), the way the BatchBALD code draws at least
5,056 samples per epoch. ``validation_fraction`` holds out part of the labeled set,
checks its accuracy every ``validation_interval`` steps, stops after ``patience``
checks without improvement and restores the best model (BatchBALD, EPIG and VAAL's
codes do this). Every fit ends with an eval-mode pass over the samples trained on,
whose loss and accuracy tell whether the model fits its labels.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from alscope.config import TrainingConfig
from alscope.data.base import DataSource
from alscope.data.splits import random_holdout
from alscope.engine.hooks import BatchContext, FitContext, TrainingHooks
from alscope.engine.inference import infer
from alscope.models.base import Backbone


def build_optimizer(params: Iterator[nn.Parameter] | list, config: TrainingConfig) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainingConfig, total_steps: int = 0, epochs: int | None = None
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The learning-rate schedule; ``linear`` steps per batch over ``total_steps``, the
    others per epoch over ``epochs`` (default ``config.epochs``). When the step floor
    stretches the epochs, the multistep milestones stretch with them, so the schedule
    keeps its shape."""
    epochs = config.epochs if epochs is None else epochs
    if config.scheduler == "linear":
        warmup = int(total_steps * config.warmup_fraction)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if config.scheduler == "multistep":
        stretch = epochs / config.epochs
        milestones = [max(1, round(m * stretch)) for m in config.milestones]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=config.gamma)
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    return None


def optimizer_step(
    loss: torch.Tensor,
    optimizers: list[torch.optim.Optimizer],
    scaler: torch.amp.GradScaler,
    grad_clip: float | None,
    clipped: Iterable[nn.Parameter],
) -> None:
    """One step of every optimiser on ``loss``: gradients cleared, the scaled loss
    backpropagated, the ``clipped`` parameters' gradient norm capped at ``grad_clip``
    (after unscaling), then the steps and the scaler's update."""
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip is not None:
        for opt in optimizers:
            scaler.unscale_(opt)
        nn.utils.clip_grad_norm_(clipped, grad_clip)
    for opt in optimizers:
        scaler.step(opt)
    scaler.update()


def epoch_batches(n: int, batch_size: int) -> tuple[bool, int]:
    """``(drop_last, steps per epoch)`` for ``n`` training samples: a batch of one breaks
    BatchNorm in training mode, so such a tail batch is dropped."""
    drop_last = n % batch_size == 1 and n > 1
    return drop_last, n // batch_size + (0 if drop_last or n % batch_size == 0 else 1)


def planned_epochs(epochs: int, steps_per_epoch: int, min_steps: int) -> int:
    """``epochs``, raised until the fit trains at least ``min_steps`` batches."""
    if steps_per_epoch <= 0:
        return epochs
    return max(epochs, math.ceil(min_steps / steps_per_epoch))


def amp_enabled(config: TrainingConfig, device: torch.device) -> bool:
    return device.type == "cuda" and (config.amp is None or config.amp)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.float16)


@dataclass
class FitResult:
    """What one fit did and how well the model fits what it was trained on.

    Attributes:
        train_time: seconds spent in the training loop (validation checks included).
        final_loss: the objective (cross-entropy plus the hooks' losses, in training
            mode) averaged over the last epoch.
        epochs: epochs run (the step floor may raise them; early stopping may cut them).
        steps: optimiser steps run.
        train_loss: eval-mode cross-entropy on the labeled samples trained on, of the
            model returned (the restored best one under early stopping).
        train_accuracy: eval-mode accuracy on those samples.
        val_accuracy: accuracy on the held-out validation part (NaN without one).
        best_epoch: the epoch whose model was kept (the last one without validation).
        n_train: labeled samples trained on (without the validation part).
    """

    train_time: float
    final_loss: float
    epochs: int
    steps: int = 0
    train_loss: float = float("nan")
    train_accuracy: float = float("nan")
    val_accuracy: float = float("nan")
    best_epoch: int = -1
    n_train: int = 0


#: a fit on at most this many samples is expected to fit them (well-sized networks do)
UNDERFIT_MAX_SAMPLES = 5000
#: ... and is reported as under-fitted below this training accuracy
UNDERFIT_ACCURACY = 0.9


class UnderfitWarning(UserWarning):
    """A cycle's model does not fit its small labeled set: its uncertainty is not to be trusted."""


def fit_metrics(fit: FitResult) -> dict[str, float]:
    """The per-cycle metrics of a fit, as the engine logs them."""
    metrics = {
        "train_time": fit.train_time,
        "train_loss": fit.train_loss,
        "train_accuracy": fit.train_accuracy,
        "train_epochs": float(fit.epochs),
        "train_steps": float(fit.steps),
    }
    if not math.isnan(fit.val_accuracy):
        metrics["val_accuracy"] = fit.val_accuracy
        metrics["best_epoch"] = float(fit.best_epoch)
    return metrics


def underfit_message(fit: FitResult, where: str) -> str | None:
    """A one-line warning when ``fit`` ended far from fitting a small labeled set."""
    if fit.n_train > UNDERFIT_MAX_SAMPLES or not fit.train_accuracy < UNDERFIT_ACCURACY:
        return None
    return (
        f"{where}: training accuracy {fit.train_accuracy:.2f} on {fit.n_train} labeled samples "
        f"after {fit.steps} steps ({fit.epochs} epochs): the model under-fits, so its scores "
        f"mislead the strategy; raise --epochs or --min-steps, or the learning rate"
    )


def _state_copy(model: nn.Module, modules: dict[str, nn.Module]) -> list[dict[str, torch.Tensor]]:
    return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in (model, *modules.values())]


def _accuracy_and_loss(
    model: Backbone,
    source: DataSource,
    indices: np.ndarray,
    targets: torch.Tensor,
    config: TrainingConfig,
    device: torch.device,
) -> tuple[float, float]:
    """Eval-mode (accuracy, mean cross-entropy) of ``model`` on pool ``indices``."""
    if len(indices) == 0:
        return float("nan"), float("nan")
    logits = infer(
        model,
        source,
        indices,
        device=device,
        batch_size=config.eval_batch_size,
        logits=True,
        amp=amp_enabled(config, device),
    )["logits"]
    y = targets[torch.from_numpy(np.asarray(indices, dtype=np.int64))]
    accuracy = float((logits.argmax(dim=1) == y).float().mean())
    return accuracy, float(nn.functional.cross_entropy(logits, y))


class Trainer:
    """Trains a backbone (and a strategy's extra modules) on the labeled samples.

    Args:
        config: optimiser, scheduler, epochs, batch size, mixed precision.
        device: where training runs.
    """

    def __init__(self, config: TrainingConfig, device: torch.device) -> None:
        self.config, self.device = config, device

    def fit(
        self,
        model: Backbone,
        source: DataSource,
        labeled: np.ndarray,
        targets: torch.Tensor,
        *,
        seed: int,
        hooks: TrainingHooks | None = None,
        modules: dict[str, nn.Module] | None = None,
        on_epoch: Callable[[int, float], None] | None = None,
        on_start: Callable[[int], None] | None = None,
        unlabeled: np.ndarray | None = None,
        sample_weights: torch.Tensor | None = None,
        ood: np.ndarray | None = None,
        diagnose: bool = True,
    ) -> FitResult:
        """Train on ``labeled`` pool indices whose labels are ``targets[index]``.

        ``seed`` fixes shuffling and dropout, so the same seed gives the same model on
        the same machine. ``modules`` are the hooks' extra modules (default: built here
        with ``hooks.bind`` and ``hooks.modules()``); pass them to keep using them after
        training. ``unlabeled`` pool indices reach the hooks (``FitContext``) for
        strategies that train on unlabeled data. ``sample_weights`` (pool-sized) weight
        each sample's loss (PURE/LURE bias correction); hooks' pseudo-labeled samples
        weigh 1. ``ood`` are labeled pool indices answered "out of distribution": not
        trained on, but passed to the hooks (``FitContext.ood_indices``). ``on_start``
        hears the planned epochs (after the step floor), ``on_epoch`` each epoch's loss.
        ``diagnose=False`` skips the closing pass over the trained samples (its
        ``train_loss`` and ``train_accuracy`` stay NaN) for fits nobody reports on.
        """
        cfg, device = self.config, self.device
        hooks = hooks or TrainingHooks()
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model.to(device).train()
        if modules is None:
            hooks.bind(model, source)
            modules = hooks.modules()
        modules = {name: m.to(device).train() for name, m in modules.items()}
        optimizers = [build_optimizer(model.parameters(), cfg)]
        for name, module in modules.items():
            if name in hooks.self_trained:
                continue
            opt = hooks.make_optimizer(name, module, cfg) or build_optimizer(module.parameters(), cfg)
            optimizers.append(opt)
        labeled = np.asarray(labeled, dtype=np.int64)
        validation = np.empty(0, dtype=np.int64)
        if cfg.validation_fraction > 0:
            labeled, validation = random_holdout(labeled, cfg.validation_fraction, (seed + 2) % 2**31)
        train_indices, pseudo = labeled, np.empty(0, dtype=np.int64)
        pseudo_labels = hooks.pseudo_labels()
        if pseudo_labels is not None and len(pseudo_labels[0]):
            idx, lab = (np.asarray(a, dtype=np.int64) for a in pseudo_labels)
            keep = ~np.isin(idx, labeled) & ~np.isin(idx, validation)
            pseudo = idx[keep]
            targets = targets.clone()
            targets[torch.from_numpy(pseudo)] = torch.from_numpy(lab[keep])
            train_indices = np.concatenate([labeled, pseudo])
        weights = None
        if sample_weights is not None:
            weights = torch.ones(len(targets), dtype=torch.float32)
            weights[torch.from_numpy(labeled)] = sample_weights[torch.from_numpy(labeled)].float()
        drop_last, steps_per_epoch = epoch_batches(len(train_indices), cfg.batch_size)
        epochs = planned_epochs(cfg.epochs, steps_per_epoch, cfg.min_steps)
        schedulers = [
            s
            for s in (build_scheduler(o, cfg, epochs * steps_per_epoch, epochs) for o in optimizers)
            if s is not None
        ]
        per_step = cfg.scheduler == "linear"
        use_amp = amp_enabled(cfg, device)
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        criterion = nn.CrossEntropyLoss(reduction="none")
        fit = FitContext(
            model,
            labeled,
            epochs,
            device,
            modules,
            source=source,
            unlabeled_indices=np.empty(0, dtype=np.int64)
            if unlabeled is None
            else np.asarray(unlabeled, dtype=np.int64),
            targets=targets,
            pseudo_indices=pseudo,
            ood_indices=np.empty(0, dtype=np.int64) if ood is None else np.asarray(ood, dtype=np.int64),
            generator=torch.Generator().manual_seed((seed + 1) % 2**31),
            config=cfg,
        )
        hooks.on_fit_start(fit)
        if on_start is not None:
            on_start(epochs)
        check_every = max(1, math.ceil(cfg.validation_interval / max(1, steps_per_epoch)))
        best: tuple[float, float] = (-1.0, 0.0)  # (accuracy, -loss) of the kept model
        best_state: list[dict[str, torch.Tensor]] | None = None
        best_epoch, waited = epochs - 1, 0
        start = time.perf_counter()
        step, epoch_loss, epochs_run = 0, float("nan"), 0
        for epoch in range(epochs):
            total, count = 0.0, 0
            for batch in source.batches(
                train_indices,
                batch_size=cfg.batch_size,
                train=True,
                shuffle=True,
                generator=generator,
                drop_last=drop_last,
            ):
                inputs = batch.to(device).inputs
                y = targets[batch.indices].to(device)
                with autocast(device, use_amp):
                    output = model(inputs, return_features=hooks.wants_features)
                    per_sample = criterion(output.logits.float(), y)
                    ctx = BatchContext(epoch, step, batch.indices, inputs, y, output, per_sample, fit)
                    if weights is None:
                        loss = per_sample.mean()
                    else:
                        loss = (per_sample * weights[batch.indices].to(device)).mean()
                    extra = hooks.extra_loss(ctx)
                    if extra is not None:
                        loss = loss + extra
                optimizer_step(loss, optimizers, scaler, cfg.grad_clip, model.parameters())
                if per_step:
                    for sched in schedulers:
                        sched.step()
                hooks.on_batch_end(ctx)
                total += float(loss.detach()) * len(batch)
                count += len(batch)
                step += 1
            if not per_step:
                for sched in schedulers:
                    sched.step()
            epoch_loss = total / max(count, 1)
            epochs_run = epoch + 1
            hooks.on_epoch_end(epoch, fit)
            if on_epoch is not None:
                on_epoch(epoch, epoch_loss)
            if len(validation) and (epochs_run % check_every == 0 or epochs_run == epochs):
                acc, val_loss = _accuracy_and_loss(model, source, validation, targets, cfg, device)
                model.train()
                for m in modules.values():
                    m.train()
                if (acc, -val_loss) > best:
                    best, best_state, best_epoch, waited = (
                        (acc, -val_loss),
                        _state_copy(model, modules),
                        epoch,
                        0,
                    )
                else:
                    waited += 1
                    if waited >= cfg.patience:
                        break
        if best_state is not None:
            for module, state in zip((model, *modules.values()), best_state, strict=True):
                module.load_state_dict(state)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_time = time.perf_counter() - start
        train_accuracy, train_loss = (
            _accuracy_and_loss(model, source, labeled, targets, cfg, device)
            if diagnose
            else (math.nan, math.nan)
        )
        model.train()
        return FitResult(
            train_time,
            epoch_loss,
            epochs_run,
            steps=step,
            train_loss=train_loss,
            train_accuracy=train_accuracy,
            val_accuracy=best[0] if best_state is not None else float("nan"),
            best_epoch=best_epoch,
            n_train=len(labeled),
        )
