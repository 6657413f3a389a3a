"""The experiment configuration: validation, error messages, files, merging and params."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from alscope.components import NoParams, validate_params
from alscope.config import (
    ComponentConfig,
    ExperimentConfig,
    TrainingConfig,
    build_config,
    deep_merge,
    parse_key_value,
    read_config_file,
)
from alscope.errors import AlscopeError, ConfigError
from alscope.models.mlp import MLP, MLPParams

# -- defaults and component strings ----------------------------------------------------------


def test_defaults_validate() -> None:
    cfg = build_config({})
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.strategy == ComponentConfig(name="entropy")
    assert cfg.dataset.name == "digits"
    assert cfg.scenario.name == "standard"
    assert cfg.backbone is None
    assert (cfg.n_initial, cfg.n_query, cfg.cycles, cfg.trials, cfg.seed) == (20, 20, 5, 1, 0)
    assert cfg.training.optimizer == "adam"
    assert cfg.training.scheduler == "none"
    assert cfg.training.device == "auto"
    assert cfg.tracking.enabled is True
    assert cfg.label() == "entropy-digits"
    # the defaults are themselves valid input
    assert build_config(json.loads(cfg.model_dump_json())) == cfg


def test_default_dirs_follow_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ALSCOPE_RESULTS_DIR", str(tmp_path / "res"))
    monkeypatch.setenv("ALSCOPE_DATA_DIR", str(tmp_path / "dat"))
    cfg = build_config({})
    assert cfg.results_dir == tmp_path / "res"
    assert cfg.data_dir == tmp_path / "dat"


def test_a_string_component_becomes_component_config() -> None:
    cfg = build_config({"strategy": "margin", "backbone": "mlp", "dataset": "iris"})
    assert isinstance(cfg.strategy, ComponentConfig)
    assert cfg.strategy.name == "margin"
    assert cfg.strategy.params == {}
    assert cfg.backbone == ComponentConfig(name="mlp", params={})
    assert cfg.dataset.name == "iris"
    assert cfg.label() == "margin-iris"


def test_a_mapping_component_keeps_its_params() -> None:
    cfg = build_config({"strategy": {"name": "bald", "params": {"n_drop": 10}}})
    assert cfg.strategy.name == "bald"
    assert cfg.strategy.params == {"n_drop": 10}


def test_component_config_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown setting 'strategy\.parms'"):
        build_config({"strategy": {"name": "margin", "parms": {}}})


def test_training_config_values() -> None:
    cfg = build_config(
        {
            "training": {
                "optimizer": "sgd",
                "scheduler": "multistep",
                "milestones": [5, 10],
                "device": "CUDA:1",
                "lr": 0.1,
            }
        }
    )
    assert cfg.training.optimizer == "sgd"
    assert cfg.training.milestones == [5, 10]
    assert cfg.training.device == "cuda:1"  # lower-cased
    assert cfg.training.lr == pytest.approx(0.1)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps", "CPU"])
def test_accepted_devices(device: str) -> None:
    assert TrainingConfig(device=device).device == device.lower()


# -- error messages --------------------------------------------------------------------------


def config_error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        build_config(data)
    assert isinstance(info.value, AlscopeError)
    assert isinstance(info.value, ValueError)
    return str(info.value)


def test_bad_optimizer_names_field_value_and_choices() -> None:
    msg = config_error({"training": {"optimizer": "rmsprop"}})
    assert "training.optimizer" in msg
    assert "'rmsprop'" in msg
    for accepted in ("sgd", "adam", "adamw"):
        assert accepted in msg


def test_bad_scheduler_lists_choices() -> None:
    msg = config_error({"training": {"scheduler": "step"}})
    assert "training.scheduler='step'" in msg
    for accepted in ("none", "multistep", "cosine"):
        assert accepted in msg


def test_negative_cycles() -> None:
    msg = config_error({"cycles": -1})
    assert "cycles=-1" in msg
    assert "greater than or equal to 0" in msg


@pytest.mark.parametrize(
    ("data", "field", "value"),
    [
        ({"n_query": 0}, "n_query", "0"),
        ({"trials": 0}, "trials", "0"),
        ({"n_initial": -3}, "n_initial", "-3"),
        ({"seed": -1}, "seed", "-1"),
        ({"n_class": 1}, "n_class", "1"),
        ({"training": {"lr": 0}}, "training.lr", "0"),
        ({"training": {"epochs": 0}}, "training.epochs", "0"),
        ({"training": {"batch_size": 0}}, "training.batch_size", "0"),
        ({"training": {"grad_clip": -1.0}}, "training.grad_clip", "-1.0"),
        ({"n_query": "many"}, "n_query", "'many'"),
        ({"initial": "greedy"}, "initial", "'greedy'"),
    ],
)
def test_out_of_range_values_name_field_and_value(data: dict[str, Any], field: str, value: str) -> None:
    msg = config_error(data)
    assert f"{field}={value}" in msg
    assert "is invalid" in msg


def test_bad_device_lists_accepted_devices() -> None:
    msg = config_error({"training": {"device": "tpu"}})
    assert "training.device='tpu'" in msg
    assert "auto, cpu, cuda, cuda:N, mps" in msg


def test_unknown_keys_are_named() -> None:
    assert "unknown setting 'bogus'" in config_error({"bogus": 1})
    assert "unknown setting 'training.bogus'" in config_error({"training": {"bogus": 1}})
    assert "unknown setting 'tracking.url'" in config_error({"tracking": {"url": "x"}})


def test_several_problems_are_all_reported() -> None:
    msg = config_error({"cycles": -1, "training": {"optimizer": "rmsprop"}, "bogus": 2})
    assert "cycles=-1" in msg
    assert "training.optimizer='rmsprop'" in msg
    assert "'bogus'" in msg
    assert msg.count(";") >= 2


def test_unknown_key_lists_accepted_settings() -> None:
    msg = config_error({"n_qurey": 5})
    assert "n_query" in msg
    msg = config_error({"training": {"epoch": 5}})
    assert "epochs" in msg


def test_build_config_raises_config_error_not_validation_error() -> None:
    from pydantic import ValidationError

    with pytest.raises(ConfigError) as info:
        build_config({"cycles": "x"})
    assert not isinstance(info.value, ValidationError)
    assert info.value.__cause__ is None  # the message stands on its own


# -- files -------------------------------------------------------------------------------------


YAML = """\
strategy: margin
dataset:
  name: features
  params:
    path: data.csv
n_query: 7
training:
  optimizer: sgd
  milestones: [3, 6]
"""

TOML = """\
strategy = "margin"
n_query = 7

[dataset]
name = "features"

[dataset.params]
path = "data.csv"

[training]
optimizer = "sgd"
milestones = [3, 6]
"""

EXPECTED = {
    "strategy": "margin",
    "dataset": {"name": "features", "params": {"path": "data.csv"}},
    "n_query": 7,
    "training": {"optimizer": "sgd", "milestones": [3, 6]},
}


@pytest.mark.parametrize(
    ("suffix", "text"), [(".yaml", YAML), (".yml", YAML), (".toml", TOML), (".YAML", YAML), (".TOML", TOML)]
)
def test_read_config_file(tmp_path: Path, suffix: str, text: str) -> None:
    path = tmp_path / f"exp{suffix}"
    path.write_text(text, encoding="utf-8")
    data = read_config_file(path)
    assert data == EXPECTED
    cfg = build_config(data)
    assert cfg.strategy.name == "margin"
    assert cfg.dataset.params == {"path": "data.csv"}
    assert cfg.n_query == 7
    assert cfg.training.milestones == [3, 6]


def test_empty_yaml_is_an_empty_mapping(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    assert read_config_file(path) == {}


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path / "nope.yaml")


@pytest.mark.parametrize("suffix", [".json", ".ini", ""])
def test_unknown_config_suffix(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"exp{suffix}"
    path.write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_config_file(path)
    msg = str(info.value)
    assert "unknown format" in msg
    assert ".yaml" in msg and ".toml" in msg
    assert str(path) in msg


@pytest.mark.parametrize(
    ("name", "text"),
    [("bad.yaml", "a: [1, 2\nb: {"), ("bad.toml", "a = [1, 2\n[b"), ("bad.yml", "a: b: c")],
)
def test_unparsable_config_file(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_config_file(path)
    assert "cannot be parsed" in str(info.value)
    assert name in str(info.value)


def test_config_file_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        read_config_file(path)


# -- merging and key=value ---------------------------------------------------------------------


def test_deep_merge_cli_over_file() -> None:
    file = {
        "strategy": {"name": "bald", "params": {"n_drop": 5, "k": 1}},
        "training": {"epochs": 10, "lr": 0.1},
        "cycles": 3,
    }
    cli = {"strategy": {"params": {"n_drop": 10}}, "training": {"lr": 0.01}, "seed": 4}
    merged = deep_merge(file, cli)
    assert merged == {
        "strategy": {"name": "bald", "params": {"n_drop": 10, "k": 1}},
        "training": {"epochs": 10, "lr": 0.01},
        "cycles": 3,
        "seed": 4,
    }
    # neither input is modified
    assert file["strategy"]["params"] == {"n_drop": 5, "k": 1}
    assert file["training"] == {"epochs": 10, "lr": 0.1}
    assert "seed" not in file


def test_deep_merge_replaces_non_mappings() -> None:
    assert deep_merge({"strategy": {"name": "a", "params": {"x": 1}}}, {"strategy": "margin"}) == {
        "strategy": "margin"
    }
    assert deep_merge({"strategy": "margin"}, {"strategy": {"name": "entropy"}}) == {
        "strategy": {"name": "entropy"}
    }
    assert deep_merge({"m": [1, 2]}, {"m": [3]}) == {"m": [3]}
    assert deep_merge({}, {}) == {}


@pytest.mark.parametrize(
    ("item", "key", "value"),
    [
        ("n_drop=10", "n_drop", 10),
        ("lr=0.5", "lr", 0.5),
        ("hidden_sizes=[64, 32]", "hidden_sizes", [64, 32]),
        ("flag=true", "flag", True),
        ("flag=False", "flag", False),
        ("name=kmeans", "name", "kmeans"),
        ("path=/tmp/x.csv", "path", "/tmp/x.csv"),
        (" key = 3 ", "key", 3),
        ("empty=", "empty", ""),
        ("expr=a=b", "expr", "a=b"),
        ("none=null", "none", None),
        ("broken=[1, 2", "broken", "[1, 2"),
    ],
)
def test_parse_key_value(item: str, key: str, value: Any) -> None:
    got_key, got_value = parse_key_value(item, "--strategy-param")
    assert got_key == key
    assert got_value == value
    assert type(got_value) is type(value)


@pytest.mark.parametrize("item", ["n_drop", "=5", "  =5", ""])
def test_parse_key_value_needs_key_and_equals(item: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_key_value(item, "--strategy-param")
    msg = str(info.value)
    assert "--strategy-param" in msg
    assert "key=value" in msg
    assert repr(item) in msg


def test_a_yaml_exponent_still_validates_as_a_float() -> None:
    _, value = parse_key_value("lr=1e-3", "--set")
    assert build_config({"training": {"lr": value}}).training.lr == pytest.approx(1e-3)


# -- flat dict -------------------------------------------------------------------------------


def test_to_flat_dict() -> None:
    cfg = build_config(
        {
            "strategy": {"name": "bald", "params": {"n_drop": 10, "nested": {"a": 1}}},
            "training": {"milestones": [2, 4]},
            "seed": 3,
        }
    )
    flat = cfg.to_flat_dict()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in flat.items())
    assert flat["strategy.name"] == "bald"
    assert flat["strategy.params.n_drop"] == "10"
    assert flat["strategy.params.nested.a"] == "1"
    assert flat["training.milestones"] == "[2, 4]"
    assert json.loads(flat["training.milestones"]) == [2, 4]
    assert flat["seed"] == "3"
    assert flat["training.optimizer"] == "adam"
    assert flat["backbone"] == "None"
    assert flat["tracking.enabled"] == "True"
    assert "training" not in flat  # only leaves
    expected_training = set(TrainingConfig.model_fields)
    assert {k.split(".", 1)[1] for k in flat if k.startswith("training.")} == expected_training
    top = {k.split(".", 1)[0] for k in flat}
    assert top == set(ExperimentConfig.model_fields)


# -- component parameters ------------------------------------------------------------------


def test_validate_params_accepts_and_fills_defaults() -> None:
    params = validate_params(MLPParams, {"dropout": 0.5}, "backbone mlp")
    assert isinstance(params, MLPParams)
    assert params.dropout == 0.5
    assert params.hidden_sizes == [256, 128]
    assert validate_params(MLPParams, None, "backbone mlp") == MLPParams()
    same = MLPParams(dropout=0.1)
    assert validate_params(MLPParams, same, "backbone mlp") is same


def test_validate_params_from_another_model() -> None:
    class Other(BaseModel):
        dropout: float = 0.2

    got = validate_params(MLPParams, Other(), "backbone mlp")
    assert isinstance(got, MLPParams)
    assert got.dropout == pytest.approx(0.2)


def test_invalid_param_names_the_param_and_value() -> None:
    with pytest.raises(ConfigError) as info:
        validate_params(MLPParams, {"dropout": 2}, "backbone mlp")
    msg = str(info.value)
    assert msg.startswith("backbone mlp:")
    assert "dropout=2" in msg
    assert "less than 1" in msg


def test_unknown_param_lists_accepted_names() -> None:
    with pytest.raises(ConfigError) as info:
        validate_params(MLPParams, {"dropuot": 0.1}, "backbone mlp")
    msg = str(info.value)
    assert "unknown parameter 'dropuot'" in msg
    for name in ("hidden_sizes", "dropout", "batch_norm"):
        assert name in msg


def test_component_without_params_lists_none() -> None:
    with pytest.raises(ConfigError, match=r"unknown parameter 'x' \(accepted: \(none\)\)"):
        validate_params(NoParams, {"x": 1}, "strategy entropy")


def test_backbone_build_validates_params() -> None:
    from alscope.data.base import InputSpec

    with pytest.raises(ConfigError, match="backbone mlp: dropout=2"):
        MLP.build(InputSpec("vector", (4,)), 3, {"dropout": 2})
    with pytest.raises(ConfigError, match="hidden_sizes"):
        MLP.build(InputSpec("vector", (4,)), 3, {"hidden_sizes": []})
    model = MLP.build(InputSpec("vector", (4,)), 3, {"hidden_sizes": [8], "dropout": 0.1})
    assert model.embedding_dim == 8
    assert model.classifier.out_features == 3


def test_strategy_params_are_validated_on_construction() -> None:
    from alscope.strategies.uncertainty import EntropySampling

    with pytest.raises(ConfigError, match=r"strategy entropy: unknown parameter 'n_drop'"):
        EntropySampling({"n_drop": 3})
