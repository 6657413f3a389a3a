"""The scenario contract.

A scenario turns a loaded dataset into an experimental setting: which pool samples
may be queried, which test samples count, and the oracle that answers label queries.
Every index keeps meaning the same pool sample everywhere (pool state, oracle,
selections, artifacts).

Scenarios compose: each built-in one is a *refinement* of a setting
(:meth:`Scenario.refine`): the standard setting refined by ``openset`` and then by
``imbalanced`` is an open-set pool whose known classes are long-tailed. Every
refinement adds the metrics its setting is judged by (:class:`QueryReport`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from alscope.components import Component
from alscope.data.base import ALDataset

#: The oracle's answer for a sample of no known class (open-set pools).
OOD = -1


class Oracle:
    """Answers label queries with the dataset's labels."""

    def __init__(self, labels: np.ndarray) -> None:
        self._labels = np.asarray(labels, dtype=np.int64)

    def label(self, indices: np.ndarray) -> np.ndarray:
        return self._labels[np.asarray(indices, dtype=np.int64)]

    @property
    def answers(self) -> np.ndarray:
        """The answer for every pool index (what a refinement builds on)."""
        return self._labels.copy()


#: ``report(setting, queried, labels, all_labels) -> metrics``: see
#: :meth:`PreparedScenario.query_metrics` for the arguments.
QueryReport = Callable[["PreparedScenario", np.ndarray, np.ndarray, np.ndarray], dict[str, float]]


@dataclass
class PreparedScenario:
    """A dataset in a setting.

    Attributes:
        dataset: the dataset (possibly with a reduced pool or test source).
        oracle: answers label queries for pool indices.
        candidates: pool indices that may ever be labeled (all, unless the scenario
            withholds some).
        initial_candidates: where the initial labeled set is drawn from (default: the
            candidates); an open-set pool starts from known classes only.
        info: what the scenario wants logged as parameters.
        reports: the per-query metrics of each refinement that built this setting.
    """

    dataset: ALDataset
    oracle: Oracle
    candidates: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    initial_candidates: np.ndarray | None = None
    #: set by the engine: the size of the initial labeled set (queries come after it)
    n_initial: int = 0
    reports: list[QueryReport] = field(default_factory=list)

    def query_metrics(
        self, queried: np.ndarray, labels: np.ndarray, all_labels: np.ndarray
    ) -> dict[str, float]:
        """Per-cycle metrics this setting is judged by (none in the standard setting).

        ``labels`` are the oracle's answers to this query, ``all_labels`` every answer
        so far (initial set included), in the order the labeled set grew.
        """
        metrics: dict[str, float] = {}
        for report in self.reports:
            metrics.update(report(self, queried, labels, all_labels))
        return metrics


def standard_setting(dataset: ALDataset) -> PreparedScenario:
    """The closed setting: every pool sample may be queried, the oracle tells the truth."""
    return PreparedScenario(
        dataset=dataset,
        oracle=Oracle(dataset.pool.labels),
        candidates=np.arange(len(dataset.pool), dtype=np.int64),
    )


class Scenario(Component):
    """Base class of scenario plugins' targets.

    Override :meth:`refine` (composable) or :meth:`prepare` (stand-alone only).
    """

    #: where a refinement goes in a composition: lower first. Class splits (open set)
    #: come before reshaping the class profile (imbalance), which comes before the
    #: annotator (noise), so each step sees the classes the next one works on.
    composition_order: ClassVar[int] = 50

    @classmethod
    def kind_name(cls) -> str:
        return "scenario"

    @classmethod
    def composable(cls) -> bool:
        return cls.refine is not Scenario.refine

    def prepare(self, dataset: ALDataset, seed: int) -> PreparedScenario:
        """The setting this scenario makes of ``dataset`` on its own."""
        return self.refine(standard_setting(dataset), seed)

    def refine(self, setting: PreparedScenario, seed: int) -> PreparedScenario:
        """This scenario applied on top of another setting: keep its candidates'
        restrictions, its relabelling and its oracle, add this scenario's own, and append
        the metrics (``setting.reports``) and ``info``. Pool indices must keep their
        meaning."""
        raise NotImplementedError(f"scenario {self.component_name or type(self).__name__} cannot be composed")
