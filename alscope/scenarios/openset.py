"""Open-set pools: the unlabeled pool mixes known classes with samples of unknown classes.

The known classes are given (names or indices), counted, or a fraction of all classes, and
chosen with the seed. ``ood_rate`` is the share of the *unlabeled pool* that comes from
unknown classes; the initial labeled set and the test set hold known classes only. The
oracle answers a query of an unknown-class sample with "out of distribution" (``OOD``):
that costs budget, it is never trained on as a class, and it stays in the labeled set
(the labeled-OOD set that open-set strategies read as ``view.labeled_targets == OOD``).
Known classes are renumbered 0..k-1; pool indices keep meaning the same samples.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from pydantic import Field

from alscope.components import Params
from alscope.errors import ConfigError
from alscope.scenarios.base import OOD, Oracle, PreparedScenario, Scenario


class OpenSetParams(Params):
    known_classes: list[str] | None = Field(
        default=None, description="known classes by name or index; default: chosen with the seed"
    )
    n_known: int | None = Field(default=None, ge=1, description="number of known classes")
    known_fraction: float = Field(default=0.6, gt=0, lt=1, description="share of classes that are known")
    ood_rate: float = Field(
        default=0.2, ge=0, lt=1, description="share of the unlabeled pool from unknown classes"
    )


def choose_known(classes: list[str], params: OpenSetParams, seed: int) -> np.ndarray:
    n = len(classes)
    if params.known_classes is not None:
        index = {name: i for i, name in enumerate(classes)}
        known = []
        for given in params.known_classes:
            if given in index:
                known.append(index[given])
            elif given.isdigit() and int(given) < n:
                known.append(int(given))
            else:
                raise ConfigError(
                    f"scenario openset: known class {given!r} is not a class of the dataset "
                    f"(classes: {', '.join(classes)}, or indices 0..{n - 1})"
                )
        chosen = np.unique(known)
    else:
        count = params.n_known if params.n_known is not None else max(1, round(params.known_fraction * n))
        chosen = np.sort(np.random.default_rng(seed).choice(n, size=min(count, n), replace=False))
    if not 2 <= len(chosen) < n:
        raise ConfigError(
            f"scenario openset needs at least 2 known and 1 unknown class, got {len(chosen)} known of {n}"
        )
    return chosen


def open_set_report(
    setting: PreparedScenario, queried: np.ndarray, labels: np.ndarray, all_labels: np.ndarray
) -> dict[str, float]:
    """Query precision (share in distribution), its running value over all queries, the
    OOD samples queried, and recall over the in-distribution pool."""
    del queried
    in_dist = labels != OOD
    queried_answers = all_labels[setting.n_initial :]
    candidates = setting.candidates
    n_known = int((setting.dataset.pool.labels[candidates] != OOD).sum())
    return {
        "query_precision": float(in_dist.mean()) if len(labels) else 0.0,
        "cumulative_precision": float((queried_answers != OOD).mean()) if len(queried_answers) else 0.0,
        "ood_queried": float((~in_dist).sum()),
        "id_recall": float((all_labels != OOD).sum() / max(n_known, 1)),
    }


class OpenSetScenario(Scenario):
    """Known classes in the labeled and test sets; unknown-class samples in the unlabeled
    pool at ``ood_rate``, answered ``OOD`` by the oracle."""

    Params = OpenSetParams
    component_name = "openset"
    composition_order = 10

    def refine(self, setting: PreparedScenario, seed: int) -> PreparedScenario:
        p = self.params
        dataset = setting.dataset
        known = choose_known(dataset.classes, p, seed)
        mapping = np.full(dataset.n_classes, OOD, dtype=np.int64)
        mapping[known] = np.arange(len(known))
        candidates = setting.candidates
        is_known = np.isin(dataset.pool.labels[candidates], known)
        known_idx = candidates[is_known]
        unknown_idx = candidates[~is_known]
        # unknown / (known + unknown) = ood_rate, bounded by the unknown samples there are
        n_unknown = min(len(unknown_idx), round(p.ood_rate * len(known_idx) / (1 - p.ood_rate)))
        rng = np.random.default_rng(seed)
        chosen_unknown = np.sort(rng.choice(unknown_idx, size=n_unknown, replace=False))
        initial = known_idx
        if setting.initial_candidates is not None:
            initial = np.intersect1d(setting.initial_candidates, known_idx)
        test_keep = np.flatnonzero(np.isin(dataset.test.labels, known))
        dataset.test = dataset.test.subset(test_keep).relabeled(mapping)
        dataset.pool = dataset.pool.relabeled(mapping)
        names = [dataset.classes[i] for i in known]
        dataset.classes = names
        answers = setting.oracle.answers
        answers = np.where(answers == OOD, OOD, mapping[np.maximum(answers, 0)])
        return replace(
            setting,
            dataset=dataset,
            oracle=Oracle(answers),
            candidates=np.sort(np.concatenate([known_idx, chosen_unknown])),
            initial_candidates=initial,
            info={**setting.info, "known_classes": names, "ood_rate": p.ood_rate},
            reports=[*setting.reports, open_set_report],
        )
