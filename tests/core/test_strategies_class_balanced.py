"""Class-balanced entropy and core-set (Bengar et al., WACV 2022): the balance target,
the programme (LP against binary), the golden behaviour, and an imbalanced run."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from alscope.config import ExperimentConfig
from alscope.engine.experiment import run_experiment
from alscope.errors import ConfigError, ModelError
from alscope.scenarios.base import OOD
from alscope.strategies import class_balanced as cb
from alscope.strategies.base import PoolView
from alscope.strategies.class_balanced import CoresetCB, EntropyCB, balance_target, labeled_class_counts
from alscope.strategies.coreset import CoreSet
from alscope.strategies.uncertainty import EntropySampling


def view_of(probs, labeled_targets, embeddings=None, labeled_embeddings=None) -> PoolView:
    probs = np.asarray(probs, dtype=np.float32)
    targets = np.asarray(labeled_targets, dtype=np.int64)
    n_lab, u = len(targets), len(probs)
    t = lambda a: None if a is None else torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
    return PoolView(
        unlabeled=np.arange(n_lab, n_lab + u),
        labeled=np.arange(n_lab),
        n_classes=probs.shape[1],
        labeled_targets=targets,
        probs=t(probs),
        embeddings=t(embeddings),
        labeled_embeddings=t(labeled_embeddings),
    )


def rare_class_pool(seed: int = 0) -> PoolView:
    """Class 2 is rare among the labeled samples (2 of 42). The most uncertain samples
    are all predicted as the common class 0; the samples predicted as class 2 are the
    most confident of the pool."""
    rng = np.random.default_rng(seed)
    groups = [
        np.array([0.45, 0.30, 0.25]),  # predicted 0, highest entropy
        np.array([0.10, 0.80, 0.10]),  # predicted 1
        np.array([0.05, 0.05, 0.90]),  # predicted 2, lowest entropy
    ]
    rows = []
    for g in groups:
        block = g + rng.uniform(-0.02, 0.02, size=(30, 3))
        rows.append(block / block.sum(axis=1, keepdims=True))
    probs = np.concatenate(rows)
    targets = np.array([0] * 20 + [1] * 20 + [2] * 2)
    return view_of(probs, targets)


def random_pool(u: int, c: int, seed: int, n_lab: int = 30) -> PoolView:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(u, c)) * 2.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    weights = 0.2 ** (np.arange(c) / (c - 1))
    targets = rng.choice(c, size=n_lab, p=weights / weights.sum())
    return view_of(probs, targets)


def probs_of(view: PoolView) -> torch.Tensor:
    assert view.probs is not None
    return view.probs


def objective(view: PoolView, chosen: np.ndarray, weight: float, budget: int) -> float:
    pos = np.searchsorted(view.unlabeled, chosen)
    p = probs_of(view).double().numpy()
    ent = -(torch.special.xlogy(probs_of(view).double(), probs_of(view).double())).sum(1).numpy()
    omega = balance_target(labeled_class_counts(view, "t"), budget)
    return float(-ent[pos].sum() + weight * np.abs(omega - p[pos].sum(0)).sum())


def predicted(view: PoolView, chosen: np.ndarray) -> np.ndarray:
    return probs_of(view).argmax(1).numpy()[np.searchsorted(view.unlabeled, chosen)]


# -- the balance target ---------------------------------------------------------------


def test_balance_target_fills_the_labeled_gaps():
    counts = np.array([20.0, 20.0, 2.0])
    # share (42 + 10) / 3 = 17.33: classes 0 and 1 are above it and need nothing
    assert balance_target(counts, 10) == pytest.approx([0.0, 0.0, 52 / 3 - 2])
    assert balance_target(counts, 10, rescale=True) == pytest.approx([0.0, 0.0, 10.0])
    balanced = balance_target(np.array([3.0, 5.0, 4.0]), 6)
    assert balanced == pytest.approx([3.0, 1.0, 2.0]) and balanced.sum() == pytest.approx(6)
    assert balance_target(np.zeros(4), 8) == pytest.approx([2.0] * 4)  # nothing labeled


def test_counts_ignore_ood_answers_and_reject_bad_targets():
    view = view_of(np.full((4, 3), 1 / 3), [0, OOD, 2, 2, OOD])
    assert labeled_class_counts(view, "x").tolist() == [1.0, 0.0, 2.0]
    empty = PoolView(unlabeled=np.arange(4), labeled=np.zeros(0, np.int64), n_classes=3)
    assert labeled_class_counts(empty, "x").tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ModelError, match="labeled_targets"):
        labeled_class_counts(PoolView(unlabeled=np.arange(4), labeled=np.arange(4, 6), n_classes=3), "x")
    with pytest.raises(ModelError, match=r"\[0, 3\)"):
        labeled_class_counts(view_of(np.full((4, 3), 1 / 3), [0, 3]), "x")
    with pytest.raises(ModelError, match="2 labeled targets for 3"):
        labeled_class_counts(
            PoolView(unlabeled=np.arange(3), labeled=np.arange(3), n_classes=3, labeled_targets=np.zeros(2)),
            "x",
        )


def test_lambda_alias_and_validation():
    assert EntropyCB({"lambda": 2.0}).params.weight == 2.0
    assert CoresetCB(weight=0.1).params.weight == 0.1
    with pytest.raises(ConfigError, match="weight"):
        EntropyCB(weight=-1.0)
    with pytest.raises(ConfigError, match="unknown parameter"):
        CoresetCB(exact_max_pool=10)


# -- entropy_cb -------------------------------------------------------------------------


@pytest.mark.parametrize("exact", [0, 10_000])
def test_entropy_cb_large_lambda_queries_the_rare_class(exact):
    view = rare_class_pool()
    unbalanced = EntropyCB(weight=0.0).query(view, 10, seed=0)
    assert (predicted(view, unbalanced) == 0).all()  # plain entropy: only the common class
    ent = -(torch.special.xlogy(probs_of(view), probs_of(view))).sum(1).double().numpy()
    p2 = probs_of(view)[:, 2].double().numpy()
    for weight in (0.3, 10.0):
        strategy = EntropyCB(weight=weight, exact_max_pool=exact)
        chosen = strategy.query(view, 10, seed=0)
        assert strategy.last_info["solver"] == ("milp" if exact else "lp")
        # Omega = (0, 0, 15.3) exceeds anything 10 samples can add to class 2, so the
        # objective separates: ||Omega - P^T z||_1 = Omega_2 + sum_i z_i (1 - 2 p_i2),
        # and the optimum is the top 10 of H_i + 2 lambda p_i2.
        best = view.unlabeled[np.argsort(-(ent + 2 * weight * p2))[:10]]
        assert set(chosen.tolist()) == set(best.tolist())
    assert (predicted(view, chosen) == 2).all()  # lambda = 10: only the rare class


def test_entropy_cb_without_lambda_is_entropy_sampling():
    view = random_pool(200, 5, seed=3)
    for seed in (0, 1):
        expected = EntropySampling().query(view, 17, seed=seed)
        assert np.array_equal(EntropyCB(weight=0.0).query(view, 17, seed=seed), expected)
    # a vanishing lambda through the programme itself: the same set (no ties in entropy)
    for exact in (0, 10_000):
        tiny = EntropyCB(weight=1e-7, exact_max_pool=exact)
        assert set(tiny.query(view, 17, seed=0).tolist()) == set(expected.tolist())
        assert tiny.last_info["solver"] == ("lp" if exact == 0 else "milp")


@pytest.mark.parametrize("weight", [0.3, 1.0, 3.0])
def test_lp_relaxation_agrees_with_the_binary_programme(weight):
    view = random_pool(150, 4, seed=7)
    budget = 20
    exact = EntropyCB(weight=weight, exact_max_pool=10_000)
    relaxed = EntropyCB(weight=weight, exact_max_pool=0)
    a, b = exact.query(view, budget, seed=0), relaxed.query(view, budget, seed=0)
    assert exact.last_info["solver"] == "milp" and relaxed.last_info["solver"] == "lp"
    fa, fb = objective(view, a, weight, budget), objective(view, b, weight, budget)
    assert fa <= fb + 1e-6  # the binary optimum is never beaten
    # a vertex of the LP has at most 2C + 1 fractional z: rounding moves few samples
    assert len(set(a.tolist()) ^ set(b.tolist())) <= 2 * (2 * 4 + 1)
    assert fb - fa <= 0.01 * abs(fa)  # measured: at most 0.6 %
    assert "Optimal" in exact.last_info["status"]


def test_query_counts_move_towards_omega_as_lambda_grows():
    view = random_pool(160, 4, seed=11)
    budget = 24
    l1 = []
    for weight in (0.0, 0.1, 0.3, 1.0, 3.0, 10.0):
        s = EntropyCB(weight=weight, exact_max_pool=10_000)
        s.query(view, budget, seed=0)
        l1.append(s.last_info["balance_l1"])
    # exact optima of a penalised programme: the penalty never grows with its weight
    assert all(b <= a + 1e-6 for a, b in itertools.pairwise(l1))
    assert l1[-1] < 0.5 * l1[0]
    omega = balance_target(labeled_class_counts(view, "t"), budget)
    assert l1[-1] == pytest.approx(omega.sum() - budget, abs=1.0)  # as close as a query can get


def test_entropy_cb_is_safe_on_zero_probabilities():
    probs = np.eye(3)[np.arange(30) % 3].astype(np.float32)
    probs[:5] = [0.5, 0.5, 0.0]
    view = view_of(probs, [0, 0, 0, 1, 1, 1])
    chosen = EntropyCB(weight=5.0).query(view, 6, seed=0)
    counts = np.bincount(predicted(view, chosen), minlength=3)
    assert counts[2] >= 4  # the class the labeled set lacks
    bad = view_of(probs, [0])
    probs_of(bad)[0, 0] = float("nan")
    with pytest.raises(ModelError, match="NaN"):
        EntropyCB().query(bad, 2, seed=0)


def test_a_solver_without_solution_falls_back_to_the_greedy(monkeypatch):
    view = rare_class_pool()
    monkeypatch.setattr(cb, "solve_balanced", lambda *a, **k: (None, 1, "Time limit reached"))
    strategy = EntropyCB(weight=10.0)
    with pytest.warns(RuntimeWarning, match="no LP solution"):
        chosen = strategy.query(view, 10, seed=0)
    assert strategy.last_info["solver"] == "greedy"
    assert (predicted(view, chosen) == 2).all()


# -- coreset_cb -----------------------------------------------------------------------


def coreset_pool(seed: int = 0):
    """Labeled samples around the origin; 40 unlabeled near them, 6 far away. The far
    ones are predicted as the common class 0, the near ones as the rare class 2."""
    rng = np.random.default_rng(seed)
    lab = rng.normal(0.0, 0.3, size=(12, 4))
    near = rng.normal(0.0, 0.3, size=(40, 4))
    far = 10.0 * np.eye(4)[np.arange(6) % 4] * np.where(np.arange(6) < 4, 1, -1)[:, None]
    probs = np.concatenate([np.tile([0.05, 0.05, 0.9], (40, 1)), np.tile([0.9, 0.05, 0.05], (6, 1))])
    targets = [0] * 6 + [1] * 5 + [2]
    return view_of(probs, targets, np.concatenate([near, far]), lab)


def test_coreset_cb_without_lambda_covers_the_far_samples():
    view = coreset_pool()
    chosen = CoresetCB(weight=0.0).query(view, 6, seed=0)
    assert set(chosen.tolist()) == set(view.unlabeled[40:].tolist())
    # and is the greedy k-center of the core-set strategy on any pool
    rng = np.random.default_rng(5)
    emb = rng.normal(size=(230, 8))
    probs = np.full((200, 3), 1 / 3)
    general = view_of(probs, rng.integers(0, 3, 30), emb[30:], emb[:30])
    picked = CoresetCB(weight=0.0).query(general, 25, seed=1)
    assert set(picked.tolist()) == set(CoreSet().query(general, 25, seed=1).tolist())


def test_coreset_cb_large_lambda_fills_the_rare_class():
    view = coreset_pool()
    s = CoresetCB(weight=50.0)
    chosen = s.query(view, 6, seed=0)
    assert (predicted(view, chosen) == 2).all()
    s0 = CoresetCB(weight=0.0)
    s0.query(view, 6, seed=0)
    assert s.last_info["balance_l1"] < s0.last_info["balance_l1"]


def test_coreset_cb_cold_start_picks_balanced_then_far():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(60, 3))
    probs = np.eye(3)[np.arange(60) % 3] * 0.8 + 0.2 / 3
    view = view_of(probs, np.zeros(0, np.int64), emb, np.zeros((0, 3)))
    chosen = CoresetCB(weight=1.0).query(view, 9, seed=0)
    assert np.bincount(predicted(view, chosen), minlength=3).tolist() == [3, 3, 3]


# -- end to end -----------------------------------------------------------------------


def test_entropy_cb_runs_on_an_imbalanced_pool(tmp_path):
    config = ExperimentConfig.model_validate(
        {
            "cycles": 2,
            "n_initial": 20,
            "n_query": 10,
            "results_dir": str(tmp_path),
            "training": {"epochs": 3},
            "tracking": {"enabled": False},
            "strategy": "entropy_cb",
            "scenario": {"name": "imbalanced", "params": {"imb_factor": 0.1}},
        }
    )
    result = run_experiment(config)
    trial = result.trials[0]
    assert len(trial.labeled) == 40
    metrics = trial.cycles[-1].metrics
    assert 0.0 <= metrics["balanced_accuracy"] <= 1.0
    shares = {k: v for k, v in trial.cycles[0].metrics.items() if k.startswith("query_share/")}
    assert len(shares) == 10 and sum(shares.values()) == pytest.approx(1.0)
