"""The ``alscope`` command line (Typer + rich).

Keep module-level imports light: ``alscope --help`` and ``alscope list`` must not
import torch. The engine is imported inside the commands that run it.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import warnings
from pathlib import Path
from statistics import fmean
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from alscope.config import (
    ExperimentConfig,
    build_config,
    deep_merge,
    parse_key_value,
    read_config_file,
)
from alscope.errors import AlscopeError, ConfigError
from alscope.progress import PlainProgress, Progress, report_passes
from alscope.registry import get_registry, normalize
from alscope.scenarios import composition_name, composition_parts
from alscope.specs import KINDS

if TYPE_CHECKING:
    from alscope.engine.experiment import ExperimentResult

app = typer.Typer(
    name="alscope",
    help="Deep active learning: run, compare and track query strategies.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
# Piped output (tests, CI logs, `| grep`) gets a wide console so table cells do not fold.
_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160
out = Console(highlight=False, soft_wrap=True, width=_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True)

# ALScope's ``--method Uncertainty --uncertainty X`` spellings, mapped to our strategies.
ALSCOPE_UNCERTAINTY = {
    "entropy": "entropy",
    "margin": "margin",
    "conf": "least_confidence",
    "confidence": "least_confidence",
    "leastconfidence": "least_confidence",
    "ratio": "ratio",
    "entropydropout": "mc_entropy",
    "margindropout": "mc_margin",
    "confdropout": "mc_least_confidence",
    "bald": "bald",
    "bayesian": "mc_least_confidence",
    "bayesianentropy": "mc_entropy",
}
# ALScope flags that select a scenario (provided by the scenarios plugin when installed).
SCENARIO_FLAGS = {"openset": "openset", "ood_rate": "openset", "imb_factor": "imbalanced"}


def _show_warning(
    message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    """Our warnings as one line each; third-party deprecation chatter is not the user's business."""
    if issubclass(category, DeprecationWarning | PendingDeprecationWarning | FutureWarning):
        return
    err.print(f"[yellow]warning:[/yellow] {message}", markup=True, highlight=False)


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", markup=True, highlight=False)
    return typer.Exit(code)


@app.callback()
def _main() -> None:
    warnings.showwarning = _show_warning


# -- list / info -------------------------------------------------------------------

_KIND_ALIASES = {normalize(k): k for k in KINDS} | {
    "strategies": "strategy",
    "datasets": "dataset",
    "backbones": "backbone",
    "scenarios": "scenario",
    "stop": "stopping",
    "stoppingcriteria": "stopping",
    "criteria": "stopping",
}


def _kind(value: str | None) -> list[str]:
    if value is None:
        return list(KINDS)
    kind = _KIND_ALIASES.get(normalize(value))
    if kind is None:
        raise _fail(f"unknown kind {value!r}; accepted: strategies, datasets, backbones, scenarios, stopping")
    return [kind]


@app.command("list")
def list_components(
    kind: Annotated[
        str | None, typer.Argument(help="strategies, datasets, backbones, scenarios or stopping")
    ] = None,
) -> None:
    """List the registered components (name, summary, domain, providing distribution)."""
    registry = get_registry()
    for k in _kind(kind):
        table = Table(title=f"{k} ({len(registry.specs(k))})", title_justify="left")  # type: ignore[arg-type]
        table.add_column("name", no_wrap=True)
        if k == "strategy":
            table.add_column("family", no_wrap=True)
        if k == "stopping":
            table.add_column("paper", overflow="fold")
        for col in ("summary", "domain", "distribution"):
            table.add_column(col, overflow="fold")
        names = set(registry.names(k))  # type: ignore[arg-type]
        for spec in registry.specs(k):  # type: ignore[arg-type]
            shown = spec.name if spec.name in names else spec.qualified_name
            family = [spec.family or "-"] if k == "strategy" else []
            paper = [spec.paper.split(": ")[0] or "-"] if k == "stopping" else []
            table.add_row(shown, *family, *paper, spec.summary, ", ".join(spec.domains), spec.distribution)
        out.print(table)


@app.command()
def info(
    name: Annotated[str, typer.Argument(help="component name, alias or namespace:name")],
    kind: Annotated[str | None, typer.Option(help="restrict to one kind")] = None,
) -> None:
    """Show a component: summary, paper, parameters with defaults, what it needs from the model."""
    from alscope.errors import AmbiguousComponentError, UnknownComponentError

    registry = get_registry()
    found = []
    for k in _kind(kind):
        try:
            found.append((k, *registry.resolve_claimed(k, name)))  # type: ignore[arg-type]
        except UnknownComponentError:
            continue
        except AmbiguousComponentError as exc:
            raise _fail(str(exc)) from None
    if not found:
        suggestions = sorted({s for k in _kind(kind) for s in registry.suggest(k, name)})  # type: ignore[arg-type]
        hint = f"; did you mean {' or '.join(map(repr, suggestions))}?" if suggestions else ""
        raise _fail(f"no component named {name!r}{hint}")
    for k, spec, implied in found:
        out.print(f"[bold]{spec.name}[/bold]  ({k}, from {spec.distribution}, namespace {spec.namespace!r})")
        out.print(f"  {spec.summary}")
        if implied:  # a claimed name (corelog, flcmi): the component with these parameters
            given = ", ".join(f"{key}={value}" for key, value in implied.items())
            out.print(f"  {name}: {spec.name} with {given}")
        if spec.paper:
            out.print(f"  paper: {spec.paper}")
        if spec.aliases:
            out.print(f"  aliases: {', '.join(spec.aliases)}")
        out.print(f"  domains: {', '.join(spec.domains)}")
        try:
            target = spec.load()
        except Exception as exc:
            out.print(f"  [red]cannot be imported:[/red] {exc}")
            continue
        if k == "strategy":
            try:
                needs = target().requirements().describe()
            except Exception:
                needs = list(spec.needs)
            out.print(f"  needs from the model: {', '.join(needs) or 'nothing (model-free)'}")
            hooks_cls = getattr(target, "training_hooks", None)
            if hooks_cls is not None and target.training_hooks is not _base_hooks():
                out.print("  adds training-time modules/losses through trainer hooks")
        if k == "stopping":
            from alscope.stopping import MEASURES

            for measure in getattr(target, "measures", ()):
                out.print(f"  reads {measure}: {MEASURES.get(measure, '(a plugin measure)')}")
        rows = target.parameter_table() if hasattr(target, "parameter_table") else []
        if rows:
            table = Table("parameter", "type", "default", "description", title_justify="left")
            for row in rows:
                table.add_row(*row)
            out.print(table)
        else:
            out.print("  parameters: none")


def _base_hooks() -> Any:
    from alscope.strategies.base import Strategy

    return Strategy.training_hooks


# -- run -----------------------------------------------------------------------------


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _integers(value: str, name: str, example: str) -> list[int]:
    """A comma-separated list of integers, every item present (``1,,2`` is a typo, not ``1,2``)."""
    items = [v.strip() for v in value.split(",")]
    try:
        if any(not v for v in items):
            raise ValueError
        return [int(v) for v in items]
    except ValueError:
        raise ConfigError(
            f"{name}={value!r} is invalid: expected integers, comma-separated, e.g. {example}"
        ) from None


def _leaves(d: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for key, value in d.items():
        path = (*prefix, key)
        out.extend(_leaves(value, path) if isinstance(value, dict) and value else [path])
    return out


def _check_overridden_file_values(file_data: dict[str, Any], overrides: dict[str, Any], path: Path) -> None:
    """A value of the config file that a flag replaces must still be valid: ``cycles: three``
    is a mistake in the file whether or not ``--cycles`` hides it this time. Component
    parameters are checked with their component, after the merge."""
    for leaf in _leaves(overrides):
        if leaf[0] in {"strategy", "dataset", "backbone", "scenario"}:
            continue
        node: Any = file_data
        for key in leaf:
            if not isinstance(node, dict) or key not in node:
                break
            node = node[key]
        else:
            alone: dict[str, Any] = {}
            _set(alone, ".".join(leaf), node)
            try:
                build_config(alone)
            except ConfigError as exc:
                raise ConfigError(f"config file {str(path)!r}: {exc}") from None


def _params(items: list[str] | None, option: str) -> dict[str, Any]:
    return dict(parse_key_value(i, option) for i in items or [])


def _set(d: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        d = d.setdefault(key, {})
    d[keys[-1]] = value


def _sweep_members(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A sweep file: ``base`` (a config), ``sweep`` (dotted key -> list, a grid) and/or
    ``runs`` (a list of overrides)."""
    data = read_config_file(path)
    unknown = set(data) - {"base", "sweep", "runs"}
    if unknown:
        raise ConfigError(
            f"sweep file {str(path)!r}: unknown keys {sorted(unknown)} (accepted: base, sweep, runs)"
        )
    base = data.get("base") or {}
    members: list[dict[str, Any]] = []
    grid = data.get("sweep") or {}
    if not isinstance(grid, dict) or any(not isinstance(v, list) for v in grid.values()):
        raise ConfigError(f"sweep file {str(path)!r}: 'sweep' must map dotted keys to lists of values")
    if grid:
        keys = list(grid)
        for combo in itertools.product(*(grid[k] for k in keys)):
            member: dict[str, Any] = {}
            for key, value in zip(keys, combo, strict=True):
                _set(member, key, value)
            members.append(member)
    for member in data.get("runs") or []:
        if not isinstance(member, dict):
            raise ConfigError(f"sweep file {str(path)!r}: each entry of 'runs' must be a mapping")
        members.append(member)
    return base, members or [{}]


class _RichProgress(Progress):
    """Bars for trials, cycles and epochs on stderr."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        )
        self.tasks: dict[str, Any] = {}

    def experiment_start(self, run: str, trials: int, cycles: int, epochs: int) -> None:
        self.bar.start()
        self.tasks["trial"] = self.bar.add_task("trials", total=trials, info=run)
        self.tasks["cycle"] = self.bar.add_task("cycles", total=cycles + 1, info="")
        self.tasks["epoch"] = self.bar.add_task("epochs", total=epochs, info="")

    def trial_start(self, trial: int) -> None:
        self.bar.reset(self.tasks["cycle"])

    def cycle_start(self, trial: int, cycle: int, n_labeled: int) -> None:
        self.bar.update(self.tasks["cycle"], completed=cycle, info=f"{n_labeled} labeled")
        self.bar.reset(self.tasks["epoch"])

    def fit_start(self, epochs: int) -> None:
        self.bar.update(self.tasks["epoch"], total=epochs, completed=0)

    def epoch_end(self, epoch: int, loss: float) -> None:
        self.bar.update(self.tasks["epoch"], completed=epoch + 1, info=f"loss {loss:.3f}")

    def cycle_end(self, trial: int, record: Any) -> None:
        acc = record.metrics.get("accuracy")
        self.bar.update(
            self.tasks["cycle"], completed=record.cycle + 1, info=f"acc {acc:.3f}" if acc is not None else ""
        )

    def trial_end(self, trial: int, trial_aubc: float) -> None:
        self.bar.update(self.tasks["trial"], completed=trial + 1)

    def stop(self) -> None:
        self.bar.stop()


#: per-cycle metrics a scenario is judged by, shown as columns when a run logged them
SCENARIO_COLUMNS = {
    "balanced_accuracy": "balanced acc",
    "query_precision": "query precision",
    "cumulative_precision": "cumul. precision",
    "noisy_labels": "noisy labels",
}


def _mean_by_step(result: ExperimentResult, metric: str) -> dict[int, float]:
    by_step: dict[int, list[float]] = {}
    for t in result.trials:
        for c in t.cycles:
            if metric in c.metrics:
                by_step.setdefault(c.n_labeled, []).append(c.metrics[metric])
    return {step: fmean(values) for step, values in by_step.items()}


def _results_table(result: ExperimentResult) -> Table:
    """Accuracy by labeled count, plus the metrics of the run's scenario. A query metric
    sits on the row of the model that chose the query."""
    steps, mean, std = result.curve("accuracy")
    _, f1, _ = result.curve("macro_f1")
    selection = _mean_by_step(result, "selection_time")
    # whether each cycle's model fits its labels: an under-fitted one misleads uncertainty
    train_acc = _mean_by_step(result, "train_accuracy")
    cfg = result.config
    scenario = cfg.scenario.name
    extra = {
        name: _mean_by_step(result, name)
        for name in SCENARIO_COLUMNS
        if scenario != "standard" and any(name in c.metrics for t in result.trials for c in t.cycles)
    }
    title = f"{cfg.strategy.name} on {cfg.dataset.name} ({scenario}), {len(result.trials)} trial(s)"
    table = Table(
        "labeled",
        "accuracy (± std)",
        "macro-F1",
        *(SCENARIO_COLUMNS[name] for name in extra),
        "train acc",
        "selection s",
        title=title,
        title_justify="left",
    )
    for i, step in enumerate(steps):
        cells = [f"{values[int(step)]:.4f}" if int(step) in values else "-" for values in extra.values()]
        sel = selection.get(int(step))
        fitted = train_acc.get(int(step))
        table.add_row(
            str(step),
            f"{mean[i]:.4f} ± {std[i]:.4f}",
            f"{f1[i]:.4f}",
            *cells,
            f"{fitted:.3f}" if fitted is not None else "-",
            f"{sel:.3f}" if sel is not None else "-",
        )
    return table


def _query_share_table(result: ExperimentResult) -> Table | None:
    """Each class's share of the query by labeled count (imbalanced pools), or None."""
    names = sorted(
        {k for t in result.trials for c in t.cycles for k in c.metrics if k.startswith("query_share/")},
        key=lambda k: int(k.split("/", 1)[1]),
    )
    if not names:
        return None
    shares = {name: _mean_by_step(result, name) for name in names}
    steps = sorted({step for values in shares.values() for step in values})
    table = Table("labeled", *(n.split("/", 1)[1] for n in names), title="query share by class (true class)")
    for step in steps:
        table.add_row(str(step), *(f"{shares[n].get(step, float('nan')):.2f}" for n in names))
    return table


def _criterion_names(result: ExperimentResult) -> list[str]:
    """The run's stopping criteria by their registered names (the config keeps them as typed),
    which is how their metrics are logged."""
    return [get_registry().resolve("stopping", c.name).name for c in result.config.stopping.criteria]


def _stopping_table(result: ExperimentResult) -> Table | None:
    """Where each stopping criterion fired (first cycle per trial), the accuracy there and
    the labels it saves against the whole budget; None without criteria."""
    from alscope.engine.stopping import first_stops

    cfg = result.config
    if not cfg.stopping.criteria:
        return None
    budget = cfg.n_initial + cfg.cycles * cfg.n_query
    stops = first_stops(result.trials, _criterion_names(result))
    mode = "the first to fire ends a trial" if cfg.stopping.mode == "stop" else "recorded, budget run"
    table = Table(
        "criterion",
        "fired in",
        "labels at stop (per trial)",
        "accuracy at stop",
        "labels saved",
        title=f"stopping ({mode}; budget {budget} labels)",
        title_justify="left",
    )
    for name, per_trial in stops.items():
        hits = [s for s in per_trial if s is not None]
        table.add_row(
            name,
            f"{len(hits)}/{len(per_trial)} trials",
            ", ".join(str(s[0]) if s is not None else "never" for s in per_trial),
            f"{fmean(s[1] for s in hits):.4f}" if hits else "-",
            f"{fmean(budget - s[0] for s in hits):.0f}" if hits else "-",
        )
    for t in result.trials:
        if t.stopped is not None:
            table.caption = (table.caption + "; " if table.caption else "") + (
                f"trial {t.trial} stopped by {t.stopped['criterion']} at {t.stopped['n_labeled']} labels "
                f"(cycle {t.stopped['cycle']})"
            )
    return table


def _report_result(result: ExperimentResult, quiet: bool, as_json: bool) -> None:
    s = result.summary
    if as_json:
        steps, mean, std = result.curve()
        payload = {
            "run": result.run,
            "run_dir": str(result.run_dir),
            "mlflow_run_id": result.parent_run_id,
            "tracking_uri": result.tracking_uri,
            "config": json.loads(result.config.model_dump_json()),
            "summary": s,
            "curve": {
                "n_labeled": steps.tolist(),
                "accuracy_mean": mean.tolist(),
                "accuracy_std": std.tolist(),
            },
        }
        if result.config.stopping.criteria:
            from alscope.engine.stopping import first_stops

            payload["stopping"] = {
                "stopped": [t.stopped for t in result.trials],
                "first_fired": {
                    name: [None if s is None else {"n_labeled": s[0], "accuracy": s[1]} for s in per_trial]
                    for name, per_trial in first_stops(result.trials, _criterion_names(result)).items()
                },
            }
        out.print_json(json.dumps(payload, default=str))
        return
    if quiet:
        stopped = [f"trial {t.trial} at {t.stopped['n_labeled']}" for t in result.trials if t.stopped]
        out.print(
            f"{result.run}: AUBC {s['aubc']:.4f} ± {s['aubc_std']:.4f}"
            + (f"; stopped early: {', '.join(stopped)}" if stopped else "")
        )
        return
    cfg = result.config
    backbone = cfg.backbone.name if cfg.backbone else result.summary.get("backbone", "default")
    out.print(
        f"{s['dataset']}: pool {s['n_pool']}, test {s['n_test']}; backbone {backbone}; "
        f"strategy {cfg.strategy.name}; {cfg.n_initial} initial + {cfg.cycles} x {cfg.n_query} "
        f"queried; {cfg.training.epochs} epochs (at least {cfg.training.min_steps} steps) per cycle "
        f"on {s.get('device', '?')}"
    )
    out.print(_results_table(result))
    shares = _query_share_table(result)
    if shares is not None:
        out.print(shares)
    stopping = _stopping_table(result)
    if stopping is not None:
        out.print(stopping)
    interval = f" (95 % CI ± {s['aubc_ci95']:.4f})" if "aubc_ci95" in s else ""
    out.print(
        f"AUBC {s['aubc']:.4f} ± {s['aubc_std']:.4f}{interval}   final accuracy "
        f"{s['final_accuracy']:.4f} ± {s['final_accuracy_std']:.4f}   "
        f"wall {s.get('wall_time', 0):.1f} s   (± sample std over {len(result.trials)} trial(s))"
    )
    out.print(f"run: {result.run}  (state: {result.run_dir})")
    if result.tracking_uri:
        out.print(
            f"MLflow: {result.tracking_uri}  experiment {result.config.tracking.experiment!r}, "
            f"run {result.parent_run_id}"
        )
        out.print(
            f"  compare: alscope report --experiment {result.config.tracking.experiment} "
            f"--tracking-uri {result.tracking_uri}"
        )
    else:
        out.print("MLflow: not tracked (--no-track)")


def _command_line(ctx: typer.Context) -> str:
    """The command as given, for the run's record (``alscope.command`` in MLflow): the
    options set on the command line or from the environment, rebuilt from what was
    parsed (``sys.argv`` is not the command when the app runs inside another program)."""
    import shlex

    parts = ["alscope", ctx.info_name or "run"]
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name) if param.name else None
        if getattr(source, "name", "") not in ("COMMANDLINE", "ENVIRONMENT"):
            continue
        value = ctx.params.get(param.name)
        opts = list(getattr(param, "opts", ()))
        if not opts or not opts[0].startswith("-"):  # a positional argument
            parts += [str(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
            continue
        flag = max(opts, key=len)
        if getattr(param, "is_flag", False):
            secondary = list(getattr(param, "secondary_opts", ()))
            if value:
                parts.append(flag)
            elif secondary:
                parts.append(max(secondary, key=len))
        elif isinstance(value, (list, tuple)):
            for item in value:
                parts += [flag, str(item)]
        elif value is not None:
            parts += [flag, str(value)]
    return shlex.join(parts)


def _execute(
    config: ExperimentConfig | None,
    resume: str | None,
    results_dir: Path,
    quiet: bool,
    as_json: bool,
    command: str | None = None,
) -> ExperimentResult:
    from alscope.engine.experiment import Experiment

    progress: Progress | None = None
    if not (quiet or as_json):
        # bars on a terminal; plain lines where the output goes to a file or a pipe
        progress = _RichProgress() if err.is_terminal else PlainProgress()
    report_passes(not (quiet or as_json) and not err.is_terminal)
    try:
        if resume is not None:
            experiment = Experiment.resume(results_dir, resume, progress=progress)
        else:
            assert config is not None
            experiment = Experiment(config, progress=progress, command=command)
        try:
            return experiment.run()
        except KeyboardInterrupt:
            raise _fail(
                f"interrupted; finished cycles are saved: alscope run --resume {experiment.state.run}"
                f" --results-dir {results_dir}",
                130,
            ) from None
    finally:
        if progress is not None:
            progress.stop()


@app.command(context_settings={"help_option_names": ["-h", "--help"]})
def run(
    ctx: typer.Context,
    strategy: Annotated[
        list[str] | None,
        typer.Option(
            "--strategy",
            "--method",
            "-s",
            help="strategy name(s), comma-separated for a batch; ALScope's --method spellings work",
        ),
    ] = None,
    uncertainty: Annotated[
        str | None, typer.Option(help="ALScope: with --method Uncertainty, Entropy|Margin|CONF|...")
    ] = None,
    dataset: Annotated[
        list[str] | None, typer.Option("--dataset", "-d", help="dataset name(s), comma-separated for a batch")
    ] = None,
    backbone: Annotated[str | None, typer.Option(help="backbone; default: the dataset's")] = None,
    scenario: Annotated[str | None, typer.Option(help="scenario (default standard)")] = None,
    strategy_param: Annotated[
        list[str] | None, typer.Option(help="strategy parameter key=value (repeatable)")
    ] = None,
    dataset_param: Annotated[list[str] | None, typer.Option(help="dataset parameter key=value")] = None,
    backbone_param: Annotated[list[str] | None, typer.Option(help="backbone parameter key=value")] = None,
    scenario_param: Annotated[list[str] | None, typer.Option(help="scenario parameter key=value")] = None,
    n_initial: Annotated[int | None, typer.Option("--n-initial", help="initial labeled set size")] = None,
    initial: Annotated[str | None, typer.Option(help="random or stratified initial set")] = None,
    n_query: Annotated[int | None, typer.Option("--n-query", help="samples labeled per cycle")] = None,
    cycles: Annotated[int | None, typer.Option("--cycle", "--cycles", help="query rounds")] = None,
    trials: Annotated[int | None, typer.Option("--trial", "--trials", help="repetitions")] = None,
    seed: Annotated[str | None, typer.Option(help="seed; comma-separated seeds run in turn")] = None,
    epochs: Annotated[int | None, typer.Option(help="epochs per cycle (raised to reach --min-steps)")] = None,
    min_steps: Annotated[
        int | None,
        typer.Option("--min-steps", help="floor of optimiser steps per cycle (default 500; 0: epochs alone)"),
    ] = None,
    validation_fraction: Annotated[
        float | None,
        typer.Option(
            "--validation-fraction",
            help="hold out this share of the labeled set for early stopping with restore of the best model",
        ),
    ] = None,
    patience: Annotated[
        int | None, typer.Option(help="validation checks without improvement before training stops")
    ] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size")] = None,
    optimizer: Annotated[str | None, typer.Option(help="sgd, adam or adamw")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="learning rate")] = None,
    weight_decay: Annotated[float | None, typer.Option("--weight-decay")] = None,
    scheduler: Annotated[str | None, typer.Option(help="none, multistep or cosine")] = None,
    milestones: Annotated[str | None, typer.Option(help="multistep epochs, comma-separated")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:N, mps")] = None,
    amp: Annotated[
        bool | None, typer.Option("--amp/--no-amp", help="mixed precision (default: on for CUDA)")
    ] = None,
    ensemble: Annotated[
        int | None, typer.Option("--ensemble", help="deep ensemble of M models (ALScope's DeepEnsemble)")
    ] = None,
    n_drop: Annotated[
        int | None, typer.Option("--n-drop", help="MC dropout samples (strategies that take n_drop)")
    ] = None,
    n_class: Annotated[
        int | None, typer.Option("--n-class", help="expected number of classes (checked)")
    ] = None,
    subset: Annotated[
        int | None, typer.Option("--subset", help="ALScope: cap the pool at this many samples")
    ] = None,
    samples_per_class: Annotated[
        int | None, typer.Option("--samples-per-class", help="ALScope: cap the pool per class")
    ] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads for torch")] = None,
    epoch_loss: Annotated[
        int | None,
        typer.Option(
            "--epoch-loss",
            help="ALScope: epoch after which Learning Loss-style modules stop sending gradients "
            "into the backbone (strategies that take epoch_loss)",
        ),
    ] = None,
    calibrate: Annotated[
        str | None,
        typer.Option(help="none or temperature: temperature scaling on a held-out part of the labeled set"),
    ] = None,
    bias_correction: Annotated[
        str | None,
        typer.Option(
            "--bias-correction",
            help="none, pure or lure: bias-corrected training loss (needs a stochastic strategy)",
        ),
    ] = None,
    openset: Annotated[bool, typer.Option("--openset", help="ALScope: open-set scenario")] = False,
    ood_rate: Annotated[float | None, typer.Option("--ood-rate", help="ALScope: open-set OOD rate")] = None,
    imb_factor: Annotated[
        float | None, typer.Option("--imb-factor", help="ALScope: class-imbalance factor")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="where datasets live (env ALSCOPE_DATA_DIR)")
    ] = None,
    download: Annotated[bool | None, typer.Option("--download/--no-download", help="allow downloads")] = None,
    results_dir: Annotated[
        Path | None,
        typer.Option(
            "--results-dir", help="run states and the default MLflow store (env ALSCOPE_RESULTS_DIR)"
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            help="tokenised texts, embeddings and SSL encoders (env ALSCOPE_CACHE_DIR; "
            "default <results-dir>/cache)",
        ),
    ] = None,
    tracking_uri: Annotated[
        str | None, typer.Option("--tracking-uri", help="MLflow tracking URI (env MLFLOW_TRACKING_URI)")
    ] = None,
    experiment: Annotated[str | None, typer.Option(help="MLflow experiment name")] = None,
    no_track: Annotated[bool, typer.Option("--no-track", help="write nothing to MLflow")] = False,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML or TOML config file (flags win)")
    ] = None,
    sweep: Annotated[
        Path | None, typer.Option(help="sweep file: base config + grid/runs, run in turn")
    ] = None,
    stop: Annotated[
        list[str] | None,
        typer.Option(
            "--stop", help="stopping criterion (repeatable, or comma-separated; alscope list stopping)"
        ),
    ] = None,
    stop_param: Annotated[
        list[str] | None,
        typer.Option(
            "--stop-param",
            help="criterion parameter key=value; with several criteria criterion.key=value",
        ),
    ] = None,
    stop_mode: Annotated[
        str | None,
        typer.Option("--stop-mode", help="stop (default): end at the first that fires; record: log, run on"),
    ] = None,
    stop_set_size: Annotated[
        int | None, typer.Option("--stop-set-size", help="unlabeled samples compared across cycles (2000)")
    ] = None,
    resume: Annotated[str | None, typer.Option(help="resume an interrupted run by its id")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress, one line per run")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary")] = False,
) -> None:
    """Run an active learning experiment (no options: a quick real run on digits)."""
    try:
        rdir = results_dir or Path(os.environ.get("ALSCOPE_RESULTS_DIR", "results"))
        if resume is not None:
            result = _execute(None, resume, rdir, quiet, as_json)
            _report_result(result, quiet, as_json)
            return
        file_data = read_config_file(config) if config is not None else {}
        overrides: dict[str, Any] = {}
        flat: dict[str, Any] = {
            "n_initial": n_initial,
            "initial": initial,
            "n_query": n_query,
            "cycles": cycles,
            "trials": trials,
            "ensemble": ensemble,
            "n_class": n_class,
            "data_dir": data_dir,
            "download": download,
            "results_dir": results_dir,
            "cache_dir": cache_dir,
            "training.epochs": epochs,
            "training.min_steps": min_steps,
            "training.validation_fraction": validation_fraction,
            "training.patience": patience,
            "training.batch_size": batch_size,
            "training.optimizer": optimizer,
            "training.lr": lr,
            "training.weight_decay": weight_decay,
            "training.scheduler": scheduler,
            "training.device": device,
            "training.threads": threads,
            "training.amp": amp,
            "training.calibrate": calibrate,
            "training.bias_correction": bias_correction,
            "tracking.uri": tracking_uri,
            "tracking.experiment": experiment,
            "stopping.mode": stop_mode,
            "stopping.stop_set_size": stop_set_size,
        }
        if milestones is not None:
            flat["training.milestones"] = _integers(milestones, "milestones", "--milestones 30,60")
        if no_track:
            flat["tracking.enabled"] = False
        for key, value in flat.items():
            if value is not None:
                _set(overrides, key, str(value) if isinstance(value, Path) else value)
        for kind, name, items in (
            ("backbone", backbone, backbone_param),
            ("scenario", scenario, scenario_param),
        ):
            if name is not None:
                _set(overrides, f"{kind}.name", name)
            if items:
                named_in_file = isinstance(file_data.get(kind), str) or "name" in (file_data.get(kind) or {})
                if name is None and not named_in_file:
                    example = (
                        "--scenario openset --scenario-param ood_rate=0.4"
                        if kind == "scenario"
                        else ("--backbone mlp --backbone-param hidden=64")
                    )
                    raise ConfigError(
                        f"--{kind}-param {' '.join(items)} needs a {kind} to apply to: name it with "
                        f"--{kind} (or '{kind}:' in the config file), e.g. {example}"
                    )
                _set(overrides, f"{kind}.params", _params(items, f"--{kind}-param"))
        if stop is not None or stop_param:
            _set(overrides, "stopping.criteria", _stopping_criteria(stop, stop_param, file_data))
        scenario_flags = {"openset": openset or None, "ood_rate": ood_rate, "imb_factor": imb_factor}
        implied: list[str] = []
        given_parts = {normalize(p) for p in composition_parts(scenario or "")}
        for flag, value in scenario_flags.items():
            if value is None:
                continue
            target = SCENARIO_FLAGS[flag]
            if scenario is not None and normalize(target) not in given_parts:
                raise ConfigError(f"--{flag.replace('_', '-')} needs scenario {target!r}, not {scenario!r}")
            if target not in implied:
                implied.append(target)
            if flag != "openset":
                _set(overrides, f"scenario.params.{flag}", value)
        if implied and scenario is None:
            # --ood-rate with --imb-factor: an open-set pool whose known classes are long-tailed
            _set(overrides, "scenario.name", composition_name(implied))

        for flag, given in (("--strategy", strategy), ("--dataset", dataset)):
            if given is not None and not _split(given):
                raise ConfigError(
                    f"{flag} {' '.join(given)!r} names nothing; give a name (alscope list "
                    f"{flag[2:]}s), or leave {flag} out for the default"
                )
        names: list[str | None] = list(_split(strategy)) or [None]
        strategies = [_alscope_method(s, uncertainty) for s in names]
        datasets: list[str | None] = list(_split(dataset)) or [None]
        seeds: list[int | None] = [None]
        if seed is not None:
            seeds = list(_integers(seed, "seed", "--seed 0,1,2"))
        if config is not None:
            _check_overridden_file_values(file_data, overrides, config)
        base = deep_merge(file_data, overrides)
        members: list[dict[str, Any]] = []
        sweep_base, sweep_members = _sweep_members(sweep) if sweep else ({}, [{}])
        for s, d, sd, extra in itertools.product(strategies, datasets, seeds, sweep_members):
            member = deep_merge(deep_merge(sweep_base, base), extra)
            if s is not None:
                _set(
                    member,
                    "strategy",
                    {
                        "name": s,
                        "params": dict(
                            member.get("strategy", {}).get("params", {})
                            if isinstance(member.get("strategy"), dict)
                            else {}
                        ),
                    },
                )
            if strategy_param:
                st = member.get("strategy", "entropy")
                st = {"name": st} if isinstance(st, str) else dict(st)
                st["params"] = {**st.get("params", {}), **_params(strategy_param, "--strategy-param")}
                member["strategy"] = st
            if d is not None:
                _set(member, "dataset", {"name": d, "params": {}})
            if dataset_param:
                ds = member.get("dataset", "digits")
                ds = {"name": ds} if isinstance(ds, str) else dict(ds)
                ds["params"] = {**ds.get("params", {}), **_params(dataset_param, "--dataset-param")}
                member["dataset"] = ds
            if sd is not None:
                member["seed"] = sd
            members.append(member)
        configs = [build_config(m) for m in members]
        for cfg in configs:
            _validate_names(cfg)
            if n_drop is not None:
                _apply_component_flag(cfg, "strategy", "n_drop", n_drop)
            if epoch_loss is not None:
                _apply_component_flag(cfg, "strategy", "epoch_loss", epoch_loss)
            if subset is not None:
                _apply_component_flag(cfg, "dataset", "max_pool_size", subset, "--subset")
            if samples_per_class is not None:
                _apply_component_flag(cfg, "dataset", "samples_per_class", samples_per_class)
    except AlscopeError as exc:
        raise _fail(str(exc)) from None
    _run_members(configs, quiet, as_json, _command_line(ctx))


def _run_members(configs: list[ExperimentConfig], quiet: bool, as_json: bool, command: str) -> None:
    if len(configs) == 1:
        try:
            result = _execute(configs[0], None, configs[0].results_dir, quiet, as_json, command)
        except AlscopeError as exc:
            raise _fail(str(exc)) from None
        _report_result(result, quiet, as_json)
        return
    failures: list[tuple[str, str]] = []
    done: list[tuple[str, ExperimentResult]] = []
    for i, cfg in enumerate(configs, 1):
        label = f"{cfg.label()} seed={cfg.seed}"
        if not as_json:
            err.print(f"[bold][{i}/{len(configs)}][/bold] {label}")
        try:
            result = _execute(cfg, None, cfg.results_dir, quiet, as_json, command)
        except AlscopeError as exc:
            err.print(f"[red]failed:[/red] {label}: {exc}")
            failures.append((label, str(exc)))
            continue
        except Exception as exc:  # one member's bug must not stop the batch
            err.print(f"[red]failed:[/red] {label}: {type(exc).__name__}: {exc}")
            failures.append((label, f"{type(exc).__name__}: {exc}"))
            continue
        done.append((label, result))
        if not as_json:
            _report_result(result, True, False)
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "runs": [{"member": label, "run": r.run, "summary": r.summary} for label, r in done],
                    "failures": [{"member": label, "error": e} for label, e in failures],
                },
                default=str,
            )
        )
    else:
        table = Table("member", "AUBC", "final accuracy", "run", title="batch", title_justify="left")
        for label, r in done:
            table.add_row(
                label,
                f"{r.summary['aubc']:.4f} ± {r.summary['aubc_std']:.4f}",
                f"{r.summary['final_accuracy']:.4f}",
                r.run,
            )
        for label, e in failures:
            table.add_row(label, "[red]failed[/red]", "", e[:80])
        out.print(table)
        if done:
            cfg = configs[0]
            out.print(
                f"compare: alscope report --experiment {cfg.tracking.experiment}"
                + (f" --tracking-uri {done[0][1].tracking_uri}" if done[0][1].tracking_uri else "")
            )
    if failures:
        raise typer.Exit(1)


def _stopping_criteria(
    names: list[str] | None, items: list[str] | None, file_data: dict[str, Any]
) -> list[dict[str, Any]]:
    """``--stop`` names with their ``--stop-param`` values: ``key=value`` when one criterion
    is given, ``criterion.key=value`` to pick one of several."""
    given = _split(names)
    if names is not None and not given:
        raise ConfigError("--stop names nothing; give a criterion (alscope list stopping)")
    if not given:  # --stop-param for the criteria of the config file
        from_file = (file_data.get("stopping") or {}).get("criteria") or []
        given = [c if isinstance(c, str) else str(c.get("name", "")) for c in from_file]
    if not given:
        raise ConfigError(
            f"--stop-param {' '.join(items or [])} needs a criterion to apply to: name it with --stop, "
            "e.g. --stop stabilizing_predictions --stop-param window=3"
        )
    registry = get_registry()
    canonical = [registry.resolve("stopping", name).name for name in given]
    params: dict[str, dict[str, Any]] = {name: {} for name in canonical}
    for item in items or []:
        key, value = parse_key_value(item, "--stop-param")
        owner, dot, bare = key.rpartition(".")
        if not dot:
            if len(canonical) > 1:
                raise ConfigError(
                    f"--stop-param {item!r}: with several criteria say which one, e.g. "
                    f"--stop-param {canonical[0]}.{key}=..."
                )
            params[canonical[0]][key] = value
            continue
        target = registry.resolve("stopping", owner).name
        if target not in params:
            raise ConfigError(
                f"--stop-param {item!r} is for {target!r}, which is not among --stop {', '.join(canonical)}"
            )
        params[target][bare] = value
    return [{"name": name, "params": params[name]} for name in canonical]


def _alscope_method(name: str | None, uncertainty: str | None) -> str | None:
    if name is not None and normalize(name) == "uncertainty":
        if uncertainty is None:
            raise ConfigError(
                "--method Uncertainty needs --uncertainty (accepted: Entropy, Margin, CONF, ...)"
            )
        mapped = ALSCOPE_UNCERTAINTY.get(normalize(uncertainty))
        if mapped is None:
            accepted = ", ".join(sorted(ALSCOPE_UNCERTAINTY))
            raise ConfigError(f"--uncertainty {uncertainty!r} is unknown (accepted: {accepted})")
        return mapped
    if uncertainty is not None and name is None:
        return ALSCOPE_UNCERTAINTY.get(normalize(uncertainty), uncertainty)
    if uncertainty is not None:
        # ALScope passes --uncertainty to every method but only Uncertainty reads it (its
        # README runs `--method coremse --uncertainty Entropy`): accepted, with a note
        warnings.warn(
            f"--uncertainty {uncertainty} ignored: ALScope reads it only with --method Uncertainty, "
            f"and strategy {name!r} takes no uncertainty measure",
            stacklevel=1,
        )
    return name


def _validate_names(cfg: ExperimentConfig) -> None:
    registry = get_registry()
    registry.resolve_claimed("strategy", cfg.strategy.name)
    registry.resolve_claimed("dataset", cfg.dataset.name)
    registry.resolve_claimed("scenario", cfg.scenario.name)
    if cfg.backbone is not None:
        registry.resolve_claimed("backbone", cfg.backbone.name)


def _apply_component_flag(
    cfg: ExperimentConfig, kind: Any, name: str, value: Any, flag: str | None = None
) -> None:
    """A global ALScope flag that maps to a component parameter, where the component has it
    (ALScope passes ``--n-drop`` to every method, ``--subset`` to every dataset)."""
    component = getattr(cfg, kind)
    registry = get_registry()
    target = registry.load_spec(kind, registry.resolve_claimed(kind, component.name)[0])
    if name in target.Params.model_fields:
        component.params = {**component.params, name: value}
    else:
        flag = flag or "--" + name.replace("_", "-")
        warnings.warn(f"{flag} ignored: {kind} {component.name!r} takes no {name}", stacklevel=1)


# -- report -------------------------------------------------------------------------


@app.command()
def report(
    experiment: Annotated[str, typer.Option(help="MLflow experiment to compare")] = "alscope",
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI")] = None,
    results_dir: Annotated[Path | None, typer.Option("--results-dir")] = None,
    metric: Annotated[
        str,
        typer.Option(
            help="any logged metric: accuracy, macro_f1, balanced_accuracy, query_precision, ...; "
            "a comma list draws curves of each in --html (the first ranks)"
        ),
    ] = "accuracy",
    csv: Annotated[Path | None, typer.Option(help="write the table as CSV")] = None,
    markdown: Annotated[Path | None, typer.Option(help="write the table as Markdown")] = None,
    png: Annotated[Path | None, typer.Option(help="write learning curves with std bands")] = None,
    html: Annotated[
        Path | None,
        typer.Option(
            help="write one self-contained HTML page: curves, ranking, penalty matrix, costs, configs"
        ),
    ] = None,
    run_filter: Annotated[
        list[str] | None, typer.Option("--run", help="only these runs (id prefixes)")
    ] = None,
    include_unfinished: Annotated[
        bool, typer.Option("--include-unfinished", help="also killed/running trials")
    ] = False,
) -> None:
    """Compare strategies side by side from what MLflow holds."""
    from alscope.report import DEFAULT_METRICS, load_trials, summarize
    from alscope.tracking import default_tracking_uri

    try:
        metrics = [m.strip() for m in metric.split(",") if m.strip()]
        if not metrics:
            raise ConfigError("--metric is empty; give a logged metric such as accuracy")
        rdir = results_dir or Path(os.environ.get("ALSCOPE_RESULTS_DIR", "results"))
        uri = tracking_uri or default_tracking_uri(rdir)
        if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
            raise ConfigError(f"no MLflow store at {uri!r}; run an experiment first or pass --tracking-uri")
        trials = load_trials(
            uri,
            experiment,
            run_filter=run_filter,
            include_unfinished=include_unfinished,
            # scenario metrics (query_precision, noisy_labels, ...) are read on request
            metrics=tuple(dict.fromkeys([*DEFAULT_METRICS, *metrics, "query_precision"])),
        )
        # every metric is checked before anything is printed or written
        reports = [summarize(trials, metric=m) for m in metrics]
        rep = reports[0]
        for table in rep.rich_tables():
            out.print(table)
        if csv is not None:
            written = rep.to_csv(csv)
            out.print(f"CSV: {', '.join(map(str, written))}")
        if markdown is not None:
            markdown.parent.mkdir(parents=True, exist_ok=True)
            markdown.write_text(rep.to_markdown(), encoding="utf-8")
            out.print(f"Markdown: {markdown}")
        if png is not None:
            out.print(f"PNG: {', '.join(map(str, rep.plot(png)))}")
        if html is not None:
            from alscope.report import load_configs
            from alscope.report_html import write_html

            ids, roots = list(rep.runs["parent_run_id"]), list(rep.runs["artifact_uri"])
            configs = load_configs(uri, ids, dict(zip(ids, roots, strict=True)))
            write_html(reports, html, experiment=experiment, tracking_uri=uri, configs=configs)
            out.print(f"HTML: {html}")
    except AlscopeError as exc:
        raise _fail(str(exc)) from None


from alscope.cli_label import label_app  # noqa: E402  (it reads this module's helpers)

app.add_typer(label_app, name="label")


def main() -> None:
    """Console entry point: user errors exit non-zero with one line, never a traceback."""
    try:
        app()
    except AlscopeError as exc:  # pragma: no cover - commands catch their own
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
