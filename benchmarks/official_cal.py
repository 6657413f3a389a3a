"""CAL: the authors' acquisition function beside alscope's, on the same models and pools.

    git clone https://github.com/mourga/contrastive-active-learning /tmp/cal
    python benchmarks/official_cal.py --cal /tmp/cal --dataset mnist --data-dir ../shared/data \\
        --n-initial 100 --n-query 100 --cycles 3 --trials 3 --threads 1

Each trial runs alscope's loop twice from the same seed: once selecting with the
official ``contrastive_acquisition`` (``acquisition/cal.py``, its standard setting:
``cls``, ``operator="mean"``, ``num_nei=10``, every ablation flag off), once with
alscope's ``cal``. At every cycle of the official run alscope's ``cal`` also scores the
very same view, so the script prints how many of the official picks alscope's picks
share on identical inputs, and then each loop's AUBC and the make-up of its first query.

What is not theirs, and why: their function takes its inputs from a fine-tuned BERT
(``my_evaluate`` returns the labeled set's ``bert_cls`` and logits; the pool's come as
arguments). Here those are the view's embeddings (the input of the last linear layer)
and log-probabilities (their ``log_softmax`` of them gives back the probabilities), so
``utilities.*`` is replaced by stand-ins that hand these over. Their
``sklearn.neighbors.dist_metrics`` import is from scikit-learn < 1.0; it is pointed at
``sklearn.metrics.DistanceMetric`` (created, never used on this path).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import types
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alscope.hookspecs import hookimpl
from alscope.specs import StrategySpec

OFFICIAL_ARGS = {
    "task_name": "ag_news",  # only picks their single-sentence branch of the length statistics
    "dataset_name": "ag_news",
    "bert_score": False,
    "tfidf": False,
    "cls": True,
    "mean_embs": False,
    "mean_out": False,
    "bert_rep": False,
    "knn_lab": False,
    "ce": False,
    "conf_mask": False,
    "operator": "mean",
    "reverse": False,
    "num_nei": 10,
}


def load_official(repo: Path) -> Any:
    """``contrastive_acquisition`` from their file, with stand-ins for its BERT plumbing."""
    import sklearn.metrics

    handoff: dict[str, Any] = {}
    stubs = {
        "utilities": types.ModuleType("utilities"),
        "utilities.data_loader": types.ModuleType("utilities.data_loader"),
        "utilities.preprocessors": types.ModuleType("utilities.preprocessors"),
        "utilities.trainers": types.ModuleType("utilities.trainers"),
        "sklearn.neighbors.dist_metrics": types.ModuleType("sklearn.neighbors.dist_metrics"),
    }
    stubs["utilities.data_loader"].get_glue_tensor_dataset = lambda *a, **k: handoff["train_dataset"]
    stubs["utilities.preprocessors"].processors = {"ag_news": lambda: types.SimpleNamespace()}
    stubs["utilities.trainers"].my_evaluate = lambda *a, **k: handoff["train_results"]
    stubs["sklearn.neighbors.dist_metrics"].DistanceMetric = sklearn.metrics.DistanceMetric
    sys.modules.update(stubs)
    namespace: dict[str, Any] = {"__name__": "official_cal", "__file__": str(repo / "acquisition/cal.py")}
    exec(compile((repo / "acquisition/cal.py").read_text(), "acquisition/cal.py", "exec"), namespace)
    return namespace["contrastive_acquisition"], handoff


from alscope.strategies._distances import l2_normalize  # noqa: E402
from alscope.strategies.base import PoolView, Requirements, Strategy  # noqa: E402
from alscope.strategies.cal import CAL, nearest_labeled  # noqa: E402


class OfficialCAL(Strategy):
    """Selects with the authors' function; scores the same view with alscope's too."""

    official: Any = None  # (contrastive_acquisition, its hand-over dict), set by main
    agreement: list[dict[str, Any]] = []

    def requirements(self) -> Requirements:
        return CAL().requirements()

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        assert view.probs is not None and view.embeddings is not None
        assert view.labeled_probs is not None and view.labeled_embeddings is not None
        official, handoff = OfficialCAL.official
        tiny = torch.finfo(torch.float32).tiny
        targets = np.asarray(view.labeled_targets)
        n_total = len(view.labeled) + len(view.unlabeled)
        handoff["train_dataset"] = types.SimpleNamespace(tensors=(None, None, None, torch.as_tensor(targets)))
        handoff["train_results"] = (
            {"bert_cls": view.labeled_embeddings.float()},
            torch.log(view.labeled_probs.float().clamp_min(tiny)),
        )
        y_all = np.zeros(n_total, dtype=np.int64)
        y_all[view.labeled] = targets
        args = types.SimpleNamespace(**OFFICIAL_ARGS, num_classes=view.n_classes)
        picked, _ = official(
            args,
            budget,
            ["x"] * n_total,  # their statistics read sentence lengths
            list(y_all),
            list(view.labeled),
            list(view.unlabeled),
            [],
            list(range(n_total)),
            tokenizer=None,
            train_results={"model": None},
            results_dpool={"bert_cls": view.embeddings.float()},
            logits_dpool=torch.log(view.probs.float().clamp_min(tiny)),
        )
        ours = CAL().select(view, budget, rng)
        rows = torch.as_tensor(np.searchsorted(view.unlabeled, np.asarray(picked)))
        neighbours = nearest_labeled(
            l2_normalize(view.embeddings[rows].float()),
            l2_normalize(view.labeled_embeddings.float()),
            OFFICIAL_ARGS["num_nei"],
            cosine=True,
        )
        OfficialCAL.agreement.append(
            {
                "shared": len(set(map(int, picked)) & set(map(int, ours))),
                "budget": budget,
                "labeled_max_prob": float(view.labeled_probs.max(dim=1).values.mean()),
                "picked": [int(i) for i in picked],
                "predicted": view.probs[rows].argmax(dim=1).tolist(),
                "neighbours_class": [int(np.bincount(targets[n]).argmax()) for n in neighbours.numpy()],
            }
        )
        return np.asarray(picked, dtype=np.int64)


class OfficialCALPlugin:
    @hookimpl
    def alscope_register_strategies(self) -> list[StrategySpec]:
        return [StrategySpec("official_cal", f"{__name__}:OfficialCAL", "the authors' CAL", paper="-")]


def first_query_share(trial: Any, n_initial: int, n_query: int) -> float:
    first = np.asarray(trial.labels[n_initial : n_initial + n_query])
    return float(np.bincount(first[first >= 0]).max() / len(first)) if len(first) else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cal", type=Path, required=True, help="a clone of mourga/contrastive-active-learning"
    )
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--dataset-param", action="append", default=[])
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--backbone-param", action="append", default=[])
    parser.add_argument("--n-initial", type=int, default=100)
    parser.add_argument("--n-query", type=int, default=100)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    opts = parser.parse_args()

    from alscope.config import parse_key_value
    from alscope.engine.experiment import Experiment, run_experiment
    from alscope.registry import Registry

    OfficialCAL.official = load_official(opts.cal)
    registry = Registry(plugins={"official-cal": OfficialCALPlugin()})
    base: dict[str, Any] = {
        "dataset": {
            "name": opts.dataset,
            "params": dict(parse_key_value(p, "--dataset-param") for p in opts.dataset_param),
        },
        "trials": opts.trials,
        "cycles": opts.cycles,
        "n_initial": opts.n_initial,
        "n_query": opts.n_query,
        "seed": opts.seed,
        "tracking": {"enabled": False},
        "training": {"threads": opts.threads} if opts.threads else {},
    }
    if opts.data_dir:
        base["data_dir"] = opts.data_dir
    if opts.backbone:
        base["backbone"] = {
            "name": opts.backbone,
            "params": dict(parse_key_value(p, "--backbone-param") for p in opts.backbone_param),
        }
    from alscope.config import build_config

    with tempfile.TemporaryDirectory() as results:
        theirs = Experiment(
            build_config({**base, "strategy": "official_cal", "results_dir": f"{results}/official"}),
            registry=registry,
        ).run()
        ours = run_experiment({**base, "strategy": "cal", "results_dir": f"{results}/alscope"})
    print(f"{opts.dataset}: {opts.n_initial} + {opts.cycles} x {opts.n_query}, {opts.trials} trials")
    print("same view, official picks shared by alscope's cal, per cycle:")
    for i, row in enumerate(OfficialCAL.agreement):
        trial, cycle = divmod(i, opts.cycles)
        print(
            f"  trial {trial} cycle {cycle}: {row['shared']}/{row['budget']}"
            f"  (labeled set's mean top probability {row['labeled_max_prob']:.3f})"
        )
    print("official first query, most common (answer, predicted, neighbours' majority class):")
    for t, trial in enumerate(theirs.trials):
        row = OfficialCAL.agreement[t * opts.cycles]
        answer = dict(zip(trial.labeled, trial.labels, strict=True))
        triples = Counter(
            (answer[i], p, n)
            for i, p, n in zip(row["picked"], row["predicted"], row["neighbours_class"], strict=True)
        )
        print(f"  trial {t}: " + ", ".join(f"{k} x{v}" for k, v in triples.most_common(4)))
    for name, result in (("official", theirs), ("alscope", ours)):
        shares = [first_query_share(t, opts.n_initial, opts.n_query) for t in result.trials]
        curves = [[round(c.metrics["accuracy"], 3) for c in t.cycles] for t in result.trials]
        print(
            f"{name:>8}: AUBC {result.summary['aubc']:.4f} ± {result.summary['aubc_std']:.4f}"
            f"  first query's largest class share {max(shares):.2f}  accuracy per cycle {curves}"
        )


if __name__ == "__main__":
    main()
