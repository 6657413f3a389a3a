"""LfOSA and EOAL: golden selections on constructed detector outputs, the detector (and
EOAL's OVA heads and OOD clusters) really learn on a toy open-set problem, the fallbacks
before any OOD sample is labeled, and both strategies end to end on an open-set pool."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from alscope.config import ExperimentConfig, TrainingConfig
from alscope.data.base import InputSpec, TensorSource
from alscope.engine.experiment import run_experiment
from alscope.engine.inference import infer
from alscope.engine.trainer import Trainer
from alscope.errors import ModelError
from alscope.models.base import Backbone
from alscope.models.mlp import MLP
from alscope.scenarios.base import OOD
from alscope.strategies._open_set import DetectorHooks, build_detector, class_ids, temperature_ce
from alscope.strategies.base import PoolView
from alscope.strategies.eoal import (
    EOAL,
    EOALHooks,
    cluster_regulariser,
    distance_entropy,
    entropic_ova_loss,
    eoal_score,
    finch_partition,
    ova_entropy,
    round_robin,
)
from alscope.strategies.lfosa import LfOSA, LfOSAHooks, known_probability

CPU = torch.device("cpu")


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny networks on a shared 2-core machine run faster (and steadier) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- toy open-set problem ------------------------------------------------------------------


def open_blobs(n_per_class: int = 30, d: int = 8, seed: int = 0) -> TensorSource:
    """Three known classes and one unknown blob (label OOD), well separated."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.zeros(4, d)
    for k in range(4):
        centres[k, k] = 5.0
    group = torch.arange(4).repeat_interleave(n_per_class)
    x = centres[group] + 0.7 * torch.randn(len(group), d, generator=gen)
    labels = np.where(group.numpy() == 3, OOD, group.numpy())
    return TensorSource(x, labels)


def mlp(d: int = 8, c: int = 3, seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP.build(InputSpec("vector", (d,)), c, {"hidden_sizes": [32, 16], "dropout": 0.1})  # type: ignore[return-value]


def fit_hooks(
    hooks: DetectorHooks, src: TensorSource, labeled: np.ndarray, ood: np.ndarray, epochs: int = 25
) -> tuple[MLP, dict[str, nn.Module]]:
    model = mlp()
    hooks.bind(model, src)
    modules = hooks.modules()
    config = TrainingConfig(epochs=epochs, batch_size=16, lr=1e-2, device="cpu")
    Trainer(config, CPU).fit(
        model,
        src,
        labeled,
        torch.from_numpy(np.maximum(src.labels, 0)),
        seed=0,
        hooks=hooks,
        modules=modules,
        ood=ood,
    )
    return model, modules


def split(src: TensorSource) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labeled known (8 per class), labeled OOD (8) and the rest of the pool."""
    labels = src.labels
    known = np.concatenate([np.flatnonzero(labels == k)[:8] for k in range(3)])
    ood = np.flatnonzero(labels == OOD)[:8]
    rest = np.setdiff1d(np.arange(len(labels)), np.concatenate([known, ood]))
    return known, ood, rest


def pool_outputs(
    hooks: DetectorHooks,
    model: MLP,
    modules: dict[str, nn.Module],
    src: TensorSource,
    idx: np.ndarray,
    names: tuple[str, ...],
) -> dict[str, torch.Tensor]:
    return infer(
        model, src, idx, device=CPU, batch_size=64, hooks=hooks, modules=modules, extra_outputs=names
    )


def extras_view(n_classes: int, **extras: Any) -> PoolView:
    return PoolView.from_arrays(extras=extras, n_classes=n_classes)


# -- the shared detector ------------------------------------------------------------------


def test_detector_is_a_separate_copy_with_one_more_output() -> None:
    model = mlp()
    detector = build_detector(model, "lfosa")
    assert type(detector) is MLP and detector.classifier.out_features == 4
    assert {id(p) for p in detector.parameters()}.isdisjoint(id(p) for p in model.parameters())

    class Odd(Backbone):
        def __init__(self, width: int) -> None:  # not the backbone constructor
            nn.Module.__init__(self)
            self.input_spec, self.n_classes, self.params = InputSpec("vector", (2,)), 2, None

    with pytest.raises(ModelError, match="C\\+1"):
        build_detector(Odd(3), "lfosa")


def test_temperature_scales_known_and_ood_rows_separately() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    y = torch.tensor([0, 2])
    ood = torch.tensor([False, True])
    params = LfOSA.Params(known_temperature=0.5, unknown_temperature=2.0)
    expected = (
        torch.nn.functional.cross_entropy(logits[:1] / 0.5, y[:1])
        + torch.nn.functional.cross_entropy(logits[1:] / 2.0, y[1:])
    ) / 2
    assert torch.allclose(temperature_ce(logits, y, ood, params), expected)


def test_class_ids_accept_any_floats() -> None:
    got = class_ids(torch.tensor([0.2, 0.7, -3.0, 2.4, 99.0, float("nan")]), 3)
    assert got.tolist() == [0, 1, 0, 2, 3, 3]


# -- LfOSA: golden selections --------------------------------------------------------------


def test_lfosa_picks_the_high_activation_samples_of_each_class() -> None:
    rng = np.random.default_rng(0)
    # class 0 activates strongly overall, class 1 weakly: a global MAV threshold would take
    # class 0's unknown-like samples (about 6) before class 1's known ones (about 4)
    mav = np.concatenate(
        [rng.normal(10, 0.3, 12), rng.normal(6, 0.3, 12), rng.normal(4, 0.2, 12), rng.normal(1, 0.2, 12)]
    )
    cls = np.repeat([0.0, 0.0, 1.0, 1.0], 12)
    known = np.r_[0:12, 24:36]
    prob = known_probability(mav, class_ids(cls, 2), 2, seed=0)
    assert prob[known].min() > 0.9 and np.delete(prob, known).max() < 0.1
    view = extras_view(2, lfosa_mav=mav, lfosa_class=cls)
    picked = LfOSA().query(view, 24, seed=0)
    assert set(picked.tolist()) == set(known.tolist())
    assert set(np.argsort(-mav)[:24].tolist()) != set(known.tolist())  # a global MAV ranking fails


def test_lfosa_unknown_single_and_constant_classes() -> None:
    # class 2 (= C) is predicted unknown: probability 0 however high its MAV; class 1 has
    # a single sample (never scored, like the authors'); class 0's MAVs are all equal
    mav = np.array([3.0, 3.0, 3.0, 50.0, 40.0, 9.0])
    cls = np.array([0, 0, 0, 2, 2, 1])
    prob = known_probability(mav, cls, 2, seed=0)
    assert prob.tolist() == [0.5, 0.5, 0.5, 0.0, 0.0, 0.0]
    picked = LfOSA().query(extras_view(2, lfosa_mav=mav, lfosa_class=cls.astype(float)), 3, seed=1)
    assert sorted(picked.tolist()) == [0, 1, 2]


def test_lfosa_gmm_is_seeded_and_non_finite_activations_are_refused() -> None:
    rng = np.random.default_rng(1)
    mav = rng.normal(0, 1, 60)
    cls = rng.integers(0, 3, 60).astype(float)
    view = extras_view(3, lfosa_mav=mav, lfosa_class=cls)
    assert np.array_equal(LfOSA().query(view, 10, seed=4), LfOSA().query(view, 10, seed=4))
    mav[3] = np.nan
    with pytest.raises(ModelError, match="non-finite"):
        LfOSA().query(extras_view(3, lfosa_mav=mav, lfosa_class=cls), 5, seed=0)


# -- EOAL: the entropies and losses --------------------------------------------------------


def test_ova_entropy_is_zero_when_decided_and_one_when_undecided() -> None:
    decided = torch.tensor([[[-20.0, 20.0], [20.0, -20.0]]])  # (1, 2, C=2)
    undecided = torch.zeros(1, 2, 2)
    assert ova_entropy(decided).item() == pytest.approx(0.0, abs=1e-6)
    assert ova_entropy(undecided).item() == pytest.approx(1.0)


def test_distance_entropy_is_low_near_an_ood_cluster() -> None:
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [5.0, 5.0 * math.sqrt(3)]])  # a triangle
    near = torch.tensor([[0.1, 0.0], [10.0, 0.2]])
    between = centres.mean(0, keepdim=True) + 0.1  # about equally far from all three
    e_near, e_between = distance_entropy(near, centres), distance_entropy(between, centres)
    assert e_near.max() < 0.01 and e_between.item() > 0.9
    assert distance_entropy(near, None).tolist() == [0.0, 0.0]
    assert distance_entropy(near, centres[:1]).tolist() == [0.0, 0.0]  # one cluster tells nothing


def test_eoal_scores_unknown_like_samples_low_and_never_picks_them_first() -> None:
    # samples 0-3 confident known (low closed entropy) and far from OOD clusters (high
    # open entropy); 4-7 near an OOD cluster; 8-9 confident but predicted unknown (class C)
    closed = np.array([0.05, 0.1, 0.08, 0.15, 0.1, 0.05, 0.3, 0.2, 0.01, 0.02])
    open_ = np.array([0.95, 0.9, 0.97, 0.92, 0.05, 0.1, 0.02, 0.08, 0.99, 0.99])
    cls = np.array([0, 1, 0, 1, 0, 1, 0, 1, 2, 2], dtype=float)
    score = eoal_score(closed, open_)
    assert score[:4].min() > score[4:8].max()
    view = extras_view(
        2, eoal_class=cls, eoal_closed_entropy=closed, eoal_open_entropy=open_, eoal_features=np.arange(10.0)
    )
    for diversity in (False, True):
        picked = EOAL(diversity=diversity).query(view, 4, seed=0)
        assert sorted(picked.tolist()) == [0, 1, 2, 3]
    # candidates first, by score, then the detector's rejected samples
    order = EOAL(diversity=False).query(view, 10, seed=0)
    assert order[:8].tolist() == np.argsort(-score[:8], kind="stable").tolist()
    assert sorted(order[8:].tolist()) == [8, 9]


def test_entropic_ova_loss_pushes_ood_heads_to_maximum_entropy() -> None:
    y = torch.tensor([3])
    ood = torch.tensor([True])
    undecided = torch.zeros(1, 2, 3)
    decided = torch.tensor([[[4.0, -4.0, 4.0], [-4.0, 4.0, -4.0]]])
    loss_u = entropic_ova_loss(undecided, y, ood, alpha=0.8, ood_labeled=True)
    loss_d = entropic_ova_loss(decided, y, ood, alpha=0.8, ood_labeled=True)
    assert loss_u < loss_d
    assert loss_u.item() == pytest.approx(0.8 * math.log(2))  # 0.5 * alpha/C * C * 2 log 2
    # a known sample: its positive head and the hardest negative
    right = torch.tensor([[[-4.0, 4.0, 4.0], [4.0, -4.0, -4.0]]])  # class 0 positive, others negative
    assert entropic_ova_loss(right, torch.tensor([0]), torch.tensor([False]), 0.8, False) < 0.01
    # no OOD labeled: no OOD term even for a row marked OOD
    assert entropic_ova_loss(decided, y, ood, 0.8, ood_labeled=False).item() == 0.0


def test_cluster_regulariser_prefers_compact_separated_clusters() -> None:
    centres = torch.tensor([[0.0, 0.0], [6.0, 0.0]])
    assigned = torch.tensor([0, 1])
    tight = torch.tensor([[0.1, 0.0], [5.9, 0.0]])
    loose = torch.tensor([[2.9, 0.0], [3.1, 0.0]])
    assert cluster_regulariser(tight, centres, assigned) < cluster_regulariser(loose, centres, assigned)
    at_centre = centres.clone().requires_grad_(True)
    cluster_regulariser(at_centre, centres, assigned).backward()
    assert at_centre.grad is not None and torch.isfinite(at_centre.grad).all()


def test_finch_partition_and_round_robin() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.tensor([5.0, 0.0]) + 0.3 * torch.randn(20, 2, generator=gen)
    b = torch.tensor([0.0, 5.0]) + 0.3 * torch.randn(20, 2, generator=gen)
    labels = finch_partition(torch.cat([a, b]), max_clusters=2)
    assert len(np.unique(labels)) == 2 and len(np.unique(labels[:20])) == 1 and labels[0] != labels[20]
    assert (
        len(np.unique(finch_partition(torch.cat([a, b]), max_clusters=40))) <= 20
    )  # the finest level merges
    # clusters 0 and 1; two per cluster per round
    cl = np.array([0, 0, 0, 1, 1, 1])
    sc = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    order = round_robin(cl, sc, per=2, tie=np.arange(6))
    assert order.tolist() == [0, 1, 3, 4, 2, 5]


# -- the hooks really train ----------------------------------------------------------------


def test_lfosa_detector_learns_the_extra_class() -> None:
    src = open_blobs()
    known, ood, rest = split(src)
    hooks = LfOSAHooks(LfOSA.Params(), "lfosa")
    model, modules = fit_hooks(hooks, src, known, ood)
    losses = hooks.detector_losses
    assert len(losses) == 25 and losses[-1] < 0.2 * losses[0]
    out = pool_outputs(hooks, model, modules, src, rest, ("lfosa_mav", "lfosa_class"))
    predicted = out["lfosa_class"].numpy()
    truth = np.where(src.labels[rest] == OOD, 3, src.labels[rest])
    assert (predicted == truth).mean() > 0.9
    # on the same pool the strategy's query holds no OOD sample
    view = PoolView(unlabeled=rest, labeled=np.r_[known, ood], n_classes=3, extras=out)
    picked = LfOSA().query(view, 20, seed=0)
    assert (src.labels[picked] != OOD).all()


def test_lfosa_without_labeled_ood_trains_on_known_only() -> None:
    src = open_blobs()
    known, _, rest = split(src)
    hooks = LfOSAHooks(LfOSA.Params(detector_epochs=10), "lfosa")
    model, modules = fit_hooks(hooks, src, known, np.empty(0, dtype=np.int64), epochs=5)
    assert len(hooks.detector_losses) == 10  # spread over the classifier's 5 epochs
    assert hooks.detector_losses[-1] < hooks.detector_losses[0]
    out = pool_outputs(hooks, model, modules, src, rest, ("lfosa_mav", "lfosa_class"))
    assert (out["lfosa_class"] < 3).all()  # the extra class was never a target
    view = PoolView(unlabeled=rest, labeled=known, n_classes=3, extras=out)
    assert len(LfOSA().query(view, 10, seed=0)) == 10


def test_eoal_hooks_learn_ova_heads_and_ood_clusters() -> None:
    src = open_blobs()
    known, ood, rest = split(src)
    hooks = EOALHooks(EOAL.Params(n_clusters=2), "eoal")
    model, modules = fit_hooks(hooks, src, known, ood)
    losses = hooks.detector_losses
    # the OOD rows' OVA term cannot fall below 0.5 * alpha * 2 log 2 (heads at 50/50)
    assert losses[-1] < 0.5 * losses[0]
    assert hooks.centres is not None and hooks.centres.shape == (2, hooks.embedding_dim)
    names = ("eoal_class", "eoal_closed_entropy", "eoal_open_entropy", "eoal_features")
    out = pool_outputs(hooks, model, modules, src, rest, names)
    assert out["eoal_features"].shape == (len(rest), hooks.embedding_dim)
    is_ood = src.labels[rest] == OOD
    score = eoal_score(out["eoal_closed_entropy"].numpy(), out["eoal_open_entropy"].numpy())
    assert score[~is_ood].mean() > score[is_ood].mean()
    view = PoolView(unlabeled=rest, labeled=np.r_[known, ood], n_classes=3, extras=out)
    picked = EOAL().query(view, 20, seed=0)
    assert (src.labels[picked] != OOD).mean() >= 0.9


def test_eoal_without_labeled_ood_uses_the_closed_set_entropy_alone() -> None:
    src = open_blobs()
    known, _, rest = split(src)
    hooks = EOALHooks(EOAL.Params(), "eoal")
    model, modules = fit_hooks(hooks, src, known, np.empty(0, dtype=np.int64), epochs=10)
    assert hooks.centres is None and hooks.detector_losses[-1] < hooks.detector_losses[0]
    names = ("eoal_class", "eoal_closed_entropy", "eoal_open_entropy", "eoal_features")
    out = pool_outputs(hooks, model, modules, src, rest, names)
    assert (out["eoal_open_entropy"] == 0).all()
    view = PoolView(unlabeled=rest, labeled=known, n_classes=3, extras=out)
    picked = EOAL(diversity=False).query(view, 10, seed=0)
    closed = out["eoal_closed_entropy"].numpy()
    candidates = out["eoal_class"].numpy() < 3
    expected = np.sort(closed[candidates])[:10]
    assert np.allclose(np.sort(closed[np.searchsorted(rest, picked)]), expected)


# -- end to end ----------------------------------------------------------------------------


def open_run(tmp_path: Path, strategy: str) -> tuple[float, Any]:
    cfg = ExperimentConfig.model_validate(
        {
            "strategy": strategy,
            "scenario": {"name": "openset", "params": {"ood_rate": 0.4}},
            "cycles": 3,
            "n_initial": 20,
            "n_query": 20,
            "results_dir": str(tmp_path / strategy),
            # 20 labeled samples in batches of 16 for 30 epochs: enough steps for the MLP
            # (and the detector) to separate the classes; 3 epochs of one batch are not
            "training": {"epochs": 30, "batch_size": 16, "device": "cpu"},
            "tracking": {"enabled": False},
        }
    )
    trial = run_experiment(cfg).trials[0]
    answers = np.array(trial.labels)
    assert len(answers) == 20 + 3 * 20 and (answers[:20] != OOD).all()
    return float((answers[20:] != OOD).mean()), trial


def test_open_set_runs_beat_random_query_precision(tmp_path: Path) -> None:
    random_precision, _ = open_run(tmp_path, "random")
    lfosa_precision, lfosa = open_run(tmp_path, "lfosa")
    eoal_precision, eoal = open_run(tmp_path, "eoal")
    # measured on seeds 0-3: random 0.52-0.58, lfosa 0.95-0.98, eoal 0.77-0.87
    assert lfosa_precision >= random_precision + 0.2
    assert eoal_precision > random_precision
    for trial in (lfosa, eoal):
        last = trial.cycles[-2].metrics
        assert 0 < trial.cycles[-1].metrics["accuracy"] <= 1
        assert "query_precision" in last and "cumulative_precision" in last
    assert lfosa.cycles[-2].metrics["cumulative_precision"] == pytest.approx(lfosa_precision)
