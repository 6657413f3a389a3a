"""The stopping-criterion contract.

The engine measures, once per cycle and in the passes the cycle runs anyway, the
quantities that criteria read (:data:`MEASURES`): agreement with the previous cycle's
model on a *stop set* (a fixed unlabeled sample drawn once per trial), the uncertainty
left on it, the uncertainty of the batch just selected, the strategy's scores, the
validation accuracy and the labeled count. Each measure is logged per cycle as
``stop/<measure>`` (MLflow and the run state).

A criterion declares the measures it reads (:attr:`StoppingCriterion.measures`) and is
a pure function of their history (:meth:`StoppingCriterion.evaluate`), so a resumed run
decides exactly as the uninterrupted one, and a criterion can be checked on a
constructed sequence. Plugins register criteria through the ``alscope_register_stopping``
hook, like strategies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import ClassVar

from alscope.components import Component

#: what the engine measures for criteria, by name: what each value is
MEASURES: dict[str, str] = {
    "kappa": "Cohen's kappa between this cycle's and the previous cycle's predicted classes on the "
    "stop set (1 when they are identical)",
    "kappa_pool": "the same kappa over the whole pool, labeled samples included",
    "delta_f": "1 - the F-measure agreement of this cycle's and the previous cycle's predictions on the "
    "stop set (positive class for 2 classes, else the mean over classes, one against the rest)",
    "changed": "share of the stop set's unlabeled samples whose predicted class changed since the "
    "previous cycle",
    "entropy": "mean normalised entropy (entropy / log C) over the stop set's unlabeled samples",
    "expected_error": "mean of 1 - the largest probability over the stop set's unlabeled samples",
    "confidence": "mean largest probability over the whole stop set",
    "error_stability": "mean over the stop set of sqrt(KL(p_t || p_t-1) / 2), the bound on the change of "
    "each sample's expected 0-1 error between consecutive models",
    "selected_entropy": "largest entropy (nats) in the batch this cycle selected, under this cycle's model",
    "selected_uncertainty": "largest 1 - top probability in the batch this cycle selected",
    "strategy_score": "mean of the strategy's scores over the unlabeled pool (scoring strategies)",
    "val_accuracy": "accuracy on the held-out validation share of the labeled set "
    "(needs --validation-fraction)",
    "n_labeled": "labeled samples used by this cycle's model",
    "n_queried": "labeled samples added since the initial set",
}

#: measures that compare a cycle with the previous one: absent at a trial's first cycle
PAIRWISE = frozenset({"kappa", "kappa_pool", "delta_f", "changed", "error_stability"})
#: measures of the batch a cycle selects: absent at the last cycle, which selects nothing
OF_SELECTION = frozenset({"selected_entropy", "selected_uncertainty", "strategy_score"})

History = Sequence[Mapping[str, float]]


class StoppingCriterion(Component):
    """Base class of stopping criteria.

    Subclasses set :attr:`measures` (names from :data:`MEASURES`) and implement
    :meth:`evaluate`. They keep no state of their own: everything they decide from is in
    the history the engine passes.
    """

    measures: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def kind_name(cls) -> str:
        return "stopping criterion"

    def evaluate(self, history: History) -> tuple[float, bool]:
        """``(value, fires)`` after the last cycle of ``history``.

        Args:
            history: one mapping per cycle so far, oldest first, from measure name to
                value; a measure is absent where it could not be measured (a pairwise
                measure at the first cycle, a selection measure at the last).

        Returns:
            the criterion's value at the last cycle (NaN where it has none yet) and whether
            it says to stop there.
        """
        raise NotImplementedError

    def check(self, history: History) -> tuple[float, bool]:
        """:meth:`evaluate`, with a NaN value never firing."""
        value, fires = self.evaluate(history)
        value = float(value)
        return value, bool(fires) and not math.isnan(value)


def series(history: History, measure: str) -> list[float]:
    """The values of one measure over the cycles that have it, oldest first."""
    return [float(h[measure]) for h in history if measure in h and not math.isnan(float(h[measure]))]


def latest(history: History, measure: str) -> float:
    """The measure at the last cycle of ``history`` (NaN where that cycle lacks it)."""
    if not history or measure not in history[-1]:
        return float("nan")
    return float(history[-1][measure])
