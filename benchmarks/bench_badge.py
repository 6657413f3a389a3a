"""Speed and memory of the ``badge`` strategy, against the materialised formulation.

    python benchmarks/bench_badge.py                    # N = 50,000, C = 10 and C = 100
    python benchmarks/bench_badge.py --ref-n 10000      # reference at a smaller pool

Setting: 10 clustered Gaussian embeddings (centres ~ N(0, I), spread 0.5, D = 512),
probabilities the softmax of logits that lean, by a random sharpness in [0, 6], towards
the sample's blob (confident and uncertain samples mixed), budget 1,000, on this
machine's CPU. Each run is its own process, so that each peak RSS (data included) is its
own:

* ours: ``badge`` as shipped: factorised distances
  ``|a_i|^2|h_i|^2 + |a_j|^2|h_j|^2 - 2 (a_i.a_j)(h_i.h_j)``, lazy (rejection) D^2 draws,
  memory ``O(N x (C + D))``; at C = 10 and C = 100;
* plain: ``badge`` with ``lazy=False``: factorised, one full pass per centre;
* reference: the formulation of the reference implementation and small-text: the
  ``N x (C*D)`` gradient embeddings materialised, first centre the largest norm, then
  per pick the distances of every row to the newest centre and a D^2 draw (run where
  the matrix fits in ``--ref-mib``; at ``--ref-n`` samples when given, with ours rerun
  at that size for the ratio).

Figures vary with the machine's load; they are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from _memory import peak_rss_mib, reset_peak, worker_result

DIM = 512
BUDGET = 1000


def make_data(n: int, dim: int, classes: int, seed: int) -> Any:
    import torch

    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(10, dim, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    h = torch.empty(n, dim)
    step = 65536
    for s in range(0, n, step):
        e = min(n, s + step)
        h[s:e] = torch.randn(e - s, dim, generator=g).mul_(0.5).add_(centres[y[s:e]])
    sharp = torch.rand(n, 1, generator=g) * 6.0
    logits = torch.randn(n, classes, generator=g)
    logits[torch.arange(n), y % classes] += sharp[:, 0]
    return torch.softmax(logits, dim=1), h


def worker(method: str, n: int, classes: int, seed: int) -> dict:
    import numpy as np
    import torch

    from alscope.strategies.base import PoolView

    probs, h = make_data(n, DIM, classes, seed)
    data_rss = reset_peak()
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    if method in ("ours", "plain"):
        from alscope.strategies.badge import Badge

        view = PoolView(
            unlabeled=np.arange(n), labeled=np.arange(0), n_classes=classes, probs=probs, embeddings=h
        )
        strategy = Badge({"lazy": method == "ours"})
        strategy.component_name = "badge"
        picks = strategy.select(view, BUDGET, rng)
    elif method == "reference":
        a = probs.clone()
        a[torch.arange(n), probs.argmax(dim=1)] -= 1.0
        g = torch.empty(n, classes * DIM)  # the N x (C*D) gradient embeddings
        for s in range(0, n, 4096):
            g[s : s + 4096] = (a[s : s + 4096, :, None] * h[s : s + 4096, None, :]).reshape(-1, classes * DIM)
        sq = (g * g).sum(dim=1)
        j = int(sq.argmax())
        chosen = [j]
        d2 = torch.full((n,), float("inf"), dtype=torch.float64)
        while len(chosen) < BUDGET:
            new = (sq - 2.0 * torch.mv(g, g[j]) + sq[j]).clamp_min(0).double()
            d2 = torch.minimum(d2, new)
            d2[chosen] = 0.0
            cum = np.cumsum(d2.numpy())
            j = min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), n - 1)
            chosen.append(j)
        picks = np.asarray(chosen)
    else:
        raise ValueError(method)
    return {
        "method": method,
        "classes": classes,
        "n": n,
        "seconds": time.perf_counter() - start,
        "peak_rss_mib": peak_rss_mib(),
        "data_rss_mib": data_rss,
        "unique": len(set(int(i) for i in picks)),
    }


def run(method: str, n: int, classes: int, seed: int) -> dict:
    return worker_result(
        __file__, "--worker", method, "--n", str(n), "--classes", str(classes), "--seed", str(seed)
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--ref-n", type=int, default=None, help="pool size of the reference (default --n)")
    parser.add_argument("--ref-mib", type=float, default=4096, help="largest materialised matrix to run")
    parser.add_argument("--classes", type=int, default=10, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--skip-plain", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.worker:
        print(json.dumps(worker(opts.worker, opts.n, opts.classes, opts.seed)))
        return

    n = opts.n
    print(
        f"badge: N={n:,}, D={DIM}, budget {BUDGET:,}, 10 Gaussian blobs; "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    rows = [run("ours", n, 10, opts.seed), run("ours", n, 100, opts.seed)]
    if not opts.skip_plain:
        rows.append(run("plain", n, 10, opts.seed))
    ref_n = opts.ref_n or n
    if not opts.skip_reference:
        for classes in (10, 100):
            mib = ref_n * classes * DIM * 4 / 2**20
            if mib > opts.ref_mib:
                print(
                    f"reference at C={classes}, N={ref_n:,} skipped: N x C*D alone would take {mib:,.0f} MiB"
                )
                continue
            if ref_n != n:
                rows.append(run("ours", ref_n, classes, opts.seed))
            rows.append(run("reference", ref_n, classes, opts.seed))
    print(f"{'method':<10} {'C':>4} {'N':>8} {'seconds':>8} {'peak RSS MiB':>13} {'over data':>10}")
    for r in rows:
        extra = r["peak_rss_mib"] - r["data_rss_mib"]
        print(
            f"{r['method']:<10} {r['classes']:>4} {r['n']:>8,} {r['seconds']:8.2f} "
            f"{r['peak_rss_mib']:13,.0f} {extra:10,.0f}"
        )
    ours = {(r["classes"], r["n"]): r for r in rows if r["method"] == "ours"}
    for r in rows:
        if r["method"] != "ours" and (r["classes"], r["n"]) in ours:
            o = ours[(r["classes"], r["n"])]
            print(
                f"{r['method']} / ours at C={r['classes']}, N={r['n']:,}: "
                f"{r['seconds'] / o['seconds']:.1f}x the time, "
                f"{r['peak_rss_mib'] / o['peak_rss_mib']:.1f}x the peak RSS"
            )
    o10, o100 = ours[(10, n)], ours[(100, n)]
    print(
        f"ours, memory over the data: C=10 {o10['peak_rss_mib'] - o10['data_rss_mib']:,.0f} MiB, "
        f"C=100 {o100['peak_rss_mib'] - o100['data_rss_mib']:,.0f} MiB"
    )


if __name__ == "__main__":
    main()
