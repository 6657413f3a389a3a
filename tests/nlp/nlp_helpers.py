"""Helpers of the alscope-nlp tests: a tiny BERT built offline and files in the datasets'
original formats."""

from __future__ import annotations

import csv
from pathlib import Path

_WORD_LINES = (
    "the a an of to in and is was for on with at by from it this that what who where when how why",
    "which game team win season player coach match score goal league cup final",
    "market stock price company shares profit bank trade oil economy",
    "computer software internet science space research technology phone data",
    "war president government election minister police country city people",
    "good great bad awful movie film love hate boring fun plot acting",
    "question answer name number date place person thing location",
)
WORDS = sorted({word for line in _WORD_LINES for word in line.split()})

TOPICS = {
    1: "war president government election minister police country city people",
    2: "game team win season player coach match score goal league cup final",
    3: "market stock price company shares profit bank trade oil economy",
    4: "computer software internet science space research technology phone data",
}


def make_tiny_model(folder: Path) -> Path:
    """A 2-layer, 32-wide BERT with a WordPiece vocabulary, saved like a hub model."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS)), ".", ",", "?", "!"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    ids = {token: i for i, token in enumerate(vocab)}
    backend = Tokenizer(models.WordPiece(ids, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )
    tokenizer.save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


def topic_rows(n_per_class: int, seed: int = 0) -> list[tuple[int, str, str]]:
    """AG-News-like rows (class 1-4, title, description) whose words give the class away."""
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n_per_class):
        for cls, words in TOPICS.items():
            vocab = words.split()
            title = " ".join(rng.choice(vocab) for _ in range(3)).title()
            body = " ".join(rng.choice([*vocab, "the", "a", "of"]) for _ in range(6 + i % 5)) + "."
            rows.append((cls, title, body))
    rng.shuffle(rows)
    return rows


def write_class_csv(path: Path, rows: list[tuple]) -> Path:
    """Zhang et al.'s format: every field quoted, no header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        for row in rows:
            writer.writerow([str(v) for v in row])
    return path
