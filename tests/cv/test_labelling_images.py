"""``alscope label`` over a folder of the user's images: loose files with 20 labeled by
hand, or class subfolders holding the labeled ones; a gold folder evaluated every round."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from alscope.cli import app

pytest.importorskip("alscope_cv")
Image = pytest.importorskip("PIL.Image")

CLASSES = ["red", "blue"]


def write_images(folder: Path, n: int, seed: int, subfolders: bool = False) -> dict[str, str]:
    """Noisy 16-px PNGs, reddish or bluish; the class of each relative path."""
    rng = np.random.default_rng(seed)
    truth = {}
    for k in range(n):
        cls = k % 2
        pixels = rng.integers(0, 90, size=(16, 16, 3))
        pixels[..., 0 if cls == 0 else 2] += 150
        name = f"{CLASSES[cls]}/img{k:03d}.png" if subfolders else f"img{k:03d}.png"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / name)
        truth[name] = CLASSES[cls]
    return truth


def invoke(*args: object) -> object:
    return CliRunner().invoke(app, ["label", *map(str, args)])


def rounds(project: Path, truth: dict[str, str], n: int, count: int) -> None:
    for round_number in range(count):
        made = invoke("next", "-p", project, "-n", n)
        assert made.exit_code == 0, made.output
        batch = project / "rounds" / f"round-{round_number:03d}.csv"
        with batch.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == n and all(r["prediction"] in CLASSES for r in rows)
        with batch.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["id", "label"])
            writer.writerows((r["id"], truth[r["id"]]) for r in rows)
        imported = invoke("import", "-p", project, batch)
        assert imported.exit_code == 0 and f"{n} labeled" in imported.output, imported.output


def test_loose_images_with_twenty_labeled_by_hand(tmp_path: Path) -> None:
    truth = write_images(tmp_path / "photos", 80, seed=1)
    gold = tmp_path / "gold"
    write_images(gold, 40, seed=2, subfolders=True)
    hand = list(truth)[:20]
    with (tmp_path / "hand.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([("id", "label"), *((name, truth[name]) for name in hand)])
    project = tmp_path / "proj"
    done = invoke(
        "init",
        project,
        "--data",
        tmp_path / "photos",
        "--classes",
        ",".join(CLASSES),
        "--labels",
        tmp_path / "hand.csv",
        "--test",
        gold,
        "--epochs",
        "5",
        "--min-steps",
        "60",
        "--no-tracking",
    )
    assert done.exit_code == 0, done.output
    assert "80 samples of images, 20 labeled" in done.output
    rounds(project, truth, 10, 2)
    info = json.loads(invoke("status", "-p", project, "--json").output)
    assert info["labeled"] == 40 and info["backbone"] == "cnn"
    assert all(r["test_accuracy"] is not None for r in info["rounds"])
    assert info["rounds"][-1]["test_accuracy"] > 0.8  # the colours give the class away


def test_class_subfolders_are_labels_and_loose_images_are_not(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    labeled = write_images(photos, 12, seed=3, subfolders=True)
    loose = write_images(photos, 40, seed=4)
    project = tmp_path / "proj"
    done = invoke(
        "init", project, "--data", photos, "--classes", ",".join(CLASSES), "--epochs", "3", "--no-tracking"
    )
    assert done.exit_code == 0 and "52 samples of images, 12 labeled" in done.output, done.output
    rounds(project, {**labeled, **loose}, 8, 1)
    (photos / "extra.png").write_bytes((photos / "img000.png").read_bytes())
    changed = invoke("status", "-p", project)
    assert changed.exit_code != 0 and "changed since alscope label init" in changed.output
