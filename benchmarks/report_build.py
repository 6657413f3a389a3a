"""Time to build ``alscope report`` (tables and the HTML page) for many runs.

    python benchmarks/report_build.py                 # 100 runs x 3 trials x 10 cycles
    python benchmarks/report_build.py --runs 300

Writes a synthetic MLflow store in alscope's layout (``alscope.tracking``): one parent
run per experiment run (25 strategies x 4 datasets by default) and one nested run per
trial with the per-cycle metrics the engine logs (accuracy, macro_f1,
balanced_accuracy, selection_time, train_time, query_count/<c> for 10 classes,
n_labeled, cycle), then times loading, summarising and the HTML page. Figures vary with
the machine's load; they are printed, not asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def write_store(uri: str, runs: int, trials: int, cycles: int, classes: int, seed: int = 0) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    rng = np.random.default_rng(seed)
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("bench")
    datasets = ["digits", "mnist", "agnews", "trec"]
    now = int(time.time() * 1000)
    for r in range(runs):
        strategy, dataset = f"strategy{r // len(datasets)}", datasets[r % len(datasets)]
        tags = {
            "alscope.kind": "experiment",
            "alscope.run": f"run{r:04d}",
            "alscope.strategy": strategy,
            "alscope.dataset": dataset,
            "alscope.backbone": "mlp",
            "alscope.scenario": "standard",
            "alscope.command": f"alscope run --strategy {strategy} --dataset {dataset}",
        }
        parent = client.create_run(exp, run_name=f"run{r:04d}", tags=tags).info.run_id
        client.log_batch(
            parent,
            params=[Param("strategy.name", strategy), Param("dataset.name", dataset)],
            metrics=[Metric("n_pool", 1000.0, now, 0), Metric("aubc", 0.8, now, 0)],
        )
        client.log_text(
            parent, f"strategy:\n  name: {strategy}\ndataset:\n  name: {dataset}\n", "config.yaml"
        )
        skill = rng.uniform(-0.05, 0.05)
        for t in range(trials):
            trial = client.create_run(
                exp,
                run_name=f"trial{t}",
                tags={"alscope.kind": "trial", "alscope.trial": str(t), "mlflow.parentRunId": parent},
            ).info.run_id
            metrics = []
            for c in range(cycles):
                n = 20 + 20 * c
                acc = float(np.clip(0.9 - 0.6 * np.exp(-n / 80) + skill + rng.normal(0, 0.01), 0, 1))
                step = {
                    "accuracy": acc,
                    "macro_f1": acc - 0.01,
                    "balanced_accuracy": acc,
                    "train_time": float(rng.uniform(0.5, 1.5)),
                    "n_labeled": float(n),
                    "cycle": float(c),
                }
                if c < cycles - 1:
                    step["selection_time"] = float(rng.uniform(0.01, 0.1))
                    counts = rng.multinomial(20, np.ones(classes) / classes)
                    step |= {f"query_count/{k}": float(v) for k, v in enumerate(counts) if v}
                metrics += [Metric(k, v, now, n) for k, v in step.items()]
            metrics.append(Metric("aubc", 0.8, now, 0))
            for s in range(0, len(metrics), 900):
                client.log_batch(trial, metrics=metrics[s : s + 900])
            client.set_terminated(trial)
        client.set_terminated(parent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--store", type=Path, help="keep the store in this folder and reuse it")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.store or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        if not (folder / "mlflow.db").is_file():
            t0 = time.perf_counter()
            write_store(uri, args.runs, args.trials, args.cycles, args.classes)
            print(
                f"store: {args.runs} runs x {args.trials} trials x {args.cycles} cycles written in "
                f"{time.perf_counter() - t0:.1f} s"
            )

        from alscope.report import load_trials, summarize

        t0 = time.perf_counter()
        df = load_trials(uri, "bench")
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        rep = summarize(df)
        t_sum = time.perf_counter() - t0
        print(f"load_trials: {t_load:.2f} s ({len(df)} rows); summarize: {t_sum:.2f} s")
        from alscope.report import load_configs
        from alscope.report_html import write_html

        t0 = time.perf_counter()
        ids = list(rep.runs["parent_run_id"])
        configs = load_configs(uri, ids, dict(zip(ids, rep.runs["artifact_uri"], strict=True)))
        t_cfg = time.perf_counter() - t0
        t0 = time.perf_counter()
        page = Path(tmp) / "report.html"
        write_html(rep, page, experiment="bench", tracking_uri=uri, configs=configs)
        t_html = time.perf_counter() - t0
        size = page.stat().st_size / 2**20
        import alscope.report_html as report_html

        cpus = report_html._usable_cpus

        def rebuild(workers: int) -> float:
            report_html._usable_cpus = lambda: workers
            t0 = time.perf_counter()
            write_html(rep, page, experiment="bench", tracking_uri=uri, configs=configs)
            return time.perf_counter() - t0

        in_process, in_workers = rebuild(1), rebuild(cpus())
        print(
            f"configs: {t_cfg:.2f} s ({len(configs)}); html page: {t_html:.2f} s ({size:.1f} MiB); "
            f"built again: {in_process:.2f} s drawing in this process, {in_workers:.2f} s on {cpus()} CPUs"
        )
        print(f"total (load + summarize + configs + page): {t_load + t_sum + t_cfg + t_html:.2f} s")


if __name__ == "__main__":
    main()
