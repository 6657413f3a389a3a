"""Every scenario, alone and composed: the sample behind a pool index is the one the oracle
labels and the trainer trains on; a seed fixes the class split and the pool; compositions
that make no sense are refused clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alscope.config import ExperimentConfig
from alscope.data.base import ALDataset, DatasetFactory, LoadContext, TensorSource
from alscope.data.tabular import Digits
from alscope.engine.experiment import Experiment
from alscope.engine.trainer import Trainer
from alscope.errors import ConfigError, UnknownComponentError
from alscope.hookspecs import hookimpl
from alscope.registry import Registry, get_registry
from alscope.scenarios.base import OOD, PreparedScenario, Scenario
from alscope.specs import DatasetSpec, ScenarioSpec


class IdentifiedDigits(DatasetFactory):
    """Digits whose last feature is the sample's original position, so any batch tells
    which samples it holds whatever the scenario did to labels and candidates."""

    component_name = "identified_digits"

    def load(self, ctx: LoadContext) -> ALDataset:
        data = Digits().load(ctx)
        for split in ("pool", "test"):
            source = getattr(data, split)
            ids = torch.arange(len(source), dtype=torch.float32)[:, None]
            setattr(data, split, TensorSource(torch.cat([source.inputs, ids], dim=1), source.labels))
        data.input_spec = type(data.input_spec)("vector", (data.pool.inputs.shape[1],))
        data.name = "identified_digits"
        return data


class WholeDatasetScenario(Scenario):
    """A third-party scenario that only knows how to make a setting from the dataset."""

    component_name = "whole"

    def prepare(self, dataset: ALDataset, seed: int) -> PreparedScenario:
        from alscope.scenarios.base import standard_setting

        return standard_setting(dataset)


class _Plugin:
    @hookimpl
    def alscope_register_datasets(self):
        return [DatasetSpec("identified_digits", f"{__name__}:IdentifiedDigits", "ids", domains=("tabular",))]

    @hookimpl
    def alscope_register_scenarios(self):
        return [ScenarioSpec("whole", f"{__name__}:WholeDatasetScenario", "not composable")]


REGISTRY = Registry(plugins={"composition_tests": _Plugin()})

SCENARIOS = {
    "standard": {},
    "openset": {"ood_rate": 0.4, "n_known": 6},
    "imbalanced": {"imb_factor": 0.2},
    "noisy_oracle": {"noise_rate": 0.3},
    "openset+imbalanced": {"ood_rate": 0.4, "n_known": 6, "imb_factor": 0.2},
    "openset+imbalanced+noisy_oracle": {"ood_rate": 0.3, "imb_factor": 0.3, "noise_rate": 0.2},
}


def _digits(tmp_path) -> ALDataset:
    return IdentifiedDigits().load(LoadContext(tmp_path, seed=0))


def _scenario(name: str, **params) -> Scenario:
    spec, implied = get_registry().resolve_claimed("scenario", name)
    return get_registry().load_spec("scenario", spec)({**implied, **params})


def _config(tmp_path, scenario: str, params: dict, seed: int = 0) -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        {
            "strategy": "random",
            "dataset": "identified_digits",
            "scenario": {"name": scenario, "params": params},
            "cycles": 2,
            "n_initial": 20,
            "n_query": 25,
            "seed": seed,
            "results_dir": str(tmp_path),
            "training": {"epochs": 1},
            "tracking": {"enabled": False},
        }
    )


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_index_is_the_same_sample_for_oracle_and_trainer(tmp_path, monkeypatch, name):
    trained: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    original_fit = Trainer.fit

    def spy(self, model, source, labeled, targets, **kwargs):
        ids, ys = [], []
        for batch in source.batches(np.asarray(labeled), batch_size=64, train=False):
            ids.append(batch.inputs[:, -1].long().numpy())
            ys.append(targets[batch.indices].numpy())
        trained.append((np.asarray(labeled), np.concatenate(ids), np.concatenate(ys)))
        return original_fit(self, model, source, labeled, targets, **kwargs)

    monkeypatch.setattr(Trainer, "fit", spy)
    experiment = Experiment(_config(tmp_path, name, SCENARIOS[name]), registry=REGISTRY)
    result = experiment.run()
    truth = _digits(tmp_path).pool.labels  # the original classes, by original position
    trial = result.trials[0]
    labeled, answers = np.array(trial.labeled), np.array(trial.labels)
    setting = _scenario(name, **SCENARIOS[name]).prepare(_digits(tmp_path), seed=0)
    # the oracle's answers are the setting's answers for exactly those indices
    assert np.array_equal(answers, setting.oracle.label(labeled))
    assert np.isin(labeled, setting.candidates).all()
    known_classes = setting.info.get("known_classes", [str(c) for c in range(10)])
    known = np.array([int(c) for c in known_classes])
    for indices, ids, targets in trained:
        # the trainer reads the sample at its own index and trains on the oracle's answer
        assert np.array_equal(ids, indices)
        answer_of = dict(zip(labeled.tolist(), answers.tolist(), strict=True))
        assert targets.tolist() == [answer_of[i] for i in indices.tolist()]
        assert (targets != OOD).all()  # OOD answers are never trained on
    clean = answers[answers != OOD]
    true_known = known[clean] if "noisy" not in name else None
    if true_known is not None:  # a truthful oracle names the sample's own (renumbered) class
        assert np.array_equal(true_known, truth[labeled[answers != OOD]])
    ood = labeled[answers == OOD]
    assert not np.isin(truth[ood], known).any()


@pytest.mark.parametrize("name", [n for n in SCENARIOS if n != "standard"])
def test_a_seed_fixes_the_class_split_and_the_pool(tmp_path, name):
    a = _scenario(name, **SCENARIOS[name]).prepare(_digits(tmp_path), seed=3)
    b = _scenario(name, **SCENARIOS[name]).prepare(_digits(tmp_path), seed=3)
    c = _scenario(name, **SCENARIOS[name]).prepare(_digits(tmp_path), seed=4)
    assert np.array_equal(a.candidates, b.candidates)
    assert a.dataset.classes == b.dataset.classes
    every = np.arange(len(a.dataset.pool))
    assert np.array_equal(a.oracle.label(every), b.oracle.label(every))
    differs = not np.array_equal(a.candidates, c.candidates) or not np.array_equal(
        a.oracle.label(every), c.oracle.label(every)
    )
    assert differs


def test_openset_on_an_imbalanced_pool(tmp_path):
    params = {"ood_rate": 0.4, "n_known": 5, "imb_factor": 0.1}
    setting = _scenario("openset+imbalanced", **params).prepare(_digits(tmp_path), seed=0)
    labels = setting.dataset.pool.labels[setting.candidates]
    counts = np.bincount(labels[labels != OOD], minlength=5)
    # the long tail runs over the known classes, rarest / most frequent = the factor
    assert counts[-1] / counts[0] == pytest.approx(0.1, abs=0.02)
    assert np.all(np.diff(counts) <= 0)
    # the open-set step's OOD share survives the thinning
    assert (labels == OOD).mean() == pytest.approx(0.4, abs=0.02)
    assert np.isin(setting.initial_candidates, setting.candidates).all()
    assert (setting.dataset.pool.labels[setting.initial_candidates] != OOD).all()
    assert setting.info["composition"] == ["openset", "imbalanced"]
    # the order the parts are written in does not matter
    other = _scenario("imbalanced+openset", **params).prepare(_digits(tmp_path), seed=0)
    assert np.array_equal(other.candidates, setting.candidates)
    metrics = setting.query_metrics(setting.candidates[:10], labels[:10], labels[:10])
    assert {"query_precision", "id_recall", "query_share/0", "query_share/4"} <= set(metrics)


def test_noise_on_an_open_set_pool_leaves_ood_answers_alone(tmp_path):
    setting = _scenario("openset+noisy_oracle", ood_rate=0.3, noise_rate=0.5).prepare(
        _digits(tmp_path), seed=0
    )
    cand = setting.candidates
    truth = setting.dataset.pool.labels[cand]
    answers = setting.oracle.label(cand)
    assert np.array_equal(answers == OOD, truth == OOD)
    wrong = (answers != truth)[truth != OOD].mean()
    assert wrong == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("openset+openset", {}, "appears twice"),
        ("openset+whole", {}, "cannot be composed"),
        ("openset+imbalanced", {"imb_factr": 0.1}, "unknown parameter.*'imb_factr'.*imb_factor"),
    ],
)
def test_compositions_that_make_no_sense_are_refused(tmp_path, name, params, message):
    with pytest.raises(ConfigError, match=message):
        Experiment(_config(tmp_path, name, params), registry=REGISTRY)


def test_a_misspelt_part_gets_a_suggestion(tmp_path):
    with pytest.raises(UnknownComponentError, match="imbalanced"):
        Experiment(_config(tmp_path, "openset+imbalancd", {}), registry=REGISTRY)


def test_cli_ood_rate_with_imb_factor_composes(tmp_path):
    from typer.testing import CliRunner

    from alscope.cli import app

    args = ["run", "--strategy", "entropy", "--ood-rate", "0.4", "--imb-factor", "0.2", "--cycles", "2"]
    args += ["--n-query", "20", "--epochs", "3", "--no-track", "--results-dir", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "openset+imbalanced" in result.output
    assert "query precision" in result.output and "balanced acc" in result.output
    assert "query share by class" in result.output
    bad = CliRunner().invoke(app, [*args[:-2], "--scenario", "noisy_oracle", "--results-dir", str(tmp_path)])
    assert bad.exit_code != 0 and "needs scenario 'openset'" in bad.output
