"""alscope: deep active learning with pluggable strategies, datasets, backbones and scenarios.

Importing ``alscope`` is cheap; the engine and strategies import torch when used::

    from alscope import ExperimentConfig, run_experiment
    result = run_experiment(ExperimentConfig(strategy="margin", cycles=3))

    from alscope import get_strategy, PoolView
    picked = get_strategy("entropy").query(PoolView.from_arrays(probs=p, labeled_mask=m), 10)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "ExperimentConfig": "alscope.config",
    "run_experiment": "alscope.engine.experiment",
    "Experiment": "alscope.engine.experiment",
    "PoolView": "alscope.strategies.base",
    "Requirements": "alscope.strategies.base",
    "Strategy": "alscope.strategies.base",
    "ScoringStrategy": "alscope.strategies.base",
    "TrainingHooks": "alscope.engine.hooks",
    "get_registry": "alscope.registry",
}

__all__ = [*_LAZY, "get_strategy", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'alscope' has no attribute {name!r}")


def get_strategy(name: str, **params: Any) -> Any:
    """A strategy instance by (any accepted spelling of) its name, for library use; a
    claimed name (``corelog``, ``flcmi``) brings its implied parameters, which ``params``
    override."""
    from alscope.registry import get_registry

    registry = get_registry()
    spec, implied = registry.resolve_claimed("strategy", name)
    strategy = spec.load()({**implied, **params})
    strategy.component_name = spec.name
    return strategy
