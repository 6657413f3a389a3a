"""The training recipe: the step floor, early stopping with restore, fit diagnostics, the
under-fit warning, strategies' own recipe defaults (warm start of LL4AL and TiDAL)."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from alscope.cli import app
from alscope.config import DEFAULT_MIN_STEPS, ExperimentConfig, TrainingConfig, build_config
from alscope.data.base import InputSpec, TensorSource
from alscope.engine.device import resolve_device
from alscope.engine.experiment import run_experiment
from alscope.engine.trainer import (
    Trainer,
    UnderfitWarning,
    build_scheduler,
    planned_epochs,
    underfit_message,
)
from alscope.errors import ConfigError
from alscope.models.mlp import MLP

CPU = resolve_device("cpu")


def blobs(n: int = 60, seed: int = 0) -> TensorSource:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, 8)).astype(np.float32) + 3 * np.eye(8, dtype=np.float32)[y]
    return TensorSource(torch.from_numpy(x), y)


def mlp() -> MLP:
    return MLP.build(InputSpec("vector", (8,)), 3, {"hidden_sizes": [16], "dropout": 0.0})


def targets_of(src: TensorSource) -> torch.Tensor:
    return torch.as_tensor(src.labels, dtype=torch.long)


def test_planned_epochs_reach_the_step_floor() -> None:
    assert planned_epochs(10, 2, 500) == 250  # 100 samples at batch 64: 2 steps per epoch
    assert planned_epochs(10, 200, 500) == 10  # a large set keeps its epochs
    assert planned_epochs(10, 2, 0) == 10
    assert planned_epochs(3, 3, 10) == 4  # rounded up


def test_fit_trains_at_least_min_steps_and_fits_a_small_set() -> None:
    src = blobs()
    labeled = np.arange(0, 60, 4)  # 15 samples, one batch per epoch
    cfg = TrainingConfig(epochs=2, batch_size=16, lr=1e-2, device="cpu", min_steps=120)
    fit = Trainer(cfg, CPU).fit(mlp(), src, labeled, targets_of(src), seed=0)
    assert fit.steps == 120 and fit.epochs == 120
    assert fit.train_accuracy == 1.0 and fit.train_loss < 0.1
    assert fit.n_train == 15
    plain = TrainingConfig(epochs=2, batch_size=16, lr=1e-2, device="cpu", min_steps=0)
    short = Trainer(plain, CPU).fit(mlp(), src, labeled, targets_of(src), seed=0)
    assert short.steps == 2 and short.train_accuracy < fit.train_accuracy


def test_the_hooks_and_progress_see_the_planned_epochs() -> None:
    src = blobs()
    cfg = TrainingConfig(epochs=1, batch_size=16, device="cpu", min_steps=5)
    planned: list[int] = []
    seen: list[int] = []
    Trainer(cfg, CPU).fit(
        mlp(),
        src,
        np.arange(10),
        targets_of(src),
        seed=0,
        on_start=planned.append,
        on_epoch=lambda e, loss: seen.append(e),
    )
    assert planned == [5] and seen == [0, 1, 2, 3, 4]


def test_multistep_milestones_and_cosine_stretch_with_the_epochs() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    cfg = TrainingConfig(epochs=10, scheduler="multistep", milestones=[5], gamma=0.1, lr=1.0)
    sched = build_scheduler(torch.optim.SGD([param], lr=1.0), cfg, epochs=40)
    assert sched is not None and list(sched.milestones) == [20]  # type: ignore[attr-defined]
    cosine = build_scheduler(
        torch.optim.SGD([param], lr=1.0), cfg.model_copy(update={"scheduler": "cosine"}), epochs=40
    )
    assert cosine is not None and cosine.T_max == 40  # type: ignore[attr-defined]


def test_early_stopping_stops_after_patience_checks_without_improvement() -> None:
    src = blobs()
    # lr so small that nothing improves after the first check
    cfg = TrainingConfig(
        epochs=100,
        batch_size=8,
        lr=1e-9,
        device="cpu",
        min_steps=0,
        validation_fraction=0.25,
        validation_interval=6,
        patience=3,
    )
    fit = Trainer(cfg, CPU).fit(mlp(), src, np.arange(40), targets_of(src), seed=0)
    steps_per_epoch = 30 // 8 + 1  # 30 training samples after holding out 10
    check_every = -(-6 // steps_per_epoch)
    assert fit.epochs == check_every * 4  # the first check, then 3 without improvement
    assert fit.n_train == 30 and not np.isnan(fit.val_accuracy)


def test_early_stopping_restores_the_best_checked_model() -> None:
    src = blobs(90)
    cfg = TrainingConfig(
        epochs=30,
        batch_size=8,
        lr=5e-2,
        device="cpu",
        min_steps=0,
        validation_fraction=0.3,
        validation_interval=1,
        patience=30,
    )
    model = mlp()
    states: list[dict[str, torch.Tensor]] = []
    fit = Trainer(cfg, CPU).fit(
        model,
        src,
        np.arange(60),
        targets_of(src),
        seed=1,
        on_epoch=lambda e, loss: states.append(copy.deepcopy(model.state_dict())),
    )
    assert 0 <= fit.best_epoch < len(states)
    kept = states[fit.best_epoch]
    assert all(torch.equal(kept[k], v) for k, v in model.state_dict().items())


def test_underfit_message_names_the_cycle_and_the_remedy() -> None:
    src = blobs()
    cfg = TrainingConfig(epochs=1, batch_size=64, lr=1e-4, device="cpu", min_steps=0)
    fit = Trainer(cfg, CPU).fit(mlp(), src, np.arange(30), targets_of(src), seed=0)
    message = underfit_message(fit, "trial 0, cycle 0")
    assert message is not None and "trial 0, cycle 0" in message and "--min-steps" in message
    good = Trainer(cfg.model_copy(update={"lr": 1e-2, "min_steps": 200}), CPU).fit(
        mlp(), src, np.arange(30), targets_of(src), seed=0
    )
    assert underfit_message(good, "x") is None


def test_min_steps_default_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALSCOPE_MIN_STEPS", raising=False)
    assert TrainingConfig().min_steps == DEFAULT_MIN_STEPS == 500
    monkeypatch.setenv("ALSCOPE_MIN_STEPS", "40")
    assert ExperimentConfig().training.min_steps == 40
    assert build_config({"training": {"min_steps": 7}}).training.min_steps == 7
    monkeypatch.setenv("ALSCOPE_MIN_STEPS", "many")
    with pytest.raises(ConfigError, match="ALSCOPE_MIN_STEPS='many'"):
        TrainingConfig()


def quick(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "cycles": 1,
        "n_initial": 20,
        "n_query": 10,
        "results_dir": str(tmp_path),
        "tracking": {"enabled": False},
        "training": {"epochs": 2, "min_steps": 60},
    }
    base.update(overrides)
    return base


def test_each_cycle_logs_training_loss_accuracy_steps(tmp_path: Path) -> None:
    result = run_experiment(quick(tmp_path))
    for cycle in result.trials[0].cycles:
        m = cycle.metrics
        assert m["train_steps"] >= 60 and m["train_epochs"] >= 60
        assert 0.9 <= m["train_accuracy"] <= 1.0 and m["train_loss"] >= 0


def test_an_underfitted_cycle_warns(tmp_path: Path) -> None:
    with pytest.warns(UnderfitWarning, match="under-fits"):
        run_experiment(quick(tmp_path, training={"epochs": 1, "min_steps": 0, "lr": 1e-5}))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnderfitWarning)
        run_experiment(quick(tmp_path, training={"epochs": 2, "min_steps": 200}))


def test_validation_metrics_reach_the_cycle(tmp_path: Path) -> None:
    result = run_experiment(
        quick(tmp_path, training={"epochs": 5, "min_steps": 0, "validation_fraction": 0.25, "patience": 2})
    )
    m = result.trials[0].cycles[0].metrics
    assert "val_accuracy" in m and "best_epoch" in m


def test_cli_flags_and_results_table_show_the_recipe(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--results-dir",
            str(tmp_path),
            "--no-track",
            "--cycle",
            "1",
            "--epochs",
            "2",
            "--min-steps",
            "30",
            "--validation-fraction",
            "0.2",
            "--patience",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "train acc" in result.stdout and "at least 30 steps" in result.stdout


def test_learning_loss_and_tidal_continue_model_and_module_across_cycles(tmp_path: Path) -> None:
    for name, module in (("learning_loss", "loss_module"), ("tidal", "dynamics_module")):
        result = run_experiment(quick(tmp_path / name, strategy=name, cycles=2))
        assert result.config.training.warm_start is True  # the strategy's recipe default
        checkpoint = torch.load(result.run_dir / "model-trial0.pt", weights_only=True)
        assert set(checkpoint) == {"model", "modules"} and module in checkpoint["modules"]
    explicit = run_experiment(
        quick(
            tmp_path / "cold",
            strategy="learning_loss",
            training={"epochs": 2, "min_steps": 0, "warm_start": False},
        )
    )
    assert explicit.config.training.warm_start is False  # the user's setting wins


def test_tidal_never_detaches_by_default_as_the_official_code() -> None:
    from alscope.engine.hooks import FitContext
    from alscope.strategies.tidal import TiDAL

    hooks = TiDAL().training_hooks()
    hooks.n_classes = 3
    hooks.on_fit_start(FitContext(mlp(), np.arange(4), 40, CPU))
    assert hooks.stop_at == 40  # no epoch reaches it: the features are never detached


def test_warm_start_continues_the_module_from_the_previous_cycle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alscope.strategies.learning_loss import LossPredictionHooks

    starts: list[dict[str, torch.Tensor]] = []
    ends: list[dict[str, torch.Tensor]] = []
    fit_start, epoch_end = LossPredictionHooks.on_fit_start, LossPredictionHooks.on_epoch_end

    def record_start(self: LossPredictionHooks, fit: Any) -> None:
        starts.append(copy.deepcopy(fit.modules["loss_module"].state_dict()))
        fit_start(self, fit)

    def record_end(self: LossPredictionHooks, epoch: int, fit: Any) -> None:
        epoch_end(self, epoch, fit)
        if epoch == fit.epochs - 1:
            ends.append(copy.deepcopy(fit.modules["loss_module"].state_dict()))

    monkeypatch.setattr(LossPredictionHooks, "on_fit_start", record_start)
    monkeypatch.setattr(LossPredictionHooks, "on_epoch_end", record_end)
    run_experiment(quick(tmp_path, strategy="learning_loss", cycles=1))
    assert len(starts) == len(ends) == 2
    assert all(torch.equal(starts[1][k], v) for k, v in ends[0].items())  # continued
    assert not all(torch.equal(starts[0][k], v) for k, v in ends[0].items())  # and it trained


def test_a_fit_nobody_reports_on_skips_the_training_set_pass() -> None:
    src = blobs()
    cfg = TrainingConfig(epochs=2, batch_size=16, device="cpu", min_steps=0)
    fit = Trainer(cfg, CPU).fit(mlp(), src, np.arange(20), targets_of(src), seed=0, diagnose=False)
    assert np.isnan(fit.train_accuracy) and np.isnan(fit.train_loss) and fit.steps == 4
