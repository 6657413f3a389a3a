"""Specs of the stopping criteria the core ships (targets in :mod:`alscope.stopping.criteria`)."""

from __future__ import annotations

from alscope.specs import ComponentSpec, StoppingSpec

_C = "alscope.stopping.criteria"

STOPPING_CRITERIA: list[ComponentSpec] = [
    StoppingSpec(
        "stabilizing_predictions",
        f"{_C}:StabilizingPredictions",
        "consecutive models agree on a stop set: mean Cohen's kappa over a window above 0.99",
        aliases=("SP", "StabilizingPredictions"),
        paper="Bloodgood & Vijay-Shanker, CoNLL 2009: A method for stopping active learning based on "
        "stabilizing predictions and the need for user-adjustable stopping",
        needs=("kappa",),
    ),
    StoppingSpec(
        "kappa_average",
        f"{_C}:KappaAverage",
        "small-text's KappaAverage: mean kappa of consecutive predictions on the whole pool",
        aliases=("KappaAverage",),
        paper="small-text (Schröder et al., EACL 2023 demo), after Bloodgood & Vijay-Shanker 2009",
        needs=("kappa_pool",),
    ),
    StoppingSpec(
        "delta_f",
        f"{_C}:DeltaF",
        "predicted change of F between consecutive models stays below a threshold",
        aliases=("DeltaFScore", "delta_f_score", "PCF"),
        paper="Altschuler & Bloodgood, ICSC 2019: Stopping active learning based on predicted change "
        "of F measure for text classification",
        needs=("delta_f",),
    ),
    StoppingSpec(
        "classification_change",
        f"{_C}:ClassificationChange",
        "no unlabeled sample changes its predicted class between two cycles",
        aliases=("ClassificationChange", "CC"),
        paper="Zhu, Wang & Hovy, COLING 2008: Multi-criteria-based strategy to stop active learning "
        "for data annotation",
        needs=("changed",),
    ),
    StoppingSpec(
        "overall_uncertainty",
        f"{_C}:OverallUncertainty",
        "mean uncertainty of the unlabeled samples below a threshold",
        aliases=("OverallUncertainty", "OU"),
        paper="Zhu, Wang & Hovy, COLING 2008: Multi-criteria-based strategy to stop active learning "
        "for data annotation",
        needs=("entropy",),
    ),
    StoppingSpec(
        "max_confidence",
        f"{_C}:MaxConfidence",
        "every selected sample's entropy below a threshold",
        aliases=("MaxConfidence", "MC"),
        paper="Zhu & Hovy, EMNLP 2007: Active learning for word sense disambiguation with methods for "
        "addressing the class imbalance problem",
        needs=("selected_entropy",),
    ),
    StoppingSpec(
        "min_expected_error",
        f"{_C}:MinExpectedError",
        "expected error on the unlabeled samples below a threshold",
        aliases=("MinExpectedError", "MEE", "min_error"),
        paper="Zhu, Wang & Hovy, COLING 2008: Multi-criteria-based strategy to stop active learning "
        "for data annotation",
        needs=("expected_error",),
    ),
    StoppingSpec(
        "changing_confidence",
        f"{_C}:ChangingConfidence",
        "the confidence on a stop set falls for several cycles in a row",
        aliases=("ChangingConfidence", "decreasing_confidence"),
        paper="Vlachos, Computer Speech & Language 2008: A stopping criterion for active learning",
        needs=("confidence",),
    ),
    StoppingSpec(
        "performance_convergence",
        f"{_C}:PerformanceConvergence",
        "the estimated F on the unlabeled samples converges",
        aliases=("PerformanceConvergence",),
        paper="Laws & Schütze, COLING 2008: Stopping criteria for active learning of named entity "
        "recognition",
        needs=("expected_error",),
    ),
    StoppingSpec(
        "uncertainty_convergence",
        f"{_C}:UncertaintyConvergence",
        "the uncertainty of the most uncertain selected sample converges",
        aliases=("UncertaintyConvergence",),
        paper="Laws & Schütze, COLING 2008: Stopping criteria for active learning of named entity "
        "recognition",
        needs=("selected_uncertainty",),
    ),
    StoppingSpec(
        "validation_early_stopping",
        f"{_C}:ValidationEarlyStopping",
        "the validation accuracy stops moving for a number of cycles (needs --validation-fraction)",
        aliases=("EarlyStoppingCriterion", "early_stopping"),
        paper="baal (Atighehchian et al., 2020): EarlyStoppingCriterion",
        needs=("val_accuracy",),
    ),
    StoppingSpec(
        "low_average_uncertainty",
        f"{_C}:LowAverageUncertainty",
        "the mean of the strategy's scores over the pool below a threshold",
        aliases=("LowAverageUncertaintyStoppingCriterion",),
        paper="baal (Atighehchian et al., 2020): LowAverageUncertaintyStoppingCriterion",
        needs=("strategy_score",),
    ),
    StoppingSpec(
        "labelling_budget",
        f"{_C}:LabellingBudget",
        "a number of labels added after the initial set",
        aliases=("LabellingBudgetStoppingCriterion", "labeling_budget", "budget"),
        paper="baal (Atighehchian et al., 2020): LabellingBudgetStoppingCriterion",
        needs=("n_queried",),
    ),
    StoppingSpec(
        "error_stability",
        f"{_C}:ErrorStability",
        "the bound on the error change between consecutive models below a threshold",
        aliases=("ErrorStability",),
        paper="Ishibashi & Hino, 2021 (arXiv:2104.01836): Stopping criterion for active learning "
        "based on error stability",
        needs=("error_stability",),
    ),
]
