"""Engine parts: metrics, MC dropout, batched inference, the trainer and training hooks."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import alscope.engine.trainer as trainer_module
from alscope.config import TrainingConfig
from alscope.data.base import InputSpec, TensorSource
from alscope.engine.hooks import BatchContext, FitContext, TrainingHooks
from alscope.engine.inference import compute_pool_view, infer
from alscope.engine.mc_dropout import dropout_modules, mc_dropout
from alscope.engine.metrics import aubc, classification_metrics, expected_calibration_error
from alscope.engine.trainer import (
    Trainer,
    amp_enabled,
    build_optimizer,
    build_scheduler,
)
from alscope.errors import ModelError
from alscope.models.base import Backbone, BackboneOutput
from alscope.models.mlp import MLP
from alscope.strategies.base import Requirements

CPU = torch.device("cpu")


# -- metrics ---------------------------------------------------------------------------------

PROBS = np.array(
    [
        [0.7, 0.2, 0.1],  # label 0, right
        [0.1, 0.8, 0.1],  # label 1, right
        [0.6, 0.3, 0.1],  # label 1, wrong (predicts 0)
        [0.2, 0.2, 0.6],  # label 2, right
        [0.5, 0.4, 0.1],  # label 0, right
    ]
)
LABELS = np.array([0, 1, 1, 2, 0])


def test_classification_metrics_by_hand() -> None:
    m = classification_metrics(PROBS, LABELS, n_classes=3)
    assert m["accuracy"] == pytest.approx(4 / 5)
    # recall per class: 2/2, 1/2, 1/1
    assert m["class_accuracy/0"] == pytest.approx(1.0)
    assert m["class_accuracy/1"] == pytest.approx(0.5)
    assert m["class_accuracy/2"] == pytest.approx(1.0)
    assert m["balanced_accuracy"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert m["nll"] == pytest.approx(-np.mean(np.log([0.7, 0.8, 0.3, 0.6, 0.5])))
    # F1: class 0 p=2/3 r=1 -> 0.8; class 1 p=1 r=1/2 -> 2/3; class 2 -> 1
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 1) / 3)
    assert set(m) == {
        "accuracy",
        "macro_f1",
        "balanced_accuracy",
        "nll",
        "ece",
        "class_accuracy/0",
        "class_accuracy/1",
        "class_accuracy/2",
    }
    assert all(isinstance(v, float) for v in m.values())


def test_balanced_accuracy_with_imbalanced_labels() -> None:
    labels = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    probs = np.tile([0.9, 0.1], (10, 1))  # always predicts the majority class
    m = classification_metrics(probs, labels, n_classes=2)
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["balanced_accuracy"] == pytest.approx(0.5)
    assert m["class_accuracy/0"] == pytest.approx(1.0)
    assert m["class_accuracy/1"] == pytest.approx(0.0)


def test_per_class_keys_only_for_present_classes() -> None:
    labels = np.array([0, 2, 2])
    probs = np.array([[0.6, 0.1, 0.2, 0.1], [0.1, 0.1, 0.7, 0.1], [0.5, 0.1, 0.3, 0.1]])
    m = classification_metrics(probs, labels, n_classes=4)
    per_class = {k: v for k, v in m.items() if k.startswith("class_accuracy/")}
    assert per_class == {"class_accuracy/0": 1.0, "class_accuracy/2": 0.5}


def test_nll_of_a_zero_probability_is_finite() -> None:
    m = classification_metrics(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([1, 0]), 2)
    assert math.isfinite(m["nll"])
    assert m["nll"] == pytest.approx(-np.log(1e-12))
    assert m["accuracy"] == 0.0


def test_ece_of_a_calibrated_model_is_zero() -> None:
    # confidence 0.8 everywhere and right 8 times out of 10
    probs = np.tile([0.8, 0.2], (10, 1))
    labels = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)
    # two calibrated bins: 0.6 right 3/5 and 1.0 right 5/5
    probs = np.vstack([np.tile([0.6, 0.4], (5, 1)), np.tile([0.0, 1.0], (5, 1))])
    labels = np.array([0, 0, 0, 1, 1] + [1] * 5)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)
    assert classification_metrics(probs, labels, 2)["ece"] == pytest.approx(0.0, abs=1e-12)


def test_ece_of_an_over_confident_model() -> None:
    # 4 samples at 0.95 with 1 right: |0.25 - 0.95| = 0.7, weight 0.4
    # 6 samples at 0.65 with 3 right: |0.5 - 0.65| = 0.15, weight 0.6
    probs = np.vstack([np.tile([0.95, 0.05], (4, 1)), np.tile([0.65, 0.35], (6, 1))])
    labels = np.array([0, 1, 1, 1, 0, 0, 0, 1, 1, 1])
    expected = 0.4 * 0.7 + 0.6 * 0.15
    assert expected_calibration_error(probs, labels) == pytest.approx(expected)
    assert classification_metrics(probs, labels, 2)["ece"] == pytest.approx(expected)
    # the same, all in one bin: |0.5 - 0.9| = 0.4
    probs = np.tile([0.9, 0.1], (4, 1))
    assert expected_calibration_error(probs, np.array([0, 0, 1, 1])) == pytest.approx(0.4)


def test_aubc() -> None:
    assert aubc([10, 20, 40, 80], [0.7] * 4) == pytest.approx(0.7)
    assert aubc([0, 1, 2, 3, 4], [0.0, 0.25, 0.5, 0.75, 1.0]) == pytest.approx(0.5)
    assert aubc([100, 200], [0.0, 1.0]) == pytest.approx(0.5)
    # uneven spacing: trapezoids of 5 and 20 over a range of 30
    assert aubc([0, 10, 30], [0.0, 1.0, 1.0]) == pytest.approx(25 / 30)
    assert aubc([5], [0.3]) == pytest.approx(0.3)
    assert aubc(np.array([5, 5]), np.array([0.2, 0.4])) == pytest.approx(0.3)
    assert math.isnan(aubc([], []))


# -- MC dropout ------------------------------------------------------------------------------


class SmallNet(Backbone):
    """Linear -> BatchNorm -> ReLU -> Dropout -> Linear."""

    def __init__(self, dropout: float = 0.5, d: int = 4, c: int = 3) -> None:
        super().__init__(InputSpec("vector", (d,)), c, None)
        self.body = nn.Sequential(nn.Linear(d, 16), nn.BatchNorm1d(16), nn.ReLU())
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(16, c)

    @property
    def bn(self) -> nn.BatchNorm1d:
        return self.body[1]

    def forward(self, inputs: torch.Tensor, return_features: bool = False) -> BackboneOutput:
        h = self.drop(self.body(inputs))
        return BackboneOutput(self.classifier(h), h, [h] if return_features else None)


def test_mc_dropout_keeps_batchnorm_in_eval_mode() -> None:
    torch.manual_seed(0)
    model = SmallNet()
    model.train()
    model(torch.randn(32, 4))  # give BatchNorm non-trivial running stats
    mean, var = model.bn.running_mean.clone(), model.bn.running_var.clone()
    batches = model.bn.num_batches_tracked.clone()
    x = torch.randn(8, 4)
    with mc_dropout(model) as m:
        assert m is model
        assert model.training is False
        assert model.bn.training is False
        assert model.drop.training is True
        with torch.no_grad():
            a, b = model(x).logits, model(x).logits
    assert not torch.allclose(a, b)  # dropout samples
    assert torch.equal(model.bn.running_mean, mean)
    assert torch.equal(model.bn.running_var, var)
    assert torch.equal(model.bn.num_batches_tracked, batches)
    # modes restored
    assert model.training is True
    assert model.bn.training is True
    assert model.drop.training is True


def test_mc_dropout_restores_eval_mode() -> None:
    model = SmallNet().eval()
    with mc_dropout(model):
        assert model.drop.training is True
    assert all(not m.training for m in model.modules())


def test_mc_dropout_restores_mode_after_an_error() -> None:
    model = SmallNet().eval()
    with pytest.raises(RuntimeError, match="inside"), mc_dropout(model):
        raise RuntimeError("inside")
    assert all(not m.training for m in model.modules())


def test_mc_dropout_restores_each_modules_mode() -> None:
    model = SmallNet().train()
    model.bn.eval()  # frozen BatchNorm while fine-tuning
    with mc_dropout(model):
        pass
    assert model.training is True
    assert model.bn.training is False


@pytest.mark.parametrize("p", [None, 0.0])
def test_mc_dropout_needs_dropout(p: float | None) -> None:
    layers: list[nn.Module] = [nn.Linear(4, 4), nn.BatchNorm1d(4)]
    if p is not None:
        layers.append(nn.Dropout(p))
    model = nn.Sequential(*layers)
    assert dropout_modules(model) == []
    with pytest.raises(ModelError) as info, mc_dropout(model, who="strategy 'bald'"):
        pass
    msg = str(info.value)
    assert "dropout" in msg
    assert "strategy 'bald'" in msg
    assert "Sequential" in msg


def test_dropout_modules_finds_every_kind() -> None:
    model = nn.Sequential(nn.Dropout(0.1), nn.Dropout2d(0.2), nn.AlphaDropout(0.3), nn.Dropout(0.0))
    assert [m.p for m in dropout_modules(model)] == [0.1, 0.2, 0.3]


# -- inference ---------------------------------------------------------------------------------


def blobs(n_per_class: int = 30, d: int = 6, c: int = 3, seed: int = 0) -> TensorSource:
    """Well separated Gaussian blobs."""
    gen = torch.Generator().manual_seed(seed)
    centers = torch.zeros(c, d)
    for k in range(c):
        centers[k, k % d] = 4.0
    labels = torch.arange(c).repeat_interleave(n_per_class)
    x = centers[labels] + torch.randn(len(labels), d, generator=gen)
    return TensorSource(x, labels.numpy())


def mlp(d: int = 6, c: int = 3, seed: int = 0, **params: Any) -> MLP:
    torch.manual_seed(seed)
    params.setdefault("hidden_sizes", [32])
    return MLP.build(InputSpec("vector", (d,)), c, params)  # type: ignore[return-value]


def test_infer_outputs() -> None:
    src = blobs()
    model = mlp().train()
    idx = np.array([3, 50, 10, 89, 0])
    out = infer(model, src, idx, device=CPU, batch_size=2, probs=True, logits=True, embeddings=True)
    assert set(out) == {"probs", "logits", "embeddings"}
    assert out["probs"].shape == (5, 3)
    assert out["logits"].shape == (5, 3)
    assert out["embeddings"].shape == (5, 32)
    assert all(v.dtype == torch.float32 for v in out.values())
    assert torch.allclose(out["probs"], torch.softmax(out["logits"], 1))
    assert model.training is False  # inference runs in eval mode
    with torch.no_grad():
        direct = model(src.inputs[torch.from_numpy(idx)])
    assert torch.allclose(out["logits"], direct.logits, atol=1e-6)  # aligned with idx
    assert torch.allclose(out["embeddings"], direct.embedding, atol=1e-6)


@pytest.mark.parametrize("batch_size", [4, 1000])  # one pass per sample vs. replicated inputs
def test_infer_mc_samples(batch_size: int) -> None:
    src = blobs(n_per_class=4)
    n = len(src)
    model = mlp(dropout=0.5)

    def run() -> torch.Tensor:
        torch.manual_seed(0)
        return infer(model, src, np.arange(n), device=CPU, batch_size=batch_size, mc_samples=7)["mc_probs"]

    mc = run()
    assert mc.shape == (n, 7, 3)
    assert torch.allclose(mc.sum(-1), torch.ones(n, 7), atol=1e-5)
    assert (mc >= 0).all()
    # the K samples differ
    assert (mc.std(dim=1) > 1e-4).any(dim=1).all()
    assert torch.equal(mc, run())


class OneHotNet(Backbone):
    """Logits are the one-hot input scaled up, plus a small dropout perturbation: every MC
    sample of row i predicts the class that row i encodes."""

    def __init__(self, c: int = 4) -> None:
        super().__init__(InputSpec("vector", (c,)), c, None)
        self.drop = nn.Dropout(0.5)
        self.classifier = nn.Linear(c, c)

    def forward(self, inputs: torch.Tensor, return_features: bool = False) -> BackboneOutput:
        noise = self.drop(torch.ones_like(inputs)) * 0.3
        return BackboneOutput(10 * inputs + noise, inputs)


@pytest.mark.parametrize("batch_size", [3, 5, 64])
def test_infer_mc_samples_stay_with_their_rows(batch_size: int) -> None:
    labels = np.array([2, 0, 3, 1, 1, 2, 0])
    src = TensorSource(torch.eye(4)[torch.from_numpy(labels)], labels)
    torch.manual_seed(0)
    mc = infer(OneHotNet(), src, np.arange(7), device=CPU, batch_size=batch_size, mc_samples=6)["mc_probs"]
    assert mc.shape == (7, 6, 4)
    assert (mc.argmax(-1) == torch.from_numpy(labels)[:, None]).all()
    assert (mc.std(dim=1) > 0).any()


def test_infer_mc_does_not_touch_batchnorm_stats() -> None:
    src = blobs(n_per_class=5)
    model = mlp(batch_norm=True, dropout=0.3)
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm1d))
    before = (bn.running_mean.clone(), bn.running_var.clone())
    infer(model, src, np.arange(len(src)), device=CPU, batch_size=8, mc_samples=4, probs=True)
    assert torch.equal(bn.running_mean, before[0])
    assert torch.equal(bn.running_var, before[1])


def test_infer_mc_without_dropout_is_a_model_error() -> None:
    model = mlp(dropout=0.0)
    with pytest.raises(ModelError, match="strategy 'bald'"):
        infer(model, blobs(4), np.arange(4), device=CPU, batch_size=4, mc_samples=2, who="strategy 'bald'")


# -- trainer -------------------------------------------------------------------------------------


def config(**kw: Any) -> TrainingConfig:
    base: dict[str, Any] = {"epochs": 15, "batch_size": 16, "lr": 1e-2, "device": "cpu"}
    base.update(kw)
    return TrainingConfig(**base)


def fit(
    model: Backbone, src: TensorSource, labeled: np.ndarray, cfg: TrainingConfig, seed: int = 0, **kw: Any
) -> Any:
    targets = torch.from_numpy(src.labels)
    return Trainer(cfg, CPU).fit(model, src, labeled, targets, seed=seed, **kw)


def accuracy(model: Backbone, src: TensorSource, idx: np.ndarray) -> float:
    probs = infer(model, src, idx, device=CPU, batch_size=256, probs=True)["probs"]
    return float((probs.argmax(1).numpy() == src.labels[idx]).mean())


def test_trainer_learns_separable_blobs() -> None:
    src = blobs()
    labeled = np.arange(0, len(src), 2)
    model = mlp()
    assert accuracy(model, src, labeled) < 0.9
    epochs: list[tuple[int, float]] = []
    result = fit(model, src, labeled, config(), on_epoch=lambda e, loss: epochs.append((e, loss)))
    assert accuracy(model, src, labeled) > 0.9
    assert result.epochs == 15
    assert result.train_time > 0
    assert [e for e, _ in epochs] == list(range(15))
    assert result.final_loss == pytest.approx(epochs[-1][1])
    assert epochs[-1][1] < epochs[0][1]


def test_trainer_uses_only_the_labeled_targets() -> None:
    # every unlabeled sample carries a poisoned target that must never be read
    src = blobs()
    labeled = np.arange(0, len(src), 3)
    targets = torch.full((len(src),), 99, dtype=torch.int64)  # out of range: an error if read
    targets[labeled] = torch.from_numpy(src.labels[labeled])
    model = mlp()
    Trainer(config(epochs=5), CPU).fit(model, src, labeled, targets, seed=0)


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_same_seed_same_weights() -> None:
    src = blobs()
    labeled = np.arange(40)
    a, b, c = mlp(seed=1), mlp(seed=1), mlp(seed=1)
    fit(a, src, labeled, config(epochs=3), seed=7)
    fit(b, src, labeled, config(epochs=3), seed=7)
    fit(c, src, labeled, config(epochs=3), seed=8)
    sa, sb, sc = state(a), state(b), state(c)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


@pytest.fixture
def built_optimizers(monkeypatch: pytest.MonkeyPatch) -> list[torch.optim.Optimizer]:
    """Every optimiser the trainer builds."""
    made: list[torch.optim.Optimizer] = []
    original = trainer_module.build_optimizer

    def recording(params: Any, cfg: TrainingConfig) -> torch.optim.Optimizer:
        opt = original(params, cfg)
        made.append(opt)
        return opt

    monkeypatch.setattr(trainer_module, "build_optimizer", recording)
    return made


@pytest.mark.parametrize(
    ("name", "cls"),
    [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)],
)
def test_each_optimizer_trains(name: str, cls: type, built_optimizers: list[torch.optim.Optimizer]) -> None:
    src = blobs()
    model = mlp()
    before = state(model)
    cfg = config(optimizer=name, lr=0.05 if name == "sgd" else 1e-2, weight_decay=1e-4, epochs=8)
    fit(model, src, np.arange(len(src)), cfg)
    assert len(built_optimizers) == 1
    (opt,) = built_optimizers
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert group["weight_decay"] == pytest.approx(1e-4)
    if name == "sgd":
        assert group["momentum"] == pytest.approx(0.9)
    assert {id(p) for p in group["params"]} == {id(p) for p in model.parameters()}
    assert any(not torch.equal(before[k], v) for k, v in state(model).items())
    assert accuracy(model, src, np.arange(len(src))) > 0.9


@pytest.mark.parametrize(
    ("kw", "expected_lr"),
    [
        ({"scheduler": "none"}, 0.1),
        ({"scheduler": "multistep", "milestones": [2, 4], "gamma": 0.1}, 0.1 * 0.1 * 0.1),
        ({"scheduler": "multistep", "milestones": [3], "gamma": 0.5}, 0.05),
        ({"scheduler": "multistep", "milestones": [], "gamma": 0.5}, 0.1),
        ({"scheduler": "cosine"}, 0.0),
    ],
)
def test_scheduler_lr_after_fit(
    kw: dict[str, Any], expected_lr: float, built_optimizers: list[torch.optim.Optimizer]
) -> None:
    src = blobs(n_per_class=5)
    fit(mlp(), src, np.arange(len(src)), config(epochs=5, lr=0.1, optimizer="sgd", **kw))
    (opt,) = built_optimizers
    assert opt.param_groups[0]["lr"] == pytest.approx(expected_lr, abs=1e-12)


def test_cosine_schedule_midway() -> None:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, config(epochs=4, scheduler="cosine", lr=1.0))
    assert isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR)
    lrs = []
    for _ in range(4):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    expected = [0.5 * (1 + math.cos(math.pi * t / 4)) for t in range(1, 5)]
    assert lrs == pytest.approx(expected, abs=1e-9)
    assert build_scheduler(opt, config(scheduler="none")) is None


def test_build_optimizer_skips_frozen_parameters() -> None:
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2), requires_grad=False)
    opt = build_optimizer(iter([a, b]), config(optimizer="adamw"))
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.param_groups[0]["params"] == [a]


def test_amp_enabled() -> None:
    assert amp_enabled(config(), CPU) is False
    assert amp_enabled(config(amp=True), CPU) is False
    assert amp_enabled(config(), torch.device("cuda")) is True
    assert amp_enabled(config(amp=False), torch.device("cuda")) is False


def test_grad_clip_bounds_each_step() -> None:
    src = blobs(n_per_class=4)
    model = mlp()
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    cfg = config(epochs=1, batch_size=len(src), optimizer="sgd", momentum=0.0, lr=1.0, grad_clip=1e-3)
    fit(model, src, np.arange(len(src)), cfg)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert 0 < float((after - before).norm()) <= 1e-3 + 1e-6


def test_a_tail_batch_of_one_is_dropped_for_batchnorm() -> None:
    src = blobs(n_per_class=6)
    labeled = np.arange(17)  # 17 = 2 x 8 + 1: a batch of one would break BatchNorm
    seen: list[int] = []

    class Count(TrainingHooks):
        def on_batch_end(self, batch: BatchContext) -> None:
            seen.append(len(batch.indices))

    fit(mlp(batch_norm=True), src, labeled, config(epochs=2, batch_size=8), hooks=Count())
    assert seen == [8, 8, 8, 8]


# -- training hooks ----------------------------------------------------------------------------


class LossPrediction(TrainingHooks):
    """A Learning-Loss-like strategy's hooks: a linear module predicts each sample's loss
    from the detached penultimate features."""

    wants_features = True

    def __init__(self, dim: int, labels: np.ndarray | None = None) -> None:
        self.dim, self.labels = dim, labels
        self.batches: list[tuple[int, list[int]]] = []
        self.feature_counts: list[int] = []
        self.epoch_losses: list[float] = []
        self._sum, self._count = 0.0, 0
        self.fit_starts: list[FitContext] = []
        self.optimizer_calls: list[str] = []

    def modules(self) -> dict[str, nn.Module]:
        torch.manual_seed(123)
        return {"lossnet": nn.Linear(self.dim, 1)}

    def make_optimizer(self, name: str, module: nn.Module, config: TrainingConfig) -> Any:
        self.optimizer_calls.append(name)
        return torch.optim.Adam(module.parameters(), lr=5e-2)

    def on_fit_start(self, fit: FitContext) -> None:
        self.fit_starts.append(fit)

    def predict(self, features: torch.Tensor, modules: dict[str, nn.Module]) -> torch.Tensor:
        return modules["lossnet"](features.detach()).squeeze(1)

    def extra_loss(self, batch: BatchContext) -> torch.Tensor:
        assert batch.output.features is not None
        self.feature_counts.append(len(batch.output.features))
        pred = self.predict(batch.output.features[-1], batch.fit.modules)
        loss = nn.functional.mse_loss(pred, batch.per_sample_loss.detach())
        self._sum += float(loss.detach()) * len(batch.indices)
        self._count += len(batch.indices)
        return loss

    def on_batch_end(self, batch: BatchContext) -> None:
        assert batch.per_sample_loss.shape == (len(batch.indices),)
        assert set(batch.indices.tolist()) <= set(np.asarray(batch.fit.labeled_indices).tolist())
        if self.labels is not None:
            assert batch.targets.tolist() == self.labels[batch.indices.numpy()].tolist()
        self.batches.append((batch.epoch, batch.indices.tolist()))

    def on_epoch_end(self, epoch: int, fit: FitContext) -> None:
        self.epoch_losses.append(self._sum / max(self._count, 1))
        self._sum, self._count = 0.0, 0

    def pool_outputs(self, output: BackboneOutput, modules: dict[str, nn.Module]) -> dict:
        assert output.features is not None
        return {"predicted_loss": self.predict(output.features[-1], modules)}


def test_training_hooks_train_a_separate_module() -> None:
    src = blobs()
    labeled = np.arange(0, len(src), 2)  # 45 samples
    hooks = LossPrediction(dim=32, labels=src.labels)
    modules = hooks.modules()
    lossnet = modules["lossnet"]
    before = lossnet.weight.detach().clone()
    model = mlp()
    cfg = config(epochs=12, batch_size=8)
    fit(model, src, labeled, cfg, hooks=hooks, modules=modules)

    # the fit saw the modules that were passed in
    assert len(hooks.fit_starts) == 1
    assert hooks.fit_starts[0].modules["lossnet"] is lossnet
    assert hooks.fit_starts[0].epochs == 12
    # its own optimiser, from make_optimizer
    assert hooks.optimizer_calls == ["lossnet"]
    assert not torch.equal(lossnet.weight, before)
    assert all(id(p) not in {id(q) for q in model.parameters()} for p in lossnet.parameters())
    # features were computed: one per hidden layer
    assert hooks.feature_counts and set(hooks.feature_counts) == {1}
    # every labeled index, exactly once per epoch, nothing else
    assert len(hooks.epoch_losses) == 12
    for epoch in range(12):
        seen = [i for e, idx in hooks.batches if e == epoch for i in idx]
        assert sorted(seen) == labeled.tolist(), epoch
    # the loss predictor learns
    assert hooks.epoch_losses[-1] < 0.5 * hooks.epoch_losses[0]
    assert accuracy(model, src, labeled) > 0.9


def test_training_hook_batches_carry_targets_and_indices() -> None:
    src = blobs()
    labeled = np.array([1, 5, 33, 34, 60, 61, 62, 88])
    records: list[tuple[list[int], list[int], int]] = []

    class Record(TrainingHooks):
        def on_batch_end(self, batch: BatchContext) -> None:
            assert batch.output.features is None  # not asked for
            assert batch.output.logits.shape == (len(batch.indices), 3)
            records.append((batch.indices.tolist(), batch.targets.tolist(), batch.step))

    fit(mlp(), src, labeled, config(epochs=2, batch_size=3), hooks=Record())
    steps = [s for _, _, s in records]
    assert steps == list(range(len(records)))
    for idx, tgt, _ in records:
        assert set(idx) <= set(labeled.tolist())
        assert tgt == src.labels[idx].tolist()


def test_default_hook_modules_are_built_by_the_trainer() -> None:
    hooks = LossPrediction(dim=32)
    fit(mlp(), blobs(), np.arange(20), config(epochs=1, batch_size=8), hooks=hooks)
    (ctx,) = hooks.fit_starts
    assert set(ctx.modules) == {"lossnet"}
    assert isinstance(ctx.modules["lossnet"], nn.Linear)


def test_hook_modules_use_the_backbone_recipe_by_default() -> None:
    class Plain(LossPrediction):
        def make_optimizer(self, name: str, module: nn.Module, config: TrainingConfig) -> Any:
            return None

    src = blobs(n_per_class=5)
    hooks = Plain(dim=32)
    modules = hooks.modules()
    before = modules["lossnet"].weight.detach().clone()
    made: list[torch.optim.Optimizer] = []
    original = trainer_module.build_optimizer
    try:
        trainer_module.build_optimizer = lambda p, c: made.append(original(p, c)) or made[-1]
        fit(
            mlp(),
            src,
            np.arange(len(src)),
            config(epochs=3, optimizer="sgd", scheduler="multistep", milestones=[1], lr=0.1),
            hooks=hooks,
            modules=modules,
        )
    finally:
        trainer_module.build_optimizer = original
    assert len(made) == 2
    assert all(isinstance(o, torch.optim.SGD) for o in made)
    assert {id(p) for p in made[1].param_groups[0]["params"]} == {
        id(p) for p in modules["lossnet"].parameters()
    }
    # the extra module's optimiser follows the schedule too
    assert made[1].param_groups[0]["lr"] == pytest.approx(0.01)
    assert not torch.equal(modules["lossnet"].weight, before)


def test_pool_outputs_reach_the_view() -> None:
    src = blobs()
    labeled = np.arange(0, len(src), 3)
    unlabeled = np.setdiff1d(np.arange(len(src)), labeled)
    hooks = LossPrediction(dim=32, labels=src.labels)
    modules = hooks.modules()
    model = mlp()
    fit(model, src, labeled, config(epochs=3, batch_size=8), hooks=hooks, modules=modules)

    view = compute_pool_view(
        model,
        src,
        unlabeled,
        labeled,
        src.labels[labeled],
        Requirements(extra_outputs=("predicted_loss",)),
        n_classes=3,
        device=CPU,
        batch_size=16,
        hooks=hooks,
        modules=modules,
        strategy="ll",
    )
    pred = view.extras["predicted_loss"]
    assert set(view.extras) == {"predicted_loss"}
    assert pred.shape == (len(unlabeled),)
    assert view.probs is None and view.embeddings is None and view.mc_probs is None
    assert view.model is None
    np.testing.assert_array_equal(view.unlabeled, unlabeled)
    # the values are the loss module on each unlabeled sample, in eval mode
    model.eval()
    with torch.no_grad():
        out = model(src.inputs[torch.from_numpy(unlabeled)], return_features=True)
        expected = modules["lossnet"](out.features[-1]).squeeze(1)
    assert torch.allclose(pred, expected, atol=1e-5)
    assert view.require("predicted_loss", "ll") is pred


def test_missing_pool_output_names_the_strategy() -> None:
    src = blobs(n_per_class=4)
    hooks = LossPrediction(dim=32)
    with pytest.raises(KeyError, match="learning_loss"):
        compute_pool_view(
            mlp(),
            src,
            np.arange(6),
            np.arange(6, 12),
            src.labels[6:],
            Requirements(extra_outputs=("nope",)),
            n_classes=3,
            device=CPU,
            batch_size=8,
            hooks=hooks,
            modules=hooks.modules(),
            strategy="learning_loss",
        )


def test_compute_pool_view_requirements() -> None:
    src = blobs(n_per_class=5)
    labeled, unlabeled = np.arange(5), np.arange(5, 15)
    model = mlp()
    view = compute_pool_view(
        model,
        src,
        unlabeled,
        labeled,
        src.labels[labeled],
        Requirements(
            probs=True, embeddings=True, labeled_embeddings=True, labeled_probs=True, mc_samples=3, model=True
        ),
        n_classes=3,
        device=CPU,
        batch_size=4,
    )
    assert view.probs.shape == (10, 3)
    assert view.embeddings.shape == (10, 32)
    assert view.mc_probs.shape == (10, 3, 3)
    assert view.labeled_embeddings.shape == (5, 32)
    assert view.labeled_probs.shape == (5, 3)
    assert view.model is model
    assert view.n_classes == 3
    assert view.extras == {}
    empty = compute_pool_view(
        model,
        src,
        unlabeled,
        labeled,
        src.labels[labeled],
        Requirements(),
        n_classes=3,
        device=CPU,
        batch_size=4,
    )
    assert empty.probs is None and empty.model is None


def test_consistent_mc_dropout_shares_masks_across_rows():
    """Sample k is one sub-network: two copies of the same input get identical k-th
    predictions, while different k differ; independent masks make the copies differ."""
    from alscope.engine.inference import infer
    from alscope.models.mlp import MLP

    torch.manual_seed(0)
    model = MLP.build(InputSpec("vector", (8,)), 3, {"hidden_sizes": [32], "dropout": 0.5})
    x = torch.randn(1, 8).repeat(6, 1)  # six copies of one sample
    source = TensorSource(x, np.zeros(6, dtype=np.int64))
    idx = np.arange(6)
    for batch_size in (4, 64):  # split batches and replicated passes alike
        torch.manual_seed(1)
        consistent = infer(
            model,
            source,
            idx,
            device=torch.device("cpu"),
            batch_size=batch_size,
            mc_samples=5,
            consistent_mc=True,
        )["mc_probs"]
        assert torch.allclose(consistent[0], consistent[5])
        assert (consistent[0, 0] - consistent[0, 1]).abs().max() > 1e-4
        torch.manual_seed(1)
        again = infer(
            model,
            source,
            idx,
            device=torch.device("cpu"),
            batch_size=batch_size,
            mc_samples=5,
            consistent_mc=True,
        )["mc_probs"]
        assert torch.equal(consistent, again)
    independent = infer(model, source, idx, device=torch.device("cpu"), batch_size=64, mc_samples=5)[
        "mc_probs"
    ]
    assert (independent[0] - independent[5]).abs().max() > 1e-4
    assert model.classifier.weight.requires_grad and not model.training


def test_spread_over_trials_is_the_sample_std_with_a_t_interval() -> None:
    from scipy import stats

    from alscope.engine.metrics import ci95_halfwidth, sample_std

    values = [0.80, 0.84, 0.86, 0.90]
    assert sample_std(values) == pytest.approx(np.std(values, ddof=1))
    assert sample_std([0.8]) == 0.0
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert ci95_halfwidth(values) == pytest.approx((high - low) / 2)
    assert np.isnan(ci95_halfwidth([0.8, 0.9]))
