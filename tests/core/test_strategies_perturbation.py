"""Golden behaviour of the perturbation strategies (adversarial_bim, dfal, noise_stability,
el2n, grand, saal, forgetting) and of the ``pool_inputs`` contract they read."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import alscope
from alscope.data.base import InputSpec, TensorSource
from alscope.engine.inference import compute_pool_view
from alscope.errors import ModelError
from alscope.models.base import BackboneOutput
from alscope.models.mlp import MLP
from alscope.strategies.adversarial import bim_distances, deepfool_distances
from alscope.strategies.base import PoolInputs, PoolView, Requirements
from alscope.strategies.noise_stability import add_weight_noise, deviation_features, noisy_weights


class Linear(nn.Module):
    """logits = x W^T + b, with the backbone's output type."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.classifier = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.classifier.weight.copy_(weight)
            self.classifier.bias.copy_(bias)

    def forward(self, inputs: torch.Tensor, return_features: bool = False) -> BackboneOutput:
        return BackboneOutput(self.classifier(inputs), inputs)


def small_mlp(dim: int, n_classes: int, seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP(InputSpec("vector", (dim,)), n_classes, MLP.Params(hidden_sizes=[16]))


def select(name: str, view: PoolView, budget: int, **params: Any) -> np.ndarray:
    return alscope.get_strategy(name, **params).query(view, budget, seed=0)


# -- references: the official per-sample loops (DeepAL / DeepAL+), bounded ------------------


def official_bim(model: nn.Module, x: torch.Tensor, eps: float, max_iter: int) -> float:
    """DeepAL+'s AdversarialBIM.cal_dis for one sample, with the step bound added."""
    nx = x[None].clone().requires_grad_()
    eta = torch.zeros_like(nx)
    out = model(nx + eta).logits
    ny = out.argmax(1)
    for _ in range(max_iter):
        F.cross_entropy(out, ny).backward()
        eta += eps * torch.sign(nx.grad)
        nx.grad.zero_()
        out = model(nx + eta).logits
        if out.argmax(1).item() != ny.item():
            return float((eta * eta).sum())
    return float("nan")


def official_deepfool(model: nn.Module, x: torch.Tensor, max_iter: int, overshoot: float) -> float:
    """DeepFool for one sample (Moosavi-Dezfooli et al.), the nearest boundary by
    ``|f_k| / |w_k|`` (DeepAL+'s loop never updates its running minimum)."""
    r_tot = torch.zeros_like(x)
    y = int(model(x[None]).logits.argmax(1))
    for _ in range(max_iter):
        xa = (x + (1 + overshoot) * r_tot)[None].requires_grad_()
        out = model(xa).logits[0]
        if int(out.argmax()) != y:
            break
        grads = [torch.autograd.grad(out[k], xa, retain_graph=True)[0][0] for k in range(len(out))]
        best, r = float("inf"), torch.zeros_like(x)
        for k in range(len(out)):
            if k == y:
                continue
            w = grads[k] - grads[y]
            f = abs(float(out[k].detach() - out[y].detach()))
            if w.norm() > 0 and f / float(w.norm()) < best:
                best = f / float(w.norm())
                r = (f + 1e-4) / float(w.norm() ** 2) * w
        r_tot = r_tot + r
    return float(((1 + overshoot) * r_tot).square().sum())


# -- golden cases --------------------------------------------------------------------------


def hyperplane_pool() -> tuple[Linear, torch.Tensor, np.ndarray]:
    """Binary linear model f1 - f0 = 2 x_0 - 1 over 4 features: a sample's distance to the
    boundary is |x_0 - 0.5|; the other features do not matter."""
    model = Linear(torch.tensor([[-1.0, 0, 0, 0], [1.0, 0, 0, 0]]), torch.tensor([0.5, -0.5]))
    offsets = np.array([0.9, -0.7, 0.05, 0.6, -0.02, 0.3, -0.4, 0.11])
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (len(offsets), 4)).astype(np.float32)
    x[:, 0] = 0.5 + offsets
    return model, torch.from_numpy(x), np.abs(offsets)


@pytest.mark.parametrize("name", ["adversarial_bim", "dfal"])
def test_picks_the_samples_nearest_the_boundary(name: str) -> None:
    model, x, distance = hyperplane_pool()
    view = PoolView.from_arrays(inputs=x, model=model, n_classes=2)
    picked = select(name, view, 3)
    assert sorted(picked.tolist()) == sorted(np.argsort(distance)[:3].tolist())


def test_dfal_distance_is_the_exact_margin_of_a_linear_model() -> None:
    model, x, distance = hyperplane_pool()
    got = deepfool_distances(model.eval(), x, max_iter=50, overshoot=0.02)
    # one step of (|f| + 1e-4) / |w|^2 w, |w| = 2 and |f| = 2 d, scaled by 1.02
    expected = ((2 * distance + 1e-4) / 2 * 1.02) ** 2
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4)


def test_bim_distance_counts_sign_steps() -> None:
    """On the hyperplane the gradient's sign moves x_0 only (the other weights are 0): a
    sample d away flips after ceil(d / eps) steps, eta^2 = (steps eps)^2."""
    model, x, distance = hyperplane_pool()
    got = bim_distances(model.eval(), x, eps=0.05, max_iter=100)
    steps = np.ceil(distance / 0.05 - 1e-6)
    np.testing.assert_allclose(got.numpy(), (steps * 0.05) ** 2, rtol=1e-4)


def test_batched_bim_matches_the_official_loop() -> None:
    model = small_mlp(6, 4).eval()
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(1))
    got = bim_distances(model, x, eps=0.05, max_iter=200).numpy()
    ref = np.array([official_bim(model, row, 0.05, 200) for row in x])
    flipped = ~np.isnan(ref)
    assert flipped.mean() > 0.9
    np.testing.assert_allclose(got[flipped], ref[flipped], rtol=1e-4)


def test_batched_deepfool_matches_the_reference_loop() -> None:
    model = small_mlp(6, 4, seed=3).eval()
    x = torch.randn(30, 6, generator=torch.Generator().manual_seed(2))
    got = deepfool_distances(model, x, max_iter=50, overshoot=0.02).numpy()
    ref = np.array([official_deepfool(model, row, 50, 0.02) for row in x])
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-6)


def test_unflipped_samples_rank_last() -> None:
    """With too few steps to flip, a BIM sample gets the bound and is queried after every
    flipped one."""
    model, x, distance = hyperplane_pool()
    got = bim_distances(model.eval(), x, eps=0.05, max_iter=3).numpy()
    near = distance <= 0.15
    np.testing.assert_allclose(got[~near], 0.05**2 * 4 * 16, rtol=1e-5)
    assert got[near].max() < got[~near].min()


def test_model_mode_is_restored_and_dropout_is_off() -> None:
    model = small_mlp(6, 3).train()
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(4))
    view = PoolView.from_arrays(inputs=x, model=model, n_classes=3)
    a = select("dfal", view, 5)
    assert model.training
    b = select("dfal", view, 5)
    assert np.array_equal(a, b)  # dropout (p = 0.3) would make the two differ


# -- the pool_inputs contract --------------------------------------------------------------


def test_token_inputs_are_refused_with_the_alternative() -> None:
    def batches(size: int) -> Any:
        yield {"input_ids": torch.zeros(4, 5, dtype=torch.long)}

    view = PoolView(unlabeled=np.arange(4), labeled=np.empty(0, np.int64), n_classes=2)
    view.model, view.pool_inputs = small_mlp(5, 2), PoolInputs(batches)
    with pytest.raises(ModelError, match="mode=frozen"):
        select("adversarial_bim", view, 2)


def test_undeclared_inputs_are_a_clear_error() -> None:
    view = PoolView.from_arrays(probs=np.full((4, 2), 0.5))
    with pytest.raises(ModelError, match="pool_inputs"):
        next(view.input_batches("mine"))


def test_engine_view_yields_the_unlabeled_eval_inputs_in_order() -> None:
    x = torch.arange(20, dtype=torch.float32).view(10, 2)
    source = TensorSource(x, np.zeros(10, np.int64), eval_transform=lambda b, g: b * 2)
    unlabeled = np.array([1, 4, 5, 8, 9])
    view = compute_pool_view(
        small_mlp(2, 2),
        source,
        unlabeled,
        np.array([0, 2, 3, 6, 7]),
        np.zeros(5, np.int64),
        Requirements(model=True, pool_inputs=True),
        n_classes=2,
        device=torch.device("cpu"),
        batch_size=2,
    )
    got = torch.cat(list(view.input_batches("t")))
    assert torch.equal(got, 2 * x[unlabeled])
    assert [len(b) for b in view.input_batches("t", 3)] == [3, 2]
    assert view.probs is None and view.model is not None


# -- noise_stability -------------------------------------------------------------------------


def test_weight_noise_has_the_relative_norm_of_noise_scale() -> None:
    model = small_mlp(6, 3)
    before = [w.detach().clone() for w in noisy_weights(model)]
    add_weight_noise(noisy_weights(model), 0.01, torch.Generator().manual_seed(0))
    for w0, w in zip(before, noisy_weights(model), strict=True):
        assert float((w.detach() - w0).norm() / w0.norm()) == pytest.approx(0.01, rel=1e-4)
    assert len(before) == 2  # the hidden layer and the classifier; biases stay


def test_noise_stability_takes_the_unstable_samples_and_skips_duplicates() -> None:
    """Uncertain samples (near the boundary) move most under weight noise; once one copy
    of a repeated uncertain sample is taken, its duplicates are at distance 0 and the next
    pick is the other uncertain sample, not a duplicate."""
    model = Linear(torch.tensor([[-3.0, 0, 0], [3.0, 0, 0]]), torch.zeros(2))
    rng = np.random.default_rng(0)
    confident = np.c_[rng.choice([-2.0, 2.0], 20), rng.normal(0, 1, (20, 2))]
    uncertain = np.array([[0.01, 1.0, 1.0]] * 3 + [[-0.02, -1.0, 0.5]])
    x = torch.tensor(np.r_[confident, uncertain], dtype=torch.float32)
    view = PoolView.from_arrays(inputs=x, model=model, n_classes=2)
    picked = select("noise_stability", view, 2, n_sampling=20, noise_scale=0.05)
    assert 23 in picked and len(set(picked.tolist()) & {20, 21, 22}) == 1


def test_noise_stability_features_match_a_direct_computation() -> None:
    model = small_mlp(5, 3, seed=1).eval()
    x = torch.randn(30, 5, generator=torch.Generator().manual_seed(0))
    view = PoolView.from_arrays(inputs=x, model=model, n_classes=3, batch_size=7)
    got = deviation_features(model, view, "t", 4, 0.05, 123, None)
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        p = torch.softmax(model(x).logits, 1)
        ref = []
        for _ in range(4):
            noisy = copy.deepcopy(model)
            for m in noisy.modules():
                if isinstance(getattr(m, "weight", None), nn.Parameter):
                    z = torch.randn(m.weight.shape, generator=g)
                    m.weight += z * 0.05 * m.weight.norm() / z.norm()
            ref.append((torch.softmax(noisy(x).logits, 1) - p) / p.norm(dim=1, keepdim=True))
    torch.testing.assert_close(got, torch.cat(ref, 1))
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), small_mlp(5, 3, 1).state_dict().values(), strict=True)
    )


# -- el2n and grand --------------------------------------------------------------------------


def test_el2n_is_the_error_norm_against_the_predicted_label() -> None:
    probs = np.array([[0.97, 0.01, 0.01, 0.01], [0.5, 0.5, 0, 0], [0.4, 0.3, 0.3, 0], [0.7, 0.1, 0.1, 0.1]])
    view = PoolView.from_arrays(probs=probs)
    strategy = alscope.get_strategy("el2n")
    expected = [np.sqrt(0.03**2 + 3e-4), np.sqrt(0.5), np.sqrt(0.36 + 0.18), np.sqrt(0.09 + 0.03)]
    np.testing.assert_allclose(strategy.score(view).numpy(), expected, rtol=1e-5)
    assert select("el2n", view, 1).tolist() == [2]


def test_grand_matches_per_sample_backward_passes() -> None:
    model = small_mlp(5, 3, seed=2).eval()
    x = torch.randn(20, 5, generator=torch.Generator().manual_seed(5))
    view = PoolView.from_arrays(inputs=x, model=model, n_classes=3)
    got = alscope.get_strategy("grand", chunk=6).score(view)
    ref = []
    for row in x:
        model.zero_grad()
        out = model(row[None]).logits
        F.cross_entropy(out, out.argmax(1)).backward()
        ref.append(torch.sqrt(sum(p.grad.square().sum() for p in model.parameters())))
    torch.testing.assert_close(got, torch.stack(ref), rtol=1e-4, atol=1e-6)


def test_grand_on_a_linear_model_equals_its_classifier_closed_form() -> None:
    """With the classifier as the only layer, every parameter is the classifier's: the
    torch.func gradients and |p - e|^2 (|h|^2 + 1) agree."""
    g = torch.Generator().manual_seed(6)
    model = Linear(torch.randn(4, 3, generator=g), torch.randn(4, generator=g))
    x = torch.randn(25, 3, generator=g)
    with torch.no_grad():
        out = model(x)
    full = alscope.get_strategy("grand").score(PoolView.from_arrays(inputs=x, model=model, n_classes=4))
    closed_view = PoolView.from_arrays(probs=torch.softmax(out.logits, 1), embeddings=out.embedding)
    closed = alscope.get_strategy("grand", parameters="classifier").score(closed_view)
    torch.testing.assert_close(full, closed, rtol=1e-4, atol=1e-6)


# -- saal --------------------------------------------------------------------------------------


def official_saal(model: nn.Module, x: torch.Tensor, rho: float) -> tuple[float, float]:
    """The authors' max_sharpness_acquisition_pseudo for one sample (pool_batch_size = 1):
    (perturbed loss, original loss)."""
    net = copy.deepcopy(model)
    out = net(x[None]).logits
    y = out.argmax(1)
    loss1 = F.cross_entropy(out, y)
    loss1.backward()
    norm = torch.norm(torch.stack([(p.abs() * p.grad).norm(p=2) for p in net.parameters()]), p=2)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(p.pow(2) * p.grad * (rho / (norm + 1e-12)))
        return float(F.cross_entropy(net(x[None]).logits, y)), float(loss1)


def test_saal_matches_the_authors_per_sample_loop() -> None:
    model = small_mlp(5, 3, seed=4).eval()
    x = torch.randn(15, 5, generator=torch.Generator().manual_seed(7))
    view = PoolView.from_arrays(inputs=x, model=model, n_classes=3)
    ref = np.array([official_saal(model, row, 0.5) for row in x])
    got = alscope.get_strategy("saal", rho=0.5).score(view).numpy()
    np.testing.assert_allclose(got, ref[:, 0], rtol=1e-4, atol=1e-6)
    diff = alscope.get_strategy("saal", rho=0.5, mode="diff").score(view).numpy()
    np.testing.assert_allclose(diff, ref[:, 0] - ref[:, 1], rtol=1e-3, atol=1e-5)
    assert (diff > 0).all()  # the step raises every sample's loss
    top = select("saal", view, 3, rho=0.5, diversity=False)
    assert sorted(top.tolist()) == sorted(np.argsort(-ref[:, 0])[:3].tolist())
    assert select("saal", view, 3, rho=0.5)[0] == int(np.argmax(ref[:, 0]))  # k-means++ starts at the max


# -- forgetting ------------------------------------------------------------------------------


class Oscillating(nn.Module):
    """A two-class model whose prediction on flagged samples swings with the number of
    *training* forward passes it has run (one per epoch at one batch per epoch):
    ``x[1] = 1`` flips every pass, ``x[2] = 1`` every second pass; unflagged samples keep
    the sign of ``x[0]`` with a small margin (uncertain but stable). A trained linear
    term, scaled down, keeps the optimiser honest without moving any prediction."""

    n_classes = 2

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1)
        self.register_buffer("passes", torch.zeros((), dtype=torch.int64))

    def forward(self, inputs: torch.Tensor, return_features: bool = False) -> BackboneOutput:
        if self.training:
            self.passes += 1
        p = int(self.passes)
        swing = 5.0 * (inputs[:, 1] * (-1) ** p + inputs[:, 2] * (-1) ** (p // 2))
        s = swing + 0.05 * inputs[:, 0] + 1e-4 * self.linear(inputs)[:, 0]
        return BackboneOutput(torch.stack([s, -s], dim=1), inputs)


def oscillating_pool() -> tuple[TensorSource, np.ndarray, dict[str, np.ndarray]]:
    """30 samples in three scattered groups: every-pass flippers, every-second-pass
    flippers, stable ones; 6 stable ones are labeled."""
    rng = np.random.default_rng(0)
    group = rng.permutation(np.repeat([0, 1, 2], 10))  # 0: stable, 1: x[1], 2: x[2]
    x = np.zeros((30, 3), dtype=np.float32)
    x[:, 0] = rng.choice([-1.0, 1.0], 30) * rng.uniform(0.5, 1.0, 30)
    x[group == 1, 1] = 1.0
    x[group == 2, 2] = 1.0
    labels = (x[:, 0] < 0).astype(np.int64)
    labeled = np.flatnonzero(group == 0)[:6]
    groups = {
        name: np.setdiff1d(np.flatnonzero(group == g), labeled)
        for g, name in enumerate(["stable", "every", "second"])
    }
    return TensorSource(torch.from_numpy(x), labels), labeled, groups


def forgetting_view(model: Any, src: TensorSource, labeled: np.ndarray, strategy: Any, hooks: Any) -> Any:
    """The engine's pool pass over the unlabeled rows, in batches of 7: several pool
    batches, so each row's count must be found by its dataset index."""
    return compute_pool_view(
        model,
        src,
        np.setdiff1d(np.arange(len(src)), labeled),
        labeled,
        src.labels[labeled],
        strategy.requirements(),
        n_classes=2,
        device=torch.device("cpu"),
        batch_size=7,
        hooks=hooks,
        modules={},
    )


def forgetting_fit(
    epochs: int = 8, **params: Any
) -> tuple[Oscillating, TensorSource, np.ndarray, np.ndarray, Any]:
    from alscope.config import TrainingConfig
    from alscope.engine.trainer import Trainer
    from alscope.strategies.forgetting import Forgetting

    src, labeled, _ = oscillating_pool()
    unlabeled = np.setdiff1d(np.arange(len(src)), labeled)
    strategy = Forgetting(params)
    hooks = strategy.training_hooks()
    model = Oscillating()
    config = TrainingConfig(epochs=epochs, batch_size=64, lr=1e-3, min_steps=0, device="cpu")
    Trainer(config, torch.device("cpu")).fit(
        model,
        src,
        labeled,
        torch.from_numpy(src.labels),
        seed=0,
        hooks=hooks,
        modules={},
        unlabeled=unlabeled,
    )
    assert int(model.passes) == epochs  # the recording passes ran in eval mode
    view = forgetting_view(model, src, labeled, strategy, hooks)
    return model, src, unlabeled, view.extras["forgetting_flips"].numpy(), (strategy, view)


def test_forgetting_queries_the_samples_whose_prediction_flips() -> None:
    _, _, unlabeled, flips, (strategy, view) = forgetting_fit()
    _, _, groups = oscillating_pool()
    by_index = dict(zip(unlabeled.tolist(), flips.tolist(), strict=True))
    # 8 checkpoints: a flip at each of the 7 transitions, or at every second one (4)
    assert {by_index[i] for i in groups["every"]} == {7.0}
    assert {by_index[i] for i in groups["second"]} == {4.0}
    assert {by_index[i] for i in groups["stable"]} == {0.0}
    # the flippers end confident, the stable ones uncertain: margin sampling would take these
    margin_pick = alscope.get_strategy("margin").query(view, 4, seed=0)
    assert set(margin_pick.tolist()) <= set(groups["stable"].tolist())
    assert sorted(strategy.query(view, 10, seed=0).tolist()) == sorted(groups["every"].tolist())
    top = strategy.query(view, 20, seed=1)
    assert sorted(top.tolist()) == sorted(np.concatenate([groups["every"], groups["second"]]).tolist())
    assert set(top[:10].tolist()) == set(groups["every"].tolist())  # more flips first


def test_forgetting_ties_follow_the_final_margin_then_chance() -> None:
    _, _, unlabeled, _, (strategy, view) = forgetting_fit()
    _, _, groups = oscillating_pool()
    stable = groups["stable"]
    margin = (view.probs[:, 0] - view.probs[:, 1]).abs().numpy()
    position = {int(i): k for k, i in enumerate(unlabeled)}
    first_stable = strategy.query(view, 21, seed=0)[-1]  # after the 20 flippers
    assert first_stable == stable[np.argmin([margin[position[int(i)]] for i in stable])]
    rand = alscope.get_strategy("forgetting", tie_break="random")
    assert "probs" not in rand.requirements().describe()
    picks = {tuple(rand.query(view, 12, seed=s)[10:].tolist()) for s in range(6)}
    assert len(picks) > 1 and all(set(p) <= set(groups["second"].tolist()) for p in picks)


@pytest.mark.parametrize("spacing", [{"every_epochs": 2}, {"every_steps": 2}])
def test_forgetting_checkpoint_spacing_changes_what_counts(spacing: dict[str, int]) -> None:
    """Checkpoints after passes 2, 4, 6, 8: the every-pass flippers always look the same
    (0 flips), the every-second-pass ones alternate (3 flips)."""
    _, _, unlabeled, flips, (strategy, view) = forgetting_fit(**spacing)
    _, _, groups = oscillating_pool()
    by_index = dict(zip(unlabeled.tolist(), flips.tolist(), strict=True))
    assert {by_index[i] for i in groups["every"]} == {0.0}
    assert {by_index[i] for i in groups["second"]} == {3.0}
    assert sorted(strategy.query(view, 10, seed=0).tolist()) == sorted(groups["second"].tolist())


def test_forgetting_default_spacing_bounds_the_records_and_keeps_the_last() -> None:
    """20 epochs, n_checkpoints=3: every 7th epoch (passes 7, 14) and the last (20)."""
    _, _, unlabeled, flips, _ = forgetting_fit(epochs=20, n_checkpoints=3)
    _, _, groups = oscillating_pool()
    by_index = dict(zip(unlabeled.tolist(), flips.tolist(), strict=True))
    # every pass: signs of passes 7, 14, 20 are -, +, + (1 flip); second: 7//2=3, 7, 10: -, -, + (1)
    assert {by_index[i] for i in groups["every"]} == {1.0}
    assert {by_index[i] for i in groups["second"]} == {1.0}


def test_forgetting_subset_measures_only_some_and_ranks_the_rest_last() -> None:
    _, _, unlabeled, flips, (strategy, view) = forgetting_fit(subset=5)
    assert (flips >= 0).sum() == 5 and set(flips[flips < 0].tolist()) == {-1.0}
    measured = unlabeled[flips >= 0]
    assert set(strategy.query(view, 5, seed=0).tolist()) == set(measured.tolist())


def test_forgetting_without_recorded_predictions_is_a_clear_error() -> None:
    from alscope.strategies.forgetting import Forgetting

    src, labeled, _ = oscillating_pool()
    strategy = Forgetting()
    with pytest.raises(ModelError, match="recorded no predictions"):
        forgetting_view(Oscillating(), src, labeled, strategy, strategy.training_hooks())
    # from Python, on counts recorded elsewhere
    view = PoolView.from_arrays(
        probs=np.full((4, 2), 0.5), extras={"forgetting_flips": [0, 3, 1, 3]}, labeled_mask=[0, 0, 1, 0]
    )
    assert sorted(alscope.get_strategy("ForgettingEvents").query(view, 2, seed=0).tolist()) == [1, 3]


def test_forgetting_runs_on_digits(tmp_path: Any) -> None:
    from alscope.config import ExperimentConfig
    from alscope.engine.experiment import run_experiment

    cfg = ExperimentConfig.model_validate(
        {
            "strategy": {"name": "forgetting", "params": {"n_checkpoints": 4}},
            "cycles": 1,
            "n_initial": 40,
            "n_query": 20,
            "results_dir": str(tmp_path),
            "training": {"epochs": 4, "min_steps": 0, "device": "cpu"},
            "tracking": {"enabled": False},
        }
    )
    trial = run_experiment(cfg).trials[0]
    assert [c.n_labeled for c in trial.cycles] == [40, 60] and len(set(trial.labeled)) == 60
