"""Whole experiments and the command line with alscope-cv's datasets and backbones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("alscope_cv", reason="alscope-cv is not installed (pip install ./alscope-cv)")

from cv_fakes import save_image, write_image_folder, write_medmnist, write_mnist
from typer.testing import CliRunner

from alscope import ExperimentConfig, run_experiment
from alscope.cli import app

runner = CliRunner()


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    # --json output is stdout alone; warnings (an under-fitted short run's) go to stderr
    return result.exit_code, result.stdout if "--json" in args and result.exit_code == 0 else result.output


def config(tmp_path: Path, **overrides: object) -> ExperimentConfig:
    data = {
        "strategy": "entropy",
        "dataset": {"name": "mnist", "params": {"verify_checksums": False}},
        "n_initial": 20,
        "n_query": 20,
        "cycles": 2,
        "data_dir": str(tmp_path / "data"),
        "results_dir": str(tmp_path / "results"),
        "training": {"epochs": 3, "device": "cpu", "batch_size": 32},
        "tracking": {"enabled": False},
    }
    data.update(overrides)
    return ExperimentConfig.model_validate(data)


def test_mnist_experiment_with_the_default_backbone(tmp_path: Path) -> None:
    write_mnist(tmp_path / "data" / "MNIST" / "raw", 300, 100)
    result = run_experiment(config(tmp_path, training={"epochs": 10, "device": "cpu", "batch_size": 16}))
    s = result.summary
    assert (s["dataset"], s["backbone"], s["n_pool"], s["n_test"]) == ("mnist", "cnn", 300, 100)
    steps, mean, _ = result.curve()
    assert steps.tolist() == [20, 40, 60]
    assert all(0.0 <= a <= 1.0 for a in mean)
    assert mean[-1] > 0.5  # the patterns are learnable (chance: 0.1)


def test_resnet_on_digits(tmp_path: Path) -> None:
    """``--backbone resnet18 --dataset mnist``: the backbone sizes itself from (1, 28, 28)."""
    write_mnist(tmp_path / "data" / "mnist", 60, 20)
    cfg = config(
        tmp_path,
        backbone="resnet18",
        strategy="margin",
        cycles=1,
        n_initial=10,
        n_query=10,
        training={"epochs": 1, "device": "cpu"},
    )
    result = run_experiment(cfg)
    assert result.summary["backbone"] == "resnet18"
    assert len(result.trials[0].cycles) == 2


def test_cli_runs_an_image_folder_with_no_code(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    write_image_folder(photos, classes=("apple", "pear"), per_class=12, size=40, suffixes=(".jpg", ".png"))
    code, out = cli(
        "run",
        "--dataset",
        "imagefolder",
        "--dataset-param",
        f"path={photos}",
        "--dataset-param",
        "image_size=32",
        "--dataset-param",
        "num_workers=0",
        "--backbone",
        "cnn",
        "--strategy",
        "entropy",
        "--n-initial",
        "4",
        "--n-query",
        "4",
        "--cycle",
        "2",
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--results-dir",
        str(tmp_path / "results"),
        "--no-track",
        "--json",
    )
    assert code == 0, out
    payload = json.loads(out)
    assert payload["summary"]["dataset"] == "imagefolder (photos)"  # as typed, and the folder
    assert payload["summary"]["n_pool"] + payload["summary"]["n_test"] == 24
    assert payload["curve"]["n_labeled"] == [4, 8, 12]


def test_cli_missing_data_is_one_line(tmp_path: Path) -> None:
    code, out = cli(
        "run",
        "--dataset",
        "CIFAR10",
        "--data-dir",
        str(tmp_path),
        "--no-track",
        "--results-dir",
        str(tmp_path),
    )
    assert code == 1
    assert "CIFAR-10 not found" in out and "--download" in out and "Traceback" not in out


def test_cli_broken_image_is_one_line(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    write_image_folder(photos, per_class=4, size=16)
    save_image(photos / "cat" / "ok.png", __import__("numpy").zeros((3, 8, 8), dtype="uint8"))
    (photos / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but nothing else")
    code, out = cli(
        "run",
        "--dataset",
        "imagefolder",
        "--dataset-param",
        f"path={photos}",
        "--no-track",
        "--results-dir",
        str(tmp_path / "results"),
    )
    assert code == 1 and "broken.png" in out and "Traceback" not in out


def test_cli_info_and_list_show_the_plugin() -> None:
    code, out = cli("info", "cifar10")
    assert code == 0
    for text in (
        "from alscope-cv",
        "namespace 'cv'",
        "Krizhevsky",
        "test_fraction",
        "max_pool_size",
        "augment",
    ):
        assert text in out
    code, out = cli("list", "backbones")
    assert code == 0
    for name in ("cnn", "resnet18", "resnet34", "resnet50", "vgg16", "alscope-cv"):
        assert name in out
    code, out = cli("info", "cv:resnet18")
    assert code == 0 and "weights" in out and "dropout" in out and "style" in out


def test_cli_medmnist_subset_name(tmp_path: Path) -> None:
    """``--dataset PneumoniaMNIST`` (ALScope's, AutoAL's name) is MedMNIST's subset."""
    data = tmp_path / "data"
    write_medmnist(data, "pneumoniamnist", 1, 2, n=(40, 10, 20))
    code, out = cli(
        "run",
        "--dataset",
        "PneumoniaMNIST",
        "--dataset-param",
        "verify_checksums=false",
        "--backbone",
        "cnn",
        "--data-dir",
        str(data),
        "--n-initial",
        "6",
        "--n-query",
        "6",
        "--cycle",
        "1",
        "--epochs",
        "1",
        "--no-track",
        "--results-dir",
        str(tmp_path / "results"),
        "--json",
    )
    assert code == 0, out
    assert json.loads(out)["summary"]["dataset"] == "pneumoniamnist"
