"""The scenario contract.

A scenario turns a loaded dataset into an experimental setting: which pool samples
may be queried, which test samples count, and the oracle that answers label queries.
Every index keeps meaning the same pool sample everywhere (pool state, oracle,
selections, artifacts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
    """

    dataset: ALDataset
    oracle: Oracle
    candidates: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    initial_candidates: np.ndarray | None = None
    #: set by the engine: the size of the initial labeled set (queries come after it)
    n_initial: int = 0

    def query_metrics(
        self, queried: np.ndarray, labels: np.ndarray, all_labels: np.ndarray
    ) -> dict[str, float]:
        """Per-cycle metrics this setting is judged by (none in the standard setting).

        ``labels`` are the oracle's answers to this query, ``all_labels`` every answer
        so far (initial set included), in the order the labeled set grew.
        """
        del queried, labels, all_labels
        return {}


class Scenario(Component):
    """Base class of scenario plugins' targets."""

    @classmethod
    def kind_name(cls) -> str:
        return "scenario"

    def prepare(self, dataset: ALDataset, seed: int) -> PreparedScenario:
        raise NotImplementedError
