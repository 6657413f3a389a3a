"""Speed and memory of the ``coreset`` strategy (greedy k-center), against the plain
loop and the materialised formulation of the public toolkits.

    python benchmarks/bench_coreset.py                 # N = 50,000, D = 512, budget 1,000
    python benchmarks/bench_coreset.py --n 1000000     # memory check: peak RSS of ours only
    python benchmarks/bench_coreset.py --exact         # also a float64 brute force (slow)

Setting: 10 clustered Gaussians (centres ~ N(0, I), spread 0.5 per dimension), D = 512,
``--n`` unlabeled samples plus 1,000 labeled ones, budget 1,000, on this machine's CPU.
Each method runs in its own process, so that each peak RSS (data included) is its own:

* ours: ``coreset`` as shipped (grouped pool, pruned and lazy updates, float64 near-ties);
* plain: ``coreset`` with ``prune=False``: one full float32 pass over the pool per pick;
* reference: the formulation of the public toolkits (scikit-activeml, DeepAL+): float64
  numpy embeddings, the ``U x L`` distance matrix materialised with scikit-learn's
  ``pairwise_distances``, then a ``pairwise_distances`` column per pick (run only where
  ``U x L`` fits in memory);
* exact (``--exact``): float64 brute force, to show the picks are those of an exact greedy.

Figures vary with the machine's load (other processes on the same cores); they are
printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from _memory import peak_rss_mib, reset_peak, worker_result

DIM = 512
LABELED = 1000
BUDGET = 1000


def make_data(n: int, dim: int, labeled: int, seed: int) -> Any:
    """``(n + labeled, dim)`` float32 blobs, generated in chunks (no float64 copy)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(10, dim, generator=g)
    total = n + labeled
    y = torch.randint(0, 10, (total,), generator=g)
    x = torch.empty(total, dim)
    step = 65536
    for s in range(0, total, step):
        e = min(total, s + step)
        x[s:e] = torch.randn(e - s, dim, generator=g).mul_(0.5).add_(centres[y[s:e]])
    return x


def worker(method: str, n: int, dim: int, seed: int) -> dict:
    import numpy as np
    import torch

    from alscope.strategies.base import PoolView

    x = make_data(n, dim, LABELED, seed)
    unl, lab = x[:n], x[n:]
    data_rss = reset_peak()
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    if method in ("ours", "plain"):
        from alscope.strategies.coreset import CoreSet

        view = PoolView(
            unlabeled=np.arange(n),
            labeled=np.arange(n, n + LABELED),
            n_classes=10,
            embeddings=unl,
            labeled_embeddings=lab,
        )
        strategy = CoreSet({"prune": method == "ours"})
        strategy.component_name = "coreset"
        picks = strategy.select(view, BUDGET, rng)
    elif method == "reference":
        from sklearn.metrics import pairwise_distances

        xn, ln = unl.double().numpy(), lab.double().numpy()  # numpy float64, as the toolkits hold them
        del x, unl, lab
        mind = pairwise_distances(xn, ln).min(axis=1)  # the U x L matrix, materialised
        chosen = []
        for _ in range(BUDGET):
            j = int(mind.argmax())
            chosen.append(j)
            mind = np.minimum(mind, pairwise_distances(xn, xn[j : j + 1])[:, 0])
        picks = np.asarray(chosen)
    elif method == "exact":
        xd, ld = unl.double(), lab.double()
        sq = (xd * xd).sum(1)
        mind = torch.full((n,), float("inf"), dtype=torch.float64)
        for s in range(0, LABELED, 256):
            mind = torch.minimum(mind, torch.cdist(xd, ld[s : s + 256]).min(dim=1).values)
        chosen = []
        for _ in range(BUDGET):
            j = int(mind.argmax())
            chosen.append(j)
            mind = torch.minimum(mind, (sq - 2 * (xd @ xd[j]) + sq[j]).clamp_min(0).sqrt())
        picks = np.asarray(chosen)
    else:
        raise ValueError(method)
    seconds = time.perf_counter() - start
    return {
        "method": method,
        "seconds": seconds,
        "peak_rss_mib": peak_rss_mib(),
        "data_rss_mib": data_rss,
        "picks": [int(i) for i in picks],
        "threads": torch.get_num_threads(),
    }


def run(method: str, n: int, dim: int, seed: int) -> dict:
    return worker_result(__file__, "--worker", method, "--n", str(n), "--dim", str(dim), "--seed", str(seed))


def first_difference(a: list[int], b: list[int]) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x != y:
            return f"differ from pick {i}"
    return "identical"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=50_000, help="unlabeled samples")
    parser.add_argument("--dim", type=int, default=DIM)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exact", action="store_true", help="also run a float64 brute force")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--skip-plain", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.worker:
        print(json.dumps(worker(opts.worker, opts.n, opts.dim, opts.seed)))
        return

    n, dim = opts.n, opts.dim
    data_mib = (n + LABELED) * dim * 4 / 2**20
    print(
        f"coreset: {n:,} unlabeled + {LABELED:,} labeled, D={dim}, budget {BUDGET:,}, 10 Gaussian blobs; "
        f"data {data_mib:,.0f} MiB float32; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    methods = ["ours"]
    if not opts.skip_plain and n <= 200_000:
        methods.append("plain")
    ref_mib = n * LABELED * 4 / 2**20
    if not opts.skip_reference and ref_mib <= 2048:
        methods.append("reference")
    elif not opts.skip_reference:
        print(f"reference skipped: its U x L matrix alone would take {ref_mib:,.0f} MiB")
    if opts.exact:
        methods.append("exact")
    results = {m: run(m, n, dim, opts.seed) for m in methods}
    ours = results["ours"]
    print(
        f"{'method':<10} {'seconds':>8} {'x ours':>7} {'peak RSS MiB':>13} {'over data':>10}  picks vs ours"
    )
    for m, r in results.items():
        ratio = r["seconds"] / ours["seconds"]
        extra = r["peak_rss_mib"] - r["data_rss_mib"]
        same = first_difference(ours["picks"], r["picks"]) if m != "ours" else "-"
        print(f"{m:<10} {r['seconds']:8.2f} {ratio:7.1f} {r['peak_rss_mib']:13,.0f} {extra:10,.0f}  {same}")
    if n >= 1_000_000:
        ok = ours["peak_rss_mib"] <= 6 * 1024
        print(f"peak RSS of ours {ours['peak_rss_mib'] / 1024:.2f} GiB: {'within' if ok else 'ABOVE'} 6 GiB")


if __name__ == "__main__":
    main()
