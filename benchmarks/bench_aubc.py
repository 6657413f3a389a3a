"""AUBC and training-time overhead of strategies next to random sampling.

    python benchmarks/bench_aubc.py [--dataset digits] [--trials 3] [--cycles 5]
    python benchmarks/bench_aubc.py --dataset mnist --data-dir ../shared/data --n-initial 100 \
        --n-query 100 --cycles 3 --strategies entropy,margin,bald --threads 1
    python benchmarks/bench_aubc.py ... --all          # every registered strategy

Without ``--epochs`` / ``--min-steps`` each run uses the default training recipe, which
is what a user gets with no recipe flags.

For each strategy: the AUBC (mean ± std over trials) of test accuracy, whether it beats
random's mean, the largest share of one class in its first query (worst trial), the
mean training accuracy of the cycles' models, the final accuracy,
the mean training time per cycle, its overhead over plain training (random selection, same
seeds, same budget) in seconds and as a multiple, and the mean selection time (pool pass
included). Every run uses the same seeds, so each
strategy starts from the same initial set. Timings are wall clock on this machine and are
noisy on shared machines; they are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

STRATEGIES = ["random", "learning_loss", "tidal", "vaal", "ta_vaal", "sraal", "waal", "ceal"]


def params_of(items: list[str], option: str) -> dict[str, Any]:
    from alscope.config import parse_key_value

    return dict(parse_key_value(item, option) for item in items)


def run(name: str, opts: argparse.Namespace, results_dir: str) -> dict[str, Any]:
    from alscope.engine.experiment import run_experiment

    config: dict[str, Any] = {
        "strategy": name,
        "dataset": opts.dataset,
        "trials": opts.trials,
        "cycles": opts.cycles,
        "n_initial": opts.n_initial,
        "n_query": opts.n_query,
        "seed": opts.seed,
        "results_dir": results_dir,
        "training": {"device": opts.device},
        "tracking": {"enabled": False},
    }
    for key in ("epochs", "min_steps", "lr"):
        if getattr(opts, key) is not None:
            config["training"][key] = getattr(opts, key)
    if opts.threads:
        config["training"]["threads"] = opts.threads
    if opts.data_dir:
        config["data_dir"] = opts.data_dir
    if opts.dataset_param:
        config["dataset"] = {"name": opts.dataset, "params": params_of(opts.dataset_param, "--dataset-param")}
    if opts.strategy_param and name != "random":
        config["strategy"] = {"name": name, "params": params_of(opts.strategy_param, "--strategy-param")}
    if opts.backbone:
        config["backbone"] = {
            "name": opts.backbone,
            "params": params_of(opts.backbone_param, "--backbone-param"),
        }
    start = time.perf_counter()
    result = run_experiment(config)
    wall = time.perf_counter() - start
    cycles = [c for t in result.trials for c in t.cycles]
    train = [c.metrics["train_time"] for c in cycles if "train_time" in c.metrics]
    select = [c.metrics["selection_time"] for c in cycles if "selection_time" in c.metrics]
    fitted = [c.metrics["train_accuracy"] for c in cycles if "train_accuracy" in c.metrics]
    first_share = 0.0
    for trial in result.trials:
        first = np.asarray(trial.labels[opts.n_initial : opts.n_initial + opts.n_query])
        if len(first):
            first_share = max(first_share, np.bincount(first[first >= 0]).max() / len(first))
    return {
        "first_share": first_share,
        "train_acc": statistics.mean(fitted) if fitted else float("nan"),
        "aubc": result.summary["aubc"],
        "aubc_std": result.summary["aubc_std"],
        "final": result.summary["final_accuracy"],
        "train": statistics.mean(train),
        "select": statistics.mean(select) if select else 0.0,
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--dataset-param", action="append", default=[], help="key=value, repeatable")
    parser.add_argument("--backbone", default=None, help="default: the dataset's")
    parser.add_argument("--backbone-param", action="append", default=[], help="key=value, repeatable")
    parser.add_argument(
        "--strategy-param",
        action="append",
        default=[],
        help="key=value, repeatable; given to every strategy but random",
    )
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--n-initial", type=int, default=100)
    parser.add_argument("--n-query", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--min-steps", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--lr", type=float, default=None, help="default: the recipe's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated")
    parser.add_argument("--family", default=None, help="every registered strategy of this family")
    parser.add_argument("--all", action="store_true", help="every registered strategy")
    parser.add_argument(
        "--no-random",
        action="store_true",
        help="do not add random (to run strategies in parallel processes, one of them running random); "
        "the comparisons with random are then left out",
    )
    parser.add_argument(
        "--skip", default="", help="comma-separated strategies left out (with --all/--family)"
    )
    opts = parser.parse_args()
    if opts.backbone_param and not opts.backbone:
        parser.error("--backbone-param needs --backbone")
    if opts.family or opts.all:
        from alscope.registry import get_registry

        skip = {s.strip() for s in opts.skip.split(",") if s.strip()}
        opts.strategies = ",".join(
            s.name
            for s in get_registry().specs("strategy")
            if (opts.all or s.family == opts.family) and s.name not in skip
        )

    import torch

    if opts.threads:
        torch.set_num_threads(opts.threads)
    names = [s.strip() for s in opts.strategies.split(",") if s.strip()]
    if "random" not in names and not opts.no_random:
        names.insert(0, "random")
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # one untimed short run first: the first fit of a process pays one-off set-up costs
        warm = argparse.Namespace(**{**vars(opts), "trials": 1, "cycles": 0, "epochs": 1, "min_steps": 0})
        run("random", warm, tmp)
        for name in names:
            try:
                rows[name] = run(name, opts, tmp)
            except Exception as exc:  # one strategy's failure must not lose the others' figures
                print(f"  FAILED {name}: {type(exc).__name__}: {exc}", flush=True)
                continue
            r = rows[name]
            print(
                f"  done {name:14s} AUBC {r['aubc']:.4f}  first-query share {r['first_share']:.2f}  "
                f"train {r['train']:.2f} s/cycle  wall {r['wall']:.0f} s",
                flush=True,
            )
    if opts.json:
        Path(opts.json).write_text(json.dumps({"options": vars(opts), "rows": rows}, indent=2))
    baseline = rows.get("random")
    print()
    print(
        f"{opts.dataset}: {opts.trials} trial(s), {opts.n_initial} initial + {opts.cycles} x {opts.n_query}, "
        f"recipe epochs={opts.epochs or 'default'} min_steps={opts.min_steps or 'default'} "
        f"lr={opts.lr or 'default'}, "
        f"torch threads {torch.get_num_threads()}"
    )
    columns = (
        ("AUBC", 16),
        ("> random", 8),
        ("1st-query max", 13),
        ("train acc", 9),
        ("final acc", 9),
        ("train s/cycle", 13),
        ("+ s/cycle", 9),
        ("x random", 8),
        ("select s", 8),
    )
    header = f"{'strategy':14s} " + " ".join(f"{name:>{width}s}" for name, width in columns)
    print(header)
    print("-" * len(header))
    for name, r in rows.items():
        aubc = f"{r['aubc']:.4f} ± {r['aubc_std']:.4f}"
        if baseline is None:
            beats, more, times = "-", "-", "-"
        else:
            beats = "-" if name == "random" else ("yes" if r["aubc"] > baseline["aubc"] else "no")
            more, times = f"{r['train'] - baseline['train']:+.3f}", f"{r['train'] / baseline['train']:.2f}"
        print(
            f"{name:14s} {aubc:>16s} {beats:>8s} {r['first_share']:13.2f} {r['train_acc']:9.3f} "
            f"{r['final']:9.4f} {r['train']:13.3f} {more:>9s} {times:>8s} {r['select']:8.3f}"
        )


if __name__ == "__main__":
    main()
