"""Learning-curve figures (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np


def plot_learning_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    path: Path,
    *,
    title: str = "",
    ylabel: str = "accuracy",
) -> Path:
    """One line per label with a +-1 std band; ``curves[label] = (x, mean, std)``."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for label, (x, mean, std) in curves.items():
        x, mean, std = (np.asarray(a, dtype=float) for a in (x, mean, std))
        (line,) = ax.plot(x, mean, marker="o", markersize=3, label=label)
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("labeled samples")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
