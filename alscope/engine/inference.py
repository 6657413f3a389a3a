"""Batched inference: one pass over the pool computes whatever the strategy declared."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from alscope.data.base import DataSource, move_to
from alscope.engine.hooks import TrainingHooks
from alscope.engine.mc_dropout import ConsistentMasks, mc_dropout
from alscope.errors import ModelError
from alscope.models.base import Backbone, BackboneOutput
from alscope.strategies.base import PoolInputs, PoolView, Requirements, SSLRequest


def _replicate(inputs: Any, times: int) -> Any:
    if isinstance(inputs, torch.Tensor):
        return torch.cat([inputs] * times)
    if isinstance(inputs, dict):
        return {k: _replicate(v, times) for k, v in inputs.items()}
    raise TypeError(f"cannot replicate inputs of type {type(inputs).__name__} for MC sampling")


class _Collector:
    """Preallocated CPU storage for per-sample outputs, filled batch by batch."""

    def __init__(self, n: int) -> None:
        self.n, self.offset = n, 0
        self.store: dict[str, torch.Tensor] = {}

    def add(self, values: dict[str, torch.Tensor]) -> None:
        size = None
        for key, value in values.items():
            value = value.detach().float().cpu()
            if key not in self.store:
                self.store[key] = torch.empty((self.n, *value.shape[1:]), dtype=torch.float32)
            self.store[key][self.offset : self.offset + len(value)] = value
            size = len(value)
        self.offset += size or 0


@torch.no_grad()
def infer(
    model: Backbone,
    source: DataSource,
    indices: np.ndarray,
    *,
    device: torch.device,
    batch_size: int,
    probs: bool = False,
    logits: bool = False,
    embeddings: bool = False,
    mc_samples: int = 0,
    hooks: TrainingHooks | None = None,
    modules: dict[str, nn.Module] | None = None,
    extra_outputs: tuple[str, ...] = (),
    amp: bool = False,
    who: str = "",
    consistent_mc: bool = False,
) -> dict[str, torch.Tensor]:
    """Eval-transform pass over ``indices``; returns CPU float32 tensors keyed by name.

    Keys: ``probs``/``logits`` ``(N, C)``, ``embeddings`` ``(N, D)``, ``mc_probs``
    ``(N, K, C)`` and the requested ``extra_outputs`` from the hooks.
    """
    from alscope.engine.trainer import autocast

    model.to(device).eval()
    for m in (modules or {}).values():
        m.to(device).eval()
    collector = _Collector(len(indices))
    # Drawn from the global generator, which the engine seeds per cycle.
    consistent_seed = int(torch.randint(0, 2**31 - 1, ())) if mc_samples and consistent_mc else None
    want_features = bool(hooks is not None and hooks.wants_features and extra_outputs)
    for batch in source.batches(indices, batch_size=batch_size, train=False):
        inputs = batch.to(device).inputs
        values: dict[str, torch.Tensor] = {}
        if probs or logits or embeddings or extra_outputs:
            with autocast(device, amp):
                out: BackboneOutput = model(inputs, return_features=want_features)
            if probs:
                values["probs"] = torch.softmax(out.logits.float(), dim=1)
            if logits:
                values["logits"] = out.logits
            if embeddings:
                values["embeddings"] = out.embedding
            if extra_outputs and hooks is not None:
                extra = hooks.pool_indexed_outputs(batch.indices, inputs, out, modules or {})
                missing = [k for k in extra_outputs if k not in extra]
                if missing:
                    raise KeyError(f"{who}: training hooks did not compute {missing}")
                values.update({k: extra[k] for k in extra_outputs})
        if mc_samples:
            values["mc_probs"] = _mc_probs(
                model, inputs, len(batch), mc_samples, batch_size, device, amp, who, consistent_seed
            )
        collector.add(values)
    return collector.store


def _mc_probs(
    model: Backbone,
    inputs: Any,
    n: int,
    k: int,
    batch_size: int,
    device: torch.device,
    amp: bool,
    who: str,
    consistent_seed: int | None = None,
) -> torch.Tensor:
    """``(n, k, C)`` probabilities from k dropout samples, replicated into as few
    forward passes as the inference batch size allows; with ``consistent_seed`` sample k
    uses the same dropout masks for every row (:class:`ConsistentMasks`)."""
    from alscope.engine.trainer import autocast

    per_pass = max(1, batch_size // max(n, 1))
    chunks = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(mc_dropout(model, who or "an MC strategy"))
        masks = (
            stack.enter_context(ConsistentMasks(model, consistent_seed))
            if consistent_seed is not None
            else None
        )
        done = 0
        while done < k:
            reps = min(per_pass, k - done)
            if masks is not None:
                masks.k0, masks.reps = done, reps
            with autocast(device, amp):
                logits = model(_replicate(inputs, reps) if reps > 1 else inputs).logits
            chunks.append(torch.softmax(logits.float(), dim=1).view(reps, n, -1))
            done += reps
    return torch.cat(chunks).permute(1, 0, 2)


def input_features(source: DataSource, indices: np.ndarray, batch_size: int, strategy: str) -> torch.Tensor:
    """Flattened evaluation-transformed inputs, ``(N, prod(shape))``: the embedding of a
    sample before any model exists."""
    chunks = []
    for batch in source.batches(indices, batch_size=batch_size, train=False):
        if not isinstance(batch.inputs, torch.Tensor):
            raise ModelError(
                f"strategy {strategy!r} needs embeddings before any model is trained (cold start), "
                f"but these inputs are not feature tensors; label an initial set (--n-initial > 0)"
            )
        chunks.append(batch.inputs.flatten(1).float())
    if not chunks:
        return torch.empty(0, 0)
    return torch.cat(chunks)


def pool_inputs(
    source: DataSource, indices: np.ndarray, device: torch.device, batch_size: int, amp: bool
) -> PoolInputs:
    """Lazy batches of ``indices``' evaluation-transformed inputs on ``device``, the same
    batches :func:`infer` reads (``Requirements.pool_inputs``)."""
    order = np.asarray(indices, dtype=np.int64)

    def batches(size: int) -> Iterator[Any]:
        for batch in source.batches(order, batch_size=size, train=False):
            yield move_to(batch.inputs, device)

    return PoolInputs(batches, batch_size, amp)


def compute_pool_view(
    model: Backbone | None,
    source: DataSource,
    unlabeled: np.ndarray,
    labeled: np.ndarray,
    labeled_targets: np.ndarray,
    requirements: Requirements,
    *,
    n_classes: int,
    device: torch.device,
    batch_size: int,
    hooks: TrainingHooks | None = None,
    modules: dict[str, nn.Module] | None = None,
    amp: bool = False,
    strategy: str = "",
    ensemble: list[Backbone] | None = None,
    ssl_provider: Callable[[SSLRequest], torch.Tensor] | None = None,
) -> PoolView:
    """The view a strategy selects from, computed in one pass over the unlabeled pool
    (plus one over the labeled set only when labeled embeddings or probabilities are
    declared). With an ``ensemble``, ``probs`` is the members' mean and ``mc_probs``
    stacks the members' predictions ``(U, M, C)`` in place of MC dropout samples.
    ``ssl_provider`` returns the whole pool's self-supervised embeddings ``(N, D)`` for
    each :class:`SSLRequest` the strategy declared. With ``pool_inputs`` the view
    re-reads the unlabeled inputs lazily (:class:`PoolInputs`); nothing is stored."""
    req = requirements
    view = PoolView(
        unlabeled=unlabeled,
        labeled=labeled,
        n_classes=n_classes,
        labeled_targets=labeled_targets,
        device=device,
        model=model if req.model else None,
        pool_inputs=pool_inputs(source, unlabeled, device, batch_size, amp) if req.pool_inputs else None,
    )
    if req.ssl:
        if ssl_provider is None:
            raise ModelError(
                f"strategy {strategy!r} needs self-supervised embeddings; none can be computed here"
            )
        for request in req.ssl:
            pool = ssl_provider(request)
            view.ssl_embeddings[request.method] = pool[torch.from_numpy(np.asarray(unlabeled))]
            view.labeled_ssl_embeddings[request.method] = pool[torch.from_numpy(np.asarray(labeled))]
    if model is None:
        # Cold start: nothing is trained yet, so embeddings are the inputs themselves.
        if req.embeddings:
            view.embeddings = input_features(source, unlabeled, batch_size, strategy)
        if req.labeled_embeddings and len(labeled):
            view.labeled_embeddings = input_features(source, labeled, batch_size, strategy)
        return view
    if not req.needs_model:
        return view
    who = f"strategy {strategy!r}"
    out = infer(
        model,
        source,
        unlabeled,
        device=device,
        batch_size=batch_size,
        probs=req.probs,
        logits=req.logits,
        embeddings=req.embeddings,
        mc_samples=0 if ensemble else req.mc_samples,
        consistent_mc=req.consistent_mc,
        hooks=hooks,
        modules=modules,
        extra_outputs=req.extra_outputs,
        amp=amp,
        who=who,
    )
    view.probs, view.logits = out.get("probs"), out.get("logits")
    view.embeddings, view.mc_probs = out.get("embeddings"), out.get("mc_probs")
    view.extras = {k: out[k] for k in req.extra_outputs}
    if ensemble:
        member_probs = torch.stack(
            [
                infer(m, source, unlabeled, device=device, batch_size=batch_size, probs=True, amp=amp)[
                    "probs"
                ]
                for m in ensemble
            ],
            dim=1,
        )
        if req.probs:
            view.probs = member_probs.mean(dim=1)
        if req.mc_samples:
            view.mc_probs = member_probs
    if (req.labeled_embeddings or req.labeled_probs) and len(labeled):
        lab = infer(
            model,
            source,
            labeled,
            device=device,
            batch_size=batch_size,
            probs=req.labeled_probs,
            embeddings=req.labeled_embeddings,
            amp=amp,
            who=who,
        )
        view.labeled_embeddings, view.labeled_probs = lab.get("embeddings"), lab.get("probs")
    return view
