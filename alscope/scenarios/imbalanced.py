"""Class-imbalanced pools: a long-tailed subset of the pool, the test set balanced by default.

Cui et al. (CVPR 2019) build CIFAR-LT with an exponential profile, n_c = n_max * r^(c/(C-1));
Buda et al. (2018) use a step profile (half the classes rare). The pool keeps its indices:
the scenario only restricts which pool samples can ever be labeled, so an index means the
same sample in the pool state, the oracle, the selections and the artifacts.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np
from pydantic import Field

from alscope.components import Params
from alscope.errors import ConfigError
from alscope.scenarios.base import OOD, PreparedScenario, Scenario


class ImbalancedParams(Params):
    imb_factor: float = Field(
        default=0.01,
        gt=0,
        description="size of the rarest class relative to the most frequent one; values above 1 "
        "are read as ALScope's inverse (100 = 0.01)",
    )
    profile: Literal["exp", "step"] = Field(default="exp", description="exponential or step long tail")
    imbalanced_test: bool = Field(default=False, description="apply the same profile to the test set")


def class_sizes(counts: np.ndarray, ratio: float, profile: str) -> np.ndarray:
    """Per-class target sizes: class 0 keeps the smallest available count n_max, the rest
    shrink to ``n_max * ratio`` along the profile."""
    n_classes = len(counts)
    n_max = int(counts.min())
    if profile == "exp":
        sizes = n_max * ratio ** (np.arange(n_classes) / max(n_classes - 1, 1))
    else:
        sizes = np.where(np.arange(n_classes) < (n_classes + 1) // 2, n_max, n_max * ratio)
    return np.maximum(1, np.floor(sizes)).astype(np.int64)


def long_tail(labels: np.ndarray, n_classes: int, ratio: float, profile: str, seed: int) -> np.ndarray:
    """Sorted indices of a seeded long-tailed subset of ``labels``."""
    counts = np.bincount(labels, minlength=n_classes)
    if counts.min() == 0:
        missing = np.flatnonzero(counts == 0).tolist()
        raise ConfigError(f"scenario imbalanced needs every class in the pool; classes {missing} are empty")
    sizes = class_sizes(counts, ratio, profile)
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == c))[: sizes[c]] for c in range(n_classes)]
    return np.sort(np.concatenate(keep))


def imbalance_report(
    setting: PreparedScenario, queried: np.ndarray, labels: np.ndarray, all_labels: np.ndarray
) -> dict[str, float]:
    """The share of each class in the query (rare classes are what a strategy must find),
    by the samples' true classes; in an open-set pool the OOD share is the rest."""
    del labels, all_labels
    truth = setting.dataset.pool.labels[queried]
    shares = np.bincount(truth[truth != OOD], minlength=setting.dataset.n_classes) / max(len(queried), 1)
    return {f"query_share/{c}": float(s) for c, s in enumerate(shares)}


class ImbalancedScenario(Scenario):
    """A long-tailed pool (exponential or step profile); the test set stays balanced unless
    ``imbalanced_test`` is set, so accuracy there is the balanced measure of the tail.

    On an open-set pool the long tail shapes the known classes, and the unknown-class
    samples are thinned in proportion so that the pool's OOD share stays what the open-set
    step made it."""

    Params = ImbalancedParams
    component_name = "imbalanced"
    composition_order = 20

    def refine(self, setting: PreparedScenario, seed: int) -> PreparedScenario:
        p = self.params
        dataset = setting.dataset
        ratio = 1.0 / p.imb_factor if p.imb_factor > 1 else p.imb_factor
        labels = dataset.pool.labels
        candidates = setting.candidates
        in_dist = candidates[labels[candidates] != OOD]
        unknown = candidates[labels[candidates] == OOD]
        kept = in_dist[long_tail(labels[in_dist], dataset.n_classes, ratio, p.profile, seed)]
        n_unknown = round(len(unknown) * len(kept) / max(len(in_dist), 1))
        kept_unknown = np.random.default_rng(seed + 1).choice(unknown, size=n_unknown, replace=False)
        new_candidates = np.sort(np.concatenate([kept, kept_unknown]).astype(np.int64))
        initial = setting.initial_candidates
        if initial is not None:
            initial = np.intersect1d(initial, new_candidates)
        if p.imbalanced_test:
            test_labels = dataset.test.labels
            keep = long_tail(test_labels, dataset.n_classes, ratio, p.profile, seed + 1)
            dataset.test = dataset.test.subset(keep)
        counts = np.bincount(labels[kept], minlength=dataset.n_classes)
        return replace(
            setting,
            candidates=new_candidates,
            initial_candidates=initial,
            info={**setting.info, "imbalance_ratio": ratio, "pool_class_counts": counts.tolist()},
            reports=[*setting.reports, imbalance_report],
        )
