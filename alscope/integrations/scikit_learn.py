"""A scikit-learn estimator driven by alscope's strategies and stopping criteria.

>>> from sklearn.linear_model import LogisticRegression
>>> learner = SklearnLearner(LogisticRegression(max_iter=1000), x_pool, n_classes=10,
...                          test=(x_test, y_test), strategy="badge")   # doctest: +SKIP

Any estimator with ``predict_proba`` serves the strategies that read probabilities; the
embedding strategies read ``features(X)`` (default: the estimator's ``transform`` where
it has one, the transform steps of a Pipeline, else the inputs themselves, which are the
penultimate layer of a linear model). Strategies that need a torch model (MC dropout,
input gradients, modules trained alongside the model, logits) are refused, with the list
of those that work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from alscope.errors import ConfigError
from alscope.integrations.loop import LearnerLoop, ModelAdapter, RoundSeeds, check_classes
from alscope.registry import get_registry
from alscope.strategies.base import PoolView, Requirements, Strategy

#: what an estimator can give a strategy: class probabilities and a feature vector
_SERVED = {"probs", "embeddings", "labeled_embeddings", "labeled_probs"}


def needs_beyond_estimator(strategy: Strategy) -> list[str]:
    """What ``strategy`` reads that an estimator cannot give (empty: it works)."""
    req = strategy.requirements()
    missing = [n for n in req.describe() if n.split("=")[0] not in _SERVED]
    if strategy.training_hooks() is not None:
        missing.append("modules trained alongside the model")
    return missing


def estimator_strategies() -> list[str]:
    """The registered strategies an estimator can drive (default parameters)."""
    registry = get_registry()
    names = []
    for spec in registry.specs("strategy"):
        try:
            strategy = registry.load_spec("strategy", spec)({})
        except Exception:
            continue
        if not needs_beyond_estimator(strategy):
            names.append(spec.name)
    return sorted(names)


def _default_features(estimator: Any) -> Callable[[Any, Any], np.ndarray]:
    """``features(fitted, X)``: the representation the last step sees."""
    steps = getattr(estimator, "steps", None)
    if steps is not None and len(steps) > 1:
        return lambda fitted, x: np.asarray(fitted[:-1].transform(x))
    if hasattr(estimator, "transform"):
        return lambda fitted, x: np.asarray(fitted.transform(x))
    return lambda fitted, x: np.asarray(x)


class SklearnModel(ModelAdapter):
    """A fresh clone of the estimator fitted every round, read through ``predict_proba``."""

    def __init__(
        self,
        estimator: Any,
        pool: Any,
        n_classes: int,
        *,
        test: tuple[Any, Any] | None = None,
        features: Callable[[Any], Any] | None = None,
    ) -> None:
        if not hasattr(estimator, "predict_proba"):
            raise ConfigError(
                f"{type(estimator).__name__} has no predict_proba; use a probabilistic classifier "
                "(e.g. LogisticRegression, or SVC(probability=True))"
            )
        check_classes(n_classes)
        self.estimator, self.pool, self.n_classes = estimator, pool, n_classes
        self.n_pool = len(pool)
        if test is not None and (not isinstance(test, tuple | list) or len(test) != 2):
            raise ConfigError("test must be (X, y)")
        self.test = test
        self.n_test = None if test is None else len(test[0])
        self.backbone_name = type(estimator).__name__
        self._features = (
            (lambda fitted, x: np.asarray(features(x))) if features else _default_features(estimator)
        )
        self.fitted: Any = None
        self._probs: np.ndarray | None = None

    def check(self, strategy: Strategy, name: str) -> None:
        missing = needs_beyond_estimator(strategy)
        if missing:
            raise ConfigError(
                f"strategy {name!r} needs {', '.join(missing)}, which a scikit-learn estimator cannot give; "
                f"strategies that work with one: {', '.join(estimator_strategies())}"
            )

    def fit(
        self, labeled: np.ndarray, labels: np.ndarray, strategy: Strategy, seeds: RoundSeeds
    ) -> dict[str, float]:
        from sklearn.base import clone

        model = clone(self.estimator)
        if "random_state" in model.get_params():
            model.set_params(random_state=seeds.train)
        start = time.perf_counter()
        model.fit(_rows(self.pool, labeled), labels)
        seconds = time.perf_counter() - start
        self.fitted, self._probs = model, None
        accuracy = float(np.mean(model.predict(_rows(self.pool, labeled)) == labels))
        return {"train_time": seconds, "train_accuracy": accuracy}

    def _expand(self, probs: np.ndarray) -> np.ndarray:
        """Columns for every class: an estimator knows only the classes it was fitted on."""
        out = np.zeros((len(probs), self.n_classes), dtype=np.float32)
        out[:, np.asarray(self.fitted.classes_, dtype=np.int64)] = probs
        return out

    def _pool_probs(self) -> np.ndarray:
        if self._probs is None:
            self._probs = self._expand(self.fitted.predict_proba(self.pool))
        return self._probs

    def pool_view(
        self,
        unlabeled: np.ndarray,
        labeled: np.ndarray,
        labels: np.ndarray,
        requirements: Requirements,
        strategy: str,
    ) -> PoolView:
        mask = np.zeros(self.n_pool, dtype=bool)
        mask[labeled] = True
        # the view's labeled rows are in pool order; their targets follow them
        targets = np.asarray(labels)[np.argsort(labeled, kind="stable")]
        wants_probs = requirements.probs or requirements.labeled_probs
        wants_features = requirements.embeddings or requirements.labeled_embeddings
        if not (wants_probs or wants_features):
            view = PoolView(np.flatnonzero(~mask), np.flatnonzero(mask), self.n_classes, targets)
        else:
            view = PoolView.from_arrays(
                probs=self._pool_probs() if wants_probs else None,
                embeddings=self._features(self.fitted, self.pool) if wants_features else None,
                labeled_mask=mask,
                labeled_targets=targets,
                n_classes=self.n_classes,
            )
        if not np.array_equal(view.unlabeled, unlabeled):
            raise AssertionError("the view's unlabeled rows differ from the loop's")
        return view

    def predict_proba(self, indices: np.ndarray | None, *, test: bool = False) -> np.ndarray:
        if test:
            if self.test is None:
                raise ConfigError("no test set was given: pass test=(X, y)")
            return self._expand(self.fitted.predict_proba(self.test[0]))
        probs = self._pool_probs()
        return probs if indices is None else probs[np.asarray(indices, dtype=np.int64)]


def _rows(data: Any, indices: np.ndarray) -> Any:
    if hasattr(data, "iloc"):
        return data.iloc[indices]
    if isinstance(data, list):
        return [data[i] for i in indices]
    return data[indices]


class SklearnLearner(LearnerLoop):
    """Active learning with a scikit-learn estimator.

    Args:
        estimator: any classifier with ``predict_proba`` (a Pipeline too); cloned and
            fitted anew every round, its ``random_state`` set from the round's seed.
        pool: the unlabeled pool: an array, a DataFrame or a list (what the estimator takes).
        n_classes: the number of classes; labels are 0..n_classes-1.
        test: ``(X, y)``, evaluated every round.
        features: ``features(X) -> (n, d)`` for the embedding strategies (default: the
            estimator's transform, a Pipeline's transform steps, else ``X``).

    Every other keyword goes to :class:`~alscope.integrations.loop.LearnerLoop`.
    """

    def __init__(
        self,
        estimator: Any,
        pool: Any,
        n_classes: int,
        *,
        strategy: str = "entropy",
        test: tuple[Any, Any] | None = None,
        features: Callable[[Any], Any] | None = None,
        **loop: Any,
    ) -> None:
        adapter = SklearnModel(estimator, pool, n_classes, test=test, features=features)
        super().__init__(
            adapter, strategy=strategy, test_labels=None if test is None else np.asarray(test[1]), **loop
        )

    @property
    def model(self) -> Any:
        """The last round's fitted estimator."""
        return self.adapter.fitted  # type: ignore[attr-defined]
