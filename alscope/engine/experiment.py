"""The experiment loop: trials x cycles of train, evaluate, select, label.

``run_experiment(config)`` is the Python entry point; the CLI calls it too.
"""

from __future__ import annotations

import contextlib
import functools
import json
import secrets
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alscope.components import validate_params
from alscope.config import ComponentConfig, ExperimentConfig
from alscope.data.base import ALDataset, DatasetFactory, LoadContext
from alscope.data.splits import random_holdout
from alscope.engine.bias_correction import bias_correction_weights, uniform_probabilities
from alscope.engine.calibration import TemperatureScaled, fit_temperature
from alscope.engine.device import resolve_device
from alscope.engine.inference import compute_pool_view, infer
from alscope.engine.metrics import aubc, ci95_halfwidth, classification_metrics, sample_std
from alscope.engine.state import CycleRecord, RunState, TrialState, ensure_writable_folder, run_lock
from alscope.engine.stopping import StopMonitor, resolve_criteria
from alscope.engine.trainer import Trainer, UnderfitWarning, amp_enabled, fit_metrics, underfit_message
from alscope.errors import (
    AlscopeError,
    BudgetError,
    ConfigError,
    DataError,
    ModelError,
    ResumeError,
    SelectionError,
)
from alscope.models.base import Backbone, PrepareContext
from alscope.progress import Progress
from alscope.registry import Registry, get_registry
from alscope.scenarios.base import OOD, PreparedScenario, Scenario
from alscope.scenarios.composed import ComposedScenario
from alscope.specs import ComponentSpec
from alscope.strategies.base import (
    PoolView,
    ScoringStrategy,
    SSLRequest,
    Strategy,
    has_proposal,
    sequential_probabilities,
    top_k,
    validate_selection,
)
from alscope.tracking import TAG_COMMAND, Tracker, dumps, make_tracker, tags_for

_PURPOSES = {"initial": 0, "model": 1, "train": 2, "select": 3, "dataset": 4, "calibrate": 5, "stop_set": 6}


def derive_seed(seed: int, trial: int, cycle: int, purpose: str, member: int = 0) -> int:
    """A 31-bit seed for one use in one cycle of one trial (and one ensemble member),
    independent of every other use."""
    seq = np.random.SeedSequence(entropy=seed, spawn_key=(trial, cycle, _PURPOSES[purpose], member))
    return int(seq.generate_state(1)[0] & 0x7FFFFFFF)


@dataclass
class ExperimentResult:
    run: str
    run_dir: Path
    config: ExperimentConfig
    trials: list[TrialState]
    parent_run_id: str | None
    tracking_uri: str
    summary: dict[str, Any] = field(default_factory=dict)

    def curve(self, metric: str = "accuracy") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(labeled counts, mean, std) over trials."""
        return learning_curve(self.trials, metric)


def learning_curve(
    trials: list[TrialState], metric: str = "accuracy"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    by_step: dict[int, list[float]] = {}
    for t in trials:
        for c in t.cycles:
            if metric in c.metrics:
                by_step.setdefault(c.n_labeled, []).append(c.metrics[metric])
    steps = np.array(sorted(by_step), dtype=np.int64)
    mean = np.array([np.mean(by_step[s]) for s in steps])
    std = np.array([sample_std(by_step[s]) for s in steps])
    return steps, mean, std


class Components:
    """The four resolved components of an experiment."""

    def __init__(self, config: ExperimentConfig, registry: Registry) -> None:
        self.config = config
        self.registry = registry
        self.strategy_spec, self.strategy_cls, self.strategy_params = self._resolve(
            "strategy", config.strategy
        )
        self.dataset_spec, self.dataset_cls, dataset_params = self._resolve("dataset", config.dataset)
        self.scenario_spec, self.scenario_cls, scenario_params = self._resolve("scenario", config.scenario)
        # Validate every parameter before anything is loaded or trained.
        self.make_strategy()
        self.dataset_factory: DatasetFactory = self.dataset_cls(dataset_params)
        self.dataset_factory.component_name = self.dataset_spec.name
        self.scenario: Scenario = self.scenario_cls(scenario_params)
        if isinstance(self.scenario, ComposedScenario):
            self.scenario.resolve_parts(registry)
        self.backbone_spec: ComponentSpec | None = None
        self.backbone_cls: type[Backbone] | None = None
        if config.backbone is not None:
            self._resolve_backbone(config.backbone)
        self.stopping = resolve_criteria(config.stopping, registry)
        self._check_stopping_inputs()

    def _check_stopping_inputs(self) -> None:
        """Measures that only some settings have: refused before anything trains."""
        scoring = isinstance(self.make_strategy(), ScoringStrategy)
        for name, criterion in self.stopping:
            if "val_accuracy" in criterion.measures and not self.config.training.validation_fraction:
                raise ConfigError(
                    f"stopping criterion {name!r} reads the validation accuracy: hold out part of the "
                    "labeled set with --validation-fraction (e.g. 0.2)"
                )
            if "strategy_score" in criterion.measures and not scoring:
                raise ConfigError(
                    f"stopping criterion {name!r} reads the strategy's scores, but strategy "
                    f"{self.strategy_spec.name!r} selects without per-sample scores; use it with a scoring "
                    "strategy (entropy, margin, bald, ...) or choose overall_uncertainty"
                )

    def _resolve(self, kind: Any, component: ComponentConfig) -> tuple[ComponentSpec, Any, dict[str, Any]]:
        """Spec, target class and parameters (a claimed name's implied ones, then the user's)."""
        spec, implied = self.registry.resolve_claimed(kind, component.name)
        return spec, self.registry.load_spec(kind, spec), {**implied, **component.params}

    def make_strategy(self) -> Strategy:
        strategy = self.strategy_cls(self.strategy_params)
        strategy.component_name = self.strategy_spec.name
        return strategy

    def _resolve_backbone(self, component: ComponentConfig) -> None:
        self.backbone_spec, self.backbone_cls, params = self._resolve("backbone", component)
        assert self.backbone_cls is not None
        self.backbone_params = validate_params(
            self.backbone_cls.Params, params, f"backbone {self.backbone_spec.name}"
        )

    def bind_dataset(self, dataset: ALDataset) -> None:
        if self.backbone_cls is None:
            self._resolve_backbone(ComponentConfig(name=dataset.default_backbone))
        assert self.backbone_spec is not None
        if dataset.domain not in self.backbone_spec.domains:
            raise ConfigError(
                f"backbone {self.backbone_spec.name!r} does not support {dataset.domain} data "
                f"(it supports {', '.join(self.backbone_spec.domains)})"
            )
        if dataset.domain not in self.strategy_spec.domains:
            raise ConfigError(f"strategy {self.strategy_spec.name!r} does not support {dataset.domain} data")

    def build_backbone(self, dataset: ALDataset) -> Backbone:
        assert self.backbone_cls is not None
        return self.backbone_cls(dataset.input_spec, dataset.n_classes, self.backbone_params)


def _new_run_name(config: ExperimentConfig) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in config.label())
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}-{secrets.token_hex(2)}"


def find_run_dir(results_dir: Path, run: str) -> Path:
    """The folder of a run given its id, a unique prefix of it, or its path."""
    candidate = Path(run)
    if (candidate / "state.json").is_file():
        return candidate
    runs = results_dir / "runs"
    matches = sorted(p for p in runs.glob(f"{run}*") if (p / "state.json").is_file()) if runs.is_dir() else []
    if len(matches) == 1:
        return matches[0]
    if not matches:
        known = sorted(p.name for p in runs.iterdir()) if runs.is_dir() else []
        hint = f"; runs in {runs}: {', '.join(known[-5:])}" if known else f"; {runs} holds no runs"
        raise ResumeError(f"no run {run!r} to resume{hint}")
    raise ResumeError(f"{run!r} matches several runs: {', '.join(p.name for p in matches)}")


class Experiment:
    """One experiment run (new or resumed)."""

    def __init__(
        self,
        config: ExperimentConfig,
        *,
        registry: Registry | None = None,
        progress: Progress | None = None,
        state: RunState | None = None,
        run_dir: Path | None = None,
        command: str | None = None,
    ) -> None:
        self.config = config
        #: the command line that started the run, tagged on its MLflow run (reports show it)
        self.command = command
        self.registry = registry or get_registry()
        self.progress = progress or Progress()
        self.components = Components(config, self.registry)
        self.device = resolve_device(config.training.device)
        if config.training.threads is not None:
            torch.set_num_threads(config.training.threads)
        self.trainer = Trainer(config.training, self.device)
        self._ssl_cache: dict[SSLRequest, torch.Tensor] = {}
        name = state.run if state is not None else _new_run_name(config)
        self.run_dir = run_dir or (config.results_dir / "runs" / name)
        self.state = state or RunState(run=name, config=json.loads(config.model_dump_json()))
        self.stop_monitor = StopMonitor(self.components.stopping, config.stopping, self.run_dir)

    @classmethod
    def resume(cls, results_dir: Path, run: str, **kwargs: Any) -> Experiment:
        run_dir = find_run_dir(results_dir, run)
        state = RunState.load(run_dir)
        if state.status == "FINISHED":
            raise ResumeError(f"run {state.run!r} already finished; nothing to resume")
        from alscope.config import build_config

        config = build_config(state.config)
        return cls(config, state=state, run_dir=run_dir, **kwargs)

    # -- setup -------------------------------------------------------------------

    def _load_dataset(self) -> PreparedScenario:
        cfg = self.config
        ctx = LoadContext(cfg.data_dir, seed=cfg.seed, download=cfg.download)
        try:
            dataset = self.components.dataset_factory.load(ctx)
        except (AlscopeError, MemoryError):
            raise
        except (OSError, ValueError) as exc:
            raise DataError(f"dataset {cfg.dataset.name!r} could not be loaded: {exc}") from None
        if cfg.n_class is not None and cfg.n_class != dataset.n_classes:
            raise ConfigError(
                f"n_class={cfg.n_class} does not match dataset {dataset.name!r}, which has "
                f"{dataset.n_classes} classes"
            )
        self.components.bind_dataset(dataset)
        self._dataset_name = dataset.name
        assert self.components.backbone_cls is not None
        prepare_ctx = PrepareContext(
            cfg.resolved_cache_dir(), self.device, cfg.training.eval_batch_size, cfg.seed
        )
        backbone_cls, backbone_params = self.components.backbone_cls, self.components.backbone_params
        try:
            dataset = backbone_cls.prepare_dataset(dataset, backbone_params, prepare_ctx)
        except AlscopeError:
            raise
        except (OSError, ValueError, RuntimeError) as exc:
            assert self.components.backbone_spec is not None
            raise ModelError(
                f"backbone {self.components.backbone_spec.name!r} could not prepare dataset "
                f"{dataset.name!r}: {exc}"
            ) from None
        self._apply_training_defaults(backbone_cls.training_defaults(backbone_params, prepare_ctx))
        self._apply_training_defaults(self.components.make_strategy().training_defaults())
        prepared = self.components.scenario.prepare(dataset, cfg.seed)
        prepared.n_initial = cfg.n_initial
        needed = cfg.n_initial + cfg.cycles * cfg.n_query
        if needed > len(prepared.candidates):
            raise BudgetError(
                f"n_initial + cycles x n_query = {cfg.n_initial} + {cfg.cycles} x {cfg.n_query} = "
                f"{needed} exceeds the {len(prepared.candidates)} samples of the pool"
            )
        return prepared

    def _apply_training_defaults(self, defaults: dict[str, Any]) -> None:
        """The backbone's (then the strategy's) training recipe, for the settings the user
        left unset; a setting the backbone filled counts as set for the strategy. The
        resolved config is what the run state and MLflow record, so resume and reports
        see the settings actually used."""
        explicit = self.config.training.model_fields_set
        updates = {k: v for k, v in defaults.items() if k not in explicit}
        if not updates:
            return
        training = self.config.training.model_copy(update=updates)
        self.config = self.config.model_copy(update={"training": training})
        self.trainer = Trainer(training, self.device)
        self.state.config = json.loads(self.config.model_dump_json())

    def _initial_set(self, prepared: PreparedScenario, trial: int) -> np.ndarray:
        cfg = self.config
        rng = np.random.default_rng(derive_seed(cfg.seed, trial, 0, "initial"))
        candidates = (
            prepared.initial_candidates if prepared.initial_candidates is not None else prepared.candidates
        )
        if cfg.n_initial == 0:
            return np.empty(0, dtype=np.int64)
        if cfg.initial == "random":
            return np.sort(rng.choice(candidates, size=cfg.n_initial, replace=False))
        labels = prepared.dataset.pool.labels[candidates]
        n_cls = len(np.unique(labels))
        if cfg.n_initial < n_cls:
            raise ConfigError(
                f"initial='stratified' needs n_initial >= the {n_cls} classes, got {cfg.n_initial}"
            )
        from sklearn.model_selection import train_test_split

        if cfg.n_initial == len(candidates):
            return np.sort(candidates)
        chosen, _ = train_test_split(
            candidates,
            train_size=cfg.n_initial,
            stratify=labels,
            random_state=derive_seed(cfg.seed, trial, 0, "initial"),
        )
        return np.sort(chosen)

    # -- the loop ----------------------------------------------------------------

    def run(self, tracker: Tracker | None = None) -> ExperimentResult:
        ensure_writable_folder(
            self.config.results_dir, "the results folder", "choose another with --results-dir"
        )
        with run_lock(self.run_dir):
            if (self.run_dir / "state.json").is_file():
                # what another process saved before this one got the lock is what counts
                self.state = RunState.load(self.run_dir)
                if self.state.status == "FINISHED":
                    raise ResumeError(f"run {self.state.run!r} already finished; nothing to resume")
            return self._run(tracker)

    def _run(self, tracker: Tracker | None) -> ExperimentResult:
        cfg = self.config
        tracker = tracker or make_tracker(
            cfg.tracking.enabled,
            self.state.tracking_uri or cfg.tracking.uri,
            cfg.tracking.experiment,
            cfg.results_dir,
        )
        self._started = time.perf_counter()
        prepared = self._load_dataset()
        cfg = self.config  # the backbone's training defaults may have filled unset fields
        dataset = prepared.dataset
        problem = self.state.problem(len(dataset.pool))
        if problem:
            raise ResumeError(f"the run state in {self.run_dir} does not fit this dataset ({problem})")
        strategy_probe = self.components.make_strategy()
        if cfg.n_initial == 0 and strategy_probe.requirements().needs_trained_model:
            raise ConfigError(
                f"n_initial=0 (cold start) needs a strategy that selects without a trained model; "
                f"{self.components.strategy_spec.name!r} needs "
                f"{', '.join(strategy_probe.requirements().describe())}"
            )
        if cfg.ensemble > 1 and strategy_probe.training_hooks() is not None:
            raise ConfigError(
                f"ensemble={cfg.ensemble} cannot be combined with strategy "
                f"{self.components.strategy_spec.name!r}, which trains its own modules alongside the model"
            )
        if cfg.ensemble > 1 and cfg.training.warm_start:
            raise ConfigError("ensemble > 1 and training.warm_start cannot be combined")
        if cfg.training.bias_correction != "none" and not has_proposal(strategy_probe):
            raise ConfigError(
                f"training.bias_correction={cfg.training.bias_correction!r} needs a stochastic strategy "
                f"(one that draws its batch from a proposal it reports through Strategy.proposal); "
                f"{self.components.strategy_spec.name!r} selects deterministically"
            )
        self.state.tracking_uri = tracker.uri
        tags = tags_for(cfg)
        if cfg.backbone is None and self.components.backbone_spec is not None:
            tags["alscope.backbone"] = self.components.backbone_spec.name
        tags["alscope.run"] = self.state.run
        if self.command:
            tags[TAG_COMMAND] = self.command
        params = cfg.to_flat_dict()
        params["backbone.resolved"] = tags["alscope.backbone"]
        self.state.parent_run_id = tracker.start_experiment(
            self.state.run, tags, params, existing=self.state.parent_run_id
        )
        if not self.state.trials:
            tracker.log_text(self.state.parent_run_id, _yaml(self.state.config), "config.yaml")
        self.state.save(self.run_dir)
        self.progress.experiment_start(self.state.run, cfg.trials, cfg.cycles, cfg.training.epochs)
        try:
            for trial in range(cfg.trials):
                if trial < len(self.state.trials) and self.state.trials[trial].done:
                    continue
                self._run_trial(trial, prepared, tracker, tags)
        except BaseException:
            self.state.status = "KILLED"
            self.state.save(self.run_dir)
            for t in self.state.trials:
                if not t.done:
                    _quietly(tracker.finish, t.run_id, "KILLED")
            _quietly(tracker.finish, self.state.parent_run_id, "KILLED")
            raise
        summary = self._summarize(dataset, len(prepared.candidates))
        self.state.summary = summary
        self.state.save(self.run_dir)
        # a kill from here on is resumed by finishing only: the summary goes to MLflow once
        # (summary_logged), and the state says FINISHED only after MLflow does
        if not self.state.summary_logged:
            self._log_summary(tracker, summary)
            self.state.summary_logged = True
            self.state.save(self.run_dir)
        tracker.finish(self.state.parent_run_id)
        self.state.status = "FINISHED"
        self.state.save(self.run_dir)
        return ExperimentResult(
            self.state.run,
            self.run_dir,
            cfg,
            self.state.trials,
            self.state.parent_run_id,
            tracker.uri,
            summary,
        )

    def _log_summary(self, tracker: Tracker, summary: dict[str, Any]) -> None:
        cfg = self.config
        # killed after this batch but before the state said so: the store has it already
        if 0 not in tracker.logged_steps(self.state.parent_run_id, "aubc"):
            tracker.log_metrics(
                self.state.parent_run_id,
                # counts too (n_pool, n_test): the report's fraction-of-pool axis reads n_pool
                {
                    k: float(v)
                    for k, v in summary.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
                },
            )
        tracker.log_text(self.state.parent_run_id, dumps(summary), "summary.json")
        png = self.run_dir / "learning_curve.png"
        setting = cfg.scenario.name if cfg.scenario else "standard"
        steps, mean, std = learning_curve(self.state.trials)
        if len(steps):
            from alscope.plotting import plot_learning_curves

            plot_learning_curves(
                {cfg.strategy.name: (steps, mean, std)},
                png,
                title=f"{self._dataset_label()}, {setting}: accuracy",
            )
            tracker.log_file(self.state.parent_run_id, png)

    def _dataset_label(self) -> str:
        """``imagefolder (photos)``: the component name, with the data's own name where it
        differs (a folder or file name)."""
        from alscope.registry import normalize

        name, own = self.config.dataset.name, getattr(self, "_dataset_name", None)
        if not own or normalize(own) == normalize(name):
            return own or name
        return f"{name} ({own})"

    def _summarize(self, dataset: ALDataset, n_candidates: int) -> dict[str, Any]:
        aubcs = [trial_aubc(t) for t in self.state.trials]
        finals = [t.cycles[-1].metrics.get("accuracy", np.nan) for t in self.state.trials if t.cycles]
        sel = [
            c.metrics.get("selection_time", np.nan)
            for t in self.state.trials
            for c in t.cycles
            if "selection_time" in c.metrics
        ]
        train = [
            c.metrics.get("train_time", np.nan)
            for t in self.state.trials
            for c in t.cycles
            if "train_time" in c.metrics
        ]
        return {
            # the name the user typed, as in the report and the CSV; the data's own name beside
            "dataset": self._dataset_label(),
            "backbone": self.components.backbone_spec.name if self.components.backbone_spec else "",
            "device": str(self.device),
            "wall_time": time.perf_counter() - self._started,
            # the scenario's pool: what could ever be labeled
            "n_pool": n_candidates,
            "n_test": len(dataset.test),
            "aubc": float(np.mean(aubcs)),
            "aubc_std": sample_std(aubcs),
            # the 95 % interval needs 3 trials; absent below (no NaN in MLflow or --json)
            **({"aubc_ci95": ci95_halfwidth(aubcs)} if len(aubcs) >= 3 else {}),
            "final_accuracy": float(np.mean(finals)) if finals else float("nan"),
            "final_accuracy_std": sample_std(finals) if finals else float("nan"),
            "mean_selection_time": float(np.mean(sel)) if sel else 0.0,
            "mean_train_time": float(np.mean(train)) if train else 0.0,
        }

    def _run_trial(
        self, trial: int, prepared: PreparedScenario, tracker: Tracker, tags: dict[str, str]
    ) -> None:
        cfg = self.config
        dataset = prepared.dataset
        if trial < len(self.state.trials):
            ts = self.state.trials[trial]
        else:
            initial = self._initial_set(prepared, trial)
            ts = TrialState(
                trial=trial,
                seed=derive_seed(cfg.seed, trial, 0, "initial"),
                labeled=initial.tolist(),
                labels=prepared.oracle.label(initial).tolist(),
            )
            if cfg.training.bias_correction != "none":
                # the initial set counts as uniform draws (LURE weight exactly 1)
                ts.acquisition_probs = uniform_probabilities(len(initial), len(prepared.candidates)).tolist()
            self.state.trials.append(ts)
        if cfg.training.bias_correction != "none" and len(ts.acquisition_probs) != len(ts.labeled):
            raise ResumeError(
                f"trial {trial} records {len(ts.acquisition_probs)} acquisition probabilities for "
                f"{len(ts.labeled)} labeled samples; bias correction cannot continue this run"
            )
        if ts.stopped is None:
            self.stop_monitor.start_trial(
                ts,
                np.setdiff1d(prepared.candidates, np.asarray(ts.labeled, dtype=np.int64)),
                derive_seed(cfg.seed, trial, 0, "stop_set"),
            )
        ts.run_id = tracker.start_trial(self.state.parent_run_id, trial, tags, existing=ts.run_id)
        self.state.save(self.run_dir)
        self._reconcile_logging(ts, tracker)
        self.progress.trial_start(trial)
        strategy = self.components.make_strategy()
        strategy.load_state_dict(ts.strategy_state)
        targets = torch.full((len(dataset.pool),), -1, dtype=torch.long)
        model: Backbone | None = None
        members: list[Backbone] = []
        warm_path = self.run_dir / f"model-trial{trial}.pt"
        module_states: dict[str, Any] = {}
        if cfg.training.warm_start and ts.cycles and warm_path.is_file():
            model = self.components.build_backbone(dataset)
            checkpoint = torch.load(warm_path, map_location="cpu", weights_only=True)
            if "model" not in checkpoint:  # written before strategies' modules were kept
                checkpoint = {"model": checkpoint, "modules": {}}
            model.load_state_dict(checkpoint["model"])
            module_states = checkpoint["modules"]
        for cycle in range(ts.next_cycle if ts.stopped is None else cfg.cycles + 1, cfg.cycles + 1):
            labeled = np.asarray(ts.labeled, dtype=np.int64)
            targets[torch.from_numpy(labeled)] = torch.as_tensor(ts.labels, dtype=torch.long)
            # Samples the oracle answered "out of distribution" cost budget and stay labeled
            # (never queried again) but are not a class to train on.
            known = labeled[np.asarray(ts.labels, dtype=np.int64) != OOD]
            self.progress.cycle_start(trial, cycle, len(labeled))
            metrics: dict[str, float] = {"cycle": float(cycle), "n_labeled": float(len(labeled))}
            hooks = strategy.training_hooks()
            modules: dict[str, Any] = {}
            if len(known):
                if model is None or not cfg.training.warm_start:
                    torch.manual_seed(derive_seed(cfg.seed, trial, cycle, "model"))
                    model = self.components.build_backbone(dataset)
                train_set, held_out = known, np.empty(0, dtype=np.int64)
                if cfg.training.calibrate == "temperature":
                    train_set, held_out = random_holdout(
                        known,
                        cfg.training.calibration_fraction,
                        derive_seed(cfg.seed, trial, cycle, "calibrate"),
                    )
                weights = self._bias_weights(ts, len(prepared.candidates), len(dataset.pool))
                # The hooks' modules are built once per cycle and shared by training and
                # the pool pass, so predicted quantities come from the trained modules.
                if hooks is not None:
                    hooks.bind(model, dataset.pool)
                modules = hooks.modules() if hooks is not None else {}
                if cfg.training.warm_start:
                    # the strategy's modules continue too, as LL4AL's and TiDAL's codes do
                    for name, state in module_states.items():
                        if name in modules:
                            modules[name].load_state_dict(state)
                fit = self.trainer.fit(
                    model,
                    dataset.pool,
                    train_set,
                    targets,
                    seed=derive_seed(cfg.seed, trial, cycle, "train"),
                    hooks=hooks,
                    modules=modules,
                    on_epoch=self.progress.epoch_end,
                    on_start=self.progress.fit_start,
                    unlabeled=_unlabeled(dataset, prepared, labeled),
                    sample_weights=weights,
                    ood=labeled[np.asarray(ts.labels, dtype=np.int64) == OOD],
                )
                metrics.update(fit_metrics(fit))
                underfit = underfit_message(fit, f"trial {trial}, cycle {cycle}")
                if underfit is not None:
                    warnings.warn(underfit, UnderfitWarning, stacklevel=1)
                more, more_time = self._train_more_members(dataset, train_set, targets, trial, cycle, weights)
                members = [model, *more]
                metrics["train_time"] += more_time
                if len(held_out):
                    members, metrics["temperature"] = self._calibrate(members, dataset, held_out, targets)
                metrics.update(self._evaluate(members, dataset))
            selected: np.ndarray = np.empty(0, dtype=np.int64)
            probs: np.ndarray | None = None
            scores: dict[str, float] = {}
            if cycle < cfg.cycles:
                selected, sel_time, probs = self._select(
                    strategy, members, dataset, prepared, labeled, ts, trial, cycle, hooks, modules, scores
                )
                metrics["selection_time"] = sel_time
            if self.stop_monitor and members:
                if "val_accuracy" in metrics:
                    scores["val_accuracy"] = metrics["val_accuracy"]
                verdict = self.stop_monitor.observe(
                    ts,
                    cycle,
                    labeled,
                    functools.partial(self._probs, list(members), dataset),
                    len(dataset.pool),
                    selected,
                    scores,
                    can_stop=cfg.stopping.mode == "stop" and cycle < cfg.cycles,
                )
                metrics.update(verdict.metrics)
                if ts.stopped is not None:
                    selected = np.empty(0, dtype=np.int64)  # the batch is not labeled
            if len(selected):
                if probs is not None:
                    ts.acquisition_probs.extend(float(q) for q in probs)
                answers = prepared.oracle.label(selected)
                for cls, count in zip(*np.unique(answers, return_counts=True), strict=True):
                    metrics[f"query_count/{'ood' if cls == OOD else int(cls)}"] = float(count)
                all_answers = np.concatenate([np.asarray(ts.labels, dtype=np.int64), answers])
                metrics.update(prepared.query_metrics(selected, answers, all_answers))
                ts.labeled.extend(int(i) for i in selected)
                ts.labels.extend(int(a) for a in answers)
            record = CycleRecord(cycle, len(labeled), metrics, [int(i) for i in selected])
            ts.cycles.append(record)
            ts.strategy_state = strategy.state_dict()
            if cfg.training.warm_start and model is not None:
                if modules:  # a cycle without a known label trained none: keep the last ones
                    module_states = {name: m.state_dict() for name, m in modules.items()}
                torch.save({"model": model.state_dict(), "modules": module_states}, warm_path)
            self.state.save(self.run_dir)
            self.stop_monitor.forget_before(trial, cycle)
            self._log_cycle(ts, record, tracker)
            self.progress.cycle_end(trial, record)
            if ts.stopped is not None:
                break
        this_aubc = trial_aubc(ts)
        # killed after this batch but before the state said the trial was done: the store has it
        if 0 not in tracker.logged_steps(ts.run_id, "aubc"):
            tracker.log_metrics(ts.run_id, {"aubc": this_aubc, **self.stop_monitor.trial_summary(ts)})
        tracker.finish(ts.run_id)
        ts.done = True
        self.state.save(self.run_dir)
        self.progress.trial_end(trial, this_aubc)

    def _select(
        self,
        strategy: Strategy,
        members: list[Backbone],
        dataset: ALDataset,
        prepared: PreparedScenario,
        labeled: np.ndarray,
        ts: TrialState,
        trial: int,
        cycle: int,
        hooks: Any,
        modules: dict[str, Any],
        scores: dict[str, float] | None = None,
    ) -> tuple[np.ndarray, float, np.ndarray | None]:
        """The validated selection, its time and, with bias correction, each pick's
        acquisition probability. With a stopping criterion that reads the strategy's
        scores, their mean over the pool goes into ``scores`` (outside the timing)."""
        cfg = self.config
        name = self.components.strategy_spec.name
        unlabeled = _unlabeled(dataset, prepared, labeled)
        select_seed = derive_seed(cfg.seed, trial, cycle, "select")
        torch.manual_seed(select_seed)
        rng = np.random.default_rng(select_seed)
        start = time.perf_counter()
        view = compute_pool_view(
            members[0] if members else None,
            dataset.pool,
            unlabeled,
            labeled,
            np.asarray(ts.labels, dtype=np.int64),
            strategy.requirements(),
            n_classes=dataset.n_classes,
            device=self.device,
            batch_size=cfg.training.eval_batch_size,
            hooks=hooks,
            modules=modules,
            amp=amp_enabled(cfg.training, self.device),
            strategy=name,
            ensemble=members if len(members) > 1 else None,
            ssl_provider=lambda request: self._ssl_embeddings(request, prepared),
        )
        wants_score = scores is not None and "strategy_score" in self.stop_monitor.needs
        selected, pool_scores = select_batch(strategy, view, cfg.n_query, rng, name, wants_score)
        if pool_scores is not None and scores is not None:
            scores["strategy_score"] = mean_score(pool_scores)
        probs = None
        if cfg.training.bias_correction != "none":
            proposal = strategy.proposal(view)
            if proposal is None or len(proposal) != len(unlabeled):
                raise SelectionError(f"strategy {name!r} returned no proposal over the unlabeled pool")
            position = np.searchsorted(unlabeled, selected)  # unlabeled is sorted
            probs = sequential_probabilities(proposal, position)
            if np.any(probs <= 0):
                raise SelectionError(
                    f"strategy {name!r} selected samples to which its proposal gives probability 0"
                )
        return selected, time.perf_counter() - start, probs

    def _ssl_embeddings(self, request: SSLRequest, prepared: PreparedScenario) -> torch.Tensor:
        """Self-supervised embeddings of the whole pool ``(N, D)``: trained once on the
        scenario's pool and cached on disk, kept in memory for the experiment."""
        if request not in self._ssl_cache:
            from alscope.ssl import pool_embeddings

            cfg = self.config
            self._ssl_cache[request] = pool_embeddings(
                request,
                prepared.dataset,
                prepared.candidates,
                lambda: self.components.build_backbone(prepared.dataset),
                cache_dir=cfg.resolved_cache_dir(),
                device=self.device,
                seed=cfg.seed,
                batch_size=cfg.training.eval_batch_size,
            )
        return self._ssl_cache[request]

    def _bias_weights(self, ts: TrialState, n_candidates: int, n_pool: int) -> torch.Tensor | None:
        """Pool-sized PURE/LURE loss weights of the labeled samples (None: no correction)."""
        method = self.config.training.bias_correction
        if method == "none":
            return None
        w = bias_correction_weights(np.asarray(ts.acquisition_probs), n_candidates, method)
        weights = torch.ones(n_pool, dtype=torch.float32)
        weights[torch.as_tensor(ts.labeled, dtype=torch.long)] = torch.from_numpy(w).float()
        return weights

    def _calibrate(
        self, members: list[Backbone], dataset: ALDataset, held_out: np.ndarray, targets: torch.Tensor
    ) -> tuple[list[Backbone], float]:
        """Each member wrapped with the temperature fitted on the held-out labeled samples,
        and the first member's temperature."""
        cfg = self.config
        scaled: list[TemperatureScaled] = []
        for model in members:
            logits = infer(
                model,
                dataset.pool,
                held_out,
                device=self.device,
                batch_size=cfg.training.eval_batch_size,
                logits=True,
                amp=amp_enabled(cfg.training, self.device),
            )["logits"]
            scaled.append(TemperatureScaled(model, fit_temperature(logits, targets[held_out])))
        return list(scaled), scaled[0].temperature

    def _train_more_members(
        self,
        dataset: ALDataset,
        labeled: np.ndarray,
        targets: torch.Tensor,
        trial: int,
        cycle: int,
        weights: torch.Tensor | None = None,
    ) -> tuple[list[Backbone], float]:
        """Members 1..M-1 of a deep ensemble (member 0 is the cycle's model), each with its
        own initialisation and data order, and their training time."""
        cfg = self.config
        extra: list[Backbone] = []
        seconds = 0.0
        for member in range(1, cfg.ensemble):
            torch.manual_seed(derive_seed(cfg.seed, trial, cycle, "model", member))
            model = self.components.build_backbone(dataset)
            seed = derive_seed(cfg.seed, trial, cycle, "train", member)
            # only member 0's fit is logged, so the others skip the closing training-set pass
            seconds += self.trainer.fit(
                model, dataset.pool, labeled, targets, seed=seed, sample_weights=weights, diagnose=False
            ).train_time
            extra.append(model)
        return extra, seconds

    def _evaluate(self, members: list[Backbone], dataset: ALDataset) -> dict[str, float]:
        """Test metrics of the model, or of the ensemble's mean prediction."""
        indices = np.arange(len(dataset.test), dtype=np.int64)
        probs = self._probs(members, dataset, indices, test=True)
        return classification_metrics(probs, dataset.test.labels, dataset.n_classes)

    def _probs(
        self, members: list[Backbone], dataset: ALDataset, indices: np.ndarray, test: bool = False
    ) -> np.ndarray:
        """Class probabilities for pool (or test) indices: the model's, or the ensemble's mean."""
        cfg = self.config
        source = dataset.test if test else dataset.pool
        return (
            torch.stack(
                [
                    infer(
                        model,
                        source,
                        indices,
                        device=self.device,
                        batch_size=cfg.training.eval_batch_size,
                        probs=True,
                        amp=amp_enabled(cfg.training, self.device),
                    )["probs"]
                    for model in members
                ]
            )
            .mean(dim=0)
            .numpy()
        )

    def _log_cycle(self, ts: TrialState, record: CycleRecord, tracker: Tracker) -> None:
        log_cycle_record(tracker, ts.run_id, record)
        self.state.save(self.run_dir)

    def _reconcile_logging(self, ts: TrialState, tracker: Tracker) -> None:
        """Log the finished cycles a kill kept out of the store, and only those."""
        pending = [c for c in ts.cycles if not c.logged]
        if not pending:
            return
        in_store = tracker.logged_steps(ts.run_id)
        for record in pending:
            if record.n_labeled in in_store:
                record.logged = True
            else:
                self._log_cycle(ts, record, tracker)
        self.state.save(self.run_dir)


def select_batch(
    strategy: Strategy, view: PoolView, budget: int, rng: np.random.Generator, name: str, wants_scores: bool
) -> tuple[np.ndarray, torch.Tensor | None]:
    """The strategy's validated batch from ``view`` and, when ``wants_scores`` (a stopping
    criterion or an annotator reads them), its per-sample scores over ``view.unlabeled``."""
    pool_scores = None
    if (
        wants_scores
        and isinstance(strategy, ScoringStrategy)
        and type(strategy).select is ScoringStrategy.select
    ):
        # the top-k selection itself: one scoring pass serves it and the caller
        pool_scores = strategy.score(view)
        chosen = view.unlabeled[top_k(pool_scores.detach().float().cpu().numpy(), budget, rng)]
    else:
        chosen = strategy.select(view, budget, rng)
    selected = validate_selection(chosen, view.unlabeled, budget, name)
    if not wants_scores:
        return selected, None
    assert isinstance(strategy, ScoringStrategy)  # checked with the configuration
    if pool_scores is None:
        pool_scores = strategy.score(view)
    return selected, torch.as_tensor(pool_scores).detach().cpu()


def mean_score(scores: torch.Tensor) -> float:
    """The mean of a strategy's scores over the pool, the stopping criteria's measure."""
    return float(scores.double().mean())


def log_cycle_record(tracker: Tracker, run_id: str | None, record: CycleRecord) -> None:
    """One cycle into the trial's MLflow run and ``record.logged`` set (the caller saves the
    state). The artifact goes first (re-writing it is harmless): metrics in the store then
    prove that the whole cycle was logged, which is what resume checks."""
    tracker.log_text(
        run_id,
        json.dumps({"cycle": record.cycle, "n_labeled": record.n_labeled, "selected": record.selected}),
        f"selections/cycle_{record.cycle:03d}.json",
    )
    tracker.log_metrics(run_id, record.metrics, step=record.n_labeled)
    record.logged = True


def trial_aubc(ts: TrialState) -> float:
    """The trial's area under the accuracy curve over the labeled counts."""
    points = [(c.n_labeled, c.metrics["accuracy"]) for c in ts.cycles if "accuracy" in c.metrics]
    if not points:
        return float("nan")
    x, y = zip(*points, strict=True)
    return aubc(list(x), list(y))


def _unlabeled(dataset: ALDataset, prepared: PreparedScenario, labeled: np.ndarray) -> np.ndarray:
    """The scenario's candidates not yet labeled, sorted."""
    is_unlabeled = np.ones(len(dataset.pool), dtype=bool)
    is_unlabeled[labeled] = False
    candidate_mask = np.zeros(len(dataset.pool), dtype=bool)
    candidate_mask[prepared.candidates] = True
    return np.flatnonzero(is_unlabeled & candidate_mask)


def _quietly(fn: Callable[..., Any], *args: Any) -> None:
    # Marking runs KILLED while an error propagates must not mask that error.
    with contextlib.suppress(Exception):
        fn(*args)


def _yaml(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def run_experiment(
    config: ExperimentConfig | dict[str, Any] | None = None,
    *,
    progress: Progress | None = None,
    registry: Registry | None = None,
    tracker: Tracker | None = None,
) -> ExperimentResult:
    """Run a whole experiment from Python and return its result.

    >>> from alscope import ExperimentConfig, run_experiment
    >>> result = run_experiment(ExperimentConfig(cycles=2))   # doctest: +SKIP
    >>> result.summary["aubc"]                                # doctest: +SKIP
    """
    from alscope.config import build_config

    if config is None:
        config = ExperimentConfig()
    elif isinstance(config, dict):
        config = build_config(config)
    return Experiment(config, registry=registry, progress=progress).run(tracker)
