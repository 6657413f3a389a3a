"""The named text datasets, read from small files written in each one's original format,
and their malformed variants: a clear DataError, never a traceback or half a dataset."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("alscope_nlp")

from alscope_nlp.datasets import IMDB, SST5, TREC, TREC50, AGNews, DBpedia, Yelp, YelpPolarity
from alscope_nlp.sources import TextSource
from nlp_helpers import topic_rows, write_class_csv

from alscope.data.base import LoadContext
from alscope.errors import ConfigError, DataError

pytestmark = pytest.mark.filterwarnings("ignore:.*have no sample in the pool")


def ctx(data_dir: Path, seed: int = 0) -> LoadContext:
    return LoadContext(data_dir, seed)


# -- AG News ---------------------------------------------------------------------------------


def test_agnews_from_a_subfolder_in_the_original_layout(agnews_dir: Path) -> None:
    ds = AGNews().load(ctx(agnews_dir))
    assert ds.name == "agnews" and ds.domain == "text"
    assert ds.classes == ["World", "Sports", "Business", "Sci/Tech"]
    assert isinstance(ds.pool, TextSource) and isinstance(ds.test, TextSource)
    assert (len(ds.pool), len(ds.test)) == (120, 40)
    assert ds.input_spec.kind == "tokens" and ds.default_backbone == "distilbert"
    rows = topic_rows(30, seed=1)
    # class 1-4 -> 0-3; the text is the title and the description
    assert ds.pool.labels.tolist() == [r[0] - 1 for r in rows]
    assert ds.pool.texts[0] == f"{rows[0][1]} {rows[0][2]}"
    assert np.bincount(ds.test.labels).tolist() == [10, 10, 10, 10]


def test_agnews_from_the_folder_itself_and_spelt_the_alscope_way(agnews_dir: Path, registry) -> None:
    ds = AGNews().load(ctx(agnews_dir / "ag_news"))
    assert len(ds.pool) == 120
    for spelling in ("AGNEWS", "AG_NEWS", "agnews", "nlp:agnews"):
        assert registry.resolve("dataset", spelling).name == "agnews"


def test_agnews_with_only_the_test_file_holds_out_a_stratified_seeded_test_set(tmp_path: Path) -> None:
    write_class_csv(tmp_path / "ag_news" / "test.csv", topic_rows(20, seed=3))
    with pytest.warns(UserWarning, match="only one labelled split.*25%"):
        ds = AGNews().load(ctx(tmp_path))
    assert (len(ds.pool), len(ds.test)) == (60, 20)
    assert np.bincount(ds.test.labels).tolist() == [5, 5, 5, 5]
    with pytest.warns(UserWarning):
        again = AGNews().load(ctx(tmp_path))
        other = AGNews().load(ctx(tmp_path, seed=1))
    assert again.test.texts == ds.test.texts
    assert other.test.texts != ds.test.texts


def test_pool_and_test_caps(agnews_dir: Path) -> None:
    ds = AGNews({"max_pool_size": 40, "max_test_size": 20}).load(ctx(agnews_dir))
    assert (len(ds.pool), len(ds.test)) == (40, 20)
    assert np.bincount(ds.pool.labels).tolist() == [10, 10, 10, 10]
    per_class = AGNews({"samples_per_class": 3}).load(ctx(agnews_dir))
    assert np.bincount(per_class.pool.labels).tolist() == [3, 3, 3, 3]
    with pytest.raises(ConfigError, match="max_pool_size"):
        AGNews({"max_pool_size": 0})


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'"1","only a title"\n"2","another"\n', r"row 1 \(line 1\) has 2 fields; expected 3 columns"),
        (b'"1","t","d"\n"5","t","d"\n', "row 2 has class '5'; expected an integer in 1-4"),
        (b'"World","t","d"\n', "row 1 has class 'World'"),
        (b"", "is empty"),
        (b'"1","caf\xe9","d"\n', "not valid utf-8"),
        (b'"1","t","d"\n"2","t"\n', "row 2 .* has 2 fields"),
        (b'"1","",""\n', "row 1 has no text"),
        (b'"1","t","d","extra"\n"2","t","d"\n', "row 1 .* has 4 fields"),
    ],
    ids=[
        "missing-column",
        "unknown-label",
        "named-label",
        "empty",
        "bad-encoding",
        "short-row",
        "no-text",
        "ragged",
    ],
)
def test_malformed_agnews_is_a_clear_error(tmp_path: Path, content: bytes, expected: str) -> None:
    folder = tmp_path / "ag_news"
    folder.mkdir()
    (folder / "train.csv").write_bytes(content)
    write_class_csv(folder / "test.csv", topic_rows(2))
    with pytest.raises(DataError, match=expected) as info:
        AGNews().load(ctx(tmp_path))
    assert "train.csv" in str(info.value) or "agnews" in str(info.value).lower()


def test_nothing_available_names_both_ways(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        AGNews().load(ctx(tmp_path))
    message = str(info.value)
    for part in ("fancyzhx/ag_news", "train.csv", "test.csv", "--data-dir", str(tmp_path), "ag_news/"):
        assert part in message
    with pytest.raises(DataError, match=r"no train\.csv"):
        AGNews({"source": "files"}).load(ctx(tmp_path))


def test_a_folder_of_another_dataset_is_not_taken(tmp_path: Path) -> None:
    # AG News files with their classes.txt (4 classes) directly in --data-dir: not DBpedia.
    write_class_csv(tmp_path / "train.csv", topic_rows(5))
    (tmp_path / "classes.txt").write_text("World\nSports\nBusiness\nSci/Tech\n")
    with pytest.raises(DataError, match="fancyzhx/dbpedia_14"):
        DBpedia().load(ctx(tmp_path))
    with pytest.warns(UserWarning, match="only one labelled split"):
        assert AGNews().load(ctx(tmp_path)).n_classes == 4


# -- DBpedia and Yelp ------------------------------------------------------------------------------


def test_dbpedia_csv(tmp_path: Path) -> None:
    rows = [(c, f"Title {c}", f"content about class {c} number {i}") for i in range(4) for c in range(1, 15)]
    write_class_csv(tmp_path / "dbpedia_csv" / "train.csv", rows)
    write_class_csv(tmp_path / "dbpedia_csv" / "test.csv", rows[:28])
    ds = DBpedia().load(ctx(tmp_path))
    assert ds.n_classes == 14 and ds.classes[0] == "Company" and ds.classes[-1] == "WrittenWork"
    assert ds.pool.texts[0] == "Title 1 content about class 1 number 0"
    assert len(ds.pool) == 56 and len(ds.test) == 28


def test_yelp_full_and_polarity(tmp_path: Path) -> None:
    full = [(1 + i % 5, f"review {i}\\nsecond line") for i in range(20)]
    write_class_csv(tmp_path / "yelp_review_full_csv" / "train.csv", full)
    write_class_csv(tmp_path / "yelp_review_full_csv" / "test.csv", full[:10])
    polar = [(1 + i % 2, f"review {i}") for i in range(12)]
    write_class_csv(tmp_path / "yelp_review_polarity_csv" / "train.csv", polar)
    write_class_csv(tmp_path / "yelp_review_polarity_csv" / "test.csv", polar[:6])
    ds = Yelp().load(ctx(tmp_path))
    assert ds.classes == ["1 star", "2 stars", "3 stars", "4 stars", "5 stars"]
    assert ds.pool.texts[0] == "review 0 second line"  # the escaped newline
    assert Yelp({"variant": "polarity"}).load(ctx(tmp_path)).classes == ["negative", "positive"]
    assert YelpPolarity().load(ctx(tmp_path)).n_classes == 2
    # a 5-class file asked for as polarity: class 3 is out of range
    write_class_csv(tmp_path / "only" / "yelp" / "train.csv", full)
    with pytest.raises(DataError, match="class '3'; expected an integer in 1-2"):
        Yelp({"variant": "polarity"}).load(ctx(tmp_path / "only"))


# -- TREC ------------------------------------------------------------------------------------------

TREC_LINES = [
    "NUM:dist How far is it from Denver to Aspen ?",
    "LOC:city What county is Modesto , California in ?",
    "HUM:desc Who was Galileo ?",
    "DESC:def What is an atom ?",
    "ENTY:animal What is the fastest animal ?",
    "ABBR:exp What does NASA stand for ?",
    "HUM:ind Who wrote Les Mis\xe9rables ?",
    "NUM:date When did the war end ?",
]


def write_trec(path: Path, lines: list[str], encoding: str = "latin-1") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def test_trec_coarse_and_fine_from_latin1_files(tmp_path: Path, registry) -> None:
    write_trec(tmp_path / "trec" / "train_5500.label", TREC_LINES * 3)
    write_trec(tmp_path / "trec" / "TREC_10.label", TREC_LINES)
    ds = TREC().load(ctx(tmp_path))
    assert ds.classes == ["ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"]
    assert (len(ds.pool), len(ds.test)) == (24, 8)
    assert ds.test.texts[6] == "Who wrote Les Misérables ?"
    assert ds.test.labels.tolist() == [5, 4, 3, 2, 1, 0, 3, 5]
    fine = TREC({"labels": "fine"}).load(ctx(tmp_path))
    assert fine.n_classes == 50 and fine.classes[fine.test.labels[0]] == "NUM:dist"
    assert TREC50().load(ctx(tmp_path)).n_classes == 50
    assert registry.resolve("dataset", "TREC").name == "trec"


@pytest.mark.parametrize(
    ("lines", "encoding", "expected"),
    [
        (
            ["NUM:dist How far ?", "not a labelled question"],
            "latin-1",
            r"TREC_10.label:2: expected 'COARSE:fine",
        ),
        (["XYZ:foo What is this ?"], "latin-1", "unknown coarse class 'XYZ'"),
        (["NUM:dist How far ?"], "utf-16", "NUL bytes"),
        ([""], "latin-1", "is empty"),
    ],
    ids=["malformed-line", "unknown-label", "utf16", "empty"],
)
def test_malformed_trec(tmp_path: Path, lines: list[str], encoding: str, expected: str) -> None:
    write_trec(tmp_path / "train_5500.label", TREC_LINES * 2)
    write_trec(tmp_path / "TREC_10.label", lines, encoding)
    with pytest.raises(DataError, match=expected):
        TREC().load(ctx(tmp_path))


def test_trec_unknown_fine_label(tmp_path: Path) -> None:
    write_trec(tmp_path / "TREC_10.label", [*TREC_LINES, "NUM:weird What ?"])
    with pytest.raises(DataError, match=r"TREC_10\.label:9: unknown fine class 'NUM:weird'"):
        TREC50().load(ctx(tmp_path))


# -- SST-5 -----------------------------------------------------------------------------------------


def test_sst5_from_ptb_trees(tmp_path: Path) -> None:
    trees = [
        "(3 (2 It) (4 (2 's) (4 (2 a) (4 (3 lovely) (2 film))) (3 (2 with) (4 lovely))) (2 .))",
        "(0 (1 (1 (2 -LRB-) (1 awful)) (2 -RRB-)) (0 mess))",
        "(2 (2 A) (2 film))",
        "(1 (1 Not) (2 good))",
        "(4 (4 Brilliant) (2 !))",
    ]
    folder = tmp_path / "trainDevTestTrees_PTB" / "trees"
    folder.mkdir(parents=True)
    (folder / "train.txt").write_text("\n".join(trees * 2) + "\n", encoding="utf-8")
    (folder / "test.txt").write_text("\n".join(trees) + "\n", encoding="utf-8")
    ds = SST5().load(ctx(tmp_path))
    assert ds.n_classes == 5 and ds.classes[0] == "very negative"
    assert ds.test.labels.tolist() == [3, 0, 2, 1, 4]
    assert ds.test.texts[0] == "It 's a lovely film with lovely ."
    assert ds.test.texts[1] == "( awful ) mess"
    (folder / "test.txt").write_text("(3 (2 unbalanced) (2 tree)\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"test\.txt:1: expected a labelled tree"):
        SST5().load(ctx(tmp_path))
    (folder / "test.txt").write_text("(7 (2 bad) (2 label))\n", encoding="utf-8")
    with pytest.raises(DataError, match="sentiment 7 is not in 0-4"):
        SST5().load(ctx(tmp_path))


# -- IMDB ------------------------------------------------------------------------------------------


def write_imdb(root: Path, n: int = 6) -> Path:
    for split in ("train", "test"):
        for label in ("neg", "pos"):
            folder = root / "aclImdb" / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                word = "terrible" if label == "neg" else "wonderful"
                (folder / f"{i}_{3 if label == 'neg' else 8}.txt").write_text(
                    f"A {word} movie number {i}.<br /><br />Really {word}.", encoding="utf-8"
                )
    return root


def test_imdb_reads_only_the_reviews_it_keeps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_imdb(tmp_path)
    ds = IMDB().load(ctx(tmp_path))
    assert ds.classes == ["neg", "pos"] and (len(ds.pool), len(ds.test)) == (12, 12)
    assert ds.pool.texts[0] == "A terrible movie number 0.  Really terrible."
    assert ds.pool.labels.tolist() == [0] * 6 + [1] * 6
    import alscope_nlp.readers as readers

    reads: list[Path] = []
    original = readers.read_text_file
    monkeypatch.setattr(readers, "read_text_file", lambda p, e="utf-8": reads.append(p) or original(p, e))
    capped = IMDB({"max_pool_size": 4, "max_test_size": 2}).load(ctx(tmp_path))
    assert len(capped.pool) == 4 and len(reads) == 6


def test_malformed_imdb(tmp_path: Path) -> None:
    write_imdb(tmp_path, n=2)
    (tmp_path / "aclImdb" / "test" / "pos" / "9_9.txt").write_bytes(b"caf\xe9 latin-1 review")
    with pytest.raises(DataError, match=r"9_9.txt is not valid utf-8"):
        IMDB().load(ctx(tmp_path))
    for f in (tmp_path / "aclImdb" / "test" / "pos").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"pos holds no review files"):
        IMDB().load(ctx(tmp_path))


# -- the hub path, with a local folder standing in for the hub ------------------------------------------


def test_named_dataset_through_load_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    hub = tmp_path / "hub"
    hub.mkdir()
    rows = topic_rows(5)
    frame = pd.DataFrame({"text": [f"{t} {d}" for _, t, d in rows], "label": [c - 1 for c, _, _ in rows]})
    frame.to_parquet(hub / "train.parquet")
    frame.iloc[:8].to_parquet(hub / "test.parquet")
    monkeypatch.setattr(AGNews, "hub_id", lambda self: (str(hub), None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = AGNews().load(ctx(tmp_path / "empty"))
    assert (len(ds.pool), len(ds.test)) == (20, 8)
    assert ds.pool.texts == frame["text"].tolist() and ds.pool.labels.tolist() == frame["label"].tolist()
    frame.assign(label=frame["label"] + 7).to_parquet(hub / "train.parquet")
    with pytest.raises(DataError, match="expected labels 0-3"):
        AGNews({"source": "hub"}).load(ctx(tmp_path))


def test_hub_class_names_in_another_order_are_mapped_by_name() -> None:
    import datasets
    from alscope_nlp.hub import hub_split

    names = ["Sports", "World", "Sci/Tech", "Business"]  # the hub's order
    split = datasets.Dataset.from_dict(
        {"text": ["a", "b", "c", "d"], "label": [0, 1, 2, 3]},
        features=datasets.Features(
            {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)}
        ),
    )
    ours = ["World", "Sports", "Business", "Sci/Tech"]
    got, classes = hub_split(split, ["text"], "label", "hub[train]", ours, positional=True)
    assert classes == ours and [ours[i] for i in got.labels] == names
    assert got.take(np.array([2, 0])) == ["c", "a"]
