"""``alscope report --html``: the penalty matrix, the page's content, and the page as headless
Chromium renders it (skipped with the reason where Chromium or Playwright is absent)."""

from __future__ import annotations

import io
import itertools
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from alscope.cli import app
from alscope.report import load_trials, penalty_matrix, summarize

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("ALSCOPE_SHARED_DATA", REPO.parent / "shared" / "data"))
MNIST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
STRATEGIES = ("random", "entropy", "margin", "coreset")
EXPERIMENT = "html"


def _values(rows: list[tuple[str, str, str, int, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["dataset", "scenario", "label", "trial", "n_labeled", "value"])


# -- the penalty matrix ------------------------------------------------------------------


def test_penalty_matrix_equals_the_hand_computed_one() -> None:
    """Two settings. In "d1" (counts 10, 20, 30, 40; 3 trials): A leads B by 0.10 +- a
    little at 20, 30 and 40 (significant), B and C are identical (never a win); at 10
    everyone is equal. C beats A at 40 with no spread at all (counts as significant).
    In "d2" (counts 10, 20; 2 trials for A, 1 for C): A beats B at 20 by exactly 0.05 in
    both trials (no spread: significant), C has one trial only (no comparison)."""
    noise = [0.0, 0.01, -0.01]
    rows = []
    for t in range(3):
        for n in (10, 20, 30, 40):
            b = 0.5 + noise[t]
            a = b if n == 10 else b + 0.10 + noise[(t + 1) % 3] / 2
            c = b
            if n == 40:
                a, c = 0.60, 0.70  # C over A by 0.10 in every trial
            rows += [("d1", "s", "A", t, n, a), ("d1", "s", "B", t, n, b), ("d1", "s", "C", t, n, c)]
    for t in range(2):
        rows += [("d2", "s", "A", t, 10, 0.4), ("d2", "s", "B", t, 10, 0.4)]
        rows += [("d2", "s", "A", t, 20, 0.55 + 0.1 * t), ("d2", "s", "B", t, 20, 0.50 + 0.1 * t)]
    rows += [("d2", "s", "C", 0, 10, 0.9), ("d2", "s", "C", 0, 20, 0.9)]
    pm = penalty_matrix(_values(rows))

    # By hand: d1 has K = 4 counts, d2 has K = 2.
    # A>B: d1 at 20, 30 (2/4; at 40 A is 0.60 vs B 0.50..: significant too, so 3/4) + d2 at 20 (1/2)
    # A>C: d1 at 20, 30 (2/4; at 40 C wins); C>A: d1 at 40 (1/4); C vs B at 40: C 0.70 vs B ~0.5 (1/4)
    # d2: C has a single trial, so it compares with no one there.
    expected = pd.DataFrame(
        [[0.0, 3 / 4 + 1 / 2, 2 / 4], [0.0, 0.0, 0.0], [1 / 4, 1 / 4, 0.0]],
        index=["A", "B", "C"],
        columns=["A", "B", "C"],
    )
    np.testing.assert_allclose(pm.matrix.to_numpy(), expected.to_numpy(), atol=1e-12)
    assert pm.settings == [("d1", "s"), ("d2", "s")]
    np.testing.assert_allclose(pm.wins.to_numpy(), [(1.25 + 0.5) / 2, 0.0, 0.25])
    np.testing.assert_allclose(pm.losses.to_numpy(), [0.125, 0.75, 0.25])
    frame = pm.to_frame()
    assert list(frame.columns) == ["A", "B", "C", "wins"] and frame.index[-1] == "losses"


def test_penalty_matrix_matches_scipy_paired_t_tests_one_by_one() -> None:
    """A loop of scipy's ttest_rel over every pair and labeled count gives the same
    matrix as the vectorised one, on noisy curves where some differences are
    significant and some are not."""
    from scipy.stats import ttest_rel

    rng = np.random.default_rng(0)
    labels, counts, trials = ["s0", "s1", "s2", "s3"], [20, 40, 60, 80, 100], 5
    skill = {"s0": 0.0, "s1": 0.01, "s2": 0.03, "s3": 0.03}
    rows = [
        ("d", "std", label, t, n, 0.6 + skill[label] * (n / 20) + rng.normal(0, 0.015))
        for label in labels
        for t in range(trials)
        for n in counts
    ]
    pm = penalty_matrix(_values(rows), alpha=0.05)
    frame = _values(rows)
    expected = np.zeros((4, 4))
    for (i, a), (j, b) in itertools.permutations(enumerate(labels), 2):
        for n in counts:
            x = frame[(frame.label == a) & (frame.n_labeled == n)].sort_values("trial")["value"].to_numpy()
            y = frame[(frame.label == b) & (frame.n_labeled == n)].sort_values("trial")["value"].to_numpy()
            result = ttest_rel(x, y)
            if result.pvalue < 0.05 and result.statistic > 0:
                expected[i, j] += 1 / len(counts)
    np.testing.assert_allclose(pm.matrix.to_numpy(), expected, atol=1e-12)
    assert expected.sum() > 0 and (expected < 1).any()  # the case has wins and non-wins


def test_penalty_matrix_of_one_strategy_is_empty_of_wins() -> None:
    rows = [("d", "s", "only", t, n, 0.5 + 0.01 * t) for t in range(3) for n in (10, 20)]
    pm = penalty_matrix(_values(rows))
    assert pm.matrix.shape == (1, 1) and pm.matrix.iloc[0, 0] == 0.0
    assert np.isnan(pm.wins.iloc[0])


# -- a real experiment -------------------------------------------------------------------


def _run(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """4 strategies x 3 seeds on digits (entropy with a stopping criterion recorded), and,
    where the MNIST test files are there, one open-set run on MNIST, all from the CLI."""
    tmp = tmp_path_factory.mktemp("html")
    common = ["--results-dir", str(tmp), "--experiment", EXPERIMENT, "--quiet", "--threads", "1"]
    common += ["--device", "cpu"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        for strategy in STRATEGIES:
            extra = ["--stop", "max_confidence", "--stop-mode", "record"] if strategy == "entropy" else []
            _run(
                [
                    *("run", "--strategy", strategy, "--trials", "3", "--cycles", "3", "--n-initial", "20"),
                    *("--n-query", "20", "--epochs", "8", *extra, *common),
                ]
            )
        mnist = all((SHARED / "mnist" / f).is_file() for f in MNIST_FILES)
        if mnist:
            _run(
                [
                    *("run", "--strategy", "entropy", "--dataset", "mnist", "--data-dir", str(SHARED)),
                    *("--dataset-param", "max_pool_size=1500", "--scenario", "openset", "--ood-rate", "0.4"),
                    *(
                        "--trials",
                        "1",
                        "--cycles",
                        "2",
                        "--n-initial",
                        "40",
                        "--n-query",
                        "40",
                        "--epochs",
                        "3",
                    ),
                    *common,
                ]
            )
    return {"tmp": tmp, "uri": f"sqlite:///{tmp}/mlflow.db", "mnist": mnist}


def _report_args(store: dict) -> list[str]:
    return ["report", "--experiment", EXPERIMENT, "--results-dir", str(store["tmp"])]


@pytest.fixture(scope="module")
def page(store: dict) -> Path:
    html = store["tmp"] / "out" / "report.html"
    _run([*_report_args(store), "--metric", "accuracy,macro_f1", "--html", str(html)])
    return html


@pytest.mark.slow
def test_report_frames_hold_costs_composition_and_commands(store: dict) -> None:
    rep = summarize(load_trials(store["uri"], EXPERIMENT))
    digits = rep.aubc[rep.aubc["dataset"] == "digits"].set_index("strategy")
    assert set(digits.index) == set(STRATEGIES) and (digits["n_trials"] == 3).all()
    # totals are per trial: 3 queries of selection time, 4 trainings
    trials = rep.trial_metrics[rep.trial_metrics["dataset"] == "digits"]
    for strategy in STRATEGIES:
        mine = trials[trials["label"] == strategy]
        expected = mine.groupby("trial_run_id")["selection_time"].sum().mean()
        assert digits.loc[strategy, "total_selection_time"] == pytest.approx(expected)
    # each cycle's composition sums to the batch size
    composition = rep.composition[rep.composition["dataset"] == "digits"]
    per_cycle = composition.groupby(["label", "n_labeled"])["count"].sum()
    assert per_cycle.index.get_level_values("n_labeled").max() == 60  # the last query, after 60 labels
    np.testing.assert_allclose(per_cycle.to_numpy(), 20.0)
    commands = rep.runs[rep.runs["dataset"] == "digits"].set_index("strategy")["command"]
    # the options as given (in the order the command declares them)
    assert commands["coreset"].startswith("alscope run --strategy coreset ")
    assert "--trials 3" in commands["coreset"] and "--epochs 8" in commands["coreset"]
    assert "--stop max_confidence" in commands["entropy"]
    assert (rep.runs["n_pool"] > 0).all()
    if store["mnist"]:
        openset = rep.composition[rep.composition["scenario"] == "openset"]
        assert "ood" in set(openset["cls"]) or openset.empty is False


@pytest.mark.slow
def test_html_page_content(store: dict, page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text and "http://" not in text.replace(store["uri"], "")
    assert "https://" not in text  # nothing to fetch: it opens from disk
    for strategy in STRATEGIES:
        assert f"<td>{strategy}</td>" in text
    assert "digits / standard" in text and "Pairwise penalty matrix" in text
    assert "alscope run --strategy coreset" in text and "<summary>config</summary>" in text
    assert "max_confidence" in text  # the stopping table
    # curves of both metrics, cost, composition and the penalty heatmap
    alts = re.findall(r'alt="([^"]+)"', text)
    assert "learning curves of accuracy on digits / standard" in alts
    assert "learning curves of macro_f1 on digits / standard" in alts
    assert "AUBC against selection and training time on digits / standard" in alts
    assert "classes queried per cycle on digits / standard" in alts
    assert "pairwise penalty matrix" in alts
    if store["mnist"]:
        assert any(a.startswith("query precision on mnist") for a in alts)
    # the config shown is the run's own config.yaml, which `alscope run --config` reads
    assert "strategy:\n  name: coreset" in text.replace("&#39;", "'")


@pytest.mark.slow
def test_markdown_and_csv_gain_the_same_tables(store: dict, tmp_path: Path) -> None:
    md, csv = tmp_path / "r.md", tmp_path / "r.csv"
    _run([*_report_args(store), "--markdown", str(md), "--csv", str(csv)])
    text = md.read_text(encoding="utf-8")
    assert "## Pairwise penalty matrix (accuracy)" in text and "| losses" in text
    assert "Queried samples per class" in text and "selection time / trial" in text
    assert "## Commands" in text and "`alscope run --strategy margin" in text
    penalty = pd.read_csv(tmp_path / "r_penalty.csv", index_col="winner")
    assert set(STRATEGIES) <= set(penalty.index) and "wins" in penalty.columns
    composition = pd.read_csv(tmp_path / "r_composition.csv")
    assert {"label", "n_labeled", "cls", "count"} <= set(composition.columns)
    aubc = pd.read_csv(tmp_path / "r_aubc.csv")
    assert {"total_selection_time", "total_train_time"} <= set(aubc.columns)


@pytest.mark.slow
def test_figures_drawn_in_forked_workers_equal_those_drawn_in_process(
    store: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    import alscope.report_html as report_html

    reports = [summarize(load_trials(store["uri"], EXPERIMENT), metric=m) for m in ("accuracy", "macro_f1")]
    forked: list[int] = []
    in_workers = report_html._draw_in_workers

    def counting(jobs: list, workers: int) -> list[bytes] | None:
        forked.append(workers)
        return in_workers(jobs, workers)

    def page() -> str:
        html = report_html.build_html(reports, experiment=EXPERIMENT, tracking_uri=store["uri"])
        return re.sub(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", "", html)

    monkeypatch.setattr(report_html, "_draw_in_workers", counting)
    monkeypatch.setattr(report_html, "_usable_cpus", lambda: 1)
    in_process = page()
    assert forked == []
    monkeypatch.setattr(report_html, "_usable_cpus", lambda: 2)
    in_parallel = page()
    assert forked == [2]
    assert in_parallel == in_process and in_process.count("data:image/png;base64,") >= 5


@pytest.mark.slow
def test_configs_are_read_from_the_artifact_roots_the_report_found(store: dict) -> None:
    from alscope.report import load_configs

    runs = summarize(load_trials(store["uri"], EXPERIMENT)).runs
    ids = list(runs["parent_run_id"])
    roots = dict(zip(ids, runs["artifact_uri"], strict=True))
    direct = load_configs(store["uri"], ids, roots)
    assert set(direct) == set(ids) and all("strategy:" in text for text in direct.values())
    assert load_configs(store["uri"], ids) == direct  # without roots each run is looked up
    assert load_configs(store["uri"], [*ids[:1], "0" * 32]) == {ids[0]: direct[ids[0]]}


@pytest.mark.slow
def test_html_refuses_bad_input_in_one_line(store: dict, tmp_path: Path) -> None:
    base = _report_args(store)
    result = CliRunner().invoke(app, [*base, "--html", str(tmp_path)])
    assert result.exit_code != 0 and "is a folder" in result.output
    assert "Traceback" not in result.output
    out = tmp_path / "never.html"
    result = CliRunner().invoke(app, [*base, "--metric", "accuracy,acuracy", "--html", str(out)])
    assert result.exit_code != 0 and "acuracy" in result.output and "Traceback" not in result.output
    assert not out.exists()  # nothing written when a metric is wrong


# -- the page in headless Chromium ----------------------------------------------------


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.mark.slow
def test_page_renders_in_headless_chromium(page: Path, tmp_path: Path) -> None:
    browser_path = _chromium()
    if browser_path is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); .ci/run installs it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (test extra)")
    from PIL import Image

    problems: list[str] = []
    outside: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=browser_path,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        view = browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
        view.on(
            "console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
        )
        view.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        view.on("requestfailed", lambda r: problems.append(f"failed request: {r.url}"))
        view.on(
            "request", lambda r: outside.append(r.url) if not r.url.startswith(("file:", "data:")) else None
        )
        view.goto(page.as_uri(), wait_until="load")
        figures = view.eval_on_selector_all(
            "img.figure",
            """els => els.map(e => ({alt: e.alt, complete: e.complete, nw: e.naturalWidth,
                nh: e.naturalHeight, w: e.getAttribute('width'), h: e.getAttribute('height'),
                rw: e.getBoundingClientRect().width, rh: e.getBoundingClientRect().height}))""",
        )
        shots = [view.locator("img.figure").nth(i).screenshot() for i in range(len(figures))]
        view.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        browser.close()

    assert problems == [] and outside == []
    assert len(figures) >= 5
    for figure, shot in zip(figures, shots, strict=True):
        assert figure["complete"] and figure["nw"] > 0, figure
        # the image is the size the page declares, shown at it (or scaled to the column)
        assert (str(figure["nw"]), str(figure["nh"])) == (figure["w"], figure["h"]), figure
        assert figure["rw"] > 300 and abs(figure["rw"] / figure["rh"] - figure["nw"] / figure["nh"]) < 0.02
        pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("L"), dtype=float)
        assert pixels.shape[1] == pytest.approx(figure["rw"], abs=1)
        assert pixels.std() > 10 and (pixels < 128).mean() > 0.002, figure["alt"]  # drawn, not blank
    full = Image.open(tmp_path / "page.png")
    assert full.size[0] == 1280 and full.size[1] > 3000
