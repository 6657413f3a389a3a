"""Seeded splits: stratified ones shared by every dataset plugin (tabular, image, text), and
the uniform hold-out of labeled samples the engine and the trainer use."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from alscope.errors import DataError


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (pool, test) with ``fraction`` of each class in test.

    Classes with a single sample stay in the pool (stratification needs two).
    """
    if not 0.0 < fraction < 1.0:
        raise DataError(f"test_fraction={fraction!r} is invalid: it must be in (0, 1)")
    labels = np.asarray(labels)
    indices = np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    singletons = np.isin(labels, classes[counts < 2])
    splittable = indices[~singletons]
    try:
        pool, test = train_test_split(
            splittable, test_size=fraction, random_state=seed, stratify=labels[splittable]
        )
    except ValueError as exc:
        raise DataError(
            f"cannot hold out {fraction:.0%} of {len(labels)} samples with every class on both sides "
            f"({exc}); raise test_fraction or give a separate test set"
        ) from None
    return np.sort(np.concatenate([pool, indices[singletons]])), np.sort(test)


def random_holdout(labeled: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train part, held-out part) of the labeled indices, both sorted, drawn uniformly: the
    held-out labeled samples of temperature scaling and of early stopping. At least one
    sample on each side; fewer than two labeled samples hold nothing out."""
    labeled = np.asarray(labeled, dtype=np.int64)
    if len(labeled) < 2:
        return labeled, np.empty(0, dtype=np.int64)
    n_held = int(min(max(1, round(fraction * len(labeled))), len(labeled) - 1))
    perm = np.random.default_rng(seed).permutation(len(labeled))
    return np.sort(labeled[perm[n_held:]]), np.sort(labeled[perm[:n_held]])


def cap_pool(
    labels: np.ndarray,
    seed: int,
    max_size: int | None = None,
    per_class: int | None = None,
) -> np.ndarray:
    """Indices kept after capping: at most ``per_class`` per class, then ``max_size`` in all.

    The ``max_size`` cap is stratified, so class proportions are kept.
    """
    labels = np.asarray(labels)
    keep = np.arange(len(labels))
    rng = np.random.default_rng(seed)
    if per_class is not None:
        if per_class < 1:
            raise DataError(f"samples_per_class={per_class!r} is invalid: it must be >= 1")
        parts = []
        for cls in np.unique(labels):
            members = keep[labels == cls]
            parts.append(rng.permutation(members)[:per_class])
        keep = np.sort(np.concatenate(parts))
    if max_size is not None:
        if max_size < 1:
            raise DataError(f"max_pool_size={max_size!r} is invalid: it must be >= 1")
        if max_size < len(keep):
            sub_labels = labels[keep]
            _, counts = np.unique(sub_labels, return_counts=True)
            if counts.min() >= 2 and max_size >= len(counts):
                keep, _ = train_test_split(keep, train_size=max_size, random_state=seed, stratify=sub_labels)
            else:
                keep = rng.permutation(keep)[:max_size]
            keep = np.sort(keep)
    return keep
