"""MC dropout done right: only dropout layers sample; BatchNorm stays in eval mode.

``model.train()`` (what several toolkits call before sampling) would also switch
BatchNorm to batch statistics and update its running averages while the pool is being
scored. Here the model is put in eval mode and only its dropout modules are switched
to training mode, as baal does by patching its modules.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
from torch import nn

from alscope.errors import ModelError

_DROPOUT_TYPES = (nn.modules.dropout._DropoutNd,)


def dropout_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, _DROPOUT_TYPES) and getattr(m, "p", 0) > 0]


@contextlib.contextmanager
def mc_dropout(model: nn.Module, who: str = "an MC strategy") -> Iterator[nn.Module]:
    """Eval mode everywhere except active dropout layers, restored afterwards.

    Raises:
        ModelError: the model has no dropout with p > 0, so sampling would repeat one
            deterministic prediction.
    """
    drops = dropout_modules(model)
    if not drops:
        raise ModelError(
            f"{who} needs MC dropout, but the backbone {type(model).__name__} has no dropout "
            f"layer with p > 0; give it dropout (e.g. --backbone-param dropout=0.3)"
        )
    modes = {m: m.training for m in model.modules()}
    model.eval()
    for m in drops:
        m.train()
    try:
        yield model
    finally:
        for module, mode in modes.items():
            module.training = mode


class ConsistentMasks:
    """Dropout masks fixed per sample index k and shared by every pool row.

    With independent masks per row, the k-th predictions of two samples come from two
    different sub-networks, so joint quantities (BatchBALD's joint entropy, EPIG's joint
    predictive) see no shared model and duplicates look independent. Here sample k is one
    sub-network: the mask of module m for sample k is drawn from a generator seeded with
    (seed, m, k) and cached per feature shape. Inputs of a forward pass are ``reps``
    replicated blocks of ``n`` rows (see ``_replicate``); block r uses sample ``k0 + r``.
    Inputs whose feature shape varies (text of different lengths) get one mask per shape.
    """

    def __init__(self, model: nn.Module, seed: int) -> None:
        self.seed, self.k0, self.reps = seed, 0, 1
        self._cache: dict[tuple[int, int, tuple[int, ...]], torch.Tensor] = {}
        self._modules = dropout_modules(model)
        self._saved = [m.forward for m in self._modules]

    def __enter__(self) -> ConsistentMasks:
        for index, module in enumerate(self._modules):
            module.forward = functools.partial(self._forward, index, module)
        return self

    def __exit__(self, *exc: object) -> None:
        for module, forward in zip(self._modules, self._saved, strict=True):
            module.forward = forward

    def _mask(self, index: int, k: int, shape: tuple[int, ...], p: float) -> torch.Tensor:
        key = (index, k, shape)
        if key not in self._cache:
            generator = torch.Generator().manual_seed(hash((self.seed, index, k)) & 0x7FFFFFFF)
            keep = torch.rand(shape, generator=generator) >= p
            self._cache[key] = keep.float() / (1.0 - p)
        return self._cache[key]

    def _forward(self, index: int, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        p = float(module.p)  # type: ignore[arg-type]
        n = x.shape[0] // self.reps
        # nn.Dropout drops elements; Dropout1d/2d/3d drop whole channels.
        elementwise = isinstance(module, nn.Dropout)
        shape = tuple(x.shape[1:]) if elementwise else (x.shape[1],) + (1,) * (x.dim() - 2)
        masks = torch.stack([self._mask(index, self.k0 + r, shape, p) for r in range(self.reps)])
        return x * masks.repeat_interleave(n, dim=0).to(device=x.device, dtype=x.dtype)
