"""The bad-input matrix: what a hostile tester types, each case one line of error.

Every case exits non-zero with one ``error:`` line that names the problem (or, for a
number Typer cannot parse, Typer's usage box whose last line names the flag), without a
traceback or a hang, and leaves the run states and stores it touched as they were.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from alscope.cli import app

runner = CliRunner()


def _csv(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _features_csv(path: Path) -> None:
    rows = "\n".join(f"{i % 7},{(i * 3) % 5},{'ab'[i % 2]}" for i in range(60))
    _csv(path, "a,b,label\n" + rows + "\n")


def _npz(path: Path, **arrays: np.ndarray) -> None:
    np.savez(path, **arrays)  # type: ignore[arg-type]


Setup = Callable[[Path], None]


def nothing(_: Path) -> None:
    pass


def files(**writers: Callable[[Path], None]) -> Setup:
    def setup(root: Path) -> None:
        for name, write in writers.items():
            write(root / name.replace("__", "."))

    return setup


rng = np.random.default_rng(0)
FEATURES = rng.normal(size=(60, 3)).astype(np.float32)
LABELS = np.arange(60) % 2

# (id, arguments after "run", files to write first, a fragment the error line must hold)
CASES: list[tuple[str, list[str], Setup, str]] = [
    # names
    ("unknown strategy", ["--strategy", "entrpy"], nothing, "did you mean 'entropy'"),
    ("unknown strategy far", ["--strategy", "zzzzqqq"], nothing, "unknown strategy"),
    ("unknown dataset", ["--dataset", "mnsit"], nothing, "did you mean"),
    ("unknown backbone", ["--backbone", "resnet19"], nothing, "did you mean"),
    ("unknown scenario", ["--scenario", "opnset"], nothing, "did you mean"),
    ("unknown optimizer", ["--optimizer", "adamm"], nothing, "optimizer"),
    ("unknown scheduler", ["--scheduler", "cos"], nothing, "scheduler"),
    ("unknown device", ["--device", "tpu"], nothing, "device"),
    ("unknown initial", ["--initial", "balanced"], nothing, "initial"),
    ("unknown calibrate", ["--calibrate", "platt"], nothing, "calibrate"),
    ("unknown bias correction", ["--bias-correction", "ipw"], nothing, "bias"),
    ("unknown uncertainty", ["--method", "uncertainty", "--uncertainty", "maxent"], nothing, "uncertainty"),
    ("namespace unknown", ["--strategy", "nosuch:entropy"], nothing, "namespace"),
    ("empty strategy", ["--strategy", ""], nothing, "strategy"),
    (
        "strategy param unknown",
        ["--strategy", "bald", "--strategy-param", "nope=1"],
        nothing,
        "unknown parameter",
    ),
    ("strategy param type", ["--strategy", "bald", "--strategy-param", "n_drop=many"], nothing, "n_drop"),
    ("strategy param range", ["--strategy", "bald", "--strategy-param", "n_drop=0"], nothing, "n_drop"),
    ("strategy param malformed", ["--strategy-param", "n_drop"], nothing, "key=value"),
    ("dataset param unknown", ["--dataset-param", "nope=1"], nothing, "unknown parameter"),
    ("dataset param malformed", ["--dataset-param", "=3"], nothing, "key=value"),
    (
        "backbone param unknown",
        ["--backbone", "mlp", "--backbone-param", "nope=1"],
        nothing,
        "unknown parameter",
    ),
    ("backbone param without backbone", ["--backbone-param", "hidden=64"], nothing, "--backbone"),
    ("scenario param without scenario", ["--scenario-param", "foo=1"], nothing, "--scenario"),
    (
        "scenario param unknown",
        ["--scenario", "openset", "--scenario-param", "foo=1"],
        nothing,
        "unknown parameter",
    ),
    ("openset flag with other scenario", ["--scenario", "imbalance", "--openset"], nothing, "needs scenario"),
    ("ood rate range", ["--ood-rate", "1.5"], nothing, "ood_rate"),
    ("imb factor range", ["--imb-factor", "0"], nothing, "imb_factor"),
    ("ensemble with modules", ["--strategy", "learning_loss", "--ensemble", "2"], nothing, "ensemble"),
    ("cold start needs model", ["--strategy", "entropy", "--n-initial", "0"], nothing, "cold start"),
    # numbers
    ("cycles negative", ["--cycles", "-1"], nothing, "cycles=-1"),
    ("trials zero", ["--trials", "0"], nothing, "trials=0"),
    ("n-query zero", ["--n-query", "0"], nothing, "n_query"),
    ("n-initial negative", ["--n-initial", "-5"], nothing, "n_initial"),
    ("epochs zero", ["--epochs", "0"], nothing, "epochs"),
    ("min steps negative", ["--min-steps", "-1"], nothing, "min_steps"),
    ("lr zero", ["--lr", "0"], nothing, "lr"),
    ("lr negative", ["--lr", "-0.1"], nothing, "lr"),
    ("weight decay negative", ["--weight-decay", "-1"], nothing, "weight_decay"),
    ("batch size zero", ["--batch-size", "0"], nothing, "batch_size"),
    ("validation fraction 1", ["--validation-fraction", "1"], nothing, "validation_fraction"),
    ("patience zero", ["--patience", "0"], nothing, "patience"),
    ("threads zero", ["--threads", "0"], nothing, "threads"),
    ("seed negative", ["--seed", "-1"], nothing, "seed"),
    ("seed above 32 bits", ["--seed", str(2**32)], nothing, "4294967295"),
    ("seed empty item", ["--seed", "1,,2"], nothing, "seed='1,,2'"),
    ("seed trailing comma", ["--seed", "1,"], nothing, "seed='1,'"),
    ("seed word", ["--seed", "one"], nothing, "seed='one'"),
    ("milestones word", ["--scheduler", "multistep", "--milestones", "ten"], nothing, "milestones"),
    ("milestones empty item", ["--scheduler", "multistep", "--milestones", "10,,20"], nothing, "milestones"),
    (
        "budget exceeds pool",
        ["--n-initial", "1000", "--cycles", "10", "--n-query", "500"],
        nothing,
        "n_initial",
    ),
    ("n drop zero", ["--strategy", "bald", "--n-drop", "0"], nothing, "n_drop"),
    ("subset zero", ["--subset", "0"], nothing, "max_pool_size"),
    (
        "stratified initial below classes",
        ["--initial", "stratified", "--n-initial", "3"],
        nothing,
        "stratified",
    ),
    # config files
    ("config missing", ["-c", "missing.yaml"], nothing, "does not exist"),
    ("config bad yaml", ["-c", "c.yaml"], files(c__yaml=lambda p: _csv(p, "cycles: [1\n")), "c.yaml"),
    ("config bad toml", ["-c", "c.toml"], files(c__toml=lambda p: _csv(p, "cycles = \n")), "c.toml"),
    ("config unknown key", ["-c", "c.yaml"], files(c__yaml=lambda p: _csv(p, "cyclez: 2\n")), "cyclez"),
    ("config wrong type", ["-c", "c.yaml"], files(c__yaml=lambda p: _csv(p, "cycles: three\n")), "cycles"),
    (
        "config wrong type hidden by flag",
        ["-c", "c.yaml", "--cycles", "1"],
        files(c__yaml=lambda p: _csv(p, "cycles: three\n")),
        "c.yaml",
    ),
    (
        "config nested wrong type hidden by flag",
        ["-c", "c.yaml", "--epochs", "2"],
        files(c__yaml=lambda p: _csv(p, "training:\n  epochs: -3\n")),
        "training.epochs",
    ),
    ("config not a mapping", ["-c", "c.yaml"], files(c__yaml=lambda p: _csv(p, "- 1\n- 2\n")), "c.yaml"),
    ("config unknown suffix", ["-c", "c.ini"], files(c__ini=lambda p: _csv(p, "[x]\n")), "c.ini"),
    (
        "config unknown training key",
        ["-c", "c.yaml"],
        files(c__yaml=lambda p: _csv(p, "training:\n  epoch: 3\n")),
        "epoch",
    ),
    (
        "config strategy unknown",
        ["-c", "c.yaml"],
        files(c__yaml=lambda p: _csv(p, "strategy: entrpy\n")),
        "did you mean",
    ),
    ("sweep missing", ["--sweep", "s.yaml"], nothing, "does not exist"),
    ("sweep unknown key", ["--sweep", "s.yaml"], files(s__yaml=lambda p: _csv(p, "grid: {}\n")), "grid"),
    (
        "sweep grid not lists",
        ["--sweep", "s.yaml"],
        files(s__yaml=lambda p: _csv(p, "sweep:\n  seed: 3\n")),
        "lists",
    ),
    # own data files
    ("features without path", ["--dataset", "features"], nothing, "'path' is required"),
    (
        "features missing file",
        ["--dataset", "features", "--dataset-param", "path=none.csv"],
        nothing,
        "does not exist",
    ),
    ("features folder", ["--dataset", "features", "--dataset-param", "path=."], nothing, "is a folder"),
    (
        "features unknown suffix",
        ["--dataset", "features", "--dataset-param", "path=x.xlsx"],
        nothing,
        "unknown format",
    ),
    (
        "csv empty label",
        ["--dataset", "features", "--dataset-param", "path=f.csv"],
        files(f__csv=lambda p: _csv(p, "a,b,label\n1,2,x\n3,4,\n5,6,y\n7,8,x\n1,2,y\n3,3,x\n")),
        "without a label",
    ),
    (
        "csv no label column",
        ["--dataset", "features", "--dataset-param", "path=f.csv"],
        files(f__csv=lambda p: _csv(p, "a,b,y\n1,2,x\n3,4,y\n")),
        "no label column",
    ),
    (
        "csv text feature",
        ["--dataset", "features", "--dataset-param", "path=f.csv"],
        files(f__csv=lambda p: _csv(p, "a,b,label\n1,x,x\n3,y,y\n")),
        "non-numeric",
    ),
    (
        "csv missing feature value",
        ["--dataset", "features", "--dataset-param", "path=f.csv"],
        files(f__csv=lambda p: _csv(p, "a,b,label\n1,,x\n3,4,y\n")),
        "missing values",
    ),
    (
        "csv empty",
        ["--dataset", "features", "--dataset-param", "path=f.csv"],
        files(f__csv=lambda p: _csv(p, "")),
        "f.csv",
    ),
    (
        "csv header only",
        ["--dataset", "features", "--dataset-param", "path=f.csv"],
        files(f__csv=lambda p: _csv(p, "a,b,label\n")),
        "no rows",
    ),
    (
        "csv one class",
        ["--dataset", "features", "--dataset-param", "path=f.csv"],
        files(f__csv=lambda p: _csv(p, "a,b,label\n1,2,x\n3,4,x\n5,5,x\n")),
        "at least 2",
    ),
    (
        "csv feature column missing",
        ["--dataset", "features", "--dataset-param", "path=f.csv", "--dataset-param", "feature_columns=[q]"],
        files(f__csv=_features_csv),
        "not found",
    ),
    (
        "csv test file width",
        ["--dataset", "features", "--dataset-param", "path=f.csv", "--dataset-param", "test_path=t.csv"],
        files(f__csv=_features_csv, t__csv=lambda p: _csv(p, "a,label\n1,a\n2,b\n")),
        "features",
    ),
    (
        "npz rows and labels differ",
        ["--dataset", "features", "--dataset-param", "path=f.npz"],
        files(f__npz=lambda p: _npz(p, X=np.zeros((200, 3)), label=np.arange(150) % 3)),
        "200 feature rows but 150 labels",
    ),
    (
        "npz nan",
        ["--dataset", "features", "--dataset-param", "path=f.npz"],
        files(f__npz=lambda p: _npz(p, X=np.full((10, 3), np.nan), label=np.arange(10) % 2)),
        "missing values",
    ),
    (
        "npz no label",
        ["--dataset", "features", "--dataset-param", "path=f.npz"],
        files(f__npz=lambda p: _npz(p, X=FEATURES, y=LABELS)),
        "no array 'label'",
    ),
    (
        "npz no features",
        ["--dataset", "features", "--dataset-param", "path=f.npz"],
        files(f__npz=lambda p: _npz(p, Z=FEATURES, label=LABELS)),
        "no feature array",
    ),
    (
        "npz one dimensional",
        ["--dataset", "features", "--dataset-param", "path=f.npz"],
        files(f__npz=lambda p: _npz(p, X=np.zeros(10), label=np.arange(10) % 2)),
        "2-D",
    ),
    (
        "npz corrupt",
        ["--dataset", "features", "--dataset-param", "path=f.npz"],
        files(f__npz=lambda p: p.write_bytes(b"PK\x03\x04 not a zip")),
        "cannot be read",
    ),
    (
        "parquet corrupt",
        ["--dataset", "features", "--dataset-param", "path=f.parquet"],
        files(f__parquet=lambda p: p.write_bytes(b"PAR1 garbage")),
        "f.parquet",
    ),
    (
        "csv binary garbage",
        ["--dataset", "features", "--dataset-param", "path=f.csv"],
        files(f__csv=lambda p: p.write_bytes(bytes(range(256)) * 4)),
        "f.csv",
    ),
    ("imagefolder without path", ["--dataset", "imagefolder"], nothing, "'path' is required"),
    ("imagefolder missing", ["--dataset", "imagefolder", "--dataset-param", "path=nope"], nothing, "nope"),
    (
        "imagefolder empty",
        ["--dataset", "imagefolder", "--dataset-param", "path=imgs"],
        files(imgs=lambda p: p.mkdir()),
        "imgs",
    ),
    ("text without path", ["--dataset", "text"], nothing, "path=<file>"),
    ("text missing file", ["--dataset", "text", "--dataset-param", "path=none.csv"], nothing, "none.csv"),
    (
        "text too few rows to hold out a test set",
        ["--dataset", "text", "--dataset-param", "path=t.csv"],
        files(t__csv=lambda p: _csv(p, "body,label\nhello,a\nbye,b\n")),
        "hold out",
    ),
    (
        "sst5 with csv files",
        ["--dataset", "sst5", "--data-dir", "csvs"],
        files(csvs=lambda p: (p.mkdir(), _csv(p / "train.csv", "text,label\nhi,1\n"))),
        "--dataset text",
    ),
    (
        "data dir is a file",
        ["--dataset", "mnist", "--data-dir", "f.csv"],
        files(f__csv=_features_csv),
        "mnist",
    ),
    # results, stores, tracking
    (
        "results dir is a file",
        ["--results-dir", "f.csv"],
        files(f__csv=_features_csv),
        "is a file, not a folder",
    ),
    (
        "results dir below a file",
        ["--results-dir", "f.csv/sub"],
        files(f__csv=_features_csv),
        "cannot be written",
    ),
    ("tracking unreachable", ["--tracking-uri", "http://127.0.0.1:9"], nothing, "cannot reach the MLflow"),
    ("tracking bad scheme", ["--tracking-uri", "nosuch://x"], nothing, "MLflow"),
    (
        "tracking store corrupt",
        ["--tracking-uri", "sqlite:///bad.db"],
        files(bad__db=lambda p: p.write_bytes(b"not a database at all" * 50)),
        "MLflow",
    ),
    (
        "tracking store below a file",
        ["--tracking-uri", "sqlite:///f.csv/mlflow.db"],
        files(f__csv=_features_csv),
        "is a file, not a folder",
    ),
    # resume
    ("resume unknown run", ["--resume", "no-such-run"], nothing, "no-such-run"),
    # plugins
    ("plugin namespace unknown", ["--dataset", "zz:digits"], nothing, "namespace"),
]


def run_case(args: list[str], track: bool = False) -> tuple[int, str, BaseException | None]:
    flags = [] if track else ["--no-track"]
    result = runner.invoke(app, ["run", *flags, "--epochs", "1", "--cycles", "1", *args])
    exc = result.exception if not isinstance(result.exception, SystemExit) else None
    return result.exit_code, result.output, exc


def assert_one_line_error(code: int, output: str, exc: BaseException | None, expected: str) -> None:
    assert exc is None, f"uncaught {type(exc).__name__}: {exc}"
    assert code != 0, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1, output
    assert expected.lower() in errors[0].lower(), errors[0]


@pytest.mark.parametrize(("args", "setup", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line(
    args: list[str], setup: Setup, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ALSCOPE_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    setup(tmp_path)
    # the --tracking-uri cases are about the store: tracking on
    assert_one_line_error(*run_case(args, track="--tracking-uri" in args), expected)


NUMBER_FLAGS = [
    "--cycles",
    "--trials",
    "--n-initial",
    "--n-query",
    "--epochs",
    "--lr",
    "--batch-size",
    "--threads",
    "--min-steps",
    "--weight-decay",
    "--ood-rate",
    "--validation-fraction",
]


@pytest.mark.parametrize("flag", NUMBER_FLAGS)
def test_non_numeric_number_names_the_flag_and_the_form(flag: str) -> None:
    """Typer's usage box stays (the convention of the CLI library); its last line names the
    flag and says what a valid value looks like."""
    result = runner.invoke(app, ["run", flag, "abc"])
    assert result.exit_code == 2
    last = [line for line in result.output.splitlines() if line.strip()][-1]
    assert flag in last and ("integer" in last or "number" in last), last


# -- run states: corrupt, edited, and what a failed command leaves ------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("finished")
    result = runner.invoke(
        app,
        ["run", "--results-dir", str(root), "--cycles", "1", "--epochs", "1", "--min-steps", "0", "--quiet"],
    )
    assert result.exit_code == 0, result.output
    (run,) = [p.name for p in (root / "runs").iterdir()]
    return root, run


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _interrupted(state: dict) -> dict:
    state = json.loads(json.dumps(state))
    state["status"] = "RUNNING"
    state["trials"][0]["done"] = False
    state["trials"][0]["cycles"] = state["trials"][0]["cycles"][:1]
    return state


def _edit_labeled(values: list) -> Callable[[dict], object]:
    def edit(state: dict) -> dict:
        state = _interrupted(state)
        state["trials"][0]["labeled"][: len(values)] = values
        return state

    return edit


def _drop_labels(state: dict) -> dict:
    state = _interrupted(state)
    state["trials"][0]["labels"] = state["trials"][0]["labels"][:-1]
    return state


def _duplicate_index(state: dict) -> dict:
    state = _interrupted(state)
    labeled = state["trials"][0]["labeled"]
    labeled[1] = labeled[0]
    return state


def _renumber_cycles(state: dict) -> dict:
    state = _interrupted(state)
    state["trials"][0]["cycles"][0]["cycle"] = 3
    return state


STATE_CASES: list[tuple[str, Callable[[dict], object] | bytes, str]] = [
    ("truncated", b"", "damaged"),
    ("random bytes", bytes(range(256)), "damaged"),
    ("not an object", b"[1, 2, 3]", "damaged"),
    ("missing trials", b'{"run": "x", "config": {}}', "damaged"),
    ("indices out of range", _edit_labeled([10**9]), "outside 0.."),
    ("negative index", _edit_labeled([-1]), "outside"),
    ("string index", _edit_labeled(["x"]), "outside"),
    ("labels fewer than indices", _drop_labels, "labels for"),
    ("index twice", _duplicate_index, "twice"),
    ("cycles renumbered", _renumber_cycles, "cycles"),
]


@pytest.mark.parametrize(("edit", "expected"), [c[1:] for c in STATE_CASES], ids=[c[0] for c in STATE_CASES])
def test_damaged_run_state_is_refused_and_left_as_it_was(
    finished_run: tuple[Path, str], edit: Callable[[dict], object] | bytes, expected: str, tmp_path: Path
) -> None:
    source, run = finished_run
    root = tmp_path / "results"
    shutil.copytree(source, root)
    state_path = root / "runs" / run / "state.json"
    original = json.loads(state_path.read_text())
    if isinstance(edit, bytes):
        text = json.dumps(_interrupted(original))
        state_path.write_bytes(edit if edit else text[: len(text) // 2].encode())
    else:
        state_path.write_text(json.dumps(edit(original)))
    before = _digest(root)
    result = runner.invoke(app, ["run", "--results-dir", str(root), "--resume", run])
    exc = result.exception if not isinstance(result.exception, SystemExit) else None
    assert_one_line_error(result.exit_code, result.output, exc, expected)
    assert _digest(root) == before


def test_resume_of_a_run_another_process_holds_is_refused_and_left_as_it_was(
    finished_run: tuple[Path, str], tmp_path: Path
) -> None:
    """A second ``--resume`` of a run in progress is refused in one line naming the
    holder, instead of repeating its cycles and logging its metrics twice; once the holder
    is gone, the resume goes on."""
    from alscope.engine.state import run_lock
    from alscope.errors import ResumeError

    source, run = finished_run
    root = tmp_path / "results"
    shutil.copytree(source, root)
    state_path = root / "runs" / run / "state.json"
    state_path.write_text(json.dumps(_interrupted(json.loads(state_path.read_text()))))
    with run_lock(root / "runs" / run):
        with pytest.raises(ResumeError, match="is in use"), run_lock(root / "runs" / run):
            pass  # a second holder in this process is refused too (flock, per open file)
        before = _digest(root)
        result = runner.invoke(app, ["run", "--results-dir", str(root), "--resume", run, "--quiet"])
        exc = result.exception if not isinstance(result.exception, SystemExit) else None
        assert_one_line_error(result.exit_code, result.output, exc, f"is in use by process {os.getpid()}")
        assert _digest(root) == before
    result = runner.invoke(app, ["run", "--results-dir", str(root), "--resume", run, "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads(state_path.read_text())["status"] == "FINISHED"


def test_a_bad_flag_leaves_an_existing_store_as_it_was(
    finished_run: tuple[Path, str], tmp_path: Path
) -> None:
    source, _ = finished_run
    root = tmp_path / "results"
    shutil.copytree(source, root)
    before = _digest(root)
    for args in (["--lr", "-1"], ["--strategy", "entrpy"], ["--dataset", "features"]):
        result = runner.invoke(app, ["run", "--results-dir", str(root), *args])
        assert result.exit_code != 0
    assert _digest(root) == before


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root writes anywhere")
def test_read_only_results_folder_fails_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        code, output, exc = run_case(["--results-dir", str(folder)])
        assert_one_line_error(code, output, exc, "cannot be written")
    finally:
        folder.chmod(0o700)


def test_matrix_is_large() -> None:
    """The issue asks for at least 100 cases across the kinds of input."""
    assert len(CASES) + len(STATE_CASES) + len(NUMBER_FLAGS) >= 100
