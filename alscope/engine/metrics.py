"""Per-cycle evaluation metrics and the area under the budget curve."""

from __future__ import annotations

import numpy as np
from scipy.integrate import trapezoid
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, recall_score


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
