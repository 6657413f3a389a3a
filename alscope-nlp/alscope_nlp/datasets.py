"""Text datasets: AG News, Yelp, SST-5, TREC, IMDB, DBpedia and the user's own texts.

Each named dataset loads, in this order (``source=auto``):

1. its original distribution files in ``--data-dir``, in the folder itself or in a
   subfolder named after the dataset (``<data-dir>/ag_news/test.csv``);
2. the Hugging Face hub through ``datasets.load_dataset(<hub id>)``, which reads the
   hub's local cache when the machine is offline.

``source=files`` or ``source=hub`` keeps to one of them. Neither available is a
:class:`DataError` that names both ways. When only one labelled split is present (the
AG News test file alone, say), a seeded stratified hold-out carves pool and test and a
warning says so. The pool is capped like every alscope dataset (``max_pool_size``,
``samples_per_class``), the test set with ``max_test_size``. ``load`` tokenises nothing:
the pool and test are :class:`~alscope_nlp.sources.TextSource`\\ s and the labels an
array; the backbone's ``prepare_dataset`` tokenises once and caches.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from alscope.components import Params
from alscope.data.base import ALDataset, DatasetFactory, InputSpec, LoadContext
from alscope.data.splits import cap_pool, stratified_holdout
from alscope.errors import DataError
from alscope_nlp.hub import HubUnavailable, hub_offline, hub_split, load_hub_dataset, offline_reason
from alscope_nlp.readers import (
    LABEL_COLUMN_NAMES,
    TEXT_COLUMN_NAMES,
    TREC_COARSE,
    TREC_FINE,
    Split,
    encode_labels,
    find_column,
    imdb_split,
    join_columns,
    read_class_csv,
    read_sst_trees,
    read_table,
    read_trec,
)
from alscope_nlp.sources import TextSource

DEFAULT_BACKBONE = "distilbert"


OWN_TEXT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet")


def own_text_files(dirs: list[Path]) -> list[Path]:
    """Table files a user may have meant as their own text dataset (``--dataset text``)."""
    found: list[Path] = []
    for folder in dirs:
        if folder.is_dir():
            found += sorted(
                f for f in folder.iterdir() if f.suffix.lower() in OWN_TEXT_SUFFIXES and f.is_file()
            )
    return found


class TextSplitParams(Params):
    """Hold-out and capping, as for every alscope dataset."""

    test_fraction: float = Field(
        default=0.25,
        gt=0,
        lt=1,
        description="share of each class held out as the test set when only one labelled split exists",
    )
    max_pool_size: int | None = Field(
        default=None, ge=1, description="cap the pool at this many samples (stratified)"
    )
    samples_per_class: int | None = Field(
        default=None, ge=1, description="cap the pool at this many samples per class"
    )
    max_test_size: int | None = Field(
        default=None, ge=1, description="cap the test set at this many samples (stratified)"
    )


class NamedTextParams(TextSplitParams):
    source: Literal["auto", "files", "hub"] = Field(
        default="auto",
        description="auto: the original files in --data-dir when present, else the Hugging Face "
        "hub (its cache when offline); files or hub: only that one",
    )
    revision: str | None = Field(default=None, description="hub dataset revision (branch, tag or commit)")


def build_text_dataset(
    name: str,
    classes: list[str],
    pool: Split,
    test: Split | None,
    params: TextSplitParams,
    seed: int,
) -> ALDataset:
    """Hold out (when there is no test split), cap, then read the kept texts."""
    for split in (pool, test):
        if split is not None and len(split) == 0:
            raise DataError(f"{name}: {split.where} holds no samples")
        if split is not None and (split.labels.min() < 0 or split.labels.max() >= len(classes)):
            raise DataError(f"{name}: labels of {split.where} fall outside the {len(classes)} classes")
    if test is None:
        warnings.warn(
            f"{name}: only one labelled split is available ({pool.where}); holding out "
            f"{params.test_fraction:.0%} of each class as the test set (seed {seed})",
            stacklevel=3,
        )
        pool_idx, test_idx = stratified_holdout(pool.labels, params.test_fraction, seed)
        test_split = pool
    else:
        pool_idx, test_idx = np.arange(len(pool)), np.arange(len(test))
        test_split = test
    pool_idx = pool_idx[cap_pool(pool.labels[pool_idx], seed, params.max_pool_size, params.samples_per_class)]
    if params.max_test_size is not None:
        test_idx = test_idx[cap_pool(test_split.labels[test_idx], seed, params.max_test_size)]
    pool_labels = pool.labels[pool_idx]
    if len(np.unique(pool_labels)) < 2:
        raise DataError(f"{name}: the pool holds {len(np.unique(pool_labels))} class; at least 2 are needed")
    pool_texts = pool.take(pool_idx)
    test_texts = test_split.take(test_idx)
    absent = sorted(set(range(len(classes))) - set(pool_labels.tolist()))
    if absent and len(absent) < len(classes):
        shown = ", ".join(repr(classes[i]) for i in absent[:5]) + (", ..." if len(absent) > 5 else "")
        warnings.warn(f"{name}: {len(absent)} class(es) have no sample in the pool ({shown})", stacklevel=3)
    return ALDataset(
        name=name,
        domain="text",
        classes=list(classes),
        pool=TextSource(pool_texts, pool_labels),
        test=TextSource(test_texts, test_split.labels[test_idx]),
        input_spec=InputSpec("tokens", extra={"raw_text": True}),
        default_backbone=DEFAULT_BACKBONE,
    )


def _norm(name: str) -> str:
    return re.sub(r"[-_.\s]", "", name.lower())


def candidate_dirs(data_dir: Path, folders: tuple[str, ...]) -> list[Path]:
    """Subfolders named like the dataset (two levels deep, any case and separators),
    then ``data_dir`` itself."""
    wanted = {_norm(f) for f in folders}

    def named_children(folder: Path) -> list[Path]:
        try:
            return sorted(c for c in folder.iterdir() if c.is_dir() and _norm(c.name) in wanted)
        except OSError:
            return []

    out: list[Path] = []
    for child in named_children(data_dir):
        out.append(child)
        out.extend(named_children(child))
    out.append(data_dir)
    return out


class NamedTextDataset(DatasetFactory):
    """A benchmark text dataset: original files in ``--data-dir`` or the hub."""

    domain = "text"
    Params = NamedTextParams
    title: ClassVar[str] = ""
    folders: ClassVar[tuple[str, ...]] = ()
    #: split -> accepted relative paths of its file inside a dataset folder
    files: ClassVar[dict[str, tuple[str, ...]]] = {}
    layout: ClassVar[str] = ""
    hub_text: ClassVar[tuple[str, ...]] = ("text",)
    hub_label: ClassVar[str] = "label"

    # -- what varies with the parameters -----------------------------------------------

    def folder_names(self) -> tuple[str, ...]:
        return self.folders

    def describe_layout(self) -> str:
        return self.layout

    def hub_label_column(self) -> str:
        return self.hub_label

    def class_names(self) -> list[str]:
        raise NotImplementedError

    def hub_id(self) -> tuple[str, str | None]:
        raise NotImplementedError

    def read(self, path: Path) -> Split:
        raise NotImplementedError

    def folder_ok(self, folder: Path) -> bool:
        """A ``classes.txt`` beside the files must list this dataset's number of classes
        (it tells AG News' ``train.csv`` from DBpedia's)."""
        listing = folder / "classes.txt"
        if not listing.is_file():
            return True
        try:
            lines = [
                ln for ln in listing.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()
            ]
        except OSError:
            return True
        return len(lines) == len(self.class_names())

    # -- loading ---------------------------------------------------------------------------

    def find_files(self, data_dir: Path) -> tuple[Path, dict[str, Path]] | None:
        for folder in candidate_dirs(data_dir, self.folder_names()):
            found = {}
            for split, options in self.files.items():
                for rel in options:
                    if (folder / rel).exists():
                        found[split] = folder / rel
                        break
            if found and self.folder_ok(folder):
                return folder, found
        return None

    def expected_files(self) -> str:
        return " and/or ".join(opts[0] for opts in self.files.values())

    def load(self, ctx: LoadContext) -> ALDataset:
        p = self.params
        name = self.component_name or type(self).__name__.lower()
        hub_id, hub_config = self.hub_id()
        local = self.find_files(Path(ctx.data_dir)) if p.source != "hub" else None
        if local is not None:
            _, found = local
            pool_path = found.get("train")
            test_path = found.get("test")
            pool = self.read(pool_path) if pool_path is not None else None
            test = self.read(test_path) if test_path is not None else None
            if pool is None:  # only the test file: it becomes pool and test
                pool, test = test, None
            assert pool is not None
            return build_text_dataset(name, self.class_names(), pool, test, p, ctx.seed)
        tried = ", ".join(str(d) for d in candidate_dirs(Path(ctx.data_dir), self.folder_names()))
        files_hint = (
            f"put the original files ({self.expected_files()}; {self.describe_layout()}) in --data-dir "
            f"(now {ctx.data_dir}) or in a subfolder {self.folder_names()[0]}/ of it"
        )
        own = own_text_files(candidate_dirs(Path(ctx.data_dir), self.folder_names()))
        if own:
            files_hint += (
                f". The folder holds table files ({', '.join(f.name for f in own[:3])}): for your own "
                f"texts use --dataset text --dataset-param path={own[0]}"
            )
        if p.source == "files":
            raise DataError(f"{self.title}: no {self.expected_files()} found in {tried}; {files_hint}")
        try:
            loaded = load_hub_dataset(hub_id, hub_config, p.revision)
        except HubUnavailable as exc:
            reason = offline_reason() if hub_offline() else str(exc)
            where = "" if p.source == "hub" else f"no {self.expected_files()} in {tried}, and "
            raise DataError(
                f"{self.title} is not available: {where}the hub dataset {hub_id!r} could not be "
                f"loaded ({reason}). Either run with a connection to the Hugging Face hub "
                f"(it loads {hub_id!r} and caches it for offline runs), or {files_hint}"
            ) from None
        return self.from_hub(name, hub_id, loaded, ctx.seed)

    def from_hub(self, name: str, hub_id: str, loaded: Any, seed: int) -> ALDataset:
        classes = self.class_names()
        if "train" not in loaded:
            raise DataError(f"hub dataset {hub_id!r} has no 'train' split (splits: {', '.join(loaded)})")
        label = self.hub_label_column()
        pool, _ = hub_split(
            loaded["train"], list(self.hub_text), label, f"{hub_id}[train]", classes, positional=True
        )
        test = None
        if "test" in loaded:
            test, _ = hub_split(
                loaded["test"], list(self.hub_text), label, f"{hub_id}[test]", classes, positional=True
            )
        return build_text_dataset(name, classes, pool, test, self.params, seed)


def _csv_layout(n: int, fields: tuple[str, ...]) -> str:
    return f"CSV without header: {', '.join(('class', *fields))}; classes 1-{n}"


class AGNews(NamedTextDataset):
    """AG News (Zhang et al. 2015): 4 topics, 120,000 train / 7,600 test."""

    component_name = "agnews"
    title = "AG News"
    folders = ("ag_news", "ag_news_csv", "agnews", "ag-news")
    files = {"train": ("train.csv",), "test": ("test.csv",)}
    layout = _csv_layout(4, ("title", "description"))

    def class_names(self) -> list[str]:
        return ["World", "Sports", "Business", "Sci/Tech"]

    def hub_id(self) -> tuple[str, str | None]:
        return "fancyzhx/ag_news", None

    def read(self, path: Path) -> Split:
        return read_class_csv(path, 4, ("title", "description"))


class DBpedia(NamedTextDataset):
    """DBpedia ontology (Zhang et al. 2015): 14 classes, 560,000 / 70,000."""

    component_name = "dbpedia"
    title = "DBpedia"
    folders = ("dbpedia_csv", "dbpedia", "dbpedia_14", "dbpedia14")
    files = {"train": ("train.csv",), "test": ("test.csv",)}
    layout = _csv_layout(14, ("title", "content"))
    hub_text = ("title", "content")

    def class_names(self) -> list[str]:
        return [
            "Company", "EducationalInstitution", "Artist", "Athlete", "OfficeHolder",
            "MeanOfTransportation", "Building", "NaturalPlace", "Village", "Animal", "Plant",
            "Album", "Film", "WrittenWork",
        ]  # fmt: skip

    def hub_id(self) -> tuple[str, str | None]:
        return "fancyzhx/dbpedia_14", None

    def read(self, path: Path) -> Split:
        return read_class_csv(path, 14, ("title", "content"))


class YelpParams(NamedTextParams):
    variant: Literal["full", "polarity"] = Field(
        default="full", description="full: 1-5 stars (5 classes); polarity: negative/positive"
    )


class Yelp(NamedTextDataset):
    """Yelp reviews (Zhang et al. 2015): full (5 classes) or polarity (2)."""

    Params = YelpParams
    component_name = "yelp"
    title = "Yelp reviews"
    files = {"train": ("train.csv",), "test": ("test.csv",)}

    @property
    def polarity(self) -> bool:
        return bool(self.params.variant == "polarity")

    def folder_names(self) -> tuple[str, ...]:
        if self.polarity:
            return ("yelp_review_polarity_csv", "yelp_review_polarity", "yelp_polarity", "yelp")
        return ("yelp_review_full_csv", "yelp_review_full", "yelp_full", "yelp")

    def describe_layout(self) -> str:
        return _csv_layout(2 if self.polarity else 5, ("text",))

    def class_names(self) -> list[str]:
        if self.polarity:
            return ["negative", "positive"]
        return ["1 star", "2 stars", "3 stars", "4 stars", "5 stars"]

    def hub_id(self) -> tuple[str, str | None]:
        return ("fancyzhx/yelp_polarity" if self.polarity else "Yelp/yelp_review_full"), None

    def read(self, path: Path) -> Split:
        return read_class_csv(path, len(self.class_names()), ("text",))


class YelpPolarityParams(YelpParams):
    variant: Literal["full", "polarity"] = Field(
        default="polarity", description="full: 1-5 stars (5 classes); polarity: negative/positive"
    )


class YelpPolarity(Yelp):
    Params = YelpPolarityParams
    component_name = "yelp_polarity"


class SST5(NamedTextDataset):
    """Stanford Sentiment Treebank, sentence level, 5 classes (Socher et al. 2013). The
    original trees ``trees/{train,test}.txt`` (dev is not used)."""

    component_name = "sst5"
    title = "SST-5"
    folders = ("sst5", "sst", "sst-5", "trainDevTestTrees_PTB", "stanfordSentimentTreebank")
    files = {"train": ("trees/train.txt", "train.txt"), "test": ("trees/test.txt", "test.txt")}
    layout = "Penn Treebank trees, one sentence per line: (3 (2 It) (4 ...))"

    def class_names(self) -> list[str]:
        return ["very negative", "negative", "neutral", "positive", "very positive"]

    def hub_id(self) -> tuple[str, str | None]:
        return "SetFit/sst5", None

    def read(self, path: Path) -> Split:
        return read_sst_trees(path)


class TRECParams(NamedTextParams):
    labels: Literal["coarse", "fine"] = Field(
        default="coarse", description="coarse: the 6 question types; fine: the 50 subtypes"
    )


class TREC(NamedTextDataset):
    """TREC question classification (Li & Roth 2002): 6 coarse or 50 fine classes."""

    Params = TRECParams
    component_name = "trec"
    title = "TREC"
    folders = ("trec", "trec6", "trec50", "trec-6")
    files = {"train": ("train_5500.label",), "test": ("TREC_10.label",)}
    layout = "Latin-1 text, one 'COARSE:fine question' per line"

    @property
    def fine(self) -> bool:
        return bool(self.params.labels == "fine")

    def class_names(self) -> list[str]:
        return list(TREC_FINE if self.fine else TREC_COARSE)

    def hub_id(self) -> tuple[str, str | None]:
        return "CogComp/trec", None

    def hub_label_column(self) -> str:
        return "fine_label" if self.fine else "coarse_label"

    def read(self, path: Path) -> Split:
        return read_trec(path, self.fine)


class TREC50Params(TRECParams):
    labels: Literal["coarse", "fine"] = Field(
        default="fine", description="coarse: the 6 question types; fine: the 50 subtypes"
    )


class TREC50(TREC):
    Params = TREC50Params
    component_name = "trec50"


class IMDB(NamedTextDataset):
    """IMDB movie reviews (Maas et al. 2011): binary sentiment, 25,000 / 25,000."""

    component_name = "imdb"
    title = "IMDB"
    folders = ("aclImdb", "imdb", "aclImdb_v1")
    files = {"train": ("train",), "test": ("test",)}
    layout = "the aclImdb folder of the Large Movie Review Dataset v1.0, one review per file"

    def expected_files(self) -> str:
        return "aclImdb/train/{neg,pos}/*.txt and/or aclImdb/test/{neg,pos}/*.txt"

    def find_files(self, data_dir: Path) -> tuple[Path, dict[str, Path]] | None:
        for folder in candidate_dirs(data_dir, self.folder_names()):
            found = {s: folder / s for s in ("train", "test") if (folder / s / "neg").is_dir()}
            if found:
                return folder, found
        return None

    def class_names(self) -> list[str]:
        return ["neg", "pos"]

    def hub_id(self) -> tuple[str, str | None]:
        return "stanfordnlp/imdb", None

    def read(self, path: Path) -> Split:
        return imdb_split(path)


# -- the user's own texts ------------------------------------------------------------------

ColumnSpec = str | int


class TextFileParams(TextSplitParams):
    path: Path | list[Path] | None = Field(
        default=None, description="CSV, TSV, JSON Lines or Parquet file(s) with a text and a label column"
    )
    test_path: Path | list[Path] | None = Field(
        default=None, description="test file(s) in the same format; default: a stratified hold-out"
    )
    hub: str | None = Field(
        default=None, description="instead of path: a Hugging Face dataset id (or a local dataset folder)"
    )
    hub_config: str | None = Field(default=None, description="the hub dataset's configuration (subset)")
    revision: str | None = Field(default=None, description="hub dataset revision")
    split: str = Field(default="train", description="hub split used as the pool")
    test_split: str | None = Field(
        default="test", description="hub split used as the test set; none or absent: a hold-out"
    )
    text_column: ColumnSpec | list[ColumnSpec] | None = Field(
        default=None,
        description="text column name or 0-based position (a list is joined); default: text, "
        "sentence, review, content, ...",
    )
    label_column: ColumnSpec | None = Field(
        default=None, description="label column name or position; default: label, class, category, ..."
    )
    header: bool = Field(default=True, description="CSV/TSV: the first line names the columns")
    encoding: str = Field(default="utf-8", description="CSV/TSV/JSON Lines text encoding")
    classes: list[str] | None = Field(
        default=None, description="class names in order; labels outside them are an error"
    )
    name: str | None = Field(default=None, description="the dataset's name; default: the file's stem")

    @model_validator(mode="after")
    def _one_source(self) -> TextFileParams:
        if (self.path is None) == (self.hub is None):
            raise ValueError("give either path=<file> (CSV, TSV, JSON Lines, Parquet) or hub=<dataset id>")
        if self.hub is not None and self.test_path is not None:
            raise ValueError("test_path goes with path=, not with hub= (use test_split)")
        return self


def _as_list(value: Path | list[Path] | None) -> list[Path]:
    if value is None:
        return []
    return [Path(v).expanduser() for v in (value if isinstance(value, list) else [value])]


class TextFile(DatasetFactory):
    """The user's own labelled texts: table files or a hub dataset with a column mapping."""

    domain = "text"
    Params = TextFileParams
    component_name = "text"

    def _text_spec(self) -> list[ColumnSpec | None]:
        spec = self.params.text_column
        return list(spec) if isinstance(spec, list) else [spec]

    def _read_files(self, paths: list[Path]) -> tuple[list[str], list[Any], str]:
        p = self.params
        texts: list[str] = []
        labels: list[Any] = []
        for path in paths:
            table = read_table(path, p.header, p.encoding)
            where = str(path)
            if len(table) == 0:
                raise DataError(f"{path} holds no rows")
            columns = [
                find_column(table.columns, spec, "text", TEXT_COLUMN_NAMES, where)
                for spec in self._text_spec()
            ]
            label_col = find_column(table.columns, p.label_column, "label", LABEL_COLUMN_NAMES, where)
            if label_col in columns:
                raise DataError(f"{where}: the label column {label_col!r} is also a text column")
            texts.extend(join_columns([table[c].tolist() for c in columns], where))
            labels.extend(table[label_col].tolist())
        return texts, labels, " + ".join(map(str, paths))

    def load(self, ctx: LoadContext) -> ALDataset:
        p = self.params
        if p.hub is not None:
            return self._load_hub(ctx)
        pool_paths, test_paths = _as_list(p.path), _as_list(p.test_path)
        pool_texts, pool_raw, pool_where = self._read_files(pool_paths)
        parts = [(pool_raw, pool_where)]
        test_texts: list[str] = []
        if test_paths:
            test_texts, test_raw, test_where = self._read_files(test_paths)
            parts.append((test_raw, test_where))
        codes, classes = encode_labels(parts, p.classes)
        if len(classes) < 2:
            raise DataError(f"{pool_where}: the labels hold {len(classes)} class; at least 2 are needed")
        pool = Split.of(pool_texts, codes[0], pool_where)
        test = Split.of(test_texts, codes[1], parts[1][1]) if test_paths else None
        name = p.name or pool_paths[0].stem
        return build_text_dataset(name, classes, pool, test, p, ctx.seed)

    def _load_hub(self, ctx: LoadContext) -> ALDataset:
        p = self.params
        assert p.hub is not None
        try:
            loaded = load_hub_dataset(p.hub, p.hub_config, p.revision)
        except HubUnavailable as exc:
            reason = offline_reason() if hub_offline() else str(exc)
            raise DataError(
                f"hub dataset {p.hub!r} could not be loaded ({reason}); run once with a connection "
                f"(it is then cached), or export it to a file and use path=<file>"
            ) from None
        splits = list(loaded)
        if p.split not in loaded:
            raise DataError(f"hub dataset {p.hub!r} has no split {p.split!r} (splits: {', '.join(splits)})")
        test_name = p.test_split
        if test_name is not None and test_name not in loaded:
            if "test_split" in p.model_fields_set:
                raise DataError(
                    f"hub dataset {p.hub!r} has no split {test_name!r} (splits: {', '.join(splits)})"
                )
            test_name = None
        first = loaded[p.split]
        where = f"{p.hub}[{p.split}]"
        text_cols = [
            find_column(first.column_names, spec, "text", TEXT_COLUMN_NAMES, where)
            for spec in self._text_spec()
        ]
        label_col = find_column(first.column_names, p.label_column, "label", LABEL_COLUMN_NAMES, where)
        pool, classes = hub_split(first, text_cols, label_col, where, p.classes)
        test = None
        if test_name is not None:
            test, test_classes = hub_split(
                loaded[test_name], text_cols, label_col, f"{p.hub}[{test_name}]", classes
            )
            if test_classes != classes:
                raise DataError(
                    f"hub dataset {p.hub!r}: splits {p.split!r} and {test_name!r} have different classes"
                )
        name = p.name or p.hub.rstrip("/").split("/")[-1]
        return build_text_dataset(name, classes, pool, test, p, ctx.seed)
