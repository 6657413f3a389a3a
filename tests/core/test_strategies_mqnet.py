"""MQ-Net: the skyline constraint, what the meta network learns from the answers, and the
selection it makes on constructed pools where purity and informativeness are known."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from alscope import ExperimentConfig, run_experiment
from alscope.errors import ModelError
from alscope.scenarios.base import OOD
from alscope.strategies.base import PoolView
from alscope.strategies.learning_loss import LossPredictionHooks
from alscope.strategies.mqnet import MQNet, QueryNet, csi_purity, meta_train, ranking_loss
from alscope.testing.conformance import StrategyConformance

FAST = {"meta_steps": 500, "meta_lr": 0.1}


def unit_at(purity: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors in 4-d whose cosine to e0 (where the known samples sit) is ``purity``."""
    perp = rng.normal(0.0, 1.0, (len(purity), 3))
    perp /= np.linalg.norm(perp, axis=1, keepdims=True)
    return np.concatenate([purity[:, None], np.sqrt(1 - purity[:, None] ** 2) * perp], axis=1)


def probs_with(informativeness: np.ndarray, top: np.ndarray) -> np.ndarray:
    """3-class probabilities with ``1 - max = informativeness`` on class ``top``."""
    p = np.repeat((informativeness / 2)[:, None], 3, axis=1)
    p[np.arange(len(p)), top] = 1 - informativeness
    return p


class World:
    """A pool where purity (CSI cosine to the known samples) and informativeness
    (``1 - max softmax``) are set per sample, and the oracle's answers are known."""

    def __init__(self, purity: np.ndarray, informativeness: np.ndarray, truth: np.ndarray, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.truth = truth
        self.informativeness = informativeness
        self.ssl = unit_at(purity, rng)
        self.probs = probs_with(
            informativeness, np.where(truth == OOD, rng.integers(0, 3, len(truth)), truth)
        )
        self.known = unit_at(np.ones(6), rng)  # the initial labeled set, 2 per class, all at e0

    def view(self, answered: np.ndarray) -> PoolView:
        n = len(self.truth)
        unl = np.setdiff1d(np.arange(n), answered)
        view = PoolView(
            unlabeled=unl,
            labeled=np.concatenate([np.arange(n, n + 6), answered]),
            n_classes=3,
            labeled_targets=np.concatenate([np.arange(6) % 3, self.truth[answered]]),
            probs=torch.tensor(self.probs[unl], dtype=torch.float32),
        )
        view.ssl_embeddings["csi"] = torch.tensor(self.ssl[unl], dtype=torch.float32)
        lab = np.concatenate([self.known, self.ssl[answered]])
        view.labeled_ssl_embeddings["csi"] = torch.tensor(lab, dtype=torch.float32)
        return view


def dilemma(seed: int, n: int = 200) -> World:
    """Known samples fairly pure with any informativeness; OOD samples less pure and
    highly uncertain (the purity-informativeness dilemma)."""
    rng = np.random.default_rng(seed)
    purity = np.concatenate([rng.uniform(0.6, 1.0, n), rng.uniform(0.3, 0.75, n)])
    informativeness = np.concatenate([rng.uniform(0.0, 0.6, n), rng.uniform(0.35, 0.66, n)])
    truth = np.concatenate([rng.integers(0, 3, n), np.full(n, OOD)])
    return World(purity, informativeness, truth, seed)


def monotone(net: QueryNet) -> bool:
    axis = torch.linspace(0.0, 8.0, 41)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1)
    with torch.no_grad():
        out = net(grid.reshape(-1, 2)).reshape(41, 41)
    return bool((out.diff(dim=0) >= -1e-5).all() and (out.diff(dim=1) >= -1e-5).all())


# -- the meta query network ---------------------------------------------------------------


def test_skyline_holds_for_any_weights_and_any_training() -> None:
    for seed in range(3):
        assert monotone(QueryNet(64, torch.Generator().manual_seed(seed)))
    # targets that fall with purity and with informativeness: the network cannot follow
    g = torch.Generator().manual_seed(0)
    x = torch.rand(80, 2, generator=g) * 6
    net = QueryNet(64, g)
    meta_train(net, x, (-x.sum(dim=1)).exp(), 300, 0.1, 64, 1.0, g)
    assert monotone(net)
    # and weights pushed negative by hand are read through relu
    with torch.no_grad():
        net.w1.sub_(0.7)
        net.w2.sub_(0.7)
    assert monotone(net)


def test_ranking_loss_follows_the_paper() -> None:
    scores = torch.tensor([3.0, 1.0, 2.0, 0.0])
    targets = torch.tensor([1.0, 0.0, 0.0, 2.0])
    # pairs with different targets only: (0,1) (0,2) (0,3) (1,3) (2,3); ties carry no gradient
    loss = ranking_loss(scores, targets, margin=1.0)
    assert loss is not None
    want = np.mean(
        [max(0, 1 - (3 - 1)), max(0, 1 - (3 - 2)), max(0, 1 + (3 - 0)), max(0, 1 + 1), max(0, 1 + 2)]
    )
    assert float(loss) == pytest.approx(want)
    assert ranking_loss(scores, torch.zeros(4), 1.0) is None


def queried_set(ood_low: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Meta-inputs ``exp(z)`` of 80 queried samples and their usefulness: known ones 1,
    OOD ones 0. The OOD answers stand out on one input only: ``ood_low`` (0:
    informativeness, 1: purity) is lower for them; the other input is drawn alike."""
    rng = np.random.default_rng(seed)
    ood = np.arange(80) % 2 == 0
    z = rng.normal(0.0, 0.6, (80, 2))
    z[:, ood_low] += np.where(ood, -1.0, 1.0)
    x = torch.tensor(np.exp(z), dtype=torch.float32)
    return x, torch.tensor(np.where(ood, 0.0, 1.0), dtype=torch.float32)


def purity_effect(net: QueryNet) -> float:
    """How much more the network gains from a pure than from an informative sample: the
    score rise from z = -1 to z = +1 in purity minus that in informativeness."""
    lo, hi = float(np.exp(-1.0)), float(np.exp(1.0))
    with torch.no_grad():
        s = net(torch.tensor([[1.0, lo], [1.0, hi], [lo, 1.0], [hi, 1.0]]))
    return float((s[1] - s[0]) - (s[3] - s[2]))


def test_meta_network_learns_purity_when_the_ood_answers_were_impure() -> None:
    effects = []
    for ood_low in (1, 0):  # OOD answers impure; the control: OOD answers uninformative
        x, t = queried_set(ood_low)
        g = torch.Generator().manual_seed(0)
        net = QueryNet(64, g)
        losses = meta_train(net, x, t, 1000, 0.1, 64, 1.0, g)
        assert np.mean(losses[-50:]) < 0.6 * losses[0]
        effects.append(purity_effect(net))
    assert effects[0] > 0.5 > -0.5 > effects[1], effects


# -- selection ----------------------------------------------------------------------------


def test_first_query_prefers_pure_and_informative_samples() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(4), 25)  # 0: pure+informative, 1: pure, 2: informative, 3: neither
    # equally pure groups 0 and 1, so the official first rule (raw informativeness + exp of the
    # purity's z-score) separates them by informativeness; groups 2 and 3 are impure
    purity = np.where(groups < 2, rng.uniform(0.95, 0.951, 100), rng.uniform(0.2, 0.4, 100))
    informativeness = np.where(groups % 2 == 0, rng.uniform(0.5, 0.6, 100), rng.uniform(0.0, 0.1, 100))
    world = World(purity, informativeness, np.zeros(100, dtype=np.int64))
    picked = MQNet(FAST).query(world.view(np.empty(0, np.int64)), 20, seed=0)
    assert (groups[picked] == 0).all()


def test_second_query_weighs_purity_learned_from_the_answers() -> None:
    """After OOD answers that were impure and informative, MQ-Net's next query is purer
    than the untrained rule's (purity + informativeness) and more informative than
    purity alone would make it."""
    for seed in range(2):
        world = dilemma(seed)
        strategy = MQNet({"meta_steps": 1000, "meta_lr": 0.1})
        rng = np.random.default_rng(seed)
        # a first batch rich in impure, informative OOD samples (the sum of both standardised
        # scores picks it), recorded as MQ-Net records its own queries
        start = world.view(np.empty(0, np.int64))
        start_inputs, start_probs = strategy.meta_input(start)
        pos = np.argsort(-start_inputs.sum(dim=1).numpy())[:40]
        first = start.unlabeled[pos]
        strategy._remember(first, start_inputs[pos].numpy(), start_probs[pos].numpy())
        assert (world.truth[first] == OOD).any()
        view = world.view(first)
        inputs, _ = strategy.meta_input(view)
        untrained = view.unlabeled[np.argsort(-inputs.sum(dim=1).numpy())[:40]]
        by_purity = view.unlabeled[np.argsort(-inputs[:, 1].numpy())[:40]]
        second = strategy.select(view, 40, rng)
        assert strategy.net is not None and strategy.meta_losses
        assert (world.truth[second] != OOD).mean() > (world.truth[untrained] != OOD).mean() + 0.15
        assert world.informativeness[second].mean() > world.informativeness[by_purity].mean()


def test_no_training_without_two_different_answers() -> None:
    """Only OOD answers so far: every usefulness is 0, nothing to rank, the first rule stays."""
    world = dilemma(0, n=50)
    strategy = MQNet(FAST)
    rng = np.random.default_rng(0)
    strategy.select(world.view(np.empty(0, np.int64)), 5, rng)
    strategy.queried = np.flatnonzero(world.truth == OOD)[:5]  # as if the 5 picks were all OOD
    strategy.select(world.view(strategy.queried.copy()), 5, rng)
    assert strategy.net is None and not strategy.meta_losses


def test_state_survives_json_and_continues_the_same() -> None:
    world = dilemma(1)
    strategy = MQNet(FAST)
    rng = np.random.default_rng(0)
    first = strategy.select(world.view(np.empty(0, np.int64)), 30, rng)
    second = strategy.select(world.view(first), 30, rng)
    state = json.loads(json.dumps(strategy.state_dict()))
    resumed = MQNet(FAST)
    resumed.load_state_dict(state)
    answered = np.concatenate([first, second])
    a = strategy.select(world.view(answered), 30, np.random.default_rng(5))
    b = resumed.select(world.view(answered), 30, np.random.default_rng(5))
    assert np.array_equal(a, b)
    assert len(resumed.queried) == 90 and np.array_equal(resumed.queried[:30], first)


def test_purity_is_the_csi_score() -> None:
    unl = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    known = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    # max cosine to a known sample times the norm: 1 x 2, 1 x 1, cos 45 deg x sqrt(2)
    np.testing.assert_allclose(csi_purity(unl, known), [2.0, 1.0, 1.0], rtol=1e-6)
    assert (csi_purity(unl, known[:0]) == 0).all()


def test_learning_loss_informativeness() -> None:
    strategy = MQNet({"informativeness": "learning_loss", **FAST})
    assert strategy.requirements().extra_outputs == ("predicted_loss",)
    assert isinstance(strategy.training_hooks(), LossPredictionHooks)
    assert MQNet().training_hooks() is None and MQNet().requirements().extra_outputs == ()
    world = World(np.full(40, 0.9), np.full(40, 0.3), np.zeros(40, dtype=np.int64))
    view = world.view(np.empty(0, np.int64))
    view.extras["predicted_loss"] = torch.arange(40, dtype=torch.float32)  # equal purity: loss decides
    picked = strategy.query(view, 5, seed=0)
    assert sorted(picked.tolist()) == [35, 36, 37, 38, 39]


def test_missing_inputs_are_model_errors() -> None:
    world = dilemma(0, n=20)
    view = world.view(np.empty(0, np.int64))
    view.ssl_embeddings = {}
    with pytest.raises(ModelError, match="csi"):
        MQNet().query(view, 3)
    view = world.view(np.empty(0, np.int64))
    view.probs = None
    with pytest.raises(ModelError, match="probs"):
        MQNet().query(view, 3)


# -- end to end ------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:ssl csi:UserWarning")  # digits has no shifts: csi trains as simclr
def test_openset_run_on_digits(tmp_path) -> None:
    pytest.importorskip("alscope.ssl")
    cfg = ExperimentConfig.model_validate(
        {
            "strategy": {
                "name": "mqnet",
                "params": {"ssl_epochs": 1, "ssl_dim": 16, "ssl_batch_size": 128, "meta_steps": 100},
            },
            "scenario": {"name": "openset", "params": {"ood_rate": 0.5}},
            "cycles": 3,
            "n_initial": 20,
            "n_query": 15,
            "results_dir": str(tmp_path),
            "training": {"epochs": 3},
            "tracking": {"enabled": False},
        }
    )
    trial = run_experiment(cfg).trials[0]
    assert len(trial.labeled) == 20 + 3 * 15 == len(set(trial.labeled))
    # half the pool is OOD: a random query is half pure; MQ-Net's (0.96 here) is far purer
    assert trial.cycles[2].metrics["cumulative_precision"] >= 0.7
    kept = MQNet()  # the state the run saved: every query's samples, the trained network
    kept.load_state_dict(trial.strategy_state)
    assert np.array_equal(kept.queried, np.array(trial.labeled[20:]))
    assert kept.net is not None and kept.probs is not None and kept.probs.shape == (45, 6)


class TestLearningLossConformance(StrategyConformance):
    """The registered suite runs the default (confidence); the Learning Loss mode keeps the
    same contract (its predicted loss arrives as an extra output)."""

    strategy_name = "mqnet"
    strategy_params = {"informativeness": "learning_loss"}


def test_first_query_in_confidence_mode_is_led_by_purity() -> None:
    """The official first rule adds the raw 1 - max p to exp(z) of the purity, so the
    uncertain OOD samples of the dilemma do not flood the network's first training set."""
    for seed in range(2):
        world = dilemma(seed)
        first = MQNet(FAST).query(world.view(np.empty(0, np.int64)), 40, seed=seed)
        assert (world.truth[first] != OOD).mean() >= 0.9
