"""Golden behaviour of BEMPS (CoreMSE, CoreLog), ALFA-Mix, EGL and CAL, and their scores
against direct computations of the papers' / official code's definitions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import alscope
from alscope.strategies.base import PoolView
from alscope.strategies.bemps import log_changes, mse_changes
from alscope.strategies.cal import cal_scores
from alscope.strategies.egl import egl_scores


def strategy(name: str, **params: Any) -> Any:
    return alscope.get_strategy(name, **params) if params else alscope.get_strategy(name)


# -- BEMPS --------------------------------------------------------------------------


def naive_changes(p: torch.Tensor, ref: torch.Tensor, score: str) -> torch.Tensor:
    """The official ``rr_X_Xp`` term by term: for each candidate x, label y and reference
    x', the posterior-reweighted predictive m and the score summed over models."""
    u, e, c = p.shape
    den = p.sum(dim=1)
    out = torch.zeros(u, len(ref), dtype=torch.float64)
    for x in range(u):
        for j in range(len(ref)):
            for y in range(c):
                q = p[x, :, y] / den[x, y]
                m = (q[:, None] * ref[j]).sum(dim=0)
                if score == "mse":
                    s = (ref[j] - m[None, :]).square().sum()
                else:
                    s = (ref[j] * torch.log(ref[j] / m[None, :])).sum()
                out[x, j] += den[x, y] / e * s
    return out


@pytest.mark.parametrize(("score", "fn"), [("mse", mse_changes), ("log", log_changes)])
def test_bemps_changes_equal_the_official_sum(score: str, fn: Any) -> None:
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(2.0 * torch.randn(9, 5, 4, generator=g, dtype=torch.float64), dim=-1)
    ref = p[[0, 3, 4, 8]]
    got = fn(p.float(), ref.float()).double()
    assert torch.allclose(got, naive_changes(p, ref, score), rtol=1e-4, atol=1e-5)


def test_bemps_log_blocks_match_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocking over candidates and reference points changes nothing."""
    g = torch.Generator().manual_seed(1)
    p = torch.softmax(torch.randn(50, 6, 5, generator=g), dim=-1)
    whole = log_changes(p, p[:20])
    monkeypatch.setattr("alscope.strategies.bemps.BLOCK_ELEMENTS", 60)
    assert torch.allclose(log_changes(p, p[:20]), whole, atol=1e-5)


def split_pool() -> tuple[np.ndarray, np.ndarray]:
    """Four models, two classes. Rows 0-9: the models split {0,1} vs {2,3}, sharply;
    rows 10-19: they split {0,2} vs {1,3}, less sharply; rows 20-29: they all say 50/50
    (labelling such a row tells nothing about which model is right)."""
    a = np.array([[0.95, 0.05], [0.95, 0.05], [0.05, 0.95], [0.05, 0.95]])
    b = np.array([[0.8, 0.2], [0.2, 0.8], [0.8, 0.2], [0.2, 0.8]])
    c = np.full((4, 2), 0.5)
    mc = np.concatenate([np.repeat(m[None], 10, axis=0) for m in (a, b, c)]).astype(np.float32)
    return mc, mc.mean(axis=1)


@pytest.mark.parametrize("score", ["mse", "log"])
def test_bemps_golden_informative_and_diverse(score: str) -> None:
    mc, probs = split_pool()
    view = PoolView.from_arrays(mc_probs=mc, probs=probs)
    common = dict(score=score, reference_fraction=1.0, top_fraction=0.7)
    top = strategy("bemps", diverse=False, **common).query(view, 2, seed=0)
    assert set(top.tolist()) <= set(range(10))  # the sharpest disagreement first
    for seed in range(10):
        batch = strategy("bemps", **common).query(view, 2, seed=seed)
        # one row of each split: the change vectors of the two groups differ
        assert sorted(int(i) // 10 for i in batch) == [0, 1], batch
    uninformative = strategy("bemps", diverse=False, **common).query(view, 20, seed=0)
    assert not set(uninformative.tolist()) & set(range(20, 30))


def test_corelog_is_bemps_with_the_log_score() -> None:
    s = strategy("corelog")
    assert s.params.score == "log" and s.component_name == "bemps"
    assert strategy("CoreMSE").params.score == "mse"
    req = s.requirements()
    assert req.mc_samples == 10 and req.consistent_mc


# -- EGL ----------------------------------------------------------------------------


def test_egl_closed_form_equals_autograd_per_sample() -> None:
    torch.manual_seed(0)
    clf = nn.Linear(6, 4)
    h = torch.randn(12, 6, dtype=torch.float64)
    clf = clf.double()
    probs = torch.softmax(clf(h), dim=1).detach()
    expected = torch.zeros(12, dtype=torch.float64)
    for i in range(12):
        for y in range(4):
            clf.zero_grad()
            nn.functional.cross_entropy(clf(h[i : i + 1]), torch.tensor([y])).backward()
            norm = torch.sqrt(clf.weight.grad.square().sum() + clf.bias.grad.square().sum())
            expected[i] += probs[i, y] * norm
    assert torch.allclose(egl_scores(probs, h), expected, rtol=1e-10)
    no_bias = egl_scores(probs, h, bias=False)
    assert torch.all(no_bias < egl_scores(probs, h))


def test_egl_golden_prefers_uncertain_and_long_embeddings() -> None:
    probs = np.array([[0.999, 0.001], [0.5, 0.5], [0.5, 0.5], [0.9, 0.1]], np.float32)
    emb = np.array([[10.0, 0], [1.0, 0], [5.0, 0], [5.0, 0]], np.float32)
    view = PoolView.from_arrays(probs=probs, embeddings=emb)
    assert strategy("egl").query(view, 1, seed=0).tolist() == [2]
    assert strategy("EGL").query(view, 2, seed=0).tolist() == [2, 3]


# -- CAL ----------------------------------------------------------------------------


def naive_cal(probs: np.ndarray, emb: np.ndarray, lab_p: np.ndarray, lab_e: np.ndarray, k: int) -> np.ndarray:
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    le = lab_e / np.linalg.norm(lab_e, axis=1, keepdims=True)
    out = []
    for i in range(len(e)):
        nn_idx = np.argsort(((le - e[i]) ** 2).sum(1), kind="stable")[:k]
        kl = [(lab_p[j] * (np.log(lab_p[j]) - np.log(probs[i]))).sum() for j in nn_idx]
        out.append(np.mean(kl))
    return np.array(out)


def test_cal_scores_equal_the_direct_kl() -> None:
    rng = np.random.default_rng(0)
    emb, lab_e = rng.normal(size=(40, 5)), rng.normal(size=(15, 5))
    probs = rng.dirichlet(np.ones(3), 40)
    lab_p = rng.dirichlet(np.ones(3), 15)
    t = [torch.tensor(a, dtype=torch.float32) for a in (probs, emb, lab_p, lab_e)]
    got = cal_scores(t[0], t[1], t[2], t[3], k=4).numpy()
    assert np.allclose(got, naive_cal(probs, emb, lab_p, lab_e, 4), atol=1e-5)


def test_cal_golden_picks_the_contrastive_example() -> None:
    """Two labeled clusters predicted as their class; the unlabeled sample in cluster 0
    predicted as class 1 is contrastive; one predicted like its neighbours is not."""
    lab_e = np.array([[1.0, 0.1], [1.0, -0.1], [0.1, 1.0], [-0.1, 1.0]])
    lab_p = np.array([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9]])
    emb = np.array([[1.0, 0.0], [1.0, 0.05], [0.0, 1.0], [0.05, 1.0]])
    probs = np.array([[0.1, 0.9], [0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])
    view = PoolView(
        unlabeled=np.arange(4),
        labeled=np.arange(4, 8),
        n_classes=2,
        labeled_targets=np.array([0, 0, 1, 1]),
        probs=torch.tensor(probs, dtype=torch.float32),
        embeddings=torch.tensor(emb, dtype=torch.float32),
        labeled_embeddings=torch.tensor(lab_e, dtype=torch.float32),
        labeled_probs=torch.tensor(lab_p, dtype=torch.float32),
    )
    assert strategy("cal", n_neighbors=2).query(view, 1, seed=0).tolist() == [0]
    assert strategy("CAL", n_neighbors=2).query(view, 4, seed=0).tolist() == [0, 2, 3, 1]


# -- ALFA-Mix -----------------------------------------------------------------------


class SignModel(nn.Module):
    """A backbone stub whose classifier predicts class 1 where z_0 > 0."""

    def __init__(self) -> None:
        super().__init__()
        self.classifier = nn.Linear(2, 2)
        with torch.no_grad():
            self.classifier.weight.copy_(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
            self.classifier.bias.zero_()


def alfa_view(emb: np.ndarray) -> PoolView:
    lab = np.array([[-1.0, 0.0], [-1.2, 0.0], [1.0, 0.0], [1.2, 0.0]])
    return PoolView(
        unlabeled=np.arange(100, 100 + len(emb)),
        labeled=np.arange(4),
        n_classes=2,
        labeled_targets=np.array([0, 0, 1, 1]),
        embeddings=torch.tensor(emb, dtype=torch.float32),
        labeled_embeddings=torch.tensor(lab, dtype=torch.float32),
        model=SignModel().eval(),
    )


def test_alfa_mix_golden_boundary_candidates_and_clusters() -> None:
    """Near the boundary (|z_0| = 0.05) mixing toward the other class's anchor flips the
    prediction; far from it (|z_0| = 3) even a cap of 1 does not. The four boundary
    samples form two groups (z_1 = +5 and -5): a batch of 2 takes one of each."""
    emb = np.array(
        [[0.05, 5.0], [-0.05, 5.0], [0.05, -5.0], [-0.05, -5.0], [3.0, 0.5], [-3.0, 0.5], [3.0, -0.5]]
    )
    view = alfa_view(emb)
    for seed in range(3):
        picks = strategy("alfa_mix").query(view, 2, seed=seed)
        assert {100 <= i <= 101 for i in picks} == {True, False}
        assert all(i < 104 for i in picks)


def test_alfa_mix_takes_every_candidate_then_random() -> None:
    emb = np.array([[0.05, 1.0], [3.0, 1.0], [-3.0, 1.0], [3.0, -1.0], [-3.0, -1.0]])
    picks = strategy("AlphaMixSampling").query(alfa_view(emb), 3, seed=0)
    assert picks[0] == 100 and len(set(picks.tolist())) == 3


def test_alfa_mix_without_a_classifier_says_so() -> None:
    view = alfa_view(np.array([[0.05, 1.0], [3.0, 1.0]]))
    view.model = nn.Identity()
    with pytest.raises(alscope.errors.ModelError, match="classifier"):
        strategy("alfa_mix").query(view, 1, seed=0)


# -- ALScope's command line --------------------------------------------------------------


@pytest.mark.slow
def test_alscope_readme_command_runs_bemps(tmp_path: Any) -> None:
    """ALScope's README line `--method coremse --uncertainty Entropy` runs BEMPS; the
    --uncertainty that ALScope's coremse does not read is accepted with a note."""
    import json

    from typer.testing import CliRunner

    from alscope.cli import app

    args = ["run", "--method", "coremse", "--uncertainty", "Entropy", "--n-initial", "20", "--n-query", "10"]
    args += ["--cycle", "1", "--epochs", "2", "--n-drop", "3", "--threads", "1", "--no-track", "--json"]
    result = CliRunner().invoke(app, [*args, "--results-dir", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "--uncertainty Entropy ignored" in result.output
    payload = json.loads(result.stdout[result.stdout.index("{") :])
    assert payload["config"]["strategy"]["params"] == {"n_drop": 3}
    assert payload["curve"]["n_labeled"] == [20, 30]


# -- ISAL ---------------------------------------------------------------------------


def test_isal_lissa_and_influence_equal_autograd() -> None:
    """The closed-form last-layer recursion equals the official one with autograd
    Hessian-vector products (nn.Linear without bias), and the candidate scores equal
    autograd's pseudo-labeled gradient dotted with s_test."""
    from alscope.strategies.isal import influence_scores, lissa

    torch.manual_seed(0)
    clf = nn.Linear(5, 3, bias=False).double()
    lab_h = torch.randn(8, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (8,))
    lab_p = torch.softmax(clf(lab_h), dim=1).detach()
    w = clf.weight
    v = torch.autograd.grad(nn.functional.cross_entropy(clf(lab_h), y, reduction="sum"), w)[0]
    order = np.array([[3, 1, 4, 1, 5, 0, 2], [7, 6, 5, 4, 3, 2, 1]])
    total = torch.zeros_like(v)
    for run in order:
        est = v.clone()
        for i in run.tolist():
            (g,) = torch.autograd.grad(
                nn.functional.cross_entropy(clf(lab_h[i : i + 1]), y[i : i + 1]), w, create_graph=True
            )
            (hv,) = torch.autograd.grad((g * est).sum(), w)
            est = v + 0.9 * est - hv / 2.0
        total += est
    s_test = lissa(v, lab_p, lab_h, order, damp=0.1, scale=2.0)
    assert torch.allclose(s_test, total / 2, rtol=1e-10)
    h = torch.randn(6, 5, dtype=torch.float64)
    p = torch.softmax(clf(h), dim=1).detach()
    expected = []
    for i in range(6):
        yhat = p[i : i + 1].argmax(dim=1)
        (g,) = torch.autograd.grad(nn.functional.cross_entropy(clf(h[i : i + 1]), yhat), w)
        expected.append(float((g * s_test).sum()))
    assert torch.allclose(influence_scores(s_test, p, h), torch.tensor(expected, dtype=torch.float64))


def test_isal_golden_prefers_the_candidate_that_fixes_the_labeled_loss() -> None:
    """Labeled class-1 samples at h = (1, 0) are predicted 70/30 for class 0: the labeled
    loss wants class 1 there. A candidate there pseudo-labeled 1 helps most, a confident
    one a little, one off that direction (h = (0, 1)) not at all, and one pseudo-labeled 0
    hurts."""
    lab_h = np.tile([1.0, 0.0], (5, 1))
    lab_p = np.tile([0.7, 0.3], (5, 1))
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    probs = np.array([[0.6, 0.4], [0.4, 0.6], [0.001, 0.999], [0.5 + 1e-3, 0.5 - 1e-3]])
    view = PoolView(
        unlabeled=np.arange(10, 14),
        labeled=np.arange(5),
        n_classes=2,
        labeled_targets=np.ones(5, dtype=np.int64),
        probs=torch.tensor(probs, dtype=torch.float32),
        embeddings=torch.tensor(emb, dtype=torch.float32),
        labeled_embeddings=torch.tensor(lab_h, dtype=torch.float32),
        labeled_probs=torch.tensor(lab_p, dtype=torch.float32),
    )
    assert strategy("isal").query(view, 4, seed=0).tolist() == [11, 12, 13, 10]
    assert strategy("ISAL").query(view, 1, seed=1).tolist() == [11]


def test_alfa_mix_with_only_ood_answers_uses_one_anchor() -> None:
    from alscope.scenarios.base import OOD

    view = alfa_view(np.array([[0.05, 1.0], [3.0, 1.0], [-3.0, 1.0]]))
    view.labeled_targets = np.full(4, OOD)
    assert len(strategy("alfa_mix").query(view, 2, seed=0)) == 2
