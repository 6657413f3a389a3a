"""The stopping criteria the core ships, each as its paper defines it.

Every criterion is a pure function of the per-cycle measures (see
:mod:`alscope.stopping.base`); where a paper and a library's code differ, the paper is
followed and the difference is written in ``docs/stopping.md``.
"""

from __future__ import annotations

import itertools
import math
import statistics
from typing import Literal

from pydantic import Field

from alscope.components import Params
from alscope.stopping.base import History, StoppingCriterion, latest, series

NAN = float("nan")


def _window_ready(history: History, measure: str, window: int) -> list[float] | None:
    """The last ``window`` values of ``measure`` when the last cycle has it and there are
    that many, else None."""
    if math.isnan(latest(history, measure)):
        return None
    values = series(history, measure)
    return values[-window:] if len(values) >= window else None


# -- agreement between consecutive models -------------------------------------------------


class WindowParams(Params):
    window: int = Field(default=3, ge=1, description="consecutive cycles (pairs of models) averaged")
    threshold: float = Field(default=0.99, gt=0, le=1, description="stop when the mean kappa exceeds this")


class StabilizingPredictions(StoppingCriterion):
    """Bloodgood & Vijay-Shanker (CoNLL 2009): stop when the mean Cohen's kappa between
    consecutive models' predictions on the stop set, over the last ``window`` pairs,
    exceeds ``threshold``."""

    Params = WindowParams
    measures = ("kappa",)

    def evaluate(self, history: History) -> tuple[float, bool]:
        window = _window_ready(history, "kappa", self.params.window)
        if window is None:
            return NAN, False
        mean = statistics.fmean(window)
        return mean, mean > self.params.threshold


class KappaAverageParams(Params):
    window: int = Field(default=3, ge=1, description="consecutive kappas averaged")
    kappa: float = Field(default=0.99, gt=0, le=1, description="stop when the mean kappa reaches this")


class KappaAverage(StoppingCriterion):
    """small-text's ``KappaAverage`` (as fixed in v1.3.3, PR #52): the mean of the last
    ``window`` kappas between consecutive predictions on the whole pool reaches ``kappa``;
    identical predictions count as kappa 1 (scikit-learn's kappa is undefined there)."""

    Params = KappaAverageParams
    measures = ("kappa_pool",)

    def evaluate(self, history: History) -> tuple[float, bool]:
        window = _window_ready(history, "kappa_pool", self.params.window)
        if window is None:
            return NAN, False
        mean = statistics.fmean(window)
        # 0.99 three times averages to 0.98999...: reaching the threshold is up to rounding
        return mean, mean >= self.params.kappa or math.isclose(mean, self.params.kappa)


class DeltaFParams(Params):
    window: int = Field(default=3, ge=1, description="consecutive cycles that must all be below threshold")
    threshold: float = Field(default=0.05, gt=0, lt=1, description="stop when delta F stays below this")


class DeltaF(StoppingCriterion):
    """Altschuler & Bloodgood (ICSC 2019): the predicted change of F, 1 - the F agreement
    of consecutive models on the stop set (positive class only, as small-text's PR #51
    fixed), below ``threshold`` for ``window`` consecutive cycles. With more than two
    classes the agreement is the mean over classes, each against the rest."""

    Params = DeltaFParams
    measures = ("delta_f",)

    def evaluate(self, history: History) -> tuple[float, bool]:
        window = _window_ready(history, "delta_f", self.params.window)
        if window is None:
            return latest(history, "delta_f"), False
        return window[-1], all(v < self.params.threshold for v in window)


class ChangeParams(Params):
    threshold: float = Field(
        default=0.0, ge=0, le=1, description="share of samples allowed to change (0: none, the paper's rule)"
    )


class ClassificationChange(StoppingCriterion):
    """Zhu, Wang & Hovy (COLING 2008): stop when no unlabeled sample's predicted class
    changes between two consecutive cycles (here the stop set's unlabeled samples; with
    ``threshold``, small-text's relaxation: at most that share changes)."""

    Params = ChangeParams
    measures = ("changed",)

    def evaluate(self, history: History) -> tuple[float, bool]:
        changed = latest(history, "changed")
        return changed, changed <= self.params.threshold


# -- uncertainty left on the pool -------------------------------------------------------------


def _below(default: float, what: str) -> type[Params]:
    """A ``threshold`` schema with a default, described for one criterion."""

    class Below(Params):
        threshold: float = Field(default=default, gt=0, description=f"stop when {what} falls below this")

    return Below


class OverallUncertainty(StoppingCriterion):
    """Zhu, Wang & Hovy (COLING 2008): stop when the mean uncertainty of the unlabeled
    samples (normalised entropy, as small-text, over the stop set's unlabeled samples)
    falls below ``threshold``."""

    Params = _below(0.05, "the mean normalised entropy")
    measures = ("entropy",)

    def evaluate(self, history: History) -> tuple[float, bool]:
        value = latest(history, "entropy")
        return value, value < self.params.threshold


class MaxConfidence(StoppingCriterion):
    """Zhu & Hovy (EMNLP 2007): stop when the entropy of each selected sample is below
    ``threshold``: with batches, the batch's largest entropy (nats)."""

    Params = _below(0.001, "the selected batch's largest entropy")
    measures = ("selected_entropy",)

    def evaluate(self, history: History) -> tuple[float, bool]:
        value = latest(history, "selected_entropy")
        return value, value < self.params.threshold


class MinExpectedError(StoppingCriterion):
    """Zhu, Wang & Hovy (COLING 2008): stop when the expected error on the unlabeled
    samples, the mean of 1 - the top probability, falls below ``threshold``."""

    Params = _below(0.01, "the expected error")
    measures = ("expected_error",)

    def evaluate(self, history: History) -> tuple[float, bool]:
        value = latest(history, "expected_error")
        return value, value < self.params.threshold


class LowAverageUncertainty(StoppingCriterion):
    """baal's ``LowAverageUncertaintyStoppingCriterion``: stop when the mean of the
    strategy's scores over the unlabeled pool falls below ``threshold`` (a scoring
    strategy's uncertainty, e.g. entropy or BALD)."""

    Params = _below(0.1, "the mean score")
    measures = ("strategy_score",)

    def evaluate(self, history: History) -> tuple[float, bool]:
        value = latest(history, "strategy_score")
        return value, value < self.params.threshold


# -- trends ----------------------------------------------------------------------------------


class ChangingConfidenceParams(Params):
    window: int = Field(default=3, ge=1, description="consecutive cycles the confidence must fall")
    mode: Literal["decreasing", "non_increasing"] = Field(
        default="decreasing",
        description="decreasing: it falls at each of them; non_increasing: it does not rise",
    )


class ChangingConfidence(StoppingCriterion):
    """Vlachos (Computer Speech & Language 2008): the classifier's confidence on a
    separate unlabeled set rises, then falls once the informative samples are used up:
    stop when the mean top probability on the stop set has fallen (``decreasing``) or
    not risen (``non_increasing``) at each of the last ``window`` cycles."""

    Params = ChangingConfidenceParams
    measures = ("confidence",)

    def evaluate(self, history: History) -> tuple[float, bool]:
        window = _window_ready(history, "confidence", self.params.window + 1)
        if window is None:
            return NAN, False
        steps = [b - a for a, b in itertools.pairwise(window)]
        falls = all(s < 0 for s in steps) if self.params.mode == "decreasing" else all(s <= 0 for s in steps)
        return window[-1] - window[0], falls


class ConvergenceParams(Params):
    window: int = Field(default=3, ge=1, description="k: cycles in each of the two windows compared")
    threshold: float = Field(default=5e-5, gt=0, description="stop when the gradient is below this")


def _converged(values: list[float], k: int, threshold: float, average: str) -> tuple[float, bool]:
    """Laws & Schütze's convergence, as Pullar-Strecker et al.'s code checks it: the
    gradient (the mean of the last ``k`` values minus the mean of the ``k`` before,
    shifted by one) is positive and below ``threshold`` while the latest value is the
    highest so far."""
    if len(values) < k + 1:
        return NAN, False
    mean = statistics.fmean if average == "mean" else statistics.median
    gradient = mean(values[-k:]) - mean(values[-k - 1 : -1])
    return gradient, values[-1] > max(values[:-1]) and 0 < gradient < threshold


class PerformanceConvergence(StoppingCriterion):
    """Laws & Schütze (COLING 2008): stop when the estimated performance converges. The
    estimate is their F from the predicted probabilities of the unlabeled samples,
    2 TP / (2 TP + FP + FN) with TP the sum of the winning probabilities; since the
    probabilities of a sample sum to 1 it equals the mean top probability, 1 - the
    expected error on the stop set's unlabeled samples."""

    Params = ConvergenceParams
    measures = ("expected_error",)

    def evaluate(self, history: History) -> tuple[float, bool]:
        if math.isnan(latest(history, "expected_error")):
            return NAN, False
        values = [1.0 - v for v in series(history, "expected_error")]
        return _converged(values, self.params.window, self.params.threshold, "mean")


class UncertaintyConvergence(StoppingCriterion):
    """Laws & Schütze (COLING 2008): stop when the confidence in the most uncertain
    selected sample, 1 - its uncertainty, converges (median over the windows, as in
    Pullar-Strecker et al.'s code)."""

    Params = ConvergenceParams
    measures = ("selected_uncertainty",)

    def evaluate(self, history: History) -> tuple[float, bool]:
        if math.isnan(latest(history, "selected_uncertainty")):
            return NAN, False
        values = [1.0 - v for v in series(history, "selected_uncertainty")]
        return _converged(values, self.params.window, self.params.threshold, "median")


class ErrorStabilityParams(Params):
    threshold: float = Field(
        default=0.01,
        gt=0,
        description="stop when the bound on the change of the expected error falls below this "
        "(the error change a batch of labels is worth)",
    )


class ErrorStability(StoppingCriterion):
    """Ishibashi & Hino (2021, arXiv:2104.01836): stop when the bound on the change of the
    generalisation error between consecutive models falls below ``threshold``. The paper
    bounds it with the KL divergence between consecutive posteriors; a deep network has
    no tractable posterior, so the bound is taken on the predictive distributions of the
    stop set, mean sqrt(KL(p_t || p_t-1) / 2) (Pinsker), which the posterior KL bounds in
    turn (data processing)."""

    Params = ErrorStabilityParams
    measures = ("error_stability",)

    def evaluate(self, history: History) -> tuple[float, bool]:
        value = latest(history, "error_stability")
        return value, value < self.params.threshold


# -- labels and validation ---------------------------------------------------------------------


class ValidationParams(Params):
    patience: int = Field(default=10, ge=1, description="cycles the validation accuracy must not move")
    epsilon: float = Field(default=1e-4, ge=0, description="a change up to this counts as none")


class ValidationEarlyStopping(StoppingCriterion):
    """baal's ``EarlyStoppingCriterion`` on the validation accuracy: stop when it has
    stayed within ``epsilon`` of its latest value for ``patience`` cycles (the last
    ``patience`` + 1 values). Needs ``--validation-fraction``."""

    Params = ValidationParams
    measures = ("val_accuracy",)

    def evaluate(self, history: History) -> tuple[float, bool]:
        window = _window_ready(history, "val_accuracy", self.params.patience + 1)
        if window is None:
            return latest(history, "val_accuracy"), False
        return window[-1], all(abs(v - window[-1]) <= self.params.epsilon for v in window)


class BudgetParams(Params):
    budget: int = Field(ge=1, description="labels to add after the initial set")


class LabellingBudget(StoppingCriterion):
    """baal's ``LabellingBudgetStoppingCriterion``: stop once ``budget`` labels have been
    added to the initial set."""

    Params = BudgetParams
    measures = ("n_queried",)

    def evaluate(self, history: History) -> tuple[float, bool]:
        queried = latest(history, "n_queried")
        return queried, queried >= self.params.budget
