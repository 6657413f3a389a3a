"""Faults around a run's state: SIGKILL at random moments, then ``--resume``.

Each run is a real ``alscope run`` process with MLflow tracking on a SQLite store; the
reference is the same command left alone. A resumed run must select the same samples and
log the same metrics as the reference, with every metric step in MLflow exactly once.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ARGS = ["run", "--cycle", "3", "--trial", "2", "--epochs", "30", "--n-query", "15", "-q"]
KILLS = 20


def _timeless(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.endswith("_time")}


def _alscope(*args: str, results: Path, **kwargs):
    env = {**os.environ, "ALSCOPE_RESULTS_DIR": str(results)}
    return subprocess.Popen(
        [sys.executable, "-m", "alscope.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _state(results: Path) -> tuple[Path, dict] | None:
    found = list((results / "runs").glob("*/state.json")) if (results / "runs").exists() else []
    if not found:
        return None
    try:
        return found[0].parent, json.loads(found[0].read_text())
    except json.JSONDecodeError:  # pragma: no cover - atomic writes make this unlikely
        return None


def _outcome(run_dir: Path) -> tuple[list, list]:
    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "FINISHED"
    return (
        [t["labeled"] for t in state["trials"]],
        [[_timeless(c["metrics"]) for c in t["cycles"]] for t in state["trials"]],
    )


def _assert_logged_once(run_dir: Path) -> None:
    from mlflow import MlflowClient

    state = json.loads((run_dir / "state.json").read_text())
    client = MlflowClient(state["tracking_uri"])
    expected_steps = [c["n_labeled"] for c in state["trials"][0]["cycles"]]
    for trial in state["trials"]:
        run = client.get_run(trial["run_id"])
        for key in run.data.metrics:
            steps = [m.step for m in client.get_metric_history(trial["run_id"], key)]
            assert len(steps) == len(set(steps)), f"{key} logged twice at a step: {sorted(steps)}"
        accuracy = [m.step for m in client.get_metric_history(trial["run_id"], "accuracy")]
        assert sorted(accuracy) == expected_steps
    parent = client.get_run(state["parent_run_id"])
    assert parent.info.status == "FINISHED"
    for key in parent.data.metrics:
        assert len(client.get_metric_history(state["parent_run_id"], key)) == 1, key


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[tuple[list, list], float]:
    results = tmp_path_factory.mktemp("reference")
    start = time.monotonic()
    proc = _alscope(*ARGS, results=results)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    seconds = time.monotonic() - start
    found = _state(results)
    assert found is not None
    return _outcome(found[0]), seconds


def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_run(
    reference: tuple[tuple[list, list], float], tmp_path: Path
) -> None:
    expected, seconds = reference
    moments = random.Random(0)
    kills_inside = attempts = 0
    while kills_inside < KILLS:
        attempts += 1
        assert attempts <= 3 * KILLS, f"only {kills_inside} of {attempts - 1} kills landed inside a run"
        results = tmp_path / f"kill{attempts}"
        proc = _alscope(*ARGS, results=results)
        deadline = time.monotonic() + 300
        while _state(results) is None:  # only after the run state exists
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # the reference's time includes start-up; what is left after the state exists is less
        time.sleep(moments.uniform(0.0, seconds * 0.35))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        found = _state(results)
        assert found is not None
        run_dir, killed = found
        if killed["status"] != "FINISHED":
            kills_inside += 1
            resumed = _alscope(*ARGS[:1], "--resume", run_dir.name, "-q", results=results)
            _, stderr = resumed.communicate(timeout=600)
            assert resumed.returncode == 0, stderr
        assert _outcome(run_dir) == expected, f"attempt {attempts}"
        _assert_logged_once(run_dir)


def test_two_resumes_started_at_once_one_goes_on_and_the_other_is_refused(
    reference: tuple[tuple[list, list], float], tmp_path: Path
) -> None:
    """Before the run lock both went on to the end and MLflow held the metric steps twice."""
    expected, _ = reference
    results = tmp_path / "twice"
    proc = _alscope(*ARGS, results=results)
    deadline = time.monotonic() + 300
    while _state(results) is None:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # at once: the run has the most of its work left
    proc.communicate()
    found = _state(results)
    assert found is not None and found[1]["status"] != "FINISHED"
    run_dir = found[0]
    both = [_alscope("run", "--resume", run_dir.name, "-q", results=results) for _ in range(2)]
    errors = [p.communicate(timeout=600)[1] for p in both]
    outcomes = [(p.returncode, err) for p, err in zip(both, errors, strict=True)]
    codes = sorted(code for code, _ in outcomes)
    assert codes[0] == 0 and codes[1] != 0, outcomes
    refused = next(err for code, err in outcomes if code != 0).strip()
    assert "is in use by process" in refused and "\n" not in refused and "Traceback" not in refused
    assert _outcome(run_dir) == expected
    _assert_logged_once(run_dir)
