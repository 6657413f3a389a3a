"""The experiment configuration: one validated pydantic model for a whole run.

The same knobs come from CLI flags, a YAML or TOML file (``--config``) and Python.
Component parameters (``strategy.params`` etc.) are checked against the component's
own ``Params`` schema when the run starts (see :func:`alscope.components.validate_params`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from alscope.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ComponentConfig(_Model):
    """A component by name with its parameters; a bare string means no parameters."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


#: optimiser steps a cycle trains at least: 100 labeled samples at batch 64 then get 250
#: epochs instead of 40 and reach training accuracy 1 on MNIST (see docs/recipe.md)
DEFAULT_MIN_STEPS = 500


def default_min_steps() -> int:
    """``training.min_steps`` when unset: ALSCOPE_MIN_STEPS, else :data:`DEFAULT_MIN_STEPS`.
    The resolved value is recorded with every run, so runs stay comparable."""
    value = os.environ.get("ALSCOPE_MIN_STEPS")
    if value is None or value.strip() == "":
        return DEFAULT_MIN_STEPS
    try:
        steps = int(value)
    except ValueError:
        raise ConfigError(
            f"ALSCOPE_MIN_STEPS={value!r} is not a whole number of steps (e.g. 0 or 500)"
        ) from None
    if steps < 0:
        raise ConfigError(f"ALSCOPE_MIN_STEPS={value!r} must be 0 or more")
    return steps


class TrainingConfig(_Model):
    epochs: int = Field(default=40, ge=1, description="training epochs per cycle (raised to reach min_steps)")
    min_steps: int = Field(
        default_factory=default_min_steps,
        ge=0,
        description="floor of optimiser steps per cycle: a small labeled set gets more epochs "
        "until this many batches are trained, so that it is fitted; 0: epochs alone "
        "(default 500, or ALSCOPE_MIN_STEPS)",
    )
    validation_fraction: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="hold out this share of the labeled set: early stopping on its accuracy, "
        "and the best model is restored; 0: train on every labeled sample",
    )
    validation_interval: int = Field(
        default=50, ge=1, description="validation: optimiser steps between checks (whole epochs)"
    )
    patience: int = Field(
        default=5, ge=1, description="validation: checks without improvement before training stops"
    )
    batch_size: int = Field(default=64, ge=1)
    eval_batch_size: int = Field(default=1024, ge=1, description="batch size of inference passes")
    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    lr: float = Field(default=1e-3, gt=0)
    momentum: float = Field(default=0.9, ge=0, description="SGD momentum")
    weight_decay: float = Field(default=0.0, ge=0)
    scheduler: Literal["none", "multistep", "cosine", "linear"] = Field(
        default="none",
        description="per-epoch multistep or cosine, or per-step linear warm-up then linear decay "
        "to zero (the transformer fine-tuning recipe)",
    )
    warmup_fraction: float = Field(
        default=0.1, ge=0, lt=1, description="linear: share of the training steps spent warming up"
    )
    milestones: list[int] = Field(
        default_factory=list, description="multistep: epochs at which the lr is multiplied by gamma"
    )
    gamma: float = Field(default=0.1, gt=0)
    grad_clip: float | None = Field(default=None, gt=0, description="max gradient norm")
    device: str = Field(default="auto", description="auto, cpu, cuda, cuda:N or mps")
    amp: bool | None = Field(default=None, description="mixed precision; default: on for CUDA")
    warm_start: bool = Field(
        default=False, description="continue from the previous cycle's model instead of a fresh one"
    )
    threads: int | None = Field(
        default=None,
        ge=1,
        description="CPU threads for torch (torch.set_num_threads); default: torch's choice. "
        "1 is often fastest for small models on a busy machine",
    )
    calibrate: Literal["none", "temperature"] = Field(
        default="none",
        description="temperature: fit a temperature (Guo et al. 2017) on a held-out part of the "
        "labeled set each cycle; test metrics and the strategy's probabilities use it",
    )
    calibration_fraction: float = Field(
        default=0.2, gt=0, lt=1, description="temperature: share of the labeled set held out to fit it"
    )
    bias_correction: Literal["none", "pure", "lure"] = Field(
        default="none",
        description="weight each labeled sample's loss by PURE or LURE (Farquhar et al. 2021) from "
        "its acquisition probability; needs a stochastic strategy",
    )

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        v = value.lower()
        if v in {"auto", "cpu", "cuda", "mps"} or (v.startswith("cuda:") and v[5:].isdigit()):
            return v
        raise ValueError("accepted: auto, cpu, cuda, cuda:N, mps")


class TrackingConfig(_Model):
    enabled: bool = True
    uri: str | None = Field(
        default=None,
        description="MLflow tracking URI; default MLFLOW_TRACKING_URI or a SQLite store "
        "in the results folder",
    )
    experiment: str = Field(default="alscope", description="MLflow experiment name")


class StoppingConfig(_Model):
    """Stopping criteria (``alscope list stopping``) and what a firing one does."""

    criteria: list[ComponentConfig] = Field(
        default_factory=list, description="criteria by name with their parameters; none: run the budget"
    )
    mode: Literal["stop", "record"] = Field(
        default="stop",
        description="stop: end a trial at the first criterion that fires; record: log where each "
        "fires and run the whole budget",
    )
    stop_set_size: int = Field(
        default=2000,
        ge=1,
        description="the stop set: unlabeled samples drawn once per trial on which consecutive models "
        "are compared (Bloodgood & Vijay-Shanker's 2,000; capped at the unlabeled pool)",
    )


def default_results_dir() -> Path:
    return Path(os.environ.get("ALSCOPE_RESULTS_DIR", "results"))


def default_data_dir() -> Path:
    return Path(os.environ.get("ALSCOPE_DATA_DIR", "data"))


class ExperimentConfig(_Model):
    """The whole experiment."""

    strategy: ComponentConfig = Field(default_factory=lambda: ComponentConfig(name="entropy"))
    dataset: ComponentConfig = Field(default_factory=lambda: ComponentConfig(name="digits"))
    backbone: ComponentConfig | None = Field(
        default=None, description="default: the dataset's default backbone"
    )
    scenario: ComponentConfig = Field(default_factory=lambda: ComponentConfig(name="standard"))
    n_initial: int = Field(default=20, ge=0, description="size of the initial labeled set")
    initial: Literal["random", "stratified"] = Field(
        default="random", description="how the initial labeled set is drawn"
    )
    n_query: int = Field(default=20, ge=1, description="samples labeled per cycle")
    cycles: int = Field(default=5, ge=0, description="query rounds after the initial training")
    trials: int = Field(default=1, ge=1, description="repetitions, each with its own seed")
    ensemble: int = Field(
        default=1,
        ge=1,
        description="train M models per cycle (deep ensemble); test metrics use their mean "
        "prediction and strategies that read sampled predictions read the M members",
    )
    #: numpy and scikit-learn take seeds of 32 bits
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    n_class: int | None = Field(default=None, ge=2, description="checked against the dataset")
    data_dir: Path = Field(default_factory=default_data_dir)
    download: bool = Field(default=False, description="allow downloading datasets")
    results_dir: Path = Field(default_factory=default_results_dir)
    cache_dir: Path | None = Field(
        default=None,
        description="caches that outlive a run (tokens, frozen-encoder embeddings); default: "
        "ALSCOPE_CACHE_DIR or <results_dir>/cache",
    )
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    stopping: StoppingConfig = Field(default_factory=StoppingConfig)

    def resolved_cache_dir(self) -> Path:
        env = os.environ.get("ALSCOPE_CACHE_DIR")
        return self.cache_dir or (Path(env) if env else self.results_dir / "cache")

    def label(self) -> str:
        return f"{self.strategy.name}-{self.dataset.name}"

    def to_flat_dict(self) -> dict[str, str]:
        """Dotted keys to strings, for MLflow params."""
        flat: dict[str, str] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
            else:
                flat[prefix] = json.dumps(value) if isinstance(value, list) else str(value)

        walk("", json.loads(self.model_dump_json()))
        return flat


def _fields_at(path: tuple[Any, ...]) -> list[str]:
    """The setting names accepted at a nested location of the config."""
    model: type[BaseModel] = ExperimentConfig
    for part in path:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        nested = next(
            (
                a
                for a in (annotation, *getattr(annotation, "__args__", ()))
                if isinstance(a, type) and issubclass(a, BaseModel)
            ),
            None,
        )
        if nested is None:
            return []
        model = nested
    return list(model.model_fields)


def describe_config_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        if err["type"] == "extra_forbidden":
            accepted_names = ", ".join(_fields_at(err["loc"][:-1]))
            lines.append(f"unknown setting {loc!r} (accepted: {accepted_names})")
            continue
        accepted = ""
        ctx = err.get("ctx") or {}
        if "expected" in ctx:
            accepted = f" (accepted: {ctx['expected']})"
        lines.append(f"{loc}={err.get('input')!r} is invalid: {err['msg']}{accepted}")
    return "; ".join(lines)


def build_config(data: dict[str, Any]) -> ExperimentConfig:
    """Validate a nested mapping into a config, raising :class:`ConfigError` on problems."""
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_config_error(exc)) from None


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) config file as a mapping."""
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() in {".yaml", ".yml"}:
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(
                f"config file {str(path)!r}: unknown format {path.suffix!r} (accepted: .yaml, .yml, .toml)"
            )
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be parsed: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top level")
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``, merging nested mappings (CLI over file)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_key_value(item: str, option: str) -> tuple[str, Any]:
    """``key=value`` with the value read as YAML (numbers, booleans, lists)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{option} {item!r} is invalid: expected key=value")
    import yaml

    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value
