"""The on-disk state of a run, written atomically after every cycle.

``results/runs/<run>/state.json`` holds the config, the MLflow run ids and, per trial,
the labeled set in the order it grew and one record per finished cycle. All randomness
of a cycle is derived from (seed, trial, cycle), so this is all a resumed run needs to
select exactly what an uninterrupted run selects.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alscope.errors import ConfigError, ResumeError


@dataclass
class CycleRecord:
    cycle: int
    n_labeled: int
    metrics: dict[str, float]
    selected: list[int] = field(default_factory=list)
    logged: bool = False
    #: per-pick values aligned with ``selected`` that a learner hands its annotators
    #: (the strategy's score, the model's prediction); the engine records none
    annotations: dict[str, list[Any]] = field(default_factory=dict)


@dataclass
class TrialState:
    trial: int
    seed: int
    labeled: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    cycles: list[CycleRecord] = field(default_factory=list)
    strategy_state: dict[str, Any] = field(default_factory=dict)
    #: with training.bias_correction: each labeled sample's acquisition probability,
    #: aligned with ``labeled`` (PURE/LURE weights are recomputed from it every cycle)
    acquisition_probs: list[float] = field(default_factory=list)
    #: with stopping criteria: the stop set (pool indices drawn once per trial), and where
    #: a criterion ended the trial: its name, the cycle and the labeled count
    stop_set: list[int] = field(default_factory=list)
    stopped: dict[str, Any] | None = None
    run_id: str | None = None
    done: bool = False
    #: pool indices (as text) an annotator set aside, with why ("skip", "unsure"): never
    #: offered again and never trained on (the learner loops; the engine sets none)
    set_aside: dict[str, str] = field(default_factory=dict)

    @property
    def next_cycle(self) -> int:
        return len(self.cycles)


@dataclass
class RunState:
    run: str
    config: dict[str, Any]
    parent_run_id: str | None = None
    tracking_uri: str = ""
    trials: list[TrialState] = field(default_factory=list)
    status: str = "RUNNING"
    summary: dict[str, Any] = field(default_factory=dict)
    #: the summary metrics, text and plot are in MLflow (a resume must not log them again)
    summary_logged: bool = False

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / "state.json", json.dumps(asdict(self), indent=1, default=_jsonable))

    @classmethod
    def load(cls, folder: Path) -> RunState:
        """The saved state, checked: a state cut short, overwritten or edited by hand is
        refused with what is wrong, before anything is trained on it."""
        path = folder / "state.json"
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            trials = []
            for t in raw.pop("trials"):
                t["cycles"] = [CycleRecord(**c) for c in t["cycles"]]
                trials.append(TrialState(**t))
            state = cls(trials=trials, **raw)
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ResumeError(
                f"the run state {path} is damaged and cannot be resumed ({type(exc).__name__}: {exc}); "
                "start the run again without --resume"
            ) from None
        problem = state.problem()
        if problem:
            raise ResumeError(f"the run state {path} is inconsistent ({problem}); it cannot be resumed")
        return state

    def problem(self, pool_size: int | None = None) -> str | None:
        """What makes this state unusable, or None: every labeled index an integer in the
        pool, once, with its label; cycles numbered from 0."""
        if not isinstance(self.config, dict) or not isinstance(self.run, str):
            return "no config"
        for t in self.trials:
            bad = [
                i
                for i in t.labeled
                if type(i) is not int or i < 0 or (pool_size is not None and i >= pool_size)
            ]
            if bad:
                where = f"0..{pool_size - 1}" if pool_size is not None else "non-negative integers"
                return f"trial {t.trial} holds labeled indices {bad[:3]} outside {where}"
            if len(set(t.labeled)) != len(t.labeled):
                return f"trial {t.trial} holds a labeled index twice"
            if len(t.labels) != len(t.labeled) or any(type(y) is not int for y in t.labels):
                return f"trial {t.trial} holds {len(t.labels)} labels for {len(t.labeled)} labeled indices"
            if [c.cycle for c in t.cycles] != list(range(len(t.cycles))):
                return f"trial {t.trial} records cycles {[c.cycle for c in t.cycles]}, not 0, 1, ..."
        return None


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


@contextlib.contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder/.lock`` (an OS file lock, released when the process ends, killed or
    not) while a run works on its state: a second process, such as a concurrent
    ``--resume`` of the same run, is refused instead of repeating its cycles."""
    created = [d for d in (folder.parent, folder) if not d.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lock"
    fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole run
    try:
        try:
            _lock_file(fh)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise ResumeError(
                f"run {folder.name!r} is in use by {holder} (it holds {path}); wait for it to end, "
                "or stop it, then resume"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"process {os.getpid()}")
        fh.flush()
        yield
    finally:
        fh.close()
        # a run refused before it saved anything leaves no folder behind
        if created and [p.name for p in folder.iterdir()] == [".lock"]:
            path.unlink()
            for d in reversed(created):
                with contextlib.suppress(OSError):
                    d.rmdir()


def _lock_file(fh: Any) -> None:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        fh.seek(0)
        msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def ensure_writable_folder(folder: Path, what: str, hint: str) -> None:
    """Fail in one line, before anything trains, where ``folder`` cannot take files (a file
    in its place, no permission, a read-only or immutable mount); left alone, MLflow's
    store retries such a folder for ever."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{what} {str(folder)!r} is a file, not a folder; {hint}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".alscope-write-check-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{what} {str(folder)!r} cannot be written ({exc.strerror or exc}); {hint}"
        ) from None


def atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a kill leaves the old or the new file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
