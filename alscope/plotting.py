"""Learning-curve figures (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def mean_with_band(
    ax: Any, x: np.ndarray, mean: np.ndarray, std: np.ndarray, label: str, **style: Any
) -> Any:
    """One curve with its +-1 std band in the line's colour; returns the line."""
    (line,) = ax.plot(x, mean, marker="o", markersize=3, label=label, **style)
    ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    return line


def plot_learning_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    path: Path,
    *,
    title: str = "",
    ylabel: str = "accuracy",
) -> Path:
    """One line per label with a +-1 std band; ``curves[label] = (x, mean, std)``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for label, (x, mean, std) in curves.items():
        x, mean, std = (np.asarray(a, dtype=float) for a in (x, mean, std))
        mean_with_band(ax, x, mean, std, label)
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


# -- figures of the HTML report (PNG bytes; the page inlines them) ---------------------

#: dots per inch of the report's figures: their pixel size is inches x this
REPORT_DPI = 96


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    # no bbox_inches="tight": the image keeps the size the page declares
    fig.savefig(buffer, format="png", dpi=REPORT_DPI)
    _pyplot().close(fig)
    return buffer.getvalue()


def curves_png(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    *,
    pool_sizes: Mapping[str, float],
    ylabel: str,
    title: str,
    stops: Mapping[str, list[tuple[str, float]]] | None = None,
    size: tuple[float, float] = (11.0, 4.0),
) -> bytes:
    """Learning curves with +-1 std bands on two scales: the labeled count, and the
    fraction of the pool (``n / pool_sizes[label]``; that panel says so where a label's
    pool size is unknown). ``stops[label]`` marks where stopping criteria fired:
    ``(criterion, labeled count)``."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=size)
    markers = "vs^DPX*ho"
    criteria = sorted({c for marks in (stops or {}).values() for c, _ in marks})
    palette = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")
    for i, (label, (x, mean, std)) in enumerate(curves.items()):
        style = {"color": palette(i % palette.N), "linestyle": ("-", "--", ":")[(i // palette.N) % 3]}
        x, mean, std = (np.asarray(a, dtype=float) for a in (x, mean, std))
        pool = float(pool_sizes.get(label, np.nan))
        for ax, scale in zip(axes, (1.0, pool), strict=True):
            if not np.isfinite(scale) or scale <= 0:
                continue
            line = mean_with_band(ax, x / scale, mean, std, label, **style)
            for criterion, at in (stops or {}).get(label, []):
                y = float(np.interp(at, x, mean))
                ax.plot(
                    [at / scale],
                    [y],
                    linestyle="none",
                    marker=markers[criteria.index(criterion) % len(markers)],
                    markersize=9,
                    markerfacecolor="none",
                    color=line.get_color(),
                    label=f"{label}: {criterion} stops" if ax is axes[0] else None,
                )
    axes[0].set_xlabel("labeled samples")
    axes[1].set_xlabel("fraction of the pool labeled")
    if not any(np.isfinite(float(pool_sizes.get(label, np.nan))) for label in curves):
        axes[1].text(0.5, 0.5, "pool size not logged", ha="center", va="center", transform=axes[1].transAxes)
    for ax in axes:
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    if len(names) <= 8:
        axes[0].legend(loc="lower right", fontsize="x-small")
        _fixed_layout(fig)
    else:  # beside the panels, not over the curves: a report may compare dozens of strategies
        fig.legend(
            handles, names, loc="center right", fontsize="x-small", ncol=1 + len(names) // 24, frameon=False
        )
        _fixed_layout(fig, right=0.8 if len(names) < 24 else 0.7)
    fig.suptitle(title, fontsize="medium")
    return _png(fig)


def cost_png(
    points: Mapping[str, tuple[float, float, float]],
    *,
    ylabel: str,
    title: str,
    size: tuple[float, float] = (11.0, 4.0),
) -> bytes:
    """AUBC against the total selection time and against the total training time of a
    trial: ``points[label] = (selection seconds, training seconds, AUBC)``."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=size)
    for ax, which, xlabel in zip(
        axes, (0, 1), ("total selection time per trial (s)", "total training time per trial (s)"), strict=True
    ):
        shown = [
            (label, v[which], v[2])
            for label, v in points.items()
            if np.isfinite(v[which]) and np.isfinite(v[2])
        ]
        if shown:
            ax.scatter(
                [x for _, x, _ in shown], [y for _, _, y in shown], s=28, c=range(len(shown)), cmap="tab10"
            )
        for label, x, y in shown:
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 3), fontsize="x-small")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        spread = [x for _, x, _ in shown if x > 0]
        if len(spread) == len(shown) and spread and max(spread) > 20 * min(spread):
            ax.set_xscale("log")  # strategies' costs differ by orders of magnitude
    fig.suptitle(title, fontsize="medium")
    _fixed_layout(fig)
    return _png(fig)


def composition_png(
    counts: Mapping[str, tuple[np.ndarray, list[str], np.ndarray]],
    *,
    title: str,
    per_row: int = 8,
    width: float = 11.0,
    row_height: float = 2.3,
) -> bytes:
    """A stacked bar per strategy and cycle of the mean number of queried samples of each
    class, the strategies side by side (``per_row`` to a row). ``counts[label] = (labeled
    counts (K,), class names (C,), counts (K, C))``; a class named ``ood`` (open-set
    pools) is drawn grey.

    All bars of a row are drawn by one ``bar`` call per class: one Axes with a group of
    bars per strategy renders in a fraction of the time of one Axes per strategy."""
    plt = _pyplot()
    from matplotlib.collections import PolyCollection

    labels = list(counts)
    rows = max(1, -(-len(labels) // per_row))
    fig, axes = plt.subplots(rows, 1, figsize=(width, row_height * rows + 0.9), squeeze=False)
    from alscope.report import class_sort_key

    classes = sorted({c for _, names, _ in counts.values() for c in names}, key=class_sort_key)
    colours = plt.get_cmap("tab20" if len(classes) > 10 else "tab10")
    colour = {c: ("0.6" if c == "ood" else colours(i % colours.N)) for i, c in enumerate(classes)}
    for r, ax in enumerate(axes[:, 0]):
        chunk = labels[r * per_row : (r + 1) * per_row]
        positions: list[np.ndarray] = []
        centres, start = [], 0.0
        for label in chunk:
            k = len(counts[label][0])
            positions.append(start + np.arange(k))
            centres.append(start + (k - 1) / 2)
            start += k + 1.5  # a gap between strategies
        boxes, fills = [], []
        for label, x in zip(chunk, positions, strict=True):
            _, names, values = counts[label]
            tops = np.cumsum(values, axis=1)
            for j, name in enumerate(names):
                low, high = tops[:, j] - values[:, j], tops[:, j]
                for xi, lo, hi in zip(x, low, high, strict=True):
                    if hi > lo:
                        boxes.append(((xi - 0.42, lo), (xi + 0.42, lo), (xi + 0.42, hi), (xi - 0.42, hi)))
                        fills.append(colour[name])
        # one collection of rectangles: thousands of bar patches draw far slower
        ax.add_collection(PolyCollection(boxes, facecolors=fills, linewidths=0))
        ax.set_ylim(0, max((b[2][1] for b in boxes), default=1.0) * 1.05)
        ax.set_xticks(centres, chunk, fontsize="x-small")
        ax.tick_params(axis="y", labelsize="x-small")
        ax.set_ylabel("queried", fontsize="x-small")
        # the same slots in every row, so that a bar has one width whatever the count
        slots = per_row * (max(len(counts[label][0]) for label in labels) + 1.5)
        ax.set_xlim(-1, max(start - 0.5, slots - 0.5))
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour[c]) for c in classes]
    fig.legend(
        handles, classes, loc="lower center", ncol=min(len(classes), 12), fontsize="x-small", frameon=False
    )
    fig.suptitle(f"{title}: one bar per cycle, left to right (mean over trials)", fontsize="small")
    fig.subplots_adjust(
        left=0.06,
        right=0.99,
        top=1 - 0.45 / fig.get_figheight(),
        bottom=0.7 / fig.get_figheight(),
        hspace=0.45,
    )
    return _png(fig)


def _fixed_layout(fig: Any, right: float = 0.985) -> None:
    """Margins for two panels side by side. ``tight_layout`` would draw the figure once
    more to measure it, which doubles the time of every report figure."""
    fig.subplots_adjust(left=0.07, right=right, bottom=0.13, top=0.88, wspace=0.22)


def penalty_png(matrix: np.ndarray, labels: list[str], *, title: str) -> bytes:
    """A heatmap of the pairwise penalty matrix (rows beat columns)."""
    plt = _pyplot()
    side = max(3.5, 0.45 * len(labels) + 2.0)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    image = ax.imshow(matrix, cmap="Reds", vmin=0.0)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize="x-small")
    ax.set_yticks(range(len(labels)), labels, fontsize="x-small")
    ax.set_xlabel("loser")
    ax.set_ylabel("winner")
    if len(labels) <= 15:
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize="xx-small")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(title, fontsize="small")
    fig.tight_layout()
    return _png(fig)
