"""Batch files to annotate and the answer files that come back.

A batch file (CSV or JSON Lines) has one row per sample to label: ``id``, ``round``,
``score`` (the strategy's, where it scores samples), ``prediction`` and ``confidence``
(the model's), ``label`` (empty: the annotator's to fill) and, for texts, ``text``.

An answer file is any CSV or JSON Lines file with an ``id`` and a ``label`` column (a
filled-in batch file is one). A label is a class name, or ``skip`` / ``unsure`` to set the
sample aside; an empty label is no answer yet. Every row is checked before anything is
applied, and the whole file is refused, in one line, at its first problem.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alscope.engine.state import atomic_write
from alscope.errors import DataError

#: answers that set a sample aside instead of labeling it
SET_ASIDE = ("skip", "unsure")
BATCH_COLUMNS = ("id", "round", "score", "prediction", "confidence", "label")


@dataclass
class Answers:
    """A checked answer file: class indices by sample id, and the samples set aside."""

    labels: dict[str, int]
    set_aside: dict[str, str]
    blank: int

    def __len__(self) -> int:
        return len(self.labels) + len(self.set_aside)


def write_batch(path: Path, rows: list[dict[str, Any]]) -> None:
    """The batch to annotate, written atomically (a killed ``next`` leaves no half file)."""
    columns = [c for c in BATCH_COLUMNS if any(c in r for r in rows) or c in ("id", "round", "label")]
    columns += sorted({k for r in rows for k in r} - set(columns))
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        text = "".join(
            json.dumps({c: r.get(c, "") for c in columns}, ensure_ascii=False) + "\n" for r in rows
        )
    elif path.suffix.lower() == ".csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows({c: r.get(c, "") for c in columns} for r in rows)
        text = buffer.getvalue()
    else:
        raise DataError(f"{path}: a batch is written as .csv or .jsonl, not {path.suffix or '(no suffix)'!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text)


def _rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) pairs; a header or format problem fails with the file named."""
    if not path.is_file():
        raise DataError(f"{path}: no such answer file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {exc.start}); save the answers as UTF-8") from None
    if not text.strip():
        raise DataError(f"{path} is empty; it needs a header line with id and label, then one row per answer")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}, line {number}: not a JSON object ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}, line {number}: not a JSON object")
            rows.append((number, row))
        if not rows:
            raise DataError(f"{path} holds no answers")
        columns = set().union(*(r.keys() for _, r in rows))
    else:
        reader = csv.DictReader(io.StringIO(text))
        try:
            rows = [(number, row) for number, row in enumerate(reader, start=2)]
        except csv.Error as exc:
            raise DataError(f"{path}: not a CSV file ({exc})") from None
        columns = set(reader.fieldnames or [])
        if None in {k for _, r in rows for k in r}:
            bad = next(n for n, r in rows if None in r)
            raise DataError(f"{path}, line {bad}: more fields than the header names")
    missing = [c for c in ("id", "label") if c not in columns]
    if missing:
        raise DataError(
            f"{path}: the header has no {' and no '.join(missing)} column (it has "
            f"{', '.join(sorted(map(str, columns))) or 'nothing'}); an answer file needs id and label"
        )
    return rows


def read_answers(path: Path, known_ids: dict[str, int], classes: list[str]) -> Answers:
    """The answers of ``path``, checked against the pool's ids and the class names."""
    by_name = {c: k for k, c in enumerate(classes)}
    folded = {c.casefold(): k for k, c in enumerate(classes)}
    labels: dict[str, int] = {}
    aside: dict[str, str] = {}
    seen: dict[str, int] = {}
    blank = 0
    for number, row in _rows(path):
        sample = "" if row.get("id") is None else str(row["id"]).strip()
        answer = "" if row.get("label") is None else str(row["label"]).strip()
        if not sample:
            raise DataError(f"{path}, line {number}: no id")
        if sample not in known_ids:
            close = difflib.get_close_matches(sample, list(known_ids), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise DataError(
                f"{path}, line {number}: unknown id {sample!r}, not a sample of this project{hint}"
            )
        if sample in seen:
            raise DataError(f"{path}, lines {seen[sample]} and {number}: id {sample!r} is answered twice")
        seen[sample] = number
        if not answer:
            blank += 1
        elif answer.casefold() in SET_ASIDE:
            aside[sample] = answer.casefold()
        elif answer in by_name or answer.casefold() in folded:
            labels[sample] = by_name.get(answer, folded.get(answer.casefold(), -1))
        else:
            close = difflib.get_close_matches(answer, classes, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise DataError(
                f"{path}, line {number}: unknown class {answer!r} for id {sample!r}; classes: "
                f"{', '.join(classes)}, or skip / unsure{hint}"
            )
    return Answers(labels, aside, blank)
