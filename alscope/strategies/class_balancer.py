"""Class-balanced queries around any scoring strategy.

Under class imbalance an uncertainty strategy keeps querying the classes the model
already confuses most, which are rarely the rare ones. The balancer groups the unlabeled
pool by predicted class and takes each class's best-scored samples in turn (round robin,
classes in a random order per query), so every predicted class gets an equal share of the
budget while it has samples; classes that run out leave their share to the others. This is
the class-balancing constraint of Bengar et al. (WACV 2022) solved greedily instead of as
an optimisation programme.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from pydantic import Field

from alscope.components import Params
from alscope.errors import ConfigError
from alscope.strategies.base import (
    PoolView,
    Requirements,
    ScoringStrategy,
    Strategy,
    make_base_strategy,
    top_k,
)


class ClassBalancerParams(Params):
    base: str = Field(default="entropy", description="a scoring strategy whose scores rank each class")
    base_params: dict[str, Any] = Field(default_factory=dict, description="parameters of the base strategy")


class ClassBalancer(Strategy):
    """Round robin over predicted classes, each class ranked by the base strategy's score."""

    Params = ClassBalancerParams
    component_name = "class_balancer"

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        base = make_base_strategy(self.params.base, self.params.base_params, ClassBalancer)
        if not isinstance(base, ScoringStrategy):
            raise ConfigError(
                f"strategy class_balancer: base {base.component_name!r} gives no per-sample scores; "
                f"use a scoring strategy such as entropy, margin or least_confidence"
            )
        self.base: ScoringStrategy = base

    def requirements(self) -> Requirements:
        return replace(self.base.requirements(), probs=True)

    def training_hooks(self) -> Any:
        return self.base.training_hooks()

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        scores = self.base.score(view).detach().double().cpu().numpy()
        predicted = view.require("probs", self.component_name).argmax(dim=1).numpy()
        # Each class's members ranked best first, ties broken at random.
        queues = []
        for cls in rng.permutation(view.n_classes):
            members = np.flatnonzero(predicted == cls)
            if len(members):
                queues.append(members[top_k(scores[members], len(members), rng)])
        picks: list[int] = []
        depth = 0
        while len(picks) < budget:
            for queue in queues:
                if depth < len(queue) and len(picks) < budget:
                    picks.append(int(queue[depth]))
            depth += 1
        return view.unlabeled[np.asarray(picks, dtype=np.int64)]
