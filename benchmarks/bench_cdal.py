"""Speed and memory of the ``cdal`` strategy (greedy k-center under the symmetric KL).

    python benchmarks/bench_cdal.py                    # N = 10,000 and 50,000, C = 10
    python benchmarks/bench_cdal.py --n 200000 --classes 100

Setting: Dirichlet(0.3) softmax vectors for ``--n`` unlabeled and 1,000 labeled samples,
budget 1,000, one ``select`` call through a ``PoolView``, on this machine's CPU. Peak RSS is
measured over the data (the arrays themselves excluded). Figures vary with the machine's
load; they are printed, not asserted.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _memory import peak_rss_mib, reset_peak


def measure(n: int, classes: int, labeled: int, budget: int) -> tuple[float, float]:
    import alscope
    from alscope.strategies.base import PoolView

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(classes, 0.3), size=n + labeled).astype(np.float32)
    mask = np.zeros(n + labeled, bool)
    mask[:labeled] = True
    view = PoolView.from_arrays(probs=probs, labeled_mask=mask, labeled_targets=np.zeros(labeled, int))
    strategy = alscope.get_strategy("cdal")
    base = reset_peak()
    start = time.perf_counter()
    picks = strategy.select(view, budget, np.random.default_rng(0))
    seconds = time.perf_counter() - start
    assert len(set(picks.tolist())) == budget
    return seconds, peak_rss_mib() - base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, action="append", help="unlabeled samples (repeatable)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--labeled", type=int, default=1000)
    parser.add_argument("--budget", type=int, default=1000)
    args = parser.parse_args()
    for n in args.n or [10_000, 50_000]:
        seconds, mib = measure(n, args.classes, args.labeled, args.budget)
        print(
            f"cdal N={n:>9,} C={args.classes} L={args.labeled} budget={args.budget}: "
            f"{seconds:.2f} s, {mib:.0f} MiB over data"
        )


if __name__ == "__main__":
    main()
