"""Hugging Face transformer encoders with a classification head.

One class, :class:`Transformer`, serves any encoder by hub id or local directory
(``model=``); ``distilbert``, ``bert``, ``roberta`` and ``minilm`` are the same class with
another default model.

Two modes (``mode=``):

* ``finetune``: the encoder and the head train together. ``prepare_dataset`` tokenises
  the texts once (cached on disk) and batches are padded to their own longest sample.
  Inference passes (no gradient) sort each batch by length and run it in sub-batches of
  about ``batch_tokens`` padded tokens, which pads far less; results come back in the
  batch's order.
* ``frozen``: ``prepare_dataset`` runs the encoder once over pool and test (sorted by
  length, cached on disk) and replaces the inputs by the pooled embeddings; only the head
  trains, which takes seconds on a CPU.
* ``auto`` (the default): frozen on a CPU, fine-tuned on a GPU.

The forward returns the logits, the embedding (the input of ``classifier``) and, when
asked, one pooled vector per layer in ``feature_layers`` (Learning Loss, TiDAL). The head
has its own dropout, so MC-dropout strategies work in both modes (fine-tuning also samples
the encoder's own dropout).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import nn

from alscope.components import Params
from alscope.data.base import ALDataset, InputSpec, TensorSource
from alscope.errors import AlscopeError, ConfigError, ModelError
from alscope.models.base import Backbone, BackboneOutput, PrepareContext
from alscope_nlp.cache import cache_key, entry_path, fingerprint_texts, load_entry, save_entry, text_hashes
from alscope_nlp.hub import hub_offline, offline_clients, offline_reason
from alscope_nlp.sources import TextSource, TokenSource

# Tokenisers run in the main process; their thread pool must not meet DataLoader forks.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _looks_like_path(value: str) -> bool:
    return value.startswith((".", "/", "~")) or "\\" in value or value.count("/") > 1


class TransformerParams(Params):
    model: str | None = Field(
        default=None,
        validate_default=True,
        description="Hugging Face hub id or local model directory (config.json + weights + tokenizer)",
    )
    revision: str | None = Field(default=None, description="hub revision: branch, tag or commit")
    mode: Literal["auto", "frozen", "finetune"] = Field(
        default="auto",
        description="finetune: train the encoder; frozen: embed once, train the head; auto: frozen on CPU",
    )
    pooling: Literal["auto", "cls", "mean"] = Field(
        default="auto",
        description="sentence vector: first token (cls) or masked mean; auto: the model's "
        "sentence-transformers setting, else mean when frozen and cls when fine-tuning",
    )
    max_length: int = Field(default=128, ge=4, le=8192, description="tokens kept per text (truncation)")
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0, description="dropout of the classification head")
    head_hidden: int | None = Field(
        default=None, ge=1, description="a hidden layer (dense + tanh) in the head; none: linear"
    )
    feature_layers: list[int] | None = Field(
        default=None,
        description="hidden-state layers (0 = embeddings, -1 = last) returned as features; default: "
        "4 evenly spaced layers when fine-tuning, the embedding alone when frozen",
    )
    train_embeddings: bool = Field(
        default=True,
        description="fine-tuning: train the token embedding matrix too; false freezes it (about half "
        "of a small model's weights: faster steps on a CPU)",
    )
    standardize: bool = Field(default=True, description="frozen: scale embeddings with the pool's mean/std")
    batch_tokens: int = Field(
        default=8192,
        ge=16,
        description="inference and embedding run longest first in sub-batches of about this many tokens",
    )

    @field_validator("model", mode="before")
    @classmethod
    def _path_to_str(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("model")
    @classmethod
    def _model(cls, value: str | None) -> str:
        if value is None or not str(value).strip():
            raise ValueError(
                "a model is required: a Hugging Face hub id or a local model directory "
                "(--backbone-param model=/path/to/model, or --backbone /path/to/model)"
            )
        path = Path(value).expanduser()
        if path.exists():
            if not path.is_dir() or not (path / "config.json").is_file():
                raise ValueError(f"{value!r} is not a Hugging Face model directory (no config.json in it)")
        elif _looks_like_path(value):
            raise ValueError(f"model directory {value!r} does not exist")
        return value


# -- the model, its tokenizer and caches ------------------------------------------------------


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model comes from and what identifies its files for the caches."""

    source: str  # what from_pretrained reads: a local directory or a hub id
    revision: str | None  # the hub commit, pinned once resolved
    key: str  # identity for cache keys
    folder: Path  # local folder of its files (the hub snapshot for a hub id)
    local_only: bool


def _dir_signature(folder: Path) -> str:
    parts = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and ".git" not in path.parts:
            stat = path.stat()
            parts.append(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}")
    return cache_key(files=parts)


def resolve_model(model: str, revision: str | None) -> ResolvedModel:
    """A local directory as is; a hub id pinned to its commit (from the cache when offline)."""
    path = Path(model).expanduser()
    if path.is_dir():
        folder = path.resolve()
        return ResolvedModel(str(folder), None, f"{folder}#{_dir_signature(folder)}", folder, True)
    from huggingface_hub import hf_hub_download

    try:
        with offline_clients():
            config_file = hf_hub_download(model, "config.json", revision=revision)
    except Exception as exc:
        if hub_offline():
            why = f"it is not in the Hugging Face cache and {offline_reason()}"
        else:
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise ModelError(
            f"model {model!r} cannot be loaded: {why}. Run once with a connection (it is then "
            f"cached), or give a local model directory: --backbone /path/to/model or "
            f"--backbone transformer --backbone-param model=/path/to/model"
        ) from None
    folder = Path(config_file).parent
    commit = folder.name
    return ResolvedModel(model, commit, f"{model}@{commit}", folder, hub_offline())


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with offline_clients():
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _load_error(what: str, resolved: ResolvedModel, exc: Exception) -> ModelError:
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ModelError(f"the {what} of {resolved.source!r} cannot be loaded ({type(exc).__name__}: {message})")


def _from_pretrained(auto_class: Any, what: str, resolved: ResolvedModel) -> Any:
    """``auto_class.from_pretrained`` of the resolved model, failing as a one-line
    :class:`ModelError` that names ``what`` could not be read."""
    try:
        with _quiet_transformers():
            return auto_class.from_pretrained(
                resolved.source, revision=resolved.revision, local_files_only=resolved.local_only
            )
    except Exception as exc:
        raise _load_error(what, resolved, exc) from None


def load_tokenizer(resolved: ResolvedModel) -> Any:
    from transformers import AutoTokenizer

    return _from_pretrained(AutoTokenizer, "tokenizer", resolved)


def load_config(resolved: ResolvedModel) -> Any:
    from transformers import AutoConfig

    return _from_pretrained(AutoConfig, "configuration", resolved)


_PRETRAINED: dict[str, nn.Module] = {}


def pretrained_encoder(resolved: ResolvedModel) -> nn.Module:
    """The pretrained encoder, loaded once per process; callers get a deep copy of it
    (``copy.deepcopy`` is much faster than reading the weights again each cycle)."""
    if resolved.key not in _PRETRAINED:
        from transformers import AutoModel

        try:
            # Loading may initialise weights the checkpoint lacks (a pooler): with its own
            # random state, so a seeded run (and its resume) builds the same heads.
            with _quiet_transformers(), torch.random.fork_rng(devices=[]):
                encoder = AutoModel.from_pretrained(
                    resolved.source, revision=resolved.revision, local_files_only=resolved.local_only
                )
        except Exception as exc:
            raise _load_error("weights", resolved, exc) from None
        _PRETRAINED.clear()  # keep one model in memory
        _PRETRAINED[resolved.key] = encoder.eval()
    return _PRETRAINED[resolved.key]


def forget_encoder(resolved: ResolvedModel) -> None:
    _PRETRAINED.pop(resolved.key, None)


def _sentence_transformers_pooling(folder: Path) -> str | None:
    config = folder / "1_Pooling" / "config.json"
    if not config.is_file():
        return None
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if data.get("pooling_mode_mean_tokens"):
        return "mean"
    if data.get("pooling_mode_cls_token"):
        return "cls"
    return None


def pool_hidden(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """``(B, L, H) -> (B, H)``: the first token, or the mean over unmasked tokens."""
    if how == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def tokenize(
    tokenizer: Any, texts: list[str], max_length: int, batch: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Flat int32 token ids and ``(N + 1,)`` offsets, truncated to ``max_length``."""
    lengths = np.zeros(len(texts), dtype=np.int64)
    chunks: list[np.ndarray] = []
    for start in range(0, len(texts), batch):
        encoded = tokenizer(
            texts[start : start + batch], truncation=True, max_length=max_length, add_special_tokens=True
        )["input_ids"]
        for i, ids in enumerate(encoded):
            lengths[start + i] = len(ids)
            chunks.append(np.asarray(ids, dtype=np.int32))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.int32)
    return ids, offsets


def length_batches(lengths: np.ndarray, budget: int) -> list[np.ndarray]:
    """Positions sorted longest first, cut into sub-batches of at most ``budget`` padded
    tokens each (at least one sample)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    out, start = [], 0
    while start < len(order):
        width = max(int(lengths[order[start]]), 1)
        size = max(1, budget // width)
        out.append(order[start : start + size])
        start += size
    return out


def _note(message: str) -> None:
    print(f"alscope-nlp: {message}", file=sys.stderr, flush=True)


# -- the backbone -------------------------------------------------------------------------------


def hidden_size(config: Any) -> int:
    return int(getattr(config, "hidden_size", 0) or getattr(config, "dim", 0) or 0)


#: fine-tuned encoders up to this hidden size get the small models' learning rate
SMALL_ENCODER_HIDDEN = 512


class Transformer(Backbone):
    """A Hugging Face encoder (``AutoModel``) with a classification head over the CLS or
    mean-pooled output; or, frozen, the head alone over cached embeddings."""

    Params: ClassVar[type[TransformerParams]] = TransformerParams
    component_name = "transformer"

    # -- once per experiment ---------------------------------------------------------------

    @staticmethod
    def _mode(params: Any, ctx: PrepareContext) -> str:
        """``auto``: frozen on a CPU (embedding once is what makes CPU runs minutes), fine-tuned elsewhere."""
        if params.mode == "auto":
            return "frozen" if ctx.device.type == "cpu" else "finetune"
        return str(params.mode)

    @classmethod
    def training_defaults(cls, params: Any, ctx: PrepareContext) -> dict[str, Any]:
        """Fine-tuning uses the usual transformer recipe (AdamW, linear warm-up and decay,
        clipped gradients, few epochs, with a floor of 100 steps so that a labeled set of
        tens of sentences is fitted: 4 epochs of 20 sentences would be 8 steps); the frozen
        mode trains only the head, for which the core's defaults suit.

        The learning rate follows the encoder's width, as ELECTRA's recipe does (Clark et
        al. 2020, Table 7: small 3e-4, base 1e-4, large 5e-5): 1e-4 up to a hidden size of
        :data:`SMALL_ENCODER_HIDDEN`, else BERT's 3e-5. MiniLM-L6 (384) at 3e-5 does not
        fit 150-200 AG News sentences in 100 steps, and entropy then loses to random
        (docs/nlp.md)."""
        if cls._mode(params, ctx) != "finetune":
            return {}
        hidden = cls._hidden_size(params)
        return {
            "optimizer": "adamw",
            "lr": 1e-4 if 0 < hidden <= SMALL_ENCODER_HIDDEN else 3e-5,
            "weight_decay": 0.01,
            "epochs": 4,
            "min_steps": 100,
            "batch_size": 16,
            "grad_clip": 1.0,
            "scheduler": "linear",
            "warmup_fraction": 0.1,
        }

    @staticmethod
    def _hidden_size(params: Any) -> int:
        """The encoder's hidden size from its configuration (0 where it cannot be read)."""
        try:
            config = load_config(resolve_model(params.model, params.revision))
        except AlscopeError:  # the preparation that ran before reports a model that cannot load
            return 0
        return hidden_size(config)

    @classmethod
    def prepare_dataset(cls, dataset: ALDataset, params: Any, ctx: PrepareContext) -> ALDataset:
        """Tokenise once (cached); frozen: embed pool and test once (cached) and replace
        the inputs by the embeddings. Sizes and order of pool and test are kept."""
        pool, test = dataset.pool, dataset.test
        name = cls.component_name or cls.__name__
        if not isinstance(pool, TextSource) or not isinstance(test, TextSource):
            raise ConfigError(
                f"backbone {name!r} reads raw texts, but dataset {dataset.name!r} gives "
                f"{type(pool).__name__}; use it with a text dataset (alscope list datasets)"
            )
        resolved = resolve_model(params.model, params.revision)
        tokenizer = load_tokenizer(resolved)
        config = load_config(resolved)
        mode = cls._mode(params, ctx)
        pooling = params.pooling
        if pooling == "auto":
            pooling = _sentence_transformers_pooling(resolved.folder) or (
                "mean" if mode == "frozen" else "cls"
            )
        n_layers = int(getattr(config, "num_hidden_layers", 0) or getattr(config, "n_layers", 0) or 0)
        layers = cls._feature_layers(params.feature_layers, n_layers, mode, name)
        max_length = params.max_length
        model_max = getattr(tokenizer, "model_max_length", None)
        if isinstance(model_max, int) and 0 < model_max < 100_000:
            max_length = min(max_length, model_max)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

        hidden = hidden_size(config)
        extra = {
            "mode": mode,
            "source": resolved.source,
            "revision": resolved.revision,
            "key": resolved.key,
            "local_only": resolved.local_only,
            "pooling": pooling,
            "feature_layers": layers,
            "hidden_size": hidden,
            "max_length": max_length,
        }
        if mode == "finetune":
            pool_tokens, test_tokens = cls._tokens(dataset, tokenizer, resolved, max_length, pad_id, ctx)
            return replace(
                dataset,
                pool=pool_tokens,
                test=test_tokens,
                input_spec=InputSpec(
                    "tokens", (max_length,), {"alscope_nlp": extra, "tokenizer": resolved.source}
                ),
            )
        vectors = cls._embeddings(
            resolved, tokenizer, pool.texts + test.texts, params, ctx, pooling, layers, max_length, pad_id
        )
        pool_x, test_x = vectors[: len(pool)].astype(np.float32), vectors[len(pool) :].astype(np.float32)
        if params.standardize:
            mean = pool_x.mean(axis=0, keepdims=True)
            std = pool_x.std(axis=0, keepdims=True)
            std[std <= 1e-6 * max(float(std.max()), 1e-12)] = 1.0  # (near-)constant dimensions
            pool_x, test_x = (pool_x - mean) / std, (test_x - mean) / std
        from alscope.ssl import FeatureDropoutViews

        return replace(
            dataset,
            pool=TensorSource(torch.from_numpy(np.ascontiguousarray(pool_x)), pool.labels),
            test=TensorSource(torch.from_numpy(np.ascontiguousarray(test_x)), test.labels),
            input_spec=InputSpec("vector", tuple(pool_x.shape[1:]), {"alscope_nlp": extra}),
            # self-supervised training (MQ-Net, CCAL) on cached sentence embeddings: the
            # frozen encoder's dropout cannot draw two views, so dropout goes on the embedding
            contrastive=FeatureDropoutViews(),
        )

    @staticmethod
    def _tokens(
        dataset: ALDataset, tokenizer: Any, resolved: ResolvedModel, max_length: int, pad_id: int, ctx: Any
    ) -> tuple[TokenSource, TokenSource]:
        """Pool and test tokenised, from the token cache when this dataset's texts were
        tokenised with this tokenizer and ``max_length`` before."""
        pool, test = dataset.pool, dataset.test
        assert isinstance(pool, TextSource) and isinstance(test, TextSource)
        fingerprint = fingerprint_texts(pool.texts, test.texts)
        key = cache_key(texts=fingerprint, tokenizer=resolved.key, max_length=max_length)
        path = entry_path(ctx.cache_dir, "tokens", dataset.name, key)
        keys = ("pool_ids", "pool_offsets", "test_ids", "test_offsets")
        cached = load_entry(path, keys)
        if cached is None or len(cached["pool_offsets"]) != len(pool) + 1:
            pool_ids, pool_off = tokenize(tokenizer, pool.texts, max_length)
            test_ids, test_off = tokenize(tokenizer, test.texts, max_length)
            cached = dict(zip(keys, (pool_ids, pool_off, test_ids, test_off), strict=True))
            save_entry(path, cached)
        return (
            TokenSource(cached["pool_ids"], cached["pool_offsets"], pool.labels, pad_id, pool.texts),
            TokenSource(cached["test_ids"], cached["test_offsets"], test.labels, pad_id, test.texts),
        )

    @classmethod
    def _embeddings(
        cls,
        resolved: ResolvedModel,
        tokenizer: Any,
        texts: list[str],
        params: Any,
        ctx: PrepareContext,
        pooling: str,
        layers: list[int],
        max_length: int,
        pad_id: int,
    ) -> np.ndarray:
        """The frozen encoder's vectors of ``texts``, from the model's embedding store;
        texts not in it are embedded (longest first) and added."""
        key = cache_key(model=resolved.key, max_length=max_length, pooling=pooling, layers=layers)
        label = Path(resolved.source.rstrip("/\\")).name or "model"
        path = entry_path(ctx.cache_dir, "embeddings", label, key)
        hashes = text_hashes(texts)
        stored = load_entry(path, ("hashes", "vectors"))
        known_hashes = stored["hashes"] if stored is not None else np.empty(0, dtype="S16")
        known: dict[bytes, int] = {h: i for i, h in enumerate(known_hashes.tolist())}
        missing: dict[bytes, int] = {}
        for position, digest in enumerate(hashes.tolist()):
            if digest not in known and digest not in missing:
                missing[digest] = position
        vectors = stored["vectors"] if stored is not None else None
        if missing:
            todo = list(missing.values())
            _note(
                f"embedding {len(todo):,} texts with {resolved.source} once (frozen encoder; "
                f"stored under {path.parent})"
            )
            if ctx.device.type == "cpu" and len(todo) > 20_000:
                _note(
                    "on a CPU this can take long: --dataset-param max_pool_size=N caps the pool, "
                    "and --backbone minilm is several times faster than a base-size model"
                )
            start = time.perf_counter()
            ids, offsets = tokenize(tokenizer, [texts[i] for i in todo], max_length)
            tokens = TokenSource(ids, offsets, np.zeros(len(todo), dtype=np.int64), pad_id)
            fresh = embed(
                pretrained_encoder(resolved), tokens, pooling, layers, params.batch_tokens, ctx.device
            )
            _note(f"embedded {len(todo):,} texts in {time.perf_counter() - start:.1f} s")
            forget_encoder(resolved)  # frozen runs never need the encoder again
            if vectors is not None and vectors.shape[1:] != fresh.shape[1:]:
                vectors, known_hashes, known = None, np.empty(0, dtype="S16"), {}
            offset = len(known_hashes)
            known_hashes = np.concatenate([known_hashes, hashes[todo]])
            vectors = fresh if vectors is None else np.concatenate([vectors, fresh])
            known.update({digest: offset + i for i, digest in enumerate(missing)})
            save_entry(path, {"hashes": known_hashes, "vectors": vectors})
        assert vectors is not None
        rows = np.fromiter((known[h] for h in hashes.tolist()), dtype=np.int64, count=len(hashes))
        return vectors[rows]

    @staticmethod
    def _feature_layers(requested: list[int] | None, n_layers: int, mode: str, name: str) -> list[int]:
        """Hidden-state indices in ``0..n_layers`` (0 is the embedding layer's output)."""
        if requested is None:
            if mode == "frozen" or n_layers == 0:
                return []
            picks = np.linspace(1, n_layers, num=min(4, n_layers)).round().astype(int)
            return sorted({int(i) for i in picks})
        out = []
        for layer in requested:
            index = layer if layer >= 0 else n_layers + 1 + layer
            if not 0 <= index <= n_layers:
                raise ConfigError(
                    f"backbone {name}: feature_layers={requested} is invalid: the model has "
                    f"hidden states 0-{n_layers} (or -1..-{n_layers + 1})"
                )
            out.append(index)
        return out

    # -- the module ------------------------------------------------------------------------------

    def __init__(self, input_spec: InputSpec, n_classes: int, params: Any) -> None:
        super().__init__(input_spec, n_classes, params)
        info = input_spec.extra.get("alscope_nlp")
        if not isinstance(info, dict):
            raise ConfigError(
                f"backbone {self.component_name!r} takes a text dataset prepared by its own "
                f"prepare_dataset (the engine does this); got {input_spec.kind} inputs"
            )
        self.info = info
        self.mode: str = info["mode"]
        self.pooling: str = info["pooling"]
        self.layers: list[int] = list(info["feature_layers"])
        self.batch_tokens: int = params.batch_tokens
        hidden = int(info["hidden_size"])
        self.encoder: nn.Module | None = None
        if self.mode == "finetune":
            resolved = ResolvedModel(
                info["source"], info["revision"], info["key"], Path(info["source"]), info["local_only"]
            )
            self.encoder = copy.deepcopy(pretrained_encoder(resolved)).train()
            if not params.train_embeddings:
                embeddings: Any = getattr(self.encoder, "get_input_embeddings", lambda: None)()
                if embeddings is not None:
                    embeddings.weight.requires_grad_(False)
        self.head_dropout = nn.Dropout(params.dropout)
        self.dense: nn.Module | None = None
        width = hidden
        if params.head_hidden is not None:
            self.dense = nn.Sequential(nn.Linear(hidden, params.head_hidden), nn.Tanh())
            width = params.head_hidden
        self.classifier = nn.Linear(width, n_classes)

    def _encode(
        self, ids: torch.Tensor, mask: torch.Tensor, want: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        assert self.encoder is not None
        width = int(mask.sum(1).max().item()) if len(mask) else 1
        ids, mask = ids[:, : max(width, 1)], mask[:, : max(width, 1)]
        out = self.encoder(input_ids=ids, attention_mask=mask, output_hidden_states=want)
        pooled = pool_hidden(out.last_hidden_state, mask, self.pooling)
        feats = [pool_hidden(out.hidden_states[i], mask, "mean") for i in self.layers] if want else []
        return pooled, feats

    def _encode_sorted(
        self, ids: torch.Tensor, mask: torch.Tensor, want: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Without gradients: sub-batches of similar length, results in the batch's order."""
        parts = length_batches(mask.sum(1).cpu().numpy(), self.batch_tokens)
        order = torch.from_numpy(np.concatenate(parts)).to(ids.device)
        pooled_parts, feat_parts = [], []
        for part in parts:
            sel = torch.from_numpy(part).to(ids.device)
            pooled, feats = self._encode(ids[sel], mask[sel], want)
            pooled_parts.append(pooled)
            feat_parts.append(feats)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order), device=order.device)
        pooled = torch.cat(pooled_parts)[inverse]
        feats = (
            [torch.cat([f[i] for f in feat_parts])[inverse] for i in range(len(self.layers))] if want else []
        )
        return pooled, feats

    def forward(self, inputs: Any, return_features: bool = False) -> BackboneOutput:
        if self.encoder is None:  # frozen: inputs are cached embeddings
            x = inputs.float()
            if x.dim() == 3:  # (B, 1 + layers, H): the embedding, then the feature layers
                h, feats = x[:, 0], [x[:, i] for i in range(1, x.shape[1])]
            else:
                h, feats = x, [x]
        else:
            ids, mask = inputs["input_ids"], inputs["attention_mask"]
            if torch.is_grad_enabled() or ids.numel() <= self.batch_tokens:
                h, feats = self._encode(ids, mask, return_features)
            else:
                h, feats = self._encode_sorted(ids, mask, return_features)
        embedding = h if self.dense is None else self.dense(self.head_dropout(h))
        logits = self.classifier(self.head_dropout(embedding))
        return BackboneOutput(logits, embedding, feats if return_features else None)


@torch.no_grad()
def embed(
    encoder: nn.Module,
    tokens: TokenSource,
    pooling: str,
    layers: list[int],
    batch_tokens: int,
    device: torch.device,
) -> np.ndarray:
    """Pooled embeddings of every sample, ``(N, H)``, or ``(N, 1 + len(layers), H)`` with
    the feature layers; computed longest first in sub-batches of about ``batch_tokens``."""
    was_training = encoder.training
    encoder.eval().to(device)
    out: np.ndarray | None = None
    use_amp = device.type == "cuda"
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(tokens),
        desc="alscope-nlp: embedding",
        unit="text",
        leave=False,
        disable=not sys.stderr.isatty(),
    )
    from alscope.progress import long_pass

    advance = long_pass("embedding texts", len(tokens))
    try:
        for chunk in length_batches(tokens.lengths, batch_tokens):
            batch = tokens.pad(chunk)
            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            ctx = torch.autocast("cuda", dtype=torch.float16) if use_amp else contextlib.nullcontext()
            with ctx:
                result = encoder(input_ids=ids, attention_mask=mask, output_hidden_states=bool(layers))
            vectors = [pool_hidden(result.last_hidden_state, mask, pooling)]
            vectors += [pool_hidden(result.hidden_states[i], mask, "mean") for i in layers]
            stacked = torch.stack(vectors, dim=1).float().cpu().numpy()
            if out is None:
                out = np.empty((len(tokens), *stacked.shape[1:]), dtype=np.float32)
            out[chunk] = stacked
            bar.update(len(chunk))
            advance(len(chunk))
    finally:
        bar.close()
        encoder.to("cpu").train(was_training)
    if out is None:
        return np.empty((0, 1), dtype=np.float32)
    return out if layers else out[:, 0]


# -- named encoders -------------------------------------------------------------------------------


def _named(default_model: str) -> type[TransformerParams]:
    class NamedParams(TransformerParams):
        model: str | None = Field(
            default=default_model,
            validate_default=True,
            description="Hugging Face hub id or local model directory (config.json + weights + tokenizer)",
        )

    NamedParams.__name__ = f"TransformerParams[{default_model}]"
    return NamedParams


class DistilBERT(Transformer):
    """DistilBERT base uncased: ALScope's text backbone."""

    Params = _named("distilbert-base-uncased")
    component_name = "distilbert"


class BERT(Transformer):
    Params = _named("bert-base-uncased")
    component_name = "bert"


class RoBERTa(Transformer):
    Params = _named("roberta-base")
    component_name = "roberta"


class MiniLM(Transformer):
    """all-MiniLM-L6-v2: a 6-layer, 384-wide sentence encoder, fast enough for CPUs."""

    Params = _named("sentence-transformers/all-MiniLM-L6-v2")
    component_name = "minilm"
