"""A Hugging Face ``Trainer`` driven by alscope's strategies and stopping criteria.

>>> learner = HFActiveLearner(model_init, pool=tokenized_pool, n_classes=4, args=args,
...                           test=tokenized_test, tokenizer=tokenizer, strategy="badge")  # doctest: +SKIP
>>> learner.teach(initial, pool_labels[initial])                                          # doctest: +SKIP
>>> batch = learner.query(50)                                                             # doctest: +SKIP

Trainer callbacks cannot change the loop, so the driver owns it: every round it builds a
fresh model (``model_init``, or the given model reset to its initial weights; the last
round's model with ``warm_start``), a ``transformers.Trainer`` on the labeled rows of the
``datasets.Dataset`` pool with the user's ``TrainingArguments`` (the round's seed set),
trains it, and reads the trained model through the engine's one-pass inference
(:class:`~alscope.integrations.pytorch.ModuleBackbone`), so every strategy that only reads
a trained model works as in ``alscope run``. A :class:`StoppingCallback` on each round's
Trainer carries what the stopping criteria read: the stop-set probabilities at the end of
training, the last evaluation's accuracy (``val_accuracy``) and the training loss.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from alscope.data.base import DataSource, MapDatasetSource
from alscope.engine.device import resolve_device
from alscope.errors import ConfigError
from alscope.integrations.loop import LearnerLoop, RoundSeeds, check_classes
from alscope.integrations.pytorch import EngineReadModel, ModuleBackbone
from alscope.strategies.base import Strategy

try:
    import transformers
    from transformers import TrainerCallback
except ImportError as exc:  # pragma: no cover - the extra is installed in the test environment
    raise ImportError(
        "alscope.integrations.huggingface needs transformers, datasets and accelerate: "
        "pip install 'alscope[huggingface]'"
    ) from exc

#: the label columns a Dataset may carry; the driver trains on its own ``labels`` column
LABEL_COLUMNS = ("label", "labels", "label_ids")

#: ``trainer_factory(model, args, train_dataset)``: a Trainer of your own making
TrainerFactory = Callable[[nn.Module, Any, Any], Any]


class StoppingCallback(TrainerCallback):
    """What the stopping criteria read from one round's ``Trainer``.

    At the end of training it computes the trained model's class probabilities on the
    stop set (``stop_set_probs``, for ``stop_set_indices``); it keeps the last
    evaluation's metrics (``eval_metrics``: ``val_accuracy`` is their ``accuracy_key``)
    and the last logged training loss. The driver adds one to every round's Trainer and
    hands its ``measures`` and probabilities to the criteria.

    Args:
        predict: ``predict(model, indices)``, class probabilities ``(n, C)`` of pool
            indices under a model.
        accuracy_key: the evaluation metric that is the criteria's ``val_accuracy``
            (``eval_accuracy`` where ``compute_metrics`` returns ``accuracy``).
    """

    def __init__(
        self, predict: Callable[[nn.Module, np.ndarray], np.ndarray], accuracy_key: str = "eval_accuracy"
    ) -> None:
        self.predict = predict
        self.accuracy_key = accuracy_key
        self.stop_set_indices: np.ndarray | None = None
        self.reset()

    def reset(self) -> None:
        self.stop_set_probs: np.ndarray | None = None
        self.eval_metrics: dict[str, float] = {}
        self.train_loss: float | None = None

    def on_log(
        self, args: Any, state: Any, control: Any, logs: Mapping[str, float] | None = None, **kwargs: Any
    ) -> None:
        if logs and "loss" in logs:
            self.train_loss = float(logs["loss"])
        if logs and "train_loss" in logs:
            self.train_loss = float(logs["train_loss"])

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: Mapping[str, float] | None = None, **kwargs: Any
    ) -> None:
        self.eval_metrics = {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, int | float)}

    def on_train_end(
        self, args: Any, state: Any, control: Any, model: nn.Module | None = None, **kwargs: Any
    ) -> None:
        if self.stop_set_indices is not None and model is not None:
            self.stop_set_probs = self.predict(model, self.stop_set_indices)

    @property
    def measures(self) -> dict[str, float]:
        """The round's metrics the criteria and MLflow read."""
        out: dict[str, float] = {}
        if self.accuracy_key in self.eval_metrics:
            out["val_accuracy"] = self.eval_metrics[self.accuracy_key]
        if self.train_loss is not None:
            out["train_loss"] = self.train_loss
        return out


class _Inputs(torch.utils.data.Dataset):
    """A ``datasets.Dataset``'s model-input columns as ``(dict, -1)`` items."""

    def __init__(self, dataset: Any, columns: list[str]) -> None:
        self.dataset = dataset.select_columns(columns)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[dict[str, Any], int]:
        return self.dataset[int(i)], -1


class _Collate:
    """The data collator's batch as a plain dict of tensors (a BatchEncoding is not a dict,
    and the engine moves dicts to the device)."""

    def __init__(self, collator: Callable[[list[Any]], Any]) -> None:
        self.collator = collator

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.collator(items)
        return {k: v for k, v in dict(batch).items() if k not in LABEL_COLUMNS}


def _check_dataset(data: Any, what: str) -> None:
    if not hasattr(data, "select") or not hasattr(data, "column_names"):
        raise ConfigError(f"{what} must be a datasets.Dataset (tokenized), not {type(data).__name__}")


def _dataset_labels(data: Any, label_column: str) -> np.ndarray:
    if label_column not in data.column_names:
        raise ConfigError(
            f"the test Dataset has no {label_column!r} column (it has {', '.join(data.column_names)}); "
            "name its label column with label_column="
        )
    return np.asarray(data[label_column], dtype=np.int64)


class HFModel(EngineReadModel):
    """The Hugging Face front end's model: a Trainer every round, read by the engine."""

    test_hint = "pass test=<a tokenized datasets.Dataset>"

    def __init__(
        self,
        model: nn.Module | Callable[[], nn.Module],
        pool: Any,
        n_classes: int,
        *,
        args: Any = None,
        test: Any = None,
        tokenizer: Any = None,
        data_collator: Callable[[list[Any]], Any] | None = None,
        trainer_factory: TrainerFactory | None = None,
        eval_dataset: Any = None,
        compute_metrics: Callable[[Any], dict[str, float]] | None = None,
        callbacks: list[Any] | None = None,
        warm_start: bool = False,
        classifier_layer: str | None = None,
        embedding_layer: str | None = None,
        accuracy_key: str = "eval_accuracy",
        device: str = "auto",
        batch_size: int = 64,
    ) -> None:
        check_classes(n_classes)
        _check_dataset(pool, "pool")
        if test is not None:
            _check_dataset(test, "test")
        self.n_classes = n_classes
        self.pool_data, self.test_data = pool, test
        self.n_pool = len(pool)
        self.args = args
        self.tokenizer = tokenizer
        if data_collator is None:
            data_collator = (
                transformers.DataCollatorWithPadding(tokenizer)
                if tokenizer is not None
                else transformers.default_data_collator
            )
        self.data_collator = data_collator
        self.trainer_factory = trainer_factory
        self.eval_dataset, self.compute_metrics = eval_dataset, compute_metrics
        self.user_callbacks = list(callbacks or [])
        self.warm_start = warm_start
        self._layers = {"classifier_layer": classifier_layer, "embedding_layer": embedding_layer}
        self.device = resolve_device(device)
        self.batch_size = batch_size
        if isinstance(model, nn.Module):
            self._factory: Callable[[], nn.Module] | None = None
            self._initial: dict[str, Any] | None = copy.deepcopy(model.state_dict())
            probe = model
            self.module: nn.Module | None = model
        elif callable(model):
            self._factory, self._initial = model, None
            probe = model()  # its class, name and input columns; the rounds build their own
            self.module = None
        else:
            raise ConfigError(
                f"model must be a transformers model or a model_init function, not {type(model).__name__}"
            )
        self._check_model(probe)
        config = getattr(probe, "config", None)
        self.backbone_name = str(getattr(config, "_name_or_path", "") or type(probe).__name__)
        self.input_columns = self._input_columns(probe, pool)
        collate = _Collate(self.data_collator)
        self.pool = self._source(pool, collate)
        self.test = None if test is None else self._source(test, collate)
        self.n_test = None if test is None else len(test)
        self.callback = StoppingCallback(self._predict_with, accuracy_key)
        self.backbone = None
        self.trainer: Any = None

    def _check_model(self, model: Any) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError(f"the model function returned {type(model).__name__}, not a torch model")
        labels = getattr(getattr(model, "config", None), "num_labels", self.n_classes)
        if labels != self.n_classes:
            raise ConfigError(
                f"the model has {labels} labels but n_classes={self.n_classes}; build it with "
                f"num_labels={self.n_classes}"
            )

    def _input_columns(self, model: nn.Module, data: Any) -> list[str]:
        accepted = set(inspect.signature(model.forward).parameters)
        columns = [c for c in data.column_names if c in accepted and c not in LABEL_COLUMNS]
        if not columns:
            raise ConfigError(
                f"the pool has none of the columns the model takes ({', '.join(sorted(accepted)[:8])}); "
                f"it has {', '.join(data.column_names)}: tokenize it first "
                "(dataset.map(tokenizer, batched=True))"
            )
        return columns

    def _source(self, data: Any, collate: _Collate) -> DataSource:
        inputs = _Inputs(data, self.input_columns)
        return MapDatasetSource(lambda train: inputs, np.full(len(data), -1, dtype=np.int64), collate)

    def check(self, strategy: Strategy, name: str) -> None:
        if strategy.training_hooks() is not None:
            raise ConfigError(
                f"strategy {name!r} trains its own modules alongside the model, which a "
                "transformers.Trainer cannot: use alscope.integrations.ActiveLearner with alscope's "
                "trainer, or a strategy that only reads the trained model"
            )
        if strategy.requirements().ssl:
            raise ConfigError(
                f"strategy {name!r} reads self-supervised embeddings that only the engine trains "
                "(alscope run); choose another strategy here"
            )

    def stop_set(self, indices: np.ndarray) -> None:
        self.callback.stop_set_indices = np.asarray(indices, dtype=np.int64)

    # -- a round ----------------------------------------------------------------------

    def _train_dataset(self, labeled: np.ndarray, labels: np.ndarray) -> Any:
        rows = self.pool_data.select(labeled.tolist())
        present = [c for c in LABEL_COLUMNS if c in rows.column_names]
        return rows.remove_columns(present).add_column("labels", labels.tolist())

    def _round_args(self, seeds: RoundSeeds) -> Any:
        if self.args is None:
            return transformers.TrainingArguments(
                output_dir=str(Path(self.output_root) / f"round-{seeds.cycle}"),
                save_strategy="no",
                report_to="none",
                num_train_epochs=3,
                seed=seeds.train,
                data_seed=seeds.train,
            )
        return dataclasses.replace(self.args, seed=seeds.train, data_seed=seeds.train)

    def fit(
        self, labeled: np.ndarray, labels: np.ndarray, strategy: Strategy, seeds: RoundSeeds
    ) -> dict[str, float]:
        if self._factory is not None:
            if self.module is None or not self.warm_start:
                torch.manual_seed(seeds.model)
                self.module = self._factory()
                self._check_model(self.module)
        elif not self.warm_start:
            assert self.module is not None and self._initial is not None
            self.module.load_state_dict(self._initial)
        assert self.module is not None
        args = self._round_args(seeds)
        train_dataset = self._train_dataset(labeled, labels)
        self.callback.reset()
        start = time.perf_counter()
        if self.trainer_factory is not None:
            trainer = self.trainer_factory(self.module, args, train_dataset)
            if not hasattr(trainer, "train") or not hasattr(trainer, "add_callback"):
                raise ConfigError(
                    f"trainer_factory returned {type(trainer).__name__}, not a transformers.Trainer"
                )
            trainer.add_callback(self.callback)
        else:
            trainer = transformers.Trainer(
                model=self.module,
                args=args,
                train_dataset=train_dataset,
                eval_dataset=self.eval_dataset,
                data_collator=self.data_collator,
                processing_class=self.tokenizer,
                compute_metrics=self.compute_metrics,
                callbacks=[*self.user_callbacks, self.callback],
            )
        output = trainer.train()
        self.trainer = trainer
        self.module = trainer.model
        self.backbone = ModuleBackbone(self.module, self.n_classes, **self._layers)  # type: ignore[arg-type]
        metrics = {"train_time": time.perf_counter() - start}
        if getattr(output, "training_loss", None) is not None:
            metrics["train_loss"] = float(output.training_loss)
        metrics.update(self.callback.measures)
        return metrics

    #: where each round's Trainer writes (set by the learner to its state folder)
    output_root: str = "."

    def _predict_with(self, model: nn.Module, indices: np.ndarray) -> np.ndarray:
        return self.infer_probs(ModuleBackbone(model, self.n_classes, **self._layers), self.pool, indices)  # type: ignore[arg-type]

    def predict_proba(self, indices: np.ndarray | None, *, test: bool = False) -> np.ndarray:
        cached, stop_set = self.callback.stop_set_probs, self.callback.stop_set_indices
        same_indices = indices is not None and stop_set is not None and np.array_equal(indices, stop_set)
        if not test and cached is not None and same_indices:
            return cached  # what the callback computed at the end of this round's training
        return super().predict_proba(indices, test=test)


class HFActiveLearner(LearnerLoop):
    """Active learning with a Hugging Face model and ``transformers.Trainer``.

    Args:
        model_init: a function returning a new model (``AutoModelForSequenceClassification
            .from_pretrained(..., num_labels=C)``), called every round under the round's
            model seed; or a model, reset to its initial weights every round.
        pool: a tokenized ``datasets.Dataset``: the columns the model's ``forward`` takes
            are its inputs; a label column there is never read.
        n_classes: the number of classes.
        args: your ``TrainingArguments`` (the round's ``seed`` and ``data_seed`` are set on
            a copy); default: 3 epochs, nothing saved, nothing reported.
        test: a tokenized ``datasets.Dataset`` with a ``label_column``: evaluated every round.
        tokenizer: pads the batches (``DataCollatorWithPadding``) and is the Trainer's
            ``processing_class``; or pass ``data_collator``.
        trainer_factory: ``trainer_factory(model, args, train_dataset)`` returns your own
            Trainer (subclass, optimisers, callbacks); the driver adds its StoppingCallback.
        eval_dataset / compute_metrics / callbacks: passed to the default Trainer; an
            evaluation's ``accuracy_key`` metric is the stopping criteria's ``val_accuracy``.
        warm_start: continue the last round's model instead of a fresh one.
        classifier_layer / embedding_layer: where embeddings are read (default: the input of
            the last ``nn.Linear``, the classification head).

    Every other keyword goes to :class:`~alscope.integrations.loop.LearnerLoop`: strategy,
    strategy_params, seed, stop, stop_params, stop_mode, state_dir, tracking, tracking_uri,
    experiment, dataset_name.
    """

    def __init__(
        self,
        model_init: nn.Module | Callable[[], nn.Module],
        pool: Any,
        n_classes: int,
        *,
        args: Any = None,
        test: Any = None,
        label_column: str = "label",
        tokenizer: Any = None,
        data_collator: Callable[[list[Any]], Any] | None = None,
        trainer_factory: TrainerFactory | None = None,
        eval_dataset: Any = None,
        compute_metrics: Callable[[Any], dict[str, float]] | None = None,
        callbacks: list[Any] | None = None,
        warm_start: bool = False,
        classifier_layer: str | None = None,
        embedding_layer: str | None = None,
        accuracy_key: str = "eval_accuracy",
        device: str = "auto",
        batch_size: int = 64,
        **loop: Any,
    ) -> None:
        adapter = HFModel(
            model_init,
            pool,
            n_classes,
            args=args,
            test=test,
            tokenizer=tokenizer,
            data_collator=data_collator,
            trainer_factory=trainer_factory,
            eval_dataset=eval_dataset,
            compute_metrics=compute_metrics,
            callbacks=callbacks,
            warm_start=warm_start,
            classifier_layer=classifier_layer,
            embedding_layer=embedding_layer,
            accuracy_key=accuracy_key,
            device=device,
            batch_size=batch_size,
        )
        test_labels = None if test is None else _dataset_labels(test, label_column)
        super().__init__(adapter, test_labels=test_labels, **loop)
        adapter.output_root = str(self.state_dir / "trainer")

    @property
    def model(self) -> nn.Module | None:
        """The last round's trained model."""
        return self.adapter.module  # type: ignore[attr-defined]

    @property
    def trainer(self) -> Any:
        """The last round's ``transformers.Trainer``."""
        return self.adapter.trainer  # type: ignore[attr-defined]
