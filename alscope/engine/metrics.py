"""Per-cycle evaluation metrics and the area under the budget curve."""

from __future__ import annotations

import numpy as np

# numpy >= 2 names it trapezoid; scipy.integrate's import would cost ``alscope report`` a second
trapezoid = getattr(np, "trapezoid", None) or np.trapz  # type: ignore[attr-defined,unused-ignore]


def sample_std(values: np.ndarray | list[float]) -> float:
    """The sample standard deviation over trials (``ddof=1``, the unbiased variance): what
    "± std" means in every alscope table. One trial has no spread to estimate: 0."""
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    return float(np.std(x, ddof=1)) if len(x) > 1 else 0.0


def ci95_halfwidth(values: np.ndarray | list[float]) -> float:
    """Half-width of the 95 % confidence interval of the mean over trials (Student's t with
    n - 1 degrees of freedom): ``mean ± this``. NaN below 3 trials, where it says little."""
    # scipy.special's quantile of Student's t, not scipy.stats.t.ppf: importing scipy.stats
    # costs ``alscope report`` 0.7 s and each ppf call about 5 ms of argument checking
    from scipy.special import stdtrit

    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    if len(x) < 3:
        return float("nan")
    return float(stdtrit(len(x) - 1, 0.975) * np.std(x, ddof=1) / np.sqrt(len(x)))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al. 2017).

    Written here because scikit-learn has no ECE and torchmetrics would be a
    dependency for ten lines.
    """
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def classification_metrics(probs: np.ndarray, labels: np.ndarray, n_classes: int) -> dict[str, float]:
    """Accuracy, macro-F1, balanced accuracy, NLL, ECE and per-class accuracy (recall)."""
    # imported here: ``alscope report`` reads the AUBC helpers of this module, and
    # scikit-learn's import would cost it seconds
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, recall_score

    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    pred = probs.argmax(axis=1)
    all_classes = np.arange(n_classes)
    present = np.unique(labels)
    per_class = recall_score(labels, pred, labels=all_classes, average=None, zero_division=0)
    picked = np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)
    metrics = {
        "accuracy": float(accuracy_score(labels, pred)),
        "macro_f1": float(f1_score(labels, pred, labels=present, average="macro", zero_division=0)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, pred)),
        "nll": float(-np.log(picked).mean()),
        "ece": expected_calibration_error(probs, labels),
    }
    for c in present:
        metrics[f"class_accuracy/{int(c)}"] = float(per_class[c])
    return metrics


def aubc(labeled_counts: np.ndarray | list[float], values: np.ndarray | list[float]) -> float:
    """Area under the budget curve: trapezoid over the labeled count, divided by the
    budget range so that a constant accuracy ``a`` gives ``a``."""
    x = np.asarray(labeled_counts, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return float("nan")
    if len(x) == 1 or x[-1] == x[0]:
        return float(y.mean())
    return float(trapezoid(y, x) / (x[-1] - x[0]))
