"""Stopping criteria: golden sequences where the right stop is known, the measures they
read, small-text's two fixed bugs as regressions, and the criteria in the loop (stop,
record, resume, messages)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from alscope.cli import app
from alscope.config import ExperimentConfig
from alscope.engine.experiment import Experiment, run_experiment
from alscope.errors import ConfigError
from alscope.hookspecs import hookimpl
from alscope.progress import Progress
from alscope.registry import Registry, get_registry
from alscope.specs import StoppingSpec
from alscope.stopping import MEASURES, StoppingCriterion
from alscope.stopping.measures import delta_f, error_stability, kappa, selection_measures, stop_set_measures

runner = CliRunner()


def criterion(name: str, **params) -> StoppingCriterion:
    registry = get_registry()
    cls = registry.load_spec("stopping", registry.resolve("stopping", name))
    return cls(params)


def first_stop(name: str, measure: str, values: list[float | None], **params) -> int | None:
    """The index of the first cycle at which the criterion fires on ``values`` of one
    measure (None: the cycle lacks it), or None where it never fires."""
    c = criterion(name, **params)
    history: list[dict[str, float]] = []
    for i, value in enumerate(values):
        history.append({} if value is None else {measure: value})
        if c.check(history)[1]:
            return i
    return None


# -- golden sequences ---------------------------------------------------------------------

GOLDEN = [
    # (criterion, params, measure, values, first cycle that must fire)
    ("stabilizing_predictions", {}, "kappa", [None, 0.5, 0.9, 0.995, 0.995, 0.995], 5),
    ("stabilizing_predictions", {"window": 2, "threshold": 0.9}, "kappa", [None, 0.95, 0.8, 0.99, 0.95], 4),
    ("stabilizing_predictions", {}, "kappa", [None, 0.99, 0.99, 0.99], None),  # mean must exceed 0.99
    ("kappa_average", {}, "kappa_pool", [None, 0.99, 0.99, 0.99], 3),  # reaches it: small-text's >=
    ("kappa_average", {"window": 2}, "kappa_pool", [None, 0.5, 1.0, 0.97, 1.0, 1.0], 5),
    ("delta_f", {}, "delta_f", [None, 0.2, 0.04, 0.03, 0.06, 0.01, 0.02, 0.04], 7),
    ("delta_f", {"window": 1, "threshold": 0.1}, "delta_f", [None, 0.3, 0.09], 2),
    ("classification_change", {}, "changed", [None, 0.1, 0.01, 0.0], 3),
    ("classification_change", {"threshold": 0.05}, "changed", [None, 0.1, 0.04], 2),
    ("overall_uncertainty", {}, "entropy", [0.8, 0.3, 0.06, 0.049], 3),
    ("max_confidence", {}, "selected_entropy", [1.2, 0.01, 0.0009, None], 2),
    ("max_confidence", {}, "selected_entropy", [1.2, 0.01, None], None),  # the last cycle selects nothing
    ("min_expected_error", {"threshold": 0.1}, "expected_error", [0.5, 0.2, 0.1, 0.09], 3),
    ("changing_confidence", {}, "confidence", [0.5, 0.7, 0.8, 0.79, 0.78, 0.77], 5),
    ("changing_confidence", {}, "confidence", [0.5, 0.7, 0.8, 0.8, 0.78, 0.77], None),  # a flat step
    ("changing_confidence", {"mode": "non_increasing"}, "confidence", [0.5, 0.7, 0.8, 0.8, 0.78, 0.77], 5),
    ("low_average_uncertainty", {}, "strategy_score", [1.5, 0.4, 0.09], 2),
    ("labelling_budget", {"budget": 100}, "n_queried", [0, 50, 100, 150], 2),
    ("error_stability", {}, "error_stability", [None, 0.3, 0.05, 0.009], 3),
    ("validation_early_stopping", {"patience": 2}, "val_accuracy", [0.5, 0.8, 0.9, 0.9, 0.9], 4),
    ("validation_early_stopping", {"patience": 2}, "val_accuracy", [0.5, 0.9, 0.9, 0.91, 0.91], None),
]


@pytest.mark.parametrize(
    ("name", "params", "measure", "values", "expected"),
    GOLDEN,
    ids=[f"{g[0]}-{i}" for i, g in enumerate(GOLDEN)],
)
def test_each_criterion_stops_where_the_sequence_says(name, params, measure, values, expected) -> None:
    assert first_stop(name, measure, values, **params) == expected


def test_performance_convergence_follows_laws_and_schuetze() -> None:
    """Estimated F (1 - expected error) rising, then flattening at a new high: the
    gradient between the two windows is positive and below the threshold."""
    errors = [0.5, 0.3, 0.2, 0.15, 0.14, 0.139, 0.1389, 0.13885]
    assert first_stop("performance_convergence", "expected_error", errors, window=2, threshold=1e-3) == 6
    # falling estimates (a new high is required) never fire
    assert first_stop("performance_convergence", "expected_error", [0.1, 0.2, 0.3, 0.4], window=1) is None


def test_uncertainty_convergence_reads_the_most_uncertain_selected_sample() -> None:
    # confidence in the most uncertain pick: 0.2, 0.4, 0.6, 0.6004, 0.6008 (medians over windows of 2)
    values = [0.8, 0.6, 0.4, 0.3996, 0.3992, None]
    assert (
        first_stop("uncertainty_convergence", "selected_uncertainty", values, window=2, threshold=1e-3) == 4
    )


def test_every_registered_criterion_reads_known_measures_and_is_in_a_golden_case() -> None:
    registry = get_registry()
    specs = registry.specs("stopping")
    assert len(specs) >= 14
    covered = {g[0] for g in GOLDEN} | {"performance_convergence", "uncertainty_convergence"}
    for spec in specs:
        cls = registry.load_spec("stopping", spec)
        assert cls.measures and set(cls.measures) <= set(MEASURES), spec.name
        assert spec.paper, spec.name
        assert spec.name in covered, f"{spec.name} has no golden test"


# -- the measures -------------------------------------------------------------------------


def test_kappa_is_one_for_identical_predictions_of_one_class() -> None:
    """small-text PR #52: scikit-learn's kappa is 0/0 (NaN) for two identical one-class
    vectors; agreement is perfect there."""
    same = np.zeros(50, dtype=int)
    assert kappa(same, same, 3) == 1.0
    assert kappa(np.array([0, 1, 2, 0]), np.array([0, 1, 2, 1]), 3) == pytest.approx(0.6363, abs=1e-3)


def test_kappa_average_does_not_stop_on_constant_low_agreement() -> None:
    """small-text PR #52: the old KappaAverage stopped when the kappas stopped changing
    (mean |delta kappa| < 1 - kappa), so a steady kappa of 0.5 stopped it; the fix, and
    the paper, compare the mean kappa itself with the threshold."""
    assert first_stop("kappa_average", "kappa_pool", [None, 0.5, 0.5, 0.5, 0.5, 0.5]) is None


def test_delta_f_counts_only_the_positive_class() -> None:
    """small-text PR #51: the agreement on the negative label must not count. Here the
    models agree on 90 negatives but on none of the positives: delta F is 1, not small."""
    before = np.array([0] * 90 + [1] * 5 + [0] * 5)
    after = np.array([0] * 90 + [0] * 5 + [1] * 5)
    assert delta_f(before, after, 2) == 1.0
    assert delta_f(before, before, 2) == 0.0
    assert first_stop("delta_f", "delta_f", [None, delta_f(before, after, 2)] * 3) is None
    # more than two classes: the mean over classes, one against the rest
    assert delta_f(np.array([0, 1, 2]), np.array([0, 1, 2]), 3) == 0.0
    assert delta_f(np.array([0, 0, 1]), np.array([0, 1, 1]), 3) == pytest.approx((1 - 2 / 3 + 1 - 2 / 3) / 2)


def test_stop_set_measures_on_known_probabilities() -> None:
    probs = np.array([[1.0, 0.0], [0.5, 0.5], [0.2, 0.8]])
    unlabeled = np.array([True, True, False])
    first = stop_set_measures(probs, None, unlabeled)
    assert set(first) == {"confidence", "entropy", "expected_error"}  # nothing to compare with yet
    assert first["confidence"] == pytest.approx((1 + 0.5 + 0.8) / 3)
    assert first["entropy"] == pytest.approx(0.5)  # (0 + 1) / 2, normalised by log 2
    assert first["expected_error"] == pytest.approx(0.25)
    same = stop_set_measures(probs, probs, unlabeled)
    assert same["kappa"] == 1.0 and same["changed"] == 0.0 and same["delta_f"] == 0.0
    assert same["error_stability"] == 0.0
    flipped = stop_set_measures(probs[:, ::-1].copy(), probs, unlabeled)
    assert flipped["changed"] == 0.5  # the tie at row 1 keeps class 0 both times
    assert flipped["error_stability"] > 0.4
    assert error_stability(np.array([[0.5, 0.5]]), np.array([[1.0, 0.0]])) == pytest.approx(
        math.sqrt(math.log(2) / 2)
    )
    picks = selection_measures(np.array([[0.5, 0.5], [0.9, 0.1]]))
    assert picks["selected_entropy"] == pytest.approx(math.log(2))
    assert picks["selected_uncertainty"] == pytest.approx(0.5)


# -- in the loop --------------------------------------------------------------------------


def quick(tmp_path: Path, **overrides) -> ExperimentConfig:
    base = {
        "cycles": 6,
        "n_initial": 20,
        "n_query": 30,
        "results_dir": str(tmp_path),
        "training": {"epochs": 20, "min_steps": 0},
        "tracking": {"enabled": False},
    }
    base.update(overrides)
    return ExperimentConfig.model_validate(base)


RECORDED = [
    "stabilizing_predictions",
    "kappa_average",
    "delta_f",
    "classification_change",
    "overall_uncertainty",
    "max_confidence",
    "min_expected_error",
    "changing_confidence",
    "performance_convergence",
    "uncertainty_convergence",
    "low_average_uncertainty",
    {"name": "labelling_budget", "params": {"budget": 60}},
    "error_stability",
]


def test_record_mode_logs_every_criterion_and_changes_nothing(tmp_path: Path) -> None:
    plain = run_experiment(quick(tmp_path / "plain"))
    recorded = run_experiment(quick(tmp_path / "rec", stopping={"criteria": RECORDED, "mode": "record"}))
    (a,), (b,) = plain.trials, recorded.trials
    assert a.labeled == b.labeled  # measuring selects nothing differently
    assert [c.metrics["accuracy"] for c in a.cycles] == [c.metrics["accuracy"] for c in b.cycles]
    assert b.stopped is None and len(b.cycles) == 7
    names = [c if isinstance(c, str) else c["name"] for c in RECORDED]
    for cycle in b.cycles:
        for name in names:
            assert f"stop/{name}/fired" in cycle.metrics
    assert "stop_measure/kappa" not in b.cycles[0].metrics  # nothing to compare with at cycle 0
    assert 0 <= b.cycles[1].metrics["stop_measure/kappa"] <= 1
    budget = [c.metrics["stop/labelling_budget/fired"] for c in b.cycles]
    assert budget == [0, 0, 1, 1, 1, 1, 1]  # 60 labels added at the third cycle
    assert len(b.stop_set) == min(2000, 1347 - 20)
    assert not set(b.stop_set) & set(b.labeled[:20])  # drawn from what was unlabeled


def test_strategy_scores_are_computed_once_per_cycle(tmp_path: Path, monkeypatch) -> None:
    """low_average_uncertainty reads the mean of the scores the top-k selection computes:
    one scoring pass per cycle, not a second one for the stopping measure."""
    from alscope.strategies.uncertainty import EntropySampling

    calls = []
    score = EntropySampling.score
    monkeypatch.setattr(EntropySampling, "score", lambda self, view: calls.append(1) or score(self, view))
    result = run_experiment(
        quick(tmp_path, cycles=3, stopping={"criteria": ["low_average_uncertainty"], "mode": "record"})
    )
    assert len(calls) == 3  # the cycles that query
    assert all("stop_measure/strategy_score" in c.metrics for c in result.trials[0].cycles[:3])


def test_stop_mode_ends_the_trial_and_leaves_the_batch_unlabeled(tmp_path: Path) -> None:
    budget = {"name": "labelling_budget", "params": {"budget": 60}}
    result = run_experiment(quick(tmp_path, trials=2, stopping={"criteria": [budget]}))
    for trial in result.trials:
        assert trial.stopped == {"criterion": "labelling_budget", "cycle": 2, "n_labeled": 80}
        assert [c.n_labeled for c in trial.cycles] == [20, 50, 80]
        assert len(trial.labeled) == 80 and trial.cycles[-1].selected == []
        assert trial.done
    assert not list(Path(result.run_dir).glob("stop-trial*-cycle[01].npz"))  # only the last is kept


class _InterruptAfter(Progress):
    def __init__(self, cycles: int) -> None:
        self.left = cycles

    def cycle_end(self, trial: int, record) -> None:
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt


def _timeless(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.endswith("_time")}


@pytest.mark.parametrize("mode", ["record", "stop"])
def test_resume_with_stopping_decides_as_the_uninterrupted_run(tmp_path: Path, mode: str) -> None:
    criteria = [
        {"name": "stabilizing_predictions", "params": {"threshold": 0.7}},
        "error_stability",
        "changing_confidence",
    ]
    stopping = {"criteria": criteria, "mode": mode}
    clean = run_experiment(quick(tmp_path / "clean", trials=2, stopping=stopping))
    experiment = Experiment(quick(tmp_path / "cut", trials=2, stopping=stopping), progress=_InterruptAfter(3))
    with pytest.raises(KeyboardInterrupt):
        experiment.run()
    resumed = Experiment.resume(tmp_path / "cut", experiment.state.run).run()
    if mode == "stop":
        assert all(t.stopped is not None for t in clean.trials)
    for a, b in zip(clean.trials, resumed.trials, strict=True):
        assert a.labeled == b.labeled and a.stopped == b.stopped
        assert [_timeless(c.metrics) for c in a.cycles] == [_timeless(c.metrics) for c in b.cycles]


def test_resume_without_the_stop_set_file_fails_in_one_line(tmp_path: Path) -> None:
    stopping = {"criteria": ["stabilizing_predictions"], "mode": "record"}
    experiment = Experiment(quick(tmp_path, stopping=stopping), progress=_InterruptAfter(2))
    with pytest.raises(KeyboardInterrupt):
        experiment.run()
    for path in Path(experiment.run_dir).glob("stop-trial*.npz"):
        path.unlink()
    result = runner.invoke(app, ["run", "--results-dir", str(tmp_path), "--resume", experiment.state.run])
    assert result.exit_code != 0
    assert "stop-trial0-cycle1.npz" in result.output and "Traceback" not in result.output


# -- the command line and plugins ---------------------------------------------------------------


def quick_cli(tmp_path: Path, *args: str):
    """``alscope run`` on digits with no tracking and no step floor, plus ``args``."""
    return runner.invoke(
        app, ["run", "--results-dir", str(tmp_path), "--no-track", "--min-steps", "0", *args]
    )


def test_cli_stop_runs_stop_early_and_says_why(tmp_path: Path) -> None:
    result = quick_cli(
        tmp_path,
        "--cycles",
        "6",
        "--n-query",
        "30",
        "--stop",
        "labelling_budget",
        "--stop-param",
        "budget=30",
    )
    assert result.exit_code == 0, result.output
    assert "trial 0 stopped by labelling_budget at 50 labels (cycle 1)" in result.output
    assert "labels saved" in result.output
    (state_file,) = (tmp_path / "runs").glob("*/state.json")
    state = json.loads(state_file.read_text())
    assert state["config"]["stopping"]["criteria"] == [{"name": "labelling_budget", "params": {"budget": 30}}]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--stop", "stabilising_predictions"], "did you mean 'stabilizing_predictions'"),
        (["--stop-param", "window=3"], "needs a criterion to apply to"),
        (["--stop", "kappa_average,delta_f", "--stop-param", "window=2"], "say which one"),
        (["--stop", "delta_f", "--stop-param", "kappa_average.window=2"], "not among --stop"),
        (["--stop", "delta_f", "--stop-param", "windw=2"], "unknown parameter 'windw'"),
        (["--stop", "delta_f", "--stop-param", "threshold=2"], "threshold"),
        (["--stop", "validation_early_stopping"], "--validation-fraction"),
        (["--stop", "low_average_uncertainty", "--strategy", "random"], "scoring strategy"),
        (["--stop", "labelling_budget"], "'budget' is required"),
        (["--stop", "delta_f,delta_f"], "given twice"),
        (["--stop", "delta_f", "--stop-mode", "halt"], "stopping.mode"),
        (["--stop", ","], "names nothing"),
    ],
)
def test_cli_stop_bad_input_is_one_line(tmp_path: Path, args: list[str], expected: str) -> None:
    result = runner.invoke(app, ["run", "--results-dir", str(tmp_path), "--no-track", *args])
    assert result.exit_code != 0
    assert expected in result.output, result.output
    assert "Traceback" not in result.output


def test_list_and_info_show_the_criteria_with_their_papers() -> None:
    listed = runner.invoke(app, ["list", "stopping"])
    assert listed.exit_code == 0
    for name in ("stabilizing_predictions", "kappa_average", "error_stability", "labelling_budget"):
        assert name in listed.output
    assert "Bloodgood" in listed.output and "Laws" in listed.output
    info = runner.invoke(app, ["info", "stabilizing_predictions"])
    assert info.exit_code == 0
    assert "window" in info.output and "threshold" in info.output and "0.99" in info.output
    assert "reads kappa" in info.output


class _Always(StoppingCriterion):
    measures = ("n_labeled",)

    def evaluate(self, history):
        return history[-1]["n_labeled"], history[-1]["n_labeled"] >= 50


class _StopPlugin:
    @hookimpl
    def alscope_register_stopping(self):
        return [StoppingSpec("fifty", f"{__name__}:_Always", "stops at 50 labels", paper="-")]


def test_a_plugin_adds_a_criterion(tmp_path: Path) -> None:
    registry = Registry(plugins={"mine": _StopPlugin()})
    assert "fifty" in registry.names("stopping")
    result = Experiment(quick(tmp_path, stopping={"criteria": ["fifty"]}), registry=registry).run()
    assert result.trials[0].stopped["n_labeled"] == 50


def test_a_criterion_reading_an_unknown_measure_is_refused(tmp_path: Path) -> None:
    class _Bad(StoppingCriterion):
        measures = ("moon_phase",)

    class _Plugin:
        @hookimpl
        def alscope_register_stopping(self):
            return [StoppingSpec("moon", f"{__name__}:_BadMoon", "reads nothing real", paper="-")]

    globals()["_BadMoon"] = _Bad
    registry = Registry(plugins={"bad": _Plugin()})
    with pytest.raises(ConfigError, match="moon_phase"):
        Experiment(quick(tmp_path, stopping={"criteria": ["moon"]}), registry=registry)


def test_report_says_where_each_criterion_fired(tmp_path: Path) -> None:
    budget = {"name": "labelling_budget", "params": {"budget": 60}}
    cfg = quick(
        tmp_path,
        cycles=3,
        trials=2,
        tracking={"enabled": True},
        stopping={"criteria": [budget, "max_confidence"], "mode": "record"},
    )
    result = run_experiment(cfg)
    from mlflow import MlflowClient

    client = MlflowClient(result.tracking_uri)
    for trial in result.trials:
        logged = client.get_run(trial.run_id).data.metrics
        assert logged["stopped_at/labelling_budget"] == 80.0  # 60 added to the 20 initial
        assert "stopped_at/max_confidence" not in logged  # never fired
        history = client.get_metric_history(trial.run_id, "stop/labelling_budget/fired")
        assert sorted(m.step for m in history) == [20, 50, 80, 110]
    markdown = tmp_path / "report.md"
    shown = runner.invoke(app, ["report", "--results-dir", str(tmp_path), "--markdown", str(markdown)])
    assert shown.exit_code == 0, shown.output
    assert "where the stopping criteria fired" in shown.output
    text = " ".join(markdown.read_text().split())
    assert re.search(r"\| entropy \| labelling_budget \| 2/2 \| 80 \| 0\.\d{4} \|", text)
    assert "| entropy | max_confidence | 0/2 | never | - |" in text


def test_json_output_names_the_stops(tmp_path: Path) -> None:
    result = quick_cli(
        tmp_path, "--cycles", "3", "--stop", "labelling_budget", "--stop-param", "budget=20", "--json"
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["stopping"]["stopped"] == [{"criterion": "labelling_budget", "cycle": 1, "n_labeled": 40}]
    assert payload["stopping"]["first_fired"]["labelling_budget"][0]["n_labeled"] == 40
