"""The engine end to end: determinism, validation, cold start, resume after SIGKILL."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from alscope.config import ExperimentConfig
from alscope.engine.experiment import Experiment, run_experiment
from alscope.errors import BudgetError, ConfigError, SelectionError
from alscope.hookspecs import hookimpl
from alscope.registry import Registry
from alscope.specs import StrategySpec
from alscope.strategies.base import PoolView, Strategy


def quick(tmp_path: Path, **overrides) -> ExperimentConfig:
    base = {
        "cycles": 2,
        "n_initial": 20,
        "n_query": 10,
        "results_dir": str(tmp_path),
        "training": {"epochs": 5},
        "tracking": {"enabled": False},
    }
    base.update(overrides)
    return ExperimentConfig.model_validate(base)


def selections(result) -> list[list[int]]:
    return [t.labeled for t in result.trials]


def test_same_seed_same_selections_and_metrics(tmp_path):
    a = run_experiment(quick(tmp_path / "a", trials=2))
    b = run_experiment(quick(tmp_path / "b", trials=2))
    assert selections(a) == selections(b)
    for ta, tb in zip(a.trials, b.trials, strict=True):
        assert [c.metrics["accuracy"] for c in ta.cycles] == [c.metrics["accuracy"] for c in tb.cycles]
    c = run_experiment(quick(tmp_path / "c", trials=2, seed=1))
    assert selections(c) != selections(a)
    # trials differ from each other, each has its own seed
    assert a.trials[0].labeled != a.trials[1].labeled


def test_labeled_set_grows_by_the_query_and_curve_has_every_cycle(tmp_path):
    result = run_experiment(quick(tmp_path, cycles=3))
    trial = result.trials[0]
    assert [c.n_labeled for c in trial.cycles] == [20, 30, 40, 50]
    assert len(set(trial.labeled)) == 50
    for record in trial.cycles[:-1]:
        assert len(record.selected) == 10
        assert sum(v for k, v in record.metrics.items() if k.startswith("query_count/")) == 10
        assert record.metrics["selection_time"] >= 0
    assert trial.cycles[-1].selected == []
    for key in ("accuracy", "macro_f1", "balanced_accuracy", "nll", "ece", "train_time"):
        assert key in trial.cycles[0].metrics
    assert 0 < result.summary["aubc"] <= 1


def test_stratified_initial_set_covers_every_class(tmp_path):
    result = run_experiment(quick(tmp_path, initial="stratified", cycles=0, n_initial=30))
    from alscope.data.base import LoadContext
    from alscope.data.tabular import Digits

    pool = Digits().load(LoadContext(tmp_path, seed=0)).pool
    counts = np.bincount(pool.labels[result.trials[0].labeled], minlength=10)
    assert counts.min() >= 2 and counts.max() <= 4


def test_budget_larger_than_pool_is_refused_before_training(tmp_path):
    with pytest.raises(BudgetError, match="exceeds the 112 samples"):
        run_experiment(quick(tmp_path, dataset="iris", n_initial=100, cycles=2, n_query=10))
    assert not (tmp_path / "runs").exists()


def test_n_class_is_checked_against_the_dataset(tmp_path):
    with pytest.raises(ConfigError, match=r"n_class=3 does not match .* 10 classes"):
        run_experiment(quick(tmp_path, n_class=3))


def test_cold_start_needs_a_model_free_strategy(tmp_path):
    result = run_experiment(quick(tmp_path, strategy="random", n_initial=0, cycles=2))
    cycles = result.trials[0].cycles
    assert cycles[0].n_labeled == 0 and "accuracy" not in cycles[0].metrics
    assert cycles[-1].n_labeled == 20 and "accuracy" in cycles[-1].metrics
    with pytest.raises(ConfigError, match="cold start"):
        run_experiment(quick(tmp_path, strategy="entropy", n_initial=0))


class _Duplicates(Strategy):
    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        return np.repeat(view.unlabeled[:1], budget)


class _Labeled(Strategy):
    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        return view.labeled[:budget]


class _BrokenPlugin:
    @hookimpl
    def alscope_register_strategies(self):
        return [
            StrategySpec("dupes", f"{__name__}:_Duplicates", "returns duplicates", paper="-"),
            StrategySpec("relabel", f"{__name__}:_Labeled", "returns labeled samples", paper="-"),
        ]


@pytest.mark.parametrize(("name", "message"), [("dupes", "duplicate"), ("relabel", "outside the unlabeled")])
def test_engine_rejects_a_bad_selection_and_names_the_strategy(tmp_path, name, message):
    registry = Registry(plugins={"broken": _BrokenPlugin()})
    with pytest.raises(SelectionError, match=f"strategy '{name}' .*{message}"):
        Experiment(quick(tmp_path, strategy=name), registry=registry).run()


def _timeless(metrics: dict) -> dict:
    """Metrics without wall-clock times, which differ between any two runs."""
    return {k: v for k, v in metrics.items() if not k.endswith("_time")}


def _state(run_dir: Path) -> dict:
    return json.loads((run_dir / "state.json").read_text())


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    """Kill -9 in the middle of a cycle, resume, and compare with a clean run."""
    env = {**os.environ, "ALSCOPE_RESULTS_DIR": str(tmp_path / "killed")}
    args = [
        sys.executable,
        "-m",
        "alscope.cli",
        "run",
        "--cycle",
        "4",
        "--trial",
        "2",
        "--epochs",
        "150",
        "--n-query",
        "15",
        "-q",
    ]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    runs = tmp_path / "killed" / "runs"
    deadline = time.monotonic() + 120
    run_dir = None
    while time.monotonic() < deadline:
        found = list(runs.glob("*/state.json")) if runs.exists() else []
        if found:
            run_dir = found[0].parent
            try:
                trials = _state(run_dir)["trials"]
            except (json.JSONDecodeError, KeyError):
                trials = []
            if trials and len(trials[0]["cycles"]) >= 2:
                time.sleep(0.3)  # inside the next cycle's training
                break
        if proc.poll() is not None:
            pytest.fail(f"run ended before it could be killed: {proc.stderr.read().decode()}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert run_dir is not None
    killed = _state(run_dir)
    assert killed["status"] == "RUNNING"
    finished_before = len(killed["trials"][0]["cycles"])
    assert finished_before < 5

    resumed = subprocess.run(
        [sys.executable, "-m", "alscope.cli", "run", "--resume", run_dir.name, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(resumed.stdout)
    clean_env = {**os.environ, "ALSCOPE_RESULTS_DIR": str(tmp_path / "clean")}
    clean = subprocess.run([*args[:-1], "--json"], env=clean_env, capture_output=True, text=True, check=True)
    expected = json.loads(clean.stdout)
    assert summary["summary"]["aubc"] == expected["summary"]["aubc"]
    a, b = _state(run_dir), _state(next((tmp_path / "clean" / "runs").iterdir()))
    for ta, tb in zip(a["trials"], b["trials"], strict=True):
        assert ta["labeled"] == tb["labeled"]
        assert [_timeless(c["metrics"]) for c in ta["cycles"]] == [
            _timeless(c["metrics"]) for c in tb["cycles"]
        ]
    # MLflow holds every cycle exactly once
    from mlflow import MlflowClient

    client = MlflowClient(summary["tracking_uri"])
    for trial in a["trials"]:
        steps = [m.step for m in client.get_metric_history(trial["run_id"], "accuracy")]
        assert sorted(steps) == [20, 35, 50, 65, 80]
    assert client.get_run(a["parent_run_id"]).info.status == "FINISHED"


def test_resume_killed_between_a_trials_aubc_and_its_done_mark_logs_it_once(tmp_path):
    """The trial's ``aubc`` reached MLflow, then the process died before the state said so."""
    from mlflow import MlflowClient

    cfg = quick(tmp_path, trials=2, tracking={"enabled": True, "uri": f"sqlite:///{tmp_path / 'ml.db'}"})
    finished = run_experiment(cfg)
    run_dir = next((tmp_path / "runs").iterdir())
    state = _state(run_dir)
    state["status"] = "RUNNING"
    state["trials"][-1]["done"] = False  # every cycle saved and logged, aubc logged, not marked
    (run_dir / "state.json").write_text(json.dumps(state))

    resumed = Experiment.resume(tmp_path, run_dir.name).run()
    assert resumed.summary["aubc"] == finished.summary["aubc"]
    client = MlflowClient(state["tracking_uri"])
    for run_id in [t["run_id"] for t in state["trials"]] + [state["parent_run_id"]]:
        for key in client.get_run(run_id).data.metrics:
            steps = [m.step for m in client.get_metric_history(run_id, key)]
            assert len(steps) == len(set(steps)), f"{key} logged twice at a step: {sorted(steps)}"


class _RecordsView(Strategy):
    """Model-free picks that record what the pool view held."""

    seen: list = []

    def requirements(self):
        from alscope.strategies.base import Requirements

        return Requirements(probs=True, mc_samples=5)

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        _RecordsView.seen.append(view)
        return rng.choice(view.unlabeled, size=budget, replace=False)


class _RecorderPlugin:
    @hookimpl
    def alscope_register_strategies(self):
        return [StrategySpec("recorder", f"{__name__}:_RecordsView", "records views", paper="-")]


def test_deep_ensemble_feeds_member_predictions_to_sampled_strategies(tmp_path):
    _RecordsView.seen.clear()
    registry = Registry(plugins={"rec": _RecorderPlugin()})
    result = Experiment(quick(tmp_path, strategy="recorder", ensemble=3, cycles=1), registry=registry).run()
    view = _RecordsView.seen[0]
    assert view.mc_probs.shape == (view.n_unlabeled, 3, 10)  # members, not the 5 dropout samples
    assert torch.allclose(view.probs, view.mc_probs.mean(dim=1))
    # members differ (own initialisation and data order)
    assert (view.mc_probs[:, 0] - view.mc_probs[:, 1]).abs().max() > 1e-3
    assert "accuracy" in result.trials[0].cycles[0].metrics
    again = Experiment(
        quick(tmp_path / "b", strategy="recorder", ensemble=3, cycles=1), registry=registry
    ).run()
    assert again.trials[0].labeled == result.trials[0].labeled


def test_mc_dropout_samples_without_ensemble(tmp_path):
    _RecordsView.seen.clear()
    registry = Registry(plugins={"rec": _RecorderPlugin()})
    Experiment(quick(tmp_path, strategy="recorder", cycles=1), registry=registry).run()
    view = _RecordsView.seen[0]
    assert view.mc_probs.shape == (view.n_unlabeled, 5, 10)
    assert (view.mc_probs[:, 0] - view.mc_probs[:, 1]).abs().max() > 1e-3


class _EmbeddingsOnly(Strategy):
    """Farthest-from-mean picks from embeddings alone: usable before any model exists."""

    seen: list = []

    def requirements(self):
        from alscope.strategies.base import Requirements

        return Requirements(embeddings=True)

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        _EmbeddingsOnly.seen.append(view)
        emb = view.embeddings
        far = (emb - emb.mean(dim=0)).norm(dim=1)
        return view.unlabeled[np.argsort(-far.numpy(), kind="stable")[:budget]]


class _PreparingMLP:
    """An MLP whose prepare_dataset scales the inputs, counting its calls."""

    calls = 0

    @classmethod
    def make(cls):
        from alscope.data.base import TensorSource
        from alscope.models.mlp import MLP

        class Prepared(MLP):
            @classmethod
            def prepare_dataset(cls_, dataset, params, ctx):
                _PreparingMLP.calls += 1
                assert ctx.cache_dir.name == "cache"
                dataset.pool = TensorSource(dataset.pool.inputs * 0 + 1.0, dataset.pool.labels)
                return dataset

        return Prepared


class _ColdStartPlugin:
    @hookimpl
    def alscope_register_strategies(self):
        return [StrategySpec("far", f"{__name__}:_EmbeddingsOnly", "embeddings only", paper="-")]

    @hookimpl
    def alscope_register_backbones(self):
        from alscope.specs import BackboneSpec

        return [BackboneSpec("prepared_mlp", f"{__name__}:PREPARED", "counts prepare calls")]


PREPARED = _PreparingMLP.make()


def test_cold_start_with_an_embeddings_strategy_uses_the_inputs(tmp_path):
    _EmbeddingsOnly.seen.clear()
    registry = Registry(plugins={"cold": _ColdStartPlugin()})
    result = Experiment(quick(tmp_path, strategy="far", n_initial=0, cycles=2), registry=registry).run()
    first = _EmbeddingsOnly.seen[0]
    assert first.embeddings.shape == (first.n_unlabeled, 64)  # digits' 64 raw features
    assert result.trials[0].cycles[1].n_labeled == 10 and "accuracy" in result.trials[0].cycles[1].metrics
    second = _EmbeddingsOnly.seen[1]
    assert second.embeddings.shape[1] == 128  # then the trained MLP's embedding


def test_backbone_prepares_the_dataset_once_per_experiment(tmp_path):
    _PreparingMLP.calls = 0
    registry = Registry(plugins={"cold": _ColdStartPlugin()})
    cfg = quick(tmp_path, backbone="prepared_mlp", trials=2, cycles=2)
    result = Experiment(cfg, registry=registry).run()
    assert _PreparingMLP.calls == 1
    # constant inputs: the model cannot beat the majority class
    assert result.trials[0].cycles[-1].metrics["accuracy"] < 0.2


class _ClaimsWidths:
    """Claims backbone names like ``mlp-64x32`` as the MLP with those widths."""

    @hookimpl
    def alscope_claim_name(self, kind, name):
        if kind == "backbone" and name.startswith("mlp-"):
            return {"name": "mlp", "params": {"hidden_sizes": [int(w) for w in name[4:].split("x")]}}
        return None


class _BrokenClaim:
    @hookimpl
    def alscope_claim_name(self, kind, name):
        raise RuntimeError("boom")


def test_a_plugin_can_claim_unregistered_names(tmp_path):
    registry = Registry(plugins={"claims": _ClaimsWidths()})
    spec, params = registry.resolve_claimed("backbone", "mlp-64x32")
    assert spec.name == "mlp" and params == {"hidden_sizes": [64, 32]}
    cfg = quick(tmp_path, backbone={"name": "mlp-16", "params": {"dropout": 0.1}}, cycles=0)
    experiment = Experiment(cfg, registry=registry)
    assert experiment.components.backbone_params.hidden_sizes == [16]
    assert experiment.components.backbone_params.dropout == 0.1
    experiment.run()
    from alscope.errors import UnknownComponentError

    with pytest.raises(UnknownComponentError, match="did you mean 'mlp'"):
        registry.resolve_claimed("backbone", "mpl")
    with pytest.warns(UserWarning, match="failed in alscope_claim_name"):
        broken = Registry(plugins={"broken": _BrokenClaim()})
        with pytest.raises(UnknownComponentError):
            broken.resolve_claimed("backbone", "nothing-here")


def test_linear_warmup_then_decay_steps_per_batch():
    from alscope.config import TrainingConfig
    from alscope.engine.trainer import build_scheduler

    cfg = TrainingConfig(scheduler="linear", warmup_fraction=0.2, lr=1.0)
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = build_scheduler(opt, cfg, total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] < lrs[1] < lrs[2]  # warm-up over the first 2 steps
    assert lrs[2] == pytest.approx(1.0)
    assert all(a > b for a, b in itertools.pairwise(lrs[2:]))  # then linear decay
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0)


def test_linear_schedule_runs_in_an_experiment(tmp_path):
    result = run_experiment(quick(tmp_path, cycles=1, training={"epochs": 3, "scheduler": "linear"}))
    assert "accuracy" in result.trials[0].cycles[-1].metrics


def _make_recipe_mlp():
    from alscope.models.mlp import MLP

    class RecipeMLP(MLP):
        @classmethod
        def training_defaults(cls, params, ctx):
            return {"epochs": 2, "lr": 0.5, "optimizer": "sgd"}

    return RecipeMLP


RECIPE_MLP = _make_recipe_mlp()


class _RecipePlugin:
    @hookimpl
    def alscope_register_backbones(self):
        from alscope.specs import BackboneSpec

        return [BackboneSpec("recipe_mlp", f"{__name__}:RECIPE_MLP", "brings a training recipe")]


def test_backbone_training_defaults_fill_only_unset_settings(tmp_path):
    registry = Registry(plugins={"recipe": _RecipePlugin()})
    cfg = ExperimentConfig.model_validate(
        {
            "backbone": "recipe_mlp",
            "cycles": 0,
            "results_dir": str(tmp_path),
            "training": {"lr": 0.01},
            "tracking": {"enabled": False},
        }
    )
    experiment = Experiment(cfg, registry=registry)
    result = experiment.run()
    training = result.config.training
    assert (training.epochs, training.optimizer, training.lr) == (2, "sgd", 0.01)
    saved = _state(result.run_dir)["config"]["training"]
    assert (saved["epochs"], saved["optimizer"], saved["lr"]) == (2, "sgd", 0.01)
