"""Tabular datasets, splits and the batch sources of the data contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits

from alscope.data.base import (
    ALDataset,
    Batch,
    LoadContext,
    MapDatasetSource,
    TensorSource,
    move_to,
)
from alscope.data.splits import cap_pool, stratified_holdout
from alscope.data.tabular import BreastCancer, Digits, FeatureFile, Iris, Wine
from alscope.errors import ConfigError, DataError


def ctx(tmp_path: Path | None = None, seed: int = 0) -> LoadContext:
    return LoadContext(tmp_path or Path("."), seed)


@pytest.fixture(scope="module")
def digits_raw() -> tuple[np.ndarray, np.ndarray]:
    bunch = load_digits()
    return bunch.data.astype(np.float32), bunch.target.astype(np.int64)


def original_rows(dataset_x: torch.Tensor, raw_x: np.ndarray) -> np.ndarray:
    """Index into the raw data of each row (digits has no duplicate rows)."""
    where = {row.tobytes(): i for i, row in enumerate(raw_x)}
    assert len(where) == len(raw_x)
    return np.array([where[row.tobytes()] for row in dataset_x.numpy()])


# -- digits and stratified hold-out ------------------------------------------------------------


def test_digits_stratified_holdout(digits_raw: tuple[np.ndarray, np.ndarray]) -> None:
    raw_x, raw_y = digits_raw
    ds = Digits({"standardize": False}).load(ctx())
    assert isinstance(ds, ALDataset)
    assert ds.name == "digits"
    assert ds.domain == "tabular"
    assert ds.classes == [str(i) for i in range(10)]
    assert ds.n_classes == 10
    assert ds.input_spec.kind == "vector"
    assert ds.input_spec.shape == (64,)
    assert ds.default_backbone == "mlp"
    assert isinstance(ds.pool, TensorSource)
    assert len(ds.pool) + len(ds.test) == len(raw_y)

    pool_rows = original_rows(ds.pool.inputs, raw_x)
    test_rows = original_rows(ds.test.inputs, raw_x)
    assert set(pool_rows).isdisjoint(test_rows)
    assert sorted(np.concatenate([pool_rows, test_rows])) == list(range(len(raw_y)))
    # labels travel with their rows
    np.testing.assert_array_equal(ds.pool.labels, raw_y[pool_rows])
    np.testing.assert_array_equal(ds.test.labels, raw_y[test_rows])
    # each class has (within one sample) a quarter of its samples in the test set
    for c in range(10):
        n_c = int((raw_y == c).sum())
        in_test = int((ds.test.labels == c).sum())
        assert abs(in_test - 0.25 * n_c) <= 1, (c, in_test, n_c)


@pytest.mark.parametrize("fraction", [0.1, 0.5])
def test_test_fraction(fraction: float, digits_raw: tuple[np.ndarray, np.ndarray]) -> None:
    _, raw_y = digits_raw
    ds = Digits({"test_fraction": fraction}).load(ctx())
    for c in range(10):
        assert abs((ds.test.labels == c).sum() - fraction * (raw_y == c).sum()) <= 1


def test_split_is_deterministic_per_seed() -> None:
    a = Digits().load(ctx(seed=0))
    b = Digits().load(ctx(seed=0))
    c = Digits().load(ctx(seed=1))
    assert torch.equal(a.pool.inputs, b.pool.inputs)
    assert torch.equal(a.test.inputs, b.test.inputs)
    np.testing.assert_array_equal(a.pool.labels, b.pool.labels)
    assert a.test.inputs.shape == c.test.inputs.shape
    assert not torch.equal(a.test.inputs, c.test.inputs)


def test_holdout_indices_are_deterministic_and_disjoint() -> None:
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    pool, test = stratified_holdout(labels, 0.3, seed=5)
    pool2, test2 = stratified_holdout(labels, 0.3, seed=5)
    _, test3 = stratified_holdout(labels, 0.3, seed=6)
    np.testing.assert_array_equal(pool, pool2)
    np.testing.assert_array_equal(test, test2)
    assert not np.array_equal(test, test3)
    assert np.all(np.diff(pool) > 0) and np.all(np.diff(test) > 0)  # sorted, unique
    assert set(pool).isdisjoint(test)
    assert len(pool) + len(test) == len(labels)
    for c, n in enumerate([10, 20, 30, 40]):
        assert abs((labels[test] == c).sum() - 0.3 * n) <= 1


def test_singleton_classes_stay_in_the_pool() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2])
    pool, test = stratified_holdout(labels, 0.5, seed=0)
    assert 8 in pool
    assert 8 not in test
    assert len(pool) + len(test) == len(labels)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_holdout_fraction_must_be_inside_0_1(fraction: float) -> None:
    with pytest.raises(DataError, match="test_fraction"):
        stratified_holdout(np.array([0, 0, 1, 1]), fraction, seed=0)


def test_holdout_that_cannot_stratify_is_a_data_error() -> None:
    labels = np.repeat(np.arange(3), 2)  # 10% of 6 is one sample for three classes
    with pytest.raises(DataError, match="cannot hold out"):
        stratified_holdout(labels, 0.1, seed=0)


def test_standardization_uses_the_pool_only() -> None:
    ds = Digits().load(ctx())
    pool = ds.pool.inputs.numpy().astype(np.float64)
    std = pool.std(axis=0)
    assert np.allclose(pool.mean(axis=0), 0.0, atol=1e-4)
    assert np.allclose(std[std > 0], 1.0, atol=1e-3)
    # the test set is scaled with the pool's statistics, so it is not exactly centred
    assert not np.allclose(ds.test.inputs.numpy().mean(axis=0), 0.0, atol=1e-4)
    assert ds.pool.inputs.dtype == torch.float32


def test_max_pool_size_is_a_stratified_cap() -> None:
    full = Digits().load(ctx())
    ds = Digits({"max_pool_size": 100}).load(ctx())
    assert len(ds.pool) == 100
    assert len(ds.test) == len(full.test)  # the test set is not capped
    counts = np.bincount(ds.pool.labels, minlength=10)
    assert counts.min() >= 9 and counts.max() <= 11


def test_samples_per_class_cap() -> None:
    ds = Digits({"samples_per_class": 5}).load(ctx())
    assert len(ds.pool) == 50
    np.testing.assert_array_equal(np.bincount(ds.pool.labels, minlength=10), [5] * 10)


def test_both_caps() -> None:
    ds = Digits({"samples_per_class": 20, "max_pool_size": 50}).load(ctx())
    assert len(ds.pool) == 50
    np.testing.assert_array_equal(np.bincount(ds.pool.labels, minlength=10), [5] * 10)


def test_cap_pool_directly() -> None:
    labels = np.repeat(np.arange(3), [5, 10, 50])
    keep = cap_pool(labels, seed=0, per_class=4)
    assert np.all(np.diff(keep) > 0)
    np.testing.assert_array_equal(np.bincount(labels[keep]), [4, 4, 4])
    np.testing.assert_array_equal(keep, cap_pool(labels, seed=0, per_class=4))
    assert not np.array_equal(cap_pool(labels, seed=0, max_size=20), cap_pool(labels, seed=1, max_size=20))
    assert len(cap_pool(labels, seed=0, max_size=1000)) == len(labels)
    np.testing.assert_array_equal(cap_pool(labels, seed=0), np.arange(len(labels)))
    with pytest.raises(DataError, match="samples_per_class"):
        cap_pool(labels, seed=0, per_class=0)
    with pytest.raises(DataError, match="max_pool_size"):
        cap_pool(labels, seed=0, max_size=0)


@pytest.mark.parametrize(
    "params", [{"max_pool_size": 0}, {"samples_per_class": 0}, {"test_fraction": 1.0}, {"test_fraction": 0}]
)
def test_cap_params_are_validated(params: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="dataset digits"):
        Digits(params)


@pytest.mark.parametrize(
    ("factory", "n", "d", "k"),
    [(Iris, 150, 4, 3), (Wine, 178, 13, 3), (BreastCancer, 569, 30, 2)],
)
def test_other_sklearn_sets(factory: Any, n: int, d: int, k: int) -> None:
    ds = factory().load(ctx())
    assert len(ds.pool) + len(ds.test) == n
    assert ds.input_spec.shape == (d,)
    assert ds.n_classes == k
    assert set(np.unique(ds.pool.labels)) == set(range(k))


# -- feature files -----------------------------------------------------------------------------


def frame(n_per_class: int = 12, classes: tuple[Any, ...] = ("cat", "dog", "eel")) -> pd.DataFrame:
    """Column ``id`` identifies each row so that rows can be traced through the split."""
    rows = []
    i = 0
    for c in classes:
        for _ in range(n_per_class):
            rows.append({"id": float(i), "a": i * 0.5, "b": -float(i), "label": c})
            i += 1
    return pd.DataFrame(rows)


def load_features(params: dict[str, Any], seed: int = 0) -> ALDataset:
    return FeatureFile({"standardize": False, **params}).load(ctx(seed=seed))


def check_rows(ds: ALDataset, df: pd.DataFrame) -> None:
    """Every row kept its label, and pool and test do not share rows."""
    classes = ds.classes
    for source in (ds.pool, ds.test):
        ids = source.inputs[:, 0].numpy().astype(int)
        expected = [classes.index(str(df.loc[i, "label"])) for i in ids]
        np.testing.assert_array_equal(source.labels, expected)
    assert set(ds.pool.inputs[:, 0].tolist()).isdisjoint(ds.test.inputs[:, 0].tolist())


def test_csv_with_string_labels(tmp_path: Path) -> None:
    df = frame()
    path = tmp_path / "train.csv"
    df.to_csv(path, index=False)
    ds = load_features({"path": path})
    assert ds.name == "train"
    assert ds.classes == ["cat", "dog", "eel"]
    assert ds.input_spec.shape == (3,)
    assert len(ds.pool) + len(ds.test) == len(df)
    assert len(ds.test) == 9  # a quarter of each class of 12
    check_rows(ds, df)


def test_csv_with_integer_labels(tmp_path: Path) -> None:
    df = frame(classes=(3, 7, 11))
    path = tmp_path / "ints.csv"
    df.to_csv(path, index=False)
    ds = load_features({"path": path})
    assert ds.classes == ["3", "7", "11"]  # numeric order, not string order
    check_rows(ds, df)


def test_label_column_and_feature_columns(tmp_path: Path) -> None:
    df = frame().rename(columns={"label": "y"})
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    ds = load_features({"path": path, "label_column": "y", "feature_columns": ["id", "b"]})
    assert ds.input_spec.shape == (2,)
    ids = ds.pool.inputs[:, 0].numpy().astype(int)
    np.testing.assert_allclose(ds.pool.inputs[:, 1].numpy(), -ids)


def test_missing_feature_column(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    frame().to_csv(path, index=False)
    with pytest.raises(DataError, match=r"feature columns \['zzz'\] not found"):
        load_features({"path": path, "feature_columns": ["a", "zzz"]})


def test_npz(tmp_path: Path) -> None:
    df = frame(classes=(0, 1))
    path = tmp_path / "arrays.npz"
    np.savez(path, X=df[["id", "a", "b"]].to_numpy(), label=df["label"].to_numpy())
    ds = load_features({"path": path})
    assert ds.classes == ["0", "1"]
    assert ds.input_spec.shape == (3,)
    check_rows(ds, df)


def test_npz_with_string_labels_and_another_feature_name(tmp_path: Path) -> None:
    df = frame()
    path = tmp_path / "arrays.npz"
    np.savez(path, features=df[["id", "a", "b"]].to_numpy(), y=df["label"].to_numpy().astype(str))
    ds = load_features({"path": path, "label_column": "y"})
    assert ds.classes == ["cat", "dog", "eel"]
    check_rows(ds, df)


@pytest.mark.parametrize("suffix", [".parquet", ".pq"])
def test_parquet(tmp_path: Path, suffix: str) -> None:
    pytest.importorskip("pyarrow")
    df = frame()
    path = tmp_path / f"t{suffix}"
    df.to_parquet(path, index=False)
    ds = load_features({"path": path})
    assert ds.classes == ["cat", "dog", "eel"]
    check_rows(ds, df)


def test_separate_test_file(tmp_path: Path) -> None:
    train = frame(n_per_class=6, classes=("a", "b"))
    test = frame(n_per_class=3, classes=("b", "c"))
    test["id"] += 100
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    ds = load_features({"path": tmp_path / "train.csv", "test_path": tmp_path / "test.csv"})
    assert ds.classes == ["a", "b", "c"]  # the union of both files
    assert len(ds.pool) == len(train)  # no hold-out from the training file
    assert len(ds.test) == len(test)
    np.testing.assert_array_equal(ds.pool.inputs[:, 0].numpy(), train["id"].to_numpy())
    np.testing.assert_array_equal(ds.pool.labels, [0] * 6 + [1] * 6)
    np.testing.assert_array_equal(ds.test.labels, [1] * 3 + [2] * 3)


def test_test_file_is_scaled_with_the_pool(tmp_path: Path) -> None:
    train = frame(n_per_class=6, classes=("a", "b"))
    train.to_csv(tmp_path / "train.csv", index=False)
    train.to_csv(tmp_path / "test.csv", index=False)
    params = {"path": tmp_path / "train.csv", "test_path": tmp_path / "test.csv"}
    ds = FeatureFile(params).load(ctx())
    assert torch.allclose(ds.pool.inputs, ds.test.inputs)
    assert torch.allclose(ds.pool.inputs.mean(0), torch.zeros(3), atol=1e-5)


def test_mismatched_feature_counts(tmp_path: Path) -> None:
    train = frame(n_per_class=6, classes=("a", "b"))
    train.to_csv(tmp_path / "train.csv", index=False)
    train.drop(columns=["b"]).to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(DataError) as info:
        load_features({"path": tmp_path / "train.csv", "test_path": tmp_path / "test.csv"})
    msg = str(info.value)
    assert "test.csv has 2 features" in msg
    assert "train.csv has 3" in msg


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError) as info:
        load_features({"path": path})
    assert "does not exist" in str(info.value)
    assert str(path) in str(info.value)


def test_missing_test_file(tmp_path: Path) -> None:
    frame().to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(DataError, match=r"test\.csv' does not exist"):
        load_features({"path": tmp_path / "train.csv", "test_path": tmp_path / "test.csv"})


def test_missing_label_column_lists_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    frame().rename(columns={"label": "target"}).to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        load_features({"path": path})
    msg = str(info.value)
    assert "no label column 'label'" in msg
    assert "columns: id, a, b, target" in msg
    assert "label_column" in msg


def test_non_numeric_feature_column_is_a_data_error(tmp_path: Path) -> None:
    df = frame()
    df["colour"] = "red"
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        load_features({"path": path})
    assert str(path) in str(info.value)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_non_numeric_feature_column_is_named(tmp_path: Path, suffix: str) -> None:
    df = frame()
    df["colour"] = "red"
    path = tmp_path / f"t{suffix}"
    if suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        pytest.importorskip("pyarrow")
        df.to_parquet(path, index=False)
    with pytest.raises(DataError, match=r"non-numeric feature columns \['colour'\]"):
        load_features({"path": path})


def test_non_numeric_column_left_out_by_feature_columns(tmp_path: Path) -> None:
    df = frame()
    df["colour"] = "red"
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    ds = load_features({"path": path, "feature_columns": ["id", "a", "b"]})
    assert ds.input_spec.shape == (3,)
    check_rows(ds, df)


def test_single_class(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    frame(classes=("only",)).to_csv(path, index=False)
    with pytest.raises(DataError, match="at least 2"):
        load_features({"path": path})


def test_nan_features(tmp_path: Path) -> None:
    df = frame()
    df.loc[3, "a"] = np.nan
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    with pytest.raises(DataError, match="missing values"):
        load_features({"path": path})


def test_header_only_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b,label\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_features({"path": path})
    assert str(path) in str(info.value)


def test_header_only_file_is_reported_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b,label\n", encoding="utf-8")
    with pytest.raises(DataError, match="non-empty"):
        load_features({"path": path})


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_features({"path": path})
    assert str(path) in str(info.value)


def test_npz_without_labels_or_features(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    np.savez(path, X=np.zeros((4, 2)), target=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match=r"no array 'label' \(arrays: X, target\)"):
        load_features({"path": path})
    np.savez(path, weights=np.zeros((4, 2)), label=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match="no feature array"):
        load_features({"path": path})


def test_npz_with_one_dimensional_features(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    np.savez(path, X=np.arange(8.0), label=np.array([0, 1] * 4))
    with pytest.raises(DataError, match="2-D"):
        load_features({"path": path})


@pytest.mark.parametrize("name", ["data.xlsx", "data.txt", "data"])
def test_unsupported_suffix(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError) as info:
        FeatureFile({"path": tmp_path / name})
    msg = str(info.value)
    assert "unknown format" in msg
    for accepted in (".csv", ".parquet", ".npz"):
        assert accepted in msg


def test_unsupported_test_suffix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"test\.json"):
        FeatureFile({"path": tmp_path / "a.csv", "test_path": tmp_path / "test.json"})


def test_feature_file_needs_a_path() -> None:
    with pytest.raises(ConfigError, match="path"):
        FeatureFile({})


# -- TensorSource --------------------------------------------------------------------------------


def tensor_source(n: int = 23, **kw: Any) -> TensorSource:
    x = torch.arange(n * 2, dtype=torch.float32).view(n, 2)
    return TensorSource(x, np.arange(n) % 3, **kw)


def collect(source: Any, indices: np.ndarray, **kw: Any) -> list[Batch]:
    kw.setdefault("batch_size", 5)
    kw.setdefault("train", False)
    return list(source.batches(indices, **kw))


def test_tensor_source_yields_every_index_once() -> None:
    src = tensor_source()
    indices = np.array([4, 0, 17, 3, 22, 9, 11, 5, 8, 1, 2, 20, 13])
    batches = collect(src, indices)
    assert [len(b) for b in batches] == [5, 5, 3]
    got = torch.cat([b.indices for b in batches]).numpy()
    np.testing.assert_array_equal(got, indices)  # no shuffle: order kept
    for b in batches:
        assert b.indices.dtype == torch.int64
        assert torch.equal(b.inputs, src.inputs[b.indices])
        np.testing.assert_array_equal(b.targets.numpy(), src.labels[b.indices.numpy()])


def test_tensor_source_shuffle_is_seeded() -> None:
    src = tensor_source()
    indices = np.arange(23)

    def order(seed: int) -> list[int]:
        gen = torch.Generator().manual_seed(seed)
        return torch.cat([b.indices for b in collect(src, indices, shuffle=True, generator=gen)]).tolist()

    first = order(0)
    assert sorted(first) == list(range(23))
    assert first == order(0)
    assert first != order(1)
    assert first != list(range(23))


def test_tensor_source_shuffle_advances_the_generator() -> None:
    src = tensor_source()
    gen = torch.Generator().manual_seed(0)
    a = torch.cat([b.indices for b in collect(src, np.arange(23), shuffle=True, generator=gen)])
    b = torch.cat([b.indices for b in collect(src, np.arange(23), shuffle=True, generator=gen)])
    assert not torch.equal(a, b)  # two epochs, two orders


@pytest.mark.parametrize(("n", "size", "sizes"), [(23, 5, [5, 5, 5, 5]), (20, 5, [5] * 4), (4, 5, [])])
def test_tensor_source_drop_last(n: int, size: int, sizes: list[int]) -> None:
    src = tensor_source(n)
    batches = collect(src, np.arange(n), batch_size=size, drop_last=True)
    assert [len(b) for b in batches] == sizes
    kept = torch.cat([b.indices for b in batches]).tolist() if batches else []
    assert len(set(kept)) == len(kept)


def test_tensor_source_empty_indices() -> None:
    assert collect(tensor_source(), np.array([], dtype=np.int64)) == []


def test_tensor_source_transforms() -> None:
    seen: list[Any] = []

    def train_tf(x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        seen.append(gen)
        return x + 1000

    src = tensor_source(train_transform=train_tf, eval_transform=lambda x, g: -x)
    gen = torch.Generator().manual_seed(0)
    train = collect(src, np.arange(6), train=True, generator=gen)
    assert all(torch.equal(b.inputs, src.inputs[b.indices] + 1000) for b in train)
    assert seen and all(g is gen for g in seen)
    evaluation = collect(src, np.arange(6), train=False)
    assert all(torch.equal(b.inputs, -src.inputs[b.indices]) for b in evaluation)


def test_tensor_source_subset_reindexes() -> None:
    src = tensor_source(eval_transform=lambda x, g: x * 2)
    parent = np.array([10, 3, 7])
    sub = src.subset(parent)
    assert len(sub) == 3
    np.testing.assert_array_equal(sub.labels, src.labels[parent])
    (batch,) = collect(sub, np.arange(3))
    assert batch.indices.tolist() == [0, 1, 2]
    assert torch.equal(batch.inputs, src.inputs[torch.from_numpy(parent)] * 2)


def test_tensor_source_length_mismatch() -> None:
    with pytest.raises(ValueError, match="3 inputs but 2 labels"):
        TensorSource(torch.zeros(3, 2), [0, 1])


def test_batch_to_and_move_to() -> None:
    batch = Batch({"a": torch.ones(2), "b": [torch.zeros(1)]}, torch.tensor([0, 1]), torch.tensor([4, 5]))
    moved = batch.to(torch.device("cpu"))
    assert torch.equal(moved.inputs["a"], torch.ones(2))
    assert isinstance(moved.inputs["b"], list)
    assert len(moved) == 2
    assert move_to("text", torch.device("cpu")) == "text"
    assert isinstance(move_to((torch.ones(1),), torch.device("cpu")), tuple)


# -- MapDatasetSource ------------------------------------------------------------------------------


class ToyDataset(torch.utils.data.Dataset):
    """Item i is ``([i, 10 i] (+ 0.5 in training), label i % 4)``."""

    def __init__(self, n: int, train: bool) -> None:
        self.n, self.train = n, train
        self.reads: list[int] = []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        self.reads.append(i)
        x = torch.tensor([float(i), 10.0 * i])
        return (x + 0.5 if self.train else x), i % 4


N_MAP = 17


def map_source(**kw: Any) -> tuple[MapDatasetSource, list[ToyDataset]]:
    made: list[ToyDataset] = []

    def make(train: bool) -> ToyDataset:
        made.append(ToyDataset(N_MAP, train))
        return made[-1]

    return MapDatasetSource(make, np.arange(N_MAP) % 4, **kw), made


def check_map_batches(batches: list[Batch], parent: np.ndarray, offset: float = 0.0) -> None:
    """Batch indices are local; inputs and targets are the parents' items."""
    for b in batches:
        p = parent[b.indices.numpy()]
        expected = torch.tensor(np.stack([p, 10 * p], axis=1), dtype=torch.float32) + offset
        assert torch.equal(b.inputs, expected)
        np.testing.assert_array_equal(b.targets.numpy(), p % 4)


def test_map_source_batches() -> None:
    src, made = map_source()
    assert len(src) == N_MAP
    indices = np.array([5, 0, 16, 3, 9, 2, 7])
    batches = collect(src, indices, batch_size=3)
    assert [len(b) for b in batches] == [3, 3, 1]
    np.testing.assert_array_equal(torch.cat([b.indices for b in batches]).numpy(), indices)
    check_map_batches(batches, np.arange(N_MAP))
    assert [d.train for d in made] == [False]
    # the training dataset is made once and cached
    train = collect(src, indices, batch_size=3, train=True)
    collect(src, indices, batch_size=3, train=True)
    assert [d.train for d in made] == [False, True]
    check_map_batches(train, np.arange(N_MAP), offset=0.5)
    assert sorted(made[1].reads) == sorted(indices.tolist() * 2)


def test_map_source_subset_uses_local_indices() -> None:
    src, made = map_source()
    parent = np.array([12, 4, 9, 1, 15])
    sub = src.subset(parent)
    np.testing.assert_array_equal(sub.labels, parent % 4)
    assert len(sub) == 5
    batches = collect(sub, np.array([4, 0, 2]), batch_size=2)
    assert torch.cat([b.indices for b in batches]).tolist() == [4, 0, 2]
    check_map_batches(batches, parent)
    assert sorted(made[-1].reads) == [9, 12, 15]
    # a subset of a subset maps through both
    subsub = sub.subset(np.array([3, 1]))
    (batch,) = collect(subsub, np.arange(2))
    assert batch.indices.tolist() == [0, 1]
    check_map_batches([batch], parent[[3, 1]])


def test_map_source_shuffle_and_drop_last() -> None:
    src, _ = map_source()

    def order(seed: int, **kw: Any) -> list[list[int]]:
        gen = torch.Generator().manual_seed(seed)
        bs = collect(src, np.arange(N_MAP), batch_size=4, shuffle=True, generator=gen, **kw)
        check_map_batches(bs, np.arange(N_MAP))
        return [b.indices.tolist() for b in bs]

    first = order(0)
    flat = [i for b in first for i in b]
    assert sorted(flat) == list(range(N_MAP))
    assert flat != list(range(N_MAP))
    assert first == order(0)
    assert first != order(1)
    dropped = order(0, drop_last=True)
    assert [len(b) for b in dropped] == [4, 4, 4, 4]
    assert dropped == first[:4]


def test_map_source_custom_collate() -> None:
    src, _ = map_source(collate_fn=lambda xs: {"x": torch.stack(xs), "n": len(xs)})
    (batch,) = collect(src, np.array([3, 1]), batch_size=8)
    assert batch.inputs["n"] == 2
    assert torch.equal(batch.inputs["x"], torch.tensor([[3.0, 30.0], [1.0, 10.0]]))
