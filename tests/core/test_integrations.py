"""alscope.integrations: your own torch model and scikit-learn estimator in alscope's loop.

The torch front end, given a module built like the engine's MLP and the engine's training
recipe, must pick exactly what ``alscope run`` picks on the same data and seed; the loop
must resume to the same picks, track to MLflow in the engine's layout and refuse bad input
in one clear message.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from alscope.config import ExperimentConfig
from alscope.engine.experiment import Experiment, run_experiment
from alscope.errors import BudgetError, ConfigError, DataError, ModelError, ResumeError, UnknownComponentError
from alscope.integrations import ActiveLearner, LearnerLoop, ModuleBackbone, SklearnLearner

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SEED = 3


def engine_config(tmp_path: Path, strategy: str) -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        {
            "dataset": {"name": "digits"},
            "backbone": {"name": "mlp"},
            "strategy": {"name": strategy},
            "cycles": 2,
            "n_initial": 20,
            "n_query": 10,
            "seed": SEED,
            "results_dir": str(tmp_path / "engine"),
            "training": {"epochs": 5, "min_steps": 60},
            "tracking": {"enabled": False},
        }
    )


def engine_mlp_twin() -> nn.Module:
    """The engine's default MLP written as a user would: same layers, same init order."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 256),
        nn.ReLU(inplace=True),
        nn.Dropout(0.3),
        nn.Linear(256, 128),
        nn.ReLU(inplace=True),
        nn.Dropout(0.3),
        nn.Linear(128, 10),
    )


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict:
    cfg = engine_config(tmp_path_factory.mktemp("digits"), "random")
    exp = Experiment(cfg)
    ds = exp._load_dataset().dataset
    return {
        "x_pool": ds.pool.inputs,
        "y_pool": ds.pool.labels,
        "x_test": ds.test.inputs,
        "y_test": ds.test.labels,
        "training": exp.config.training,
    }


def run_learner(
    learner: LearnerLoop, y_pool: np.ndarray, initial: np.ndarray, rounds: int, n: int = 10
) -> None:
    if not len(learner.labeled):
        learner.teach(initial, y_pool[initial])
    for _ in range(rounds):
        batch = learner.query(n)
        learner.teach(batch, y_pool[batch])


# -- the engine's picks ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "options"),
    [("entropy", {}), ("badge", {}), ("bald", {}), ("learning_loss", {"feature_layers": ["3", "6"]})],
)
def test_own_module_picks_what_the_engine_picks(
    tmp_path: Path, digits: dict, strategy: str, options: dict
) -> None:
    cfg = engine_config(tmp_path, strategy)
    engine = run_experiment(cfg).trials[0]
    learner = ActiveLearner(
        engine_mlp_twin,
        digits["x_pool"],
        10,
        strategy=strategy,
        test=(digits["x_test"], digits["y_test"]),
        training=Experiment(cfg).config.training,
        seed=SEED,
        tracking=False,
        state_dir=tmp_path / "learner",
        **options,
    )
    run_learner(learner, digits["y_pool"], np.asarray(engine.labeled[:20]), rounds=2)
    learner.finish()
    assert learner.labeled.tolist() == engine.labeled
    assert [h["accuracy"] for h in learner.history] == [c.metrics["accuracy"] for c in engine.cycles]


def test_own_train_function_and_hook_strategies(tmp_path: Path, digits: dict) -> None:
    calls = []

    def train(model: nn.Module, labeled: torch.utils.data.Dataset) -> None:
        calls.append(len(labeled))
        x, y = labeled[0]
        assert x.shape == (64,) and isinstance(y, int)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        loader = torch.utils.data.DataLoader(labeled, batch_size=32, shuffle=True)
        for _ in range(30):
            for xb, yb in loader:
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(xb), yb).backward()
                optimizer.step()

    learner = ActiveLearner(
        engine_mlp_twin(),
        digits["x_pool"],
        10,
        strategy="margin",
        test=(digits["x_test"], digits["y_test"]),
        train=train,
        tracking=False,
        state_dir=tmp_path / "own",
    )
    run_learner(learner, digits["y_pool"], np.arange(30), rounds=2, n=30)
    summary = learner.finish()
    assert calls == [30, 60, 90]  # two queries, then the final model
    accuracies = [h["accuracy"] for h in learner.history]
    assert accuracies[-1] > accuracies[0] and summary["final_accuracy"] > 0.7
    with pytest.raises(ConfigError, match="alscope's trainer"):
        ActiveLearner(engine_mlp_twin(), digits["x_pool"], 10, strategy="tidal", train=train, tracking=False)


def test_a_dataset_pool_and_named_embedding_layer(tmp_path: Path, digits: dict) -> None:
    pool = torch.utils.data.TensorDataset(digits["x_pool"], torch.as_tensor(digits["y_pool"]))
    test = torch.utils.data.TensorDataset(digits["x_test"], torch.as_tensor(digits["y_test"]))
    learner = ActiveLearner(
        engine_mlp_twin,
        pool,
        10,
        strategy="coreset",
        test=test,
        embedding_layer="5",
        training={"epochs": 5},
        tracking=False,
        state_dir=tmp_path / "ds",
    )
    run_learner(learner, digits["y_pool"], np.arange(20), rounds=1)
    assert len(learner.labeled) == 30 and "accuracy" in learner.history[0]


# -- resume and restart ------------------------------------------------------------------


def test_restart_continues_and_picks_what_an_uninterrupted_run_picks(tmp_path: Path, digits: dict) -> None:
    from alscope.report import load_trials

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def learner(folder: str) -> ActiveLearner:
        return ActiveLearner(
            engine_mlp_twin,
            digits["x_pool"],
            10,
            strategy="entropy",
            training={"epochs": 3},
            test=(digits["x_test"], digits["y_test"]),
            seed=1,
            tracking_uri=uri,
            experiment=folder,
            state_dir=tmp_path / folder,
        )

    y = digits["y_pool"]
    straight = learner("straight")
    run_learner(straight, y, np.arange(20), rounds=3)

    first = learner("restarted")
    first.teach(np.arange(20), y[:20])
    batch = first.query(10)
    assert np.array_equal(first.query(10), batch)  # asked again before teach: the same batch
    second = learner("restarted")  # the process ended before the answers came
    assert np.array_equal(second.pending, batch)
    assert np.array_equal(second.query(10), batch)
    second.teach(batch, y[batch])
    run_learner(learner("restarted"), y, np.arange(20), rounds=2)
    restarted = learner("restarted")
    assert restarted.labeled.tolist() == straight.labeled.tolist()
    assert restarted.finish() == straight.finish()
    # one MLflow run per learner, every round logged once, as the uninterrupted run's
    logged = {name: load_trials(uri, name).sort_values("n_labeled") for name in ("straight", "restarted")}
    assert logged["restarted"]["n_labeled"].tolist() == [20, 30, 40, 50]
    assert len(set(logged["restarted"]["parent_run_id"])) == 1
    for column in ("n_labeled", "accuracy"):
        assert logged["restarted"][column].tolist() == logged["straight"][column].tolist()


def test_a_state_started_otherwise_is_refused(tmp_path: Path, digits: dict) -> None:
    ActiveLearner(
        engine_mlp_twin, digits["x_pool"], 10, strategy="entropy", tracking=False, state_dir=tmp_path
    )
    with pytest.raises(ResumeError, match="started with"):
        ActiveLearner(
            engine_mlp_twin, digits["x_pool"], 10, strategy="margin", tracking=False, state_dir=tmp_path
        )


def test_finished_learner_refuses_more(tmp_path: Path, digits: dict) -> None:
    learner = ActiveLearner(
        engine_mlp_twin, digits["x_pool"], 10, training={"epochs": 2}, tracking=False, state_dir=tmp_path
    )
    run_learner(learner, digits["y_pool"], np.arange(20), rounds=1)
    first = learner.finish()
    assert learner.finish() == first and learner.finished
    with pytest.raises(ResumeError, match="finished"):
        learner.query(10)


# -- bad input ---------------------------------------------------------------------------


def test_bad_answers_are_refused_and_nothing_is_lost(tmp_path: Path, digits: dict) -> None:
    learner = ActiveLearner(engine_mlp_twin, digits["x_pool"], 10, tracking=False, state_dir=tmp_path)
    with pytest.raises(BudgetError, match="teach some labels"):
        learner.query(10)
    learner.teach([0, 1, 2], [0, 1, 2])
    cases = [
        (([3, 4], [1]), "2 indices but 1 labels"),
        (([3], [10]), "not classes 0..9"),
        (([3], [0.5]), "class numbers"),
        (([99999], [1]), "outside the pool"),
        (([2], [1]), "another answer"),
        (([5, 5], [1, 1]), "twice"),
    ]
    for (indices, labels), message in cases:
        with pytest.raises(DataError, match=message):
            learner.teach(indices, labels)
    assert learner.labeled.tolist() == [0, 1, 2]
    with pytest.raises(BudgetError):
        learner.query(len(digits["x_pool"]))


def test_set_aside_relabel_and_what_annotators_see(tmp_path: Path, digits: dict) -> None:
    y = digits["y_pool"]
    learner = ActiveLearner(
        engine_mlp_twin,
        digits["x_pool"],
        10,
        strategy="margin",
        training={"epochs": 2},
        tracking=False,
        state_dir=tmp_path,
    )
    learner.teach(np.arange(20), y[:20])
    batch = learner.query(10)
    notes = learner.pending_annotations
    assert len(notes["score"]) == len(notes["prediction"]) == len(notes["confidence"]) == 10
    assert notes["score"] == sorted(notes["score"], reverse=True)  # top-k: the best first
    counts = learner.teach(
        batch[2:], y[batch[2:]], set_aside={int(batch[0]): "skip", int(batch[1]): "unsure"}
    )
    assert counts == {"labeled": 8, "relabeled": 0, "set_aside": 2, "unchanged": 0}
    assert not len(learner.pending) and learner.history[-1]["n_labeled"] == 20  # the round is closed
    assert not np.isin(batch[:2], learner.unlabeled).any() and learner.set_aside[int(batch[0])] == "skip"
    assert learner.teach([0], [y[0]]) == {"labeled": 0, "relabeled": 0, "set_aside": 0, "unchanged": 1}
    other = (int(y[0]) + 1) % 10
    with pytest.raises(DataError, match="another answer"):
        learner.teach([0], [other])
    assert learner.teach([0], [other], relabel=True)["relabeled"] == 1 and learner.labels[0] == other
    with pytest.raises(DataError, match="cannot be set aside"):
        learner.teach([], [], set_aside={0: "skip"})


def test_bad_layers_and_models_get_clear_messages(digits: dict) -> None:
    with pytest.raises(ConfigError, match=r"no layer 'classifer'.*'7'"):
        ModuleBackbone(engine_mlp_twin(), 10, classifier_layer="classifer")
    with pytest.raises(ModelError, match=r"no nn\.Linear"):
        ModuleBackbone(nn.Sequential(nn.Flatten(), nn.Conv1d(1, 2, 3)), 10)
    with pytest.raises(ConfigError, match=r"nn\.Module or a function"):
        ActiveLearner("mlp", digits["x_pool"], 10, tracking=False)  # type: ignore[arg-type]
    with pytest.raises(UnknownComponentError, match="did you mean 'entropy'"):
        ActiveLearner(engine_mlp_twin, digits["x_pool"], 10, strategy="entropyy", tracking=False)


def test_mismatched_test_sets_and_output_widths_are_refused(tmp_path: Path, digits: dict) -> None:
    x_test, y_test = digits["x_test"], digits["y_test"]
    with pytest.raises(DataError, match="450 inputs but 449 labels"):
        ActiveLearner(engine_mlp_twin, digits["x_pool"], 10, test=(x_test, y_test[:-1]), tracking=False)
    with pytest.raises(DataError, match=r"classes 0\.\.7"):
        ActiveLearner(engine_mlp_twin, digits["x_pool"], 8, test=(x_test, y_test), tracking=False)
    learner = ActiveLearner(
        engine_mlp_twin, digits["x_pool"], 12, training={"epochs": 1}, tracking=False, state_dir=tmp_path
    )
    learner.teach(np.arange(20), digits["y_pool"][:20])
    with pytest.raises(ModelError, match="10 outputs per sample but n_classes=12"):
        learner.query(10)
    assert learner.labeled.tolist() == list(range(20)) and not len(learner.pending)


def test_features_are_required_only_where_a_strategy_reads_them(tmp_path: Path, digits: dict) -> None:
    learner = ActiveLearner(
        engine_mlp_twin,
        digits["x_pool"],
        10,
        strategy="learning_loss",
        training={"epochs": 1},
        tracking=False,
        state_dir=tmp_path,
    )
    learner.teach(np.arange(20), digits["y_pool"][:20])
    with pytest.raises(ModelError, match="feature_layers"):
        learner.query(10)


# -- stopping and tracking ---------------------------------------------------------------


def test_stopping_ends_the_loop_and_mlflow_has_the_engine_layout(tmp_path: Path, digits: dict) -> None:
    from typer.testing import CliRunner

    from alscope.cli import app
    from alscope.report import load_trials, summarize

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    learner = ActiveLearner(
        engine_mlp_twin,
        digits["x_pool"],
        10,
        strategy="entropy",
        test=(digits["x_test"], digits["y_test"]),
        training={"epochs": 3},
        stop="labelling_budget",
        stop_params={"labelling_budget": {"budget": 20}},
        tracking_uri=uri,
        experiment="byom",
        dataset_name="digits",
        state_dir=tmp_path / "state",
    )
    y = digits["y_pool"]
    learner.teach(np.arange(20), y[:20])
    rounds = 0
    while len(batch := learner.query(10)):
        learner.teach(batch, y[batch])
        rounds += 1
    assert learner.stopped is not None and learner.stopped["criterion"] == "labelling_budget"
    assert learner.stopped["n_labeled"] == 40 and rounds == 2
    summary = learner.finish()
    trials = load_trials(uri, "byom")
    assert set(trials["strategy"]) == {"entropy"} and set(trials["dataset"]) == {"digits"}
    assert trials.sort_values("n_labeled")["n_labeled"].tolist() == [20, 30, 40]
    np.testing.assert_allclose(
        trials.sort_values("n_labeled")["accuracy"], [h["accuracy"] for h in learner.history]
    )
    (aubc,) = summarize(trials).aubc["aubc_mean"]
    assert aubc == pytest.approx(summary["aubc"])
    shown = CliRunner().invoke(app, ["report", "--tracking-uri", uri, "--experiment", "byom"])
    assert shown.exit_code == 0, shown.output
    assert "entropy" in shown.output and "labelling_budget" in shown.output


# -- scikit-learn ------------------------------------------------------------------------


def test_sklearn_estimator_learns_with_badge_and_refuses_torch_strategies(
    tmp_path: Path, digits: dict
) -> None:
    from sklearn.linear_model import LogisticRegression

    x_pool, y = digits["x_pool"].numpy(), digits["y_pool"]
    learner = SklearnLearner(
        LogisticRegression(max_iter=500),
        x_pool,
        10,
        strategy="badge",
        test=(digits["x_test"].numpy(), digits["y_test"]),
        tracking=False,
        state_dir=tmp_path,
    )
    run_learner(learner, y, np.arange(20), rounds=3, n=20)
    accuracies = [h["accuracy"] for h in learner.history]
    assert accuracies[-1] > accuracies[0] + 0.1
    assert len(set(learner.labeled.tolist())) == 80
    with pytest.raises(ConfigError, match=r"bald.*(?s:.*)entropy"):
        SklearnLearner(LogisticRegression(), x_pool, 10, strategy="bald", tracking=False)
    with pytest.raises(ConfigError, match="predict_proba"):
        from sklearn.svm import LinearSVC

        SklearnLearner(LinearSVC(), x_pool, 10, tracking=False)


def test_sklearn_example_runs_and_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import sklearn_digits

    learner = sklearn_digits.main(rounds=3, tracking=False, state_dir=tmp_path)
    assert learner.finished and len(learner.labeled) == 80
    assert learner.state.summary["final_accuracy"] > 0.8
    sys.modules.pop("sklearn_digits", None)


@pytest.mark.realdata
def test_torch_example_on_the_mnist_test_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    folder = Path(os.environ.get("ALSCOPE_SHARED_DATA", EXAMPLES.parents[1] / "shared" / "data")) / "mnist"
    if not (folder / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"the MNIST test set is not in {folder} (set ALSCOPE_SHARED_DATA)")
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import torch_mnist

    learner = torch_mnist.main(
        folder,
        "badge",
        n_pool=1000,
        n_initial=50,
        n_query=50,
        rounds=2,
        steps=60,
        tracking=False,
        state_dir=tmp_path,
    )
    accuracies = [h["accuracy"] for h in learner.history]
    assert len(learner.labeled) == 150 and accuracies[-1] > accuracies[0] and accuracies[-1] > 0.7
    sys.modules.pop("torch_mnist", None)


def _estimator_strategies() -> list[str]:
    from alscope.integrations.scikit_learn import estimator_strategies

    return estimator_strategies()


@pytest.mark.parametrize("strategy", _estimator_strategies())
def test_every_strategy_offered_to_estimators_queries(tmp_path: Path, digits: dict, strategy: str) -> None:
    from sklearn.linear_model import LogisticRegression

    x_pool, y = digits["x_pool"].numpy()[:400], digits["y_pool"][:400]
    learner = SklearnLearner(
        LogisticRegression(max_iter=200), x_pool, 10, strategy=strategy, tracking=False, state_dir=tmp_path
    )
    learner.teach(np.arange(30), y[:30])
    batch = learner.query(15)
    assert len(batch) == 15 and len(set(batch.tolist())) == 15 and not np.isin(batch, np.arange(30)).any()
