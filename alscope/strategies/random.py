"""Uniform random sampling: the baseline every benchmark needs."""

from __future__ import annotations

import numpy as np

from alscope.strategies.base import PoolView, Strategy


class RandomSampling(Strategy):
    """Draws the query uniformly without replacement; needs nothing from the model,
    so it can also choose the initial labeled set (cold start)."""

    component_name = "random"

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(view.unlabeled, size=budget, replace=False)
