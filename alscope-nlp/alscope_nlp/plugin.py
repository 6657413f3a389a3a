"""alscope-nlp's hooks: text datasets and transformer backbones, as specs.

Imported by every alscope command (``alscope list`` included), so it imports neither
torch nor transformers nor datasets: every spec names a ``module:attr`` target that is
imported only when the component is used.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from alscope.hookspecs import hookimpl
from alscope.specs import BackboneSpec, ComponentSpec, DatasetSpec

_D = "alscope_nlp.datasets"
_B = "alscope_nlp.backbones"
_TEXT: dict[str, Any] = {"domains": ("text",)}


@hookimpl
def alscope_register_datasets() -> list[ComponentSpec]:
    return [
        DatasetSpec(
            "agnews",
            f"{_D}:AGNews",
            "AG News topics (4 classes; 120,000 train / 7,600 test): hub or train.csv/test.csv",
            aliases=("AGNEWS", "AG_NEWS", "ag-news", "fancyzhx/ag_news"),
            **_TEXT,
        ),
        DatasetSpec(
            "yelp",
            f"{_D}:Yelp",
            "Yelp review full (5 star classes; 650,000 / 50,000); variant=polarity for 2",
            aliases=("YELP", "yelp_review_full", "yelp_full", "Yelp/yelp_review_full"),
            **_TEXT,
        ),
        DatasetSpec(
            "yelp_polarity",
            f"{_D}:YelpPolarity",
            "Yelp review polarity (negative/positive; 560,000 / 38,000)",
            aliases=("YELP_POLARITY", "yelp_review_polarity", "fancyzhx/yelp_polarity"),
            **_TEXT,
        ),
        DatasetSpec(
            "sst5",
            f"{_D}:SST5",
            "Stanford Sentiment Treebank, 5 classes (8,544 / 2,210 sentences)",
            aliases=("SST5", "SST-5", "sst_5", "sst_fine", "SetFit/sst5"),
            **_TEXT,
        ),
        DatasetSpec(
            "trec",
            f"{_D}:TREC",
            "TREC question classification, 6 coarse classes (5,452 / 500); labels=fine for 50",
            aliases=("TREC", "TREC6", "trec-6", "trec_coarse", "CogComp/trec"),
            **_TEXT,
        ),
        DatasetSpec(
            "trec50",
            f"{_D}:TREC50",
            "TREC question classification with the 50 fine classes (5,452 / 500)",
            aliases=("TREC50", "TREC-50", "trec_fine"),
            **_TEXT,
        ),
        DatasetSpec(
            "imdb",
            f"{_D}:IMDB",
            "IMDB movie reviews, binary sentiment (25,000 / 25,000): hub or aclImdb/",
            aliases=("IMDB", "aclImdb", "stanfordnlp/imdb"),
            **_TEXT,
        ),
        DatasetSpec(
            "dbpedia",
            f"{_D}:DBpedia",
            "DBpedia ontology, 14 classes (560,000 / 70,000): hub or dbpedia_csv/",
            aliases=("DBPEDIA", "dbpedia_14", "DBpedia14", "fancyzhx/dbpedia_14"),
            **_TEXT,
        ),
        DatasetSpec(
            "text",
            f"{_D}:TextFile",
            "your own texts: CSV, TSV, JSON Lines or Parquet (path=...) or a hub dataset (hub=...)",
            aliases=("text_file", "textfile", "texts", "hf_text", "huggingface_text"),
            **_TEXT,
        ),
    ]


@hookimpl
def alscope_register_backbones() -> list[ComponentSpec]:
    return [
        BackboneSpec(
            "transformer",
            f"{_B}:Transformer",
            "any Hugging Face encoder (model=<hub id or local directory>) + a classification head",
            aliases=("hf", "huggingface", "automodel", "hf_encoder", "encoder"),
            **_TEXT,
        ),
        BackboneSpec(
            "distilbert",
            f"{_B}:DistilBERT",
            "DistilBERT base uncased (66M); the text datasets' default, as in ALScope",
            aliases=("DistilBERT", "distilbert-base-uncased", "distilbert/distilbert-base-uncased"),
            **_TEXT,
        ),
        BackboneSpec(
            "bert",
            f"{_B}:BERT",
            "BERT base uncased (110M)",
            aliases=("BERT", "bert-base", "bert-base-uncased", "google-bert/bert-base-uncased"),
            **_TEXT,
        ),
        BackboneSpec(
            "roberta",
            f"{_B}:RoBERTa",
            "RoBERTa base (125M)",
            aliases=("RoBERTa", "roberta-base", "FacebookAI/roberta-base"),
            **_TEXT,
        ),
        BackboneSpec(
            "minilm",
            f"{_B}:MiniLM",
            "all-MiniLM-L6-v2 sentence encoder (22M, 6 layers): fast on a CPU",
            aliases=("MiniLM", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"),
            **_TEXT,
        ),
    ]


# Bare hub ids of encoder families that a user may type as a backbone name.
_ENCODER_FAMILIES = re.compile(
    r"^(distil)?(bert|roberta|albert|electra|deberta|xlm-roberta|camembert|flaubert|mpnet|"
    r"minilm|ernie|xlnet|longformer|bigbird|funnel|mobilebert|squeezebert|canine)(-[\w.]+)+$",
    re.IGNORECASE,
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _in_hub_cache(repo_id: str) -> bool:
    """Whether a model repository is in the Hugging Face cache (no import of the hub client)."""
    cache = os.environ.get("HF_HUB_CACHE")
    if cache is None:
        home = os.environ.get("HF_HOME") or os.path.join(
            os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
        )
        cache = os.path.join(home, "hub")
    return os.path.isdir(os.path.join(cache, "models--" + repo_id.replace("/", "--")))


def claims_backbone(name: str) -> bool:
    """True for a local model directory, a hub id ``org/name``, a cached model, or a bare
    id of a known encoder family (``roberta-large``)."""
    if Path(name).expanduser().is_dir():
        return True
    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1:
        return True  # a path: the backbone's parameter check says if it does not exist
    return bool(_HUB_ID.match(name) or _ENCODER_FAMILIES.match(name) or _in_hub_cache(name))


@hookimpl(optionalhook=True)
def alscope_claim_name(kind: str, name: str) -> dict[str, Any] | None:
    """``--backbone /models/minilm`` or ``--backbone roberta-large``: the generic
    transformer backbone with ``model=<that>``."""
    if kind == "backbone" and claims_backbone(name):
        return {"name": "nlp:transformer", "params": {"model": str(name)}}
    return None
