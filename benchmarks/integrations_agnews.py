"""The Hugging Face front end on AG News: strategies against random through
``examples/hf_agnews.py`` (MiniLM fine-tuned by a ``transformers.Trainer`` each round).

    python benchmarks/integrations_agnews.py [--strategies random,entropy] [--seeds 0,1]
        [--csv ../shared/data/ag_news/test.csv] [--pool 1000 --test 500 --initial 50 --query 50
         --rounds 3 --steps 100]

Prints the test accuracy per labeled count and the AUBC of every (strategy, seed), then
the mean AUBC per strategy, and the seconds per run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import hf_agnews


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = Path(os.environ.get("ALSCOPE_SHARED_DATA", "../shared/data"))
    parser.add_argument("--csv", type=Path, default=data / "ag_news" / "test.csv")
    parser.add_argument("--strategies", default="random,entropy")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--pool", type=int, default=1000)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--initial", type=int, default=50)
    parser.add_argument("--query", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    aubcs: dict[str, list[float]] = {}
    for strategy in args.strategies.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as state:
                learner = hf_agnews.main(
                    args.csv,
                    strategy,
                    n_pool=args.pool,
                    n_test=args.test,
                    n_initial=args.initial,
                    n_query=args.query,
                    rounds=args.rounds,
                    steps=args.steps,
                    seed=seed,
                    tracking=False,
                    state_dir=Path(state) / "learner",
                )
            curve = "  ".join(f"{h['n_labeled']:.0f}:{h['accuracy']:.3f}" for h in learner.history)
            aubc = learner.state.summary["aubc"]
            aubcs.setdefault(strategy, []).append(aubc)
            seconds = time.perf_counter() - start
            print(f"RESULT {strategy} seed {seed}: {curve}  aubc {aubc:.4f}  ({seconds:.0f} s)")
    for strategy, values in aubcs.items():
        spread = np.std(values, ddof=1) if len(values) > 1 else 0.0
        print(f"MEAN {strategy}: aubc {np.mean(values):.4f} ± {spread:.4f} over {len(values)} seeds")


if __name__ == "__main__":
    main()
