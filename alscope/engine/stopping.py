"""Stopping criteria in the loop: the stop set, the per-cycle measures, the decision.

Per trial a *stop set* is drawn once (a seeded sample of the pool that is unlabeled at
the start). After each cycle's model is trained and tested, the monitor measures what
the configured criteria read (:data:`alscope.stopping.MEASURES`), logs every measure as
``stop_measure/<name>`` and every criterion's value and verdict as ``stop/<criterion>``
and ``stop/<criterion>/fired``, and says whether the trial stops. The previous cycle's
stop-set probabilities (and pool predictions, for ``kappa_pool``) are kept in
``stop-trial<t>-cycle<c>.npz`` beside the run state, so that a resumed run compares
with what the uninterrupted one compared with.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alscope.config import StoppingConfig
from alscope.engine.state import TrialState
from alscope.errors import ConfigError, ResumeError
from alscope.registry import Registry
from alscope.stopping.base import MEASURES, StoppingCriterion
from alscope.stopping.measures import kappa, selection_measures, stop_set_measures

MEASURE_PREFIX = "stop_measure/"
CRITERION_PREFIX = "stop/"
STOPPED_AT_PREFIX = "stopped_at/"


@dataclass
class Verdict:
    """What the criteria said after a cycle: the metrics to log and the first that fired."""

    metrics: dict[str, float]
    fired: list[str]


def resolve_criteria(config: StoppingConfig, registry: Registry) -> list[tuple[str, StoppingCriterion]]:
    """The configured criteria, each validated with its parameters (names as registered)."""
    out: list[tuple[str, StoppingCriterion]] = []
    for component in config.criteria:
        spec, implied = registry.resolve_claimed("stopping", component.name)
        cls = registry.load_spec("stopping", spec)
        if not (isinstance(cls, type) and issubclass(cls, StoppingCriterion)):
            raise ConfigError(
                f"stopping criterion {spec.qualified_name!r} from {spec.distribution} is not a "
                "StoppingCriterion subclass"
            )
        criterion = cls({**implied, **component.params})
        criterion.component_name = spec.name
        unknown = [m for m in criterion.measures if m not in MEASURES]
        if unknown:
            raise ConfigError(
                f"stopping criterion {spec.name!r} reads {', '.join(unknown)}, which the engine does not "
                f"measure (it measures: {', '.join(MEASURES)})"
            )
        if spec.name in (name for name, _ in out):
            raise ConfigError(f"stopping criterion {spec.name!r} is given twice; give it once")
        out.append((spec.name, criterion))
    return out


class StopMonitor:
    """The stopping criteria of one experiment, measured and decided cycle by cycle."""

    def __init__(
        self, criteria: list[tuple[str, StoppingCriterion]], config: StoppingConfig, run_dir: Path
    ) -> None:
        self.criteria = criteria
        self.config = config
        self.run_dir = run_dir
        self.needs = {m for _, c in criteria for m in c.measures}
        self._previous: dict[str, np.ndarray] = {}

    def __bool__(self) -> bool:
        return bool(self.criteria)

    # -- per trial ---------------------------------------------------------------------

    def start_trial(self, ts: TrialState, unlabeled: np.ndarray, seed: int) -> None:
        """Draw the trial's stop set (a new trial) or read back the last cycle's arrays (a
        resumed one)."""
        self._previous = {}
        if not self.criteria:
            return
        if not ts.stop_set and not ts.cycles:
            rng = np.random.default_rng(seed)
            size = min(self.config.stop_set_size, len(unlabeled))
            ts.stop_set = np.sort(rng.choice(unlabeled, size=size, replace=False)).tolist()
        if ts.cycles:
            path = self._path(ts.trial, ts.cycles[-1].cycle)
            if not path.is_file():
                raise ResumeError(
                    f"trial {ts.trial}: {path.name} (the stop-set predictions of cycle "
                    f"{ts.cycles[-1].cycle}) is missing from {self.run_dir}; the stopping criteria "
                    "cannot continue this run"
                )
            with np.load(path) as stored:
                self._previous = {k: stored[k] for k in stored.files}

    def _path(self, trial: int, cycle: int) -> Path:
        return self.run_dir / f"stop-trial{trial}-cycle{cycle}.npz"

    # -- per cycle ---------------------------------------------------------------------

    def observe(
        self,
        ts: TrialState,
        cycle: int,
        labeled: np.ndarray,
        probs_of: Callable[[np.ndarray], np.ndarray],
        n_pool: int,
        selected: np.ndarray,
        extra: dict[str, float],
        can_stop: bool,
    ) -> Verdict:
        """Measure this cycle, evaluate every criterion on the trial's history and keep
        this cycle's arrays for the next one.

        Args:
            probs_of: class probabilities of this cycle's model for pool indices.
            selected: the batch this cycle selected (empty at the last cycle).
            extra: measures the caller has (``val_accuracy``, ``strategy_score``).
            can_stop: whether a firing criterion ends the trial here (mode ``stop`` and a
                cycle with a selection left to label).
        """
        stop_set = np.asarray(ts.stop_set, dtype=np.int64)
        probs = np.asarray(probs_of(stop_set), dtype=np.float32)
        unlabeled = ~np.isin(stop_set, labeled)
        measured = stop_set_measures(probs, self._previous.get("probs"), unlabeled)
        current: dict[str, np.ndarray] = {"probs": probs}
        if "kappa_pool" in self.needs:
            predicted = np.asarray(probs_of(np.arange(n_pool, dtype=np.int64))).argmax(axis=1)
            current["pool_predictions"] = predicted.astype(np.int64)
            if "pool_predictions" in self._previous:
                measured["kappa_pool"] = kappa(self._previous["pool_predictions"], predicted, probs.shape[1])
        if len(selected) and self.needs & {"selected_entropy", "selected_uncertainty"}:
            measured.update(selection_measures(np.asarray(probs_of(selected), dtype=np.float32)))
        measured["n_labeled"] = float(len(labeled))
        measured["n_queried"] = float(len(labeled) - (ts.cycles[0].n_labeled if ts.cycles else len(labeled)))
        measured.update({k: v for k, v in extra.items() if k in MEASURES})
        metrics = {MEASURE_PREFIX + k: v for k, v in measured.items() if k in self.needs and math.isfinite(v)}
        history = [*(measures_of(c.metrics) for c in ts.cycles), measures_of(metrics)]
        fired: list[str] = []
        for name, criterion in self.criteria:
            value, fires = criterion.check(history)
            if math.isfinite(value):
                metrics[f"{CRITERION_PREFIX}{name}"] = value
            metrics[f"{CRITERION_PREFIX}{name}/fired"] = 1.0 if fires else 0.0
            if fires:
                fired.append(name)
        if fired and can_stop:
            ts.stopped = {"criterion": fired[0], "cycle": cycle, "n_labeled": len(labeled)}
        self._save(ts.trial, cycle, current)
        self._previous = current
        return Verdict(metrics, fired)

    def trial_summary(self, ts: TrialState) -> dict[str, float]:
        """``stopped_at/<criterion>``: the labeled count where each criterion first fired in
        the trial (absent where it never did), logged once per trial for reports."""
        names = [name for name, _ in self.criteria]
        return {
            f"{STOPPED_AT_PREFIX}{name}": float(stop[0])
            for name, (stop,) in first_stops([ts], names).items()
            if stop is not None
        }

    def _save(self, trial: int, cycle: int, arrays: dict[str, np.ndarray]) -> None:
        """Write atomically; the run state, saved next, refers to this cycle's file."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.run_dir, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)  # type: ignore[arg-type]  # numpy stubs type allow_pickle as the only keyword
            os.replace(tmp, self._path(trial, cycle))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def forget_before(self, trial: int, cycle: int) -> None:
        """Remove a trial's arrays older than ``cycle`` (after the state that no longer
        needs them is saved)."""
        for path in self.run_dir.glob(f"stop-trial{trial}-cycle*.npz"):
            number = path.stem.rsplit("cycle", 1)[1]
            if number.isdigit() and int(number) < cycle:
                path.unlink(missing_ok=True)


def measures_of(metrics: dict[str, Any]) -> dict[str, float]:
    """The stopping measures a cycle's metrics hold, by measure name."""
    return {k[len(MEASURE_PREFIX) :]: float(v) for k, v in metrics.items() if k.startswith(MEASURE_PREFIX)}


def first_stops(trials: list[TrialState], names: list[str]) -> dict[str, list[tuple[int, float] | None]]:
    """Per criterion and trial: ``(labeled count, test accuracy)`` of the first cycle at
    which it fired, or None where it never did."""
    out: dict[str, list[tuple[int, float] | None]] = {}
    for name in names:
        key = f"{CRITERION_PREFIX}{name}/fired"
        out[name] = [
            next(
                (
                    (c.n_labeled, float(c.metrics.get("accuracy", math.nan)))
                    for c in t.cycles
                    if c.metrics.get(key)
                ),
                None,
            )
            for t in trials
        ]
    return out
