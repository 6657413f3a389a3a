"""Speed and memory of ``batchbald`` (and ``bald``, ``power_bald``, ``epig``) at pool scale,
against the straightforward greedy joint-entropy formulation of the public toolkits.

    python benchmarks/bench_batchbald.py                  # N = 50,000, C = 10, K = 20, budget 100
    python benchmarks/bench_batchbald.py --quick          # smaller reference runs only
    python benchmarks/bench_batchbald.py --threads 1      # intra-op threads of every worker

Pools of ``--n`` unlabeled samples with K sampled predictions over C classes:

* ``consistent``: K models shared by every sample (as ensemble members or consistent MC
  dropout give): ``logits_ik = 8 (1 - d_i) onehot(y_i) + 4 d_i z_i V_k`` with ``z_i`` a
  16-dimensional feature, ``V_k ~ N(0, 1/16)`` the k-th model and a difficulty
  ``d_i ~ Beta(0.5, 3)``: most samples are confident, a tail is uncertain, and similar
  samples disagree alike. This is the setting BatchBALD is meant for.
* ``iid``: the conformance suite's pool (``make_pool_view``): independent noise per
  sample and prediction, so the k-th prediction of two samples share nothing (what
  non-consistent MC dropout produces). The worst case: the batch never pins the K
  samples down and few candidates can be ruled out early.

Methods, each in its own process (its peak RSS, data included, is its own):

* ours: ``batchbald`` as shipped (lazy greedy, Jensen screening, merged and incremental
  configurations; one intra-op thread on the CPU);
* reference: the formulation of BlackHC/batchbald_redux (which DeepAL+ and ALScope-style
  toolkits wrap): at every step the joint entropy ``H[y_A, y_i]`` of *every* candidate,
  exact over all ``C^|A|`` configurations up to ``num_samples`` and then from
  ``num_samples`` configurations resampled at each step, in float64, vectorised over
  chunks of candidates (more favourable to it than the reference's per-candidate loop).
  It runs where it fits: the first ``--ref-budget`` picks on the full pool (exact joint
  entropies, so both must pick the same points) and a whole batch on a ``--ref-n`` pool.

Figures vary with the machine's load (other processes on the same cores): the load
average is printed with them; they are not asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

C, K = 10, 20


def make_mc(kind: str, n: int, k: int, c: int, seed: int = 0):  # type: ignore[no-untyped-def]
    """``(n, k, c)`` float32 sampled predictions."""
    import numpy as np
    import torch

    if kind == "iid":
        from alscope.strategies.base import Requirements
        from alscope.testing.conformance import make_pool_view

        view = make_pool_view(Requirements(mc_samples=k), n + 1, c, n_labeled=1, seed=seed)
        assert view.mc_probs is not None
        return view.mc_probs
    rng = np.random.default_rng(seed)
    d = 16
    z = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.integers(0, c, n)
    difficulty = rng.beta(0.5, 3.0, size=(n, 1)).astype(np.float32)
    v = rng.normal(0, 1 / math.sqrt(d), size=(k, d, c)).astype(np.float32)
    out = np.empty((n, k, c), dtype=np.float32)
    for s in range(0, n, 8192):
        e = min(n, s + 8192)
        logits = 4.0 * difficulty[s:e, :, None] * np.einsum("nd,kdc->nkc", z[s:e], v)
        logits[np.arange(e - s), :, y[s:e]] += 8.0 * (1 - difficulty[s:e])
        logits -= logits.max(-1, keepdims=True)
        p = np.exp(logits)
        out[s:e] = p / p.sum(-1, keepdims=True)
    return torch.from_numpy(out)


def reference_batchbald(probs, budget: int, num_samples: int, seed: int):  # type: ignore[no-untyped-def]
    """The straightforward greedy of BlackHC/batchbald_redux: every candidate's joint
    entropy with the batch at every step (float64, exact then resampled each step)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    p = probs.double()
    n, k, c = p.shape
    cond = -(torch.special.xlogy(p, p)).sum(2).mean(1)  # E_w H[y_i | w]
    chosen: list[int] = []
    joint = torch.ones(1, k, dtype=torch.float64)  # p(y_A | w_k) per configuration
    sampled = False
    step = max(1, (1 << 22) // (c * k))
    for _ in range(budget):
        if chosen:
            last = p[chosen[-1]]  # (K, C)
            if not sampled and joint.shape[0] * c <= num_samples:
                joint = (joint.T[:, :, None] * last[:, None, :]).reshape(k, -1).T
            else:  # resample every configuration of the whole batch
                sampled = True
                per = max(1, num_samples // k)
                joint = torch.ones(per * k, k, dtype=torch.float64)
                owner = torch.arange(k).repeat_interleave(per)
                for j in chosen:
                    ys = torch.multinomial(p[j][owner], 1, generator=g).squeeze(1)
                    joint *= p[j][:, ys].T
        m = joint.shape[0]
        q = joint.mean(1)  # p(y_A = m)
        scores = torch.empty(n, dtype=torch.float64)
        chunk = max(1, step // max(1, m))
        for s in range(0, n, chunk):
            pc = p[s : s + chunk]  # (b, K, C)
            pm = torch.einsum("mk,bkc->bmc", joint, pc) / k  # p(y_A = m, y_i = c)
            if sampled:
                h = (-(torch.special.xlogy(pm, pm)) / q[None, :, None]).sum((1, 2)) / m
            else:
                h = -(torch.special.xlogy(pm, pm)).sum((1, 2))
            scores[s : s + len(pc)] = h
        scores -= cond + cond[chosen].sum()
        if chosen:
            scores[chosen] = -math.inf
        chosen.append(int(scores.argmax()))
    return chosen


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(task: dict) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(task["threads"])
    probs = make_mc(task["kind"], task["n"], task["k"], task["c"], task["seed"])
    data_rss = rss_mib()
    method = task["method"]
    picked: list[int] = []
    start = time.perf_counter()
    if method == "reference":
        picked = reference_batchbald(probs, task["budget"], task["num_samples"], task["seed"])
    else:
        from alscope.strategies.base import PoolView
        from alscope.strategies.batchbald import BatchBALD
        from alscope.strategies.bayesian import BALD
        from alscope.strategies.epig import EPIG
        from alscope.strategies.power import PowerBALD

        classes = {"batchbald": BatchBALD, "bald": BALD, "power_bald": PowerBALD, "epig": EPIG}
        params = {"n_drop": task["k"]}
        if method == "batchbald":
            params["num_samples"] = task["num_samples"]
        strategy = classes[method](params)
        strategy.component_name = method
        view = PoolView(
            unlabeled=np.arange(task["n"]), labeled=np.empty(0, np.int64), n_classes=task["c"], mc_probs=probs
        )
        picked = strategy.select(view, task["budget"], np.random.default_rng(task["seed"])).tolist()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mib": rss_mib(), "data_mib": data_rss, "picked": picked}


def run(method: str, **task) -> dict:
    task = {"method": method, **task}
    out = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(task)], capture_output=True, text=True, check=False
    )
    if out.returncode:
        raise RuntimeError(f"{method} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def line(label: str, r: dict) -> str:
    extra = r["peak_mib"] - r["data_mib"]
    return (
        f"  {label:44s} {r['seconds']:8.2f} s   peak RSS {r['peak_mib']:7.0f} MiB "
        f"(+{max(extra, 0):.0f} over the data)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--num-samples", type=int, default=10_000)
    parser.add_argument("--ref-budget", type=int, default=4, help="reference picks on the full pool")
    parser.add_argument("--ref-n", type=int, default=1_000, help="pool of the whole-batch reference run")
    parser.add_argument("--ref-batch", type=int, default=8, help="batch of the whole-batch reference run")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="skip the full-size runs of ours")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.worker:
        print(json.dumps(worker(json.loads(opts.worker))))
        return

    import torch

    threads = opts.threads or torch.get_num_threads()
    base = {"k": K, "c": C, "seed": 0, "threads": threads, "num_samples": opts.num_samples}
    print(
        f"batchbald benchmark: C = {C}, K = {K}, num_samples = {opts.num_samples}, "
        f"torch {torch.__version__}, {threads} intra-op thread(s) (ours: 1 in its greedy loop), "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )

    if not opts.quick:
        print(f"\nN = {opts.n:,} unlabeled, budget {opts.budget}:")
        for kind in ("consistent", "iid"):
            r = run("batchbald", kind=kind, n=opts.n, budget=opts.budget, **base)
            print(line(f"ours, {kind} pool", r))

    print(f"\nReference on the full pool, first {opts.ref_budget} picks (exact joint entropies):")
    ours = run("batchbald", kind="consistent", n=opts.n, budget=opts.ref_budget, **base)
    ref = run("reference", kind="consistent", n=opts.n, budget=opts.ref_budget, **base)
    print(line("ours", ours))
    print(line("reference (full sweep per pick, float64)", ref))
    same = ours["picked"] == ref["picked"]
    print(f"  speed-up {ref['seconds'] / ours['seconds']:.1f}x; same picks: {same}")

    print(
        f"\nWhole batch of {opts.ref_batch} on a {opts.ref_n:,} pool "
        f"(sampled configurations once C^n > num_samples):"
    )
    for kind in ("consistent", "iid"):
        ours = run("batchbald", kind=kind, n=opts.ref_n, budget=opts.ref_batch, **base)
        ref = run("reference", kind=kind, n=opts.ref_n, budget=opts.ref_batch, **base)
        common = len(set(ours["picked"]) & set(ref["picked"]))
        exact_steps = int(math.log(opts.num_samples, C)) + 1
        pairs = enumerate(zip(ours["picked"], ref["picked"], strict=True))
        agree = next((i for i, (a, b) in pairs if a != b), opts.ref_batch)
        print(line(f"ours, {kind} pool", ours))
        print(line(f"reference, {kind} pool", ref))
        print(
            f"  speed-up {ref['seconds'] / ours['seconds']:.1f}x; identical first {agree} picks "
            f"(exact for the first {exact_steps}); {common}/{opts.ref_batch} in common"
        )

    if not opts.quick:
        print(f"\nSingle-pass Bayesian strategies, N = {opts.n:,}, consistent pool, budget {opts.budget}:")
        for method in ("bald", "power_bald", "epig"):
            r = run(method, kind="consistent", n=opts.n, budget=opts.budget, **base)
            print(line(method, r))


if __name__ == "__main__":
    main()
