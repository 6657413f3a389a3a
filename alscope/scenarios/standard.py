"""The standard setting: a closed, as-given pool and a truthful oracle."""

from __future__ import annotations

import numpy as np

from alscope.data.base import ALDataset
from alscope.scenarios.base import Oracle, PreparedScenario, Scenario


class StandardScenario(Scenario):
    """Every pool sample may be queried; the oracle returns the true label."""

    component_name = "standard"

    def prepare(self, dataset: ALDataset, seed: int) -> PreparedScenario:
        del seed
        return PreparedScenario(
            dataset=dataset,
            oracle=Oracle(dataset.pool.labels),
            candidates=np.arange(len(dataset.pool), dtype=np.int64),
        )
