"""``alscope.report``: strategy comparison built from what MLflow holds."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alscope.engine.metrics import aubc
from alscope.errors import ConfigError, TrackingError
from alscope.report import Report, load_trials, summarize

STRATEGIES = ("entropy", "random")
EXPERIMENT = "cmp"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two strategies, two trials each, run once into one MLflow experiment."""
    from alscope import run_experiment
    from alscope.config import ExperimentConfig

    tmp = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{tmp}/mlflow.db"
    results = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        for strategy in STRATEGIES:
            cfg = ExperimentConfig(
                strategy=strategy,
                cycles=2,
                trials=2,
                n_initial=20,
                n_query=20,
                results_dir=tmp,
                training={"epochs": 5, "device": "cpu"},
                tracking={"uri": uri, "experiment": EXPERIMENT},
            )
            results[strategy] = run_experiment(cfg)
    return {"tmp": tmp, "uri": uri, "results": results}


@pytest.fixture(scope="module")
def trials(runs: dict) -> pd.DataFrame:
    return load_trials(runs["uri"], EXPERIMENT)


@pytest.fixture(scope="module")
def report(trials: pd.DataFrame) -> Report:
    return summarize(trials, metric="accuracy")


def _expected(result, metric: str = "accuracy") -> tuple[dict[int, list[float]], list[float]]:
    by_count: dict[int, list[float]] = {}
    per_trial = []
    for t in result.trials:
        xs, ys = [], []
        for c in t.cycles:
            by_count.setdefault(c.n_labeled, []).append(c.metrics[metric])
            xs.append(c.n_labeled)
            ys.append(c.metrics[metric])
        per_trial.append(aubc(xs, ys))
    return by_count, per_trial


def test_load_trials_layout(runs: dict, trials: pd.DataFrame) -> None:
    assert list(trials.columns[:9]) == [
        "run",
        "parent_run_id",
        "trial_run_id",
        "trial",
        "strategy",
        "dataset",
        "backbone",
        "scenario",
        "n_labeled",
    ]
    for metric in ("accuracy", "macro_f1", "balanced_accuracy", "selection_time", "train_time"):
        assert metric in trials.columns
    assert set(trials["strategy"]) == set(STRATEGIES)
    assert set(trials["dataset"]) == {"digits"}
    assert set(trials["scenario"]) == {"standard"}
    assert (trials["backbone"] != "").all()
    assert len(trials) == len(STRATEGIES) * 2 * 3
    for strategy, result in runs["results"].items():
        rows = trials[trials["strategy"] == strategy]
        assert set(rows["parent_run_id"]) == {result.parent_run_id}
        assert set(rows["run"]) == {result.run}
        assert set(rows["trial"]) == {0, 1}
        assert set(rows["trial_run_id"]) == {t.run_id for t in result.trials}
        for t in result.trials:
            mine = rows[rows["trial_run_id"] == t.run_id].sort_values("n_labeled")
            assert mine["n_labeled"].tolist() == [c.n_labeled for c in t.cycles]
            np.testing.assert_allclose(mine["accuracy"], [c.metrics["accuracy"] for c in t.cycles])
            # The last cycle selects nothing, so it has no selection time.
            assert np.isnan(mine["selection_time"].iloc[-1])
            assert mine["selection_time"].iloc[:-1].notna().all()


def test_summary_matches_the_runs(runs: dict, report: Report) -> None:
    assert set(report.aubc["strategy"]) == set(STRATEGIES)
    for strategy, result in runs["results"].items():
        by_count, per_trial = _expected(result)
        curve = report.curves[report.curves["strategy"] == strategy].sort_values("n_labeled")
        assert curve["n_labeled"].tolist() == [20, 40, 60] == sorted(by_count)
        np.testing.assert_allclose(curve["mean"], [np.mean(by_count[c]) for c in (20, 40, 60)])
        np.testing.assert_allclose(curve["std"], [np.std(by_count[c], ddof=1) for c in (20, 40, 60)])
        assert curve["n_trials"].tolist() == [2, 2, 2]

        row = report.aubc[report.aubc["strategy"] == strategy].iloc[0]
        assert row["aubc_mean"] == pytest.approx(np.mean(per_trial))
        assert row["aubc_std"] == pytest.approx(np.std(per_trial, ddof=1))
        assert np.isnan(row["aubc_ci95"])  # 2 trials: no interval
        # ... and agrees with what the engine logged on the parent run.
        assert row["aubc_mean"] == pytest.approx(result.summary["aubc"])
        assert row["aubc_std"] == pytest.approx(result.summary["aubc_std"])
        assert row["n_trials"] == 2
        assert row["mean_selection_time"] == pytest.approx(result.summary["mean_selection_time"], rel=1e-6)
        got = report.trial_aubc[report.trial_aubc["strategy"] == strategy].sort_values("trial")
        np.testing.assert_allclose(got["aubc"], per_trial)

        cells = report.table.loc[("digits", "standard", strategy)]
        assert list(report.table.columns) == [20, 40, 60]
        assert cells[40] == f"{np.mean(by_count[40]):.3f} ± {np.std(by_count[40], ddof=1):.3f}"


def test_ranking_by_mean_aubc(report: Report) -> None:
    table = report.aubc
    assert table["rank"].tolist() == [1, 2]
    assert table["aubc_mean"].is_monotonic_decreasing
    assert list(report.table.index.get_level_values("label")) == table["label"].tolist()


def test_csv_exports(report: Report, tmp_path: Path) -> None:
    curves_path, aubc_path, penalty_path, composition_path = report.to_csv(tmp_path / "out" / "cmp.csv")
    assert penalty_path.name == "cmp_penalty.csv" and composition_path.name == "cmp_composition.csv"
    assert curves_path == tmp_path / "out" / "cmp.csv"
    assert aubc_path == tmp_path / "out" / "cmp_aubc.csv"
    curves = pd.read_csv(curves_path)
    assert {"dataset", "scenario", "strategy", "n_labeled", "mean", "std", "n_trials"} <= set(curves.columns)
    assert len(curves) == len(STRATEGIES) * 3
    assert set(curves["strategy"]) == set(STRATEGIES)
    table = pd.read_csv(aubc_path)
    assert set(table["strategy"]) == set(STRATEGIES)
    assert {"aubc_mean", "aubc_std", "rank", "n_trials", "mean_selection_time"} <= set(table.columns)


def test_markdown(report: Report, tmp_path: Path) -> None:
    text = report.to_markdown()
    path = tmp_path / "cmp.md"
    path.write_text(text, encoding="utf-8")
    content = path.read_text(encoding="utf-8")
    for strategy in STRATEGIES:
        assert f"| {strategy}" in content
    assert "AUBC" in content and "±" in content
    for count in (20, 40, 60):
        assert f" {count} |" in content
    # Every table line has the same number of cells as its header.
    for block in content.split("\n\n"):
        lines = [ln for ln in block.splitlines() if ln.startswith("|")]
        if lines:
            assert len({ln.count(" | ") for ln in lines}) == 1


def test_plot_writes_a_png(report: Report, tmp_path: Path) -> None:
    written = report.plot(tmp_path / "curves.png")
    assert written == [tmp_path / "curves.png"]
    assert written[0].read_bytes()[:8] == PNG_MAGIC


def test_rich_tables(report: Report) -> None:
    from rich.console import Console
    from rich.table import Table

    tables = report.rich_tables()
    assert tables and all(isinstance(t, Table) for t in tables)
    console = Console(width=200, record=True)
    for t in tables:
        console.print(t)
    text = console.export_text()
    assert all(s in text for s in STRATEGIES)


def test_other_metric(trials: pd.DataFrame) -> None:
    rep = summarize(trials, metric="macro_f1")
    assert rep.metric == "macro_f1"
    assert "macro_f1" in rep.to_markdown()
    with pytest.raises(ConfigError, match="nope"):
        summarize(trials, metric="nope")


def test_unknown_experiment_names_it(runs: dict) -> None:
    with pytest.raises(TrackingError, match="no-such-experiment") as info:
        load_trials(runs["uri"], "no-such-experiment")
    assert EXPERIMENT in str(info.value)  # the existing experiments are listed


def test_missing_store_is_not_created(tmp_path: Path) -> None:
    db = tmp_path / "absent.db"
    with pytest.raises(TrackingError, match="no MLflow store"):
        load_trials(f"sqlite:///{db}", EXPERIMENT)
    assert not db.exists()


def test_run_filter(runs: dict) -> None:
    entropy = runs["results"]["entropy"]
    df = load_trials(runs["uri"], EXPERIMENT, run_filter=[entropy.run])
    assert set(df["strategy"]) == {"entropy"}
    df = load_trials(runs["uri"], EXPERIMENT, run_filter=[entropy.parent_run_id[:8]])
    assert set(df["strategy"]) == {"entropy"}
    with pytest.raises(TrackingError, match="zzz-unknown"):
        load_trials(runs["uri"], EXPERIMENT, run_filter=["zzz-unknown"])


def test_empty_and_unfinished(runs: dict, tmp_path: Path) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    db = tmp_path / "copy.db"
    shutil.copy(runs["tmp"] / "mlflow.db", db)
    uri = f"sqlite:///{db}"
    client = MlflowClient(uri)

    client.create_experiment("empty")
    with pytest.raises(TrackingError, match=r"'empty'.*no finished trials"):
        load_trials(uri, "empty")

    # A killed third entropy trial with two cycles logged.
    exp_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    parent = runs["results"]["entropy"].parent_run_id
    run = client.create_run(
        exp_id,
        tags={
            "alscope.kind": "trial",
            "alscope.trial": "2",
            "mlflow.parentRunId": parent,
        },
    )
    client.log_batch(
        run.info.run_id,
        metrics=[
            Metric("accuracy", 0.5, 0, 20),
            Metric("accuracy", 0.6, 0, 40),
        ],
    )
    client.set_terminated(run.info.run_id, "KILLED")

    finished = load_trials(uri, EXPERIMENT)
    assert run.info.run_id not in set(finished["trial_run_id"])
    everything = load_trials(uri, EXPERIMENT, include_unfinished=True)
    extra = everything[everything["trial_run_id"] == run.info.run_id]
    assert extra["n_labeled"].tolist() == [20, 40]
    assert set(extra["strategy"]) == {"entropy"}  # from the parent run's tags
    assert summarize(everything).aubc.set_index("strategy").loc["entropy", "n_trials"] == 3


def _fake(dataset: str, backbone: str, strategy: str, trial: int, accs: list[float]) -> list:
    return [
        {
            "run": f"{dataset}-{strategy}",
            "parent_run_id": f"p-{dataset}-{backbone}-{strategy}",
            "trial_run_id": f"t-{dataset}-{backbone}-{strategy}-{trial}",
            "trial": trial,
            "strategy": strategy,
            "dataset": dataset,
            "backbone": backbone,
            "scenario": "standard",
            "n_labeled": n,
            "accuracy": a,
            "selection_time": 0.01,
            "train_time": 0.1,
        }
        for n, a in zip((10, 20, 30), accs, strict=True)
    ]


def test_several_datasets_and_backbones(tmp_path: Path) -> None:
    rows = []
    for dataset in ("digits", "hf:cifar/10"):
        for trial in range(2):
            rows += _fake(dataset, "mlp", "random", trial, [0.1, 0.2, 0.3 + 0.1 * trial])
            rows += _fake(dataset, "mlp", "entropy", trial, [0.1, 0.4, 0.5])
    rows += _fake("digits", "cnn", "entropy", 0, [0.2, 0.5, 0.9])
    rep = summarize(pd.DataFrame(rows))

    assert rep.blocks() == [("digits", "standard"), ("hf:cifar/10", "standard")]
    digits = rep.aubc[rep.aubc["dataset"] == "digits"]
    assert digits["label"].tolist() == ["entropy [cnn]", "entropy [mlp]", "random [mlp]"]
    assert digits["rank"].tolist() == [1, 2, 3]
    cifar = rep.aubc[rep.aubc["dataset"] == "hf:cifar/10"]
    assert cifar["label"].tolist() == ["entropy", "random"]
    assert "entropy [cnn]" in rep.to_markdown()

    written = rep.plot(tmp_path / "lc.png")
    assert [p.name for p in written] == ["lc_digits.png", "lc_hf-cifar-10.png"]
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in written)


def test_report_module_does_not_import_torch() -> None:
    code = "import sys, alscope.report; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_cli_report_reads_a_scenario_metric_on_request(tmp_path: Path) -> None:
    """Open-set runs log query precision; `alscope report --metric query_precision` ranks by
    it, and a misspelt metric gets a suggestion naming what the trials logged."""
    from typer.testing import CliRunner

    from alscope.cli import app

    runner = CliRunner()
    common = ["--ood-rate", "0.4", "--cycles", "2", "--n-query", "10", "--epochs", "3"]
    common += ["--results-dir", str(tmp_path), "--experiment", "open", "-q"]
    for strategy in ("random", "entropy"):
        done = runner.invoke(app, ["run", "--strategy", strategy, *common])
        assert done.exit_code == 0, done.output
    shown = runner.invoke(
        app, ["report", "--results-dir", str(tmp_path), "--experiment", "open", "--metric", "query_precision"]
    )
    assert shown.exit_code == 0, shown.output
    assert "query_precision by labeled count" in shown.output and "entropy" in shown.output
    typo = runner.invoke(
        app, ["report", "--results-dir", str(tmp_path), "--experiment", "open", "--metric", "query_precison"]
    )
    assert typo.exit_code != 0 and "did you mean 'query_precision'" in typo.output
