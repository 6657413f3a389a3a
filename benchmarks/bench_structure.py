"""Speed and memory of ``dal``, ``vessal``, ``hierarchical``, ``uncertain_gcn`` and ``core_gcn``
at N = 10,000 and 50,000.

    python benchmarks/bench_structure.py                  # both strategies, both sizes, CPU
    python benchmarks/bench_structure.py --device cuda    # on a GPU
    python benchmarks/bench_structure.py --n 10000 --only vessal

Setting: 10 Gaussian blobs (centres ~ N(0, I), spread 0.5) of D = 128 embeddings,
probabilities the softmax of logits leaning towards the sample's blob with a random
sharpness in [0, 6], 1,000 labeled samples drawn at random, budget 1,000. ``vessal``
streams C x D = 1,280-dimensional gradient embeddings (exact: below ``max_dim``);
``dal`` runs its defaults (10 rounds, each training a fresh discriminator on the
labeled set and at most 10x as many unlabeled samples, so its cost grows with the
labeled set, not the pool); ``hierarchical`` k-means the pool into its default 2,000
leaves, then Ward linkage over their centroids; the GCN pair trains 200 full-graph steps
on the labeled set plus a 10,000-node unlabeled subset (the official SUBSET), so their
cost hardly grows with the pool. Each run is its own process, so each peak RSS is its own.
Figures vary with the machine's load; they are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from _memory import peak_rss_mib, reset_peak, worker_result

DIM = 128
CLASSES = 10
BUDGET = 1000
LABELED = 1000


def make_view(n: int, seed: int, device: str) -> Any:
    import numpy as np
    import torch

    from alscope.strategies.base import PoolView

    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(CLASSES, DIM, generator=g)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    h = torch.randn(n, DIM, generator=g).mul_(0.5).add_(centres[y])
    logits = torch.randn(n, CLASSES, generator=g)
    logits[torch.arange(n), y] += torch.rand(n, generator=g) * 6.0
    probs = torch.softmax(logits, dim=1)
    lab = np.sort(np.random.default_rng(seed).choice(n, LABELED, replace=False))
    mask = np.zeros(n, bool)
    mask[lab] = True
    return PoolView.from_arrays(
        probs=probs.numpy(),
        embeddings=h.numpy(),
        labeled_mask=mask,
        labeled_targets=y[lab].numpy(),
        device=device,
    )


def worker(name: str, n: int, seed: int, device: str) -> dict:
    import numpy as np
    import torch

    import alscope

    view = make_view(n, seed, device)
    data_rss = reset_peak()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    strategy = alscope.get_strategy(name)
    start = time.perf_counter()
    picks = strategy.query(view, BUDGET, seed=np.random.default_rng(seed))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    out = {
        "strategy": name,
        "n": n,
        "seconds": time.perf_counter() - start,
        "peak_rss_mib": peak_rss_mib(),
        "data_rss_mib": data_rss,
        "unique": len(set(picks.tolist())),
    }
    if device.startswith("cuda"):
        out["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run(name: str, n: int, seed: int, device: str) -> dict:
    return worker_result(__file__, "--worker", name, "--n", str(n), "--seed", str(seed), "--device", device)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, nargs="*", default=[10_000, 50_000])
    parser.add_argument(
        "--only", choices=["dal", "vessal", "hierarchical", "uncertain_gcn", "core_gcn"], default=None
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.worker:
        print(json.dumps(worker(opts.worker, opts.n[0], opts.seed, opts.device)))
        return
    print(
        f"structure strategies: D={DIM}, C={CLASSES}, {LABELED:,} labeled, budget {BUDGET:,}, "
        f"device {opts.device}; "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    names = [opts.only] if opts.only else ["vessal", "dal", "hierarchical", "uncertain_gcn", "core_gcn"]
    print(f"{'strategy':<14} {'N':>8} {'seconds':>8} {'peak RSS MiB':>13} {'over data':>10} {'GPU MiB':>8}")
    for name in names:
        for n in opts.n:
            r = run(name, n, opts.seed, opts.device)
            gpu = f"{r['gpu_peak_mib']:8,.0f}" if "gpu_peak_mib" in r else f"{'-':>8}"
            print(
                f"{r['strategy']:<14} {r['n']:>8,} {r['seconds']:8.2f} {r['peak_rss_mib']:13,.0f} "
                f"{r['peak_rss_mib'] - r['data_rss_mib']:10,.0f} {gpu}",
                flush=True,
            )


if __name__ == "__main__":
    main()
