"""``alscope label``: a labelling project over the user's own feature file, answered by a
script that plays the annotator; bad answer files refused with the state unchanged; a
SIGKILL during ``next`` or ``import`` loses nothing and labels nothing twice."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from alscope.cli import app

CLASSES = [str(c) for c in range(10)]


@pytest.fixture(scope="module")
def digits_files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """digits.csv (id + 64 features, no labels), truth by id, 20 seed labels."""
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("digits")
    x, y = load_digits(return_X_y=True)
    gold_x, gold_y, x, y = x[1500:], y[1500:], x[:1500], y[:1500]
    ids = [f"d{i:04d}" for i in range(len(x))]
    with (folder / "digits.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", *(f"f{k}" for k in range(64))])
        writer.writerows([i, *row] for i, row in zip(ids, x.astype(int).tolist(), strict=True))
    with (folder / "gold.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", *(f"f{k}" for k in range(64)), "label"])
        writer.writerows(
            [f"g{k}", *row, c]
            for k, (row, c) in enumerate(zip(gold_x.astype(int).tolist(), gold_y, strict=True))
        )
    seed = np.random.default_rng(0).choice(len(x), 20, replace=False)
    write_answers(folder / "seed.csv", [(ids[i], str(y[i])) for i in seed])
    return {"folder": folder, "truth": dict(zip(ids, map(str, y), strict=True)), "ids": ids}


def write_answers(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("id", "label")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def answer(batch: Path, truth: dict[str, str], out: Path) -> Path:
    """The annotator: fill in the batch file's label column."""
    with batch.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["label"] = truth[row["id"]]
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out


def invoke(*args: str | Path) -> object:
    return CliRunner().invoke(app, ["label", *map(str, args)])


def init(project: Path, files: dict, *extra: str | Path) -> None:
    done = invoke(
        "init",
        project,
        "--data",
        files["folder"] / "digits.csv",
        "--classes",
        ",".join(CLASSES),
        "--labels",
        files["folder"] / "seed.csv",
        "--epochs",
        "10",
        "--no-tracking",
        *extra,
    )
    assert done.exit_code == 0, done.output


def state_bytes(project: Path) -> bytes:
    return (project / "state" / "state.json").read_bytes()


def test_rounds_of_next_and_import_label_the_pool(tmp_path: Path, digits_files: dict) -> None:
    project = tmp_path / "proj"
    gold = digits_files["folder"] / "gold.csv"
    options = ["--validation-fraction", "0.2", "--stop", "stabilizing_predictions", "--min-steps", "200"]
    init(project, digits_files, *options, "--test", gold)
    for round_number in range(3):
        made = invoke("next", "-p", project, "-n", "20")
        assert made.exit_code == 0, made.output
        batch = project / "rounds" / f"round-{round_number:03d}.csv"
        with batch.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == 20 and {r["round"] for r in rows} == {str(round_number)}
        assert all(r["label"] == "" and r["prediction"] in CLASSES and float(r["score"]) >= 0 for r in rows)
        imported = invoke("import", "-p", project, answer(batch, digits_files["truth"], tmp_path / "a.csv"))
        assert imported.exit_code == 0 and "20 labeled" in imported.output, imported.output
    shown = invoke("status", "-p", project, "--json")
    info = json.loads(shown.output)
    assert info["labeled"] == 80 and info["pending"] == 0 and sum(info["per_class"].values()) == 80
    assert [r["trained_on"] for r in info["rounds"]] == [20, 40, 60]
    assert all(r["answered"] and r["val_accuracy"] is not None for r in info["rounds"])
    tested = [r["test_accuracy"] for r in info["rounds"]]
    assert tested[-1] > tested[0] and tested[-1] > 0.6  # the gold set, evaluated every round
    assert "stabilizing_predictions" in info["rounds"][-1]["stopping"]
    assert invoke("status", "-p", project).exit_code == 0
    exported = invoke("export", "-p", project, tmp_path / "out")
    assert exported.exit_code == 0, exported.output
    with (tmp_path / "out" / "labels.csv").open(newline="") as fh:
        labels = list(csv.DictReader(fh))
    assert len(labels) == 80 and all(digits_files["truth"][r["id"]] == r["label"] for r in labels)
    import torch

    model = torch.load(tmp_path / "out" / "model.pt", weights_only=True)
    assert model["classes"] == CLASSES and model["n_labeled"] == 80


def test_next_twice_gives_the_same_batch_and_import_twice_changes_nothing(
    tmp_path: Path, digits_files: dict
) -> None:
    project = tmp_path / "proj"
    init(project, digits_files)
    first = project / "rounds" / "round-000.csv"
    assert invoke("next", "-p", project, "-n", "15").exit_code == 0
    copy = first.read_bytes()
    assert invoke("next", "-p", project, "-n", "15").exit_code == 0
    assert first.read_bytes() == copy
    answers = answer(first, digits_files["truth"], tmp_path / "a.csv")
    assert "15 labeled" in invoke("import", "-p", project, answers).output
    before = state_bytes(project)
    again = invoke("import", "-p", project, answers)
    assert again.exit_code == 0 and "15 unchanged" in again.output
    assert (
        json.loads(before)["trials"][0]["labeled"] == json.loads(state_bytes(project))["trials"][0]["labeled"]
    )


def test_skip_unsure_relabel(tmp_path: Path, digits_files: dict) -> None:
    project = tmp_path / "proj"
    init(project, digits_files)
    assert invoke("next", "-p", project, "-n", "10").exit_code == 0
    batch = project / "rounds" / "round-000.csv"
    with batch.open(newline="") as fh:
        ids = [r["id"] for r in csv.DictReader(fh)]
    truth = digits_files["truth"]
    rows = [(ids[0], "skip"), (ids[1], "UNSURE"), *((i, truth[i]) for i in ids[2:])]
    done = invoke("import", "-p", project, write_answers(tmp_path / "a.csv", rows))
    assert "8 labeled" in done.output and "2 set aside" in done.output, done.output
    assert invoke("next", "-p", project, "-n", "10").exit_code == 0
    with (project / "rounds" / "round-001.csv").open(newline="") as fh:
        offered = {r["id"] for r in csv.DictReader(fh)}
    assert not offered & set(ids)  # neither answered nor set-aside samples come again
    wrong = "1" if truth[ids[2]] != "1" else "2"
    changed = write_answers(tmp_path / "b.csv", [(ids[2], wrong)])
    refused = invoke("import", "-p", project, changed)
    assert refused.exit_code != 0 and "another answer" in refused.output and "--relabel" in refused.output
    relabeled = invoke("import", "-p", project, changed, "--relabel")
    assert relabeled.exit_code == 0 and "1 relabeled" in relabeled.output
    info = json.loads(invoke("status", "-p", project, "--json").output)
    assert info["set_aside"] == {"skip": 1, "unsure": 1}


def test_every_malformed_answer_file_is_refused_and_the_state_is_unchanged(
    tmp_path: Path, digits_files: dict
) -> None:
    project = tmp_path / "proj"
    init(project, digits_files)
    assert invoke("next", "-p", project, "-n", "5").exit_code == 0
    good_id = digits_files["ids"][1]
    other_id = digits_files["ids"][2]
    cases: dict[str, tuple[bytes, str]] = {
        "empty.csv": (b"", "is empty"),
        "blank.csv": (b"\n\n", "is empty"),
        "header.csv": (b"sample,answer\nd0001,3\n", "no id and no label column"),
        "nolabel.csv": (b"id,prediction\nd0001,3\n", "no label column"),
        "unknown_id.csv": (b"id,label\nzzz,3\n", "unknown id 'zzz'"),
        "typo_id.csv": (b"id,label\nd00001,3\n", "did you mean"),
        "unknown_class.csv": (f"id,label\n{good_id},eleven\n".encode(), "unknown class 'eleven'"),
        "duplicate.csv": (f"id,label\n{good_id},3\n{good_id},4\n".encode(), "answered twice"),
        "latin1.csv": (f"id,label\n{good_id},3\n{other_id},caf\u00e9\n".encode("latin-1"), "not UTF-8"),
        "extra_field.csv": (f"id,label\n{good_id},3,4\n".encode(), "more fields than the header"),
        "no_id.csv": (b"id,label\n,3\n", "no id"),
        "only_blank.csv": (f"id,label\n{good_id},\n".encode(), "answers nothing"),
        "bad.jsonl": (b'{"id": "d0001", "label": "3"}\nnot json\n', "not a JSON object"),
        "list.jsonl": (b'["d0001", "3"]\n', "not a JSON object"),
        "answers.txt": (b"id,label\n", "no such answer file"),
    }
    before = state_bytes(project)
    for name, (content, message) in cases.items():
        path = tmp_path / name
        if name != "answers.txt":
            path.write_bytes(content)
        done = invoke("import", "-p", project, path)
        assert done.exit_code != 0, name
        assert message in done.output, (name, done.output)
        assert "Traceback" not in done.output and len(done.output.strip().splitlines()) == 1, (
            name,
            done.output,
        )
        assert state_bytes(project) == before, name


def test_bad_projects_get_one_line(tmp_path: Path, digits_files: dict) -> None:
    data = digits_files["folder"] / "digits.csv"
    cases = [
        (["init", tmp_path / "a", "--data", tmp_path / "missing.csv", "--classes", "a,b"], "is not a file"),
        (["init", tmp_path / "a", "--data", data, "--classes", "a"], "at least 2 classes"),
        (["init", tmp_path / "a", "--data", data, "--classes", "a,a,b"], "twice"),
        (["init", tmp_path / "a", "--data", data, "--classes", "a,skip"], "cannot be a class"),
        (
            ["init", tmp_path / "a", "--data", data, "--classes", "a,b", "--strategy", "entropyy"],
            "did you mean",
        ),
        (["init", tmp_path / "a", "--data", data, "--classes", "a,b", "--kind", "pictures"], "accepted are"),
        (
            ["init", tmp_path / "a", "--data", data, "--classes", "a,b", "--kind", "images"],
            "read from a folder",
        ),
        (["init", tmp_path / "a", "--data", data, "--classes", "a,b", "--kind", "text"], "no text column"),
        (["init", tmp_path / "a", "--data", data, "--classes", "a,b", "--test", data], "labels every sample"),
        (["next", "-p", tmp_path / "nothing"], "not a labelling project"),
        (["status", "-p", tmp_path / "nothing"], "not a labelling project"),
    ]
    for args, message in cases:
        done = invoke(*args)
        assert done.exit_code != 0 and message in done.output, (args, done.output)
        assert "Traceback" not in done.output
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    refused = invoke("init", foreign, "--data", data, "--classes", "a,b")
    assert refused.exit_code != 0 and "with files in it" in refused.output
    assert (foreign / "notes.txt").read_text() == "mine" and len(list(foreign.iterdir())) == 1
    project = tmp_path / "empty"
    done = invoke("init", project, "--data", data, "--classes", ",".join(CLASSES), "--no-tracking")
    assert done.exit_code == 0, done.output
    nothing = invoke("next", "-p", project)
    assert nothing.exit_code != 0 and "nothing is labeled yet" in nothing.output
    again = invoke("init", project, "--data", data, "--classes", ",".join(CLASSES))
    assert again.exit_code != 0 and "holds a labelling project already" in again.output


def test_a_changed_data_file_is_refused(tmp_path: Path, digits_files: dict) -> None:
    data = tmp_path / "digits.csv"
    data.write_bytes((digits_files["folder"] / "digits.csv").read_bytes())
    project = tmp_path / "proj"
    assert (
        invoke("init", project, "--data", data, "--classes", ",".join(CLASSES), "--no-tracking").exit_code
        == 0
    )
    with data.open("a") as fh:
        fh.write("extra," + ",".join(["0"] * 64) + "\n")
    done = invoke("status", "-p", project)
    assert done.exit_code != 0 and "changed since alscope label init" in done.output


@pytest.mark.slow
@pytest.mark.parametrize("command", ["next", "import"])
def test_sigkill_during_a_command_loses_nothing(tmp_path: Path, digits_files: dict, command: str) -> None:
    """Kill the command at several moments; run it again: the state is the one a single
    uninterrupted command leaves, and no sample is labeled twice."""
    project = tmp_path / "proj"
    init(project, digits_files, "--epochs", "30")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cli = [sys.executable, "-m", "alscope.cli", "label"]
    if command == "import":
        assert invoke("next", "-p", project, "-n", "20").exit_code == 0
        answers = answer(project / "rounds" / "round-000.csv", digits_files["truth"], tmp_path / "a.csv")
        args = [*cli, "import", "-p", str(project), str(answers)]
    else:
        args = [*cli, "next", "-p", str(project), "-n", "20"]
    for delay in (0.5, 2.0, 4.0, 6.0):
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        json.loads(state_bytes(project))  # never half written
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    state = json.loads(state_bytes(project))["trials"][0]
    assert len(state["labeled"]) == len(set(state["labeled"]))
    if command == "next":
        assert len(state["cycles"]) == 1 and len(state["cycles"][0]["selected"]) == 20
        assert (project / "rounds" / "round-000.csv").is_file()
    else:
        assert len(state["labeled"]) == 40 and state["cycles"][0]["logged"]
