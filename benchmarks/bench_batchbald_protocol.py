"""The BatchBALD MNIST protocol (Kirsch, van Amersfoort & Gal, NeurIPS 2019), at alscope's
default recipe, beside the figures of the official runs.

    python benchmarks/bench_batchbald_protocol.py --data-dir ../shared/data
    python benchmarks/bench_batchbald_protocol.py --data-dir ../shared/data --ablation 5,10,40
    python benchmarks/bench_batchbald_protocol.py ... --n-drop 20 --trials 3 --threads 2

Protocol: 20 initial labels (2 per class), acquisitions of ``--batch`` (10) up to
``--budget`` (300) labels, ``--trials`` seeds. For random, bald and batchbald it prints,
per trial and as quartiles over trials, the labels needed to reach 90 % and 95 % test
accuracy ("-" when a trial never does within the budget), and the AUBC. ``--ablation``
adds BALD and BatchBALD at other acquisition sizes (the paper's Figure 4).

What differs from the paper, and is printed with the results: the pool and the test set
are carved from the MNIST *test* set (8,000 / 2,000; the training images are not on
these machines), where the paper draws from the 60,000 training images and tests on
the 10,000 test images; training is alscope's default recipe (``min_steps`` floor, no
validation set) where the paper holds out 1,024 labeled validation images for early
stopping (``--validation-fraction`` turns on alscope's early stopping on a share of the
labeled set instead). The small CNN is alscope's (dropout after the conv blocks and the
hidden layer, as the paper's BayesianNet, but narrower).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import numpy as np

#: labels to reach 90 % / 95 % in the official runs (BlackHC/BatchBALD, laaos_results/paper,
#: six seeds each, K = 100, 20 initial labels, up to 300): sorted per seed, None = not reached.
#: The paper's Table 1 reports quartiles of the same kind of runs.
OFFICIAL = {
    ("batchbald", 10): ([80, 80, 100, 110, 120, 120], [180, 200, 210, 240, 240, 260]),
    ("bald", 10): ([130, 130, 130, 180, 180, 200], [250, 260, 260, None, None, None]),
    ("batchbald", 5): ([75, 90, 90, 100, 105, 105], [170, 175, 190, 200, 220, 235]),
    ("batchbald", 40): ([140, 140, 140, 140, 180, 180], [260, 260, 300, 300, 300, None]),
    ("bald", 1): ([78, 86, 97, 101, 102, 105], [173, 198, 207, 226, 227, 244]),
}


def labels_to_reach(counts: np.ndarray, accuracy: np.ndarray, target: float) -> int | None:
    reached = np.flatnonzero(accuracy >= target)
    return int(counts[reached[0]]) if len(reached) else None


def quartiles(values: list[int | None]) -> str:
    """25 / 50 / 75 % quartiles; a trial that never reached counts as above every budget."""
    if not values:
        return "-"
    as_float = np.array([np.inf if v is None else v for v in values], dtype=float)
    q = np.percentile(as_float, [25, 50, 75], method="lower")
    return " / ".join("-" if np.isinf(v) else f"{int(v)}" for v in q)


def run(strategy: str, batch: int, opts: argparse.Namespace, results_dir: str) -> dict[str, Any]:
    from alscope.engine.experiment import run_experiment

    cycles = (opts.budget - opts.n_initial) // batch
    training: dict[str, Any] = {"device": opts.device}
    if opts.threads:
        training["threads"] = opts.threads
    if opts.validation_fraction:
        training["validation_fraction"] = opts.validation_fraction
    params: dict[str, Any] = {}
    if strategy != "random":
        params["n_drop"] = opts.n_drop
    config = {
        "strategy": {"name": strategy, "params": params},
        "dataset": "mnist",
        "data_dir": opts.data_dir,
        "n_initial": opts.n_initial,
        "initial": "stratified",
        "n_query": batch,
        "cycles": cycles,
        "trials": opts.trials,
        "seed": opts.seed,
        "results_dir": results_dir,
        "training": training,
        "tracking": {"enabled": False},
    }
    start = time.perf_counter()
    result = run_experiment(config)
    reach90, reach95 = [], []
    for trial in result.trials:
        counts = np.array([c.n_labeled for c in trial.cycles])
        acc = np.array([c.metrics["accuracy"] for c in trial.cycles])
        reach90.append(labels_to_reach(counts, acc, 0.90))
        reach95.append(labels_to_reach(counts, acc, 0.95))
    return {
        "reach90": reach90,
        "reach95": reach95,
        "aubc": result.summary["aubc"],
        "aubc_std": result.summary["aubc_std"],
        "wall": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", required=True, help="folder holding mnist/ (the shared data)")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-initial", type=int, default=20)
    parser.add_argument("--batch", type=int, default=10, help="acquisition size")
    parser.add_argument("--budget", type=int, default=300, help="labels at the end")
    parser.add_argument("--n-drop", type=int, default=100, help="MC dropout samples K (the paper's 100)")
    parser.add_argument("--strategies", default="random,bald,batchbald")
    parser.add_argument(
        "--ablation", default="", help="more acquisition sizes for bald and batchbald, e.g. 5,40"
    )
    parser.add_argument("--validation-fraction", type=float, default=0.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    opts = parser.parse_args()

    cells = [(s.strip(), opts.batch) for s in opts.strategies.split(",") if s.strip()]
    for size in (int(b) for b in opts.ablation.split(",") if b.strip()):
        cells += [("bald", size), ("batchbald", size)]
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for strategy, batch in cells:
            if (strategy, batch) in rows:
                continue
            r = rows[(strategy, batch)] = run(strategy, batch, opts, tmp)
            print(
                f"  done {strategy:10s} b={batch:<3d} to 90 %: {r['reach90']}  to 95 %: {r['reach95']}  "
                f"AUBC {r['aubc']:.4f}  wall {r['wall']:.0f} s",
                flush=True,
            )
    print()
    print(
        f"MNIST (pool/test carved from the test set, 8,000 / 2,000), {opts.n_initial} initial (2 per "
        f"class) to {opts.budget} labels, K = {opts.n_drop}, {opts.trials} trials, default recipe"
        + (f", validation {opts.validation_fraction}" if opts.validation_fraction else "")
    )
    header = (
        f"{'strategy':10s} {'b':>3s} {'90 % (25/50/75)':>17s} {'95 % (25/50/75)':>17s} "
        f"{'AUBC':>16s} | {'official 90 %':>15s} {'official 95 %':>15s}"
    )
    print(header)
    print("-" * len(header))
    for (strategy, batch), r in rows.items():
        official = OFFICIAL.get((strategy, batch))
        paper90, paper95 = (quartiles(list(v)) for v in official) if official else ("-", "-")
        aubc = f"{r['aubc']:.4f} ± {r['aubc_std']:.4f}"
        print(
            f"{strategy:10s} {batch:3d} {quartiles(r['reach90']):>17s} {quartiles(r['reach95']):>17s} "
            f"{aubc:>16s} | {paper90:>15s} {paper95:>15s}"
        )


if __name__ == "__main__":
    main()
