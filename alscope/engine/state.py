"""The on-disk state of a run, written atomically after every cycle.

``results/runs/<run>/state.json`` holds the config, the MLflow run ids and, per trial,
the labeled set in the order it grew and one record per finished cycle. All randomness
of a cycle is derived from (seed, trial, cycle), so this is all a resumed run needs to
select exactly what an uninterrupted run selects.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class CycleRecord:
    cycle: int
    n_labeled: int
    metrics: dict[str, float]
    selected: list[int] = field(default_factory=list)
    logged: bool = False


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
    run_id: str | None = None
    done: bool = False

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

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / "state.json", json.dumps(asdict(self), indent=1, default=_jsonable))

    @classmethod
    def load(cls, folder: Path) -> RunState:
        raw = json.loads((folder / "state.json").read_text())
        trials = []
        for t in raw.pop("trials"):
            t["cycles"] = [CycleRecord(**c) for c in t["cycles"]]
            trials.append(TrialState(**t))
        return cls(trials=trials, **raw)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


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
