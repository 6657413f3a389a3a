"""Self-supervised embeddings of the pool, for the open-set strategies (MQ-Net, CCAL).

A strategy asks for them with :class:`~alscope.strategies.base.SSLRequest` in its
requirements; the engine calls :func:`pool_embeddings` once per request and run. The
encoder is a fresh backbone of the run (its penultimate ``embedding``) with a projection
head (``Linear-ReLU-Linear`` to ``request.dim``, as SimCLR), trained without labels on the
scenario's pool (``candidates``) and then applied to the *whole* pool.

Methods:

* ``simclr`` (Chen et al., ICML 2020): two views of every sample of a batch must find
  each other among the ``2B - 1`` other rows: the NT-Xent loss (cross-entropy over
  cosine similarities divided by ``request.temperature``). The views come from the
  dataset's :class:`~alscope.data.base.ContrastiveViews` when it has them (images:
  random resized crop, flip, colour jitter, grayscale on the evaluation-transformed
  batch), otherwise from its training transform applied twice with independent random
  draws; the encoder is in training mode, so dropout differs between the views too,
  which for text and tabular data without augmentation is SimCSE (Gao et al., EMNLP
  2021: the same input twice through dropout).
* ``csi`` (Tack et al., NeurIPS 2020): SimCLR over shifted instances: every view is
  also shifted by each of the domain's ``n_shifts`` transformations (rotations by 0, 90,
  180 and 270 degrees for images); a shifted copy is a different instance (a negative)
  for every other row, its positive is the same shift of the other view, and a linear
  head on the penultimate embedding learns to predict the shift (cross-entropy added to
  the NT-Xent loss). A domain without shifts trains ``csi`` as ``simclr`` (a warning
  says so).

The returned embeddings are L2-normalised projections ``z = g(f(x))`` of the
evaluation-transformed inputs (no augmentation), float32 on the CPU, ``(N, D)`` over
every pool index: ``D = request.dim`` for ``simclr``; for ``csi`` with ``K`` shifts the
``K`` normalised projections of the shifted inputs, concatenated and divided by
``sqrt(K)`` (``D = K * request.dim``), so the row still has unit norm and the dot product
of two rows is their mean cosine similarity over the shifts: CSI's ensemble over
shifted instances. Like CSI, CCAL and MQ-Net, strategies compare them by cosine
similarity.

Embeddings are cached under ``cache_dir / "ssl"`` in a file named after the dataset,
the method and a hash of everything that determines them (request, seed, backbone class
and parameters, pool size, candidates, pool labels, a sample of the inputs, the
contrastive views); the file is written atomically, so later cycles, trials and runs
(in any process) load it instead of training. Training is seeded: the same seed gives
the same embeddings on the same machine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import secrets
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel
from torch import nn

from alscope.data.base import ALDataset, move_to
from alscope.errors import ConfigError, ModelError
from alscope.models.base import Backbone
from alscope.progress import long_pass
from alscope.strategies.base import SSLRequest

log = logging.getLogger(__name__)

#: methods :func:`pool_embeddings` trains
METHODS = ("simclr", "csi")
#: bump when training changes what the embeddings are, so old cache files are not reused
VERSION = 1
#: pool samples whose evaluation-transformed inputs enter the cache key
_FINGERPRINT_SAMPLES = 32


@dataclass(frozen=True)
class FeatureDropoutViews:
    """Views of feature vectors by dropout on the features themselves.

    SimCSE (Gao et al., EMNLP 2021) makes two views of a sentence by passing it twice
    through the encoder with dropout on. A frozen encoder's cached sentence embeddings
    have no dropout left to draw, so the noise goes on the embedding: each feature is
    zeroed with probability ``p`` (and the rest scaled by ``1 / (1 - p)``), independently
    per view. No shifting transformation (CSI trains as SimCLR).
    """

    p: float = 0.1
    n_shifts: int = 0

    def views(self, inputs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        keep = torch.rand(inputs.shape, generator=generator, device=generator.device) >= self.p
        return inputs * keep.to(inputs.device, inputs.dtype) / (1.0 - self.p)

    def shift(self, inputs: torch.Tensor, k: int) -> torch.Tensor:
        raise ModelError("feature-dropout views have no shifting transformation")


@dataclass
class TrainedEncoder:
    """An encoder after contrastive training, with its mean loss per epoch."""

    model: ContrastiveModel
    losses: list[float]
    n_shifts: int
    seconds: float


class ContrastiveModel(nn.Module):
    """A backbone's penultimate embedding ``h = f(x)``, a projection head ``z = g(h)``
    (``Linear-ReLU-Linear``, SimCLR's) and, for CSI, a linear shift classifier on ``h``."""

    def __init__(self, encoder: Backbone, dim: int, n_shifts: int) -> None:
        super().__init__()
        width = int(encoder.embedding_dim)
        self.encoder = encoder
        self.head = nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, dim))
        self.shift_head = nn.Linear(width, n_shifts) if n_shifts > 1 else None

    def forward(self, inputs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.encoder(inputs).embedding.float()
        z = self.head(h)
        return z, (self.shift_head(h) if self.shift_head is not None else None)


def nt_xent(za: torch.Tensor, zb: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (SimCLR): row ``i`` of ``za`` and row ``i`` of ``zb`` are positives; every
    other row of both is a negative. Cross-entropy over cosine similarities / temperature,
    averaged over all ``2B`` rows."""
    n = len(za)
    z = F.normalize(torch.cat([za, zb]).float(), dim=1)
    logits = (z @ z.T) / temperature
    self_pairs = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_pairs, float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, targets)


def pool_embeddings(
    request: SSLRequest,
    dataset: ALDataset,
    candidates: np.ndarray,
    build_encoder: Callable[[], Backbone],
    *,
    cache_dir: Path,
    device: torch.device,
    seed: int,
    batch_size: int,
) -> torch.Tensor:
    """L2-normalised self-supervised embeddings ``(len(dataset.pool), D)`` (float32, CPU)
    of every pool index, from an encoder trained on ``candidates`` only (see the module
    docstring for ``D``); loaded from the cache when it holds them.

    Args:
        request: method and training settings.
        dataset: the prepared dataset (the scenario's pool and labels).
        candidates: pool indices trained on (the scenario's pool).
        build_encoder: a fresh, untrained backbone of the run.
        cache_dir: the run's cache folder; files go to ``cache_dir / "ssl"``.
        device: where training and the embedding pass run.
        seed: seeds the encoder's initialisation, the batches and the views.
        batch_size: batch size of the embedding pass.
    """
    check_request(request)
    candidates = _check_candidates(candidates, len(dataset.pool))
    with seeded(seed, device):
        encoder = build_encoder()
        key = cache_key(request, dataset, candidates, encoder, seed)
        path = cache_path(Path(cache_dir), dataset.name, request.method, key)
        cached = _load(path, key, len(dataset.pool))
        if cached is not None:
            log.info("ssl %s: loaded the embeddings of %s from %s", request.method, dataset.name, path)
            return cached
        # minutes on a CPU for image pools: say so, since the run is otherwise silent here
        print(
            f"alscope: training a {request.method} encoder on {len(candidates):,} samples of "
            f"{dataset.name} ({request.epochs} epochs) once; cached in {path.parent}",
            file=sys.stderr,
            flush=True,
        )
        trained = train_encoder(request, dataset, candidates, encoder, device=device, seed=seed)
        embeddings = embed(
            trained, dataset, np.arange(len(dataset.pool)), device=device, batch_size=batch_size
        )
    _save(path, key, embeddings, request, trained)
    log.info(
        "ssl %s: trained on %d samples of %s for %d epochs in %.1f s (loss %.3f -> %.3f); cached in %s",
        request.method,
        len(candidates),
        dataset.name,
        request.epochs,
        trained.seconds,
        trained.losses[0],
        trained.losses[-1],
        path,
    )
    return embeddings


def check_request(request: SSLRequest) -> None:
    """A clear error for a request that cannot be trained."""
    where = f"self-supervised request {request}"
    if request.method not in METHODS:
        raise ConfigError(f"{where}: method {request.method!r} is unknown (accepted: {', '.join(METHODS)})")
    checks = (
        ("epochs", request.epochs >= 1, ">= 1"),
        ("dim", request.dim >= 1, ">= 1"),
        ("temperature", request.temperature > 0, "> 0"),
        ("batch_size", request.batch_size >= 2, ">= 2"),
        ("lr", request.lr > 0, "> 0"),
    )
    for name, ok, rule in checks:
        if not ok:
            raise ConfigError(f"{where}: {name}={getattr(request, name)!r} is invalid; it must be {rule}")


def _check_candidates(candidates: np.ndarray, n_pool: int) -> np.ndarray:
    idx = np.asarray(candidates, dtype=np.int64).reshape(-1)
    if len(idx) < 2:
        raise ModelError(f"self-supervised training needs at least 2 pool samples, got {len(idx)}")
    if idx.min() < 0 or idx.max() >= n_pool:
        raise ModelError(f"self-supervised training got pool indices outside 0..{n_pool - 1}")
    return idx


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global generators (initialisation, dropout, transforms that draw from
    them) without disturbing the caller's random state."""
    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def n_shifts_for(request: SSLRequest, dataset: ALDataset) -> int:
    """Shifted instances per view: the domain's for ``csi``, otherwise none (1)."""
    if request.method != "csi":
        return 1
    shifts = dataset.contrastive.n_shifts if dataset.contrastive is not None else 0
    if shifts > 1:
        return int(shifts)
    warnings.warn(
        f"ssl csi: dataset {dataset.name!r} ({dataset.domain}) has no shifting transformation, "
        f"so csi trains as simclr",
        stacklevel=3,
    )
    return 1


def train_encoder(
    request: SSLRequest,
    dataset: ALDataset,
    candidates: np.ndarray,
    encoder: Backbone,
    *,
    device: torch.device,
    seed: int,
) -> TrainedEncoder:
    """Contrastive training of ``encoder`` plus heads on the pool indices ``candidates``.

    Batches are near-equal splits of a seeded permutation per epoch (none tiny, none
    dropped); Adam with a cosine-annealed learning rate, as short SimCLR schedules use.
    """
    check_request(request)
    candidates = _check_candidates(candidates, len(dataset.pool))
    k = n_shifts_for(request, dataset)
    model = ContrastiveModel(encoder, request.dim, k).to(device)
    n = len(candidates)
    n_batches = max(1, round(n / request.batch_size))
    per_batch = math.ceil(n / n_batches)
    steps = request.epochs * math.ceil(n / per_batch)
    optimizer = torch.optim.Adam(model.parameters(), lr=request.lr, weight_decay=1e-6)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))
    order_gen = torch.Generator().manual_seed(seed)
    view_gens = (torch.Generator().manual_seed(seed + 1), torch.Generator().manual_seed(seed + 2))
    losses: list[float] = []
    start = time.perf_counter()
    model.train()
    checked = False
    advance = long_pass(f"{request.method} encoder on {dataset.name}, epochs", request.epochs)
    for _ in range(request.epochs):
        order = candidates[torch.randperm(n, generator=order_gen).numpy()]
        total, count = 0.0, 0
        for xa, xb, shift_labels in _view_pairs(dataset, order, per_batch, view_gens, k, device):
            rows = _size(xa)
            z, shift_logits = model(_cat([xa, xb]))
            za, zb = z[:rows], z[rows:]
            if not checked:
                checked = True
                if torch.equal(za, zb):
                    warnings.warn(
                        f"ssl {request.method}: the two views of {dataset.name!r} are identical (no "
                        f"augmentation, no dropout before the embedding); the encoder only learns to "
                        f"spread samples apart",
                        stacklevel=2,
                    )
            loss = nt_xent(za, zb, request.temperature)
            if shift_logits is not None:
                loss = loss + F.cross_entropy(shift_logits.float(), shift_labels.repeat(2))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * rows
            count += rows
        losses.append(total / max(count, 1))
        advance(1)
    model.eval()
    return TrainedEncoder(model, losses, k, time.perf_counter() - start)


def _view_pairs(
    dataset: ALDataset,
    order: np.ndarray,
    batch_size: int,
    gens: tuple[torch.Generator, torch.Generator],
    n_shifts: int,
    device: torch.device,
) -> Iterator[tuple[Any, Any, torch.Tensor]]:
    """Two views of each batch of ``order`` (on ``device``) and, for ``n_shifts > 1``,
    the shift label of every row of one view (rows are ``shift-major``: ``k * B + i``)."""
    source, contrastive = dataset.pool, dataset.contrastive
    if contrastive is not None:
        for batch in source.batches(order, batch_size=batch_size, train=False):
            x = move_to(batch.inputs, device)
            size = len(batch)
            if n_shifts > 1:
                # A fresh augmentation for every shifted copy (as CSI), flips before rotations.
                views = [
                    _cat([contrastive.shift(contrastive.views(x, g), s) for s in range(n_shifts)])
                    for g in gens
                ]
            else:
                views = [contrastive.views(x, g) for g in gens]
            labels = torch.arange(n_shifts, device=device).repeat_interleave(size)
            yield views[0], views[1], labels
        return
    # The training transform twice over the same order: each pass draws its augmentation
    # from its own generator, so the views of a sample are independent draws.
    first = source.batches(order, batch_size=batch_size, train=True, generator=gens[0])
    second = source.batches(order, batch_size=batch_size, train=True, generator=gens[1])
    for a, b in zip(first, second, strict=True):
        if not torch.equal(a.indices, b.indices):
            raise ModelError("the pool source gave its two passes in different orders")
        yield move_to(a.inputs, device), move_to(b.inputs, device), torch.zeros(len(a), dtype=torch.long)


@torch.no_grad()
def embed(
    trained: TrainedEncoder,
    dataset: ALDataset,
    indices: np.ndarray,
    *,
    device: torch.device,
    batch_size: int,
) -> torch.Tensor:
    """Normalised projections of the evaluation-transformed inputs ``(len(indices), D)``;
    with ``K`` shifts, the ``K`` shifted copies' projections concatenated / ``sqrt(K)``."""
    model, k = trained.model, trained.n_shifts
    model.eval()
    contrastive = dataset.contrastive
    out = []
    for batch in dataset.pool.batches(
        np.asarray(indices, dtype=np.int64), batch_size=batch_size, train=False
    ):
        x = move_to(batch.inputs, device)
        if k > 1:
            assert contrastive is not None
            z = [F.normalize(model(contrastive.shift(x, s))[0].float(), dim=1) for s in range(k)]
            out.append((torch.cat(z, dim=1) / math.sqrt(k)).cpu())
        else:
            out.append(F.normalize(model(x)[0].float(), dim=1).cpu())
    return torch.cat(out).contiguous()


# -- batches of inputs (tensors or dicts of tensors) ------------------------------------


def _cat(parts: list[Any]) -> Any:
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts)
    if isinstance(first, dict):
        return {key: _cat([p[key] for p in parts]) for key in first}
    raise ModelError(f"self-supervised training cannot batch inputs of type {type(first).__name__}")


def _size(inputs: Any) -> int:
    if isinstance(inputs, torch.Tensor):
        return len(inputs)
    if isinstance(inputs, dict):
        return _size(next(iter(inputs.values())))
    raise ModelError(f"self-supervised training cannot batch inputs of type {type(inputs).__name__}")


# -- cache --------------------------------------------------------------------------------


def cache_key(
    request: SSLRequest, dataset: ALDataset, candidates: np.ndarray, encoder: Backbone, seed: int
) -> str:
    """Hash of everything that determines the embeddings."""
    params = getattr(encoder, "params", None)
    content = {
        "version": VERSION,
        "request": asdict(request),
        "seed": int(seed),
        "backbone": f"{type(encoder).__module__}.{type(encoder).__qualname__}",
        "backbone_params": params.model_dump(mode="json") if isinstance(params, BaseModel) else repr(params),
        "input_spec": repr(dataset.input_spec),
        "pool_size": len(dataset.pool),
        "candidates": _array_digest(np.asarray(candidates, dtype=np.int64)),
        "labels": _array_digest(np.asarray(dataset.pool.labels, dtype=np.int64)),
        "inputs": _inputs_digest(dataset),
        "contrastive": repr(dataset.contrastive),
    }
    text = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def cache_path(cache_dir: Path, dataset_name: str, method: str, key: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in dataset_name) or "dataset"
    return cache_dir / "ssl" / f"{safe}-{method}-{key[:20]}.pt"


def _array_digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _inputs_digest(dataset: ALDataset) -> str:
    """A digest of the first pool samples as the model sees them (evaluation transform),
    so that a different preprocessing of the same labels is a different cache entry."""
    n = min(_FINGERPRINT_SAMPLES, len(dataset.pool))
    digest = hashlib.sha256()
    for batch in dataset.pool.batches(np.arange(n), batch_size=n, train=False):
        _update(digest, batch.inputs)
    return digest.hexdigest()


def _update(digest: Any, inputs: Any) -> None:
    if isinstance(inputs, torch.Tensor):
        digest.update(str((inputs.dtype, tuple(inputs.shape))).encode())
        digest.update(inputs.detach().cpu().contiguous().numpy().tobytes())
    elif isinstance(inputs, dict):
        for key in sorted(inputs):
            digest.update(str(key).encode())
            _update(digest, inputs[key])
    else:
        digest.update(repr(inputs).encode())


def _load(path: Path, key: str, n_pool: int) -> torch.Tensor | None:
    if not path.is_file():
        return None
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
        embeddings = stored["embeddings"]
        if stored.get("key") != key or not isinstance(embeddings, torch.Tensor) or len(embeddings) != n_pool:
            raise ValueError("it belongs to another pool")
    except Exception as exc:  # an unreadable or foreign file is rebuilt, never trusted
        warnings.warn(f"ssl cache file {path} is not usable ({exc}); training again", stacklevel=3)
        return None
    return embeddings.float().contiguous()


def _save(
    path: Path, key: str, embeddings: torch.Tensor, request: SSLRequest, trained: TrainedEncoder
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    payload = {
        "key": key,
        "embeddings": embeddings,
        "request": asdict(request),
        "losses": trained.losses,
        "n_shifts": trained.n_shifts,
        "seconds": trained.seconds,
    }
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)  # readers see the old file or the whole new one, never a part
    finally:
        tmp.unlink(missing_ok=True)
