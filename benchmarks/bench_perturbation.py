"""Speed and memory of the perturbation strategies (``adversarial_bim``, ``dfal``,
``noise_stability``, ``grand``, ``saal``).

    python benchmarks/bench_perturbation.py                       # N = 10,000 and 50,000
    python benchmarks/bench_perturbation.py --sizes 10000 --dim 64

Setting: MNIST-sized inputs (D = 784 features, 10 Gaussian blobs with centres ~ N(0, I)
and spread 1), an MLP (one hidden layer of 256, dropout 0.3) trained for 200 Adam
steps on 1,000 of them, the pool scored in batches of 1,024 on this machine's CPU with
one torch thread, budget 100; default parameters (BIM: eps 0.05, at most 100 steps;
DeepFool: at most 50 steps, overshoot 0.02; noise stability: 30 copies, scale 0.001;
grand and saal: every parameter, per-sample gradients in chunks of 256 MiB). Each run is
its own process so that each peak RSS (data included; "over data" subtracts the RSS once
the data exist) is its own.
Figures vary with the machine's load; they are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from _memory import peak_rss_mib, reset_peak, worker_result

STRATEGIES = ("adversarial_bim", "dfal", "noise_stability", "grand", "saal")


def worker(name: str, n: int, dim: int, seed: int, threads: int) -> dict:
    import numpy as np
    import torch

    import alscope
    from alscope.data.base import InputSpec
    from alscope.models.mlp import MLP
    from alscope.strategies.base import PoolView

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(10, dim, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.randn(n, dim, generator=g).add_(centres[y])
    torch.manual_seed(seed)
    model = MLP(InputSpec("vector", (dim,)), 10, MLP.Params(hidden_sizes=[256]))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(200):
        idx = torch.randint(0, 1000, (64,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(x[idx]).logits, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    view = PoolView.from_arrays(inputs=x, model=model, n_classes=10, batch_size=1024)
    data_rss = reset_peak()
    strategy = alscope.get_strategy(name)
    start = time.perf_counter()
    picks = strategy.query(view, 100, seed)
    seconds = time.perf_counter() - start
    return {
        "strategy": name,
        "n": n,
        "seconds": seconds,
        "peak_rss_mib": peak_rss_mib(),
        "data_rss_mib": data_rss,
        "unique": len(set(np.asarray(picks).tolist())),
    }


def run(name: str, n: int, dim: int, seed: int, threads: int) -> dict:
    args = ["--worker", name, "--sizes", str(n), "--dim", str(dim), "--seed", str(seed)]
    return worker_result(__file__, *args, "--threads", str(threads))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--dim", type=int, default=784)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.worker:
        print(json.dumps(worker(opts.worker, opts.sizes[0], opts.dim, opts.seed, opts.threads)))
        return
    print(
        f"perturbation strategies: D={opts.dim}, 10 classes, MLP [256], budget 100, "
        f"{opts.threads} thread(s); {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    print(f"{'strategy':<16} {'N':>8} {'seconds':>8} {'peak RSS MiB':>13} {'over data':>10}")
    for name in opts.strategies:
        for n in opts.sizes:
            r = run(name, n, opts.dim, opts.seed, opts.threads)
            extra = r["peak_rss_mib"] - r["data_rss_mib"]
            print(
                f"{name:<16} {n:>8,} {r['seconds']:8.1f} {r['peak_rss_mib']:13,.0f} {extra:10,.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
