"""Compare strategies side by side from what MLflow holds.

Everything here is read from the tracking store (never from ``results/runs``), laid out
as :mod:`alscope.tracking` describes: one parent run per experiment run (tags
``alscope.strategy`` / ``dataset`` / ``backbone`` / ``scenario`` / ``run``) and one
nested trial run per trial, whose per-cycle metrics use the labeled count as step.

::

    from alscope.report import load_trials, summarize

    df = load_trials("sqlite:///results/mlflow.db", "alscope")
    rep = summarize(df, metric="accuracy")
    print(rep.to_markdown())
    rep.to_csv(Path("cmp.csv"))        # cmp.csv (curves) and cmp_aubc.csv
    rep.plot(Path("cmp.png"))          # one PNG per dataset

"±" is the sample standard deviation over trials (``ddof=1``), the same as the
``aubc_std`` the engine logs on each parent run, so the numbers here agree with the
MLflow UI; with 3 or more trials the AUBC also gets its 95 % confidence interval of
the mean (Student's t), column ``aubc_ci95``.

This module stays light: it never imports torch.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from alscope.engine.metrics import aubc, ci95_halfwidth, sample_std
from alscope.errors import ConfigError, TrackingError
from alscope.tracking import TAG_COMMAND, TAG_KIND, TAG_RUN, TAG_TRIAL

if TYPE_CHECKING:  # pragma: no cover
    from rich.table import Table

DEFAULT_METRICS: tuple[str, ...] = (
    "accuracy",
    "macro_f1",
    "balanced_accuracy",
    "selection_time",
    "train_time",
)
"""The per-cycle metrics :func:`load_trials` reads from each trial run."""

ID_COLUMNS: tuple[str, ...] = (
    "run",
    "parent_run_id",
    "trial_run_id",
    "trial",
    "strategy",
    "dataset",
    "backbone",
    "scenario",
    "n_labeled",
)
GROUP_COLUMNS: list[str] = ["dataset", "scenario", "backbone", "strategy"]

_PAGE = 500
#: runs per bulk metric query, and the most points one query returns
_BULK = 500
_MAX_POINTS = 10_000_000
#: prefix of the per-cycle metrics with the number of queried samples of each class
QUERY_COUNT = "query_count/"
#: prefix of the per-trial metric with the labeled count where a stopping criterion fired
STOPPED_AT = "stopped_at/"
_TAG_PARENT = "mlflow.parentRunId"


# -- loading ---------------------------------------------------------------------------


def load_trials(
    tracking_uri: str,
    experiment: str,
    *,
    run_filter: list[str] | None = None,
    include_unfinished: bool = False,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> pd.DataFrame:
    """The per-cycle metrics of every trial of ``experiment``, one row per trial and
    labeled count.

    Columns: ``run, parent_run_id, trial_run_id, trial, strategy, dataset, backbone,
    scenario, n_labeled`` and one column per metric (NaN where a cycle did not log it,
    e.g. ``selection_time`` of the last cycle).

    ``run_filter`` keeps only the experiment runs whose ``alscope.run`` id or MLflow
    parent run id starts with one of the given strings. Only FINISHED trial runs are
    read unless ``include_unfinished`` (then RUNNING and KILLED trials contribute the
    cycles they logged). Trials whose parent run was deleted are left out.

    Raises :class:`~alscope.errors.TrackingError` when the store cannot be read, the
    experiment does not exist, or it holds no (finished) trials.
    """
    client = _client(tracking_uri)
    exp = _call(tracking_uri, "get_experiment_by_name", client.get_experiment_by_name, experiment)
    if exp is None:
        names = sorted(e.name for e in _all_experiments(client, tracking_uri))
        known = ", ".join(repr(n) for n in names) if names else "(none)"
        raise TrackingError(
            f"no MLflow experiment {experiment!r} at {tracking_uri!r}; existing experiments: {known}"
        )
    exp_id = exp.experiment_id

    parents = {
        r.info.run_id: r for r in _search(client, tracking_uri, exp_id, f"tags.`{TAG_KIND}` = 'experiment'")
    }
    status_clause = "" if include_unfinished else " and attributes.status = 'FINISHED'"
    trial_filter = f"tags.`{TAG_KIND}` = 'trial'{status_clause}"
    if run_filter:
        wanted = _match_parents(parents, run_filter, experiment)
        trial_runs = [
            r
            for pid in wanted
            for r in _search(
                client, tracking_uri, exp_id, f"{trial_filter} and tags.`{_TAG_PARENT}` = '{pid}'"
            )
        ]
    else:
        trial_runs = list(_search(client, tracking_uri, exp_id, trial_filter))

    kept: list[tuple[Any, dict[str, Any]]] = []
    logged: set[str] = set()
    stops: list[dict[str, Any]] = []
    evaluated: dict[str, set[str]] = {}  # trial run id -> the stopping criteria it evaluated
    runs: dict[str, dict[str, Any]] = {}
    for trial_run in trial_runs:
        tags = trial_run.data.tags
        parent_id = tags.get(_TAG_PARENT)
        if parent_id and parent_id not in parents:
            continue  # the parent run was deleted
        logged.update(trial_run.data.metrics)
        source = parents[parent_id].data.tags if parent_id else tags
        info = {
            "run": source.get(TAG_RUN, tags.get(TAG_RUN, "")),
            "parent_run_id": parent_id or "",
            "trial_run_id": trial_run.info.run_id,
            "trial": _int(tags.get(TAG_TRIAL)),
            **{
                kind: source.get(f"alscope.{kind}", tags.get(f"alscope.{kind}", ""))
                for kind in ("strategy", "dataset", "backbone", "scenario")
            },
        }
        kept.append((trial_run, info))
        if parent_id and parent_id not in runs:
            runs[parent_id] = _run_record(parents[parent_id], info)
    # the classes each strategy queried, per cycle (query_count/<class>), for the composition
    composition = sorted(k for k in logged if k.startswith(QUERY_COUNT))
    keys = list(dict.fromkeys([*metrics, *composition]))
    histories = {key: _histories(client, tracking_uri, [r.info.run_id for r, _ in kept], key) for key in keys}

    table: dict[str, list[Any]] = {name: [] for name in ["n_labeled", *ID_COLUMNS[:-1], *keys]}
    for trial_run, info in kept:
        run_id = trial_run.info.run_id
        columns = {name: histories[name].get(run_id, {}) for name in keys}
        steps = sorted(set().union(*(c.keys() for c in columns.values())))
        if not steps:
            continue
        stops.extend(
            {"trial_run_id": run_id, "criterion": key[len(STOPPED_AT) :], "n_stop": int(value)}
            for key, value in trial_run.data.metrics.items()
            if key.startswith(STOPPED_AT)
        )
        evaluated[run_id] = _criteria_of(trial_run.data.metrics)
        table["n_labeled"] += steps
        for key, value in info.items():
            table[key] += [value] * len(steps)
        for name, values in columns.items():
            table[name] += [values.get(s, np.nan) for s in steps]

    if not table["n_labeled"]:
        what = "trials" if include_unfinished else "finished trials"
        scope = f" among runs matching {', '.join(run_filter)}" if run_filter else ""
        raise TrackingError(
            f"MLflow experiment {experiment!r} at {tracking_uri!r} holds no {what}{scope}; "
            f"run an experiment into it first (tracking.experiment={experiment!r})"
        )
    df = pd.DataFrame(table)
    df = df[[*ID_COLUMNS, *keys]].copy()
    df["trial"] = df["trial"].astype("int64")
    df["n_labeled"] = df["n_labeled"].astype("int64")
    df = df.sort_values(
        ["dataset", "scenario", "backbone", "strategy", "run", "trial", "n_labeled"],
        ignore_index=True,
    )
    # every metric the trials logged, for messages naming what a report could show
    df.attrs["logged_metrics"] = sorted(logged)
    # where each stopping criterion first fired, per trial (runs with --stop)
    df.attrs["stops"] = stops
    # one record per experiment run: its command, pool size and resolved config (params)
    reported = set(df["parent_run_id"])
    df.attrs["runs"] = [r for pid, r in runs.items() if pid in reported]
    df.attrs["stopping_criteria"] = sorted(set().union(*evaluated.values()) if evaluated else set())
    df.attrs["trial_criteria"] = evaluated
    return df


def _criteria_of(metrics: dict[str, float]) -> set[str]:
    """The stopping criteria a trial evaluated: those it logged a verdict or a stop for."""
    return {k[len(STOPPED_AT) :] for k in metrics if k.startswith(STOPPED_AT)} | {
        k.split("/")[1] for k in metrics if k.startswith("stop/") and k.endswith("/fired")
    }


def _run_record(parent: Any, info: dict[str, Any]) -> dict[str, Any]:
    """What the report says about one experiment run besides its curves."""
    n_pool = parent.data.metrics.get("n_pool")
    return {
        "run": info["run"],
        "parent_run_id": parent.info.run_id,
        **{kind: info[kind] for kind in ("strategy", "dataset", "backbone", "scenario")},
        "status": parent.info.status,
        "command": parent.data.tags.get(TAG_COMMAND, ""),
        "n_pool": float(n_pool) if n_pool is not None else math.nan,
        "params": dict(parent.data.params),
        "artifact_uri": parent.info.artifact_uri,
    }


def _histories(client: Any, uri: str, run_ids: list[str], key: str) -> dict[str, dict[int, float]]:
    """``{run id: {step: value}}`` of one metric over many runs; on duplicate steps the
    latest write wins.

    A SQL-backed store answers one query per metric for all runs
    (``get_metric_history_bulk``); ``MlflowClient`` has only the per-run call, which
    costs one round trip per run and metric (seconds for a few hundred trials), so the
    store is asked directly where it offers the bulk call, and per run otherwise.
    """
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    bulk = getattr(store, "get_metric_history_bulk", None)
    found: dict[str, list[Any]] = {}
    if callable(bulk):
        for start in range(0, len(run_ids), _BULK):
            chunk = run_ids[start : start + _BULK]
            for m in _call(uri, "get_metric_history_bulk", bulk, chunk, key, max_results=_MAX_POINTS):
                found.setdefault(m.run_id, []).append(m)
    else:
        for run_id in run_ids:
            found[run_id] = list(_call(uri, "get_metric_history", client.get_metric_history, run_id, key))
    return {
        run_id: {int(m.step): float(m.value) for m in sorted(ms, key=lambda m: (m.step, m.timestamp))}
        for run_id, ms in found.items()
    }


def _client(tracking_uri: str) -> Any:
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///") :])
        if str(db) != ":memory:" and not db.is_file():
            # Opening it would create an empty store; a report must not.
            raise TrackingError(
                f"no MLflow store at {tracking_uri!r}; run an experiment first or pass --tracking-uri"
            )
    from mlflow import MlflowClient

    return _call(tracking_uri, "connect", MlflowClient, tracking_uri=tracking_uri)


def _call(uri: str, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except TrackingError:
        raise
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        short = (lines[0] if lines else type(exc).__name__)[:300]
        raise TrackingError(f"MLflow {what} failed at {uri!r}: {short}") from None


def _all_experiments(client: Any, uri: str) -> Iterator[Any]:
    token = None
    while True:
        page = _call(
            uri, "search_experiments", client.search_experiments, max_results=_PAGE, page_token=token
        )
        yield from page
        token = page.token
        if not token:
            return


def _search(client: Any, uri: str, experiment_id: str, filter_string: str) -> Iterator[Any]:
    """Every active run matching ``filter_string``, page by page."""
    token = None
    while True:
        page = _call(
            uri,
            "search_runs",
            client.search_runs,
            [experiment_id],
            filter_string=filter_string,
            max_results=_PAGE,
            page_token=token,
        )
        yield from page
        token = page.token
        if not token:
            return


def _match_parents(parents: dict[str, Any], run_filter: list[str], experiment: str) -> list[str]:
    wanted: list[str] = []
    for prefix in run_filter:
        hits = [
            pid
            for pid, r in parents.items()
            if pid.startswith(prefix) or r.data.tags.get(TAG_RUN, "").startswith(prefix)
        ]
        if not hits:
            raise TrackingError(f"no run matching {prefix!r} in MLflow experiment {experiment!r}")
        wanted.extend(h for h in hits if h not in wanted)
    return wanted


def _int(value: str | None) -> int:
    try:
        return int(value) if value is not None else -1
    except ValueError:
        return -1


# -- summarizing -----------------------------------------------------------------------


@dataclass
class Report:
    """A comparison of strategies, per (dataset, scenario).

    * ``curves``: tidy, one row per group and labeled count: ``dataset, scenario,
      backbone, strategy, label, n_labeled, mean, std, n_trials``;
    * ``aubc``: one row per group: ``dataset, scenario, backbone, strategy, label, rank,
      aubc_mean, aubc_std, aubc_ci95, mean_selection_time, mean_train_time, n_trials``
      (``aubc_ci95``: half-width of the 95 % interval, NaN below 3 trials), ranked by
      mean AUBC (descending) within each (dataset, scenario);
    * ``trial_aubc``: the AUBC of every trial;
    * ``table``: wide, rows = (dataset, scenario, label), columns = labeled counts,
      cells ``"0.812 ± 0.010"`` (empty where a group has no value at that count).

    ``label`` is the strategy name, or ``strategy [backbone]`` where one (dataset,
    scenario) holds runs with several backbones.
    """

    metric: str
    curves: pd.DataFrame
    aubc: pd.DataFrame
    trial_aubc: pd.DataFrame
    table: pd.DataFrame
    #: per group and stopping criterion: trials it fired in, mean labeled count and
    #: mean metric where it first fired (runs with stopping criteria; else empty)
    stops: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: per-trial values of the metric: ``dataset, scenario, label, trial, n_labeled, value``
    trial_values: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: mean queried samples per class and cycle over trials: ``dataset, scenario, label,
    #: n_labeled, cls, count`` (``cls`` as logged: a class index, or ``ood``)
    composition: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: one row per experiment run: ``run, parent_run_id, strategy, dataset, backbone,
    #: scenario, status, command, n_pool, params``
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: every per-cycle metric of every trial: ``dataset, scenario, label, trial_run_id,
    #: n_labeled`` and one column per metric read (query precision and the like)
    trial_metrics: pd.DataFrame = field(default_factory=pd.DataFrame)

    def penalty(self, alpha: float = 0.05) -> PenaltyMatrix:
        """The pairwise penalty matrix over every (dataset, scenario) of this report."""
        return penalty_matrix(self.trial_values, alpha=alpha)

    def blocks(self) -> list[tuple[str, str]]:
        """The (dataset, scenario) pairs, in order."""
        pairs = self.aubc[["dataset", "scenario"]].drop_duplicates()
        return [(str(d), str(s)) for d, s in pairs.itertuples(index=False)]

    def _block(self, dataset: str, scenario: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The ranked AUBC rows and the wide table of one (dataset, scenario)."""
        rows = self.aubc[(self.aubc["dataset"] == dataset) & (self.aubc["scenario"] == scenario)]
        wide = self.table.loc[(dataset, scenario)]
        counts = sorted(
            self.curves.loc[
                (self.curves["dataset"] == dataset) & (self.curves["scenario"] == scenario), "n_labeled"
            ].unique()
        )
        return rows, wide[counts].reindex(list(rows["label"]))

    # -- exports ---------------------------------------------------------------------

    def to_csv(self, path: Path | str) -> tuple[Path, ...]:
        """Write the tidy curves to ``path``, and beside it the AUBC table with costs
        (``<stem>_aubc.csv``), the pairwise penalty matrix with its ``wins`` column and
        ``losses`` row (``<stem>_penalty.csv``) and, where the runs logged it, the queried
        classes per cycle (``<stem>_composition.csv``); returns the files written."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        curves = self.curves.drop(columns=["label"]).copy()
        curves.insert(4, "metric", self.metric)
        curves.to_csv(path, index=False)
        aubc_path = path.with_name(f"{path.stem}_aubc.csv")
        table = self.aubc.drop(columns=["label"]).copy()
        table.insert(4, "metric", self.metric)
        table.to_csv(aubc_path, index=False)
        written = [path, aubc_path]
        if self.aubc["label"].nunique() > 1:
            penalty_path = path.with_name(f"{path.stem}_penalty.csv")
            self.penalty().to_frame().to_csv(penalty_path, index_label="winner")
            written.append(penalty_path)
        if len(self.composition):
            composition_path = path.with_name(f"{path.stem}_composition.csv")
            self.composition.to_csv(composition_path, index=False)
            written.append(composition_path)
        return tuple(written)

    def to_markdown(self) -> str:
        """Per (dataset, scenario): a table of AUBC, selection time and trials, and a
        table of the metric at each labeled count (mean ± std over trials)."""
        parts: list[str] = []
        for dataset, scenario in self.blocks():
            rows, wide = self._block(dataset, scenario)
            parts.append(f"## {_md(dataset)} / {_md(scenario)}\n")
            parts.append(
                _md_table(
                    [
                        "rank",
                        "strategy",
                        f"AUBC ({_md(self.metric)}, ± sample std)",
                        "95 % CI",
                        "selection time / cycle",
                        "train time / cycle",
                        "selection time / trial",
                        "train time / trial",
                        "trials",
                    ],
                    [
                        [
                            str(r.rank),
                            _md(r.label),
                            _pm(r.aubc_mean, r.aubc_std),
                            _interval(r.aubc_mean, r.aubc_ci95),
                            _seconds(r.mean_selection_time),
                            _seconds(r.mean_train_time),
                            _seconds(r.total_selection_time),
                            _seconds(r.total_train_time),
                            str(r.n_trials),
                        ]
                        for r in rows.itertuples(index=False)
                    ],
                    align=["r", "l", "r", "r", "r", "r", "r", "r", "r"],
                )
            )
            parts.append(f"{_md(self.metric)} at each labeled count (mean ± std over trials):\n")
            parts.append(
                _md_table(
                    ["strategy", *(str(c) for c in wide.columns)],
                    [
                        [_md(str(label)), *(str(v) for v in values)]
                        for label, values in zip(wide.index, wide.to_numpy().tolist(), strict=True)
                    ],
                    align=["l", *("r" for _ in wide.columns)],
                )
            )
            block = self._stops_of(dataset, scenario)
            if len(block):
                parts.append("Where the stopping criteria fired (first cycle per trial):\n")
                parts.append(
                    _md_table(
                        [*STOP_COLUMNS, f"{_md(self.metric)} at stop"],
                        [[_md(c) for c in _stop_cells(r)] for r in block.itertuples(index=False)],
                        align=["l", "l", "r", "r", "r"],
                    )
                )
            composition = self._composition_totals(dataset, scenario)
            if len(composition):
                parts.append("Queried samples per class, summed over cycles (mean over trials):\n")
                parts.append(
                    _md_table(
                        ["strategy", *(_md(str(c)) for c in composition.columns)],
                        [
                            [_md(str(label)), *(f"{v:.1f}" for v in values)]
                            for label, values in zip(
                                composition.index, composition.to_numpy().tolist(), strict=True
                            )
                        ],
                        align=["l", *("r" for _ in composition.columns)],
                    )
                )
        if self.aubc["label"].nunique() > 1:
            penalty = self.penalty()
            frame = penalty.to_frame()
            parts.append(
                f"## Pairwise penalty matrix ({_md(self.metric)})\n\n"
                f"Row i, column j: how often i beat j significantly (two-sided paired t-test over "
                f"trials at level {penalty.alpha}, per labeled count; each of the "
                f"{len(penalty.settings)} setting(s) adds at most 1). `wins`: row mean; `losses`: "
                f"column mean.\n"
            )
            parts.append(
                _md_table(
                    ["winner \\ loser", *(_md(str(c)) for c in frame.columns)],
                    [
                        [_md(str(label)), *("" if not np.isfinite(v) else f"{v:.2f}" for v in values)]
                        for label, values in zip(
                            frame.index, frame.to_numpy(dtype=float).tolist(), strict=True
                        )
                    ],
                    align=["l", *("r" for _ in frame.columns)],
                )
            )
        if len(self.runs) and self.runs["command"].astype(bool).any():
            parts.append("## Commands\n")
            parts.append(
                _md_table(
                    ["run", "strategy", "dataset", "command"],
                    [
                        [
                            _md(r.run),
                            _md(r.strategy),
                            _md(r.dataset),
                            f"`{_md(r.command)}`" if r.command else "-",
                        ]
                        for r in self.runs.itertuples(index=False)
                    ],
                    align=["l", "l", "l", "l"],
                )
            )
        return "\n".join(parts)

    def _composition_totals(self, dataset: str, scenario: str) -> pd.DataFrame:
        """Strategy x class: queried samples summed over cycles, mean over trials."""
        block = self.composition[
            (self.composition["dataset"] == dataset) & (self.composition["scenario"] == scenario)
        ]
        if block.empty:
            return pd.DataFrame()
        wide = block.pivot_table(index="label", columns="cls", values="count", aggfunc="sum").fillna(0.0)
        order = [label for label in self._block(dataset, scenario)[0]["label"] if label in wide.index]
        columns = sorted(wide.columns, key=class_sort_key)
        return wide.loc[order, columns]

    def plot(self, path: Path | str) -> list[Path]:
        """Learning curves with ±1 std bands: ``path`` itself when there is one dataset,
        otherwise one ``<stem>_<dataset><suffix>`` per dataset. Returns the files."""
        from alscope.plotting import plot_learning_curves

        path = Path(path)
        suffix = path.suffix or ".png"
        datasets = list(dict.fromkeys(self.aubc["dataset"]))
        written: list[Path] = []
        for dataset in datasets:
            block = self.aubc[self.aubc["dataset"] == dataset]
            several_scenarios = block["scenario"].nunique() > 1
            curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
            for r in block.itertuples(index=False):
                c = self.curves[
                    (self.curves["dataset"] == dataset)
                    & (self.curves["scenario"] == r.scenario)
                    & (self.curves["label"] == r.label)
                ].dropna(subset=["mean"])
                if c.empty:
                    continue
                name = f"{r.label} ({r.scenario})" if several_scenarios else str(r.label)
                curves[name] = (
                    c["n_labeled"].to_numpy(),
                    c["mean"].to_numpy(),
                    c["std"].fillna(0.0).to_numpy(),
                )
            target = path if len(datasets) == 1 else path.with_name(f"{path.stem}_{_safe(dataset)}{suffix}")
            settings = ", ".join(dict.fromkeys(block["scenario"]))
            title = f"{dataset}, {settings}: {self.metric}"
            plot_learning_curves(curves, target, title=title, ylabel=self.metric)
            written.append(target)
        return written

    def rich_tables(self) -> list[Table]:
        """Two ``rich`` tables per (dataset, scenario): ranking, and the curve table."""
        from rich.table import Table

        tables: list[Table] = []
        for dataset, scenario in self.blocks():
            rows, wide = self._block(dataset, scenario)
            ranking = Table(title=f"{dataset} / {scenario}: AUBC of {self.metric}")
            ranking.add_column("#", justify="right")
            ranking.add_column("strategy", style="bold")
            ranking.add_column("AUBC (± std)", justify="right")
            ranking.add_column("95 % CI", justify="right")
            ranking.add_column("selection / cycle", justify="right")
            ranking.add_column("train / cycle", justify="right")
            ranking.add_column("trials", justify="right")
            for r in rows.itertuples(index=False):
                ranking.add_row(
                    str(r.rank),
                    str(r.label),
                    _pm(r.aubc_mean, r.aubc_std),
                    _interval(r.aubc_mean, r.aubc_ci95),
                    _seconds(r.mean_selection_time),
                    _seconds(r.mean_train_time),
                    str(r.n_trials),
                )
            tables.append(ranking)
            curve = Table(title=f"{dataset} / {scenario}: {self.metric} by labeled count")
            curve.add_column("strategy", style="bold")
            for count in wide.columns:
                curve.add_column(str(count), justify="right")
            for label, values in zip(wide.index, wide.to_numpy().tolist(), strict=True):
                curve.add_row(str(label), *(str(v) for v in values))
            tables.append(curve)
            block = self._stops_of(dataset, scenario)
            if len(block):
                stopping = Table(title=f"{dataset} / {scenario}: where the stopping criteria fired")
                for i, column in enumerate([*STOP_COLUMNS, f"{self.metric} at stop"]):
                    stopping.add_column(column, justify="left" if i < 2 else "right")
                for r in block.itertuples(index=False):
                    stopping.add_row(*_stop_cells(r))
                tables.append(stopping)
        return tables

    def _stops_of(self, dataset: str, scenario: str) -> pd.DataFrame:
        if self.stops.empty:
            return self.stops
        return self.stops[(self.stops["dataset"] == dataset) & (self.stops["scenario"] == scenario)]


STOP_COLUMNS = ("strategy", "criterion", "fired in", "labels at stop")


def _stop_cells(r: Any) -> list[str]:
    """The cells of one stopping row: strategy, criterion, fired in, labels, metric."""
    return [
        str(r.label),
        str(r.criterion),
        f"{r.fired}/{r.n_trials}",
        "never" if math.isnan(r.n_stop) else f"{r.n_stop:.0f}",
        "-" if math.isnan(r.at_stop) else f"{r.at_stop:.4f}",
    ]


def curve_stats(frame: pd.DataFrame, metric: str, keys: list[str]) -> pd.DataFrame:
    """Per ``keys`` and labeled count: ``mean``, ``std`` (sample std over trials) and
    ``n_trials`` of ``metric`` (rows where it is NaN left out)."""
    return (
        frame.dropna(subset=[metric])
        .groupby([*keys, "n_labeled"], sort=True)[metric]
        .agg(mean="mean", std=lambda s: sample_std(s.to_numpy()), n_trials="count")
        .reset_index()
    )


def summarize(df: pd.DataFrame, metric: str = "accuracy") -> Report:
    """Mean and std of ``metric`` at each labeled count over trials, AUBC per trial
    (then mean ± std), mean selection and training time per cycle, and the number of
    trials, per (dataset, scenario, backbone, strategy); ranked by mean AUBC."""
    if df.empty:
        raise TrackingError("no trials to summarize")
    if metric not in df.columns:
        available = [c for c in df.columns if c not in ID_COLUMNS]
        raise ConfigError(f"metric {metric!r} is not in the trials; available: {', '.join(available)}")
    # pandas deep-copies ``attrs`` into every derived frame: read them once, then drop them
    meta = dict(df.attrs)
    df = df.copy()
    df.attrs = {}
    backbones = df.groupby(["dataset", "scenario"])["backbone"].transform("nunique")
    df["label"] = np.where(backbones > 1, df["strategy"] + " [" + df["backbone"] + "]", df["strategy"])
    keys = [*GROUP_COLUMNS, "label"]

    valid = df.dropna(subset=[metric])
    if valid.empty:
        logged = [m for m in meta.get("logged_metrics", []) if m not in ("aubc",)]
        close = difflib.get_close_matches(metric, logged, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        listed = f" (logged: {', '.join(logged)})" if logged else ""
        raise TrackingError(f"no trial logged {metric!r}; nothing to summarize{hint}{listed}")
    curves = curve_stats(valid, metric, keys)

    trial_rows = []
    for (*key, trial_run_id), g in df.groupby([*keys, "trial_run_id"], sort=True):
        first = g.iloc[0]
        g = g.dropna(subset=[metric]).sort_values("n_labeled")
        value = aubc(g["n_labeled"].to_numpy(), g[metric].to_numpy()) if len(g) else math.nan
        trial_rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "run": first["run"],
                "trial_run_id": trial_run_id,
                "trial": int(first["trial"]),
                "aubc": value,
            }
        )
    trial_aubc = pd.DataFrame(trial_rows)

    per_group = {tuple(key): g["aubc"].dropna().to_numpy() for key, g in trial_aubc.groupby(keys, sort=True)}
    summary_rows = []
    for key, g in df.groupby(keys, sort=True):
        values = per_group.get(tuple(key), np.empty(0))
        summary_rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "aubc_mean": float(np.mean(values)) if len(values) else math.nan,
                "aubc_std": sample_std(values) if len(values) else math.nan,
                "aubc_ci95": ci95_halfwidth(values),
                "mean_selection_time": _mean(g, "selection_time"),
                "mean_train_time": _mean(g, "train_time"),
                "total_selection_time": _total_per_trial(g, "selection_time"),
                "total_train_time": _total_per_trial(g, "train_time"),
                "n_trials": int(g["trial_run_id"].nunique()),
            }
        )
    table = pd.DataFrame(summary_rows)
    table = table.sort_values(
        ["dataset", "scenario", "aubc_mean", "label"],
        ascending=[True, True, False, True],
        na_position="last",
        ignore_index=True,
    )
    table.insert(5, "rank", table.groupby(["dataset", "scenario"]).cumcount() + 1)

    cells = curves.assign(cell=[_pm(m, s) for m, s in zip(curves["mean"], curves["std"], strict=True)])
    wide = cells.pivot_table(
        index=["dataset", "scenario", "label"], columns="n_labeled", values="cell", aggfunc="first"
    )
    order = pd.MultiIndex.from_frame(table[["dataset", "scenario", "label"]])
    wide = wide.reindex(order).fillna("")
    wide.columns = [int(c) for c in wide.columns]
    wide = wide[sorted(wide.columns)]
    wide.columns.name = "n_labeled"

    return Report(
        metric=metric,
        curves=curves,
        aubc=table,
        trial_aubc=trial_aubc,
        table=wide,
        stops=_stops(df, meta, metric, keys),
        trial_values=valid[["dataset", "scenario", "label", "trial", "n_labeled", metric]]
        .rename(columns={metric: "value"})
        .reset_index(drop=True),
        composition=_composition(df, keys),
        runs=pd.DataFrame(meta.get("runs") or [], columns=list(RUN_COLUMNS)),
        trial_metrics=df[
            ["dataset", "scenario", "label", "trial_run_id", "n_labeled"]
            + [
                c
                for c in df.columns
                if c not in ID_COLUMNS and c != "label" and not c.startswith(QUERY_COUNT)
            ]
        ].reset_index(drop=True),
    )


def _stops(df: pd.DataFrame, meta: dict[str, Any], metric: str, keys: list[str]) -> pd.DataFrame:
    """Per group and criterion: ``fired`` (trials), ``n_trials``, ``n_stop`` (mean labeled
    count at the first firing) and ``at_stop`` (mean ``metric`` there)."""
    criteria = meta.get("stopping_criteria") or []
    columns = [*keys, "criterion", "fired", "n_trials", "n_stop", "at_stop"]
    if not criteria:
        return pd.DataFrame(columns=columns)
    fired = {(s["trial_run_id"], s["criterion"]): s["n_stop"] for s in meta.get("stops", [])}
    evaluated: dict[str, set[str]] = meta.get("trial_criteria") or {}
    rows = []
    for key, g in df.groupby(keys, sort=True):
        trials = list(dict.fromkeys(g["trial_run_id"]))
        for criterion in criteria:
            if evaluated and not any(criterion in evaluated.get(t, ()) for t in trials):
                continue  # these runs did not use this criterion
            hits = [(t, fired[(t, criterion)]) for t in trials if (t, criterion) in fired]
            values = [
                float(g.loc[(g["trial_run_id"] == t) & (g["n_labeled"] == n), metric].mean()) for t, n in hits
            ]
            rows.append(
                {
                    **dict(zip(keys, key, strict=True)),
                    "criterion": criterion,
                    "fired": len(hits),
                    "n_trials": len(trials),
                    "n_stop": float(np.mean([n for _, n in hits])) if hits else math.nan,
                    "at_stop": float(np.nanmean(values)) if values else math.nan,
                }
            )
    return pd.DataFrame(rows, columns=columns)


RUN_COLUMNS = (
    "run",
    "parent_run_id",
    "strategy",
    "dataset",
    "backbone",
    "scenario",
    "status",
    "command",
    "n_pool",
    "params",
    "artifact_uri",
)


def class_sort_key(name: Any) -> tuple[int, int, str]:
    """Classes as ``query_count/<c>`` names them: indices in numeric order, ``ood`` last."""
    text = str(name)
    if text == "ood":
        return (1, 0, text)
    return (0, int(text), text) if text.isdigit() else (0, 1 << 30, text)


def _total_per_trial(g: pd.DataFrame, column: str) -> float:
    """The sum over cycles of ``column``, averaged over trials (NaN where never logged)."""
    if column not in g.columns or g[column].isna().all():
        return math.nan
    return float(g.groupby("trial_run_id")[column].sum().mean())


def _composition(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    columns = [c for c in df.columns if c.startswith(QUERY_COUNT)]
    out = ["dataset", "scenario", "label", "n_labeled", "cls", "count"]
    if not columns:
        return pd.DataFrame(columns=out)
    counted = df[df[columns].notna().any(axis=1)]
    tidy = counted.melt(
        id_vars=[*keys, "trial_run_id", "n_labeled"], value_vars=columns, var_name="cls", value_name="count"
    )
    tidy["cls"] = tidy["cls"].str.slice(len(QUERY_COUNT))
    # a class a cycle did not query was not logged: it counts 0 in that trial's mean
    tidy["count"] = tidy["count"].fillna(0.0)
    mean = tidy.groupby([*keys, "n_labeled", "cls"], sort=True)["count"].mean().reset_index()
    return mean[out]


@dataclass
class PenaltyMatrix:
    """How often strategy ``i`` beat strategy ``j`` significantly (Ash et al., ICLR 2020;
    Zhan et al., DeepAL+).

    For each setting (dataset, scenario) and each labeled count, the trials of ``i`` and
    ``j`` are paired by trial index (the same seed gives both the same initial set) and a
    two-sided paired t-test on their differences runs at level ``alpha``; a significant
    difference in ``i``'s favour adds ``1 / K`` to ``P[i, j]``, ``K`` the number of labeled
    counts of that setting, so that each setting adds at most 1. A count where fewer than
    2 trials pair up is no comparison; identical differences with no spread count as
    significant when they are not zero. ``wins`` is the mean of ``P[i, j]`` over
    ``j != i`` (higher is better) and ``losses`` the mean of ``P[i, j]`` over ``i != j``
    (Ash et al.'s column average; lower is better).
    """

    matrix: pd.DataFrame
    settings: list[tuple[str, str]]
    alpha: float

    @property
    def wins(self) -> pd.Series:
        return _off_diagonal_mean(self.matrix, axis=1)

    @property
    def losses(self) -> pd.Series:
        return _off_diagonal_mean(self.matrix, axis=0)

    def to_frame(self) -> pd.DataFrame:
        """The matrix with a ``wins`` column and a ``losses`` row."""
        frame = self.matrix.copy()
        frame["wins"] = self.wins
        frame.loc["losses"] = [*self.losses, math.nan]
        return frame


def _off_diagonal_mean(matrix: pd.DataFrame, axis: int) -> pd.Series:
    values = matrix.to_numpy(dtype=float).copy()
    n = len(values)
    np.fill_diagonal(values, np.nan)
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(values, axis=axis) if n > 1 else np.full(n, math.nan)
    return pd.Series(mean, index=matrix.index if axis == 1 else matrix.columns)


def penalty_matrix(trial_values: pd.DataFrame, alpha: float = 0.05) -> PenaltyMatrix:
    """The pairwise penalty matrix (see :class:`PenaltyMatrix`) of per-trial values
    ``dataset, scenario, label, trial, n_labeled, value`` (higher is better)."""
    # Student's t survival function from scipy.special (scipy.stats costs 0.7 s to import)
    from scipy.special import stdtr

    labels = sorted(trial_values["label"].unique()) if len(trial_values) else []
    index = {label: i for i, label in enumerate(labels)}
    total = np.zeros((len(labels), len(labels)))
    settings: list[tuple[str, str]] = []
    for (dataset, scenario), block in trial_values.groupby(["dataset", "scenario"], sort=True):
        settings.append((str(dataset), str(scenario)))
        # values[label, trial, count]; a label run twice averages its trials of one index
        cube = block.pivot_table(
            index="label", columns=["trial", "n_labeled"], values="value", aggfunc="mean"
        )
        trials = sorted(cube.columns.get_level_values(0).unique())
        counts = sorted(cube.columns.get_level_values(1).unique())
        full = pd.MultiIndex.from_product([trials, counts], names=["trial", "n_labeled"])
        a = cube.reindex(columns=full).to_numpy(dtype=float).reshape(len(cube), len(trials), len(counts))
        d = a[:, None] - a[None, :]  # (L, L, T, K): i minus j, paired by trial
        n = np.sum(~np.isnan(d), axis=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, np.nansum(d, axis=2) / np.maximum(n, 1), np.nan)
            sd = np.sqrt(np.nansum((d - mean[:, :, None]) ** 2, axis=2) / np.maximum(n - 1, 1))
            tstat = mean / (sd / np.sqrt(n))
            p = 2 * stdtr(np.maximum(n - 1, 1), -np.abs(tstat))
        significant = np.where(sd > 0, p < alpha, mean != 0)
        beats = (n >= 2) & significant & (mean > 0)
        rows = [index[label] for label in cube.index]
        total[np.ix_(rows, rows)] += beats.sum(axis=2) / len(counts)
    matrix = pd.DataFrame(
        total, index=pd.Index(labels, name="winner"), columns=pd.Index(labels, name="loser")
    )
    return PenaltyMatrix(matrix=matrix, settings=settings, alpha=alpha)


def load_configs(
    tracking_uri: str, parent_run_ids: Sequence[str], artifact_uris: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The ``config.yaml`` artifact of each experiment run that has one (the resolved
    config the run started with; ``alscope run --config`` takes it back).

    ``artifact_uris`` (run id -> artifact root, the report's ``runs["artifact_uri"]``)
    lets each file be read from its artifact store directly: ``MlflowClient``'s download
    looks the run up twice and builds a client per call, 14 ms a run (1.4 s for 100).
    """
    import tempfile

    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    client = _client(tracking_uri)
    known = dict(artifact_uris or {})
    configs: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, run_id in enumerate(parent_run_ids):
            try:
                root = known.get(run_id) or client.get_run(run_id).info.artifact_uri
                folder = Path(tmp, str(i))
                folder.mkdir()
                local = get_artifact_repository(root).download_artifacts("config.yaml", str(folder))
                configs[run_id] = Path(local).read_text(encoding="utf-8")
            except Exception:  # a run without the artifact shows its params instead
                continue
    return configs


def config_from_params(params: dict[str, str] | Any) -> str:
    """A YAML rendering of a run's flattened params (``strategy.name: entropy``), nested
    again; the stand-in where a run's ``config.yaml`` cannot be read."""
    import yaml

    nested: dict[str, Any] = {}
    for key, text in sorted(dict(params or {}).items()):
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[leaf] = value
    return yaml.safe_dump(nested, sort_keys=False) if nested else ""


def build_report(
    tracking_uri: str,
    experiment: str,
    *,
    metric: str = "accuracy",
    run_filter: list[str] | None = None,
    include_unfinished: bool = False,
) -> Report:
    """:func:`load_trials` then :func:`summarize`."""
    return summarize(
        load_trials(tracking_uri, experiment, run_filter=run_filter, include_unfinished=include_unfinished),
        metric=metric,
    )


# -- formatting ------------------------------------------------------------------------


def _mean(g: pd.DataFrame, column: str) -> float:
    if column not in g.columns:
        return math.nan
    values = g[column].dropna()
    return float(values.mean()) if len(values) else math.nan


def _interval(mean: float, half: float) -> str:
    """``[low, high]`` of a 95 % interval; ``-`` where there are fewer than 3 trials."""
    if mean is None or half is None or not (np.isfinite(mean) and np.isfinite(half)):
        return "-"
    return f"[{mean - half:.3f}, {mean + half:.3f}]"


def _pm(mean: float, std: float) -> str:
    if mean is None or not np.isfinite(mean):
        return "n/a"
    if std is None or not np.isfinite(std):
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {std:.3f}"


def _seconds(value: float) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    if value < 1.0:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def _md(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]], align: list[str]) -> str:
    widths = [max([len(h), 3, *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        padded = [
            c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(cells, widths, align, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "| "
        + " | ".join(
            ("-" * (w - 1) + ":") if a == "r" else ("-" * w) for w, a in zip(widths, align, strict=True)
        )
        + " |"
    )
    return "\n".join([line(header), rule, *(line(r) for r in rows)]) + "\n"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(name)).strip("-") or "dataset"
