"""Progress callbacks: the engine reports to them, the CLI draws bars from them (no torch)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any


class Progress:
    """Callbacks the engine reports progress to; the CLI draws bars from them."""

    def experiment_start(self, run: str, trials: int, cycles: int, epochs: int) -> None: ...
    def trial_start(self, trial: int) -> None: ...
    def cycle_start(self, trial: int, cycle: int, n_labeled: int) -> None: ...
    def fit_start(self, epochs: int) -> None:
        """A fit begins; ``epochs`` is its plan after the step floor (early stopping may cut it)."""

    def epoch_end(self, epoch: int, loss: float) -> None: ...
    def cycle_end(self, trial: int, record: Any) -> None: ...
    def trial_end(self, trial: int, trial_aubc: float) -> None: ...
    def stop(self) -> None:
        """The run is over (finished, failed or interrupted): release the display."""


class PlainProgress(Progress):
    """One line per finished cycle on stderr, with the time so far and an estimate of what
    is left: what a run shows when its output goes to a file (no terminal, no bars)."""

    def __init__(self, write: Callable[[str], None] | None = None) -> None:
        self.write = write or _to_stderr
        self.started = time.monotonic()
        self.trials, self.cycles, self.done = 1, 0, 0

    def experiment_start(self, run: str, trials: int, cycles: int, epochs: int) -> None:
        self.started = time.monotonic()
        self.trials, self.cycles, self.done = trials, cycles, 0
        self.write(f"alscope: run {run}: {trials} trial(s) x {cycles + 1} cycles")

    def cycle_end(self, trial: int, record: Any) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.started
        left = self.trials * (self.cycles + 1) - (trial * (self.cycles + 1) + record.cycle + 1)
        accuracy = record.metrics.get("accuracy")
        shown = f", accuracy {accuracy:.4f}" if accuracy is not None else ""
        eta = f", about {_clock(elapsed / self.done * left)} left" if left > 0 else ""
        self.write(
            f"alscope: trial {trial + 1}/{self.trials}, cycle {record.cycle}/{self.cycles} done: "
            f"{record.n_labeled} labeled{shown} ({_clock(elapsed)} elapsed{eta})"
        )


#: set by the command line: report long passes as plain lines (no terminal, not quiet)
_plain_passes = False


def report_passes(enabled: bool) -> None:
    """Whether :func:`long_pass` prints; the CLI turns it on when stderr is not a terminal."""
    global _plain_passes
    _plain_passes = enabled


def long_pass(label: str, total: int, every: float = 0.1) -> Callable[[int], None]:
    """An ``advance(n)`` callback for a long pass of ``total`` units (texts embedded, SSL
    epochs): with plain reporting on, a line at every ``every`` of the way with the elapsed
    time and an estimate of what is left; otherwise it does nothing."""
    if not _plain_passes or total <= 0:
        return lambda n: None
    started = time.monotonic()
    state = {"done": 0, "next": every}

    def advance(n: int) -> None:
        state["done"] += n
        share = state["done"] / total
        if share + 1e-9 < state["next"] and state["done"] < total:
            return
        while state["next"] <= share + 1e-9:
            state["next"] += every
        elapsed = time.monotonic() - started
        left = elapsed / share * (1 - share) if share > 0 else 0.0
        _to_stderr(
            f"alscope: {label}: {min(share, 1.0):.0%} ({state['done']:,}/{total:,}; {_clock(elapsed)} "
            f"elapsed, about {_clock(left)} left)"
        )

    return advance


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
