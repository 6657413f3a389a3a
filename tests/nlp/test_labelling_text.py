"""``alscope label`` over a file of unlabeled texts with a tiny BERT (frozen and fine-tuned),
answered by a script that plays the annotator, tracked to MLflow."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from nlp_helpers import topic_rows
from typer.testing import CliRunner

from alscope.cli import app

CLASSES = ["World", "Sports", "Business", "Tech"]


def texts_file(folder: Path) -> tuple[Path, dict[str, str]]:
    """texts.jsonl with id and text only; the truth by id."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    with (folder / "texts.jsonl").open("w", encoding="utf-8") as fh:
        for k, (cls, title, body) in enumerate(topic_rows(25, seed=3)):
            sample = f"news-{k}"
            truth[sample] = CLASSES[cls - 1]
            fh.write(json.dumps({"id": sample, "text": f"{title}. {body}"}) + "\n")
    return folder / "texts.jsonl", truth


def invoke(*args: object) -> object:
    return CliRunner().invoke(app, ["label", *map(str, args)])


@pytest.mark.parametrize("mode", ["frozen", "finetune"])
def test_text_project_rounds(tmp_path: Path, tiny_model: Path, mode: str) -> None:
    from alscope.report import load_trials

    data, truth = texts_file(tmp_path / "data")
    seed_ids = list(truth)[:8]
    with (tmp_path / "seed.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([("id", "label"), *((i, truth[i]) for i in seed_ids)])
    project, uri = tmp_path / "proj", f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = invoke(
        "init",
        project,
        "--data",
        data,
        "--classes",
        ",".join(CLASSES),
        "--labels",
        tmp_path / "seed.csv",
        "--backbone",
        "transformer",
        "--backbone-param",
        f"model={tiny_model}",
        "--backbone-param",
        f"mode={mode}",
        "--epochs",
        "3",
        "--strategy",
        "margin",
        "--tracking-uri",
        uri,
        "--experiment",
        "texts",
    )
    assert done.exit_code == 0, done.output
    assert "100 samples of text, 8 labeled" in done.output
    for round_number in range(2):
        assert invoke("next", "-p", project, "-n", "8").exit_code == 0
        batch = project / "rounds" / f"round-{round_number:03d}.csv"
        with batch.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == 8 and all(r["text"] and r["prediction"] in CLASSES for r in rows)
        for row in rows:
            row["label"] = truth[row["id"]]
        with batch.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        imported = invoke("import", "-p", project, batch)
        assert imported.exit_code == 0 and "8 labeled" in imported.output, imported.output
    info = json.loads(invoke("status", "-p", project, "--json").output)
    assert info["labeled"] == 24 and [r["trained_on"] for r in info["rounds"]] == [8, 16]
    trials = load_trials(uri, "texts", include_unfinished=True)  # a project goes on: its run stays open
    assert sorted(trials["n_labeled"]) == [8, 16] and set(trials["strategy"]) == {"margin"}
