"""Your own ``nn.Module`` and training loop, driven by alscope's strategies and stopping.

>>> learner = ActiveLearner(make_net, pool=x_pool, test=(x_test, y_test), strategy="badge")  # doctest: +SKIP
>>> learner.teach(initial, y_pool[initial])                                                  # doctest: +SKIP
>>> batch = learner.query(100)                                                               # doctest: +SKIP

The module is wrapped as an engine :class:`~alscope.models.base.Backbone`
(:class:`ModuleBackbone`) and the pool as an engine data source, so the pool view comes
from the engine's own one-pass inference (``alscope.engine.inference.compute_pool_view``):
probabilities, embeddings, MC dropout, the training hooks' outputs and the model itself
are computed exactly as in ``alscope run``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from alscope.config import TrainingConfig
from alscope.data.base import DataSource, InputSpec, MapDatasetSource, TensorSource
from alscope.engine.device import resolve_device
from alscope.engine.hooks import TrainingHooks
from alscope.engine.inference import compute_pool_view, infer
from alscope.engine.trainer import Trainer, amp_enabled, fit_metrics
from alscope.errors import ConfigError, ModelError
from alscope.integrations.loop import LearnerLoop, ModelAdapter, RoundSeeds, check_classes
from alscope.models.base import Backbone, BackboneOutput
from alscope.strategies.base import PoolView, Requirements, Strategy

#: the user's training function: ``train(model, labeled)`` with ``labeled`` a Dataset of (x, y)
TrainFunction = Callable[[nn.Module, torch.utils.data.Dataset], Any]


class ModuleBackbone(Backbone):
    """Any ``nn.Module`` as an engine backbone.

    ``forward`` calls the module on a tensor, or on a dict of tensors as keyword
    arguments (a Hugging Face model); its logits are the output itself, ``output.logits``
    or the first element of a tuple. The embedding is the input of ``classifier_layer``
    (the last ``nn.Linear`` unless named), the engine's convention, or the output of
    ``embedding_layer`` where one is named; ``feature_layers`` are the intermediate
    outputs that training hooks such as Learning Loss read (``return_features``).
    """

    def __init__(
        self,
        module: nn.Module,
        n_classes: int,
        *,
        classifier_layer: str | None = None,
        embedding_layer: str | None = None,
        feature_layers: Sequence[str] = (),
    ) -> None:
        super().__init__(InputSpec("vector"), n_classes, None)
        self.module = module
        named = dict(module.named_modules())
        for name in (classifier_layer, embedding_layer, *feature_layers):
            if name is not None and name not in named:
                close = [n for n in named if n and (name in n or n in name)][:5]
                raise ConfigError(
                    f"the model has no layer {name!r}; its layers include "
                    f"{', '.join(repr(n) for n in (close or [n for n in named if n][:8]))}"
                )
        if classifier_layer is not None:
            head = named[classifier_layer]
        else:
            linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
            if not linears:
                raise ModelError(
                    "the model has no nn.Linear layer to read embeddings from; name one with "
                    "classifier_layer= (its input is the embedding) or embedding_layer="
                )
            head = linears[-1]
        if not isinstance(head, nn.Linear):
            raise ModelError(
                f"classifier_layer {classifier_layer!r} is a {type(head).__name__}, not an nn.Linear"
            )
        # not registered as a submodule a second time: it lives inside self.module
        object.__setattr__(self, "classifier", head)
        self._captured: dict[str, torch.Tensor] = {}
        self._features: list[torch.Tensor] = []
        if embedding_layer is None:
            head.register_forward_pre_hook(self._keep_input)
        else:
            named[embedding_layer].register_forward_hook(self._keep_output)
        self._embedding_from_output = embedding_layer is not None
        for name in feature_layers:
            named[name].register_forward_hook(self._keep_feature)
        self.feature_layers = tuple(feature_layers)

    def _keep_input(self, _module: nn.Module, args: tuple[Any, ...]) -> None:
        self._captured["embedding"] = args[0]

    def _keep_output(self, _module: nn.Module, _args: Any, output: Any) -> None:
        self._captured["embedding"] = _first_tensor(output)

    def _keep_feature(self, _module: nn.Module, _args: Any, output: Any) -> None:
        self._features.append(_first_tensor(output))

    def forward(self, inputs: Any, return_features: bool = False) -> BackboneOutput:
        if return_features and not self.feature_layers:
            raise ModelError(
                "this strategy's training reads intermediate features; name the layers with "
                "feature_layers=[...] (e.g. the outputs of the model's blocks)"
            )
        self._captured.clear()
        self._features = []
        output = self.module(**inputs) if isinstance(inputs, Mapping) else self.module(inputs)
        logits = getattr(output, "logits", None)
        if logits is None:
            logits = _first_tensor(output)
        if logits.shape[-1] != self.n_classes:
            raise ModelError(
                f"the model gives {logits.shape[-1]} outputs per sample but n_classes={self.n_classes}; "
                "its last layer must have one output per class"
            )
        embedding = self._captured.get("embedding")
        if embedding is None:
            raise ModelError(
                "the model's forward did not run its classifier layer; name the layer whose input is "
                "the embedding with classifier_layer=, or the one whose output is, with embedding_layer="
            )
        return BackboneOutput(logits, embedding.flatten(1), list(self._features) if return_features else None)

    @property
    def embedding_dim(self) -> int:
        if self._embedding_from_output:
            raise ModelError(
                "the embedding size of a named embedding_layer is known only after a forward pass"
            )
        return self.classifier.in_features


def _first_tensor(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, list | tuple) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise ModelError(f"cannot read a tensor from the model's output of type {type(output).__name__}")


class _InputsOf(torch.utils.data.Dataset):
    """A user's dataset seen as ``(input, -1)`` items: its labels, if any, are not read."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        item = self.dataset[i]
        return (item[0] if isinstance(item, tuple | list) else item), -1


class LabeledSubset(torch.utils.data.Dataset):
    """The labeled samples as ``(input, label)`` items, what a user's train function gets."""

    def __init__(self, pool: Any, indices: np.ndarray, labels: np.ndarray) -> None:
        self.pool, self.indices, self.labels = pool, np.asarray(indices), np.asarray(labels)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        item = self.pool[int(self.indices[i])]
        x = item[0] if isinstance(item, tuple | list) and not isinstance(self.pool, torch.Tensor) else item
        return x, int(self.labels[i])


def as_source(data: Any, labels: np.ndarray | None = None, collate_fn: Callable | None = None) -> DataSource:
    """An engine data source over a tensor of inputs, or over a map-style Dataset whose
    items are an input or ``(input, label)`` (``collate_fn`` batches the inputs)."""
    if isinstance(data, DataSource):
        return data
    n = len(data)
    targets = np.full(n, -1, dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    if isinstance(data, torch.Tensor | np.ndarray):
        return TensorSource(torch.as_tensor(data), targets)
    if not hasattr(data, "__getitem__"):
        raise ConfigError(
            f"a pool or test set must be a tensor, an array or a map-style Dataset, not {type(data).__name__}"
        )
    wrapped = _InputsOf(data)
    return MapDatasetSource(lambda train: wrapped, targets, collate_fn)


def dataset_labels(data: Any) -> np.ndarray:
    """The labels of a Dataset whose items are ``(input, label)`` (read once, item by item)."""
    out = []
    for i in range(len(data)):
        item = data[i]
        if not isinstance(item, tuple | list) or len(item) < 2:
            raise ConfigError("a test Dataset must yield (input, label) items, or pass test=(inputs, labels)")
        out.append(int(item[1]))
    return np.asarray(out, dtype=np.int64)


class EngineReadModel(ModelAdapter):
    """An adapter whose trained model is an engine backbone, read by the engine's inference
    (the pool view and the probabilities), shared by the torch and Hugging Face front ends."""

    backbone: Backbone | None
    pool: DataSource
    test: DataSource | None
    device: torch.device
    batch_size: int
    hooks: TrainingHooks | None = None
    modules: dict[str, nn.Module] | None = None
    #: how to give a test set, for the message when there is none
    test_hint = "pass test=(inputs, labels)"

    @property
    def amp(self) -> bool:
        return False

    def trained(self) -> Backbone:
        if self.backbone is None:
            raise ModelError("no model is trained yet: query after teaching the first labels")
        return self.backbone

    def pool_view(
        self,
        unlabeled: np.ndarray,
        labeled: np.ndarray,
        labels: np.ndarray,
        requirements: Requirements,
        strategy: str,
    ) -> PoolView:
        return compute_pool_view(
            self.trained(),
            self.pool,
            unlabeled,
            labeled,
            labels,
            requirements,
            n_classes=self.n_classes,
            device=self.device,
            batch_size=self.batch_size,
            hooks=self.hooks,
            modules=self.modules or {},
            amp=self.amp,
            strategy=strategy,
        )

    def infer_probs(self, backbone: Backbone, source: DataSource, indices: np.ndarray) -> np.ndarray:
        out = infer(
            backbone,
            source,
            indices,
            device=self.device,
            batch_size=self.batch_size,
            probs=True,
            amp=self.amp,
        )
        return out["probs"].numpy()

    def predict_proba(self, indices: np.ndarray | None, *, test: bool = False) -> np.ndarray:
        source = self.test if test else self.pool
        if source is None:
            raise ConfigError(f"no test set was given: {self.test_hint}")
        idx = (
            np.arange(len(source), dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
        )
        return self.infer_probs(self.trained(), source, idx)


class TorchModel(EngineReadModel):
    """The torch front end's model: built or reset each round, trained by alscope's
    trainer or the user's function, read through the engine's inference."""

    def __init__(
        self,
        model: nn.Module | Callable[[], nn.Module],
        pool: Any,
        n_classes: int,
        *,
        test: Any = None,
        train: TrainFunction | None = None,
        training: TrainingConfig | Mapping[str, Any] | None = None,
        warm_start: bool | None = None,
        classifier_layer: str | None = None,
        embedding_layer: str | None = None,
        feature_layers: Sequence[str] = (),
        device: str = "auto",
        batch_size: int | None = None,
        collate_fn: Callable | None = None,
    ) -> None:
        check_classes(n_classes)
        self.n_classes = n_classes
        self.pool_data = pool
        self.pool = as_source(pool, collate_fn=collate_fn)
        self.n_pool = len(self.pool)
        self.test = None if test is None else as_source(_test_inputs(test), collate_fn=collate_fn)
        self.n_test = None if self.test is None else len(self.test)
        self.config = (
            training if isinstance(training, TrainingConfig) else TrainingConfig(**dict(training or {}))
        )
        self.device = resolve_device(device if device != "auto" else self.config.device)
        self.batch_size = batch_size or self.config.eval_batch_size
        self.train_fn = train
        self._warm_start = warm_start
        self._module_states: dict[str, Any] = {}
        self._layers = {
            "classifier_layer": classifier_layer,
            "embedding_layer": embedding_layer,
            "feature_layers": tuple(feature_layers),
        }
        if isinstance(model, nn.Module):
            self._factory: Callable[[], nn.Module] | None = None
            self._initial: dict[str, Any] | None = copy.deepcopy(model.state_dict())
            self.backbone = self._wrap(model)
            self.backbone_name = type(model).__name__
        elif callable(model):
            self._factory, self._initial = model, None
            self.backbone = None  # built at the first fit
            self.backbone_name = getattr(model, "__name__", type(model).__name__)
        else:
            raise ConfigError(
                f"model must be an nn.Module or a function returning one, not {type(model).__name__}"
            )
        self.hooks = None
        self.modules = {}

    def _wrap(self, module: nn.Module) -> Backbone:
        if not isinstance(module, nn.Module):
            raise ConfigError(f"the model function returned {type(module).__name__}, not an nn.Module")
        if isinstance(module, Backbone):
            return module  # an alscope backbone already gives logits, embeddings and features
        return ModuleBackbone(module, self.n_classes, **self._layers)  # type: ignore[arg-type]

    @property
    def module(self) -> nn.Module:
        """The user's module inside the backbone."""
        backbone = self.trained()
        return backbone.module if isinstance(backbone, ModuleBackbone) else backbone

    def check(self, strategy: Strategy, name: str) -> None:
        if self.train_fn is not None and strategy.training_hooks() is not None:
            raise ConfigError(
                f"strategy {name!r} trains its own modules alongside the model, which needs alscope's "
                "trainer: leave train= unset (and set training= for the recipe), or choose a strategy "
                "that only reads the trained model"
            )
        if strategy.requirements().ssl:
            raise ConfigError(
                f"strategy {name!r} reads self-supervised embeddings that only the engine trains "
                "(alscope run); choose another strategy here"
            )
        # the strategy's recipe (e.g. Learning Loss's warm start) for what the user left unset,
        # as the engine applies it
        explicit = self.config.model_fields_set | ({"warm_start"} if self._warm_start is not None else set())
        updates = {k: v for k, v in strategy.training_defaults().items() if k not in explicit}
        if updates and self.train_fn is None:
            self.config = self.config.model_copy(update=updates)

    @property
    def warm_start(self) -> bool:
        return self._warm_start if self._warm_start is not None else self.config.warm_start

    def fit(
        self, labeled: np.ndarray, labels: np.ndarray, strategy: Strategy, seeds: RoundSeeds
    ) -> dict[str, float]:
        if self._factory is not None:
            if self.backbone is None or not self.warm_start:
                torch.manual_seed(seeds.model)
                self.backbone = self._wrap(self._factory())
        elif not self.warm_start:
            assert self._initial is not None  # kept from the module the user gave
            self.module.load_state_dict(self._initial)
        if self.train_fn is not None:
            start = time.perf_counter()
            self.module.train()
            torch.manual_seed(seeds.train)
            self.train_fn(self.module, LabeledSubset(self.pool_data, labeled, labels))
            self.hooks, self.modules = None, {}
            return {"train_time": time.perf_counter() - start}
        backbone = self.trained()
        targets = torch.full((self.n_pool,), -1, dtype=torch.long)
        targets[torch.from_numpy(labeled)] = torch.from_numpy(labels)
        self.hooks = strategy.training_hooks()
        self.modules = {}
        if self.hooks is not None:
            self.hooks.bind(backbone, self.pool)
            self.modules = self.hooks.modules()
            if self.warm_start:
                # the strategy's modules continue too, as the engine (and LL4AL's, TiDAL's codes) do
                for module_name, state in self._module_states.items():
                    if module_name in self.modules:
                        self.modules[module_name].load_state_dict(state)
        unlabeled = np.setdiff1d(np.arange(self.n_pool), labeled)
        fit = Trainer(self.config, self.device).fit(
            backbone,
            self.pool,
            labeled,
            targets,
            seed=seeds.train,
            hooks=self.hooks,
            modules=self.modules,
            unlabeled=unlabeled,
        )
        if self.warm_start and self.modules:
            self._module_states = {module_name: m.state_dict() for module_name, m in self.modules.items()}
        return {k: v for k, v in fit_metrics(fit).items() if math.isfinite(v)}

    @property
    def amp(self) -> bool:
        return amp_enabled(self.config, self.device)


def _test_inputs(test: Any) -> Any:
    return test[0] if isinstance(test, tuple | list) else test


def _test_labels(test: Any) -> np.ndarray | None:
    if test is None:
        return None
    if isinstance(test, tuple | list):
        if len(test) != 2:
            raise ConfigError("test must be (inputs, labels) or a Dataset of (input, label) items")
        return np.asarray(test[1], dtype=np.int64)
    return dataset_labels(test)


class ActiveLearner(LearnerLoop):
    """Active learning with your own torch model.

    Args:
        model: an ``nn.Module`` (reset to its initial weights every round unless
            ``warm_start``) or a function returning a new one (called every round under
            the round's model seed, as the engine builds its backbone).
        pool: the unlabeled pool: a tensor or array of inputs, or a map-style Dataset whose
            items are an input or ``(input, label)`` (labels there are never read).
        n_classes: the number of classes.
        strategy: any registered strategy (``alscope list strategies``).
        test: ``(inputs, labels)`` or a Dataset of ``(input, label)``: evaluated every round.
        train: your training function ``train(model, labeled_dataset)``; default: alscope's
            trainer with ``training`` (a :class:`~alscope.config.TrainingConfig` or its fields:
            epochs, min_steps, lr, batch_size, ...).
        classifier_layer / embedding_layer / feature_layers: where embeddings and features
            are read (:class:`ModuleBackbone`).
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda:N``.
        collate_fn: batches a Dataset's inputs (default: torch's default collate).

    Every other keyword goes to :class:`~alscope.integrations.loop.LearnerLoop`: seed,
    strategy_params, stop, stop_params, stop_mode, state_dir, tracking, tracking_uri,
    experiment, dataset_name.
    """

    def __init__(
        self,
        model: nn.Module | Callable[[], nn.Module],
        pool: Any,
        n_classes: int,
        *,
        strategy: str = "entropy",
        test: Any = None,
        train: TrainFunction | None = None,
        training: TrainingConfig | Mapping[str, Any] | None = None,
        warm_start: bool | None = None,
        classifier_layer: str | None = None,
        embedding_layer: str | None = None,
        feature_layers: Sequence[str] = (),
        device: str = "auto",
        batch_size: int | None = None,
        collate_fn: Callable | None = None,
        **loop: Any,
    ) -> None:
        adapter = TorchModel(
            model,
            pool,
            n_classes,
            test=test,
            train=train,
            training=training,
            warm_start=warm_start,
            classifier_layer=classifier_layer,
            embedding_layer=embedding_layer,
            feature_layers=feature_layers,
            device=device,
            batch_size=batch_size,
            collate_fn=collate_fn,
        )
        super().__init__(adapter, strategy=strategy, test_labels=_test_labels(test), **loop)

    @property
    def model(self) -> nn.Module | None:
        """The last round's trained module."""
        adapter: TorchModel = self.adapter  # type: ignore[assignment]
        return None if adapter.backbone is None else adapter.module
