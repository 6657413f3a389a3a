"""``--dataset text``: the user's own CSV, TSV, JSON Lines or Parquet files, or a hub
dataset with a column mapping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("alscope_nlp")

from alscope_nlp.datasets import TextFile

from alscope.data.base import LoadContext
from alscope.errors import ConfigError, DataError

pytestmark = pytest.mark.filterwarnings("ignore:.*only one labelled split")

SENTENCES = {
    "sports": ["the team won the cup", "a great goal in the final", "the coach and the player"],
    "business": ["the stock price fell", "bank profit rose", "oil trade and the market"],
    "science": ["research in space", "new software for the phone", "internet data and science"],
}


def frame(copies: int = 4) -> pd.DataFrame:
    rows = [(f"{s} {i}", label) for i in range(copies) for label, ss in SENTENCES.items() for s in ss]
    return pd.DataFrame(rows, columns=["text", "label"])


def load(tmp_path: Path, seed: int = 0, **params):
    return TextFile(params).load(LoadContext(tmp_path, seed))


def test_csv_with_label_names_and_a_hold_out(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    frame().to_csv(path, index=False)
    with pytest.warns(UserWarning, match="only one labelled split"):
        ds = load(tmp_path, path=str(path))
    assert ds.name == "mine" and ds.domain == "text"
    assert ds.classes == ["business", "science", "sports"]
    assert len(ds.pool) + len(ds.test) == 36 and len(ds.test) == 9
    assert np.bincount(ds.test.labels).tolist() == [3, 3, 3]
    for text, label in zip(ds.pool.texts, ds.pool.labels, strict=True):
        assert text.rsplit(" ", 1)[0] in SENTENCES[ds.classes[label]]


@pytest.mark.parametrize("suffix", [".tsv", ".jsonl", ".parquet", ".json"])
def test_other_formats_with_integer_labels_and_a_test_file(tmp_path: Path, suffix: str) -> None:
    data = frame().assign(label=lambda f: f["label"].map({"business": 0, "science": 1, "sports": 2}))
    data = data.rename(columns={"text": "sentence", "label": "category"})
    paths = [tmp_path / f"train{suffix}", tmp_path / f"test{suffix}"]
    for path, part in zip(paths, (data, data.iloc[:9]), strict=True):
        if suffix == ".tsv":
            part.to_csv(path, sep="\t", index=False)
        elif suffix == ".jsonl":
            part.to_json(path, orient="records", lines=True)
        elif suffix == ".json":
            path.write_text(json.dumps(part.to_dict(orient="records")))
        else:
            part.to_parquet(path)
    ds = load(tmp_path, path=str(paths[0]), test_path=str(paths[1]))  # columns found by name
    assert ds.classes == ["0", "1", "2"] and (len(ds.pool), len(ds.test)) == (36, 9)
    assert ds.pool.texts[0] == data["sentence"][0] and ds.pool.labels.tolist() == data["category"].tolist()


def test_columns_by_position_without_header_joined_and_named_classes(tmp_path: Path) -> None:
    path = tmp_path / "noheader.csv"
    rows = frame().assign(title="Title")[["label", "title", "text"]]
    rows.to_csv(path, index=False, header=False)
    ds = load(
        tmp_path,
        path=str(path),
        header=False,
        text_column=[1, 2],
        label_column=0,
        classes=["sports", "business", "science"],
        test_fraction=0.5,
    )
    assert ds.classes == ["sports", "business", "science"]
    assert ds.pool.texts[0].startswith("Title ")
    assert sorted(set(ds.pool.labels.tolist())) == [0, 1, 2]
    # integer labels given with class names: positions in the list
    ints = tmp_path / "ints.csv"
    frame().assign(label=lambda f: f["label"].map({"sports": 0, "business": 1, "science": 2})).to_csv(
        ints, index=False
    )
    named = load(tmp_path, path=str(ints), classes=["sports", "business", "science"])
    texts = named.pool.texts + named.test.texts
    labels = np.concatenate([named.pool.labels, named.test.labels])
    assert named.classes[labels[texts.index("the stock price fell 0")]] == "business"


def test_several_files_are_one_pool(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    frame(2).to_csv(a, index=False)
    frame(2).to_csv(b, index=False)
    ds = load(tmp_path, path=[str(a), str(b)], test_fraction=0.5)
    assert len(ds.pool) + len(ds.test) == 36


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("name", "content", "params", "expected"),
    [
        ("x.csv", b"words,stars\na,1\nb,2\n", {}, r"no text column found among \(words, stars\)"),
        ("x.csv", b"text,stars\na,1\nb,2\n", {}, "no label column found among"),
        (
            "x.csv",
            b"text,label\na,1\n",
            {"label_column": "y"},
            "no label column 'y' \\(columns: text, label\\)",
        ),
        ("x.csv", b"text,label\na,1\n", {"text_column": 5}, "text_column=5 is out of range"),
        ("x.csv", b"", {}, "is empty"),
        ("x.csv", b"text,label\n", {}, "holds no rows"),
        ("x.csv", b"text,label\ncaf\xe9,1\nb,2\n", {}, "not valid utf-8.*encoding=latin-1"),
        ("x.csv", b"text,label\n,1\nb,2\n", {}, r"1 row\(s\) have no text \(rows 1\)"),
        ("x.csv", b"text,label\na,\nb,2\n", {}, "row 1 has no label"),
        ("x.csv", b"text,label\na,pos\nb,neutral\n", {"classes": ["neg", "pos"]}, "label 'neutral'"),
        ("x.csv", b"text,label\na,1\nb,1\n", {}, "1 class; at least 2"),
        ("x.jsonl", b'{"text": "a", "label": 1}\nnot json\n', {}, "cannot be read as jsonl"),
        ("x.parquet", b"not parquet", {}, "cannot be read as parquet"),
        ("x.xlsx", b"", {}, "unknown format '.xlsx'"),
    ],
    ids=[
        "no-text-col",
        "no-label-col",
        "named-missing",
        "position-out",
        "empty",
        "header-only",
        "bad-encoding",
        "missing-text",
        "missing-label",
        "unknown-label",
        "one-class",
        "bad-jsonl",
        "bad-parquet",
        "unknown-format",
    ],
)
def test_malformed_text_files(tmp_path: Path, name: str, content: bytes, params: dict, expected: str) -> None:
    path = write(tmp_path, name, content)
    with pytest.raises(DataError, match=expected):
        load(tmp_path, path=str(path), **params)


def test_latin1_file_with_its_encoding(tmp_path: Path) -> None:
    path = write(tmp_path, "x.csv", "text,label\ncafé au lait,a\nthé,b\nbière,a\nvin,b\n".encode("latin-1"))
    ds = load(tmp_path, path=str(path), encoding="latin-1", test_fraction=0.5)
    assert "café au lait" in ds.pool.texts + ds.test.texts


def test_parameter_errors_come_before_loading(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"either path=<file>.*or hub=<dataset id>"):
        TextFile({})
    with pytest.raises(ConfigError, match="test_path goes with path="):
        TextFile({"hub": "x/y", "test_path": "t.csv"})
    with pytest.raises(DataError, match="does not exist"):
        load(tmp_path, path=str(tmp_path / "missing.csv"))


def test_hub_dataset_with_a_column_mapping(tmp_path: Path) -> None:
    import datasets

    data = frame().rename(columns={"text": "utterance", "label": "intent"})
    features = datasets.Features(
        {
            "utterance": datasets.Value("string"),
            "intent": datasets.ClassLabel(names=["business", "science", "sports"]),
        }
    )
    split = datasets.Dataset.from_pandas(data, features=features, preserve_index=False)
    datasets.DatasetDict({"train": split, "validation": split.select(range(9))}).save_to_disk(
        tmp_path / "hubset"
    )
    ds = load(
        tmp_path,
        hub=str(tmp_path / "hubset"),
        text_column="utterance",
        label_column="intent",
        test_split="validation",
    )
    assert ds.classes == ["business", "science", "sports"]
    assert (len(ds.pool), len(ds.test)) == (36, 9)
    assert ds.pool.texts[0] == data["utterance"][0]
    assert ds.classes[ds.pool.labels[0]] == data["intent"][0]
    with pytest.warns(UserWarning, match="only one labelled split"):
        held = load(tmp_path, hub=str(tmp_path / "hubset"), text_column="utterance", label_column="intent")
    assert len(held.test) == 9
    with pytest.raises(DataError, match="no split 'dev'"):
        load(tmp_path, hub=str(tmp_path / "hubset"), text_column="utterance", test_split="dev")
    with pytest.raises(DataError, match=r"could not be loaded.*path=<file>"):
        load(tmp_path, hub="nobody/no-such-dataset-here")
