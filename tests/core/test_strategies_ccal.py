"""CCAL (Du et al., ICCV 2021): semantic filter, distinctive pick, class quotas, cold
start, chunked similarities, and an open-set run end to end."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
import torch

import alscope.strategies.ccal as ccal_module
from alscope.config import ExperimentConfig
from alscope.engine.experiment import run_experiment
from alscope.errors import ModelError
from alscope.scenarios.base import OOD
from alscope.strategies._distances import max_cosine
from alscope.strategies.base import PoolView
from alscope.strategies.ccal import CCAL, redundancy, round_robin, soft_threshold


def unit(*rows: Sequence[float]) -> torch.Tensor:
    x = torch.tensor(rows, dtype=torch.float32)
    return x / x.norm(dim=1, keepdim=True)


def view(
    sem_u: torch.Tensor,
    sem_l: torch.Tensor,
    dis_u: torch.Tensor,
    dis_l: torch.Tensor,
    targets: list[int],
) -> PoolView:
    n_u, n_l = len(sem_u), len(sem_l)
    v = PoolView(
        unlabeled=np.arange(100, 100 + n_u),
        labeled=np.arange(n_l),
        n_classes=2,
        labeled_targets=np.asarray(targets, dtype=np.int64),
    )
    v.ssl_embeddings = {"simclr": sem_u, "csi": dis_u}
    v.labeled_ssl_embeddings = {"simclr": sem_l, "csi": dis_l}
    return v


def test_soft_threshold_is_the_papers_function():
    s = torch.linspace(0, 1, 11, dtype=torch.float64)
    k, t = 7.0, 0.6
    paper = (1 - torch.exp(-k * (s - t))) / (1 + torch.exp(-k * (s - t)))
    torch.testing.assert_close(soft_threshold(s, k, t), paper)
    steep = soft_threshold(torch.tensor([0.0, 0.85, 0.95, 1.0], dtype=torch.float64), 100.0, 0.9)
    assert steep[0] == pytest.approx(-1) and steep[3] > 0.9999  # about a step at t
    assert steep[1] < -0.98 and steep[2] > 0.98


def test_redundancy_is_gap_plus_anchor_agreement_plus_nearest():
    anchors = unit([1, 0, 0], [0.6, 0.8, 0], [0, 0, 1])
    x = unit([1, 0.2, 0], [0, 0.1, 1])
    got = redundancy(x, anchors)
    a = anchors.numpy()
    for row, value in zip(x.numpy(), got, strict=True):
        sims = a @ row
        first, second = np.argsort(-sims)[:2]
        expected = (sims[first] - sims[second]) + a[first] @ a[second] + sims[first]
        assert float(value) == pytest.approx(expected, abs=1e-5)
    # a single anchor: the two nearest coincide (no gap, full agreement)
    one = redundancy(x, anchors[:1])
    torch.testing.assert_close(one, x @ anchors[0] + 1.0)


def test_similarities_are_chunked_with_the_same_result(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(50, 6, generator=gen), dim=1)
    anchors = torch.nn.functional.normalize(torch.randn(9, 6, generator=gen), dim=1)
    whole = max_cosine(x, anchors), redundancy(x, anchors)
    monkeypatch.setattr(ccal_module, "rows_per_block", lambda columns: 7)  # 8 blocks of rows
    chunked = max_cosine(x, anchors), redundancy(x, anchors)
    torch.testing.assert_close(chunked[0][0], whole[0][0])
    assert torch.equal(chunked[0][1], whole[0][1])
    torch.testing.assert_close(chunked[1], whole[1])
    brute = (x @ anchors.T).max(dim=1)
    torch.testing.assert_close(whole[0][0], brute.values)


def test_semantic_filter_keeps_the_samples_like_the_labeled_known_ones():
    # semantic space: class 0 along e1, class 1 along e2, unknown samples along e3
    sem_l = unit([1, 0, 0], [0.98, 0.2, 0], [0, 1, 0], [0.2, 0.98, 0])
    in_dist = [[1, 0.05 * i, 0.01] for i in range(4)] + [[0.05 * i, 1, 0.01] for i in range(4)]
    unknown = [[0.01, 0.02 * i, 1] for i in range(6)]
    sem_u = unit(*in_dist, *unknown)
    # distinctive space: the unknown samples look the most distinctive (far from every anchor)
    dis_l = unit([1, 0, 0, 0], [0.9, 0.3, 0, 0], [0, 1, 0, 0], [0.3, 0.9, 0, 0])
    dis_u = unit(*[[1, 0.1 * i, 0.1, 0] for i in range(8)], *[[0, 0, 0.1 * i, 1] for i in range(6)])
    v = view(sem_u, sem_l, dis_u, dis_l, [0, 0, 1, 1])
    picked = CCAL().query(v, 4, seed=0)
    assert set(picked.tolist()) <= set(range(100, 108))  # no unknown sample passes the filter
    # each pseudo class gets its quota
    assert sum(p < 104 for p in picked) == 2


def test_distinctive_score_prefers_samples_far_from_the_labeled_anchors():
    sem_l = unit([1, 0], [1, 0.01])
    sem_u = unit(*[[1, 0] for _ in range(5)])  # one semantic similarity: all pass the filter
    dis_l = unit([1, 0, 0], [0.8, 0.6, 0])
    # a copy of each anchor, a sample between them, two far away (the last the farthest)
    dis_u = unit([1, 0, 0], [0.8, 0.6, 0], [0.95, 0.3, 0], [0.3, 0.1, 1], [0.1, 0.1, 1])
    v = view(sem_u, sem_l, dis_u, dis_l, [0, 0])
    order = CCAL().query(v, 5, seed=0)
    assert order[:3].tolist() == [104, 103, 102]
    assert set(order[3:].tolist()) == {100, 101}  # the anchors' copies are the most redundant


def test_labeled_ood_answers_are_not_used():
    """As the official code: only labeled known samples are anchors, so an OOD answer
    changes nothing (and nothing is needed before the first one)."""
    gen = torch.Generator().manual_seed(1)
    sem = torch.nn.functional.normalize(torch.randn(40, 5, generator=gen), dim=1)
    dis = torch.nn.functional.normalize(torch.randn(40, 8, generator=gen), dim=1)
    base = view(sem[10:], sem[:6], dis[10:], dis[:6], [0, 1, 0, 1, 0, 1])
    with_ood = view(sem[10:], sem[:10], dis[10:], dis[:10], [0, 1, 0, 1, 0, 1, OOD, OOD, OOD, OOD])
    assert np.array_equal(CCAL().query(base, 8, seed=3), CCAL().query(with_ood, 8, seed=3))


def test_round_robin_over_pseudo_classes():
    scores = np.array([0.9, 0.8, 0.7, 0.95, 0.1, 0.5, 0.4])
    classes = np.array([0, 0, 0, 1, 1, 2, 0])
    rng = np.random.default_rng(0)
    picks = round_robin(scores, classes, 5, rng)
    assert len(set(picks.tolist())) == 5
    assert set(picks[:3].tolist()) == {0, 3, 5}  # each class's best first
    assert set(picks[3:5].tolist()) == {1, 4}  # then the second best; class 2 ran out
    assert set(round_robin(scores, classes, 7, rng).tolist()) == set(range(7))


def test_without_quota_one_ranking():
    sem_l = unit([1, 0], [0, 1])
    sem_u = unit(*[[1, 0.01 * i] for i in range(6)], [0.01, 1])
    dis_l = unit([1, 0], [0, 1])
    dis_u = unit(*[[1, 0.1 * i] for i in range(6)], [0.5, 1])
    v = view(sem_u, sem_l, dis_u, dis_l, [0, 1])
    # class 1's only candidate (106) is its least distinctive sample, yet gets its turn
    assert set(CCAL(t=0.0).query(v, 2, seed=0).tolist()) == {104, 106}
    # one ranking: 104 and 103 score higher (105 has the lowest semantic similarity)
    assert set(CCAL(t=0.0, class_quota=False).query(v, 2, seed=0).tolist()) == {103, 104}


@pytest.mark.parametrize("targets", [[], [OOD, OOD]], ids=["nothing-labeled", "only-ood-labeled"])
def test_cold_start_takes_representatives_of_the_semantic_clusters(targets):
    gen = torch.Generator().manual_seed(0)
    centres = torch.eye(3) * 5
    sem = torch.cat([c + 0.1 * torch.randn(20, 3, generator=gen) for c in centres])
    sem_l = torch.zeros(len(targets), 3) if targets else torch.empty(0, 3)
    v = view(sem, sem_l, sem, sem_l, targets)
    picked = CCAL().query(v, 3, seed=0) - 100
    assert sorted((picked // 20).tolist()) == [0, 1, 2]  # one per cluster


def test_missing_ssl_embeddings_is_a_model_error():
    v = PoolView(
        unlabeled=np.arange(5), labeled=np.arange(5, 7), n_classes=2, labeled_targets=np.array([0, 1])
    )
    with pytest.raises(ModelError, match="simclr self-supervised embeddings"):
        CCAL().query(v, 2)


def test_requirements_carry_the_ssl_settings():
    req = CCAL(semantic_epochs=3, distinctive_epochs=2, ssl_dim=32, temperature=0.2).requirements()
    simclr, csi = req.ssl
    assert (simclr.method, simclr.epochs, simclr.dim, simclr.temperature) == ("simclr", 3, 32, 0.2)
    assert (csi.method, csi.epochs, csi.dim) == ("csi", 2, 32)
    assert not req.needs_trained_model


def test_openset_run_end_to_end(tmp_path):
    cfg = ExperimentConfig.model_validate(
        {
            "strategy": {
                "name": "ccal",
                "params": {"semantic_epochs": 2, "distinctive_epochs": 2, "ssl_batch_size": 128},
            },
            "scenario": {"name": "openset", "params": {"ood_rate": 0.4}},
            "cycles": 2,
            "n_initial": 20,
            "n_query": 10,
            "results_dir": str(tmp_path),
            "cache_dir": str(tmp_path / "cache"),
            "training": {"epochs": 2},
            "tracking": {"enabled": False},
        }
    )
    with pytest.warns(UserWarning, match="csi trains as simclr"):  # tabular: no rotations
        result = run_experiment(cfg)
    trial = result.trials[0]
    assert len(trial.labeled) == 40 and len(set(trial.labeled)) == 40
    first = trial.cycles[0].metrics
    assert 0 <= first["query_precision"] <= 1
    cached = sorted(p.name.split("-")[1] for p in (tmp_path / "cache" / "ssl").glob("*.pt"))
    assert cached == ["csi", "simclr"]
    assert math.isfinite(trial.cycles[-1].metrics["accuracy"])
