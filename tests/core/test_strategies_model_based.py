"""Model-based strategies (TiDAL, Learning Loss, VAAL, TA-VAAL, SRAAL, WAAL, CEAL) and the
training-side options (temperature scaling, PURE/LURE): golden selection directions, the
extra modules learn on toy problems, each strategy end to end, exact resume."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from alscope.cli import app
from alscope.config import ExperimentConfig, TrainingConfig
from alscope.data.base import Batch, DataSource, InputSpec, TensorSource
from alscope.data.splits import random_holdout
from alscope.engine.bias_correction import bias_correction_weights, uniform_probabilities
from alscope.engine.calibration import TemperatureScaled, fit_temperature
from alscope.engine.experiment import Experiment, run_experiment
from alscope.engine.hooks import BatchContext, FitContext, TrainingHooks
from alscope.engine.inference import compute_pool_view
from alscope.engine.metrics import expected_calibration_error
from alscope.engine.trainer import Trainer
from alscope.errors import ConfigError, ModelError
from alscope.hookspecs import hookimpl
from alscope.models.base import BackboneOutput
from alscope.models.mlp import MLP
from alscope.progress import Progress
from alscope.registry import Registry, get_registry
from alscope.specs import StrategySpec
from alscope.strategies._features import FeatureHead, pool_feature, probe
from alscope.strategies.base import (
    PoolView,
    Requirements,
    Strategy,
    has_proposal,
    sequential_probabilities,
    top_k,
)
from alscope.strategies.ceal import CEAL
from alscope.strategies.learning_loss import LearningLoss, LossPredictionHooks, ranking_loss
from alscope.strategies.tidal import TiDAL, dynamics_scores
from alscope.strategies.vaal import (
    SRAAL,
    TAVAAL,
    VAAL,
    AdversarialHooks,
    ConvVAE,
    VectorVAE,
    build_vae,
    online_uncertainty,
)
from alscope.strategies.waal import WAAL, WAALHooks, gradient_penalty, waal_uncertainty

CPU = torch.device("cpu")
MODEL_BASED = ["tidal", "learning_loss", "vaal", "ta_vaal", "sraal", "waal", "ceal"]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny networks on a shared 2-core machine run faster (and steadier) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- toy problems -------------------------------------------------------------------------


def blobs(n_per_class: int = 40, d: int = 8, c: int = 3, seed: int = 0, spread: float = 1.0) -> TensorSource:
    gen = torch.Generator().manual_seed(seed)
    centers = torch.zeros(c, d)
    for k in range(c):
        centers[k, k % d] = 4.0
    labels = torch.arange(c).repeat_interleave(n_per_class)
    x = centers[labels] + spread * torch.randn(len(labels), d, generator=gen)
    return TensorSource(x, labels.numpy())


def mlp(d: int = 8, c: int = 3, seed: int = 0, hidden: tuple[int, ...] = (32, 16)) -> MLP:
    torch.manual_seed(seed)
    return MLP.build(InputSpec("vector", (d,)), c, {"hidden_sizes": list(hidden), "dropout": 0.1})  # type: ignore[return-value]


def train(
    hooks: TrainingHooks,
    src: TensorSource,
    labeled: np.ndarray,
    epochs: int = 15,
    unlabeled: np.ndarray | None = None,
    model: MLP | None = None,
    **cfg: Any,
) -> tuple[MLP, dict[str, nn.Module]]:
    model = model or mlp(d=src.inputs.shape[1], c=int(src.labels.max()) + 1)
    hooks.bind(model, src)
    modules = hooks.modules()
    config = TrainingConfig(**{"epochs": epochs, "batch_size": 16, "lr": 1e-2, "device": "cpu", **cfg})
    Trainer(config, CPU).fit(
        model,
        src,
        labeled,
        torch.from_numpy(src.labels),
        seed=0,
        hooks=hooks,
        modules=modules,
        unlabeled=unlabeled,
    )
    return model, modules


def view_with(extras: dict[str, Any] | None = None, **arrays: Any) -> PoolView:
    return PoolView.from_arrays(extras=extras, **arrays)


def quick(tmp_path: Path, **overrides: Any) -> ExperimentConfig:
    base: dict[str, Any] = {
        "cycles": 1,
        "n_initial": 40,
        "n_query": 20,
        "results_dir": str(tmp_path),
        "training": {"epochs": 2, "device": "cpu"},
        "tracking": {"enabled": False},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return ExperimentConfig.model_validate(base)


# -- feature pooling ----------------------------------------------------------------------


def test_pool_feature_per_shape() -> None:
    cnn = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    tokens = torch.randn(2, 5, 7)
    flat = torch.randn(2, 6)
    assert torch.allclose(pool_feature(cnn), cnn.mean(dim=(2, 3)))
    assert torch.allclose(pool_feature(tokens), tokens.mean(dim=1))
    assert pool_feature(flat) is flat or torch.equal(pool_feature(flat), flat)
    head = FeatureHead((3, 7, 6), out_dim=4, width=8)
    assert head([cnn, tokens, flat]).shape == (2, 4)
    with pytest.raises(ModelError, match="3 intermediate features"):
        FeatureHead((3, 7), 1)([cnn, tokens, flat])


def test_probe_reads_feature_sizes_without_touching_modes_or_rng() -> None:
    src = blobs()
    model = mlp().train()
    torch.manual_seed(5)
    before = torch.get_rng_state()
    found = probe(model, src, "x")
    assert torch.equal(torch.get_rng_state(), before)
    assert model.training and all(m.training for m in model.modules())
    assert found.feature_dims == (32, 16) and found.embedding_dim == 16 and found.n_classes == 3


def test_features_missing_is_a_clear_error() -> None:
    hooks = LossPredictionHooks(LearningLoss.Params(), "learning_loss")
    out = BackboneOutput(torch.zeros(2, 3), torch.zeros(2, 4), None)
    with pytest.raises(ModelError, match="needs intermediate features"):
        hooks.pool_outputs(out, {})


def test_hooks_draw_endless_unlabeled_batches_from_their_own_generator() -> None:
    src = blobs(n_per_class=5)
    unlabeled = np.array([1, 4, 7, 11, 14])
    model = mlp()

    def draws(seed: int) -> list[list[int]]:
        fit = FitContext(
            model,
            np.array([0]),
            1,
            CPU,
            source=src,
            unlabeled_indices=unlabeled,
            generator=torch.Generator().manual_seed(seed),
        )
        batches = fit.unlabeled_batches(2)
        assert batches is not None
        return [next(batches).indices.tolist() for _ in range(6)]

    first = draws(0)
    assert all(len(b) in (1, 2) and set(b) <= set(unlabeled.tolist()) for b in first)
    assert sorted(i for b in first[:3] for i in b) == unlabeled.tolist()  # a full pass, then again
    assert draws(0) == first and draws(1) != first
    assert FitContext(model, np.array([0]), 1, CPU, source=src).unlabeled_batches(2) is None


# -- Learning Loss --------------------------------------------------------------------------


def test_ranking_loss_golden() -> None:
    # pairs (0, 3) and (1, 2); true losses 3 > 0 and 1 < 2
    target = torch.tensor([3.0, 1.0, 2.0, 0.0])
    right = torch.tensor([2.0, 0.0, 1.0, -1.0])  # orders both pairs with margin >= 1
    wrong = torch.tensor([-1.0, 1.0, 0.0, 2.0])
    assert float(ranking_loss(right, target, margin=1.0)) == 0.0
    # pair (0,3): 1 - (+1)(-1 - 2) = 4; pair (1,2): 1 - (-1)(1 - 0) = 2; mean 3
    assert float(ranking_loss(wrong, target, margin=1.0)) == pytest.approx(3.0)
    assert float(ranking_loss(torch.tensor([1.0]), torch.tensor([1.0]))) == 0.0


def test_learning_loss_queries_the_highest_predicted_loss() -> None:
    predicted = np.array([0.1, 5.0, 0.3, 4.0, 0.2, 3.0])
    mask = np.array([False, False, True, False, False, False])
    view = view_with(extras={"predicted_loss": predicted}, labeled_mask=mask, n_classes=2)
    picked = LearningLoss().query(view, 3, seed=0)
    assert sorted(picked.tolist()) == [1, 3, 5]
    assert LearningLoss(weight=2.0).params.weight == 2.0
    assert LearningLoss({"lambda": 0.5}).params.weight == 0.5


def test_learning_loss_module_learns_and_stops_reaching_the_backbone() -> None:
    src = blobs(spread=2.5)
    labeled = np.arange(0, len(src), 2)
    hooks = LearningLoss({"epoch_loss_fraction": 0.5}).training_hooks()
    train(hooks, src, labeled, epochs=20)
    losses = hooks.epoch_losses
    assert len(losses) == 20 and np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])
    assert hooks.stop_at == 10

    # after epoch_loss the ranking loss sends no gradient into the backbone
    model = mlp()
    hooks.bind(model, src)
    modules = hooks.modules()
    out = model(src.inputs[:8], return_features=True)
    fit = FitContext(model, labeled, 20, CPU, modules)
    per_sample = nn.functional.cross_entropy(out.logits, torch.from_numpy(src.labels[:8]), reduction="none")
    for epoch, reaches in ((0, True), (15, False)):
        model.zero_grad(set_to_none=True)
        ctx = BatchContext(epoch, 0, torch.arange(8), None, None, out, per_sample, fit)  # type: ignore[arg-type]
        hooks.extra_loss(ctx).backward(retain_graph=True)
        grad = model.blocks[0][0].weight.grad
        assert (grad is not None and grad.abs().sum() > 0) == reaches


# -- TiDAL -----------------------------------------------------------------------------------


def test_tidal_scores_golden() -> None:
    probs = torch.tensor([[0.5, 0.5, 0.0], [0.9, 0.05, 0.05], [1 / 3, 1 / 3, 1 / 3]])
    ent = dynamics_scores(probs, "entropy")
    margin = dynamics_scores(probs, "margin")
    assert ent.argmax() == 2 and ent.argmin() == 1
    assert margin[0] == pytest.approx(0.0) and margin.argmin() == 1
    view = view_with(extras={"tidal_score": ent.numpy()}, n_classes=3)
    assert TiDAL().query(view, 1).tolist() == [2]


def test_tidal_module_has_one_output_per_class_learns_and_varies() -> None:
    src = blobs(spread=1.5)
    labeled = np.arange(0, len(src), 3)
    unlabeled = np.setdiff1d(np.arange(len(src)), labeled)
    hooks = TiDAL().training_hooks()
    model, modules = train(hooks, src, labeled, epochs=12)
    head = modules["dynamics_module"]
    assert isinstance(head, FeatureHead) and head.out.out_features == 3
    # the dynamics: the running mean of the softmax, one update per epoch per labeled sample
    assert torch.equal(hooks.counts[torch.from_numpy(labeled)], torch.full((len(labeled),), 12.0))
    assert hooks.counts[torch.from_numpy(unlabeled)].sum() == 0
    assert torch.allclose(hooks.mean_probs[torch.from_numpy(labeled)].sum(1), torch.ones(len(labeled)))
    # the module learned the dynamics: far closer to them than a fresh module of the same shape
    model.eval()
    with torch.no_grad():
        out = model(src.inputs[torch.from_numpy(labeled)], return_features=True)
        target = hooks.mean_probs[torch.from_numpy(labeled)]
        torch.manual_seed(1)
        fresh = {"dynamics_module": FeatureHead(hooks.feature_dims, 3)}
        kl_trained = nn.functional.kl_div(
            hooks.predict_log_probs(out, modules), target, reduction="batchmean"
        )
        kl_fresh = nn.functional.kl_div(hooks.predict_log_probs(out, fresh), target, reduction="batchmean")
    assert kl_trained < 0.2 * kl_fresh
    view = compute_pool_view(
        model,
        src,
        unlabeled,
        labeled,
        src.labels[labeled],
        TiDAL().requirements(),
        n_classes=3,
        device=CPU,
        batch_size=32,
        hooks=hooks,
        modules=modules,
    )
    scores = view.extras["tidal_score"]
    assert scores.shape == (len(unlabeled),) and scores.std() > 1e-4  # not constant (ALScope's bug)


# -- VAAL family ---------------------------------------------------------------------------


def test_online_uncertainty_golden() -> None:
    probs = torch.tensor(
        [[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1], [0.7, 0.3, 0.0, 0.0]]
    )
    oui = online_uncertainty(probs)
    assert oui[0] == pytest.approx(0.0, abs=1e-6)
    assert oui[1] == pytest.approx(1.0)  # uniform
    assert oui[2] == pytest.approx(0.3)  # minimum variance for its top probability: 1 - 0.7
    # same top probability, the rest on one rival: more uncertain
    assert oui[1] > oui[3] > oui[2] > oui[0]
    assert float(online_uncertainty(torch.tensor([[0.45, 0.45, 0.1]]))) > 0.85


def test_vaes_fit_vectors_and_images_and_refuse_tokens() -> None:
    assert isinstance(build_vae(torch.zeros(2, 64), 8, 32, 0, 0, "vaal"), VectorVAE)
    for shape in ((1, 28, 28), (3, 32, 32), (3, 7, 9), (3, 64, 64)):
        vae = build_vae(torch.zeros(2, *shape), 8, 64, 1, 0, "vaal")
        assert isinstance(vae, ConvVAE)
        x = torch.randn(3, *shape)
        mu, logvar = vae.encode(x)
        assert mu.shape == logvar.shape == (3, 8)
        assert vae.decode(torch.randn(3, 9), x.shape).shape == x.shape
    with pytest.raises(ModelError, match="frozen text mode"):
        build_vae({"input_ids": torch.zeros(2, 5, dtype=torch.long)}, 8, 32, 0, 0, "vaal")


class _TokenSource(DataSource):
    labels = np.zeros(4, dtype=np.int64)

    def batches(self, indices: np.ndarray, **kw: Any) -> Iterator[Batch]:
        idx = torch.as_tensor(indices)
        yield Batch({"input_ids": torch.zeros(len(idx), 5, dtype=torch.long)}, torch.zeros(len(idx)), idx)

    def subset(self, indices: np.ndarray) -> DataSource:
        return self


def test_vaal_refuses_token_inputs_before_training() -> None:
    class Bag(MLP):
        def forward(self, inputs: Any, return_features: bool = False) -> BackboneOutput:
            return super().forward(inputs["input_ids"].float(), return_features)

    torch.manual_seed(0)
    model = Bag(InputSpec("vector", (5,)), 2, MLP.Params(hidden_sizes=[4]))
    with pytest.raises(ModelError, match="frozen text mode"):
        VAAL().training_hooks().bind(model, _TokenSource())


def _record_bce(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    targets: list[torch.Tensor] = []
    original = nn.functional.binary_cross_entropy_with_logits

    def recording(logits: torch.Tensor, target: torch.Tensor, *a: Any, **kw: Any) -> torch.Tensor:
        targets.append(target.detach().clone())
        return original(logits, target, *a, **kw)

    monkeypatch.setattr(nn.functional, "binary_cross_entropy_with_logits", recording)
    return targets


@pytest.mark.parametrize("name", ["vaal", "sraal"])
def test_discriminator_targets_labeled_one_unlabeled_other(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    src = blobs(n_per_class=20)
    labeled = np.arange(0, 60, 4)
    unlabeled = np.setdiff1d(np.arange(60), labeled)
    strategy = VAAL() if name == "vaal" else SRAAL()
    targets = _record_bce(monkeypatch)
    hooks = strategy.training_hooks()
    train(hooks, src, labeled, epochs=1, unlabeled=unlabeled, batch_size=32, min_steps=0)
    assert hooks.extra_iterations == 0  # 60 x 1 // 32 = 1 official iteration: no top-up
    # one batch: vae_steps x (labeled, unlabeled) "fool" terms, then the discriminator's two
    per_batch = 2 * strategy.params.vae_steps + 2 * strategy.params.adversary_steps
    assert len(targets) == per_batch
    fool, disc = targets[: 2 * strategy.params.vae_steps], targets[2 * strategy.params.vae_steps :]
    assert all(bool((t == 1).all()) for t in fool)  # the VAE wants everything to look labeled
    d_labeled, d_unlabeled = disc
    assert bool((d_labeled == 1).all())
    if name == "vaal":
        assert bool((d_unlabeled == 0).all())
    else:  # relabeled by 1 - OUI: in [0, 1], not all equal, never all 1
        assert bool((d_unlabeled >= 0).all()) and bool((d_unlabeled <= 1).all())
        assert d_unlabeled.std() > 0 and d_unlabeled.mean() < 1


def test_vaal_queries_the_least_labeled_looking() -> None:
    prob = np.array([0.9, 0.1, 0.5, 0.05, 0.8])
    view = view_with(extras={"labeled_probability": prob}, n_classes=2)
    assert sorted(VAAL().query(view, 2).tolist()) == [1, 3]


@pytest.mark.parametrize("cls", [VAAL, TAVAAL, SRAAL])
def test_vae_and_discriminator_learn_to_separate_labeled_from_unlabeled(cls: type[VAAL]) -> None:
    """Labeled: classes 0 and 1; the unlabeled pool is mostly class 2. The VAE's loss falls and
    the discriminator ends up calling labeled samples more labeled than unlabeled ones."""
    src = blobs(n_per_class=40)
    labeled = np.concatenate([np.arange(0, 30), np.arange(40, 70)])
    unlabeled = np.setdiff1d(np.arange(len(src)), labeled)
    strategy = cls()
    hooks = strategy.training_hooks()
    model, modules = train(hooks, src, labeled, epochs=12, unlabeled=unlabeled, min_steps=0)
    assert hooks.iterations == 120 * 12 // 16  # VAAL's count: 48 training batches + the top-up
    # each epoch's mean holds its top-up iterations (8 in epoch 0), so the first mean is
    # already lower than with one iteration per batch (ratio 0.56 then, 0.78-0.82 now)
    assert hooks.vae_losses[-1] < 0.9 * hooks.vae_losses[0]
    assert hooks.discriminator_losses[-1] < hooks.discriminator_losses[0]
    view = compute_pool_view(
        model,
        src,
        np.arange(len(src)),
        labeled,
        src.labels[labeled],
        strategy.requirements(),
        n_classes=3,
        device=CPU,
        batch_size=64,
        hooks=hooks,
        modules=modules,
    )
    prob = view.extras["labeled_probability"]
    # SRAAL relabels the confidently classified unlabeled samples towards "labeled"
    gap = 0.02 if cls is SRAAL else 0.1
    assert prob[torch.from_numpy(labeled)].mean() > prob[torch.from_numpy(unlabeled)].mean() + gap
    if cls is TAVAAL:
        assert modules["discriminator"].net[0].in_features == strategy.params.z_dim + 1
        assert isinstance(modules["loss_module"], FeatureHead)


def _count_steps(monkeypatch: pytest.MonkeyPatch, hooks: AdversarialHooks) -> dict[str, int]:
    """Counts the real optimiser steps of the VAE and the discriminator."""
    counts = {"vae": 0, "discriminator": 0}
    original = hooks.on_fit_start

    def start(fit: FitContext) -> None:
        original(fit)
        for name, opt in hooks._optimizers.items():
            step = opt.step

            def counted(*a: Any, _name: str = name, _step: Any = step, **kw: Any) -> Any:
                counts[_name] += 1
                return _step(*a, **kw)

            monkeypatch.setattr(opt, "step", counted)

    monkeypatch.setattr(hooks, "on_fit_start", start)
    return counts


@pytest.mark.parametrize("cls", [VAAL, TAVAAL, SRAAL])
def test_small_labeled_set_gets_the_configured_adversarial_updates(
    monkeypatch: pytest.MonkeyPatch, cls: type[VAAL]
) -> None:
    """10 labels, batch 16: one training batch per epoch, 3 in all; the top-up brings the
    VAE and the discriminator to the configured 40 iterations, spread over the epochs."""
    src = blobs(n_per_class=20)
    labeled = np.arange(0, 60, 6)
    unlabeled = np.setdiff1d(np.arange(60), labeled)
    strategy = cls({"adversarial_iterations": 40})
    hooks = strategy.training_hooks()
    counts = _count_steps(monkeypatch, hooks)
    per_epoch: list[int] = []
    end = hooks.on_epoch_end
    monkeypatch.setattr(
        hooks, "on_epoch_end", lambda e, fit: (end(e, fit), per_epoch.append(hooks.iterations))
    )
    train(hooks, src, labeled, epochs=3, unlabeled=unlabeled, min_steps=0)
    p = strategy.params
    assert hooks.iterations == 40 and hooks.extra_iterations == 40 - 3
    assert counts["vae"] == 40 * p.vae_steps and counts["discriminator"] == 40 * p.adversary_steps
    assert per_epoch == [14, 27, 40]  # ceil(40 x (e + 1) / 3): next to the classifier, not all at the end
    assert len(hooks.discriminator_losses) == 3


def test_official_iteration_count_from_pool_size_and_epochs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset, the target is VAAL's num_images x epochs // batch size over the whole pool
    (60 x 4 // 16 = 15), capped by max_adversarial_iterations; 0 keeps one per batch."""
    src = blobs(n_per_class=20)
    labeled = np.arange(0, 60, 6)
    unlabeled = np.setdiff1d(np.arange(60), labeled)
    for params, expected in (
        ({}, 15),
        ({"max_adversarial_iterations": 9}, 9),
        ({"adversarial_iterations": 0}, 4),
    ):
        hooks = VAAL(params).training_hooks()
        counts = _count_steps(monkeypatch, hooks)
        train(hooks, src, labeled, epochs=4, unlabeled=unlabeled, min_steps=0)
        assert hooks.iterations == expected and counts["discriminator"] == expected
    # the training batches count: more of them than the target means no top-up
    hooks = VAAL({"adversarial_iterations": 2}).training_hooks()
    train(hooks, src, labeled, epochs=4, unlabeled=unlabeled, min_steps=0)
    assert hooks.iterations == 4 and hooks.extra_iterations == 0


def test_top_up_lets_the_discriminator_separate_at_a_small_labeled_set() -> None:
    """12 labels of classes 0 and 1, the unlabeled pool mostly class 2, 3 training batches.
    One adversarial iteration per batch leaves the discriminator near its start (gap 0.03);
    with the top-up it calls class 2 unlabeled, and the query reads its scores."""
    src = blobs(n_per_class=40)
    labeled = np.concatenate([np.arange(0, 6), np.arange(40, 46)])
    unlabeled = np.setdiff1d(np.arange(len(src)), labeled)
    class_2 = torch.from_numpy(src.labels[unlabeled] == 2)
    gaps = {}
    for iterations in (0, 300):
        strategy = VAAL({"adversarial_iterations": iterations})
        hooks = strategy.training_hooks()
        model, modules = train(hooks, src, labeled, epochs=3, unlabeled=unlabeled, min_steps=0)
        assert hooks.iterations == max(3, iterations)
        view = compute_pool_view(
            model,
            src,
            unlabeled,
            labeled,
            src.labels[labeled],
            strategy.requirements(),
            n_classes=3,
            device=CPU,
            batch_size=64,
            hooks=hooks,
            modules=modules,
        )
        prob = view.extras["labeled_probability"]  # unlabeled classes 0 and 1 look labeled
        gaps[iterations] = float(prob[~class_2].mean() - prob[class_2].mean())
    assert gaps[0] < 0.1 and gaps[300] > 0.2
    picked = np.sort(np.asarray(strategy.query(view, 20)))
    assert np.array_equal(picked, np.sort(unlabeled[torch.topk(-prob, 20).indices.numpy()]))
    assert (src.labels[picked] == 2).mean() >= 0.9


# -- WAAL ------------------------------------------------------------------------------------


def test_waal_score_mixes_uncertainty_and_critic() -> None:
    probs = np.array([[0.98, 0.01, 0.01], [0.4, 0.3, 0.3], [0.98, 0.01, 0.01], [0.4, 0.3, 0.3]])
    critic = np.array([0.1, 0.1, 0.9, 0.9])
    assert waal_uncertainty(torch.tensor(probs))[1] < waal_uncertainty(torch.tensor(probs))[0]
    view = view_with(probs=probs, extras={"critic_score": critic})
    order = WAAL().query(view, 4).tolist()
    assert order[0] == 3  # uncertain and unlike the labeled set
    assert WAAL({"selection": 0.0}).query(view, 2).tolist() in ([1, 3], [3, 1])


def test_gradient_penalty_is_zero_for_a_unit_slope_critic() -> None:
    lin = nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.6, 0.8]]))
    gp = gradient_penalty(lin, torch.randn(5, 2), torch.randn(7, 2))
    assert float(gp.detach()) == pytest.approx(0.0, abs=1e-10)


def test_waal_critic_learns_the_distance() -> None:
    src = blobs(n_per_class=40)
    labeled = np.concatenate([np.arange(0, 30), np.arange(40, 70)])
    unlabeled = np.setdiff1d(np.arange(len(src)), labeled)
    strategy = WAAL()
    hooks = strategy.training_hooks()
    model, modules = train(hooks, src, labeled, epochs=12, unlabeled=unlabeled)
    assert hooks.critic_losses[-1] < hooks.critic_losses[0]
    assert hooks.distances[-1] > hooks.distances[0] + 0.1
    view = compute_pool_view(
        model,
        src,
        np.arange(len(src)),
        labeled,
        src.labels[labeled],
        strategy.requirements(),
        n_classes=3,
        device=CPU,
        batch_size=64,
        hooks=hooks,
        modules=modules,
    )
    critic = view.extras["critic_score"]
    assert critic[torch.from_numpy(unlabeled)].mean() > critic[torch.from_numpy(labeled)].mean() + 0.1


def test_self_trained_modules_get_no_trainer_optimiser() -> None:
    made: list[str] = []

    class Spy(WAALHooks):
        def make_optimizer(self, name: str, module: nn.Module, config: Any) -> Any:
            made.append(name)
            return None

    src = blobs(n_per_class=10)
    train(Spy(WAAL.Params()), src, np.arange(0, 30, 2), epochs=1, unlabeled=np.arange(1, 30, 2))
    assert made == []


# -- CEAL ------------------------------------------------------------------------------------


def test_ceal_pseudo_labels_confident_samples_with_a_decaying_threshold() -> None:
    probs = np.array(
        [
            [0.999, 0.0005, 0.0005],  # confident: class 0
            [0.34, 0.33, 0.33],  # the most uncertain: queried
            [0.0005, 0.999, 0.0005],  # confident: class 1
            [0.6, 0.2, 0.2],
            [0.5, 0.3, 0.2],
        ]
    )
    strategy = CEAL({"delta": 0.02, "dr": 0.015})
    assert strategy.requirements().probs
    view = view_with(probs=probs)
    assert strategy.query(view, 1).tolist() == [1]
    assert strategy.pseudo_indices.tolist() == [0, 2] and strategy.pseudo_labels.tolist() == [0, 1]
    hooks = strategy.training_hooks()
    indices, labels = hooks.pseudo_labels()  # type: ignore[misc]
    assert indices.tolist() == [0, 2] and labels.tolist() == [0, 1]
    # the next cycle's threshold, 0.02 - 0.015, is below the confident samples' entropy (~0.0086)
    assert strategy.threshold() == pytest.approx(0.005)
    strategy.query(view, 1)
    assert strategy.pseudo_indices.tolist() == []
    restored = CEAL({"delta": 0.02, "dr": 0.015})
    restored.load_state_dict(strategy.state_dict())
    assert restored.cycle == 2 and restored.state_dict() == strategy.state_dict()
    with pytest.raises(ConfigError):
        CEAL({"base": "ceal"})


def test_trainer_trains_on_pseudo_labels_without_labeling_them() -> None:
    src = blobs(n_per_class=10)
    labeled = np.array([0, 10, 20])
    seen: list[tuple[list[int], list[int]]] = []

    class Hooks(TrainingHooks):
        def pseudo_labels(self) -> tuple[np.ndarray, np.ndarray]:
            return np.array([5, 15, 10]), np.array([2, 2, 0])  # 10 is labeled: ignored

        def on_fit_start(self, fit: FitContext) -> None:
            assert fit.pseudo_indices.tolist() == [5, 15]
            assert list(fit.labeled_indices) == [0, 10, 20]

        def on_batch_end(self, batch: BatchContext) -> None:
            seen.append((batch.indices.tolist(), batch.targets.tolist()))

    targets = torch.from_numpy(src.labels).clone()
    Trainer(TrainingConfig(epochs=1, batch_size=8, device="cpu"), CPU).fit(
        mlp(), src, labeled, targets, seed=0, hooks=Hooks()
    )
    ((idx, tgt),) = seen
    got = dict(zip(idx, tgt, strict=True))
    assert got == {0: 0, 10: 1, 20: 2, 5: 2, 15: 2}
    assert torch.equal(targets, torch.from_numpy(src.labels))  # the caller's targets untouched


def test_ceal_pseudo_labels_never_reach_the_labeled_set(tmp_path: Path) -> None:
    cfg = quick(
        tmp_path,
        strategy={"name": "ceal", "params": {"delta": 1.0, "dr": 0.0}},
        cycles=2,
        training={"epochs": 15},
    )
    result = run_experiment(cfg)
    trial = result.trials[0]
    assert len(trial.labeled) == 40 + 2 * 20 == len(set(trial.labeled))
    pseudo = trial.strategy_state["pseudo_indices"]
    assert pseudo and not set(pseudo) & set(trial.labeled)
    from alscope.data.base import LoadContext
    from alscope.data.tabular import Digits

    pool = Digits().load(LoadContext(tmp_path, seed=0)).pool
    assert trial.labels == pool.labels[trial.labeled].tolist()  # the oracle's answers only


# -- each strategy end to end ----------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_BASED)
def test_each_strategy_runs_on_digits(tmp_path: Path, name: str) -> None:
    result = run_experiment(quick(tmp_path, strategy=name))
    trial = result.trials[0]
    assert [c.n_labeled for c in trial.cycles] == [40, 60]
    assert len(set(trial.labeled)) == 60
    assert 0.0 < trial.cycles[-1].metrics["accuracy"] <= 1.0


def test_registered_with_papers_aliases_and_family() -> None:
    registry = get_registry()
    for alias, name in {
        "TIDAL": "tidal",
        "LL": "learning_loss",
        "LearningLoss": "learning_loss",
        "LL4AL": "learning_loss",
        "VAAL": "vaal",
        "TAVAAL": "ta_vaal",
        "SRAAL": "sraal",
        "WAAL": "waal",
        "CEAL": "ceal",
    }.items():
        spec = registry.resolve("strategy", alias)
        assert spec.name == name and spec.paper
        assert spec.family == ("hybrid" if name == "ceal" else "model-based")


class _StopAfterFirstCycle(Progress):
    def cycle_end(self, trial: int, record: Any) -> None:
        if record.cycle == 0:
            raise KeyboardInterrupt


def test_resume_is_exact_with_a_hook_strategy(tmp_path: Path) -> None:
    """CEAL over Learning Loss: pseudo-labels (strategy state) and a loss module (hooks)
    must come back exactly after an interruption."""
    strategy = {"name": "ceal", "params": {"base": "learning_loss", "delta": 2.0, "dr": 0.5}}
    clean = run_experiment(quick(tmp_path / "clean", strategy=strategy, cycles=2, training={"epochs": 15}))
    experiment = Experiment(
        quick(tmp_path / "cut", strategy=strategy, cycles=2, training={"epochs": 15}),
        progress=_StopAfterFirstCycle(),
    )
    with pytest.raises(KeyboardInterrupt):
        experiment.run()
    assert experiment.state.trials[0].strategy_state["pseudo_indices"]
    resumed = Experiment.resume(tmp_path / "cut", experiment.state.run).run()
    a, b = clean.trials[0], resumed.trials[0]
    assert a.labeled == b.labeled
    assert a.strategy_state == b.strategy_state
    assert [c.metrics["accuracy"] for c in a.cycles] == [c.metrics["accuracy"] for c in b.cycles]


# -- temperature scaling -----------------------------------------------------------------------


def test_temperature_scaling_fixes_an_overconfident_model() -> None:
    gen = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 5, generator=gen) * 1.5
    labels = torch.multinomial(torch.softmax(true_logits, 1), 1, generator=gen).squeeze(1)
    overconfident = 4.0 * true_logits
    t = fit_temperature(overconfident[:2000], labels[:2000])
    assert t == pytest.approx(4.0, rel=0.15)

    def nll_ece(logits: torch.Tensor) -> tuple[float, float]:
        probs = torch.softmax(logits[2000:], 1)
        nll = float(nn.functional.cross_entropy(logits[2000:], labels[2000:]))
        return nll, expected_calibration_error(probs.numpy(), labels[2000:].numpy())

    before, after = nll_ece(overconfident), nll_ece(overconfident / t)
    assert after[0] < 0.7 * before[0] and after[1] < 0.5 * before[1]


def test_random_holdout_and_temperature_wrapper() -> None:
    labeled = np.arange(100, 120)
    train_part, held = random_holdout(labeled, 0.2, seed=3)
    assert len(held) == 4 and len(train_part) == 16
    assert sorted(np.concatenate([train_part, held]).tolist()) == labeled.tolist()
    assert np.array_equal(held, random_holdout(labeled, 0.2, seed=3)[1])
    assert len(random_holdout(np.array([7]), 0.5, 0)[1]) == 0
    model = mlp().eval()
    scaled = TemperatureScaled(model, 2.0)
    x = torch.randn(4, 8)
    out, ref = scaled(x, return_features=True), model(x, return_features=True)
    assert torch.allclose(out.logits, ref.logits / 2) and torch.equal(out.embedding, ref.embedding)
    assert scaled.classifier is model.classifier and scaled.embedding_dim == 16


def test_experiment_calibrates_before_scoring(tmp_path: Path) -> None:
    cfg = quick(tmp_path, training={"calibrate": "temperature", "calibration_fraction": 0.25, "epochs": 30})
    result = run_experiment(cfg)
    for record in result.trials[0].cycles:
        assert record.metrics["temperature"] > 0
    assert result.trials[0].cycles[0].metrics["temperature"] != 1.0


# -- PURE / LURE -------------------------------------------------------------------------------


def test_bias_correction_weights_hand_example() -> None:
    # N = 5; m = 1 uniform (q = 1/5), m = 2 q = 0.5, m = 3 q = 0.25; M = 3
    q = np.array([0.2, 0.5, 0.25])
    lure = bias_correction_weights(q, 5, "lure")
    # v_m = 1 + (N-M)/(N-m) (1/((N-m+1) q_m) - 1)
    assert lure == pytest.approx([1.0, 1 + (2 / 3) * (1 / 2 - 1), 1 + (2 / 2) * (4 / 3 - 1)])
    pure = bias_correction_weights(q, 5, "pure")
    # 1/(N q_t) + (M - t)/N
    assert pure == pytest.approx([1.0 + 2 / 5, 0.4 + 1 / 5, 0.8])
    assert bias_correction_weights(uniform_probabilities(4, 10), 10, "lure") == pytest.approx(np.ones(4))
    with pytest.raises(ValueError):
        bias_correction_weights(np.array([0.0]), 5, "lure")


@pytest.mark.parametrize("method", ["pure", "lure"])
def test_bias_corrected_risk_is_unbiased_exactly(method: str) -> None:
    """Enumerate every ordered draw of M = 3 from N = 6 under a non-uniform proposal."""
    losses = np.array([0.1, 2.0, 0.5, 1.5, 3.0, 0.2])
    weights = np.array([1.0, 4.0, 2.0, 0.5, 3.0, 1.0])
    n, m_total = len(losses), 3
    expected_risk = 0.0
    for order in itertools.permutations(range(n), m_total):
        q = sequential_probabilities(weights, np.array(order))
        v = bias_correction_weights(q, n, method)  # type: ignore[arg-type]
        expected_risk += np.prod(q) * np.mean(v * losses[list(order)])
    assert expected_risk == pytest.approx(losses.mean(), rel=1e-9)


def test_sequential_probabilities() -> None:
    assert sequential_probabilities(np.array([1.0, 2.0, 3.0, 4.0]), np.array([3, 2])) == pytest.approx(
        [0.4, 0.5]
    )
    # once only zero weights remain, uniform over what is left
    assert sequential_probabilities(torch.tensor([0.0, 0.0, 1.0]), np.array([2, 0, 1])) == pytest.approx(
        [1.0, 0.5, 1.0]
    )
    assert sequential_probabilities(np.array([0.0, 1.0]), np.array([0])) == pytest.approx([0.0])


def test_bias_correction_refuses_a_deterministic_strategy(tmp_path: Path) -> None:
    assert not has_proposal(LearningLoss())
    with pytest.raises(ConfigError, match="stochastic strategy"):
        run_experiment(quick(tmp_path, training={"bias_correction": "lure"}))


class SoftmaxEntropy(Strategy):
    """A stochastic test strategy: draws its batch from p ∝ exp(entropy / 0.1)."""

    def requirements(self) -> Requirements:
        return Requirements(probs=True)

    def proposal(self, view: PoolView) -> torch.Tensor:
        probs = view.require("probs", "softmax_entropy").double()
        ent = -(torch.special.xlogy(probs, probs)).sum(1)
        return torch.exp((ent - ent.max()) / 0.1)

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        w = self.proposal(view).numpy()
        keys = np.log(np.clip(w, 1e-300, None)) + rng.gumbel(size=len(w))
        return view.unlabeled[top_k(keys, budget, rng)]


class _StochasticPlugin:
    @hookimpl
    def alscope_register_strategies(self) -> list:
        return [StrategySpec("softmax_entropy", f"{__name__}:SoftmaxEntropy", "test", paper="test")]


def test_lure_records_acquisition_probabilities_and_weights_losses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry(plugins={"test": _StochasticPlugin()})
    weights_seen: list[torch.Tensor | None] = []
    original = Trainer.fit

    def spy(self: Trainer, *args: Any, **kw: Any) -> Any:
        weights_seen.append(kw.get("sample_weights"))
        return original(self, *args, **kw)

    monkeypatch.setattr(Trainer, "fit", spy)
    cfg = quick(tmp_path, strategy="softmax_entropy", cycles=2, training={"bias_correction": "lure"})
    trial = run_experiment(cfg, registry=registry).trials[0]
    from alscope.data.base import LoadContext
    from alscope.data.tabular import Digits

    n_pool = len(Digits().load(LoadContext(tmp_path, seed=0)).pool)
    q = np.asarray(trial.acquisition_probs)
    assert len(q) == len(trial.labeled) == 80
    assert q[:40] == pytest.approx(1 / (n_pool - np.arange(40)))
    assert np.all((q[40:] > 0) & (q[40:] <= 1)) and not np.allclose(q[40:], q[40])
    last = weights_seen[-1]
    assert last is not None
    expected = bias_correction_weights(q, n_pool, "lure")
    assert last[torch.as_tensor(trial.labeled)].numpy() == pytest.approx(expected, rel=1e-5)
    assert last[torch.as_tensor(trial.labeled[:40])].numpy() == pytest.approx(np.ones(40))


# -- command line ------------------------------------------------------------------------------


def test_cli_training_options(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["run", "--results-dir", str(tmp_path), "--no-track", "--json", "--cycle", "0", "--epochs", "1"]
    result = runner.invoke(
        app, [*args, "--strategy", "LL", "--epoch-loss", "7", "--calibrate", "temperature"]
    )
    assert result.exit_code == 0, result.output
    import json

    config = json.loads(result.stdout)["config"]  # stderr holds the under-fit warning of 1 epoch
    assert config["strategy"]["params"] == {"epoch_loss": 7}
    assert config["training"]["calibrate"] == "temperature"
    refused = runner.invoke(app, [*args, "--strategy", "entropy", "--bias-correction", "lure"])
    assert refused.exit_code == 1 and "stochastic strategy" in refused.output


def test_power_strategies_work_with_lure(tmp_path):
    """power_* expose their proposal, so the bias-corrected loss accepts them."""
    from alscope import ExperimentConfig, run_experiment

    cfg = ExperimentConfig(
        strategy="power_entropy",
        cycles=2,
        n_query=10,
        training={"epochs": 3, "bias_correction": "lure"},
        tracking={"enabled": False},
        results_dir=tmp_path,
    )
    result = run_experiment(cfg)
    assert len(result.trials[0].labeled) == 40
