"""On-disk caches of token ids and frozen-encoder embeddings.

Entries are ``.npz`` files named by a SHA-256 key over everything that determines their
content. Token ids: one entry per dataset's texts, tokenizer and ``max_length``.
Embeddings: one store per model, revision, ``max_length``, pooling and layers, addressed
by each text's digest, so another seed's split, another cap or another dataset reuses
every text already embedded and only new texts are computed.

Entries are written to a temporary file in the same folder and renamed into place, so
concurrent runs never see a half-written entry (the last writer wins; texts it did not
know are recomputed when next needed). An entry that cannot be read is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1


def fingerprint_texts(*groups: Sequence[str]) -> str:
    """SHA-256 over the texts of each group, in order (group sizes included)."""
    digest = hashlib.sha256()
    for group in groups:
        digest.update(f"[{len(group)}]".encode())
        for text in group:
            digest.update(text.encode("utf-8", "surrogatepass"))
            digest.update(b"\x00")
    return digest.hexdigest()


def text_hashes(texts: Sequence[str]) -> np.ndarray:
    """A 16-byte BLAKE2b digest per text (dtype ``S16``): the address of its embedding."""
    return np.array(
        [hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).digest() for t in texts],
        dtype="S16",
    )


def cache_key(**parts: Any) -> str:
    payload = json.dumps({"v": FORMAT_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def entry_path(cache_dir: Path, kind: str, label: str, key: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in label)[:60]
    return Path(cache_dir) / "alscope-nlp" / kind / f"{safe}-{key}.npz"


def load_entry(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray] | None:
    """The arrays of an entry, or None when it is absent or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if any(k not in data for k in keys):
                return None
            return {k: np.asarray(data[k]) for k in keys}
    except Exception:
        return None


def save_entry(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an entry atomically (temporary file + rename). A cache that cannot be written
    (read-only folder, full disk) costs only the reuse, so errors are swallowed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a shared cache is readable by others
        os.replace(tmp, path)
    except OSError:
        pass
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
