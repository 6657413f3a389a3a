"""The strategy conformance suite: the contract every registered strategy must keep.

Every strategy, the core's and every plugin's, runs the same tests: right count,
unique, inside the unlabeled pool, deterministic for a seed, budget edge cases, binary
and multi-class pools, a large pool within a generous time bound, and honest
metadata. A plugin reuses them by subclassing :class:`StrategyConformance`::

    from alscope.testing.conformance import StrategyConformance

    class TestMyStrategy(StrategyConformance):
        strategy_name = "my_strategy"
        strategy_params = {"beta": 0.5}

The checks are plain functions (:func:`check_selection`, :func:`check_deterministic`,
...) that raise :class:`AssertionError` (or the library's own
:class:`~alscope.errors.SelectionError` / :class:`~alscope.errors.BudgetError`
checks) so that they can also be called outside pytest.

The synthetic pools of :func:`make_pool_view` hold *only* what the strategy declares
in :meth:`~alscope.strategies.base.Strategy.requirements`, as the engine's pool pass
does: a strategy that reads something it did not declare fails here instead of in a
user's run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from alscope.components import Params
from alscope.errors import BudgetError, ConfigError
from alscope.registry import Registry, get_registry
from alscope.scenarios.base import OOD
from alscope.specs import ComponentSpec
from alscope.strategies.base import (
    PoolInputs,
    PoolView,
    Requirements,
    Strategy,
    tensor_input_batches,
    validate_selection,
)

__all__ = [
    "StrategyCase",
    "StrategyConformance",
    "check_budget_rejected",
    "check_deterministic",
    "check_large_pool",
    "check_params_schema",
    "check_requirements",
    "check_selection",
    "check_spec",
    "conformance_cases",
    "make_pool_view",
    "plugin_registry",
    "run_select",
]

# -- synthetic pools --------------------------------------------------------------


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def make_pool_view(
    requirements: Requirements,
    n: int,
    n_classes: int,
    dim: int = 16,
    n_labeled: int | None = None,
    seed: int = 0,
    mc_samples: int | None = None,
    model: Any = None,
    n_ood_labeled: int = 0,
) -> PoolView:
    """A synthetic, well-formed pool view holding what ``requirements`` declares.

    The pool has ``n`` samples in all (labeled and unlabeled). Samples come from a
    Gaussian mixture with one component per class: embeddings are the component mean
    plus noise, logits lean towards the sample's class with random noise, and
    probabilities are their softmax, so the pool mixes confident and uncertain
    predictions without exact ties.

    Args:
        requirements: what the strategy declared; only those fields are filled (plus
            ``labeled_targets``, which the engine always provides).
        n: pool size, labeled samples included.
        n_classes: number of classes ``C``.
        dim: embedding dimension ``D``.
        n_labeled: size of the labeled set, drawn at random positions so that
            unlabeled dataset indices differ from their positions in the view. Default:
            ``max(n_classes, n // 10)``, at most ``n - 1``.
        seed: fixes every array.
        mc_samples: ``K`` of ``mc_probs`` ``(U, K, C)``; default
            ``requirements.mc_samples`` (no MC samples when that is 0).
        model: what ``view.model`` holds when ``requirements.model`` is set; default a
            small untrained MLP over ``dim`` features in eval mode whose penultimate
            width is ``dim`` too, so that its ``classifier`` takes the view's embeddings.
            ``requirements.pool_inputs`` makes the embeddings the model's inputs as well:
            ``view.input_batches()`` yields the unlabeled rows of that ``(n, dim)``
            feature matrix, which the default MLP takes.
        n_ood_labeled: labeled samples the oracle answered "out of distribution"
            (``labeled_targets == OOD``, an open-set pool); their embeddings come from a
            cluster of their own.
    """
    if n < 2:
        raise ValueError(f"a pool view needs n >= 2 samples, got {n}")
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    if n_labeled is None:
        n_labeled = max(n_classes, n // 10)
    n_labeled = int(min(max(n_labeled, 0), n - 1))
    rng = np.random.default_rng(seed)
    req = requirements

    labeled = np.sort(rng.choice(n, size=n_labeled, replace=False)).astype(np.int64)
    mask = np.zeros(n, dtype=bool)
    mask[labeled] = True
    unlabeled = np.flatnonzero(~mask).astype(np.int64)

    y = rng.integers(0, n_classes, size=n)
    if n_labeled >= n_classes:  # every class appears in the labeled set
        y[labeled[:n_classes]] = rng.permutation(n_classes)
    centers = rng.normal(0.0, 3.0, size=(n_classes, dim))
    emb = centers[y] + rng.normal(0.0, 1.0, size=(n, dim))
    targets = y[labeled].astype(np.int64)
    if n_ood_labeled:
        ood_rows = labeled[-min(n_ood_labeled, n_labeled) :]
        emb[ood_rows] = rng.normal(0.0, 3.0, size=dim) + rng.normal(0.0, 1.0, size=(len(ood_rows), dim))
        targets[-len(ood_rows) :] = OOD
    sharpness = rng.uniform(0.0, 4.0, size=(n, 1))  # some confident, some not
    logits = rng.normal(0.0, 1.0, size=(n, n_classes)) + sharpness * np.eye(n_classes)[y]
    probs = _softmax(logits)

    view = PoolView(
        unlabeled=unlabeled,
        labeled=labeled,
        n_classes=n_classes,
        labeled_targets=targets,
    )
    if req.probs:
        view.probs = _tensor(probs[unlabeled])
    if req.logits:
        view.logits = _tensor(logits[unlabeled])
    if req.embeddings:
        view.embeddings = _tensor(emb[unlabeled])
    if req.labeled_embeddings:
        view.labeled_embeddings = _tensor(emb[labeled].reshape(n_labeled, dim))
    if req.labeled_probs:
        view.labeled_probs = _tensor(probs[labeled].reshape(n_labeled, n_classes))
    k = req.mc_samples if mc_samples is None else mc_samples
    if k > 0:
        noise = rng.normal(0.0, 1.0, size=(len(unlabeled), k, n_classes))
        view.mc_probs = _tensor(_softmax(logits[unlabeled][:, None, :] + noise))
    view.extras = {name: _tensor(rng.random(len(unlabeled))) for name in req.extra_outputs}
    for request in req.ssl:  # a view of the same clusters, as a contrastive encoder gives
        ssl = emb @ rng.normal(0.0, 1.0, size=(dim, dim)) / np.sqrt(dim)
        view.ssl_embeddings[request.method] = _tensor(ssl[unlabeled])
        view.labeled_ssl_embeddings[request.method] = _tensor(ssl[labeled].reshape(n_labeled, dim))
    if req.model:
        view.model = model if model is not None else _small_model(dim, n_classes, seed)
    if req.pool_inputs:
        view.pool_inputs = PoolInputs(tensor_input_batches(_tensor(emb[unlabeled]), view.device), 256)
    return view


def _small_model(dim: int, n_classes: int, seed: int) -> Any:
    from alscope.data.base import InputSpec
    from alscope.models.mlp import MLP

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MLP(InputSpec("vector", (dim,)), n_classes, MLP.Params(hidden_sizes=[dim]))
    return model.eval()


# -- resolving the strategy under test -----------------------------------------------


@cache
def plugin_registry(namespace: str, module: ModuleType | object) -> Registry:
    """A registry that knows ``module``'s components, installed or not.

    The installed registry when ``namespace`` is already installed (``pip install -e .``),
    else a registry of the installed plugins plus ``module`` registered in code: a
    plugin's tests pass from its source checkout as well as after installation.
    """
    registry = get_registry()
    if namespace in registry.plugins:
        return registry
    return Registry(plugins={namespace: module})


def conformance_cases(registry: Registry | None = None) -> list[str]:
    """Every registered strategy name (qualified where two plugins share a name)."""
    return (registry or get_registry()).names("strategy")


@dataclass(frozen=True)
class StrategyCase:
    """One strategy under test: its name, its parameters and where to resolve it."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    registry: Registry | None = None

    @property
    def spec(self) -> ComponentSpec:
        return (self.registry or get_registry()).resolve("strategy", self.name)

    @property
    def strategy_cls(self) -> type[Strategy]:
        cls = self.spec.load()
        assert isinstance(cls, type) and issubclass(cls, Strategy), (
            f"strategy {self.name!r}: target {self.spec.target!r} is {cls!r}, "
            f"not a subclass of alscope.strategies.base.Strategy"
        )
        return cls

    def make(self) -> Strategy:
        """A fresh instance, named as the engine names it."""
        spec = self.spec
        strategy = self.strategy_cls(dict(self.params))
        strategy.component_name = spec.name  # as the engine does
        return strategy


# -- the checks ------------------------------------------------------------------------


def run_select(strategy: Strategy, view: PoolView, budget: int, seed: int = 0) -> Any:
    """``strategy.select`` seeded as the engine seeds it (numpy generator and torch),
    without touching the caller's global torch RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return strategy.select(view, budget, np.random.default_rng(seed))


def _who(strategy: Strategy | str) -> str:
    if isinstance(strategy, str):
        return strategy
    return strategy.component_name or type(strategy).__name__


def check_selection(chosen: Any, view: PoolView, budget: int, strategy: Strategy | str = "") -> np.ndarray:
    """A valid selection: 1-D integer indices, ``budget`` of them, unique, all in
    ``view.unlabeled`` and none in ``view.labeled``; returns them as int64.

    Raises:
        SelectionError: :func:`~alscope.strategies.base.validate_selection` rejects it.
        AssertionError: a labeled index was returned.
    """
    who = _who(strategy)
    arr = validate_selection(chosen, view.unlabeled, budget, who)
    assert arr.dtype == np.int64 and arr.ndim == 1
    relabeled = arr[np.isin(arr, view.labeled)]
    assert len(relabeled) == 0, f"strategy {who!r} returned labeled indices {relabeled[:5].tolist()}"
    return arr


def check_requirements(strategy: Strategy) -> Requirements:
    """``requirements()`` returns a :class:`Requirements` with sane values."""
    req = strategy.requirements()
    who = _who(strategy)
    assert isinstance(req, Requirements), (
        f"strategy {who!r}: requirements() returned {type(req).__name__}, not Requirements"
    )
    assert isinstance(req.mc_samples, int) and req.mc_samples >= 0, (
        f"strategy {who!r}: mc_samples={req.mc_samples!r} must be a non-negative int"
    )
    assert all(isinstance(x, str) and x for x in req.extra_outputs), (
        f"strategy {who!r}: extra_outputs must be non-empty names, got {req.extra_outputs!r}"
    )
    if req.extra_outputs:
        assert strategy.training_hooks() is not None, (
            f"strategy {who!r} declares extra_outputs {req.extra_outputs} but returns no "
            f"training hooks to compute them"
        )
    return req


def check_spec(spec: ComponentSpec) -> None:
    """The spec shows what ``alscope list``/``info`` need: a summary and, except for
    the random baseline, a paper."""
    assert isinstance(spec.summary, str) and spec.summary.strip(), f"strategy {spec.name!r} has no summary"
    if spec.name != "random":
        assert isinstance(spec.paper, str) and spec.paper.strip(), f"strategy {spec.name!r} names no paper"


def check_params_schema(strategy_cls: type[Strategy], params: Mapping[str, Any] | None = None) -> None:
    """``Params`` is a pydantic model that accepts ``params``, rejects unknown keys
    (so a typo in ``--strategy-param`` is an error, not silently ignored) and can be
    tabulated by ``alscope info``."""
    from pydantic import BaseModel

    schema = strategy_cls.Params
    assert isinstance(schema, type) and issubclass(schema, BaseModel), (
        f"{strategy_cls.__name__}.Params must be a pydantic model (subclass alscope.components.Params)"
    )
    strategy_cls(dict(params or {}))
    try:
        strategy_cls({**(params or {}), "surely_not_a_parameter_name": 1})
    except ConfigError:
        pass
    else:
        raise AssertionError(
            f"{strategy_cls.__name__}.Params accepts unknown keys; subclass "
            f"{Params.__module__}.Params (extra='forbid')"
        )
    rows = strategy_cls.parameter_table()
    assert len(rows) == len(schema.model_fields)


def check_deterministic(
    make_strategy: Callable[[], Strategy], view: PoolView, budget: int, seed: int = 0
) -> np.ndarray:
    """Two fresh instances given the same seed pick the same indices in the same order."""
    first = make_strategy()
    a = check_selection(run_select(first, view, budget, seed), view, budget, first)
    second = make_strategy()
    b = check_selection(run_select(second, view, budget, seed), view, budget, second)
    assert np.array_equal(a, b), (
        f"strategy {_who(first)!r} is not deterministic for seed {seed}: "
        f"{a[:10].tolist()} vs {b[:10].tolist()} (draw randomness from the rng argument)"
    )
    return a


def check_budget_rejected(strategy: Strategy, view: PoolView, seed: int = 0) -> None:
    """``strategy.query`` refuses a budget above the unlabeled count (and 0) with
    :class:`~alscope.errors.BudgetError`."""
    for budget in (view.n_unlabeled + 1, 0):
        try:
            strategy.query(view, budget, seed)
        except BudgetError:
            continue
        raise AssertionError(
            f"strategy {_who(strategy)!r} accepted budget {budget} with {view.n_unlabeled} unlabeled samples"
        )


#: sampled predictions per sample in the large-pool time guard
LARGE_POOL_MC_SAMPLES = 20


def check_large_pool(
    strategy: Strategy,
    n: int = 10_000,
    n_classes: int = 10,
    budget: int = 100,
    time_limit: float = 30.0,
    dim: int = 32,
    seed: int = 0,
) -> float:
    """A selection from an ``n``-sample pool completes within ``time_limit`` seconds
    (a sanity guard against accidental O(N^3) code, not a benchmark); returns seconds.

    The guard is about the pool size: sampled predictions are capped at
    :data:`LARGE_POOL_MC_SAMPLES` per sample, since a strategy's cost is linear in their
    number K by construction (BatchBALD's default K = 100 would otherwise time the K, not
    the N)."""
    requirements = strategy.requirements()
    if requirements.mc_samples > LARGE_POOL_MC_SAMPLES:
        requirements = replace(requirements, mc_samples=LARGE_POOL_MC_SAMPLES)
    view = make_pool_view(requirements, n, n_classes, dim=dim, seed=seed)
    start = time.perf_counter()
    chosen = run_select(strategy, view, budget, seed)
    elapsed = time.perf_counter() - start
    check_selection(chosen, view, budget, strategy)
    assert elapsed <= time_limit, (
        f"strategy {_who(strategy)!r} took {elapsed:.1f} s for {budget} of {view.n_unlabeled} "
        f"samples (limit {time_limit:.0f} s)"
    )
    return elapsed


# -- the pytest template ---------------------------------------------------------------


class StrategyConformance:
    """Conformance tests for one strategy; subclass it as ``Test...`` and set the name.

    Attributes:
        strategy_name: the registered name (any accepted spelling, or ``ns:name``).
        strategy_params: parameters the strategy is built with.
        large_pool_size: pool size of the time-bound test.
        large_pool_time_limit: seconds the large-pool selection may take.

    Override :meth:`conformance_registry` to resolve the name somewhere other than the
    installed plugins (see :func:`plugin_registry`), or the ``case`` fixture to run the
    suite over several strategies (``tests/core/test_conformance.py`` does).
    """

    strategy_name: ClassVar[str] = ""
    strategy_params: ClassVar[Mapping[str, Any]] = {}
    large_pool_size: ClassVar[int] = 10_000
    large_pool_time_limit: ClassVar[float] = 30.0

    def conformance_registry(self) -> Registry:
        return get_registry()

    @pytest.fixture
    def case(self) -> StrategyCase:
        if not self.strategy_name:
            pytest.fail(f"{type(self).__name__} must set strategy_name")
        return StrategyCase(self.strategy_name, dict(self.strategy_params), self.conformance_registry())

    # metadata

    def test_resolves_to_a_strategy_class(self, case: StrategyCase) -> None:
        assert issubclass(case.strategy_cls, Strategy)

    def test_requirements(self, case: StrategyCase) -> None:
        check_requirements(case.make())

    def test_spec_metadata(self, case: StrategyCase) -> None:
        check_spec(case.spec)

    def test_params_schema(self, case: StrategyCase) -> None:
        check_params_schema(case.strategy_cls, case.params)

    # selections

    @pytest.mark.parametrize("n_classes", [2, 10], ids=["binary", "multiclass"])
    def test_selection_is_valid(self, case: StrategyCase, n_classes: int) -> None:
        strategy = case.make()
        view = make_pool_view(strategy.requirements(), n=120, n_classes=n_classes, seed=1)
        chosen = run_select(strategy, view, 10, seed=0)
        check_selection(chosen, view, 10, strategy)

    def test_never_returns_labeled(self, case: StrategyCase) -> None:
        strategy = case.make()
        view = make_pool_view(strategy.requirements(), n=60, n_classes=3, n_labeled=45, seed=2)
        chosen = check_selection(run_select(strategy, view, 12, seed=0), view, 12, strategy)
        assert not np.isin(chosen, view.labeled).any()

    def test_deterministic_for_seed(self, case: StrategyCase) -> None:
        view = make_pool_view(case.make().requirements(), n=150, n_classes=4, seed=3)
        for seed in (0, 7):
            check_deterministic(case.make, view, 15, seed=seed)

    def test_budget_one(self, case: StrategyCase) -> None:
        strategy = case.make()
        view = make_pool_view(strategy.requirements(), n=50, n_classes=3, seed=4)
        check_selection(run_select(strategy, view, 1, seed=0), view, 1, strategy)

    def test_budget_all_unlabeled(self, case: StrategyCase) -> None:
        strategy = case.make()
        view = make_pool_view(strategy.requirements(), n=40, n_classes=3, seed=5)
        chosen = check_selection(
            run_select(strategy, view, view.n_unlabeled, seed=0), view, view.n_unlabeled, strategy
        )
        assert set(chosen.tolist()) == set(view.unlabeled.tolist())

    def test_budget_too_large_rejected(self, case: StrategyCase) -> None:
        strategy = case.make()
        view = make_pool_view(strategy.requirements(), n=30, n_classes=3, seed=6)
        check_budget_rejected(strategy, view)

    def test_query_entry_point(self, case: StrategyCase) -> None:
        strategy = case.make()
        view = make_pool_view(strategy.requirements(), n=80, n_classes=5, seed=7)
        picked = strategy.query(view, 8, seed=0)
        check_selection(picked, view, 8, strategy)

    def test_cold_start_without_labeled_samples(self, case: StrategyCase) -> None:
        """Strategies that need no trained model may pick the first batch (``--n-initial 0``)."""
        strategy = case.make()
        req = strategy.requirements()
        if req.needs_trained_model:
            pytest.skip(f"{case.name} needs a trained model, so it never runs at cold start")
        view = make_pool_view(req, n=60, n_classes=3, n_labeled=0, seed=8)
        view.labeled_embeddings = None  # what the engine gives before anything is labeled
        check_selection(run_select(strategy, view, 10, seed=0), view, 10, strategy)

    def test_open_set_pool_with_labeled_ood(self, case: StrategyCase) -> None:
        """Labeled samples answered "out of distribution" (``OOD``) are not a class: every
        strategy copes with them in ``labeled_targets``."""
        strategy = case.make()
        view = make_pool_view(
            strategy.requirements(), n=120, n_classes=4, n_labeled=30, n_ood_labeled=8, seed=9
        )
        check_selection(run_select(strategy, view, 10, seed=0), view, 10, strategy)

    def test_large_pool_within_time_bound(self, case: StrategyCase) -> None:
        check_large_pool(case.make(), n=self.large_pool_size, time_limit=self.large_pool_time_limit)
