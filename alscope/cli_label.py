"""``alscope label``: label your own data with alscope's strategies (docs/labelling.md).

    alscope label init PROJECT --data texts.csv --classes World,Sports,Business,Tech [--labels seed.csv]
    alscope label next -p PROJECT -n 50          # writes PROJECT/rounds/round-001.csv
    alscope label import -p PROJECT answers.csv  # the filled-in batch (id, label)
    alscope label status -p PROJECT
    alscope label export -p PROJECT OUT

The project and the engine are imported inside the commands, so ``alscope --help`` stays
fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from alscope.errors import AlscopeError

label_app = typer.Typer(
    name="label",
    help="Label your own data: init a project, then next / import rounds; status and export.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

ProjectOption = Annotated[
    Path, typer.Option("--project", "-p", help="the project folder (alscope label init made it)")
]


def _cli() -> Any:
    from alscope import cli

    return cli


def _open(folder: Path) -> Any:
    from alscope.labelling.project import LabelProject

    return LabelProject.open(folder)


@label_app.command("init")
def init(
    project: Annotated[Path, typer.Argument(help="the project folder to create")],
    data: Annotated[
        Path,
        typer.Option(
            help="your data: a CSV/TSV/JSONL/Parquet of texts or features, a .npy, or a folder of images"
        ),
    ],
    classes: Annotated[str, typer.Option(help="the class names, comma-separated (World,Sports,...)")],
    labels: Annotated[
        Path | None, typer.Option(help="labels you have already: a CSV or JSONL with id and label")
    ] = None,
    test: Annotated[
        Path | None,
        typer.Option(help="a labeled gold set in the data's format (label column), evaluated every round"),
    ] = None,
    kind: Annotated[str, typer.Option(help="auto, text, features or images")] = "auto",
    id_column: Annotated[
        str | None, typer.Option(help="the id column (default: id, else the row number)")
    ] = None,
    text_column: Annotated[
        str | None, typer.Option(help="the text column (default: text, sentence, ...)")
    ] = None,
    label_column: Annotated[
        str | None, typer.Option(help="a column of labels the data already holds (empty cells: unlabeled)")
    ] = None,
    strategy: Annotated[str, typer.Option(help="the query strategy (alscope list strategies)")] = "entropy",
    strategy_param: Annotated[list[str] | None, typer.Option(help="strategy parameter key=value")] = None,
    backbone: Annotated[
        str | None, typer.Option(help="the model (alscope list backbones; a model folder for texts)")
    ] = None,
    backbone_param: Annotated[list[str] | None, typer.Option(help="backbone parameter key=value")] = None,
    epochs: Annotated[int | None, typer.Option(help="training epochs per round")] = None,
    min_steps: Annotated[
        int | None, typer.Option(help="at least this many optimiser steps per round")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="learning rate")] = None,
    batch_size: Annotated[int | None, typer.Option(help="training batch size")] = None,
    validation_fraction: Annotated[
        float | None,
        typer.Option(help="hold out this part of the labels each round: the accuracy estimate in status"),
    ] = None,
    stop: Annotated[list[str] | None, typer.Option(help="stopping criteria (alscope list stopping)")] = None,
    stop_param: Annotated[
        list[str] | None, typer.Option(help="criterion parameter [criterion.]key=value")
    ] = None,
    stop_mode: Annotated[
        str, typer.Option(help="record (report where a criterion fires) or stop")
    ] = "record",
    seed: Annotated[int, typer.Option(help="seed of every round's training and selection")] = 0,
    tracking: Annotated[
        bool, typer.Option("--tracking/--no-tracking", help="log every round to MLflow")
    ] = True,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI")] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment")] = "alscope-label",
) -> None:
    """Create a labelling project over your data."""
    cli = _cli()
    try:
        from alscope.config import ComponentConfig
        from alscope.labelling.project import LabelProject

        if kind not in ("auto", "text", "features", "images"):
            raise cli.ConfigError(f"--kind {kind!r}: accepted are auto, text, features, images")
        if stop_mode not in ("record", "stop"):
            raise cli.ConfigError(f"--stop-mode {stop_mode!r}: accepted are record, stop")
        training = {
            k: v
            for k, v in {
                "epochs": epochs,
                "min_steps": min_steps,
                "lr": lr,
                "batch_size": batch_size,
                "validation_fraction": validation_fraction,
            }.items()
            if v is not None
        }
        criteria = cli._stopping_criteria(stop, stop_param, {}) if stop or stop_param else []
        created = LabelProject.init(
            project,
            data,
            classes.split(","),
            labels=labels,
            test=test,
            kind=kind,  # type: ignore[arg-type]  # checked above
            id_column=id_column,
            text_column=text_column,
            label_column=label_column,
            strategy=ComponentConfig(name=strategy, params=cli._params(strategy_param, "--strategy-param")),
            backbone=None
            if backbone is None
            else ComponentConfig(name=backbone, params=cli._params(backbone_param, "--backbone-param")),
            training=training,
            stop=[c["name"] for c in criteria],
            stop_params={c["name"]: c["params"] for c in criteria if c["params"]},
            stop_mode=stop_mode,  # type: ignore[arg-type]  # checked above
            seed=seed,
            tracking=tracking,
            tracking_uri=tracking_uri,
            experiment=experiment,
        )
    except AlscopeError as exc:
        raise cli._fail(str(exc)) from None
    status = created.status()
    cli.out.print(
        f"project {project}: {status['samples']} samples of {created.settings.kind}, "
        f"{status['labeled']} labeled, classes {', '.join(created.settings.classes)}; "
        f"strategy {status['strategy']}, backbone {status['backbone']}"
    )
    cli.out.print(f"next: alscope label next -p {project} -n 50")


@label_app.command("next")
def next_batch(
    project: ProjectOption = Path("."),
    n: Annotated[int, typer.Option("-n", "--n", min=1, help="how many samples to label next")] = 50,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="the batch file (.csv or .jsonl); default PROJECT/rounds/"),
    ] = None,
) -> None:
    """Train on the labels so far and write the next batch to annotate."""
    cli = _cli()
    try:
        path, rows = _open(project).next(n, out)
    except AlscopeError as exc:
        raise cli._fail(str(exc)) from None
    if rows == 0:
        cli.out.print(
            "a stopping criterion ended the project: nothing more to label (see alscope label status)"
        )
        return
    cli.out.print(f"{rows} samples to label: {path}")
    cli.out.print(
        f"fill in the label column (a class, skip or unsure), then: alscope label import -p {project} {path}"
    )


@label_app.command("import")
def import_answers(
    answers: Annotated[Path, typer.Argument(help="a CSV or JSONL file with id and label columns")],
    project: ProjectOption = Path("."),
    relabel: Annotated[bool, typer.Option(help="let answers change labels given before")] = False,
) -> None:
    """Read the annotators' answers (every row is checked before any is applied)."""
    cli = _cli()
    try:
        counts = _open(project).import_answers(answers, relabel)
    except AlscopeError as exc:
        raise cli._fail(str(exc)) from None
    cli.out.print(
        f"{counts['labeled']} labeled, {counts['relabeled']} relabeled, {counts['set_aside']} set aside, "
        f"{counts['unchanged']} unchanged"
    )


@label_app.command("status")
def status(
    project: ProjectOption = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="print the status as JSON")] = False,
) -> None:
    """Labels per class, the rounds, the accuracy estimate and the stopping criteria."""
    cli = _cli()
    try:
        info = _open(project).status()
    except AlscopeError as exc:
        raise cli._fail(str(exc)) from None
    if as_json:
        cli.out.print(json.dumps(info, indent=1, default=str), markup=False, highlight=False)
        return
    aside = ", ".join(f"{n} {why}" for why, n in info["set_aside"].items()) or "none"
    cli.out.print(
        f"{info['project']}: {info['labeled']} of {info['samples']} labeled, set aside: {aside}, "
        f"{info['pending']} waiting for answers; strategy {info['strategy']}, backbone {info['backbone']}"
    )
    classes = Table(title="labels per class")
    for name in info["per_class"]:
        classes.add_column(name, justify="right")
    classes.add_row(*(str(v) for v in info["per_class"].values()))
    cli.out.print(classes)
    rounds = Table(title="rounds")
    for column in (
        "round",
        "trained on",
        "picked",
        "answered",
        "train acc",
        "val acc (estimate)",
        "stopping",
    ):
        rounds.add_column(column, justify="right" if column != "stopping" else "left")
    for r in info["rounds"]:
        fired = [c for c, f in r["stopping"].items() if f]
        rounds.add_row(
            str(r["round"]),
            str(r["trained_on"]),
            str(r["picked"]),
            "yes" if r["answered"] else "no",
            "" if r["train_accuracy"] is None else f"{r['train_accuracy']:.3f}",
            "" if r["val_accuracy"] is None else f"{r['val_accuracy']:.3f}",
            "" if r["test_accuracy"] is None else f"{r['test_accuracy']:.3f}",
            ("fired: " + ", ".join(fired)) if fired else ("not fired" if r["stopping"] else ""),
        )
    cli.out.print(rounds)
    if not any(r["val_accuracy"] is not None for r in info["rounds"]):
        cli.out.print(
            "no accuracy estimate: create the project with --validation-fraction 0.2 to hold one out"
        )
    if info["stopped"]:
        stopped = info["stopped"]
        cli.out.print(
            f"stopped by {stopped['criterion']} at {stopped['n_labeled']} labels (round {stopped['cycle']})"
        )


@label_app.command("export")
def export(
    out: Annotated[Path, typer.Argument(help="the folder to write labels.csv and model.pt into")],
    project: ProjectOption = Path("."),
) -> None:
    """Write the labeled samples and the last trained model."""
    cli = _cli()
    try:
        written = _open(project).export(out)
    except AlscopeError as exc:
        raise cli._fail(str(exc)) from None
    cli.out.print("wrote " + ", ".join(str(p) for p in written))
