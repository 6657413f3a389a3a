"""One self-contained HTML page per experiment: ``alscope report --html report.html``.

The page holds, per setting (dataset, scenario): learning curves with ± std bands on
both scales (labeled count and fraction of the pool) for each chosen metric, with the
stopping criteria marked where they fired; the AUBC ranking with selection and
training time; AUBC against selection and training cost; what each strategy queried,
class by class and cycle by cycle (and query precision where an open-set scenario
logged it). Over all settings: the pairwise penalty matrix
(:func:`alscope.report.penalty_matrix`). Last, every run with the command that started
it and its exact config.

Figures are matplotlib PNGs inlined as ``data:`` URIs and the page is rendered by a
Jinja2 template (``alscope/templates/report.html.j2``): it needs no network and opens
from disk. This module never imports torch.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import multiprocessing as mp
import os
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alscope.errors import ConfigError
from alscope.report import (
    Report,
    _interval,
    _pm,
    _seconds,
    _stop_cells,
    class_sort_key,
    config_from_params,
    curve_stats,
)

#: the metric an open-set scenario logs per cycle; shown with the composition
QUERY_PRECISION = "query_precision"


@dataclass(frozen=True)
class Figure:
    """An inlined PNG with the pixel size the page declares for it."""

    src: str
    width: int
    height: int
    alt: str

    @classmethod
    def from_png(cls, png: bytes, alt: str) -> Figure:
        width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
        return cls("data:image/png;base64," + base64.b64encode(png).decode("ascii"), width, height, alt)


class _PendingFigure:
    """A figure of the page that is drawn with the others (:class:`_FigureQueue`); the
    template reads it as a :class:`Figure` once it is drawn."""

    def __init__(self, alt: str) -> None:
        self.alt = alt
        self.figure: Figure | None = None

    def __getattr__(self, name: str) -> Any:
        if name == "figure":
            raise AttributeError(name)
        if self.figure is None:
            raise RuntimeError(f"figure {self.alt!r} read before it was drawn")
        return getattr(self.figure, name)


class _FigureQueue:
    """The page's figures, drawn at once so that they can be drawn in parallel.

    matplotlib draws one figure at a time per process, and drawing is most of the
    page's cost (13 figures of 0.2-0.4 s for 100 runs), so with more than one CPU the
    figures are drawn in forked worker processes. Forked children inherit the imported
    matplotlib and the data (no pickling of the inputs, no re-import); where fork is not
    available, or a worker dies, they are drawn here one by one."""

    #: below this many figures a pool costs more than it saves
    PARALLEL_FROM = 4

    def __init__(self) -> None:
        self._jobs: list[tuple[_PendingFigure, Callable[..., bytes], tuple[Any, ...], dict[str, Any]]] = []

    def add(self, alt: str, draw: Callable[..., bytes], *args: Any, **kwargs: Any) -> _PendingFigure:
        pending = _PendingFigure(alt)
        self._jobs.append((pending, draw, args, kwargs))
        return pending

    def draw(self) -> None:
        jobs, self._jobs = self._jobs, []
        workers = min(len(jobs), _usable_cpus(), 8)
        pngs: list[bytes] | None = None
        if workers > 1 and len(jobs) >= self.PARALLEL_FROM and "fork" in mp.get_all_start_methods():
            pngs = _draw_in_workers(jobs, workers)
        if pngs is None:
            pngs = [draw(*args, **kwargs) for _, draw, args, kwargs in jobs]
        for (pending, *_), png in zip(jobs, pngs, strict=True):
            pending.figure = Figure.from_png(png, pending.alt)


_FORKED_JOBS: list[tuple[Callable[..., bytes], tuple[Any, ...], dict[str, Any]]] = []


def _draw_forked(index: int) -> bytes:
    draw, args, kwargs = _FORKED_JOBS[index]
    return draw(*args, **kwargs)


def _draw_in_workers(jobs: list[Any], workers: int) -> list[bytes] | None:
    """Each job drawn in a forked worker (jobs are found by index in the inherited
    module state, so only the PNG bytes cross the pipe); None when the pool fails."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    _FORKED_JOBS[:] = [(draw, args, kwargs) for _, draw, args, kwargs in jobs]
    try:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            return list(pool.map(_draw_forked, range(len(jobs))))
    except (BrokenProcessPool, OSError):
        return None
    finally:
        _FORKED_JOBS.clear()


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def build_html(
    reports: Sequence[Report],
    *,
    experiment: str,
    tracking_uri: str,
    configs: Mapping[str, str] | None = None,
    alpha: float = 0.05,
) -> str:
    """The page, from one :class:`Report` per chosen metric (the first ranks and builds
    the penalty matrix). ``configs`` maps a parent run id to its ``config.yaml``."""
    import jinja2

    from alscope.plotting import composition_png, cost_png, curves_png, penalty_png

    main = reports[0]
    configs = configs or {}
    pools = _pool_sizes(main)
    precision_curves = _other_metric(main, QUERY_PRECISION)
    figures = _FigureQueue()
    settings = []
    for dataset, scenario in main.blocks():
        rows, _ = main._block(dataset, scenario)
        name = f"{dataset} / {scenario}"
        curves = []
        for rep in reports:
            data = _curves(rep.curves, dataset, scenario)
            if data:
                stops = _stop_marks(rep, dataset, scenario) if rep is main else None
                curves.append(
                    figures.add(
                        f"learning curves of {rep.metric} on {name}",
                        curves_png,
                        data,
                        pool_sizes=pools.get((dataset, scenario), {}),
                        ylabel=rep.metric,
                        title=f"{name}: {rep.metric}",
                        stops=stops,
                    )
                )
        cost = {
            str(r.label): (float(r.total_selection_time), float(r.total_train_time), float(r.aubc_mean))
            for r in rows.itertuples(index=False)
        }
        composition = _composition(main, dataset, scenario)
        precision = _curves(precision_curves, dataset, scenario)
        settings.append(
            {
                "name": name,
                "anchor": _anchor(name),
                "curves": curves,
                "ranking": _ranking_rows(rows),
                "cost": figures.add(
                    f"AUBC against selection and training time on {name}",
                    cost_png,
                    cost,
                    ylabel=f"AUBC ({main.metric})",
                    title=f"{name}: benefit against cost",
                ),
                "composition": None
                if not composition
                else figures.add(
                    f"classes queried per cycle on {name}",
                    composition_png,
                    composition,
                    title=f"{name}: queried classes",
                ),
                "precision": None
                if not precision
                else figures.add(
                    f"query precision on {name}",
                    curves_png,
                    precision,
                    pool_sizes=pools.get((dataset, scenario), {}),
                    ylabel=QUERY_PRECISION,
                    title=f"{name}: query precision (share of queried samples that are in-distribution)",
                ),
                "stops": _stop_rows(main, dataset, scenario),
            }
        )
    penalty = main.penalty(alpha=alpha)
    labels = list(penalty.matrix.index)
    matrix = penalty.matrix.to_numpy(dtype=float)
    wins, losses = penalty.wins, penalty.losses
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("alscope", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    template = environment.get_template("report.html.j2")
    context = dict(
        experiment=experiment,
        tracking_uri=tracking_uri,
        generated=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        metric=main.metric,
        metrics=[r.metric for r in reports],
        n_runs=len(main.runs),
        n_trials=int(main.trial_aubc["trial_run_id"].nunique()) if len(main.trial_aubc) else 0,
        settings=settings,
        penalty={
            "labels": labels,
            "rows": [
                {
                    "label": label,
                    "cells": [
                        _penalty_cell(matrix[i, j], i == j, len(penalty.settings)) for j in range(len(labels))
                    ],
                    "wins": _number(wins.iloc[i]),
                }
                for i, label in enumerate(labels)
            ],
            "losses": [_number(v) for v in losses],
            "settings": [f"{d} / {s}" for d, s in penalty.settings],
            "alpha": alpha,
            "figure": None
            if len(labels) < 2
            else figures.add(
                "pairwise penalty matrix",
                penalty_png,
                matrix,
                labels,
                title=f"pairwise penalty matrix ({main.metric})",
            ),
        },
        runs=_run_rows(main, configs),
    )
    figures.draw()
    return template.render(**context)


def write_html(
    reports: Report | Sequence[Report],
    path: Path | str,
    *,
    experiment: str = "",
    tracking_uri: str = "",
    configs: Mapping[str, str] | None = None,
) -> Path:
    """Write the page of :func:`build_html` to ``path`` (UTF-8) and return it."""
    reports = [reports] if isinstance(reports, Report) else list(reports)
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--html {str(path)!r} is a folder; give a file name such as report.html")
    html = build_html(reports, experiment=experiment, tracking_uri=tracking_uri, configs=configs)
    partial = path.with_name(path.name + ".partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(html, encoding="utf-8")
        partial.replace(path)  # a reader never sees half a page
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ConfigError(f"cannot write the HTML report to {str(path)!r}: {exc.strerror or exc}") from None
    return path


# -- pieces ----------------------------------------------------------------------------


def _block_rows(frame: pd.DataFrame, dataset: str, scenario: str) -> pd.DataFrame:
    return frame[(frame["dataset"] == dataset) & (frame["scenario"] == scenario)]


def _curves(
    curves: pd.DataFrame, dataset: str, scenario: str
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``{label: (labeled counts, mean, std)}`` of one setting from a curve table
    (:func:`alscope.report.curve_stats`)."""
    block = _block_rows(curves, dataset, scenario).dropna(subset=["mean"])
    return {
        str(label): (g["n_labeled"].to_numpy(), g["mean"].to_numpy(), g["std"].fillna(0.0).to_numpy())
        for label, g in block.groupby("label", sort=False)
    }


def _other_metric(rep: Report, metric: str) -> pd.DataFrame:
    """The curve table of another per-cycle metric the trials logged (empty where none)."""
    frame = rep.trial_metrics
    if frame.empty or metric not in frame.columns or frame[metric].isna().all():
        return pd.DataFrame(columns=["dataset", "scenario", "label", "n_labeled", "mean", "std"])
    return curve_stats(frame, metric, ["dataset", "scenario", "label"])


def _pool_sizes(rep: Report) -> dict[tuple[str, str], dict[str, float]]:
    """Per setting and label, the pool size the runs logged (``n_pool``)."""
    if rep.runs.empty:
        return {}
    label_of = {
        (str(r.dataset), str(r.scenario), str(r.strategy), str(r.backbone)): str(r.label)
        for r in rep.aubc.itertuples(index=False)
    }
    sizes: dict[tuple[str, str], dict[str, list[float]]] = {}
    for r in rep.runs.itertuples(index=False):
        label = label_of.get((str(r.dataset), str(r.scenario), str(r.strategy), str(r.backbone)))
        if label is not None and np.isfinite(r.n_pool):
            sizes.setdefault((str(r.dataset), str(r.scenario)), {}).setdefault(label, []).append(
                float(r.n_pool)
            )
    return {key: {label: float(np.mean(v)) for label, v in by.items()} for key, by in sizes.items()}


def _composition(
    rep: Report, dataset: str, scenario: str
) -> dict[str, tuple[np.ndarray, list[str], np.ndarray]]:
    block = _block_rows(rep.composition, dataset, scenario)
    out = {}
    for label in _block_rows(rep.aubc, dataset, scenario)["label"]:
        g = block[block["label"] == label]
        if g.empty:
            continue
        wide = g.pivot_table(index="n_labeled", columns="cls", values="count", aggfunc="sum").fillna(0.0)
        names = sorted((str(c) for c in wide.columns), key=class_sort_key)
        wide = wide[names]
        out[str(label)] = (wide.index.to_numpy(), names, wide.to_numpy(dtype=float))
    return out


def _stop_marks(rep: Report, dataset: str, scenario: str) -> dict[str, list[tuple[str, float]]]:
    marks: dict[str, list[tuple[str, float]]] = {}
    for r in rep._stops_of(dataset, scenario).itertuples(index=False):
        if np.isfinite(r.n_stop):
            marks.setdefault(str(r.label), []).append((str(r.criterion), float(r.n_stop)))
    return marks


def _stop_rows(rep: Report, dataset: str, scenario: str) -> list[list[str]]:
    return [_stop_cells(r) for r in rep._stops_of(dataset, scenario).itertuples(index=False)]


def _ranking_rows(rows: pd.DataFrame) -> list[dict[str, str]]:
    base = rows.loc[rows["strategy"] == "random", "total_train_time"]
    random_train = float(base.mean()) if len(base) else math.nan
    return [
        {
            "rank": str(r.rank),
            "label": str(r.label),
            "aubc": _pm(r.aubc_mean, r.aubc_std),
            "ci": _interval(r.aubc_mean, r.aubc_ci95),
            "selection": _seconds(r.mean_selection_time),
            "train": _seconds(r.mean_train_time),
            "total_selection": _seconds(r.total_selection_time),
            "total_train": _seconds(r.total_train_time),
            "overhead": (
                f"{r.total_train_time / random_train:.2f}x"
                if np.isfinite(random_train) and random_train > 0 and np.isfinite(r.total_train_time)
                else "-"
            ),
            "trials": str(r.n_trials),
        }
        for r in rows.itertuples(index=False)
    ]


def _penalty_cell(value: float, diagonal: bool, n_settings: int) -> dict[str, str]:
    if diagonal:
        return {"text": "", "style": "background:#eee"}
    strength = 0.0 if n_settings == 0 else min(1.0, value / n_settings)
    return {"text": f"{value:.2f}", "style": f"background:rgba(200,40,40,{0.08 + 0.75 * strength:.2f})"}


def _number(value: float) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.2f}"


def _run_rows(rep: Report, configs: Mapping[str, str]) -> list[dict[str, str]]:
    rows = []
    for r in rep.runs.itertuples(index=False):
        config = configs.get(str(r.parent_run_id)) or config_from_params(r.params)
        rows.append(
            {
                "run": str(r.run),
                "parent_run_id": str(r.parent_run_id),
                "strategy": str(r.strategy),
                "dataset": str(r.dataset),
                "scenario": str(r.scenario),
                "backbone": str(r.backbone),
                "status": str(r.status),
                "n_pool": "-" if not np.isfinite(r.n_pool) else f"{r.n_pool:.0f}",
                "command": str(r.command),
                "config": config,
            }
        )
    return rows


def _anchor(name: str) -> str:
    import re

    return "setting-" + (re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "x")
