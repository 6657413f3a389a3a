"""Golden behaviour of the diversity and hybrid strategies, from the papers' definitions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import alscope
from alscope import ExperimentConfig, run_experiment
from alscope.errors import ModelError
from alscope.strategies._distances import (
    FeatureSpace,
    GradientSpace,
    MinDistance,
    gradient_factors,
    kcenter_greedy,
    kmeans_pp,
)
from alscope.strategies.badge import gradient_distances
from alscope.strategies.base import PoolView, Requirements
from alscope.strategies.cluster_margin import round_robin
from alscope.strategies.coreset_mip import robust_kcenter
from alscope.strategies.probcover import ProbCover


def strategy(name: str, **params: Any) -> Any:
    return alscope.get_strategy(name, **params) if params else alscope.get_strategy(name)


def blobs(n_per: int, centres: np.ndarray, spread: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([c + spread * rng.standard_normal((n_per, len(c))) for c in centres]).astype(
        np.float32
    )


def brute_kcenter(
    x: np.ndarray, labeled: np.ndarray | None, budget: int, first: int | None = None
) -> list[int]:
    """The exact greedy in float64, one full pass per pick."""
    xd = torch.as_tensor(x, dtype=torch.float64)
    if labeled is not None and len(labeled):
        d = torch.cdist(xd, torch.as_tensor(labeled, dtype=torch.float64)).min(dim=1).values
    else:
        d = torch.full((len(x),), float("inf"), dtype=torch.float64)
    picks: list[int] = []
    while len(picks) < budget:
        j = int(d.argmax()) if first is None or picks else first
        picks.append(j)
        d = torch.minimum(d, (xd - xd[j]).norm(dim=1))
    return picks


# -- coreset (k-center greedy) ----------------------------------------------------------


def test_kcenter_picks_farthest_from_labeled_then_from_labeled_and_picked() -> None:
    pts = np.array([[0, 0], [1, 0], [5, 0], [0, 4], [-3, 0], [5, 1]], dtype=np.float32)
    labeled = np.array([True, False, False, False, False, False])
    view = PoolView.from_arrays(embeddings=pts, labeled_mask=labeled)
    picked = strategy("coreset").query(view, 3, seed=0).tolist()
    # (5,1) is the farthest from the labeled origin (5.10); then (0,4) (4 from the
    # origin, 5.83 from (5,1)); then (-3,0) (3 from the origin)
    assert picked == [5, 3, 4]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("prune", [True, False])
def test_coreset_equals_exact_brute_force_greedy(seed: int, prune: bool) -> None:
    # 5,000 rows: enough for the grouped, pruned and lazy path to be used
    rng = np.random.default_rng(seed)
    x = blobs(500, rng.normal(0, 4, size=(10, 24)), 1.0, seed)
    lab = rng.choice(len(x), size=40, replace=False)
    mask = np.zeros(len(x), bool)
    mask[lab] = True
    view = PoolView.from_arrays(embeddings=x, labeled_mask=mask)
    picked = strategy("coreset", prune=prune).query(view, 120, seed=seed)
    expected = view.unlabeled[brute_kcenter(x[~mask], x[mask], 120)]
    assert picked.tolist() == expected.tolist()


def test_coreset_pruned_path_visits_less_and_keeps_exact_distances() -> None:
    rng = np.random.default_rng(3)
    x = torch.as_tensor(blobs(600, rng.normal(0, 6, size=(10, 16)), 1.0, 3))
    lab = x[:50]
    pool = x[50:]
    picks, tracker = kcenter_greedy(FeatureSpace(pool), 80, np.random.default_rng(0), FeatureSpace(lab))
    assert tracker.n_groups > 1
    # every row's kept distance is its exact distance to the nearest centre
    centres = torch.cat([lab, pool[torch.from_numpy(picks)]]).double()
    exact = torch.cdist(pool.double(), centres).min(dim=1).values
    assert torch.allclose(tracker.distances().double(), exact, rtol=1e-4, atol=1e-3)
    full = len(pool) * (len(lab) + len(picks))
    assert tracker.rows_visited < 0.5 * full, "the triangle-inequality bound skipped little"
    assert picks.tolist() == brute_kcenter(pool.numpy(), lab.numpy(), 80)


def test_coreset_cold_start_is_random_first_then_farthest() -> None:
    x = blobs(40, np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]), 1.0, 4)
    view = PoolView.from_arrays(embeddings=x)
    firsts = set()
    for seed in range(6):
        picked = strategy("coreset").query(view, 5, seed=seed).tolist()
        assert picked == brute_kcenter(x, None, 5, first=picked[0])
        firsts.add(picked[0])
    assert len(firsts) > 1, "the first centre is drawn with the cycle's generator"


@pytest.mark.parametrize("projection", ["pca", "random"])
def test_coreset_projection(projection: str) -> None:
    rng = np.random.default_rng(5)
    x = blobs(100, rng.normal(0, 5, size=(4, 64)), 1.0, 5)
    mask = np.zeros(len(x), bool)
    mask[::50] = True
    view = PoolView.from_arrays(embeddings=x, labeled_mask=mask)
    picked = strategy("coreset", projection=projection, projection_dim=8).query(view, 10, seed=0)
    assert len(set(picked.tolist())) == 10 and not mask[picked].any()
    if projection == "pca":  # the greedy runs in the principal subspace
        centred = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        z = centred @ vt[:8].T
        assert picked.tolist() == view.unlabeled[brute_kcenter(z[~mask], z[mask], 10)].tolist()
    same = strategy("coreset", projection=projection, projection_dim=64).query(view, 10, seed=0)
    assert same.tolist() == strategy("coreset").query(view, 10, seed=0).tolist()  # dim >= D: no-op


# -- coreset_mip (robust k-center) ------------------------------------------------------

LINE = np.array([0, 1, 2, 10, 11, 12, 100], dtype=np.float32)


def test_coreset_mip_reaches_the_known_optimum_without_outliers() -> None:
    view = PoolView.from_arrays(embeddings=np.stack([LINE, 0 * LINE], axis=1))
    for seed in range(3):
        s = strategy("coreset_mip", outlier_fraction=0.0)
        picked = sorted(LINE[s.query(view, 2, seed=seed)].tolist())
        # 100 must be a centre; the other one covers 0..12 within 10 (at 2 or at 10)
        assert picked in ([2.0, 100.0], [10.0, 100.0])
        assert s.last_info["radius"] == pytest.approx(10.0)


def test_coreset_mip_leaves_the_outlier_out() -> None:
    view = PoolView.from_arrays(embeddings=np.stack([LINE, 0 * LINE], axis=1))
    s = strategy("coreset_mip", outlier_fraction=0.15)  # one outlier among 7 samples
    picked = sorted(LINE[s.query(view, 2, seed=0)].tolist())
    assert picked == [1.0, 11.0]  # radius 1, with 100 as the outlier
    assert s.last_info["radius"] == pytest.approx(1.0)
    assert s.last_info["greedy_radius"] >= 10.0  # the greedy must cover 100


def test_robust_kcenter_respects_labeled_centres() -> None:
    pts = np.array([0.0, 1.0, 2.0, 10.0, 11.0, 12.0])
    dist = np.abs(pts[:, None] - pts[None, :])
    lab_dist = np.abs(pts - 11.0)  # a labeled sample at 11 covers the right group
    chosen, radius, _ = robust_kcenter(dist, lab_dist, 1, 0, np.array([0]))
    assert chosen.tolist() == [1] and radius == pytest.approx(1.0)


# -- kmeans -----------------------------------------------------------------------------


def test_kmeans_returns_one_sample_per_well_separated_cluster() -> None:
    centres = np.array([[0, 0], [20, 0], [0, 20], [20, 20], [-20, 10]], dtype=np.float32)
    x = blobs(30, centres, 1.0, 6)
    for seed in range(3):
        picked = strategy("kmeans").query(PoolView.from_arrays(embeddings=x), 5, seed=seed)
        assert sorted(picked // 30) == [0, 1, 2, 3, 4]
        for i in picked:  # the member nearest to its cluster's mean
            block = x[(i // 30) * 30 : (i // 30 + 1) * 30]
            nearest = np.argmin(((block - block.mean(axis=0)) ** 2).sum(axis=1))
            assert i % 30 == nearest


# -- typiclust ----------------------------------------------------------------------------


def _dense_core_blobs() -> np.ndarray:
    """Three blobs of 50: a tight core of 25 (more than K = 20) plus 25 loose samples."""
    rng = np.random.default_rng(7)
    parts = []
    for c in ([0.0, 0.0], [30.0, 0.0], [0.0, 30.0]):
        parts.append(np.asarray(c) + 0.05 * rng.standard_normal((25, 2)))
        parts.append(np.asarray(c) + 4.0 * rng.standard_normal((25, 2)))
    return np.concatenate(parts).astype(np.float32)


def test_typiclust_picks_a_typical_point_of_each_uncovered_cluster() -> None:
    x = _dense_core_blobs()
    view = PoolView.from_arrays(embeddings=x)
    picked = strategy("typiclust", embedding="model", normalize=False).query(view, 3, seed=0)
    assert sorted(picked // 50) == [0, 1, 2]  # one per cluster
    assert all(i % 50 < 25 for i in picked), "each pick lies in its cluster's dense core"


def test_typiclust_skips_covered_clusters() -> None:
    x = _dense_core_blobs()
    mask = np.zeros(len(x), bool)
    mask[[0, 1, 55]] = True  # clusters 0 and 1 already have labels
    view = PoolView.from_arrays(embeddings=x, labeled_mask=mask)
    picked = strategy("typiclust", embedding="model", normalize=False).query(view, 1)
    assert picked[0] // 50 == 2 and picked[0] % 50 < 25


# -- probcover ------------------------------------------------------------------------------


def _line_pool() -> np.ndarray:
    # a group of 5 within 0.4, a group of 3 within 0.4, a lone sample; delta = 1
    xs = [0.0, 0.1, 0.2, 0.3, 0.4, 5.0, 5.2, 5.4, 9.0]
    return np.stack([xs, [0.0] * len(xs)], axis=1).astype(np.float32)


def test_probcover_covers_balls_greedily() -> None:
    view = PoolView.from_arrays(embeddings=_line_pool())
    s = strategy("probcover", embedding="model", delta=1.0, normalize=False)
    picked = s.query(view, 3, seed=0).tolist()
    assert picked[0] in range(5) and picked[1] in (5, 6, 7) and picked[2] == 8
    # the ball of the first pick holds all five: every one of them has degree 5
    firsts = {s.query(view, 1, seed=seed)[0] for seed in range(40)}
    assert firsts == {0, 1, 2, 3, 4}, "ties are broken at random with the cycle's generator"


def test_probcover_counts_the_labeled_coverage() -> None:
    mask = np.zeros(9, bool)
    mask[2] = True  # the big group is covered already
    view = PoolView.from_arrays(embeddings=_line_pool(), labeled_mask=mask)
    picked = strategy("probcover", embedding="model", delta=1.0, normalize=False).query(view, 2, seed=0)
    assert picked[0] in (5, 6, 7) and picked[1] == 8


def test_probcover_default_delta_keeps_balls_pure() -> None:
    x = blobs(60, np.array([[0.0, 0.0], [8.0, 0.0]]), 1.0, 8)
    s = ProbCover({"embedding": "model", "normalize": False})
    view = PoolView.from_arrays(embeddings=x, n_classes=2)
    picked = s.query(view, 2, seed=0)
    assert 0.3 < s.last_delta < 8.0
    assert sorted(picked // 60) == [0, 1]


# -- typiclust and probcover: which embedding space ------------------------------------------


def _with_ssl(view: PoolView, ssl: np.ndarray, mask: np.ndarray | None = None) -> PoolView:
    """``view`` plus SimCLR embeddings ``ssl`` over the whole pool (as the engine adds them)."""
    lab = np.zeros(len(ssl), bool) if mask is None else mask
    t = torch.as_tensor(ssl, dtype=torch.float32)
    view.ssl_embeddings["simclr"] = t[torch.from_numpy(np.flatnonzero(~lab))]
    view.labeled_ssl_embeddings["simclr"] = t[torch.from_numpy(np.flatnonzero(lab))]
    return view


def _shuffled(x: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``x`` in another order: the same geometry over different samples."""
    perm = np.random.default_rng(seed).permutation(len(x))
    return x[perm], perm


@pytest.mark.parametrize("name", ["typiclust", "probcover"])
def test_diversity_ssl_requirements_declare_simclr(name: str) -> None:
    req = strategy(name).requirements()
    (ssl,) = req.ssl
    assert (ssl.method, ssl.epochs, ssl.dim, ssl.temperature, ssl.batch_size) == ("simclr", 20, 128, 0.5, 256)
    assert not req.embeddings and not req.labeled_embeddings
    assert not req.needs_trained_model, "it still chooses the initial set (cold start)"
    custom = strategy(name, ssl_epochs=3, ssl_dim=32, ssl_temperature=0.2, ssl_batch_size=64, ssl_lr=0.01)
    (ssl,) = custom.requirements().ssl
    assert (ssl.epochs, ssl.dim, ssl.temperature, ssl.batch_size, ssl.lr) == (3, 32, 0.2, 64, 0.01)
    model = strategy(name, embedding="model").requirements()
    assert model == Requirements(embeddings=True, labeled_embeddings=True)


def test_typiclust_simclr_follows_the_ssl_clusters_not_the_model_embeddings() -> None:
    ssl = _dense_core_blobs()
    emb, perm = _shuffled(ssl, 3)  # row i of the model space is sample perm[i] of the ssl space
    view = _with_ssl(PoolView.from_arrays(embeddings=emb), ssl)
    picked = strategy("typiclust", normalize=False).query(view, 3, seed=0)
    assert sorted(picked // 50) == [0, 1, 2] and all(i % 50 < 25 for i in picked)
    by_model = strategy("typiclust", embedding="model", normalize=False).query(view, 3, seed=0)
    assert sorted(perm[by_model] // 50) == [0, 1, 2] and all(perm[i] % 50 < 25 for i in by_model)
    assert set(picked.tolist()) != set(by_model.tolist())


def test_typiclust_simclr_counts_the_labeled_ssl_rows() -> None:
    ssl = _dense_core_blobs()
    emb, _ = _shuffled(ssl, 4)
    mask = np.zeros(len(ssl), bool)
    mask[[0, 1, 55]] = True  # in the ssl space clusters 0 and 1 already have labels
    view = _with_ssl(PoolView.from_arrays(embeddings=emb, labeled_mask=mask), ssl, mask)
    for seed in range(3):
        picked = strategy("typiclust", normalize=False).query(view, 1, seed=seed)
        assert picked[0] // 50 == 2 and picked[0] % 50 < 25


def test_probcover_simclr_covers_the_ssl_balls() -> None:
    ssl = _line_pool()
    emb = ssl[::-1].copy()  # sample i sits where sample 8 - i sits in the ssl space
    view = _with_ssl(PoolView.from_arrays(embeddings=emb), ssl)
    s = strategy("probcover", delta=1.0, normalize=False)
    firsts = {int(s.query(view, 1, seed=seed)[0]) for seed in range(30)}
    assert firsts == {0, 1, 2, 3, 4}
    picked = s.query(view, 3, seed=0)
    assert picked[0] in range(5) and picked[1] in (5, 6, 7) and picked[2] == 8
    by_model = strategy("probcover", embedding="model", delta=1.0, normalize=False).query(view, 3, seed=0)
    assert by_model[0] in range(4, 9) and by_model[1] in (1, 2, 3) and by_model[2] == 0


def test_probcover_simclr_counts_the_labeled_ssl_coverage() -> None:
    ssl = _line_pool()
    mask = np.zeros(9, bool)
    mask[2] = True  # in the ssl space the big group is covered already
    view = _with_ssl(PoolView.from_arrays(embeddings=ssl[::-1].copy(), labeled_mask=mask), ssl, mask)
    picked = strategy("probcover", delta=1.0, normalize=False).query(view, 2, seed=0)
    assert picked[0] in (5, 6, 7) and picked[1] == 8


@pytest.mark.parametrize(("name", "params"), [("typiclust", {}), ("probcover", {"delta": 1.0})])
def test_diversity_ssl_falls_back_to_the_views_embeddings_with_a_warning(
    name: str, params: dict[str, Any]
) -> None:
    x = _dense_core_blobs()
    mask = np.zeros(len(x), bool)
    mask[[0, 60]] = True
    view = PoolView.from_arrays(embeddings=x, labeled_mask=mask, n_classes=3)
    with pytest.warns(UserWarning, match="no simclr self-supervised embeddings.*uses view.embeddings"):
        fallback = strategy(name, normalize=False, **params).query(view, 4, seed=0)
    model = strategy(name, embedding="model", normalize=False, **params).query(view, 4, seed=0)
    assert fallback.tolist() == model.tolist()
    bare = PoolView.from_arrays(probs=np.full((10, 2), 0.5))
    with pytest.raises(ModelError, match="needs simclr self-supervised embeddings"):
        strategy(name, **params).query(bare, 2)


@pytest.mark.parametrize("name", ["typiclust", "probcover"])
def test_diversity_ssl_cold_start_selects_from_the_trained_simclr_embeddings(
    tmp_path: Path, name: str
) -> None:
    """At ``n_initial=0`` the engine trains SimCLR once (cached) and the first query is
    the strategy's selection over those embeddings, not over the inputs."""
    from alscope.engine.experiment import derive_seed

    cfg = ExperimentConfig.model_validate(
        {
            "strategy": {"name": name, "params": {"ssl_epochs": 1, "ssl_dim": 16, "ssl_batch_size": 128}},
            "cycles": 1,
            "n_initial": 0,
            "training": {"epochs": 1},
            "tracking": {"enabled": False},
            "results_dir": str(tmp_path),
            "cache_dir": str(tmp_path / "cache"),
        }
    )
    result = run_experiment(cfg)
    (cached,) = (tmp_path / "cache" / "ssl").glob("*-simclr-*.pt")
    pool = torch.load(cached, map_location="cpu", weights_only=True)["embeddings"]
    view = PoolView(unlabeled=np.arange(len(pool)), labeled=np.empty(0, np.int64), n_classes=10)
    view = _with_ssl(view, pool.numpy())
    s = strategy(name, ssl_epochs=1, ssl_dim=16, ssl_batch_size=128)
    expected = s.select(view, cfg.n_query, np.random.default_rng(derive_seed(cfg.seed, 0, 0, "select")))
    assert sorted(result.trials[0].cycles[0].selected) == sorted(expected.tolist())


# -- badge ----------------------------------------------------------------------------------


def _probs(n: int, c: int, rng: np.random.Generator) -> np.ndarray:
    z = rng.normal(0, 2, size=(n, c))
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def test_badge_factorised_distance_equals_materialised() -> None:
    rng = np.random.default_rng(9)
    for c in (2, 7):
        p = torch.as_tensor(_probs(30, c, rng)).double()
        h = torch.as_tensor(rng.normal(size=(30, 5))).double()
        a = gradient_factors(p)
        g = (a[:, :, None] * h[:, None, :]).reshape(30, -1)  # the N x (C*D) embeddings
        onehot = torch.nn.functional.one_hot(p.argmax(1), c).double()
        assert torch.allclose(g, ((p - onehot)[:, :, None] * h[:, None, :]).reshape(30, -1))
        assert torch.allclose(gradient_distances(a, h, a, h), torch.cdist(g, g).square(), atol=1e-9)
        space = GradientSpace(a.float(), h.float())
        assert torch.allclose(space.sq.double(), g.square().sum(1), rtol=1e-5)


def test_badge_first_centre_is_the_largest_gradient_norm() -> None:
    rng = np.random.default_rng(10)
    p, h = _probs(200, 5, rng), rng.normal(size=(200, 8)).astype(np.float32)
    a = gradient_factors(torch.as_tensor(p))
    norms = (a.square().sum(1) * torch.as_tensor(h).square().sum(1)).numpy()
    view = PoolView.from_arrays(probs=p, embeddings=h)
    for seed in range(3):
        assert strategy("badge").query(view, 4, seed=seed)[0] == int(np.argmax(norms))


@pytest.mark.parametrize("lazy", [True, False])
def test_badge_draws_the_kmeanspp_distribution(lazy: bool) -> None:
    """After the largest-norm first centre, each next one is drawn with probability
    d^2 / sum d^2, d the distance to the nearest centre chosen so far: checked on the
    joint law of the 2nd and 3rd picks (the 3rd is where the lazy sampler rejects)."""
    rng = np.random.default_rng(11)
    n = 7
    p, h = _probs(n, 3, rng), rng.normal(size=(n, 4)).astype(np.float32)
    a = gradient_factors(torch.as_tensor(p))
    d2 = gradient_distances(a, torch.as_tensor(h), a, torch.as_tensor(h)).double().numpy()
    first = int((a.square().sum(1) * torch.as_tensor(h).square().sum(1)).argmax())
    expected = np.zeros((n, n))
    w1 = d2[first] / d2[first].sum()
    for j in range(n):
        w2 = np.minimum(d2[first], d2[j])
        if w1[j] > 0:
            expected[j] = w1[j] * w2 / w2.sum()
    view = PoolView.from_arrays(probs=p, embeddings=h)
    draws = 3000
    seen = np.zeros((n, n))
    for seed in range(draws):
        picked = strategy("badge", lazy=lazy).query(view, 3, seed=seed)
        assert picked[0] == first
        seen[picked[1], picked[2]] += 1
    assert np.abs(seen / draws - expected).max() < 0.03


def test_kmeanspp_lazy_path_on_a_grouped_pool() -> None:
    x = torch.as_tensor(blobs(500, np.random.default_rng(12).normal(0, 5, size=(10, 8)), 1.0, 12))
    picks = kmeans_pp(FeatureSpace(x), 200, np.random.default_rng(0), n_groups=None)
    assert len(set(picks.tolist())) == 200
    # D^2 seeding reaches every blob early
    assert len(set((picks[:40] // 500).tolist())) == 10


# -- cluster_margin -----------------------------------------------------------------------


def _four_clusters() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(13)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=np.float32)
    x = blobs(25, centres, 0.5, 13)
    probs = _probs(100, 3, rng)
    probs[::2] = [0.34, 0.33, 0.33]  # half of every cluster is uncertain
    return x, probs


def test_cluster_margin_spreads_picks_over_clusters() -> None:
    x, probs = _four_clusters()
    view = PoolView.from_arrays(probs=probs, embeddings=x)
    s = strategy("cluster_margin", distance_threshold=3.0, margin_multiplier=4.0)
    picked = s.query(view, 8, seed=0)
    assert np.bincount(picked // 25, minlength=4).tolist() == [2, 2, 2, 2]
    assert all(i % 2 == 0 for i in picked), "only the lowest-margin candidates are queried"
    # the clusters were computed once and outlive the round (and a resume)
    state = s.state_dict()
    again = strategy("cluster_margin", distance_threshold=3.0, margin_multiplier=4.0)
    again.load_state_dict(state)
    assert again.state_dict() == state
    assert again.query(view, 8, seed=0).tolist() == picked.tolist()


def test_cluster_margin_round_robin_starts_with_the_smallest_cluster() -> None:
    clusters = np.array([0, 0, 0, 1, 2, 2])
    order = round_robin(clusters, np.arange(6), 4, np.random.default_rng(0))
    assert order[0] == 3  # the singleton cluster first
    assert sorted(clusters[order[:3]].tolist()) == [0, 1, 2]


# -- grouped min-distance vector ------------------------------------------------------------


def test_min_distance_groups_keep_rows_and_order() -> None:
    x = torch.as_tensor(blobs(700, np.random.default_rng(14).normal(0, 5, size=(8, 12)), 1.0, 14))
    tracker = MinDistance(FeatureSpace(x), np.random.default_rng(0))
    assert tracker.n_groups > 1 and sorted(tracker.perm.tolist()) == list(range(len(x)))
    for j in (0, 5, 17):
        tracker.add_row(tracker.stored_position(j))
    exact = torch.cdist(x.double(), x[[0, 5, 17]].double()).min(dim=1).values
    assert torch.allclose(tracker.distances().double(), exact, rtol=1e-4, atol=1e-3)


# -- with the engine --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "n_initial"),
    [
        ("coreset", 20),
        ("coreset_mip", 20),
        ("kmeans", 20),
        ("typiclust", 20),
        ("probcover", 20),
        ("badge", 20),
        ("cluster_margin", 20),
        ("typiclust", 0),
        ("probcover", 0),
        ("coreset", 0),
    ],
)
def test_runs_with_the_engine(tmp_path: Path, name: str, n_initial: int) -> None:
    cfg = ExperimentConfig(
        strategy=name,
        cycles=1,
        n_initial=n_initial,
        training={"epochs": 3},
        tracking={"enabled": False},
        results_dir=tmp_path,
    )
    result = run_experiment(cfg)
    trial = result.trials[0]
    assert len(trial.cycles) == 2
    selected = trial.cycles[0].selected
    assert len(selected) == cfg.n_query and len(set(selected)) == cfg.n_query
    assert len(trial.labeled) == n_initial + cfg.n_query


# -- cdal -------------------------------------------------------------------------


def _symmetric_kl(a: np.ndarray, b: np.ndarray) -> float:
    return float(0.5 * np.sum((a - b) * (np.log(a) - np.log(b))))


def test_cdal_distances_equal_the_symmetric_kl_of_the_probability_vectors() -> None:
    from alscope.strategies.cdal import ProbabilitySpace

    rng = np.random.default_rng(0)
    a, b = rng.dirichlet(np.ones(5), size=7), rng.dirichlet(np.ones(5), size=4)
    pa, pb = ProbabilitySpace(torch.from_numpy(a), 1e-12), ProbabilitySpace(torch.from_numpy(b), 1e-12)
    expected = np.array([[_symmetric_kl(x, y) for y in b] for x in a])
    np.testing.assert_allclose(pa.to(slice(0, 7), pb).numpy(), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        pa.to_row(2).numpy(), [_symmetric_kl(x, a[2]) for x in a], rtol=1e-10, atol=1e-12
    )


def test_cdal_picks_what_a_direct_greedy_k_center_under_the_kl_picks() -> None:
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.full(4, 0.5), size=60)
    mask = np.zeros(60, bool)
    mask[[3, 17, 40]] = True
    view = PoolView.from_arrays(probs=probs, labeled_mask=mask, labeled_targets=np.zeros(3, int))
    picks = strategy("cdal").select(view, 6, np.random.default_rng(0))
    p = probs.astype(np.float32).astype(np.float64)  # the view holds float32
    centres, expected = list(np.flatnonzero(mask)), []
    for _ in range(6):
        nearest = [
            -1.0 if i in centres else min(_symmetric_kl(p[i], p[c]) for c in centres) for i in range(60)
        ]
        expected.append(int(np.argmax(nearest)))
        centres.append(expected[-1])
    assert list(picks) == expected


def test_cdal_prefers_an_unseen_context_over_copies_of_the_labeled_ones() -> None:
    """Two labeled samples confidently of class 0 and of class 1; the pool holds many
    near-copies of them and a few samples that confuse classes 2 and 3: their context is
    new, so they are taken first, however few they are."""
    rng = np.random.default_rng(2)
    known = np.array([[0.94, 0.02, 0.02, 0.02], [0.02, 0.94, 0.02, 0.02]])
    copies = np.repeat(known, 20, axis=0) + rng.uniform(0, 0.01, size=(40, 4))
    confusing = np.array([[0.05, 0.05, 0.45, 0.45], [0.04, 0.06, 0.5, 0.4], [0.06, 0.04, 0.4, 0.5]])
    probs = np.concatenate([known, copies, confusing])
    probs /= probs.sum(axis=1, keepdims=True)
    mask = np.zeros(len(probs), bool)
    mask[:2] = True
    view = PoolView.from_arrays(probs=probs, labeled_mask=mask, labeled_targets=np.array([0, 1]))
    first = strategy("cdal").select(view, 2, np.random.default_rng(0))
    assert set(first) <= {42, 43, 44}
    assert strategy("CDAL").component_name == "cdal"


def test_cdal_without_labels_starts_from_a_random_sample_and_spreads() -> None:
    probs = np.array([[0.97, 0.01, 0.02]] * 5 + [[0.01, 0.97, 0.02]] * 5 + [[0.02, 0.01, 0.97]] * 5)
    view = PoolView.from_arrays(probs=probs)
    picks = strategy("cdal").select(view, 3, np.random.default_rng(4))
    assert sorted(int(p) // 5 for p in picks) == [0, 1, 2]  # one of each context
