"""The trainer: fixed epochs over the labeled set, with strategy training hooks."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from alscope.config import TrainingConfig
from alscope.data.base import DataSource
from alscope.engine.hooks import BatchContext, FitContext, TrainingHooks
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
    optimizer: torch.optim.Optimizer, config: TrainingConfig, total_steps: int = 0
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The learning-rate schedule; ``linear`` steps per batch over ``total_steps``, the
    others per epoch."""
    if config.scheduler == "linear":
        warmup = int(total_steps * config.warmup_fraction)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if config.scheduler == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=config.milestones, gamma=config.gamma
        )
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
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


def amp_enabled(config: TrainingConfig, device: torch.device) -> bool:
    return device.type == "cuda" and (config.amp is None or config.amp)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.float16)


@dataclass
class FitResult:
    train_time: float
    final_loss: float
    epochs: int


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
        unlabeled: np.ndarray | None = None,
        sample_weights: torch.Tensor | None = None,
        ood: np.ndarray | None = None,
    ) -> FitResult:
        """Train on ``labeled`` pool indices whose labels are ``targets[index]``.

        ``seed`` fixes shuffling and dropout, so the same seed gives the same model on
        the same machine. ``modules`` are the hooks' extra modules (default: built here
        with ``hooks.bind`` and ``hooks.modules()``); pass them to keep using them after
        training. ``unlabeled`` pool indices reach the hooks (``FitContext``) for
        strategies that train on unlabeled data. ``sample_weights`` (pool-sized) weight
        each sample's loss (PURE/LURE bias correction); hooks' pseudo-labeled samples
        weigh 1. ``ood`` are labeled pool indices answered "out of distribution": not
        trained on, but passed to the hooks (``FitContext.ood_indices``).
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
        train_indices, pseudo = labeled, np.empty(0, dtype=np.int64)
        pseudo_labels = hooks.pseudo_labels()
        if pseudo_labels is not None and len(pseudo_labels[0]):
            idx, lab = (np.asarray(a, dtype=np.int64) for a in pseudo_labels)
            keep = ~np.isin(idx, labeled)
            pseudo = idx[keep]
            targets = targets.clone()
            targets[torch.from_numpy(pseudo)] = torch.from_numpy(lab[keep])
            train_indices = np.concatenate([labeled, pseudo])
        weights = None
        if sample_weights is not None:
            weights = torch.ones(len(targets), dtype=torch.float32)
            weights[torch.from_numpy(labeled)] = sample_weights[torch.from_numpy(labeled)].float()
        drop_last, steps_per_epoch = epoch_batches(len(train_indices), cfg.batch_size)
        schedulers = [
            s
            for s in (build_scheduler(o, cfg, cfg.epochs * steps_per_epoch) for o in optimizers)
            if s is not None
        ]
        per_step = cfg.scheduler == "linear"
        use_amp = amp_enabled(cfg, device)
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        criterion = nn.CrossEntropyLoss(reduction="none")
        fit = FitContext(
            model,
            labeled,
            cfg.epochs,
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
        start = time.perf_counter()
        step, epoch_loss = 0, float("nan")
        for epoch in range(cfg.epochs):
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
            hooks.on_epoch_end(epoch, fit)
            if on_epoch is not None:
                on_epoch(epoch, epoch_loss)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return FitResult(time.perf_counter() - start, epoch_loss, cfg.epochs)
