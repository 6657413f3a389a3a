"""AUBC and training-time overhead of the model-based strategies next to random sampling.

    python benchmarks/bench_aubc.py [--dataset digits] [--trials 3] [--cycles 5]
    python benchmarks/bench_aubc.py --dataset mnist --data-dir /work/shared/data

For each strategy: the AUBC (mean ± std over trials) of test accuracy, the final accuracy,
the mean training time per cycle, its overhead over plain training (random selection, same
seeds, same budget) in seconds and as a multiple, and the mean selection time (pool pass
included). Every run uses the same seeds, so each
strategy starts from the same initial set. Timings are wall clock on this machine and are
noisy on shared machines; they are printed, not asserted.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

STRATEGIES = ["random", "learning_loss", "tidal", "vaal", "ta_vaal", "sraal", "waal", "ceal"]


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
        "training": {"epochs": opts.epochs, "device": opts.device},
        "tracking": {"enabled": False},
    }
    if opts.data_dir:
        config["data_dir"] = opts.data_dir
    if opts.backbone:
        config["backbone"] = opts.backbone
    start = time.perf_counter()
    result = run_experiment(config)
    wall = time.perf_counter() - start
    cycles = [c for t in result.trials for c in t.cycles]
    train = [c.metrics["train_time"] for c in cycles if "train_time" in c.metrics]
    select = [c.metrics["selection_time"] for c in cycles if "selection_time" in c.metrics]
    return {
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
    parser.add_argument("--backbone", default=None, help="default: the dataset's")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--n-initial", type=int, default=100)
    parser.add_argument("--n-query", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated")
    parser.add_argument("--family", default=None, help="every registered strategy of this family")
    opts = parser.parse_args()
    if opts.family:
        from alscope.registry import get_registry

        opts.strategies = ",".join(
            s.name for s in get_registry().specs("strategy") if s.family == opts.family
        )

    import torch

    if opts.threads:
        torch.set_num_threads(opts.threads)
    names = [s.strip() for s in opts.strategies.split(",") if s.strip()]
    if "random" not in names:
        names.insert(0, "random")
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # one untimed short run first: the first fit of a process pays one-off set-up costs
        warm = argparse.Namespace(**{**vars(opts), "trials": 1, "cycles": 0, "epochs": 1})
        run("random", warm, tmp)
        for name in names:
            rows[name] = run(name, opts, tmp)
            r = rows[name]
            print(
                f"  done {name:14s} AUBC {r['aubc']:.4f}  train {r['train']:.2f} s/cycle  "
                f"wall {r['wall']:.0f} s"
            )
    base = rows["random"]["train"]
    print()
    print(
        f"{opts.dataset}: {opts.trials} trial(s), {opts.n_initial} initial + {opts.cycles} x {opts.n_query}, "
        f"{opts.epochs} epochs per cycle, torch threads {torch.get_num_threads()}"
    )
    columns = (
        ("AUBC", 16),
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
        print(
            f"{name:14s} {aubc:>16s} {r['final']:9.4f} {r['train']:13.3f} {r['train'] - base:+9.3f} "
            f"{r['train'] / base:8.2f} {r['select']:8.3f}"
        )


if __name__ == "__main__":
    main()
