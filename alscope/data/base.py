"""The dataset contract.

A dataset plugin's target is a :class:`DatasetFactory` subclass. ``load`` returns an
:class:`ALDataset`: a pool source and a test source, class names, the domain, an
:class:`InputSpec` that backbones size themselves from, and a default backbone.

A :class:`DataSource` yields *batches* rather than samples so that in-memory data
(tabular features, decoded uint8 images) is sliced and transformed as whole tensors,
while file-backed data decodes in DataLoader workers. Labels are an array, never read
by iterating the data. Every batch carries the samples' indices in its source, which
is how training hooks (Learning Loss, TiDAL) keep per-sample state.
"""

from __future__ import annotations

import copy as _copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import torch

from alscope.components import Component
from alscope.specs import Domain

BatchTransform = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]


@dataclass
class Batch:
    """A batch: model inputs (a tensor or a dict of tensors), true labels, source indices."""

    inputs: Any
    targets: torch.Tensor
    indices: torch.Tensor

    def to(self, device: torch.device) -> Batch:
        return Batch(move_to(self.inputs, device), self.targets.to(device), self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def move_to(inputs: Any, device: torch.device) -> Any:
    """Move a tensor, or the tensors of a dict/list, to ``device``."""
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device, non_blocking=True)
    if isinstance(inputs, dict):
        return {k: move_to(v, device) for k, v in inputs.items()}
    if isinstance(inputs, list | tuple):
        return type(inputs)(move_to(v, device) for v in inputs)
    return inputs


def batched_indices(
    indices: np.ndarray,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None,
    drop_last: bool,
) -> Iterator[np.ndarray]:
    """Index chunks in the given order, or a permutation of it seeded by ``generator``;
    shared by every source that slices its own batches."""
    order = np.asarray(indices, dtype=np.int64)
    if shuffle:
        perm = torch.randperm(len(order), generator=generator).numpy()
        order = order[perm]
    stop = len(order) - (len(order) % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]


class DataSource(ABC):
    """One split of a dataset, addressed by integer index."""

    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @abstractmethod
    def batches(
        self,
        indices: np.ndarray,
        *,
        batch_size: int,
        train: bool,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        """Yield batches over ``indices``.

        ``train=True`` applies the training (augmenting) transform; ``train=False`` the
        evaluation transform, which is what every pool scoring pass uses.
        """

    @abstractmethod
    def subset(self, indices: np.ndarray) -> DataSource:
        """A source holding only ``indices``, re-indexed from 0."""

    def relabeled(self, mapping: np.ndarray) -> DataSource:
        """The same samples with label ``y`` replaced by ``mapping[y]`` (e.g. the known
        classes of an open-set pool renumbered 0..k-1 and the others -1)."""
        copy = _copy.copy(self)
        for attr in ("labels", "_all_labels"):
            if hasattr(copy, attr):
                setattr(copy, attr, np.asarray(mapping, dtype=np.int64)[getattr(copy, attr)])
        return copy


class TensorSource(DataSource):
    """Data held in memory as one tensor; transforms work on whole batches.

    Args:
        inputs: ``(N, ...)`` tensor (features, or uint8 images).
        labels: ``(N,)`` integer labels.
        train_transform: batched transform for training batches, called as
            ``f(batch, generator)``; None for none.
        eval_transform: batched transform for evaluation and pool scoring.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        labels: np.ndarray | Sequence[int],
        train_transform: BatchTransform | None = None,
        eval_transform: BatchTransform | None = None,
    ) -> None:
        self.inputs = inputs
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(self.inputs) != len(self.labels):
            raise ValueError(f"{len(self.inputs)} inputs but {len(self.labels)} labels")
        self.train_transform = train_transform
        self.eval_transform = eval_transform

    def batches(
        self,
        indices: np.ndarray,
        *,
        batch_size: int,
        train: bool,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        transform = self.train_transform if train else self.eval_transform
        labels = torch.from_numpy(self.labels)
        for chunk in batched_indices(indices, batch_size, shuffle, generator, drop_last):
            idx = torch.from_numpy(chunk)
            x = self.inputs[idx]
            if transform is not None:
                x = transform(x, generator)
            yield Batch(x, labels[idx], idx)

    def subset(self, indices: np.ndarray) -> TensorSource:
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return TensorSource(
            self.inputs[idx], self.labels[idx.numpy()], self.train_transform, self.eval_transform
        )


class _IndexedDataset(torch.utils.data.Dataset):
    """Items ``(x, local index)`` read from the parent dataset at ``parent[i]``, so that
    batches know which samples they hold."""

    def __init__(self, dataset: Any, parent: np.ndarray, local: np.ndarray) -> None:
        self.dataset, self.parent, self.local = dataset, parent, local

    def __len__(self) -> int:
        return len(self.parent)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        x, _ = self.dataset[int(self.parent[i])]
        return x, int(self.local[i])


class _CollateWithIndices:
    """Collates inputs with ``collate`` and keeps the indices apart; a class rather than a
    closure so that DataLoader workers started by ``spawn`` (macOS, Windows) can pickle it."""

    def __init__(self, collate: Callable[[list[Any]], Any]) -> None:
        self.collate = collate

    def __call__(self, items: list[tuple[Any, int]]) -> tuple[Any, torch.Tensor]:
        return self.collate([x for x, _ in items]), torch.tensor([i for _, i in items], dtype=torch.int64)


class MapDatasetSource(DataSource):
    """Data read sample by sample (files on disk, decoded in DataLoader workers).

    Args:
        make_dataset: ``make_dataset(train)`` returns a map-style dataset whose items
            are ``(input, label)`` with the training or the evaluation transform.
        labels: the labels as an array (never read by iterating the dataset).
        collate_fn: builds model inputs from a list of items' inputs.
        num_workers: DataLoader workers.
        index_map: the parent indices this source covers (set by :meth:`subset`).
    """

    def __init__(
        self,
        make_dataset: Callable[[bool], Any],
        labels: np.ndarray,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        num_workers: int = 0,
        index_map: np.ndarray | None = None,
    ) -> None:
        self.make_dataset = make_dataset
        self._all_labels = np.asarray(labels, dtype=np.int64)
        self.index_map = np.arange(len(self._all_labels), dtype=np.int64) if index_map is None else index_map
        self.labels = self._all_labels[self.index_map]
        self.collate_fn = collate_fn
        self.num_workers = num_workers
        self._datasets: dict[bool, Any] = {}

    def _dataset(self, train: bool) -> Any:
        if train not in self._datasets:
            self._datasets[train] = self.make_dataset(train)
        return self._datasets[train]

    def batches(
        self,
        indices: np.ndarray,
        *,
        batch_size: int,
        train: bool,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        local = np.asarray(indices, dtype=np.int64)
        if shuffle:
            local = local[torch.randperm(len(local), generator=generator).numpy()]
        dataset = _IndexedDataset(self._dataset(train), self.index_map[local], local)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            drop_last=drop_last,
            collate_fn=_CollateWithIndices(self.collate_fn or torch.utils.data.default_collate),
            # Workers seed their augmentations from this generator: same seed, same crops.
            generator=generator,
        )
        for inputs, idx in loader:
            yield Batch(inputs, torch.from_numpy(self.labels[idx.numpy()]), idx)

    def subset(self, indices: np.ndarray) -> MapDatasetSource:
        return MapDatasetSource(
            self.make_dataset,
            self._all_labels,
            self.collate_fn,
            self.num_workers,
            self.index_map[np.asarray(indices, dtype=np.int64)],
        )


@dataclass(frozen=True)
class InputSpec:
    """What a backbone needs to know about the inputs.

    ``kind`` is ``"vector"`` (``shape=(n_features,)``), ``"image"``
    (``shape=(channels, height, width)``) or ``"tokens"`` (``extra`` names the tokenizer).
    """

    kind: Literal["vector", "image", "tokens"]
    shape: tuple[int, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


class ContrastiveViews(Protocol):
    """A domain's views for self-supervised contrastive training (``alscope.ssl``).

    ``views`` returns a strongly augmented copy of a batch of *evaluation-transformed*
    model inputs (SimCLR's crops and colour distortions for images), drawing its
    randomness from ``generator``; two calls give two views of the same samples.
    ``n_shifts`` > 1 offers CSI's shifting transformations: ``shift(inputs, k)`` for
    ``k`` in ``0..n_shifts-1`` (``k = 0`` the identity, e.g. rotations by ``k x 90``
    degrees), applied after ``views``; 0 means none (CSI then trains as SimCLR). Its
    ``repr`` should state its settings (a dataclass's does): it is part of the key under
    which the embeddings are cached.
    """

    @property
    def n_shifts(self) -> int: ...

    def views(self, inputs: Any, generator: torch.Generator) -> Any: ...

    def shift(self, inputs: Any, k: int) -> Any: ...


@dataclass
class ALDataset:
    """A loaded dataset, ready for a scenario.

    ``contrastive`` (optional) gives self-supervised training its augmentations; without
    it the two views are the training transform applied twice plus dropout (SimCSE for
    text and tabular data). A backbone whose ``prepare_dataset`` changes what the inputs
    are (e.g. cached features in place of images) must drop it (``contrastive=None``).
    """

    name: str
    domain: Domain
    classes: list[str]
    pool: DataSource
    test: DataSource
    input_spec: InputSpec
    default_backbone: str
    contrastive: ContrastiveViews | None = None

    @property
    def n_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class LoadContext:
    """Where and how to load: the data directory, the trial's seed, download permission."""

    data_dir: Path
    seed: int
    download: bool = False


class DatasetFactory(Component):
    """Base of dataset plugins' targets; ``load`` builds the :class:`ALDataset`."""

    domain: ClassVar[Domain] = "tabular"

    @classmethod
    def kind_name(cls) -> str:
        return "dataset"

    @abstractmethod
    def load(self, ctx: LoadContext) -> ALDataset:
        """Read (or download when allowed) the data and return the dataset."""
