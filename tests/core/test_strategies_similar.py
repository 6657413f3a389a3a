"""SIMILAR (FLCMI / LogDetCMI): greedy gains equal a dense brute force, and the batch is
like the labeled known samples and unlike the labeled OOD ones."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from alscope import ExperimentConfig, run_experiment
from alscope.errors import ConfigError, ModelError
from alscope.scenarios.base import OOD
from alscope.strategies.base import PoolView
from alscope.strategies.similar import SIMILAR, flcmi_greedy, logdetcmi_greedy
from alscope.testing.conformance import StrategyConformance

# -- a dense brute force, straight from the definitions (submodlib's super-kernel) ----------


def super_kernel(x: torch.Tensor, q: torch.Tensor, p: torch.Tensor, eta: float, nu: float) -> torch.Tensor:
    """Cosine kernel over V u Q u P with the V-Q block times eta and the V-P block times nu."""
    z = torch.nn.functional.normalize(torch.cat([x, q, p]).double(), dim=1)
    s = z @ z.T
    n, nq = len(x), len(q)
    s[:n, n : n + nq] *= eta
    s[n : n + nq, :n] *= eta
    s[:n, n + nq :] *= nu
    s[n + nq :, :n] *= nu
    return s


def brute_objective(
    kind: str, x: torch.Tensor, q: torch.Tensor, p: torch.Tensor, eta: float, nu: float, lam: float
) -> Callable[[list[int]], float]:
    """``I_f(A; Q | P)`` of pool positions ``A`` (``f(A | P)`` without a query set)."""
    s = super_kernel(x, q, p, eta, nu).numpy()
    n, nq = len(x), len(q)
    qs = list(range(n, n + nq))
    ps = list(range(n + nq, len(s)))

    def fl(members: list[int]) -> float:  # facility location over the pool rows, coverage from 0
        return float(s[:n, members].max(axis=1).clip(min=0).sum()) if members else 0.0

    def logdet(members: list[int]) -> float:
        if not members:
            return 0.0
        sign, value = np.linalg.slogdet(s[np.ix_(members, members)] + lam * np.eye(len(members)))
        assert sign > 0
        return float(value)

    f = fl if kind == "fl" else logdet

    def objective(a: list[int]) -> float:
        if not qs:  # no query set: the conditional gain f(A | P)
            return f(a + ps) - f(ps)
        return f(a + ps) + f(qs + ps) - f(a + qs + ps) - f(ps)

    return objective


def brute_greedy(
    kind: str,
    x: torch.Tensor,
    q: torch.Tensor,
    p: torch.Tensor,
    budget: int,
    eta: float,
    nu: float,
    lam: float,
) -> tuple[list[int], list[float]]:
    """The plain greedy: every candidate's gain from the dense kernel at every step."""
    objective = brute_objective(kind, x, q, p, eta, nu, lam)
    chosen: list[int] = []
    gains: list[float] = []
    for _ in range(budget):
        base = objective(chosen)
        g = [objective([*chosen, c]) - base if c not in chosen else -np.inf for c in range(len(x))]
        c = int(np.argmax(g))
        chosen.append(c)
        gains.append(float(g[c]))
    return chosen, gains


def brute_path(
    objective: Callable[[list[int]], float], picks: list[int], n: int
) -> tuple[list[float], list[float]]:
    """Along a given pick sequence: each pick's true gain and the best gain on offer."""
    taken, best = [], []
    for step in range(len(picks)):
        base = objective(picks[:step])
        g = [objective([*picks[:step], j]) - base for j in range(n) if j not in picks[:step]]
        taken.append(objective(picks[: step + 1]) - base)
        best.append(max(g))
    return taken, best


def blobs(centres: list[list[float]], n_per: int, spread: float, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    c = np.asarray(centres, dtype=np.float64)
    x = np.concatenate([ci + spread * rng.standard_normal((n_per, len(ci))) for ci in c])
    return torch.from_numpy(x)


def small_sets(seed: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """60 pool samples around 4 centres in 6-d; query near two of them, private near a third."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, size=(4, 6))
    x = blobs(centres.tolist(), 15, 0.6, seed)
    q = blobs(centres[:2].tolist(), 4, 0.6, seed + 1)
    p = blobs(centres[2:3].tolist(), 5, 0.6, seed + 2)
    return x.to(dtype), q.to(dtype), p.to(dtype)


Greedy = Callable[..., tuple[np.ndarray, list[float]]]


def unit(t: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(t, dim=1)


@pytest.mark.parametrize("sets", ["cmi", "mi", "conditional_gain", "plain"])
@pytest.mark.parametrize(("eta", "nu"), [(1.0, 1.0), (1.5, 0.5)])
def test_flcmi_greedy_equals_dense_brute_force(sets: str, eta: float, nu: float) -> None:
    x, q, p = small_sets(0, torch.float64)
    q = q if sets in ("cmi", "mi") else q[:0]
    p = p if sets in ("cmi", "conditional_gain") else p[:0]
    budget = 8
    want, want_gains = brute_greedy("fl", x, q, p, budget, eta, nu, 1.0)
    assert want_gains[-1] > 1e-6  # a genuine greedy run, not the zero-gain tail
    # float64 rows: the same picks; lazy batches of 3 exercise the stale-bound path
    got, gains = flcmi_greedy(unit(x), unit(q), unit(p), budget, np.random.default_rng(0), eta, nu, 3)
    assert got.tolist() == want
    np.testing.assert_allclose(gains, want_gains, rtol=1e-9, atol=1e-9)
    # float32, as the strategy runs it: every pick's gain is its true gain and the best on
    # offer, up to float32 rounding (near-ties may then go either way)
    got32, gains32 = flcmi_greedy(
        unit(x.float()), unit(q.float()), unit(p.float()), budget, np.random.default_rng(1), eta, nu
    )
    true, best = brute_path(brute_objective("fl", x, q, p, eta, nu, 1.0), got32.tolist(), len(x))
    np.testing.assert_allclose(gains32, true, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(true, best, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sets", ["cmi", "mi", "conditional_gain", "plain"])
@pytest.mark.parametrize(("eta", "nu", "lam"), [(1.0, 1.0, 1.0), (0.8, 0.6, 0.5)])
def test_logdetcmi_greedy_equals_dense_brute_force(sets: str, eta: float, nu: float, lam: float) -> None:
    x, q, p = small_sets(1, torch.float32)
    q = q if sets in ("cmi", "mi") else q[:0]
    p = p if sets in ("cmi", "conditional_gain") else p[:0]
    budget = 8
    got, gains = logdetcmi_greedy(unit(x), unit(q), unit(p), budget, np.random.default_rng(0), eta, nu, lam)
    # every pick's gain is its true gain and the best on offer (the first pick of the
    # plain log determinant is a tie among all samples, drawn at random)
    true, best = brute_path(brute_objective("logdet", x, q, p, eta, nu, lam), got.tolist(), len(x))
    np.testing.assert_allclose(gains, true, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(true, best, rtol=1e-6, atol=1e-7)
    if sets == "cmi":
        want, _ = brute_greedy("logdet", x, q, p, budget, eta, nu, lam)
        assert got.tolist() == want


def test_logdetcmi_woodbury_path_equals_brute_force() -> None:
    """More labeled samples than dimensions: the conditioning goes through ``D x D``."""
    x, q, p = small_sets(2, torch.float32)
    q = torch.cat([q, q + 0.1 * torch.randn(q.shape, generator=torch.Generator().manual_seed(0))])
    assert len(q) + len(p) > x.shape[1]
    want, want_gains = brute_greedy("logdet", x, q, p, 6, 0.9, 0.9, 0.3)
    got, gains = logdetcmi_greedy(unit(x), unit(q), unit(p), 6, np.random.default_rng(0), 0.9, 0.9, 0.3)
    assert got.tolist() == want
    np.testing.assert_allclose(gains, want_gains, rtol=1e-6, atol=1e-7)


# -- the strategy on constructed pools -----------------------------------------------------


def open_set_view(private: bool, seed: int = 0) -> tuple[PoolView, np.ndarray]:
    """Known samples around e1. Two pool blobs equally close to them, one (``good``) on
    the side away from the labeled OOD samples, the other (``risky``) among them."""
    e1, e2 = [4.0, 0.0, 0.0], [0.0, 4.0, 0.0]
    good = blobs([[4.0, 3.0, 0.0]], 30, 0.3, seed)
    risky = blobs([[4.0, -3.0, 0.0]], 30, 0.3, seed + 1)
    known = blobs([e1], 6, 0.3, seed + 2)
    ood = blobs([[3.0, -4.0, 0.0]], 6, 0.3, seed + 3)
    far = blobs([e2], 1, 0.3, seed + 4)  # keeps the pool from being two blobs only
    pool = torch.cat([good, risky, far]).float()
    lab = torch.cat([known, ood]).float() if private else known.float()
    targets = np.array([0] * len(known) + ([OOD] * len(ood) if private else []))
    n = len(pool)
    view = PoolView(
        unlabeled=np.arange(n) + 100,
        labeled=np.arange(len(lab)) + 100 + n,
        n_classes=2,
        labeled_targets=targets,
        embeddings=pool,
        labeled_embeddings=lab,
    )
    return view, np.array([0] * 30 + [1] * 30 + [2])


@pytest.mark.parametrize("function", ["flcmi", "logdetcmi"])
def test_labeled_ood_steers_the_batch_away(function: str) -> None:
    strategy = SIMILAR({"function": function})
    with_p, group = open_set_view(private=True)
    picked = strategy.query(with_p, 5, seed=0) - 100
    assert (group[picked] == 0).all(), "with labeled OOD, every pick avoids their side"
    # before any OOD answer both sides are equally like the known samples: one pick covers
    # its side, the next goes to the other side
    without_p, _ = open_set_view(private=False)
    for seed in range(3):
        picked = strategy.query(without_p, 2, seed=seed) - 100
        assert sorted(group[picked].tolist()) == [0, 1]


@pytest.mark.parametrize("function", ["flcmi", "logdetcmi"])
def test_cold_start_covers_the_pool(function: str) -> None:
    """No labeled samples: facility location / log determinant diversity over the pool."""
    pool = blobs([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]], 20, 0.3, 3).float()
    view = PoolView(unlabeled=np.arange(60), labeled=np.empty(0, np.int64), n_classes=3, embeddings=pool)
    picked = SIMILAR({"function": function}).query(view, 3, seed=0)
    assert sorted((picked // 20).tolist()) == [0, 1, 2]


def test_picks_past_the_last_positive_gain_follow_query_relevance() -> None:
    """Once the pool is covered up to its caps, the rest are the most query-like."""
    view, group = open_set_view(private=True)
    picked = SIMILAR().query(view, view.n_unlabeled, seed=0) - 100
    assert sorted(picked.tolist()) == list(range(view.n_unlabeled))
    assert group[picked[-1]] != 0  # the risky side and the far sample come last


def test_sampled_ground_set_keeps_the_behaviour() -> None:
    view, group = open_set_view(private=True)
    exact = SIMILAR().query(view, 10, seed=0)
    assert np.array_equal(SIMILAR({"max_ground": 1000}).query(view, 10, seed=0), exact)
    picked = SIMILAR({"max_ground": 30}).query(view, 10, seed=0) - 100
    assert (group[picked] == 0).mean() >= 0.8


def test_indefinite_logdet_kernel_is_a_config_error() -> None:
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    view = PoolView(
        unlabeled=np.arange(2),
        labeled=np.array([2, 3]),
        n_classes=2,
        labeled_targets=np.array([0, OOD]),
        embeddings=v,
        labeled_embeddings=torch.tensor([[1.0, 0.0], [1.0, 0.0]]),
    )
    with pytest.raises(ConfigError, match="not positive definite"):
        SIMILAR({"function": "logdetcmi", "eta": 0.0, "nu": 1.0, "lambda": 0.01}).query(view, 1)


def test_params_and_bad_views() -> None:
    assert SIMILAR({"lambda": 0.25}).params.lambda_val == 0.25
    with pytest.raises(ConfigError):
        SIMILAR({"function": "gccg"})
    view, _ = open_set_view(private=True)
    assert view.labeled_targets is not None
    view.labeled_targets = view.labeled_targets[:-1]
    with pytest.raises(ModelError, match="labeled targets"):
        SIMILAR().query(view, 3)


# -- end to end ------------------------------------------------------------------------------


def test_openset_run_on_digits(tmp_path) -> None:
    cfg = ExperimentConfig.model_validate(
        {
            "strategy": "similar",
            "scenario": {"name": "openset", "params": {"ood_rate": 0.5}},
            "cycles": 2,
            "n_initial": 20,
            "n_query": 10,
            "results_dir": str(tmp_path),
            "training": {"epochs": 3},
            "tracking": {"enabled": False},
        }
    )
    trial = run_experiment(cfg).trials[0]
    answers = np.array(trial.labels)
    assert len(answers) == 40 and len(set(trial.labeled)) == 40
    # half the pool is OOD: a random query is half pure; SIMILAR's (0.85 here) is far purer
    assert trial.cycles[1].metrics["cumulative_precision"] >= 0.7
    assert (answers[:20] != OOD).all()


class TestLogDetCMIConformance(StrategyConformance):
    """The registered suite runs the default (FLCMI); LogDetCMI keeps the same contract."""

    strategy_name = "similar"
    strategy_params = {"function": "logdetcmi"}
