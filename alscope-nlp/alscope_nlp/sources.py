"""Data sources of the text domain.

* :class:`TextSource` holds raw texts and their labels: what a text dataset's ``load``
  returns (nothing is tokenised there).
* :class:`TokenSource` holds token ids of every sample, unpadded, in one flat array with
  offsets; each batch is padded to its own longest sample (dynamic padding) and given as
  ``{"input_ids", "attention_mask"}``. A transformer backbone's ``prepare_dataset`` turns
  a :class:`TextSource` into one (fine-tuning) or into a tensor of cached embeddings
  (frozen encoder).

Batches come in the order of the requested indices: the pool pass of the engine fills its
results row by row in batch order, so a source must not reorder. The transformer backbone
sorts by length *inside* a batch instead (see ``alscope_nlp.backbones``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from alscope.data.base import Batch, DataSource, batched_indices


class TextSource(DataSource):
    """Raw texts with labels; batches carry the list of strings as inputs."""

    def __init__(self, texts: Sequence[str], labels: np.ndarray | Sequence[int]) -> None:
        self.texts = list(texts)
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels")

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
        del train  # text has no augmentation here
        labels = torch.from_numpy(self.labels)
        for chunk in batched_indices(indices, batch_size, shuffle, generator, drop_last):
            idx = torch.from_numpy(chunk)
            yield Batch([self.texts[i] for i in chunk.tolist()], labels[idx], idx)

    def subset(self, indices: np.ndarray) -> TextSource:
        idx = np.asarray(indices, dtype=np.int64)
        return TextSource([self.texts[i] for i in idx.tolist()], self.labels[idx])


class TokenSource(DataSource):
    """Token ids of every sample, padded per batch.

    Args:
        ids: all samples' token ids, concatenated (int32).
        offsets: ``(N + 1,)``; sample ``i`` is ``ids[offsets[i]:offsets[i + 1]]``.
        labels: ``(N,)`` integer labels.
        pad_id: the tokenizer's padding id.
        texts: the raw texts, kept for inspection (optional).
    """

    def __init__(
        self,
        ids: np.ndarray,
        offsets: np.ndarray,
        labels: np.ndarray | Sequence[int],
        pad_id: int,
        texts: Sequence[str] | None = None,
    ) -> None:
        self.ids = np.asarray(ids, dtype=np.int32)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(self.offsets) != len(self.labels) + 1:
            raise ValueError(f"{len(self.offsets) - 1} token sequences but {len(self.labels)} labels")
        self.lengths = np.diff(self.offsets)
        self.pad_id = int(pad_id)
        self.texts = None if texts is None else list(texts)

    def pad(self, chunk: np.ndarray) -> dict[str, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` of ``chunk``, padded to its longest sample."""
        lengths = self.lengths[chunk]
        width = max(int(lengths.max()) if len(chunk) else 0, 1)
        ids = np.full((len(chunk), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(chunk), width), dtype=np.int64)
        for row, (i, n) in enumerate(zip(chunk.tolist(), lengths.tolist(), strict=True)):
            start = self.offsets[i]
            ids[row, :n] = self.ids[start : start + n]
            mask[row, :n] = 1
        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}

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
        del train
        labels = torch.from_numpy(self.labels)
        for chunk in batched_indices(indices, batch_size, shuffle, generator, drop_last):
            idx = torch.from_numpy(chunk)
            yield Batch(self.pad(chunk), labels[idx], idx)

    def subset(self, indices: np.ndarray) -> TokenSource:
        idx = np.asarray(indices, dtype=np.int64)
        lengths = self.lengths[idx]
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = (
            np.concatenate([self.ids[self.offsets[i] : self.offsets[i + 1]] for i in idx.tolist()])
            if len(idx)
            else np.empty(0, dtype=np.int32)
        )
        texts = None if self.texts is None else [self.texts[i] for i in idx.tolist()]
        return TokenSource(ids, offsets, self.labels[idx], self.pad_id, texts)
