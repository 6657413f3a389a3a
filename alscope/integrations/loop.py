"""The learner loop the torch, Hugging Face and scikit-learn front ends share.

Query, label, update, stop: :class:`LearnerLoop` owns the labeled set, the strategy, the
stopping criteria, the resumable state and the MLflow runs; a :class:`ModelAdapter`
owns the user's model (how it trains on the labeled samples, how it computes the pool
view a strategy declared, how it predicts). The loop makes the engine's calls in the
engine's order with the engine's seeds, so a front end given the engine's model and
trainer picks exactly what ``alscope run`` picks.

A round, as the engine's cycle: :meth:`LearnerLoop.query` trains a model on the labels
so far, evaluates it on the test set when one was given, computes the pool view, selects
the batch and checks the stopping criteria; :meth:`LearnerLoop.teach` records the
answers and logs the cycle. :meth:`LearnerLoop.finish` trains and evaluates the last
model, logs the trial's AUBC and closes the runs.
"""

from __future__ import annotations

import functools
import json
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alscope.config import ComponentConfig, StoppingConfig, default_results_dir
from alscope.engine.experiment import derive_seed, log_cycle_record, mean_score, select_batch, trial_aubc
from alscope.engine.metrics import classification_metrics
from alscope.engine.state import CycleRecord, RunState, TrialState
from alscope.engine.stopping import StopMonitor, resolve_criteria
from alscope.errors import BudgetError, ConfigError, DataError, ResumeError
from alscope.registry import get_registry
from alscope.strategies.base import PoolView, Requirements, ScoringStrategy, Strategy, check_budget
from alscope.tracking import TAG_RUN, Tracker, make_tracker

#: the engine's trial index: a learner is one trial
TRIAL = 0


@dataclass(frozen=True)
class RoundSeeds:
    """The seeds of one round, derived from (seed, round) as the engine derives a cycle's."""

    cycle: int
    model: int
    train: int
    select: int

    @classmethod
    def of(cls, seed: int, cycle: int) -> RoundSeeds:
        return cls(
            cycle=cycle,
            model=derive_seed(seed, TRIAL, cycle, "model"),
            train=derive_seed(seed, TRIAL, cycle, "train"),
            select=derive_seed(seed, TRIAL, cycle, "select"),
        )


def check_classes(n_classes: int) -> None:
    """What every front end requires of ``n_classes``."""
    if n_classes < 2:
        raise ConfigError(f"n_classes={n_classes}: a classifier needs at least 2 classes")


class ModelAdapter(ABC):
    """A front end's model: trained on the labeled samples, read for the pool view.

    ``n_pool`` is the pool's size (indices are positions in the pool), ``n_classes`` the
    number of classes, ``backbone_name`` what MLflow records as the backbone.
    """

    n_pool: int
    n_classes: int
    backbone_name: str = "custom"
    #: the test set's size (None: no test set)
    n_test: int | None = None

    def check(self, strategy: Strategy, name: str) -> None:  # noqa: B027  (most adapters take any strategy)
        """Refuse, with a clear message, a strategy this model cannot serve."""

    def stop_set(self, indices: np.ndarray) -> None:  # noqa: B027  (only adapters that cache predictions need it)
        """The pool indices the stopping criteria read each round."""

    @abstractmethod
    def fit(
        self, labeled: np.ndarray, labels: np.ndarray, strategy: Strategy, seeds: RoundSeeds
    ) -> dict[str, float]:
        """Train a model on ``labeled`` pool indices with their ``labels``; the round's
        metrics to log (``train_time`` at least)."""

    @abstractmethod
    def pool_view(
        self,
        unlabeled: np.ndarray,
        labeled: np.ndarray,
        labels: np.ndarray,
        requirements: Requirements,
        strategy: str,
    ) -> PoolView:
        """The view the strategy declared, from the model :meth:`fit` trained."""

    @abstractmethod
    def predict_proba(self, indices: np.ndarray | None, *, test: bool = False) -> np.ndarray:
        """Class probabilities ``(n, C)`` of pool indices, or of the whole test set."""


class LearnerLoop:
    """Query, label, update, stop, with the engine's strategies, criteria and tracking.

    Args:
        adapter: the front end's model.
        strategy: any registered strategy name (``alscope list strategies``), with
            ``strategy_params``.
        seed: the seed every round's randomness is derived from.
        test_labels: labels of the adapter's test set; accuracy and the other test metrics
            are logged each round when given (and AUBC at the end).
        stop: stopping criteria by name (``alscope list stopping``) with ``stop_params``
            per criterion; ``stop_mode`` ``stop`` ends the loop where one fires, ``record``
            only logs where each would.
        state_dir: where the resumable state is kept; a folder that holds one continues
            it (default: a new folder under ``$ALSCOPE_RESULTS_DIR/runs``).
        tracking: log to MLflow (``tracking_uri``, default the results folder's SQLite
            store, or ``MLFLOW_TRACKING_URI``) under ``experiment``.
        dataset_name: what MLflow records as the dataset.
    """

    def __init__(
        self,
        adapter: ModelAdapter,
        *,
        strategy: str = "entropy",
        strategy_params: Mapping[str, Any] | None = None,
        seed: int = 0,
        test_labels: Sequence[int] | np.ndarray | None = None,
        stop: str | Sequence[str] = (),
        stop_params: Mapping[str, Mapping[str, Any]] | None = None,
        stop_mode: str = "stop",
        stop_set_size: int = 2000,
        state_dir: str | Path | None = None,
        tracking: bool = True,
        tracking_uri: str | None = None,
        experiment: str = "alscope",
        dataset_name: str = "custom",
    ) -> None:
        self.adapter = adapter
        registry = get_registry()
        spec, implied = registry.resolve_claimed("strategy", strategy)
        self.strategy_name = spec.name
        self.strategy: Strategy = registry.load_spec("strategy", spec)({**implied, **(strategy_params or {})})
        self.strategy.component_name = spec.name
        adapter.check(self.strategy, spec.name)
        self.seed = int(seed)
        self.test_labels = None if test_labels is None else np.asarray(test_labels, dtype=np.int64)
        if self.test_labels is not None and len(self.test_labels) != adapter.n_test:
            raise DataError(f"the test set has {adapter.n_test} inputs but {len(self.test_labels)} labels")
        if self.test_labels is not None and len(self.test_labels):
            low, high = int(self.test_labels.min()), int(self.test_labels.max())
            if low < 0 or high >= adapter.n_classes:
                raise DataError(
                    f"test labels run from {low} to {high}; they must be classes 0..{adapter.n_classes - 1}"
                )
        names = [stop] if isinstance(stop, str) else list(stop)
        names = [n.strip() for name in names for n in name.split(",") if n.strip()]
        unknown_params = set(stop_params or {}) - set(names)
        if unknown_params:
            raise ConfigError(
                f"stop_params names {sorted(unknown_params)}, which are not among the criteria {names}"
            )
        self.stopping_config = StoppingConfig(
            criteria=[ComponentConfig(name=n, params=dict((stop_params or {}).get(n, {}))) for n in names],
            mode=stop_mode,  # type: ignore[arg-type]  # validated by pydantic
            stop_set_size=stop_set_size,
        )
        criteria = resolve_criteria(self.stopping_config, registry)
        self._check_stopping(criteria)
        config = {
            "front_end": type(adapter).__name__,
            "strategy": {"name": spec.name, "params": dict(strategy_params or {})},
            "dataset": dataset_name,
            "backbone": adapter.backbone_name,
            "seed": self.seed,
            "n_pool": adapter.n_pool,
            "n_classes": adapter.n_classes,
            "stopping": json.loads(self.stopping_config.model_dump_json()),
        }
        self.state_dir, self.state = self._open_state(state_dir, config)
        self.monitor = StopMonitor(criteria, self.stopping_config, self.state_dir)
        self._tags = {
            "alscope.strategy": spec.name,
            "alscope.dataset": dataset_name,
            "alscope.backbone": adapter.backbone_name,
            "alscope.scenario": "standard",
            TAG_RUN: self.state.run,
        }
        self.tracker: Tracker = make_tracker(
            tracking, self.state.tracking_uri or tracking_uri, experiment, default_results_dir()
        )
        self.state.tracking_uri = self.tracker.uri
        self.strategy.load_state_dict(self.trial.strategy_state)
        self._monitor_started = False

    # -- state ----------------------------------------------------------------------

    def _open_state(self, state_dir: str | Path | None, config: dict[str, Any]) -> tuple[Path, RunState]:
        if state_dir is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            name = f"{stamp}-{config['strategy']['name']}-learner-{secrets.token_hex(2)}"
            folder = default_results_dir() / "runs" / name
        else:
            folder = Path(state_dir)
        if (folder / "state.json").is_file():
            state = RunState.load(folder)
            mismatch = [
                k for k in ("strategy", "seed", "n_pool", "n_classes") if state.config.get(k) != config[k]
            ]
            if mismatch:
                was = {k: state.config.get(k) for k in mismatch}
                now = {k: config[k] for k in mismatch}
                raise ResumeError(
                    f"the learner state in {folder} was started with {was}, not {now}; "
                    "pass the same settings to continue it, or another state_dir to start anew"
                )
            if state.problem(self.adapter.n_pool):
                raise ResumeError(f"the learner state in {folder} does not fit this pool ({state.problem()})")
            return folder, state
        state = RunState(run=folder.name, config=config)
        state.trials.append(TrialState(trial=TRIAL, seed=derive_seed(self.seed, TRIAL, 0, "initial")))
        state.save(folder)
        return folder, state

    @property
    def trial(self) -> TrialState:
        return self.state.trials[TRIAL]

    @property
    def labeled(self) -> np.ndarray:
        """Pool indices labeled so far, in the order they were taught."""
        return np.asarray(self.trial.labeled, dtype=np.int64)

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.trial.labels, dtype=np.int64)

    @property
    def unlabeled(self) -> np.ndarray:
        """Pool indices neither labeled nor set aside: what a query may pick."""
        mask = np.ones(self.adapter.n_pool, dtype=bool)
        mask[self.labeled] = False
        mask[self.set_aside_indices] = False
        return np.flatnonzero(mask)

    @property
    def set_aside(self) -> dict[int, str]:
        """Pool indices the annotators set aside (``skip``, ``unsure``): never offered again."""
        return {int(i): why for i, why in self.trial.set_aside.items()}

    @property
    def set_aside_indices(self) -> np.ndarray:
        return np.asarray(sorted(self.set_aside), dtype=np.int64)

    @property
    def pending_annotations(self) -> dict[str, list[Any]]:
        """Per pending pick (aligned with :attr:`pending`): the strategy's ``score`` where it
        scores samples, the model's ``prediction`` and its ``confidence``."""
        record = self._open_record()
        if record is None:
            return {}
        keep = np.isin(np.asarray(record.selected, dtype=np.int64), self.pending)
        return {
            k: [v for v, kept in zip(values, keep, strict=True) if kept]
            for k, values in record.annotations.items()
        }

    @property
    def stopped(self) -> dict[str, Any] | None:
        """Where a stopping criterion ended the loop (criterion, cycle, labeled count), or None."""
        return self.trial.stopped

    @property
    def finished(self) -> bool:
        return self.state.status == "FINISHED"

    @property
    def history(self) -> list[dict[str, float]]:
        """Each finished round's metrics (``n_labeled``, ``accuracy`` with a test set, ...)."""
        return [dict(c.metrics) for c in self.trial.cycles if c.logged]

    @property
    def pending(self) -> np.ndarray:
        """The last query's batch not yet taught (empty when there is none)."""
        record = self._open_record()
        if record is None:
            return np.empty(0, dtype=np.int64)
        selected = np.asarray(record.selected, dtype=np.int64)
        answered = np.concatenate([self.labeled, self.set_aside_indices])
        return selected[~np.isin(selected, answered)]  # in the strategy's order

    def _open_record(self) -> CycleRecord | None:
        cycles = self.trial.cycles
        return cycles[-1] if cycles and not cycles[-1].logged else None

    def _save(self) -> None:
        self.state.save(self.state_dir)

    # -- the loop -------------------------------------------------------------------

    def teach(
        self,
        indices: Sequence[int] | np.ndarray,
        labels: Sequence[int] | np.ndarray,
        *,
        set_aside: Mapping[int, str] | None = None,
        relabel: bool = False,
    ) -> dict[str, int]:
        """Record the answers for pool ``indices`` (the initial labels, or a queried batch).

        ``set_aside`` maps pool indices the annotators would not label to why (``skip``,
        ``unsure``); they are never offered again. A sample labeled already with the same
        answer is left as it is (a file imported twice changes nothing); with another answer
        it is refused unless ``relabel``. Everything is checked before anything changes,
        and the state is saved once. Returns the counts of ``labeled``, ``relabeled``,
        ``set_aside`` and ``unchanged`` samples.
        """
        self._check_open()
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        answers = np.asarray(labels).reshape(-1)
        aside = {int(i): str(why) for i, why in (set_aside or {}).items()}
        if len(idx) != len(answers):
            raise DataError(f"teach got {len(idx)} indices but {len(answers)} labels")
        if len(answers) and not np.issubdtype(answers.dtype, np.integer):
            raise DataError(
                f"labels must be class numbers 0..{self.adapter.n_classes - 1}, not {answers.dtype}"
            )
        every = np.concatenate([idx, np.asarray(list(aside), dtype=np.int64)])
        bad = every[(every < 0) | (every >= self.adapter.n_pool)]
        if len(bad):
            raise DataError(
                f"indices {bad[:5].tolist()} are outside the pool of {self.adapter.n_pool} samples"
            )
        if len(np.unique(every)) != len(every):
            raise DataError("teach got an index twice; give each sample one answer")
        wrong = answers[(answers < 0) | (answers >= self.adapter.n_classes)]
        if len(wrong):
            raise DataError(f"labels {wrong[:5].tolist()} are not classes 0..{self.adapter.n_classes - 1}")
        position = {int(i): k for k, i in enumerate(self.trial.labeled)}
        changed = [(int(i), int(a)) for i, a in zip(idx, answers, strict=True) if i in position]
        changed = [(i, a) for i, a in changed if self.trial.labels[position[i]] != a]
        if changed and not relabel:
            i, a = changed[0]
            raise DataError(
                f"{len(changed)} sample(s) labeled already get another answer (pool index {i}: "
                f"{self.trial.labels[position[i]]} before, {a} now); to change them pass relabel=True "
                "(alscope label import --relabel)"
            )
        labeled_aside = [i for i in aside if i in position]
        if labeled_aside:
            raise DataError(f"samples {labeled_aside[:5]} are labeled already; they cannot be set aside")
        counts = {"labeled": 0, "relabeled": len(changed), "set_aside": 0, "unchanged": 0}
        for i, a in changed:
            self.trial.labels[position[i]] = a
        relabeled = {i for i, _ in changed}
        for i, a in zip(idx.tolist(), answers.tolist(), strict=True):
            if i in position:
                counts["unchanged"] += int(i not in relabeled)
                continue
            self.trial.set_aside.pop(str(i), None)  # an answer after all
            self.trial.labeled.append(int(i))
            self.trial.labels.append(int(a))
            counts["labeled"] += 1
        for i, why in aside.items():
            counts["set_aside"] += int(self.trial.set_aside.get(str(i)) != why)
            self.trial.set_aside[str(i)] = why
        record = self._open_record()
        if record is not None and not len(self.pending):
            self._close_record(record)
        self._save()
        return counts

    def query(self, n: int) -> np.ndarray:
        """Train on the labels so far and return the ``n`` pool indices to label next.

        Asked again before :meth:`teach`, it returns the same batch (also after a
        restart). Empty where a stopping criterion ended the loop (:attr:`stopped`).
        """
        self._check_open()
        pending = self.pending
        record = self._open_record()
        if record is not None:
            if len(pending) == len(record.selected):
                return pending
            self._close_record(record)  # answered in part: the rest stays unlabeled
        if self.trial.stopped is not None:
            return np.empty(0, dtype=np.int64)
        unlabeled = self.unlabeled
        check_budget(n, len(unlabeled), self.strategy_name)
        cycle = self.trial.next_cycle
        seeds = RoundSeeds.of(self.seed, cycle)
        self._start()
        metrics = self._train_and_evaluate(cycle, seeds)
        torch.manual_seed(seeds.select)
        rng = np.random.default_rng(seeds.select)
        start = time.perf_counter()
        view = self.adapter.pool_view(
            unlabeled, self.labeled, self.labels, self.strategy.requirements(), self.strategy_name
        )
        # the scores serve the stopping criteria and the annotators (select_batch's own pass)
        scoring = isinstance(self.strategy, ScoringStrategy)
        selected, pool_scores = select_batch(self.strategy, view, n, rng, self.strategy_name, scoring)
        metrics["selection_time"] = time.perf_counter() - start
        annotations = self._annotations(view, selected, pool_scores)
        if self.monitor:
            extra: dict[str, float] = {}
            if "strategy_score" in self.monitor.needs and pool_scores is not None:
                extra["strategy_score"] = mean_score(pool_scores)
            if "val_accuracy" in metrics:
                extra["val_accuracy"] = metrics["val_accuracy"]
            verdict = self.monitor.observe(
                self.trial,
                cycle,
                self.labeled,
                functools.partial(self.adapter.predict_proba, test=False),
                self.adapter.n_pool,
                selected,
                extra,
                can_stop=self.stopping_config.mode == "stop",
            )
            metrics.update(verdict.metrics)
            if self.trial.stopped is not None:
                selected = np.empty(0, dtype=np.int64)
        record = CycleRecord(cycle, len(self.labeled), metrics, [int(i) for i in selected])
        if len(selected):
            record.annotations = annotations
        self.trial.cycles.append(record)
        self.trial.strategy_state = self.strategy.state_dict()
        self._save()
        self.monitor.forget_before(TRIAL, cycle)
        if not len(selected):
            self._close_record(record)
        return selected

    def finish(self) -> dict[str, float]:
        """Train and evaluate on every label, log the round, the trial's AUBC and the
        summary, and close the MLflow runs; the summary (``aubc``, ``final_accuracy``, ...)."""
        if self.finished:
            return dict(self.state.summary)
        record = self._open_record()
        if record is not None:
            self._close_record(record)
        self._start()
        if self.trial.stopped is None and not self.trial.done:
            cycle = self.trial.next_cycle
            metrics = self._train_and_evaluate(cycle, RoundSeeds.of(self.seed, cycle))
            record = CycleRecord(cycle, len(self.labeled), metrics, [])
            self.trial.cycles.append(record)
            self._close_record(record)
        this_aubc = trial_aubc(self.trial)
        if not self.trial.done:
            if 0 not in self.tracker.logged_steps(self.trial.run_id, "aubc"):
                self.tracker.log_metrics(
                    self.trial.run_id, {"aubc": this_aubc, **self.monitor.trial_summary(self.trial)}
                )
            self.tracker.finish(self.trial.run_id)
            self.trial.done = True
            self._save()
        final = [c.metrics["accuracy"] for c in self.trial.cycles if "accuracy" in c.metrics]
        summary = {
            "n_pool": float(self.adapter.n_pool),
            "n_labeled": float(len(self.labeled)),
            "aubc": this_aubc,
            "final_accuracy": final[-1] if final else float("nan"),
        }
        if self.test_labels is not None:
            summary["n_test"] = float(len(self.test_labels))
        if not self.state.summary_logged:
            finite = {k: v for k, v in summary.items() if np.isfinite(v)}
            if 0 not in self.tracker.logged_steps(self.state.parent_run_id, "aubc"):
                self.tracker.log_metrics(self.state.parent_run_id, finite)
            self.state.summary_logged = True
        self.tracker.finish(self.state.parent_run_id)
        self.state.summary = summary
        self.state.status = "FINISHED"
        self._save()
        return summary

    # -- parts ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.finished:
            raise ResumeError(
                f"the learner in {self.state_dir} is finished; start another with a new state_dir"
            )

    def _check_stopping(self, criteria: list[tuple[str, Any]]) -> None:
        for name, criterion in criteria:
            if "strategy_score" in criterion.measures and not isinstance(self.strategy, ScoringStrategy):
                raise ConfigError(
                    f"stopping criterion {name!r} reads the strategy's scores, but strategy "
                    f"{self.strategy_name!r} selects without per-sample scores"
                )

    def _start(self) -> None:
        """The MLflow runs (once; a continued state reuses its runs) and the stop set."""
        if self.state.parent_run_id is None:
            params = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in self.state.config.items()}
            self.state.parent_run_id = self.tracker.start_experiment(self.state.run, self._tags, params)
            import yaml

            self.tracker.log_text(
                self.state.parent_run_id, yaml.safe_dump(self.state.config, sort_keys=False), "config.yaml"
            )
        self.trial.run_id = self.tracker.start_trial(
            self.state.parent_run_id, TRIAL, self._tags, existing=self.trial.run_id
        )
        if not self._monitor_started:
            if not len(self.labeled):
                raise BudgetError("nothing is labeled yet: teach some labels before the first query")
            self.monitor.start_trial(self.trial, self.unlabeled, derive_seed(self.seed, TRIAL, 0, "stop_set"))
            if self.monitor and self.trial.stop_set:
                self.adapter.stop_set(np.asarray(self.trial.stop_set, dtype=np.int64))
            self._monitor_started = True
        self._save()

    def _train_and_evaluate(self, cycle: int, seeds: RoundSeeds) -> dict[str, float]:
        labels = self.labels
        metrics: dict[str, float] = {"cycle": float(cycle), "n_labeled": float(len(labels))}
        metrics.update(self.adapter.fit(self.labeled, labels, self.strategy, seeds))
        if self.test_labels is not None:
            probs = self.adapter.predict_proba(None, test=True)
            metrics.update(classification_metrics(probs, self.test_labels, self.adapter.n_classes))
        return metrics

    def _annotations(
        self, view: PoolView, selected: np.ndarray, pool_scores: torch.Tensor | None
    ) -> dict[str, list[Any]]:
        """What an annotator is shown beside each pick: the model's prediction and its
        probability, and the strategy's score where it scores samples (higher: picked first)."""
        if not len(selected):
            return {}
        probs = np.asarray(self.adapter.predict_proba(selected), dtype=np.float64)
        out: dict[str, list[Any]] = {
            "prediction": probs.argmax(axis=1).tolist(),
            "confidence": [round(float(p), 6) for p in probs.max(axis=1)],
        }
        if pool_scores is not None:
            scores = pool_scores.double().numpy()
            where = {int(i): k for k, i in enumerate(view.unlabeled)}
            out["score"] = [float(scores[where[int(i)]]) for i in selected]
        return out

    def _close_record(self, record: CycleRecord) -> None:
        """Add what the batch's answers say (``query_count/<class>``) and log the round."""
        answered = dict(zip(self.trial.labeled, self.trial.labels, strict=True))
        answers = np.asarray([answered[i] for i in record.selected if i in answered], dtype=np.int64)
        for cls, count in zip(*np.unique(answers, return_counts=True), strict=True):
            record.metrics[f"query_count/{int(cls)}"] = float(count)
        in_store = self.tracker.logged_steps(self.trial.run_id)
        if record.n_labeled in in_store:
            record.logged = True  # killed after logging, before saving: the store has it
        else:
            log_cycle_record(self.tracker, self.trial.run_id, record)
        self._save()
