"""The plugin's tests: alscope's conformance suite plus golden behaviour.

Run them with ``pytest`` after ``pip install -e .``; they also run from a source
checkout without installing (the plugin is then registered in code).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from alscope.errors import ConfigError
from alscope.registry import Registry
from alscope.strategies.base import PoolView
from alscope.testing.conformance import StrategyConformance, plugin_registry

try:
    from alscope_example_strategy import plugin
except ImportError:  # a source checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from alscope_example_strategy import plugin

from alscope_example_strategy.strategy import InformationDensity, mean_cosine_similarity


class TestInformationDensity(StrategyConformance):
    strategy_name = "information_density"
    strategy_params = {"beta": 1.0}

    def conformance_registry(self) -> Registry:
        return plugin_registry("example", plugin)


class TestInformationDensityBetaZero(TestInformationDensity):
    strategy_params = {"beta": 0.0}


def _cluster_and_outlier(n_cluster: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Equally uncertain samples: a dense cluster near (1, 0, 0) and one outlier (0, 0, 1)."""
    rng = np.random.default_rng(seed)
    cluster = np.array([1.0, 0.0, 0.0]) + rng.normal(0, 0.05, size=(n_cluster, 3))
    embeddings = np.vstack([cluster, [[0.0, 0.0, 1.0]]]).astype(np.float32)
    probs = np.full((n_cluster + 1, 4), 0.25, np.float32)  # all maximally uncertain
    return probs, embeddings


def test_dense_cluster_beats_outlier() -> None:
    probs, embeddings = _cluster_and_outlier()
    outlier = len(probs) - 1
    view = PoolView.from_arrays(probs=probs, embeddings=embeddings)
    strategy = InformationDensity()
    for seed in range(20):
        assert strategy.query(view, 1, seed)[0] != outlier
    # the outlier comes last: every cluster sample is picked before it
    assert outlier not in strategy.query(view, outlier, 0)


def test_beta_zero_is_entropy_sampling() -> None:
    probs, embeddings = _cluster_and_outlier()
    outlier = len(probs) - 1
    view = PoolView.from_arrays(probs=probs, embeddings=embeddings)
    picks = {int(InformationDensity(beta=0.0).query(view, 1, seed)[0]) for seed in range(100)}
    assert outlier in picks and len(picks) > 5  # all tied: the density no longer matters


def test_uncertainty_still_counts() -> None:
    probs, embeddings = _cluster_and_outlier()
    probs[:-1] = [0.997, 0.001, 0.001, 0.001]  # the cluster is now confidently predicted
    view = PoolView.from_arrays(probs=probs, embeddings=embeddings)
    assert InformationDensity().query(view, 1)[0] == len(probs) - 1


def test_labeled_samples_do_not_count_towards_density() -> None:
    probs, embeddings = _cluster_and_outlier()
    mask = np.zeros(len(probs), bool)
    mask[:-2] = True  # label all but one cluster sample and the outlier
    view = PoolView.from_arrays(probs=probs, embeddings=embeddings, labeled_mask=mask)
    scores = InformationDensity().score(view)
    assert torch.allclose(scores[0], scores[1])  # two samples, mean similarity is symmetric


def test_mean_cosine_similarity_matches_the_n_by_n_matrix() -> None:
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(300, 7)).astype(np.float32))
    x[5] = 0.0  # a zero row is similar to nothing
    unit = torch.nn.functional.normalize(x, dim=1)
    expected = (unit @ unit.T).mean(dim=1)
    got = mean_cosine_similarity(x, chunk=64)
    assert torch.allclose(got, expected, atol=1e-5)
    assert got[5] == 0.0


def test_scores_match_the_formula() -> None:
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(200, 5))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    embeddings = np.abs(rng.normal(size=(200, 8)))  # non-negative, as after a ReLU
    view = PoolView.from_arrays(probs=probs, embeddings=embeddings)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    density = (unit @ unit.T).mean(axis=1)
    entropy = -(probs * np.log(probs)).sum(axis=1)
    got = InformationDensity(beta=2.0).score(view).numpy()
    np.testing.assert_allclose(got, entropy * density**2, rtol=1e-4)


def test_beta_must_be_non_negative() -> None:
    with pytest.raises(ConfigError, match="beta"):
        InformationDensity(beta=-1)
    with pytest.raises(ConfigError, match="unknown parameter"):
        InformationDensity(alpha=1)


def test_plugin_module_does_not_import_the_strategy() -> None:
    source = Path(plugin.__file__).read_text()
    assert "import torch" not in source and "alscope_example_strategy.strategy import" not in source
