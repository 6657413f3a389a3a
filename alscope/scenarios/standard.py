"""The standard setting: a closed, as-given pool and a truthful oracle."""

from __future__ import annotations

from alscope.scenarios.base import PreparedScenario, Scenario


class StandardScenario(Scenario):
    """Every pool sample may be queried; the oracle returns the true label."""

    component_name = "standard"
    composition_order = 0

    def refine(self, setting: PreparedScenario, seed: int) -> PreparedScenario:
        del seed
        return setting
