"""Speed and memory of the ``similar`` strategy (FLCMI and LogDetCMI greedy).

    python benchmarks/bench_similar.py                     # N = 20,000 and 50,000
    python benchmarks/bench_similar.py --n 20000 --functions flcmi

Setting: 10 Gaussian blobs (centres ~ N(0, I), spread 0.5 per dimension), D = 128; 6 blobs
are known classes, 4 unknown. The labeled set holds 1,000 known samples (the query set)
and 100 samples answered OOD (the private set); ``--n`` unlabeled samples, 40% of them
from the unknown blobs; budget 100, on this machine's CPU. Each configuration runs in its
own process, so that each peak RSS (data included) is its own.

What a dense formulation (submodlib's and distil's) would hold for the pool kernel alone
is printed for comparison: ``N x N`` float32 (they build float64 and lists on top of it).
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
KNOWN = 1000
PRIVATE = 100
BUDGET = 100
OOD_RATE = 0.4


def make_data(n: int, dim: int, seed: int) -> tuple[Any, Any, Any, Any]:
    """Unlabeled ``(n, dim)``, labeled ``(KNOWN + PRIVATE, dim)``, labeled targets (OOD = -1)
    and whether each unlabeled sample is from a known blob."""
    import torch

    from alscope.scenarios.base import OOD

    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(10, dim, generator=g)
    n_unknown = int(OOD_RATE * n)
    blob = torch.cat(
        [
            torch.randint(0, 6, (n - n_unknown,), generator=g),
            torch.randint(6, 10, (n_unknown,), generator=g),
            torch.randint(0, 6, (KNOWN,), generator=g),
            torch.randint(6, 10, (PRIVATE,), generator=g),
        ]
    )
    x = torch.empty(len(blob), dim)
    step = 65536
    for s in range(0, len(blob), step):
        e = min(len(blob), s + step)
        x[s:e] = torch.randn(e - s, dim, generator=g).mul_(0.5).add_(centres[blob[s:e]])
    targets = blob[n:].clone()
    targets[KNOWN:] = OOD
    return x[:n], x[n:], targets.numpy(), (blob[:n] < 6).numpy()


def worker(function: str, n: int, dim: int, seed: int, max_ground: int | None) -> dict:
    import numpy as np
    import torch

    from alscope.strategies.base import PoolView
    from alscope.strategies.similar import SIMILAR

    unl, lab, targets, known = make_data(n, dim, seed)
    data_rss = reset_peak()
    view = PoolView(
        unlabeled=np.arange(n),
        labeled=np.arange(n, n + len(lab)),
        n_classes=6,
        labeled_targets=targets,
        embeddings=unl,
        labeled_embeddings=lab,
    )
    params: dict[str, Any] = {"function": function}
    if max_ground is not None:
        params["max_ground"] = max_ground
    strategy = SIMILAR(params)
    start = time.perf_counter()
    picks = strategy.select(view, BUDGET, np.random.default_rng(seed))
    seconds = time.perf_counter() - start
    return {
        "function": function,
        "max_ground": max_ground,
        "n": n,
        "seconds": seconds,
        "peak_rss_mib": peak_rss_mib(),
        "data_rss_mib": data_rss,
        "precision": float(known[picks].mean()),
        "threads": torch.get_num_threads(),
    }


def run(function: str, n: int, dim: int, seed: int, max_ground: int | None) -> dict:
    args = ["--worker", function, "--n", str(n), "--dim", str(dim), "--seed", str(seed)]
    if max_ground is not None:
        args += ["--max-ground", str(max_ground)]
    return worker_result(__file__, *args)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, nargs="+", default=[20_000, 50_000], help="unlabeled samples")
    parser.add_argument("--dim", type=int, default=DIM)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--functions", nargs="+", default=["flcmi", "logdetcmi"])
    parser.add_argument(
        "--sampled-ground",
        type=int,
        default=5000,
        help="also run flcmi with max_ground set to this (0: skip)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--max-ground", type=int, default=None, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.worker:
        print(json.dumps(worker(opts.worker, opts.n[0], opts.dim, opts.seed, opts.max_ground)))
        return

    print(
        f"similar: unlabeled pool ({OOD_RATE:.0%} unknown) + {KNOWN:,} labeled known + {PRIVATE:,} labeled "
        f"OOD, D={opts.dim}, budget {BUDGET}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'N':>7} {'function':<22} {'seconds':>8} {'peak RSS MiB':>13} {'over data':>10} "
        f"{'dense kernel MiB':>17} {'query precision':>16}"
    )
    for n in opts.n:
        configs: list[tuple[str, int | None]] = [(f, None) for f in opts.functions]
        if "flcmi" in opts.functions and opts.sampled_ground and opts.sampled_ground < n:
            configs.append(("flcmi", opts.sampled_ground))
        for function, ground in configs:
            r = run(function, n, opts.dim, opts.seed, ground)
            label = function if ground is None else f"{function} max_ground={ground}"
            extra = r["peak_rss_mib"] - r["data_rss_mib"]
            dense = n * n * 4 / 2**20
            print(
                f"{n:>7,} {label:<22} {r['seconds']:8.2f} {r['peak_rss_mib']:13,.0f} {extra:10,.0f} "
                f"{dense:17,.0f} {r['precision']:16.2f}"
            )


if __name__ == "__main__":
    main()
