"""The Hugging Face hub: is it reachable, and loading datasets from it (or its cache).

Without a connection the hub clients retry for about 25 s before they fall back to their
cache. :func:`hub_offline` answers once per process, from the offline switches
(``HF_HUB_OFFLINE``, ``HF_DATASETS_OFFLINE``, ``TRANSFORMERS_OFFLINE``) or a 3-second
connection probe, and :func:`offline_clients` makes the clients go straight to their
cache when the hub is unreachable.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from alscope.errors import DataError
from alscope_nlp.readers import Split, encode_labels, join_columns

_TRUE = {"1", "ON", "YES", "TRUE"}


def _env_offline() -> bool:
    return any(
        os.environ.get(var, "").upper() in _TRUE
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


@functools.lru_cache(maxsize=1)
def _probe_fails() -> bool:
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return False  # a proxy decides; let the clients try
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (443 if endpoint.scheme != "http" else 80)
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError:
        return True
    return False


def hub_offline() -> bool:
    """True when the hub is switched off or cannot be reached."""
    return _env_offline() or _probe_fails()


def offline_reason() -> str:
    if _env_offline():
        return "the hub is switched off (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set)"
    return "the Hugging Face hub cannot be reached from this machine"


@contextlib.contextmanager
def offline_clients() -> Iterator[None]:
    """Within the block, the hub clients read only their cache if the hub is unreachable."""
    if not hub_offline() or _env_offline():
        yield
        return
    import datasets.config
    import huggingface_hub.constants

    switches = [
        (module, name)
        for module in (huggingface_hub.constants, datasets.config)
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
        if hasattr(module, name)
    ]
    saved = [getattr(module, name) for module, name in switches]
    for module, name in switches:
        setattr(module, name, True)
    try:
        yield
    finally:
        for (module, name), value in zip(switches, saved, strict=True):
            setattr(module, name, value)


class HubUnavailable(Exception):
    """The dataset is neither reachable on the hub nor in the local cache."""


def load_hub_dataset(hub_id: str, config: str | None = None, revision: str | None = None) -> Any:
    """A ``DatasetDict`` from the hub (or its cache when offline), or from a local folder:
    one written by ``save_to_disk``, or one holding data files."""
    import datasets

    datasets.disable_progress_bars()
    local = Path(hub_id).expanduser()
    try:
        if local.is_dir() and ((local / "dataset_dict.json").is_file() or (local / "state.json").is_file()):
            loaded = datasets.load_from_disk(str(local))
        else:
            with offline_clients():
                loaded = datasets.load_dataset(hub_id, config, revision=revision)
    except (ConnectionError, FileNotFoundError) as exc:
        raise HubUnavailable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    except Exception as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if (
            "offline" in message.lower()
            or "couldn't reach" in message.lower()
            or "not found" in message.lower()
        ):
            raise HubUnavailable(message) from None
        raise DataError(f"hub dataset {hub_id!r} cannot be loaded: {type(exc).__name__}: {message}") from None
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


def class_names(split: Any, column: str) -> list[str] | None:
    """The names of a ``ClassLabel`` column, or None."""
    feature = split.features.get(column)
    names = getattr(feature, "names", None)
    return [str(n) for n in names] if names else None


def hub_split(
    split: Any,
    text_columns: list[str],
    label_column: str,
    where: str,
    classes: list[str] | None = None,
    positional: bool = False,
) -> tuple[Split, list[str]]:
    """One hub split as a :class:`Split` (texts fetched only for the rows kept).

    ``positional``: the label column holds ``0..len(classes)-1`` in the order of
    ``classes`` (the named datasets, whose class order is known). Otherwise labels are
    names or integers, mapped through the column's ``ClassLabel`` names when it has them.
    """
    missing = [c for c in [*text_columns, label_column] if c not in split.column_names]
    if missing:
        raise DataError(f"{where}: no column(s) {missing} (columns: {', '.join(split.column_names)})")
    names = class_names(split, label_column)
    raw = np.asarray(split.with_format("numpy")[label_column])
    if positional:
        assert classes is not None
        if raw.dtype.kind not in "iu" or (len(raw) and (raw.min() < 0 or raw.max() >= len(classes))):
            raise DataError(f"{where}: expected labels 0-{len(classes) - 1} in column {label_column!r}")
        labels, names_out = raw.astype(np.int64), list(classes)
        if names is not None and names != list(classes) and sorted(names) == sorted(classes):
            # the same class names in another order: map by name
            labels = np.array([classes.index(n) for n in names], dtype=np.int64)[labels]
    elif names is not None and (classes is None or list(classes) == names):
        if len(raw) and (raw.min() < 0 or raw.max() >= len(names)):
            raise DataError(f"{where}: label values outside 0-{len(names) - 1} in column {label_column!r}")
        labels, names_out = raw.astype(np.int64), names
    else:
        values = [names[int(v)] for v in raw] if names is not None else raw.tolist()
        (labels,), names_out = encode_labels([(values, where)], classes)

    def take(idx: np.ndarray) -> list[str]:
        rows = split.select(np.asarray(idx, dtype=np.int64))
        return join_columns([list(rows[c]) for c in text_columns], where)

    return Split(labels, take, where), names_out
