"""Device selection: CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import torch

from alscope.errors import ConfigError


def resolve_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device={requested!r} is invalid: CUDA is not available here (accepted: auto, cpu)"
        )
    if device.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ConfigError(f"device={requested!r} is invalid: MPS is not available here (accepted: auto, cpu)")
    return device
