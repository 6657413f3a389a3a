"""The transformer backbone on a tiny BERT built offline: tokenising and embedding once
with on-disk caches, dynamic padding, length-sorted inference that keeps the order,
features, MC dropout in both modes, and clear errors."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("alscope_nlp")

from alscope_nlp import backbones
from alscope_nlp.backbones import MiniLM, Transformer, length_batches
from alscope_nlp.cache import entry_path, load_entry, save_entry
from alscope_nlp.datasets import AGNews
from alscope_nlp.sources import TokenSource

from alscope.data.base import LoadContext, TensorSource
from alscope.engine.mc_dropout import mc_dropout
from alscope.errors import ConfigError, ModelError
from alscope.models.base import PrepareContext


@pytest.fixture()
def dataset(agnews_dir: Path):
    return AGNews().load(LoadContext(agnews_dir, 0))


def prepare(dataset, cache: Path, **params):
    checked = Transformer.Params.model_validate(params)
    ctx = PrepareContext(cache, torch.device("cpu"), 256, 0)
    return Transformer.prepare_dataset(dataset, checked, ctx), checked


def test_finetune_tokenises_once_and_pads_each_batch_to_its_longest(
    dataset, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared, _ = prepare(dataset, tmp_path, model=str(tiny_model), mode="finetune", max_length=16)
    pool = prepared.pool
    assert isinstance(pool, TokenSource) and prepared.input_spec.kind == "tokens"
    assert len(pool) == len(dataset.pool) and pool.labels.tolist() == dataset.pool.labels.tolist()
    assert pool.lengths.max() <= 16
    batch = next(pool.batches(np.arange(5), batch_size=5, train=True))
    width = int(pool.lengths[:5].max())
    assert batch.inputs["input_ids"].shape == (5, width)
    assert batch.inputs["attention_mask"].sum(1).tolist() == pool.lengths[:5].tolist()
    assert batch.indices.tolist() == [0, 1, 2, 3, 4]
    # the second preparation reads the token cache
    monkeypatch.setattr(backbones, "tokenize", lambda *a, **k: pytest.fail("tokenised twice"))
    again, _ = prepare(dataset, tmp_path, model=str(tiny_model), mode="finetune", max_length=16)
    assert np.array_equal(again.pool.ids, pool.ids)
    subset = pool.subset(np.array([3, 1]))
    assert subset.labels.tolist() == pool.labels[[3, 1]].tolist()
    assert np.array_equal(subset.ids[: subset.lengths[0]], pool.ids[pool.offsets[3] : pool.offsets[4]])


def test_forward_outputs_and_features(dataset, tiny_model: Path, tmp_path: Path) -> None:
    prepared, params = prepare(dataset, tmp_path, model=str(tiny_model), mode="finetune")
    torch.manual_seed(0)
    model = Transformer(prepared.input_spec, prepared.n_classes, params)
    batch = next(prepared.pool.batches(np.arange(6), batch_size=6, train=True))
    out = model(batch.inputs, return_features=True)
    assert out.logits.shape == (6, 4) and out.embedding.shape == (6, 32)
    assert model.embedding_dim == 32 and model.classifier.out_features == 4
    assert len(out.features) == 2 and all(f.shape == (6, 32) for f in out.features)  # layers 1, 2
    assert model(batch.inputs).features is None
    chosen, _ = prepare(dataset, tmp_path, model=str(tiny_model), mode="finetune", feature_layers=[0, -1])
    assert chosen.input_spec.extra["alscope_nlp"]["feature_layers"] == [0, 2]
    with pytest.raises(ConfigError, match=r"feature_layers=\[5\] is invalid.*hidden states 0-2"):
        prepare(dataset, tmp_path, model=str(tiny_model), mode="finetune", feature_layers=[5])
    out.logits.sum().backward()  # the encoder trains
    assert model.encoder is not None
    assert next(model.encoder.parameters()).grad is not None


def test_sorted_inference_keeps_the_batch_order(dataset, tiny_model: Path, tmp_path: Path) -> None:
    prepared, params = prepare(dataset, tmp_path, model=str(tiny_model), mode="finetune", batch_tokens=40)
    model = Transformer(prepared.input_spec, prepared.n_classes, params).eval()
    batch = next(prepared.pool.batches(np.arange(40), batch_size=40, train=False))
    with torch.no_grad():
        together = model(batch.inputs, return_features=True)
        alone = [
            model({k: v[i : i + 1] for k, v in batch.inputs.items()}, return_features=True) for i in range(40)
        ]
    assert torch.allclose(together.logits, torch.cat([a.logits for a in alone]), atol=1e-5)
    assert torch.allclose(together.features[1], torch.cat([a.features[1] for a in alone]), atol=1e-5)
    parts = length_batches(np.array([3, 9, 5, 9, 1]), budget=18)
    assert [p.tolist() for p in parts] == [[1, 3], [2, 0, 4]]


def test_frozen_embeds_once_into_a_cache_and_trains_only_a_head(
    dataset, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared, params = prepare(dataset, tmp_path, model=str(tiny_model), mode="frozen")
    assert isinstance(prepared.pool, TensorSource) and prepared.input_spec.kind == "vector"
    assert prepared.pool.inputs.shape == (len(dataset.pool), 32)
    assert prepared.pool.labels.tolist() == dataset.pool.labels.tolist()
    assert torch.allclose(prepared.pool.inputs.mean(0), torch.zeros(32), atol=1e-4)  # standardised
    files = list((tmp_path / "alscope-nlp" / "embeddings").iterdir())
    assert len(files) == 1 and files[0].name.startswith(tiny_model.name) and files[0].stat().st_mode & 0o044
    model = Transformer(prepared.input_spec, prepared.n_classes, params)
    assert model.encoder is None and sum(p.numel() for p in model.parameters()) == 32 * 4 + 4
    out = model(prepared.pool.inputs[:3], return_features=True)
    assert out.logits.shape == (3, 4) and out.features is not None and len(out.features) == 1
    # the embedding cache is used; a new max_length is a new entry
    monkeypatch.setattr(backbones, "embed", lambda *a, **k: pytest.fail("embedded twice"))
    again, _ = prepare(dataset, tmp_path, model=str(tiny_model), mode="frozen")
    assert torch.equal(again.pool.inputs, prepared.pool.inputs)
    monkeypatch.undo()
    prepare(dataset, tmp_path, model=str(tiny_model), mode="frozen", max_length=8)
    assert len(list((tmp_path / "alscope-nlp" / "embeddings").glob("*.npz"))) == 2


def test_frozen_embeddings_equal_the_encoder_pooled_output(dataset, tiny_model: Path, tmp_path: Path) -> None:
    prepared, _ = prepare(dataset, tmp_path, model=str(tiny_model), mode="frozen", standardize=False)
    tokens, _ = prepare(dataset, tmp_path, model=str(tiny_model), mode="finetune")
    encoder = backbones.pretrained_encoder(backbones.resolve_model(str(tiny_model), None)).eval()
    batch = next(tokens.pool.batches(np.arange(7), batch_size=7, train=False))
    with torch.no_grad():
        hidden = encoder(**batch.inputs).last_hidden_state
    expected = backbones.pool_hidden(hidden, batch.inputs["attention_mask"], "mean")
    assert torch.allclose(prepared.pool.inputs[:7], expected, atol=1e-5)


def test_frozen_feature_layers_are_cached_with_the_embedding(
    dataset, tiny_model: Path, tmp_path: Path
) -> None:
    prepared, params = prepare(dataset, tmp_path, model=str(tiny_model), mode="frozen", feature_layers=[1, 2])
    assert prepared.pool.inputs.shape == (len(dataset.pool), 3, 32)
    model = Transformer(prepared.input_spec, prepared.n_classes, params)
    out = model(prepared.pool.inputs[:4], return_features=True)
    assert out.embedding.shape == (4, 32) and [f.shape for f in out.features] == [(4, 32), (4, 32)]


@pytest.mark.parametrize("mode", ["frozen", "finetune"])
def test_mc_dropout_samples_in_both_modes(dataset, tiny_model: Path, tmp_path: Path, mode: str) -> None:
    prepared, params = prepare(dataset, tmp_path, model=str(tiny_model), mode=mode, dropout=0.5)
    model = Transformer(prepared.input_spec, prepared.n_classes, params).eval()
    batch = next(prepared.pool.batches(np.arange(8), batch_size=8, train=False))
    with torch.no_grad(), mc_dropout(model):
        first, second = model(batch.inputs).logits, model(batch.inputs).logits
    assert not torch.equal(first, second)
    if mode == "frozen":
        silent, params0 = prepare(dataset, tmp_path, model=str(tiny_model), mode=mode, dropout=0.0)
        with (
            pytest.raises(ModelError, match=r"dropout=0\.3"),
            mc_dropout(Transformer(silent.input_spec, 4, params0)),
        ):
            pass


def test_head_hidden_layer(dataset, tiny_model: Path, tmp_path: Path) -> None:
    prepared, params = prepare(dataset, tmp_path, model=str(tiny_model), mode="frozen", head_hidden=16)
    model = Transformer(prepared.input_spec, prepared.n_classes, params)
    out = model(prepared.pool.inputs[:2])
    assert out.embedding.shape == (2, 16) and model.embedding_dim == 16


def test_auto_mode_is_frozen_on_cpu(dataset, tiny_model: Path, tmp_path: Path) -> None:
    prepared, _ = prepare(dataset, tmp_path, model=str(tiny_model))
    assert prepared.input_spec.extra["alscope_nlp"]["mode"] == "frozen"
    assert prepared.input_spec.extra["alscope_nlp"]["pooling"] == "mean"


def test_parameter_and_model_errors(dataset, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="a model is required"):
        Transformer.build(None, 2, {})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="model directory '/no/such/model' does not exist"):
        Transformer.build(None, 2, {"model": "/no/such/model"})  # type: ignore[arg-type]
    (tmp_path / "notamodel").mkdir()
    with pytest.raises(ConfigError, match="not a Hugging Face model directory"):
        Transformer.build(None, 2, {"model": str(tmp_path / "notamodel")})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="mode="):
        Transformer.build(None, 2, {"model": "x/y", "mode": "partial"})  # type: ignore[arg-type]
    assert MiniLM.Params().model == "sentence-transformers/all-MiniLM-L6-v2"
    # a hub id that is not cached, offline (the tests set HF_HUB_OFFLINE=1): both ways named
    with pytest.raises(ModelError, match=r"not in the Hugging Face cache.*--backbone /path/to/model"):
        prepare(dataset, tmp_path, model="nobody/no-such-model")


def test_a_non_text_dataset_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    from alscope.data.tabular import Iris

    iris = Iris().load(LoadContext(tmp_path, 0))
    with pytest.raises(ConfigError, match="reads raw texts"):
        prepare(iris, tmp_path, model=str(tiny_model))


def test_cache_entries_are_written_atomically(tmp_path: Path) -> None:
    path = entry_path(tmp_path, "embeddings", "x", "k")
    arrays = [{"pool": np.full((200, 64), float(i), dtype=np.float32)} for i in range(6)]
    threads = [threading.Thread(target=save_entry, args=(path, a)) for a in arrays]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    loaded = load_entry(path, ("pool",))
    assert loaded is not None and len(np.unique(loaded["pool"])) == 1
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    path.write_bytes(b"truncated")
    assert load_entry(path, ("pool",)) is None  # unreadable: recomputed, never trusted


def test_named_backbones_and_claims(registry, tiny_model: Path) -> None:
    for spelling, name in [
        ("distilbert-base-uncased", "distilbert"),
        ("DistilBERT", "distilbert"),
        ("roberta-base", "roberta"),
        ("bert-base-uncased", "bert"),
        ("sentence-transformers/all-MiniLM-L6-v2", "minilm"),
        ("hf", "transformer"),
    ]:
        assert registry.resolve("backbone", spelling).name == name
    from alscope_nlp.plugin import alscope_claim_name, claims_backbone

    assert alscope_claim_name(kind="backbone", name=str(tiny_model)) == {
        "name": "nlp:transformer",
        "params": {"model": str(tiny_model)},
    }
    assert claims_backbone("FacebookAI/xlm-roberta-large") and claims_backbone("roberta-large")
    assert not claims_backbone("resnet18") and not claims_backbone("mlpp")
    assert alscope_claim_name(kind="dataset", name=str(tiny_model)) is None
    if not hasattr(registry, "resolve_claimed"):
        pytest.skip("this alscope core does not let plugins claim names")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spec, params = registry.resolve_claimed("backbone", str(tiny_model))
    assert spec.name == "transformer" and params == {"model": str(tiny_model)}


def test_a_seeded_head_does_not_depend_on_whether_the_model_was_loaded(
    dataset, tiny_model: Path, tmp_path: Path
) -> None:
    prepared, params = prepare(dataset, tmp_path, model=str(tiny_model), mode="finetune")
    backbones._PRETRAINED.clear()
    torch.manual_seed(7)
    first = Transformer(prepared.input_spec, prepared.n_classes, params)  # loads the weights
    torch.manual_seed(7)
    second = Transformer(prepared.input_spec, prepared.n_classes, params)  # copies them
    assert torch.equal(first.classifier.weight, second.classifier.weight)
    assert first.encoder is not second.encoder


def test_the_embedding_store_embeds_each_text_once(
    agnews_dir: Path, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = AGNews({"max_pool_size": 40, "max_test_size": 8}).load(LoadContext(agnews_dir, 0))
    prepared_small, _ = prepare(small, tmp_path, model=str(tiny_model), mode="frozen", standardize=False)
    embedded: list[int] = []
    original = backbones.embed
    monkeypatch.setattr(
        backbones, "embed", lambda enc, tok, *a: embedded.append(len(tok)) or original(enc, tok, *a)
    )
    full = AGNews().load(LoadContext(agnews_dir, 0))
    prepared_full, _ = prepare(full, tmp_path, model=str(tiny_model), mode="frozen", standardize=False)
    assert embedded == [
        len(set(full.pool.texts + full.test.texts)) - len(set(small.pool.texts + small.test.texts))
    ]
    row = full.pool.texts.index(small.pool.texts[0])
    assert torch.allclose(prepared_full.pool.inputs[row], prepared_small.pool.inputs[0])
    # another seed's split and another cap of the same texts: nothing to embed
    other = AGNews({"max_pool_size": 60}).load(LoadContext(agnews_dir, 1))
    prepare(other, tmp_path, model=str(tiny_model), mode="frozen")
    assert len(embedded) == 1
    assert len(list((tmp_path / "alscope-nlp" / "embeddings").glob("*.npz"))) == 1


def test_fine_tuning_learning_rate_follows_the_encoders_width(tmp_path: Path, tiny_model: Path) -> None:
    """Small encoders (MiniLM, hidden 384) under-fit at BERT's 3e-5 in the step floor, so
    they get 1e-4; wide ones keep 3e-5; the frozen mode brings no recipe of its own."""
    import json

    ctx = PrepareContext(tmp_path, torch.device("cpu"), 256, 0)

    def defaults(model: Path, mode: str = "finetune") -> dict:
        return Transformer.training_defaults(
            Transformer.Params.model_validate({"model": str(model), "mode": mode}), ctx
        )

    assert defaults(tiny_model)["lr"] == 1e-4  # hidden 32
    wide = tmp_path / "wide"
    wide.mkdir()
    config = json.loads((tiny_model / "config.json").read_text())
    (wide / "config.json").write_text(json.dumps({**config, "hidden_size": 768, "num_attention_heads": 12}))
    assert defaults(wide)["lr"] == 3e-5
    assert defaults(wide)["min_steps"] == 100 and defaults(wide)["optimizer"] == "adamw"
    assert defaults(tiny_model, "frozen") == {}
