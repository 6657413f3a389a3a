"""Where each stopping criterion stops, against the best stop, over datasets and seeds.

    python benchmarks/bench_stopping.py                                  # digits, quick
    python benchmarks/bench_stopping.py --dataset mnist --data-dir ../shared/data \
        --dataset-param split=test --n-initial 100 --n-query 100 --cycles 15 --trials 3
    python benchmarks/bench_stopping.py --dataset agnews --data-dir ../shared/data \
        --backbone transformer --backbone-param model=<MiniLM dir> --n-initial 50 --n-query 50 --cycles 15

Each strategy (``--strategies``, default entropy and random) runs the whole budget once per
trial with every applicable criterion in ``record`` mode (the criteria measure and log,
nothing else changes), so all criteria are judged on the same learning curves. For each
criterion, over the trials:

* **stop**: the labeled count where it first fires (mean over the trials where it fires);
* **acc**: test accuracy at that stop; **saved**: labels of the whole budget not spent;
* **never**: trials where it never fires (judged at the budget: it "stops" at the end);
* **to ε-best**: stop minus the first labeled count whose accuracy is within ``--epsilon``
  (default 0.01) of the final accuracy, Pullar-Strecker et al.'s measure of a stop's
  distance to the best one (positive: too late; negative: too early);
* **cost excess**: the stop's cost minus the lowest cost on the curve, with cost = labels
  + ``--error-cost`` x misclassified pool samples (the expected errors on the pool,
  (1 - accuracy) x pool size; default error cost 1, one error costs one label).

``validation_early_stopping`` runs only with ``--validation-fraction``; ``labelling_budget``
takes half the queried budget; ``low_average_uncertainty`` runs with scoring strategies
only. Figures are printed, and with ``--json`` written, not asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np


def params_of(items: list[str], option: str) -> dict[str, Any]:
    from alscope.config import parse_key_value

    return dict(parse_key_value(item, option) for item in items)


def criteria_for(strategy: str, opts: argparse.Namespace) -> list[dict[str, Any]]:
    from alscope.registry import get_registry
    from alscope.strategies.base import ScoringStrategy

    registry = get_registry()
    scoring = issubclass(registry.load("strategy", strategy), ScoringStrategy)
    out: list[dict[str, Any]] = []
    for spec in registry.specs("stopping"):
        if spec.name == "validation_early_stopping" and not opts.validation_fraction:
            continue
        if spec.name == "low_average_uncertainty" and not scoring:
            continue
        params = {"budget": opts.cycles * opts.n_query // 2} if spec.name == "labelling_budget" else {}
        out.append({"name": spec.name, "params": params})
    return out


def run(strategy: str, opts: argparse.Namespace, results: str) -> Any:
    from alscope.engine.experiment import run_experiment

    config: dict[str, Any] = {
        "strategy": strategy,
        "dataset": {"name": opts.dataset, "params": params_of(opts.dataset_param, "--dataset-param")},
        "trials": opts.trials,
        "cycles": opts.cycles,
        "n_initial": opts.n_initial,
        "n_query": opts.n_query,
        "seed": opts.seed,
        "results_dir": results,
        "training": {},
        "tracking": {"enabled": False},
        "stopping": {"criteria": criteria_for(strategy, opts), "mode": "record"},
    }
    if opts.data_dir:
        config["data_dir"] = opts.data_dir
    if opts.backbone:
        config["backbone"] = {
            "name": opts.backbone,
            "params": params_of(opts.backbone_param, "--backbone-param"),
        }
    for key in ("epochs", "min_steps", "threads", "validation_fraction"):
        if getattr(opts, key) is not None:
            config["training"][key] = getattr(opts, key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_experiment(config)


def judge(result: Any, opts: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Per criterion: the per-trial stops and their distances to the best stop."""
    from alscope.engine.stopping import first_stops

    names = [c.name for c in result.config.stopping.criteria]
    pool = result.summary["n_pool"]
    stops = first_stops(result.trials, names)
    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        per_trial = []
        for trial, stop in zip(result.trials, stops[name], strict=True):
            steps = np.array([c.n_labeled for c in trial.cycles])
            acc = np.array([c.metrics["accuracy"] for c in trial.cycles])
            fired = stop is not None
            n_stop, acc_stop = (stop[0], stop[1]) if fired else (int(steps[-1]), float(acc[-1]))
            eps_best = int(steps[np.argmax(acc >= acc[-1] - opts.epsilon)])
            cost = steps + opts.error_cost * (1 - acc) * pool
            at = int(np.flatnonzero(steps == n_stop)[0])
            per_trial.append(
                {
                    "fired": fired,
                    "n_stop": n_stop,
                    "accuracy": acc_stop,
                    "saved": int(steps[-1] - n_stop),
                    "to_eps_best": n_stop - eps_best,
                    "cost_excess": float(cost[at] - cost.min()),
                }
            )
        rows[name] = {"trials": per_trial}
    return rows


def mean(values: list[float]) -> str:
    return f"{statistics.fmean(values):.0f}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--dataset-param", action="append", default=[])
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--backbone-param", action="append", default=[])
    parser.add_argument("--strategies", default="entropy,random")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--cycles", type=int, default=15)
    parser.add_argument("--n-initial", type=int, default=20)
    parser.add_argument("--n-query", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--min-steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--validation-fraction", type=float, default=None)
    parser.add_argument("--epsilon", type=float, default=0.01)
    parser.add_argument("--error-cost", type=float, default=1.0)
    parser.add_argument("--json", default=None)
    opts = parser.parse_args()

    report: dict[str, Any] = {"options": vars(opts), "strategies": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in [s.strip() for s in opts.strategies.split(",") if s.strip()]:
            result = run(strategy, opts, str(Path(tmp) / strategy))
            rows = judge(result, opts)
            budget = opts.n_initial + opts.cycles * opts.n_query
            final = statistics.fmean(t.cycles[-1].metrics["accuracy"] for t in result.trials)
            report["strategies"][strategy] = {"final_accuracy": final, "budget": budget, "criteria": rows}
            print(
                f"\n{opts.dataset}, {strategy}: {opts.trials} trial(s), {opts.n_initial} + {opts.cycles} x "
                f"{opts.n_query} (budget {budget}), final accuracy {final:.4f}, epsilon {opts.epsilon}, "
                f"error cost {opts.error_cost}"
            )
            header = (
                f"{'criterion':26s} {'stop':>6s} {'acc':>7s} {'saved':>6s} {'never':>6s} "
                f"{'to ε-best':>9s} {'cost excess':>11s}"
            )
            print(header)
            print("-" * len(header))
            for name, row in rows.items():
                trials = row["trials"]
                fired = [t for t in trials if t["fired"]]
                never = f"{len(trials) - len(fired)}/{len(trials)}"
                print(
                    f"{name:26s} {mean([t['n_stop'] for t in fired]):>6s} "
                    f"{(statistics.fmean(t['accuracy'] for t in fired) if fired else float('nan')):7.4f} "
                    f"{mean([t['saved'] for t in fired]):>6s} {never:>6s} "
                    f"{statistics.fmean(t['to_eps_best'] for t in trials):9.0f} "
                    f"{statistics.fmean(t['cost_excess'] for t in trials):11.0f}"
                )
    if opts.json:
        Path(opts.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
