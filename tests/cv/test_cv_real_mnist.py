"""The real MNIST test set (10,000 images) from the shared data folder.

Found through ``ALSCOPE_SHARED_DATA`` (default: ``<repo root>/../shared/data``); skipped with
the reason when the files are not there. Only the t10k files are there (and the training
labels without images), so the pool and the test set are carved from the 10,000 test images.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

pytest.importorskip("alscope_cv", reason="alscope-cv is not installed (pip install ./alscope-cv)")

import numpy as np
from alscope_cv.datasets.digits import MNIST

from alscope import ExperimentConfig, run_experiment
from alscope.data.base import LoadContext

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("ALSCOPE_SHARED_DATA", REPO.parent / "shared" / "data"))
FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(
        not all((SHARED / "mnist" / f).is_file() for f in FILES),
        reason=f"the real MNIST test files ({', '.join(FILES)}) are not in {SHARED / 'mnist'} "
        f"(set ALSCOPE_SHARED_DATA to the shared data folder)",
    ),
]


def test_real_mnist_test_set_is_checked_and_carved() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = MNIST().load(LoadContext(SHARED, seed=0))  # MD5 sums checked (torchvision's)
        again = MNIST().load(LoadContext(SHARED / "mnist", seed=0))  # the folder itself works too
    assert (len(ds.pool), len(ds.test)) == (8000, 2000)
    assert ds.input_spec.shape == (1, 28, 28) and len(ds.classes) == 10
    counts = np.bincount(ds.test.labels, minlength=10)
    assert counts.sum() == 2000 and counts.min() >= 170  # stratified: about a fifth of each class
    assert any("only the test split" in str(w.message) for w in caught)
    np.testing.assert_array_equal(again.test.labels, ds.test.labels)  # the same seeded split


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::alscope_cv.files.DatasetNote")
def test_real_mnist_short_experiment(tmp_path: Path) -> None:
    cfg = ExperimentConfig.model_validate(
        {
            "strategy": "entropy",
            "dataset": {"name": "mnist", "params": {"max_pool_size": 3000}},
            "n_initial": 100,
            "n_query": 100,
            "cycles": 2,
            "seed": 0,
            "data_dir": str(SHARED),
            "results_dir": str(tmp_path / "results"),
            "training": {"epochs": 10, "device": "cpu"},
            "tracking": {"enabled": False},
        }
    )
    result = run_experiment(cfg)
    steps, accuracy, _ = result.curve()
    assert steps.tolist() == [100, 200, 300]
    assert accuracy[-1] > accuracy[0]
    assert accuracy[-1] > 0.8
    assert result.summary["backbone"] == "cnn" and result.summary["n_test"] == 2000


def test_real_mnist_open_set_lfosa_queries_known_classes_entropy_does_not(tmp_path: Path) -> None:
    """The issue's open-set check on real images: with 40% of the pool from unknown digits,
    LfOSA's detector keeps the queries in distribution where entropy chases the unknown."""

    def run(strategy: str) -> list[float]:
        cfg = ExperimentConfig.model_validate(
            {
                "strategy": strategy,
                "dataset": {"name": "mnist", "params": {"max_pool_size": 3000}},
                "scenario": {"name": "openset", "params": {"ood_rate": 0.4}},
                "n_initial": 100,
                "n_query": 100,
                "cycles": 2,
                "seed": 0,
                "data_dir": str(SHARED),
                "results_dir": str(tmp_path / strategy),
                "training": {"epochs": 10, "device": "cpu"},
                "tracking": {"enabled": False},
            }
        )
        cycles = run_experiment(cfg).trials[0].cycles
        return [c.metrics["query_precision"] for c in cycles if "query_precision" in c.metrics]

    lfosa, entropy = run("lfosa"), run("entropy")
    assert len(lfosa) == len(entropy) == 2
    assert min(lfosa) > 0.8
    assert np.mean(lfosa) > np.mean(entropy) + 0.3
