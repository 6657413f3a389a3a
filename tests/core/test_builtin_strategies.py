"""Golden behaviour of the core's strategies on hand-made pools."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import alscope
from alscope.errors import BudgetError
from alscope.strategies.base import PoolView, top_k
from alscope.strategies.uncertainty import entropy_scores, least_confidence_scores, margin_scores

# Rows on which the three uncertainty criteria disagree:
#   0: confident                      top .97
#   1: the least confident            top .34  (margin .01, entropy 1.10)
#   2: an exact two-way tie           top .50  (margin 0,   entropy 0.69)
#   3: the most spread out            top .35  (margin .10, entropy 1.36)
DISAGREE = np.array(
    [
        [0.97, 0.01, 0.01, 0.01],
        [0.34, 0.33, 0.33, 0.00],
        [0.50, 0.50, 0.00, 0.00],
        [0.35, 0.25, 0.20, 0.20],
    ],
    dtype=np.float32,
)


def query(name: str, probs: np.ndarray, budget: int, seed: int = 0, mask=None) -> list[int]:
    view = PoolView.from_arrays(probs=probs, labeled_mask=mask)
    return alscope.get_strategy(name).query(view, budget, seed).tolist()


def test_entropy_picks_the_uniform_prediction() -> None:
    probs = np.array(
        [[0.8, 0.1, 0.1], [1 / 3, 1 / 3, 1 / 3], [0.6, 0.3, 0.1], [0.98, 0.01, 0.01]],
        dtype=np.float32,
    )
    for seed in range(5):
        assert query("entropy", probs, 1, seed) == [1]
    assert query("entropy", DISAGREE, 1) == [3]
    assert query("entropy", DISAGREE, 4) == [3, 1, 2, 0]  # highest score first


def test_least_confidence_picks_the_lowest_top_probability() -> None:
    assert query("least_confidence", DISAGREE, 1) == [1]
    assert query("least_confidence", DISAGREE, 2) == [1, 3]


def test_margin_picks_the_smallest_top2_gap() -> None:
    assert query("margin", DISAGREE, 1) == [2]
    assert query("margin", DISAGREE, 3) == [2, 1, 3]


def test_the_three_criteria_differ() -> None:
    names = ("entropy", "least_confidence", "margin")
    picks = {name: query(name, DISAGREE, 1)[0] for name in names}
    assert len(set(picks.values())) == 3, picks


def test_score_functions() -> None:
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    assert torch.allclose(entropy_scores(p), torch.tensor([0.0, float(np.log(2))]))  # 0 log 0 = 0
    assert torch.allclose(least_confidence_scores(p), torch.tensor([0.0, 0.5]))
    assert torch.allclose(margin_scores(p), torch.tensor([-1.0, 0.0]))
    assert torch.allclose(margin_scores(torch.ones(3, 1)), torch.tensor([-1.0] * 3))  # C == 1


def test_margin_breaks_exact_ties_randomly_but_deterministically() -> None:
    tied = [0.45, 0.45, 0.10]
    probs = np.array([[0.9, 0.05, 0.05], tied, [0.7, 0.2, 0.1], tied, [0.6, 0.3, 0.1]], dtype=np.float32)
    picks = [query("margin", probs, 1, seed)[0] for seed in range(60)]
    assert set(picks) == {1, 3}, "both tied samples must be picked over many seeds"
    assert 10 <= picks.count(1) <= 50
    assert all(query("margin", probs, 1, seed)[0] == picks[seed] for seed in range(10))
    assert all(sorted(query("margin", probs, 2, seed)) == [1, 3] for seed in range(5))


def test_top_k_ties_are_uniform() -> None:
    scores = np.zeros(8)
    counts = np.zeros(8, int)
    for seed in range(800):
        counts[top_k(scores, 2, np.random.default_rng(seed))] += 1
    assert counts.min() > 120 and counts.max() < 280  # expected 200 each


def test_random_is_uniform_and_never_picks_labeled() -> None:
    n = 20
    mask = np.zeros(n, bool)
    mask[::2] = True  # even indices labeled
    probs = np.full((n, 2), 0.5, np.float32)
    view = PoolView.from_arrays(probs=probs, labeled_mask=mask)
    strategy = alscope.get_strategy("random")
    counts = np.zeros(n, int)
    for seed in range(1000):
        picked = strategy.query(view, 2, seed)
        assert not mask[picked].any()
        counts[picked] += 1
    assert counts[mask].sum() == 0
    assert counts[~mask].min() > 140 and counts[~mask].max() < 260  # expected 200 each
    assert np.array_equal(strategy.query(view, 5, 3), strategy.query(view, 5, 3))


def test_random_needs_nothing_from_the_model() -> None:
    assert not alscope.get_strategy("random").requirements().needs_model


def test_library_use_returns_indices_into_the_whole_pool() -> None:
    probs = np.array(
        [[1 / 3, 1 / 3, 1 / 3], [0.9, 0.05, 0.05], [0.5, 0.3, 0.2], [0.95, 0.03, 0.02], [0.4, 0.35, 0.25]],
        dtype=np.float32,
    )
    mask = np.array([True, False, False, False, False])  # the most uncertain is labeled
    picked = alscope.get_strategy("Entropy").query(PoolView.from_arrays(probs=probs, labeled_mask=mask), 2)
    assert picked.tolist() == [4, 2]
    assert picked.dtype == np.int64


def test_library_use_checks_the_budget() -> None:
    view = PoolView.from_arrays(probs=DISAGREE, labeled_mask=[True, False, False, False])
    with pytest.raises(BudgetError, match="exceeds the 3 unlabeled"):
        alscope.get_strategy("margin").query(view, 4)


@pytest.mark.parametrize("alias", ["ENT", "UncertaintyEntropy", "entropy-sampling"])
def test_aliases_resolve(alias: str) -> None:
    assert alscope.get_strategy(alias).component_name == "entropy"
