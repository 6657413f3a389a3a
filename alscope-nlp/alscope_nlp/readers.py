"""Readers of text datasets in their original distribution formats, and of the user's
own tables. Every reader validates as it goes and raises :class:`DataError` naming the
file, the row or line and what was expected; nothing is returned half-read.

A reader returns a :class:`Split`: the labels as an array, and a ``take`` function that
returns the texts of chosen rows. Datasets cap their pool on the labels first and read
only the texts they keep (IMDB's files, a hub dataset's rows).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alscope.errors import DataError


@dataclass
class Split:
    """One labelled split: ``labels`` (int64, ``0..K-1``) and ``take(indices) -> texts``."""

    labels: np.ndarray
    take: Callable[[np.ndarray], list[str]]
    where: str

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def of(cls, texts: Sequence[str], labels: Sequence[int] | np.ndarray, where: str) -> Split:
        texts = list(texts)
        return cls(
            np.asarray(labels, dtype=np.int64),
            lambda idx: [texts[i] for i in np.asarray(idx).tolist()],
            where,
        )


def _decode_error(path: Path, exc: UnicodeDecodeError, encoding: str) -> DataError:
    return DataError(
        f"{path} is not valid {encoding} text (byte {exc.object[exc.start : exc.start + 1]!r} at "
        f"offset {exc.start}); re-save it as UTF-8 or pass its encoding (e.g. encoding=latin-1)"
    )


def read_text_file(path: Path, encoding: str = "utf-8") -> str:
    """A whole text file, with clear errors for a missing, empty, binary or mis-encoded one."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path} cannot be read: {exc.strerror or exc}") from None
    if not raw.strip():
        raise DataError(f"{path} is empty")
    if b"\x00" in raw[:4096]:
        raise DataError(f"{path} holds NUL bytes: it looks like UTF-16 or a binary file, not {encoding} text")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise _decode_error(path, exc, encoding) from None


# -- Zhang et al. (2015) CSVs: AG News, Yelp, DBpedia -------------------------------------


def read_class_csv(path: Path, n_classes: int, fields: tuple[str, ...]) -> Split:
    """The character-level CNN benchmark CSVs (AG News, Yelp, DBpedia): no header, the
    class (``1..n_classes``) in the first column, then the text ``fields``, quoted with
    ``""`` escapes. The text is the non-empty fields joined by a space; Yelp's and DBpedia's
    escaped ``\\n`` become spaces."""
    import csv

    expected = 1 + len(fields)
    layout = ", ".join(("class", *fields))
    texts: list[str] = []
    labels: list[int] = []
    row = 0
    try:
        with path.open("r", encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle, strict=True)
            for row, record in enumerate(reader, 1):
                if not record:
                    continue
                if len(record) != expected:
                    raise DataError(
                        f"{path}: row {row} (line {reader.line_num}) has {len(record)} fields; expected "
                        f"{expected} columns ({layout}) without a header"
                    )
                code = record[0].strip()
                if not code.isdigit() or not 1 <= int(code) <= n_classes:
                    raise DataError(
                        f"{path}: row {row} has class {record[0]!r}; expected an integer in 1-{n_classes} "
                        f"(the first column of {layout}, no header)"
                    )
                text = " ".join(p for p in (f.replace("\\n", " ").strip() for f in record[1:]) if p)
                if not text:
                    raise DataError(f"{path}: row {row} has no text")
                texts.append(text)
                labels.append(int(code) - 1)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise _decode_error(path, exc, "utf-8") from None
    except csv.Error as exc:
        raise DataError(f"{path} is not a CSV of {layout} (row {row + 1}): {exc}") from None
    if not texts:
        raise DataError(f"{path} is empty; expected rows of {layout}")
    return Split.of(texts, labels, str(path))


# -- TREC (Li & Roth 2002) ----------------------------------------------------------------

TREC_COARSE = ["ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"]
TREC_FINE = [
    "ABBR:abb", "ABBR:exp", "ENTY:animal", "ENTY:body", "ENTY:color", "ENTY:cremat", "ENTY:currency",
    "ENTY:dismed", "ENTY:event", "ENTY:food", "ENTY:instru", "ENTY:lang", "ENTY:letter", "ENTY:other",
    "ENTY:plant", "ENTY:product", "ENTY:religion", "ENTY:sport", "ENTY:substance", "ENTY:symbol",
    "ENTY:techmeth", "ENTY:termeq", "ENTY:veh", "ENTY:word", "DESC:def", "DESC:desc", "DESC:manner",
    "DESC:reason", "HUM:gr", "HUM:ind", "HUM:title", "HUM:desc", "LOC:city", "LOC:country", "LOC:mount",
    "LOC:other", "LOC:state", "NUM:code", "NUM:count", "NUM:date", "NUM:dist", "NUM:money", "NUM:ord",
    "NUM:other", "NUM:period", "NUM:perc", "NUM:speed", "NUM:temp", "NUM:volsize", "NUM:weight",
]  # fmt: skip
_TREC_LINE = re.compile(r"^([A-Z]+):(\S+)\s+(\S.*?)\s*$")


def read_trec(path: Path, fine: bool) -> Split:
    """``train_5500.label`` / ``TREC_10.label``: Latin-1, one ``COARSE:fine question`` per line."""
    classes = TREC_FINE if fine else TREC_COARSE
    lookup = {c: i for i, c in enumerate(classes)}
    texts, labels = [], []
    for lineno, line in enumerate(read_text_file(path, "latin-1").splitlines(), 1):
        if not line.strip():
            continue
        match = _TREC_LINE.match(line)
        if match is None:
            raise DataError(f"{path}:{lineno}: expected 'COARSE:fine question', got {line[:60]!r}")
        coarse, sub, question = match.groups()
        label = f"{coarse}:{sub}" if fine else coarse
        if label not in lookup:
            kind = "fine" if fine else "coarse"
            raise DataError(
                f"{path}:{lineno}: unknown {kind} class {label!r} (TREC's {kind} classes: "
                f"{', '.join(classes[:8])}{', ...' if len(classes) > 8 else ''})"
            )
        texts.append(question)
        labels.append(lookup[label])
    if not texts:
        raise DataError(f"{path} holds no questions")
    return Split.of(texts, labels, str(path))


# -- SST-5: the Penn Treebank trees (trainDevTestTrees_PTB.zip) ------------------------------

_PTB_ESCAPES = {
    "-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}",
    "``": '"', "''": '"', "\\/": "/", "\\*": "*",
}  # fmt: skip
_LEAF = re.compile(r"\(\s*\d+\s+([^()\s]+)\s*\)")


def read_sst_trees(path: Path) -> Split:
    """``trees/{train,dev,test}.txt``: one sentence per line as a labelled tree
    ``(3 (2 It) (4 ...))``; the label is the root's (0 very negative .. 4 very positive)."""
    texts, labels = [], []
    for lineno, line in enumerate(read_text_file(path).splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        root = re.match(r"^\(\s*(\d+)\s", line)
        if root is None or line.count("(") != line.count(")"):
            raise DataError(
                f"{path}:{lineno}: expected a labelled tree like '(3 (2 It) ...)', got {line[:50]!r}"
            )
        label = int(root.group(1))
        if not 0 <= label <= 4:
            raise DataError(f"{path}:{lineno}: sentiment {label} is not in 0-4")
        words = [_PTB_ESCAPES.get(w, w) for w in _LEAF.findall(line)]
        if not words:
            raise DataError(f"{path}:{lineno}: the tree has no words")
        texts.append(" ".join(words))
        labels.append(label)
    if not texts:
        raise DataError(f"{path} holds no sentences")
    return Split.of(texts, labels, str(path))


# -- IMDB: aclImdb/{train,test}/{neg,pos}/*.txt -------------------------------------------


def imdb_split(folder: Path) -> Split:
    """One ``aclImdb`` split folder; the label is the folder (neg 0, pos 1). Files are read
    only for the rows a dataset keeps."""
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(("neg", "pos")):
        sub = folder / name
        found = sorted(sub.glob("*.txt")) if sub.is_dir() else []
        if not found:
            raise DataError(
                f"{sub} holds no review files (*.txt); expected aclImdb/{folder.name}/{name}/*.txt"
            )
        files.extend(found)
        labels.extend([label] * len(found))

    def take(idx: np.ndarray) -> list[str]:
        out = []
        for i in np.asarray(idx).tolist():
            text = read_text_file(files[i]).replace("<br />", " ").strip()
            out.append(text)
        return out

    return Split(np.asarray(labels, dtype=np.int64), take, str(folder))


# -- the user's own tables -------------------------------------------------------------------

TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".jsonl", ".ndjson", ".json", ".parquet", ".pq")
TEXT_COLUMN_NAMES = ("text", "sentence", "review", "content", "document", "question", "body", "comment")
LABEL_COLUMN_NAMES = ("label", "labels", "class", "category", "target", "sentiment", "y")


def read_table(path: Path, header: bool = True, encoding: str = "utf-8") -> Any:
    """A CSV, TSV, JSON Lines (or JSON records) or Parquet file as a DataFrame of strings
    and native values."""
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"{path}: unknown format {suffix!r} (accepted: {', '.join(TABLE_SUFFIXES)})")
    if not path.is_file():
        raise DataError(f"text file {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty")
    try:
        if suffix in (".csv", ".tsv", ".tab"):
            return pd.read_csv(
                path,
                sep="," if suffix == ".csv" else "\t",
                header=0 if header else None,
                dtype=str,
                keep_default_na=False,
                encoding=encoding,
            )
        if suffix in (".jsonl", ".ndjson", ".json"):
            text = read_text_file(path, encoding)
            import io

            if suffix == ".json" and text.lstrip().startswith("["):  # an array of records
                return pd.read_json(io.StringIO(text), orient="records", dtype=False)
            return pd.read_json(io.StringIO(text), lines=True, dtype=False)
        try:
            return pd.read_parquet(path)
        except ImportError as exc:
            raise DataError(
                f"reading {path} needs pyarrow: pip install 'alscope-nlp[parquet]' ({exc})"
            ) from None
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty") from None
    except UnicodeDecodeError as exc:
        raise _decode_error(path, exc, encoding) from None
    except LookupError as exc:
        raise DataError(f"{path}: unknown encoding {encoding!r} ({exc})") from None
    except Exception as exc:
        raise DataError(f"{path} cannot be read as {suffix[1:]}: {exc}") from None


def find_column(
    columns: Sequence[Any], spec: str | int | None, role: str, defaults: Sequence[str], where: str
) -> Any:
    """The column ``spec`` names (a name, or a 0-based position), or the first of
    ``defaults`` present (case-insensitively) when ``spec`` is None."""
    cols = list(columns)
    shown = ", ".join(map(str, cols))
    if spec is None:
        by_lower = {str(c).lower(): c for c in cols}
        for name in defaults:
            if name in by_lower:
                return by_lower[name]
        raise DataError(
            f"{where}: no {role} column found among ({shown}); "
            f"name it with {role}_column=<name or 0-based position>"
        )
    if spec in cols:
        return spec
    position = spec if isinstance(spec, int) else (int(spec) if str(spec).isdigit() else None)
    if position is not None:
        if 0 <= position < len(cols):
            return cols[position]
        raise DataError(f"{where}: {role}_column={spec!r} is out of range: the table has {len(cols)} columns")
    raise DataError(f"{where}: no {role} column {spec!r} (columns: {shown}); set {role}_column")


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def text_values(values: Sequence[Any], where: str, role: str = "text") -> list[str]:
    """Strings of a text column; a row without text is an error."""
    out = []
    bad = []
    for row, value in enumerate(values):
        if _missing(value):
            bad.append(row + 1)
            continue
        out.append(str(value))
    if bad:
        shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        raise DataError(f"{where}: {len(bad)} row(s) have no {role} (rows {shown})")
    return out


def join_columns(columns: Sequence[Sequence[Any]], where: str) -> list[str]:
    """Per row, the non-empty values of the text columns joined by a space; a row whose
    every text column is empty is an error."""
    if len(columns) == 1:
        return text_values(columns[0], where)
    out, bad = [], []
    for row, values in enumerate(zip(*columns, strict=True)):
        parts = [str(v).strip() for v in values if not _missing(v)]
        if not parts:
            bad.append(row + 1)
        out.append(" ".join(parts))
    if bad:
        shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        raise DataError(f"{where}: {len(bad)} row(s) have no text (rows {shown})")
    return out


def _label_key(value: Any) -> int | str:
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return int(value)
    text = str(value).strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else text


def encode_labels(
    parts: Sequence[tuple[Sequence[Any], str]], classes: Sequence[str] | None
) -> tuple[list[np.ndarray], list[str]]:
    """Integer codes for each part's labels (names or integers) and the class names.

    Without ``classes``: the classes are the sorted distinct labels of all parts (integers
    sort numerically). With ``classes``: labels are matched by name, or, when every label
    is an integer in ``0..len(classes)-1`` and none is a class name, by position; any
    other label is an error.
    """
    keyed: list[list[int | str]] = []
    for values, where in parts:
        keys = []
        for row, value in enumerate(values):
            if _missing(value):
                raise DataError(f"{where}: row {row + 1} has no label")
            keys.append(_label_key(value))
        keyed.append(keys)
    everything = [k for keys in keyed for k in keys]
    if classes is None:
        if all(isinstance(k, int) for k in everything):
            distinct: list[Any] = sorted(set(everything))
        else:
            distinct = sorted({str(k) for k in everything})
            keyed = [[str(k) for k in keys] for keys in keyed]
        names = [str(c) for c in distinct]
        lookup: dict[Any, int] = {c: i for i, c in enumerate(distinct)}
    else:
        names = [str(c) for c in classes]
        if len(set(names)) != len(names):
            raise DataError(f"classes={names} has duplicates")
        by_name = {n: i for i, n in enumerate(names)}
        if all(str(k) in by_name for k in everything):
            keyed = [[str(k) for k in keys] for keys in keyed]
            lookup = dict(by_name)
        elif all(isinstance(k, int) and 0 <= k < len(names) for k in everything):
            lookup = {i: i for i in range(len(names))}
        else:
            for keys, (_, where) in zip(keyed, parts, strict=True):
                for row, k in enumerate(keys):
                    if str(k) not in by_name:
                        raise DataError(
                            f"{where}: row {row + 1} has label {k!r}, which is not one of "
                            f"classes={names} (nor a position 0-{len(names) - 1} in it)"
                        )
            raise AssertionError("unreachable")  # pragma: no cover
    codes = [np.array([lookup[k] for k in keys], dtype=np.int64) for keys in keyed]
    return codes, names
