"""The command line as a user types it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alscope.cli import app

runner = CliRunner()
QUICK = ["--cycle", "1", "--epochs", "3", "--n-query", "10"]


def invoke(*args: str, env: dict | None = None):
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


def alscope(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "alscope.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def test_help_and_list_do_not_import_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from alscope.cli import app\n"
        "r = CliRunner()\n"
        "assert r.invoke(app, ['--help']).exit_code == 0\n"
        "res = r.invoke(app, ['list', 'strategies'])\n"
        "assert res.exit_code == 0 and 'entropy' in res.output, res.output\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_strategy_gives_one_line_with_a_suggestion():
    proc = alscope("run", "--strategy", "entrpy")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "did you mean 'entropy'" in lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--cycle", "-1"], "cycles=-1 is invalid"),
        (["--strategy-param", "n_drop=10"], "unknown parameter 'n_drop'"),
        (["--dataset-param", "test_fraction=2"], "test_fraction=2 is invalid"),
        (["--optimizer", "rmsprop"], "training.optimizer='rmsprop'"),
        (["--dataset", "cifar11"], "unknown dataset 'cifar11'"),
        (["--method", "Uncertainty"], "needs --uncertainty"),
        (["--kind-of-nonsense"], "No such option"),
    ],
)
def test_bad_input_is_reported_without_traceback(args, expected, tmp_path):
    result = runner.invoke(app, ["run", "--results-dir", str(tmp_path), *args])
    assert result.exit_code != 0
    assert expected in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_list_and_info():
    listed = invoke("list")
    for name in ("entropy", "digits", "mlp", "standard"):
        assert name in listed.output
    info = invoke("info", "MarginSampling")
    assert info.exit_code == 0
    assert "margin" in info.output and "Scheffer" in info.output and "probs" in info.output
    mlp = invoke("info", "mlp")
    assert "hidden_sizes" in mlp.output and "0.3" in mlp.output
    missing = runner.invoke(app, ["info", "entrpy"])
    assert missing.exit_code == 1 and "did you mean 'entropy'" in missing.output
    bad_kind = runner.invoke(app, ["list", "gizmos"])
    assert bad_kind.exit_code == 1 and "accepted" in bad_kind.output


def test_run_tracks_everything_in_mlflow(tmp_path):
    result = invoke("run", "--results-dir", str(tmp_path), "--trial", "2", *QUICK, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["curve"]["n_labeled"] == [20, 30]
    from mlflow import MlflowClient

    client = MlflowClient(payload["tracking_uri"])
    parent = client.get_run(payload["mlflow_run_id"])
    assert parent.data.tags["alscope.strategy"] == "entropy"
    assert parent.data.params["training.epochs"] == "3"
    assert "aubc" in parent.data.metrics
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"config.yaml", "learning_curve.png", "summary.json"} <= artifacts
    exp = parent.info.experiment_id
    trials = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(trials) == 2
    for trial in trials:
        steps = [m.step for m in client.get_metric_history(trial.info.run_id, "accuracy")]
        assert steps == [20, 30]
        selected = client.list_artifacts(trial.info.run_id, "selections")
        assert [a.path for a in selected] == ["selections/cycle_000.json", "selections/cycle_001.json"]


def test_no_track_writes_nothing_to_mlflow(tmp_path):
    result = invoke("run", "--results-dir", str(tmp_path), *QUICK, "--no-track", "-q")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "mlflow.db").exists()
    assert "AUBC" in result.output


def test_unreachable_tracking_server_stops_before_training(tmp_path):
    proc = alscope("run", "--results-dir", str(tmp_path), "--tracking-uri", "http://127.0.0.1:9", *QUICK)
    assert proc.returncode == 1
    assert "cannot reach the MLflow tracking store" in proc.stderr
    assert "Traceback" not in proc.stderr
    states = list((tmp_path / "runs").glob("*/state.json")) if (tmp_path / "runs").exists() else []
    assert all(not json.loads(p.read_text())["trials"] for p in states)


def test_config_file_with_cli_override(tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(
        "strategy: {name: margin}\ndataset: wine\nn_initial: 12\nn_query: 6\ncycles: 1\n"
        "training: {epochs: 2}\ntracking: {enabled: false}\n"
    )
    result = invoke("run", "--config", str(cfg), "--n-query", "9", "--results-dir", str(tmp_path), "--json")
    payload = json.loads(result.stdout)
    assert payload["config"]["strategy"]["name"] == "margin"
    assert payload["config"]["dataset"]["name"] == "wine"
    assert payload["curve"]["n_labeled"] == [12, 21]
    toml = tmp_path / "exp.toml"
    toml.write_text("cycles = 1\nn_query = 5\n[training]\nepochs = 2\n[tracking]\nenabled = false\n")
    payload = json.loads(
        invoke("run", "--config", str(toml), "--results-dir", str(tmp_path), "--json").stdout
    )
    assert payload["curve"]["n_labeled"] == [20, 25]


def test_alscope_command_line_spellings(tmp_path):
    result = invoke(
        "run",
        "--method",
        "Uncertainty",
        "--uncertainty",
        "CONF",
        "--dataset",
        "DIGITS",
        "--trial",
        "1",
        "--cycle",
        "1",
        "--n-initial",
        "10",
        "--n-query",
        "5",
        "--epochs",
        "2",
        "--n-class",
        "10",
        "--seed",
        "3",
        "--no-track",
        "--results-dir",
        str(tmp_path),
        "--json",
    )
    payload = json.loads(result.stdout)
    assert payload["config"]["strategy"]["name"] == "least_confidence"
    assert payload["config"]["seed"] == 3
    wrong = runner.invoke(
        app, ["run", "--n-class", "4", "--no-track", "--results-dir", str(tmp_path), *QUICK]
    )
    assert wrong.exit_code == 1 and "n_class=4 does not match" in wrong.output
    ignored = runner.invoke(
        app, ["run", "--n-drop", "5", "--no-track", "--results-dir", str(tmp_path), *QUICK, "-q"]
    )
    assert ignored.exit_code == 0 and "--n-drop ignored" in ignored.output
    openset = runner.invoke(
        app,
        [
            "run",
            "--openset",
            "--ood-rate",
            "0.2",
            "--no-track",
            "--results-dir",
            str(tmp_path),
            *QUICK,
            "--json",
        ],
    )
    assert openset.exit_code == 0, openset.output
    assert json.loads(openset.stdout)["config"]["scenario"] == {
        "name": "openset",
        "params": {"ood_rate": 0.2},
    }


def test_batch_runs_every_member_and_reports_failures(tmp_path):
    result = runner.invoke(
        app,
        [
            "run",
            "--strategy",
            "entropy,random",
            "--dataset",
            "digits,iris",
            "--n-initial",
            "105",
            "--n-query",
            "10",
            "--cycle",
            "1",
            "--epochs",
            "2",
            "--results-dir",
            str(tmp_path),
            "--experiment",
            "batch",
        ],
    )
    assert result.exit_code == 1
    # iris's pool holds 112 samples, fewer than 105 + 1 x 10: both iris members fail alone
    failed = [line for line in result.output.splitlines() if line.startswith("failed:")]
    assert len(failed) == 2 and all("-iris" in f and "exceeds the 112 samples" in f for f in failed)
    assert "entropy-digits" in result.output and "random-digits" in result.output


def test_sweep_file_runs_the_grid_into_one_experiment(tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "base: {cycles: 1, n_query: 5, training: {epochs: 2}, tracking: {experiment: sweep}}\n"
        "sweep: {strategy.name: [entropy, margin], seed: [0, 1]}\n"
    )
    result = invoke("run", "--sweep", str(sweep), "--results-dir", str(tmp_path), "--json")
    payload = json.loads(result.stdout)
    assert len(payload["runs"]) == 4 and not payload["failures"]
    report = invoke(
        "report",
        "--experiment",
        "sweep",
        "--results-dir",
        str(tmp_path),
        "--markdown",
        str(tmp_path / "r.md"),
        "--csv",
        str(tmp_path / "r.csv"),
    )
    assert report.exit_code == 0, report.output
    md = (tmp_path / "r.md").read_text()
    assert "entropy" in md and "margin" in md


def test_report_without_store_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["report", "--results-dir", str(tmp_path)])
    assert result.exit_code == 1 and "no MLflow store" in result.output


def test_progress_goes_to_a_file_as_plain_lines_and_quiet_silences_it(tmp_path: Path) -> None:
    """stderr redirected (not a terminal): one line per cycle with elapsed time and ETA."""
    env = {"ALSCOPE_RESULTS_DIR": str(tmp_path / "r")}
    proc = alscope("run", "--cycle", "1", "--epochs", "2", "--no-track", env=env)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("alscope: ")]
    assert lines[0].startswith("alscope: run ")
    assert "cycle 0/1 done: 20 labeled, accuracy" in lines[1] and "left)" in lines[1]
    assert "cycle 1/1 done: 40 labeled" in lines[2] and "elapsed" in lines[2]
    quiet = alscope("run", "--cycle", "1", "--epochs", "2", "--no-track", "-q", env=env)
    assert quiet.returncode == 0 and "cycle 0/1 done" not in quiet.stderr


def test_a_long_pass_reports_every_tenth_when_plain(capsys: pytest.CaptureFixture[str]) -> None:
    from alscope.progress import long_pass, report_passes

    report_passes(False)
    long_pass("silent", 10)(10)
    assert capsys.readouterr().err == ""
    report_passes(True)
    try:
        advance = long_pass("embedding texts", 1000)
        for _ in range(40):
            advance(25)
    finally:
        report_passes(False)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("alscope: embedding texts: 10% (100/1,000;")
    assert lines[-1].startswith("alscope: embedding texts: 100% (1,000/1,000;") and "left)" in lines[-1]
