"""A noisy oracle: the annotator's answers are wrong at a given rate.

Symmetric noise flips a label to one of the other classes uniformly; class-dependent noise
draws the answer from row y of a transition matrix T (T[y, y'] = P(answer y' | true y)).
Each pool sample's answer is drawn once per experiment with the seed, so asking twice, or
again after a resume, gives the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from alscope.components import Params
from alscope.errors import ConfigError
from alscope.scenarios.base import OOD, Oracle, PreparedScenario, Scenario


class NoisyOracleParams(Params):
    noise_rate: float = Field(default=0.2, ge=0, le=1, description="symmetric: share of wrong answers")
    noise: Literal["symmetric", "matrix"] = Field(default="symmetric", description="noise model")
    matrix: Path | None = Field(
        default=None, description="matrix: a .npy or .csv C x C transition matrix, rows sum to 1"
    )


def transition_matrix(params: NoisyOracleParams, n_classes: int) -> np.ndarray:
    if params.noise == "symmetric":
        if n_classes < 2:
            raise ConfigError("scenario noisy_oracle needs at least 2 classes")
        t = np.full((n_classes, n_classes), params.noise_rate / (n_classes - 1))
        np.fill_diagonal(t, 1.0 - params.noise_rate)
        return t
    if params.matrix is None:
        raise ConfigError("scenario noisy_oracle: noise='matrix' needs matrix=<file.npy|file.csv>")
    if not params.matrix.is_file():
        raise ConfigError(f"scenario noisy_oracle: matrix file {str(params.matrix)!r} does not exist")
    try:
        t = (
            np.load(params.matrix)
            if params.matrix.suffix == ".npy"
            else np.loadtxt(params.matrix, delimiter=",")
        )
    except (OSError, ValueError) as exc:
        raise ConfigError(f"scenario noisy_oracle: cannot read {params.matrix}: {exc}") from None
    t = np.asarray(t, dtype=np.float64)
    if t.shape != (n_classes, n_classes):
        raise ConfigError(
            f"scenario noisy_oracle: the matrix is {t.shape}, the dataset has {n_classes} classes"
        )
    if (t < 0).any() or not np.allclose(t.sum(axis=1), 1.0, atol=1e-6):
        raise ConfigError("scenario noisy_oracle: matrix entries must be >= 0 and each row must sum to 1")
    return t


def noisy_answers(labels: np.ndarray, t: np.ndarray, seed: int) -> np.ndarray:
    """One answer per sample, drawn from row ``labels[i]`` of ``t``."""
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(t, axis=1)
    u = rng.random(len(labels))
    answers = (u[:, None] > cumulative[labels]).sum(axis=1)
    return np.minimum(answers, t.shape[0] - 1).astype(np.int64)


@dataclass(frozen=True)
class NoiseReport:
    """How many wrong labels each query brought into the labeled set."""

    true_answers: np.ndarray

    def __call__(
        self, setting: PreparedScenario, queried: np.ndarray, labels: np.ndarray, all_labels: np.ndarray
    ) -> dict[str, float]:
        del setting, all_labels
        wrong = int((labels != self.true_answers[queried]).sum())
        return {"noisy_labels": float(wrong), "noisy_label_rate": wrong / max(len(queried), 1)}


class NoisyOracleScenario(Scenario):
    """The oracle answers wrongly at a rate (symmetric) or by a class transition matrix.

    On an open-set pool only known-class answers are noisy: "out of distribution" is
    answered as such (the annotator knows what the task's classes are)."""

    Params = NoisyOracleParams
    component_name = "noisy_oracle"
    composition_order = 30

    def refine(self, setting: PreparedScenario, seed: int) -> PreparedScenario:
        t = transition_matrix(self.params, setting.dataset.n_classes)
        truth = setting.oracle.answers
        known = truth != OOD
        answers = truth.copy()
        answers[known] = noisy_answers(truth[known], t, seed)
        return replace(
            setting,
            oracle=Oracle(answers),
            info={
                **setting.info,
                "noise": self.params.noise,
                "expected_noise_rate": float(1 - np.mean(np.diag(t))),
            },
            reports=[*setting.reports, NoiseReport(truth)],
        )
