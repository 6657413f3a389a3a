"""Speed and memory of ``bemps`` (CoreMSE, CoreLog), ``alfa_mix``, ``egl``, ``cal`` and ``isal``.

    python benchmarks/bench_embedding.py                  # N = 10,000 and 50,000
    python benchmarks/bench_embedding.py --n 10000 --only bemps_mse

Setting: 10 classes, embeddings of 10 Gaussian blobs (D = 512, spread 0.5), logits a
random linear classifier's plus a pull of random sharpness in [0, 6] toward the sample's
blob, 10 MC samples (logit noise N(0, 1)) for BEMPS, 1,000 labeled samples (CAL's
neighbours, ALFA-Mix's anchors), budget 500, on this machine's CPU with torch's default
threads. BEMPS runs with its defaults (500 reference points at these sizes, top half
clustered). Each run is its own process, so that each peak RSS is its own; "over data"
is the peak RSS minus the RSS once the arrays exist. Figures vary with the machine's
load; they are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from _memory import peak_rss_mib, reset_peak, worker_result

DIM = 512
CLASSES = 10
K = 10
N_LABELED = 1000
BUDGET = 500
METHODS = ("bemps_mse", "bemps_log", "alfa_mix", "egl", "cal", "isal")


def make_view(method: str, n: int, seed: int) -> Any:
    import numpy as np
    import torch
    from torch import nn

    from alscope.strategies.base import PoolView

    g = torch.Generator().manual_seed(seed)
    total = n + N_LABELED
    centres = torch.randn(CLASSES, DIM, generator=g)
    y = torch.randint(0, CLASSES, (total,), generator=g)
    h = torch.randn(total, DIM, generator=g).mul_(0.5).add_(centres[y])
    model = nn.Module()
    model.classifier = nn.Linear(DIM, CLASSES)
    with torch.no_grad():
        model.classifier.weight.copy_(centres / DIM)
        model.classifier.bias.zero_()
        logits = model.classifier(h)
    logits[torch.arange(total), y] += torch.rand(total, generator=g) * 6.0
    probs = torch.softmax(logits, dim=1)
    view = PoolView(
        unlabeled=np.arange(n),
        labeled=np.arange(n, total),
        n_classes=CLASSES,
        labeled_targets=y[n:].numpy(),
        probs=probs[:n],
        embeddings=h[:n],
        labeled_embeddings=h[n:],
        labeled_probs=probs[n:],
        model=model.eval(),
    )
    if method.startswith("bemps"):
        noise = torch.randn(n, K, CLASSES, generator=g)
        view.mc_probs = torch.softmax(logits[:n, None, :] + noise, dim=2)
    return view


def worker(method: str, n: int, seed: int) -> dict:
    import numpy as np

    import alscope

    view = make_view(method, n, seed)
    data_rss = reset_peak()
    if method.startswith("bemps"):
        strategy = alscope.get_strategy("bemps", score=method.split("_")[1], n_drop=K)
    else:
        strategy = alscope.get_strategy(method)
    start = time.perf_counter()
    picks = strategy.select(view, BUDGET, np.random.default_rng(seed))
    return {
        "method": method,
        "n": n,
        "seconds": time.perf_counter() - start,
        "peak_rss_mib": peak_rss_mib(),
        "data_rss_mib": data_rss,
        "unique": len({int(i) for i in picks}),
    }


def run(method: str, n: int, seed: int) -> dict:
    return worker_result(__file__, "--worker", method, "--n", str(n), "--seed", str(seed))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, nargs="*", default=[10_000, 50_000])
    parser.add_argument("--only", choices=METHODS, nargs="*", default=list(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.worker:
        print(json.dumps(worker(opts.worker, opts.n[0], opts.seed)))
        return
    print(
        f"embedding strategies: D={DIM}, C={CLASSES}, K={K}, {N_LABELED:,} labeled, budget {BUDGET}; "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    print(f"{'method':<10} {'N':>8} {'seconds':>8} {'peak RSS MiB':>13} {'over data':>10}")
    for n in opts.n:
        for method in opts.only:
            r = run(method, n, opts.seed)
            assert r["unique"] == BUDGET, r
            extra = r["peak_rss_mib"] - r["data_rss_mib"]
            print(
                f"{method:<10} {n:>8,} {r['seconds']:8.2f} {r['peak_rss_mib']:13,.0f} {extra:10,.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
