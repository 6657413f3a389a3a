"""The user's own unlabeled data for a labelling project: a table of texts (CSV, TSV,
JSON Lines, Parquet) or of feature columns, or a NumPy feature file.

Every sample has a stable id: the id column's value, or the row number (from 1) in the
file. The file's SHA-256 is kept with the project, so a file changed after ``init`` (ids
that would point at other samples) is refused.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from alscope.errors import ConfigError, DataError

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
ARRAY_SUFFIXES = {".npy"}
#: columns taken as the text when none is named, in this order
TEXT_COLUMNS = ("text", "sentence", "review", "content", "document", "body", "question", "title")
ID_COLUMNS = ("id", "sample_id", "uid", "guid")
LABEL_COLUMNS = ("label", "labels", "class", "category", "target")

Kind = Literal["text", "features", "images"]


@dataclass
class UserData:
    """The pool: ids, inputs (texts or a float32 matrix), the labels the file already holds
    (class names, ``None`` where unlabeled) and what kind of data it is."""

    ids: list[str]
    kind: Kind
    texts: list[str] | None
    features: np.ndarray | None
    given_labels: list[str | None]
    #: images: the files, aligned with ``ids`` (their paths relative to the folder)
    paths: list[str] | None = None

    def __len__(self) -> int:
        return len(self.ids)


def fingerprint(path: Path) -> str:
    """The file's SHA-256; for a folder of images, that of its file names and sizes."""
    digest = hashlib.sha256()
    if path.is_dir():
        for name in _image_files(path):
            digest.update(f"{name}\0{(path / name).stat().st_size}\n".encode())
        return digest.hexdigest()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_table(path: Path, encoding: str = "utf-8") -> Any:
    import pandas as pd

    fmt = TABLE_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        accepted = ", ".join(sorted({*TABLE_SUFFIXES, *ARRAY_SUFFIXES}))
        raise DataError(f"{path}: unknown file type {path.suffix or '(none)'!r}; accepted: {accepted}")
    try:
        if fmt in ("csv", "tsv"):
            return pd.read_csv(
                path, sep="\t" if fmt == "tsv" else ",", dtype=str, keep_default_na=False, encoding=encoding
            )
        if fmt == "jsonl":
            return pd.read_json(path, lines=True, dtype=False, encoding=encoding)
        return pd.read_parquet(path)
    except UnicodeDecodeError:
        raise DataError(f"{path} is not {encoding} text; save it as UTF-8") from None
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as exc:
        raise DataError(f"{path} could not be read as {fmt}: {str(exc).splitlines()[0]}") from None


def _pick(
    columns: list[str], named: str | None, defaults: tuple[str, ...], what: str, where: Path
) -> str | None:
    if named is not None:
        if named not in columns:
            raise ConfigError(f"{where} has no {what} column {named!r}; its columns: {', '.join(columns)}")
        return named
    lowered = {c.lower(): c for c in columns}
    return next((lowered[d] for d in defaults if d in lowered), None)


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _image_files(folder: Path) -> list[str]:
    """The images below ``folder`` as alscope-cv's ImageFolder finds them, relative to it."""
    try:
        from alscope_cv.datasets.folders import sorted_images
    except ImportError:
        raise ConfigError(
            f"{folder} is a folder of images, which needs the image plugin: pip install alscope-cv"
        ) from None
    return [Path(found).relative_to(folder).as_posix() for found in sorted_images(folder)]


def read_image_folder(folder: Path, classes: list[str] | None) -> UserData:
    """A folder of images: ids are their paths relative to it; an image inside a
    subfolder named like a class is labeled with that class, every other one unlabeled."""
    files = _image_files(folder)
    if not files:
        raise DataError(f"{folder} holds no images (JPEG, PNG, BMP, GIF, WebP, TIFF, PPM/PGM)")
    names = set(classes or [])
    given: list[str | None] = []
    for name in files:
        top = name.split("/", 1)[0] if "/" in name else None
        given.append(top if top in names else None)
    return UserData(files, "images", None, None, given, [str(folder / name) for name in files])


def read_user_data(
    path: Path,
    *,
    kind: Literal["auto", "text", "features", "images"] = "auto",
    classes: list[str] | None = None,
    id_column: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    encoding: str = "utf-8",
) -> UserData:
    """Read the pool; ``kind`` ``auto`` takes a folder as images, a table with a text
    column as texts and an all-numeric one (or a ``.npy``) as features."""
    if path.is_dir():
        if kind not in ("auto", "images"):
            raise ConfigError(f"{path} is a folder: it is read as images, not as {kind}")
        return read_image_folder(path, classes)
    if kind == "images":
        raise ConfigError(f"{path} is a file; images are read from a folder")
    if not path.is_file():
        raise DataError(f"{path} is not a file or a folder of images")
    if path.suffix.lower() in ARRAY_SUFFIXES:
        if kind == "text":
            raise ConfigError(f"{path} is a NumPy array, not a table of texts")
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise DataError(f"{path} could not be read as a NumPy array: {exc}") from None
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
            raise DataError(
                f"{path} holds a {array.dtype} array of shape {array.shape}; features are (n, d) numbers"
            )
        ids = [str(i + 1) for i in range(len(array))]
        return UserData(ids, "features", None, array.astype(np.float32), [None] * len(array))
    table = read_table(path, encoding)
    if len(table) == 0:
        raise DataError(f"{path} holds no rows")
    columns = [str(c) for c in table.columns]
    table.columns = columns
    id_col = _pick(columns, id_column, ID_COLUMNS, "id", path)
    label_col = _pick(columns, label_column, LABEL_COLUMNS, "label", path)
    text_col = _pick(columns, text_column, TEXT_COLUMNS if kind != "features" else (), "text", path)
    if kind == "text" and text_col is None:
        raise ConfigError(
            f"{path} has no text column ({', '.join(TEXT_COLUMNS)}); name it with --text-column "
            f"(its columns: {', '.join(columns)})"
        )
    if id_col is not None:
        ids = [str(v).strip() for v in table[id_col].tolist()]
        empty = [k + 2 for k, v in enumerate(ids) if not v]
        if empty:
            raise DataError(f"{path}: the id column {id_col!r} is empty on line(s) {empty[:5]}")
        seen: dict[str, int] = {}
        for k, v in enumerate(ids):
            if v in seen:
                raise DataError(
                    f"{path}: id {v!r} appears twice (rows {seen[v] + 1} and {k + 1}); ids must be unique"
                )
            seen[v] = k
    else:
        ids = [str(i + 1) for i in range(len(table))]
    given: list[str | None] = (
        [_text(v) for v in table[label_col].tolist()] if label_col is not None else [None] * len(table)
    )
    if text_col is not None:
        texts = ["" if v is None else str(v) for v in table[text_col].tolist()]
        blank = [k + 1 for k, t in enumerate(texts) if not t.strip()]
        if blank:
            raise DataError(f"{path}: row(s) {blank[:5]} have no text in column {text_col!r}")
        return UserData(ids, "text", texts, None, given)
    feature_cols = [c for c in columns if c not in (id_col, label_col)]
    if not feature_cols:
        raise DataError(f"{path} has no feature columns besides the id and the label")
    try:
        features = table[feature_cols].astype(np.float32).to_numpy()
    except ValueError:
        raise DataError(
            f"{path}: the columns {', '.join(feature_cols[:5])} are not all numbers; a table of texts "
            f"needs a text column ({', '.join(TEXT_COLUMNS)}) or --text-column"
        ) from None
    if not np.isfinite(features).all():
        rows = np.flatnonzero(~np.isfinite(features).all(axis=1))[:5] + 1
        raise DataError(f"{path}: row(s) {rows.tolist()} hold a missing or infinite feature")
    return UserData(ids, "features", None, features, given)
