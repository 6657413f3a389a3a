"""Finding dataset files on disk, checking them, and downloading them when allowed.

Every dataset looks in a short list of folders under ``--data-dir`` (torchvision's own
layout first, then a lower-case folder named after the dataset, then ``--data-dir``
itself), checks the MD5 sums torchvision (or the dataset's authors) publish where they
exist, and downloads only when the run allows it (``--download``). Every problem is a
:class:`~alscope.errors.DataError` that names the files and says how to get them.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from alscope.errors import DataError


class DatasetNote(UserWarning):
    """Something the user should know about how a dataset was read (one line)."""


def note(message: str) -> None:
    warnings.warn(message, DatasetNote, stacklevel=3)


@dataclass(frozen=True)
class Need:
    """One file a dataset needs.

    Attributes:
        label: how messages name it, e.g. ``t10k-images-idx3-ubyte(.gz)``.
        names: accepted file names, the preferred first (an uncompressed copy reads faster).
        md5: known checksums per file name (several where a file was republished).
    """

    label: str
    names: tuple[str, ...]
    md5: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def one(cls, name: str, md5: str | Sequence[str] | None = None) -> Need:
        sums = () if md5 is None else ((md5,) if isinstance(md5, str) else tuple(md5))
        return cls(name, (name,), {name: sums} if sums else {})

    @classmethod
    def gz(cls, name: str, gz_md5: str | None = None) -> Need:
        """A file that may be present uncompressed (``name``) or gzip-compressed (``name.gz``)."""
        return cls(f"{name}(.gz)", (name, f"{name}.gz"), {f"{name}.gz": (gz_md5,)} if gz_md5 else {})

    def find(self, dirs: Iterable[Path]) -> Path | None:
        for folder in dirs:
            for name in self.names:
                path = folder / name
                if path.is_file():
                    return path
        return None


def search_dirs(data_dir: Path, *subdirs: str) -> list[Path]:
    """``data_dir/sub`` for each sub, then ``data_dir`` itself, without repeats."""
    base = Path(data_dir).expanduser()
    out: list[Path] = []
    for sub in (*subdirs, ""):
        candidate = base / sub if sub else base
        if candidate not in out:
            out.append(candidate)
    return out


def md5_of(path: Path, chunk: int = 1 << 20) -> str:
    """MD5 of a file, read in chunks (what torchvision's ``check_integrity`` computes)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, need: Need, title: str, enabled: bool) -> None:
    """Compare ``path`` with its published MD5 (when one is known and ``enabled``)."""
    expected = need.md5.get(path.name)
    if not enabled or not expected:
        return
    got = md5_of(path)
    if got not in expected:
        raise DataError(
            f"{title}: {path} has MD5 {got}, but the published file has {expected[0]}: it is "
            f"incomplete, corrupt or a different file. Delete it and run again with --download "
            f"(or put the original file there); --dataset-param verify_checksums=false reads it anyway"
        )


def list_names(needs: Iterable[Need]) -> str:
    return ", ".join(n.label for n in needs)


def folders(dirs: Sequence[Path]) -> str:
    return ", ".join(str(d) for d in dirs)


def missing_error(title: str, missing: Sequence[Need], dirs: Sequence[Path], how: str) -> DataError:
    return DataError(
        f"{title} not found: {list_names(missing)} {'is' if len(missing) == 1 else 'are'} in none of "
        f"{folders(dirs)}. {how}"
    )


def run_download(title: str, action: Callable[[], None], target: Path, manual: str) -> None:
    """Run a download, turning network and archive problems into a :class:`DataError`."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        action()
    except DataError:
        raise
    except Exception as exc:
        raise DataError(
            f"{title}: downloading into {target} failed ({type(exc).__name__}: {exc}). {manual}"
        ) from None


def download_first(urls: Sequence[str], filename: str, md5: str | None, root: Path, extract: bool) -> None:
    """Try each mirror in turn (torchvision's functions check the MD5 and skip a good file)."""
    from torchvision.datasets.utils import download_and_extract_archive, download_url

    errors: list[str] = []
    for url in urls:
        try:
            if extract:
                download_and_extract_archive(url, download_root=str(root), filename=filename, md5=md5)
            else:
                download_url(url, root=str(root), filename=filename, md5=md5)
            return
        except Exception as exc:
            errors.append(f"{url}: {type(exc).__name__}: {exc}")
    raise OSError("; ".join(errors))
