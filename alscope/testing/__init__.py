"""Test utilities for alscope and its plugins.

:mod:`alscope.testing.conformance` holds the strategy conformance suite: the contract
every registered strategy keeps, as a pytest template a plugin subclasses::

    from alscope.testing.conformance import StrategyConformance

    class TestMyStrategy(StrategyConformance):
        strategy_name = "my_strategy"

The names are re-exported here and imported on first use (the suite needs pytest).
"""

from __future__ import annotations

from typing import Any

_CONFORMANCE = (
    "StrategyCase",
    "StrategyConformance",
    "check_budget_rejected",
    "check_deterministic",
    "check_large_pool",
    "check_params_schema",
    "check_requirements",
    "check_selection",
    "check_spec",
    "conformance_cases",
    "make_pool_view",
    "plugin_registry",
    "run_select",
)

__all__ = list(_CONFORMANCE)


def __getattr__(name: str) -> Any:
    if name in _CONFORMANCE:
        from alscope.testing import conformance

        return getattr(conformance, name)
    raise AttributeError(f"module 'alscope.testing' has no attribute {name!r}")
