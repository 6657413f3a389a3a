"""The imbalanced and noisy-oracle scenarios: seeded, index-faithful, with their metrics."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from alscope.config import ExperimentConfig
from alscope.data.base import LoadContext
from alscope.data.tabular import Digits
from alscope.engine.experiment import run_experiment
from alscope.errors import ConfigError
from alscope.scenarios.imbalanced import ImbalancedScenario, class_sizes
from alscope.scenarios.noisy_oracle import NoisyOracleScenario, noisy_answers


def digits(tmp_path):
    return Digits().load(LoadContext(tmp_path, seed=0))


def quick(tmp_path, **overrides) -> ExperimentConfig:
    base = {
        "cycles": 2,
        "n_initial": 20,
        "n_query": 10,
        "results_dir": str(tmp_path),
        "training": {"epochs": 3},
        "tracking": {"enabled": False},
    }
    return ExperimentConfig.model_validate({**base, **overrides})


def test_exponential_and_step_profiles():
    counts = np.array([100, 120, 110, 130])
    assert class_sizes(counts, 0.1, "exp").tolist() == [100, 46, 21, 10]
    assert class_sizes(counts, 0.1, "step").tolist() == [100, 100, 10, 10]


def test_long_tailed_pool_keeps_indices_and_is_seeded(tmp_path):
    data = digits(tmp_path)
    a = ImbalancedScenario(imb_factor=100).prepare(data, seed=0)  # ALScope's 100 = ratio 0.01
    b = ImbalancedScenario(imb_factor=0.01).prepare(digits(tmp_path), seed=0)
    assert np.array_equal(a.candidates, b.candidates)
    counts = np.bincount(data.pool.labels[a.candidates], minlength=10)
    assert counts[0] == np.bincount(data.pool.labels).min() and counts[-1] == 1
    assert all(x >= y for x, y in itertools.pairwise(counts))
    # the oracle answers for pool indices: index i is the same sample everywhere
    assert np.array_equal(a.oracle.label(a.candidates), data.pool.labels[a.candidates])
    c = ImbalancedScenario(imb_factor=0.01).prepare(digits(tmp_path), seed=1)
    assert not np.array_equal(a.candidates, c.candidates)
    assert len(a.dataset.test) == len(data.test)  # balanced test set by default
    d = ImbalancedScenario(imb_factor=0.1, imbalanced_test=True).prepare(digits(tmp_path), seed=0)
    test_counts = np.bincount(d.dataset.test.labels, minlength=10)
    assert test_counts[0] > test_counts[-1]


def test_imbalanced_experiment_queries_only_the_long_tail(tmp_path):
    result = run_experiment(quick(tmp_path, scenario={"name": "imbalanced", "params": {"imb_factor": 0.05}}))
    setting = ImbalancedScenario(imb_factor=0.05).prepare(digits(tmp_path), seed=0)
    labeled = result.trials[0].labeled
    assert set(labeled) <= set(setting.candidates.tolist())
    shares = {k: v for k, v in result.trials[0].cycles[0].metrics.items() if k.startswith("query_share/")}
    assert sum(shares.values()) == pytest.approx(1.0)


def test_cli_imb_factor_selects_the_scenario(tmp_path):
    from typer.testing import CliRunner

    from alscope.cli import app

    out = CliRunner().invoke(
        app,
        [
            "run",
            "--imb-factor",
            "20",
            "--cycle",
            "1",
            "--epochs",
            "2",
            "--no-track",
            "--results-dir",
            str(tmp_path),
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    assert '"imbalanced"' in out.stdout


def test_symmetric_noise_rate_and_seeded_answers(tmp_path):
    labels = np.repeat(np.arange(10), 2000)
    t = np.full((10, 10), 0.3 / 9)
    np.fill_diagonal(t, 0.7)
    answers = noisy_answers(labels, t, seed=0)
    assert (answers != labels).mean() == pytest.approx(0.3, abs=0.02)
    assert np.array_equal(answers, noisy_answers(labels, t, seed=0))
    wrong = answers[answers != labels]
    assert len(np.unique(wrong)) == 10  # flips go to every other class


def test_matrix_noise_follows_the_rows(tmp_path):
    m = tmp_path / "t.csv"
    t = np.eye(10)
    t[3] = 0
    t[3, 5] = 1.0  # 3 is always answered as 5
    np.savetxt(m, t, delimiter=",")
    setting = NoisyOracleScenario(noise="matrix", matrix=m).prepare(digits(tmp_path), seed=0)
    pool = setting.dataset.pool.labels
    threes = np.flatnonzero(pool == 3)
    assert (setting.oracle.label(threes) == 5).all()
    others = np.flatnonzero(pool != 3)
    assert np.array_equal(setting.oracle.label(others), pool[others])
    answers = setting.oracle.label(threes[:4])
    metrics = setting.query_metrics(threes[:4], answers, answers)
    assert metrics["noisy_labels"] == 4
    bad = tmp_path / "bad.csv"
    np.savetxt(bad, np.ones((10, 10)), delimiter=",")
    with pytest.raises(ConfigError, match="sum to 1"):
        NoisyOracleScenario(noise="matrix", matrix=bad).prepare(digits(tmp_path), seed=0)
    with pytest.raises(ConfigError, match="needs matrix"):
        NoisyOracleScenario(noise="matrix").prepare(digits(tmp_path), seed=0)


def test_noisy_oracle_experiment_trains_on_the_answers(tmp_path):
    cfg = quick(tmp_path, scenario={"name": "noisy_oracle", "params": {"noise_rate": 0.5}})
    result = run_experiment(cfg)
    trial = result.trials[0]
    truth = digits(tmp_path).pool.labels
    wrong = int((np.array(trial.labels) != truth[trial.labeled]).sum())
    logged = sum(c.metrics.get("noisy_labels", 0) for c in trial.cycles)
    initial_wrong = int((np.array(trial.labels[:20]) != truth[trial.labeled[:20]]).sum())
    assert wrong == logged + initial_wrong and wrong > 0


def test_class_balancer_spreads_the_query_over_predicted_classes():
    from alscope import PoolView, get_strategy

    rng = np.random.default_rng(0)
    # the 30 most uncertain samples are all predicted as class 0
    probs = np.zeros((90, 3))
    probs[:30] = [0.4, 0.3, 0.3]
    p1 = rng.uniform(0.8, 0.85, 30)  # class 1 rows of varying confidence
    probs[30:60] = np.stack([0.95 - p1, p1, np.full(30, 0.05)], axis=1)
    probs[60:] = [0.05, 0.1, 0.85]
    view = PoolView.from_arrays(probs=probs)
    entropy_picks = get_strategy("entropy").query(view, 9, seed=0)
    assert (entropy_picks < 30).all()
    balanced = get_strategy("class_balancer").query(view, 9, seed=0)
    predicted = probs[balanced].argmax(axis=1)
    assert np.bincount(predicted, minlength=3).tolist() == [3, 3, 3]
    # within class 1, the most uncertain (lowest top probability) come first
    class1 = balanced[predicted == 1]
    assert probs[class1, 1].max() <= np.sort(probs[30:60, 1])[2] + 1e-12
    # a class that runs out leaves its share to the others
    assert len(get_strategy("class_balancer").query(view, 80, seed=0)) == 80


def test_class_balancer_refuses_a_non_scoring_base():
    with pytest.raises(ConfigError, match="no per-sample scores"):
        from alscope import get_strategy

        get_strategy("class_balancer", base="coreset")


def test_class_balancer_runs_on_an_imbalanced_pool(tmp_path):
    result = run_experiment(
        quick(
            tmp_path,
            strategy="class_balancer",
            scenario={"name": "imbalanced", "params": {"imb_factor": 0.1}},
        )
    )
    assert len(result.trials[0].labeled) == 40


def test_openset_pool_known_test_and_ood_answers(tmp_path):
    from alscope.scenarios.base import OOD
    from alscope.scenarios.openset import OpenSetScenario

    data = digits(tmp_path)
    original_pool = data.pool.labels.copy()
    original_test = len(data.test)
    setting = OpenSetScenario(n_known=6, ood_rate=0.25).prepare(data, seed=0)
    known = [int(c) for c in setting.info["known_classes"]]
    assert setting.dataset.n_classes == 6 and len(known) == 6
    pool = setting.dataset.pool.labels
    # indices keep meaning: a known sample keeps its class (renumbered), an unknown one is OOD
    assert np.array_equal(pool == OOD, ~np.isin(original_pool, known))
    assert np.array_equal(np.array(known)[pool[pool != OOD]], original_pool[pool != OOD])
    cand = setting.candidates
    ood_share = (pool[cand] == OOD).mean()
    assert ood_share == pytest.approx(0.25, abs=0.01)
    assert (pool[setting.initial_candidates] != OOD).all()
    assert (setting.dataset.test.labels != OOD).all() and len(setting.dataset.test) < original_test
    assert (setting.oracle.label(cand) == pool[cand]).all()
    again = OpenSetScenario(n_known=6, ood_rate=0.25).prepare(digits(tmp_path), seed=0)
    assert np.array_equal(again.candidates, cand)
    with pytest.raises(ConfigError, match="not a class"):
        OpenSetScenario(known_classes=["0", "x"]).prepare(digits(tmp_path), seed=0)


def test_openset_experiment_never_trains_on_ood_and_reports_precision(tmp_path):
    from alscope.scenarios.base import OOD

    cfg = quick(
        tmp_path, strategy="random", scenario={"name": "openset", "params": {"ood_rate": 0.5}}, cycles=3
    )
    result = run_experiment(cfg)
    trial = result.trials[0]
    answers = np.array(trial.labels)
    assert (answers[:20] != OOD).all()  # the initial set holds known classes only
    assert (answers[20:] == OOD).any()  # random queries hit the unknown half of the pool
    assert set(np.unique(answers[answers != OOD])) <= set(range(6))
    first = trial.cycles[0].metrics
    assert first["query_precision"] == pytest.approx(1 - first["ood_queried"] / 10)
    last = trial.cycles[-2].metrics
    queried = answers[20:]
    assert last["cumulative_precision"] == pytest.approx((queried != OOD).mean())
    assert "query_count/ood" in first or first["ood_queried"] == 0
    assert 0 < result.trials[0].cycles[-1].metrics["accuracy"] <= 1
