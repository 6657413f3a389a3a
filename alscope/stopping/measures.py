"""The measures stopping criteria read, computed from predicted probabilities.

Inputs are numpy arrays: ``probs`` ``(S, C)`` of this cycle's model on the stop set,
``previous`` the same of the previous cycle's model (None at a trial's first cycle),
``unlabeled`` a boolean mask over the stop set. Cohen's kappa comes from scikit-learn;
the rest are a few array reductions.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import entr, rel_entr


def kappa(previous: np.ndarray, current: np.ndarray, n_classes: int) -> float:
    """Cohen's kappa of two label vectors; 1 when they are identical (scikit-learn's kappa
    is 0/0 there when one class fills both)."""
    from sklearn.metrics import cohen_kappa_score

    if np.array_equal(previous, current):
        return 1.0
    return float(cohen_kappa_score(previous, current, labels=np.arange(n_classes)))


def delta_f(previous: np.ndarray, current: np.ndarray, n_classes: int) -> float:
    """1 - the F agreement of two label vectors, 2A / (2A + B + C) with A the samples both
    give the positive class and B, C those only one does (Altschuler & Bloodgood). Two
    classes: class 1 is the positive one; more: the mean over the classes that either
    vector predicts, each against the rest."""
    classes = [1] if n_classes == 2 else sorted(set(np.unique(previous)) | set(np.unique(current)))
    values = []
    for c in classes:
        old, new = previous == c, current == c
        both = int(np.sum(old & new))
        either = both * 2 + int(np.sum(old & ~new)) + int(np.sum(~old & new))
        values.append(0.0 if either == 0 else 1.0 - 2.0 * both / either)
    return float(np.mean(values))


def normalized_entropy(probs: np.ndarray) -> np.ndarray:
    n_classes = probs.shape[1]
    return entr(probs).sum(axis=1) / (math.log(n_classes) if n_classes > 1 else 1.0)


def error_stability(previous: np.ndarray, current: np.ndarray) -> float:
    """Mean over samples of sqrt(KL(current || previous) / 2), Pinsker's bound on how much
    each sample's expected 0-1 error can change between the two predictive distributions."""
    floor = np.finfo(np.float64).tiny  # a class the previous model gave probability 0
    kl = rel_entr(current, np.maximum(previous, floor)).sum(axis=1)
    return float(np.mean(np.sqrt(np.maximum(kl, 0.0) / 2.0)))


def stop_set_measures(
    probs: np.ndarray, previous: np.ndarray | None, unlabeled: np.ndarray
) -> dict[str, float]:
    """The stop-set measures of one cycle (see :data:`alscope.stopping.MEASURES`)."""
    probs = np.asarray(probs, dtype=np.float64)
    n_classes = probs.shape[1]
    predicted = probs.argmax(axis=1)
    top = probs.max(axis=1)
    out: dict[str, float] = {"confidence": float(top.mean())}
    if unlabeled.any():
        out["entropy"] = float(normalized_entropy(probs[unlabeled]).mean())
        out["expected_error"] = float((1.0 - top[unlabeled]).mean())
    if previous is not None:
        previous = np.asarray(previous, dtype=np.float64)
        before = previous.argmax(axis=1)
        out["kappa"] = kappa(before, predicted, n_classes)
        out["delta_f"] = delta_f(before, predicted, n_classes)
        if unlabeled.any():
            out["changed"] = float(np.mean(before[unlabeled] != predicted[unlabeled]))
        out["error_stability"] = error_stability(previous, probs)
    return out


def selection_measures(probs: np.ndarray) -> dict[str, float]:
    """Measures of the batch a cycle selected, from this cycle's model's probabilities."""
    if len(probs) == 0:
        return {}
    probs = np.asarray(probs, dtype=np.float64)
    return {
        "selected_entropy": float(entr(probs).sum(axis=1).max()),
        "selected_uncertainty": float((1.0 - probs.max(axis=1)).max()),
    }
