"""Tabular datasets: scikit-learn's bundled sets and the user's own feature files.

Features are standardised with the pool's mean and std (never the test set's) and
held in memory as one tensor, so batches are tensor slices.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field, model_validator

from alscope.components import Params
from alscope.data.base import ALDataset, DatasetFactory, InputSpec, LoadContext, TensorSource
from alscope.data.splits import cap_pool, stratified_holdout
from alscope.errors import DataError


class SplitParams(Params):
    """Hold-out and capping, shared by every dataset that has one labelled split."""

    test_fraction: float = Field(
        default=0.25, gt=0, lt=1, description="share of each class held out as the test set"
    )
    max_pool_size: int | None = Field(
        default=None, ge=1, description="cap the pool at this many samples (stratified)"
    )
    samples_per_class: int | None = Field(
        default=None, ge=1, description="cap the pool at this many samples per class"
    )
    standardize: bool = Field(default=True, description="scale features with the pool's mean/std")


def tabular_dataset(
    name: str,
    features: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    params: SplitParams,
    seed: int,
    test: tuple[np.ndarray, np.ndarray] | None = None,
) -> ALDataset:
    """Split (unless a test set is given), cap, standardise and wrap as tensors."""
    features = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    if test is None:
        pool_idx, test_idx = stratified_holdout(labels, params.test_fraction, seed)
        pool_x, pool_y = features[pool_idx], labels[pool_idx]
        test_x, test_y = features[test_idx], labels[test_idx]
    else:
        pool_x, pool_y = features, labels
        test_x, test_y = np.asarray(test[0], dtype=np.float32), np.asarray(test[1], dtype=np.int64)
    keep = cap_pool(pool_y, seed, params.max_pool_size, params.samples_per_class)
    pool_x, pool_y = pool_x[keep], pool_y[keep]
    if params.standardize:
        mean = pool_x.mean(axis=0)
        std = pool_x.std(axis=0)
        std[std == 0] = 1.0
        pool_x = (pool_x - mean) / std
        test_x = (test_x - mean) / std
    return ALDataset(
        name=name,
        domain="tabular",
        classes=classes,
        pool=TensorSource(torch.from_numpy(np.ascontiguousarray(pool_x)), pool_y),
        test=TensorSource(torch.from_numpy(np.ascontiguousarray(test_x)), test_y),
        input_spec=InputSpec("vector", (pool_x.shape[1],)),
        default_backbone="mlp",
    )


class SklearnDataset(DatasetFactory):
    """A dataset bundled with scikit-learn (no download)."""

    Params = SplitParams
    loader_name: ClassVar[str] = ""

    def load(self, ctx: LoadContext) -> ALDataset:
        import sklearn.datasets

        bunch: Any = getattr(sklearn.datasets, self.loader_name)()
        names = getattr(bunch, "target_names", None)
        classes = [str(c) for c in names] if names is not None else [str(c) for c in np.unique(bunch.target)]
        return tabular_dataset(self.component_name, bunch.data, bunch.target, classes, self.params, ctx.seed)


class Digits(SklearnDataset):
    """8x8 handwritten digits, 1,797 samples, 64 features, 10 classes."""

    component_name = "digits"
    loader_name = "load_digits"


class Iris(SklearnDataset):
    component_name = "iris"
    loader_name = "load_iris"


class Wine(SklearnDataset):
    component_name = "wine"
    loader_name = "load_wine"


class BreastCancer(SklearnDataset):
    """Binary: 569 samples, 30 features."""

    component_name = "breast_cancer"
    loader_name = "load_breast_cancer"


class FeatureFileParams(SplitParams):
    path: Path = Field(description="CSV, NPZ or Parquet file with features and a label column")
    label_column: str = Field(default="label", description="column (or NPZ array) of labels")
    test_path: Path | None = Field(
        default=None, description="separate test file in the same format; default: hold-out"
    )
    feature_columns: list[str] | None = Field(
        default=None, description="feature columns; default: every other numeric column"
    )

    @model_validator(mode="after")
    def _suffix(self) -> FeatureFileParams:
        for p in (self.path, self.test_path):
            if p is not None and p.is_dir():
                raise ValueError(
                    f"{str(p)!r} is a folder; give one feature file ({', '.join(_READERS)}), "
                    f"e.g. path={p / 'features.csv'}"
                )
            if p is not None and p.suffix.lower() not in _READERS:
                raise ValueError(
                    f"{str(p)!r} has unknown format {p.suffix!r} (accepted: {', '.join(_READERS)})"
                )
        return self


def _read_table(path: Path) -> Any:
    import pandas as pd

    if path.suffix.lower() == ".csv":
        return pd.read_csv(path)
    try:
        return pd.read_parquet(path)
    except ImportError as exc:
        raise DataError(f"reading {path} needs pyarrow: pip install 'alscope[parquet]' ({exc})") from None


def _read_npz(path: Path, label_column: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        keys = list(data.keys())
        if label_column not in data:
            raise DataError(f"{path}: no array {label_column!r} (arrays: {', '.join(keys)})")
        feature_keys = [k for k in ("X", "x", "features", "data") if k in data]
        if not feature_keys:
            raise DataError(
                f"{path}: no feature array named X, x, features or data (arrays: {', '.join(keys)})"
            )
        return np.asarray(data[feature_keys[0]]), np.asarray(data[label_column])


_READERS = (".csv", ".parquet", ".pq", ".npz")


class FeatureFile(DatasetFactory):
    """The user's own feature vectors: a CSV or Parquet table with a label column, or
    an NPZ file with arrays ``X`` and ``label``. Labels may be names or integers."""

    Params = FeatureFileParams
    component_name = "features"

    def _read(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        if not path.is_file():
            raise DataError(f"feature file {str(path)!r} does not exist")
        try:
            if path.suffix.lower() == ".npz":
                x, y = _read_npz(path, p.label_column)
            else:
                import pandas as pd

                table = _read_table(path)
                if p.label_column not in table.columns:
                    raise DataError(
                        f"{path}: no label column {p.label_column!r} "
                        f"(columns: {', '.join(map(str, table.columns))}); set label_column"
                    )
                y = table[p.label_column].to_numpy()
                cols = p.feature_columns or [c for c in table.columns if c != p.label_column]
                missing = [c for c in cols if c not in table.columns]
                if missing:
                    raise DataError(f"{path}: feature columns {missing} not found")
                frame = table[cols]
                if len(table) == 0:
                    raise DataError(f"{path}: expected a non-empty feature table, the file holds no rows")
                non_numeric = [c for c in cols if not pd.api.types.is_numeric_dtype(frame[c])]
                if non_numeric:
                    raise DataError(f"{path}: non-numeric feature columns {non_numeric}")
                x = frame.to_numpy(dtype=np.float32)
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"{path} cannot be read: {exc}") from None
        if x.ndim != 2 or len(x) == 0:
            raise DataError(f"{path}: expected a non-empty 2-D feature table, got shape {x.shape}")
        if np.isnan(x).any():
            raise DataError(f"{path}: features contain missing values")
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(
                f"{path}: {len(x)} feature rows but {len(y)} labels (shape {y.shape}); "
                "every row needs exactly one label"
            )
        import pandas as pd

        unlabeled = np.flatnonzero(pd.isna(y))
        if len(unlabeled):
            rows = ", ".join(str(i) for i in unlabeled[:5]) + (", ..." if len(unlabeled) > 5 else "")
            raise DataError(
                f"{path}: {len(unlabeled)} row(s) without a label (data rows {rows}, counted from 0); "
                "fill or drop them"
            )
        return x, y

    def load(self, ctx: LoadContext) -> ALDataset:
        p = self.params
        x, y_raw = self._read(p.path)
        test = self._read(p.test_path) if p.test_path is not None else None
        all_labels = y_raw if test is None else np.concatenate([y_raw, test[1]])
        classes = np.unique(all_labels.astype(str) if all_labels.dtype.kind in "OUS" else all_labels)
        lookup = {c: i for i, c in enumerate(classes.tolist())}

        def encode(values: np.ndarray) -> np.ndarray:
            vals = values.astype(str) if values.dtype.kind in "OUS" else values
            return np.array([lookup[v] for v in vals.tolist()], dtype=np.int64)

        if len(classes) < 2:
            raise DataError(f"{p.path}: the label column holds {len(classes)} class; at least 2 are needed")
        test_arrays = None if test is None else (test[0], encode(test[1]))
        if test_arrays is not None and test_arrays[0].shape[1] != x.shape[1]:
            raise DataError(
                f"{p.test_path} has {test_arrays[0].shape[1]} features, {p.path} has {x.shape[1]}"
            )
        return tabular_dataset(
            p.path.stem, x, encode(y_raw), [str(c) for c in classes.tolist()], p, ctx.seed, test_arrays
        )
