"""EPIG's target set and batch form: targets set aside from the candidates (as the
official code's separate target set), a stochastic (power) batch instead of a plain
top-k, the proposal the bias-corrected losses read, and determinism for a seed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import alscope
from alscope.errors import ConfigError, ModelError
from alscope.strategies import epig as epig_module
from alscope.strategies.base import PoolView, Requirements, sequential_probabilities
from alscope.strategies.epig import batch_log_weights, epig_scores, split_targets
from alscope.testing.conformance import make_pool_view


def onehotish(label: int, c: int, confidence: float = 0.95) -> list[float]:
    rest = (1 - confidence) / (c - 1)
    return [confidence if j == label else rest for j in range(c)]


def spy_scores(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record every call of epig_scores made by the strategy."""
    calls: list[dict[str, Any]] = []
    original = epig_module.epig_scores

    def spy(probs, targets, device="cpu", own_target=None):  # type: ignore[no-untyped-def]
        out = original(probs, targets, device, own_target)
        calls.append({"probs": probs, "targets": targets, "own": own_target, "scores": out})
        return out

    monkeypatch.setattr(epig_module, "epig_scores", spy)
    return calls


def row_ids(rows: torch.Tensor) -> set[int]:
    """Rows tagged by a unique value in [.., 0, 0] (see tagged_view)."""
    return {round(float(r[0, 0]) * 1e6) for r in rows}


def tagged_view(n: int = 300, k: int = 6, c: int = 4, seed: int = 0) -> PoolView:
    """Random MC samples whose [i, 0, 0] entry encodes the row i (so rows passed to
    epig_scores can be identified); a third of the pool is labeled."""
    rng = np.random.default_rng(seed)
    mc = rng.dirichlet(np.full(c, 0.5), size=(n, k))
    mc[:, 0, 0] = np.arange(n) * 1e-6
    mc[:, 0, 1:] = (1 - mc[:, 0, :1]) * mc[:, 0, 1:] / mc[:, 0, 1:].sum(1, keepdims=True)
    labeled = np.zeros(n, bool)
    labeled[rng.choice(n, n // 3, replace=False)] = True
    return PoolView.from_arrays(mc_probs=mc.astype(np.float32), labeled_mask=labeled)


# -- the target set ------------------------------------------------------------------------


def test_targets_are_set_aside_from_the_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    view = tagged_view()
    calls = spy_scores(monkeypatch)
    for seed in range(3):
        chosen = alscope.get_strategy("epig", n_targets=50).query(view, 20, seed)
        call = calls[-1]
        targets, candidates = row_ids(call["targets"]), row_ids(call["probs"])
        assert len(targets) == 50 and len(candidates) == view.n_unlabeled - 50
        assert not targets & candidates  # no candidate is scored against itself
        assert targets | candidates == set(view.unlabeled.tolist())
        assert not targets & set(chosen.tolist())  # targets are never acquired
        assert call["own"] is None


def test_targets_change_with_the_cycle_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    view = tagged_view()
    calls = spy_scores(monkeypatch)
    alscope.get_strategy("epig", n_targets=50).query(view, 10, 0)
    alscope.get_strategy("epig", n_targets=50).query(view, 10, 1)
    assert row_ids(calls[0]["targets"]) != row_ids(calls[1]["targets"])


def test_split_targets_shortage_falls_back_to_leave_one_out() -> None:
    rng = np.random.default_rng(0)
    targets, candidates = split_targets(200, 10, 100, rng)
    assert len(targets) == 100 and len(candidates) == 100
    assert not set(targets.tolist()) & set(candidates.tolist())
    # budget + n_targets > U: every sample is a candidate, targets drawn among them
    targets, candidates = split_targets(60, 10, 100, rng)
    assert len(targets) == 60 and candidates.tolist() == list(range(60))
    targets, candidates = split_targets(150, 60, 100, rng)
    assert len(targets) == 100 and len(candidates) == 150


def test_leave_one_out_scores_by_brute_force() -> None:
    rng = np.random.default_rng(5)
    pool = torch.from_numpy(rng.dirichlet(np.full(3, 0.6), size=(12, 5))).float()
    targets_at = np.array([1, 4, 7, 9])
    own = torch.full((12,), -1, dtype=torch.long)
    own[torch.from_numpy(targets_at)] = torch.arange(4)
    got = epig_scores(pool, pool[torch.from_numpy(targets_at)], own_target=own)
    for i in range(12):
        others = [t for t in targets_at if t != i]
        expected = epig_scores(pool[i : i + 1], pool[torch.as_tensor(others)])
        assert got[i].item() == pytest.approx(expected.item(), abs=1e-6)
    # a lone target that is the candidate itself has nothing to be scored against
    lone = epig_scores(pool[:1], pool[:1], own_target=torch.tensor([0]))
    assert lone.item() == 0.0


def test_self_information_no_longer_inflates_a_score(monkeypatch: pytest.MonkeyPatch) -> None:
    """A candidate disagreeing along a split no target shares has EPIG 0, whether or not
    the cycle's target draw would have hit it: it is never its own target."""
    t = [onehotish(0, 2)] * 2 + [onehotish(1, 2)] * 2  # targets' split {0,1} | {2,3}
    b = [onehotish(j % 2, 2) for j in range(4)]  # B's split {0,2} | {1,3}
    mc = np.array([b] + [t] * 60, dtype=np.float32)
    view = PoolView.from_arrays(mc_probs=mc)
    calls = spy_scores(monkeypatch)
    for seed in range(10):
        for budget in (5, 61):  # set aside, and the leave-one-out fallback
            chosen = alscope.get_strategy("epig", n_targets=20).query(view, budget, seed)
            call = calls[-1]
            scores = call["scores"]
            if budget == 61:
                assert scores[0].item() == pytest.approx(0.0, abs=1e-6)
                assert chosen[-1] == 0  # zero weight: drawn last
            else:
                assert 0 not in chosen.tolist()


# -- the batch form ------------------------------------------------------------------------


def duplicates_view(copies: int = 10, others: int = 390, seed: int = 0) -> PoolView:
    """``copies`` identical copies of the most informative sample among ``others`` that
    share its disagreement pattern more weakly (mixed with the uniform prediction)."""
    rng = np.random.default_rng(seed)
    k, c = 8, 4
    pattern = np.array([onehotish(j % c, c, 0.9) for j in range(k)])  # strong disagreement
    alpha = rng.uniform(0.2, 0.7, size=(others, 1, 1))
    weak = alpha * pattern[None] + (1 - alpha) / c
    mc = np.concatenate([np.repeat(pattern[None], copies, 0), weak])
    return PoolView.from_arrays(mc_probs=mc.astype(np.float32))


def test_duplicates_in_the_pool_do_not_fill_the_batch() -> None:
    view = duplicates_view()
    copies = set(range(10))
    top, power = [], []
    for seed in range(20):
        chosen = alscope.get_strategy("epig", batch="top_k", n_targets=40).query(view, 10, seed)
        top.append(len(copies & set(chosen.tolist())))
        chosen = alscope.get_strategy("epig", n_targets=40).query(view, 10, seed)
        power.append(len(copies & set(chosen.tolist())))
    # plain top-k takes every copy not set aside as a target (each is one w.p. 40/400)
    assert min(top) >= 7 and np.mean(top) >= 8.5
    assert max(power) < 7 and np.mean(power) < 3
    assert sum(power) >= 1  # the most informative sample is still favoured


def test_power_batch_is_drawn_in_proportion_to_epig() -> None:
    view = make_pool_view(Requirements(mc_samples=6), n=40, n_classes=3, n_labeled=0, seed=2)
    hits = np.zeros(40)
    n = 1500
    for seed in range(n):
        picked = alscope.get_strategy("epig", n_targets=10).query(view, 1, seed)
        hits[picked[0]] += 1
    # each sample is a target with probability 10/40, else drawn with p ∝ its EPIG among
    # the candidates: samples with higher EPIG against the whole pool are picked more
    scores = epig_scores(view.mc_probs, view.mc_probs).numpy()
    order = np.argsort(scores)
    low, high = hits[order[:10]].sum(), hits[order[-10:]].sum()
    assert high > 1.5 * low
    assert (hits > 0).sum() > 30  # not a top-1: almost every sample gets picked


@pytest.mark.parametrize("batch", ["power", "softmax", "softrank", "top_k"])
def test_same_seed_same_batch_for_every_form(batch: str) -> None:
    view = make_pool_view(Requirements(mc_samples=8), n=200, n_classes=5, seed=3)
    a = alscope.get_strategy("epig", batch=batch, n_targets=30).query(view, 15, 4)
    b = alscope.get_strategy("epig", batch=batch, n_targets=30).query(view, 15, 4)
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 15
    if batch != "top_k":
        c = alscope.get_strategy("epig", batch=batch, n_targets=30).query(view, 15, 5)
        assert a.tolist() != c.tolist()


def test_batch_log_weights_by_hand() -> None:
    s = np.array([0.4, 0.0, 0.1, 0.4, np.nan])
    assert batch_log_weights(s, "power", 2.0)[[0, 2]] == pytest.approx(2 * np.log([0.4, 0.1]))
    assert np.isneginf(batch_log_weights(s, "power", 2.0)[[1, 4]]).all()
    assert batch_log_weights(s, "softmax", 3.0)[:4] == pytest.approx(3 * s[:4])
    # ranks 1, 4, 3, 1, 5 (ties share the best rank; NaN last)
    assert batch_log_weights(s, "softrank", 1.0) == pytest.approx(-np.log([1, 4, 3, 1, 5]))
    with pytest.raises(ConfigError):
        batch_log_weights(s, "top_k", 1.0)


def test_params_are_validated() -> None:
    for bad in ({"batch": "greedy"}, {"beta": -1.0}, {"n_targets": 0}):
        with pytest.raises(ConfigError):
            alscope.get_strategy("epig", **bad)
    table = {row[0]: row for row in alscope.get_strategy("epig").parameter_table()}
    assert {"n_drop", "n_targets", "batch", "beta"} <= set(table)


# -- the proposal (PURE / LURE bias correction) --------------------------------------------


def test_proposal_matches_the_draw() -> None:
    view = tagged_view(n=150)
    strategy = alscope.get_strategy("epig", n_targets=30, beta=2.0)
    with pytest.raises(ModelError, match="after select"):
        strategy.proposal(view)
    chosen = strategy.query(view, 10, 0)
    w = strategy.proposal(view).numpy()
    assert w.shape == (view.n_unlabeled,) and (w >= 0).all()
    assert (w == 0).sum() >= 30  # the cycle's targets cannot be drawn
    positions = np.searchsorted(view.unlabeled, chosen)
    q = sequential_probabilities(w, positions)
    assert np.all((q > 0) & (q <= 1))
    # the candidates' weights are EPIG^beta (up to one scale)
    cand = np.flatnonzero(w > 0)
    mc = view.mc_probs
    targets = np.flatnonzero(w == 0)
    scores = epig_scores(mc[torch.from_numpy(cand)], mc[torch.from_numpy(targets)]).numpy()
    ratio = w[cand] / scores**2.0
    assert ratio == pytest.approx(np.full(len(cand), ratio[0]), rel=1e-4)
    other = tagged_view(n=150)
    with pytest.raises(ModelError):
        strategy.proposal(other)


def test_top_k_has_no_proposal() -> None:
    view = tagged_view(n=100)
    strategy = alscope.get_strategy("epig", batch="top_k")
    strategy.query(view, 5, 0)
    with pytest.raises(ConfigError, match="deterministic"):
        strategy.proposal(view)


def test_bias_corrected_loss_accepts_epig(tmp_path: Path) -> None:
    from alscope import ExperimentConfig, run_experiment

    cfg = ExperimentConfig(
        strategy={"name": "epig", "params": {"n_drop": 4, "n_targets": 30}},
        cycles=2,
        n_initial=20,
        n_query=10,
        training={"epochs": 2, "bias_correction": "lure"},
        tracking={"enabled": False},
        results_dir=tmp_path,
    )
    trial = run_experiment(cfg).trials[0]
    q = np.asarray(trial.acquisition_probs)
    assert len(q) == len(trial.labeled) == 40
    assert np.all((q[20:] > 0) & (q[20:] <= 1))
