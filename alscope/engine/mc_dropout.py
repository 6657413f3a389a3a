"""MC dropout done right: only dropout layers sample; BatchNorm stays in eval mode.

``model.train()`` (what several toolkits call before sampling) would also switch
BatchNorm to batch statistics and update its running averages while the pool is being
scored. Here the model is put in eval mode and only its dropout modules are switched
to training mode, as baal does by patching its modules.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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
