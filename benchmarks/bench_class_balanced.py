"""Solve times of ``entropy_cb``'s programme (HiGHS via SciPy) and of ``coreset_cb``.

    python benchmarks/bench_class_balanced.py              # U = 10,000 and 50,000, C = 10
    python benchmarks/bench_class_balanced.py --sizes 2000 5000 --classes 100

Setting: ``U`` unlabeled samples whose probabilities are the softmax of Gaussian logits
leaning (scale 3) towards a class drawn from a long-tailed distribution (imbalance
ratio 0.1), a labeled set of 1,000 samples with the same tail, budget 1,000, lambda at
the defaults. For each size: the LP relaxation (what pools above ``exact_max_pool``
get), the binary programme (the paper's formulation, where ``--milp`` asks for it), the
whole ``entropy_cb`` and ``coreset_cb`` queries (64-d embeddings) with the balance
term they reach, against lambda = 0 (plain entropy, plain greedy k-center). Figures vary with the
machine's load; they are printed, not asserted.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def make_view(u: int, c: int, labeled: int, seed: int, dim: int = 64):
    from alscope.strategies.base import PoolView

    rng = np.random.default_rng(seed)
    weights = 0.1 ** (np.arange(c) / max(c - 1, 1))
    weights /= weights.sum()
    y = rng.choice(c, size=u + labeled, p=weights)
    logits = rng.normal(size=(u + labeled, c)) + 3.0 * np.eye(c)[y]
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    centres = rng.normal(0.0, 3.0, size=(c, dim))
    emb = centres[y] + rng.normal(size=(u + labeled, dim))
    t = lambda a: torch.from_numpy(a.astype(np.float32))  # noqa: E731
    return PoolView(
        unlabeled=np.arange(labeled, labeled + u),
        labeled=np.arange(labeled),
        n_classes=c,
        labeled_targets=y[:labeled],
        probs=t(probs[labeled:]),
        embeddings=t(emb[labeled:]),
        labeled_embeddings=t(emb[:labeled]),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--milp", action="store_true", help="also time the binary programme")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from alscope.strategies.class_balanced import (
        CoresetCB,
        EntropyCB,
        balance_target,
        labeled_class_counts,
        pool_probs,
        solve_balanced,
    )
    from alscope.strategies.uncertainty import entropy_scores

    print(f"C = {args.classes}, budget = {args.budget}, torch threads = {torch.get_num_threads()}")
    for u in args.sizes:
        view = make_view(u, args.classes, 1000, args.seed)
        probs = pool_probs(view, "bench")
        entropy = entropy_scores(view.probs).double().numpy()
        omega = balance_target(labeled_class_counts(view, "bench"), args.budget)
        kinds = [False, True] if args.milp else [False]
        for integral in kinds:
            start = time.perf_counter()
            z, code, _ = solve_balanced(
                entropy, probs, omega, args.budget, 0.6, integral=integral, time_limit=600.0
            )
            took = time.perf_counter() - start
            assert z is not None
            frac = int(((z > 1e-6) & (z < 1 - 1e-6)).sum())
            label = "binary programme" if integral else "LP relaxation"
            print(f"U = {u:>6}: {label:<16} {took:6.2f} s  status {code}, {frac} fractional z")
        for cls in (EntropyCB, CoresetCB):
            plain = cls(weight=0.0)  # entropy / greedy k-center: the balance term's reference
            plain.query(view, args.budget, seed=args.seed)
            strategy = cls(exact_max_pool=0) if cls is EntropyCB else cls()
            start = time.perf_counter()
            strategy.query(view, args.budget, seed=args.seed)
            took = time.perf_counter() - start
            print(
                f"U = {u:>6}: {strategy.component_name:<16} {took:6.2f} s  ||Omega - P^T z||_1 = "
                f"{strategy.last_info['balance_l1']:.1f} (lambda = 0: {plain.last_info['balance_l1']:.1f})"
            )


if __name__ == "__main__":
    main()
