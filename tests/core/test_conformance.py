"""Every registered strategy (the core's and any installed plugin's) runs the
conformance suite; broken strategies prove that the suite catches what it claims to."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import BaseModel

from alscope.errors import BudgetError, ModelError, SelectionError
from alscope.hookspecs import hookimpl
from alscope.registry import Registry
from alscope.specs import StrategySpec
from alscope.strategies.base import PoolView, Requirements, ScoringStrategy, Strategy
from alscope.testing.conformance import (
    StrategyCase,
    StrategyConformance,
    check_budget_rejected,
    check_deterministic,
    check_large_pool,
    check_params_schema,
    check_requirements,
    check_selection,
    check_spec,
    conformance_cases,
    make_pool_view,
    run_select,
)


class TestRegisteredStrategies(StrategyConformance):
    """The whole suite, once per registered strategy name."""

    @pytest.fixture(params=conformance_cases())
    def case(self, request: pytest.FixtureRequest) -> StrategyCase:
        return StrategyCase(request.param)


def test_core_strategies_are_covered() -> None:
    assert {"random", "least_confidence", "margin", "entropy"} <= set(conformance_cases())


# -- make_pool_view -----------------------------------------------------------------


def test_pool_view_holds_only_what_is_declared() -> None:
    view = make_pool_view(Requirements(probs=True), n=50, n_classes=3)
    assert view.probs is not None and view.probs.shape == (view.n_unlabeled, 3)
    assert view.embeddings is None and view.logits is None and view.mc_probs is None
    assert view.labeled_targets is not None and len(view.labeled_targets) == len(view.labeled)


def test_pool_view_shapes_for_everything() -> None:
    req = Requirements(
        probs=True,
        logits=True,
        embeddings=True,
        labeled_embeddings=True,
        labeled_probs=True,
        mc_samples=5,
        extra_outputs=("predicted_loss",),
        model=True,
    )
    view = make_pool_view(req, n=100, n_classes=4, dim=8, n_labeled=30, seed=3)
    u, lab = view.n_unlabeled, len(view.labeled)
    assert (u, lab) == (70, 30)
    assert sorted(np.concatenate([view.unlabeled, view.labeled]).tolist()) == list(range(100))
    assert not np.array_equal(view.unlabeled, np.arange(u)), "labeled rows must be scattered"
    assert view.probs is not None and torch.allclose(view.probs.sum(1), torch.ones(u), atol=1e-5)
    assert view.logits is not None and view.logits.shape == (u, 4)
    assert view.embeddings is not None and view.embeddings.shape == (u, 8)
    assert view.labeled_embeddings is not None and view.labeled_embeddings.shape == (lab, 8)
    assert view.labeled_probs is not None and view.labeled_probs.shape == (lab, 4)
    assert view.mc_probs is not None and view.mc_probs.shape == (u, 5, 4)
    assert torch.allclose(view.mc_probs.sum(-1), torch.ones(u, 5), atol=1e-5)
    assert view.extras["predicted_loss"].shape == (u,)
    assert view.model is not None
    assert set(view.labeled_targets.tolist()) == {0, 1, 2, 3}


def test_pool_view_is_reproducible() -> None:
    req = Requirements(probs=True, embeddings=True)
    a = make_pool_view(req, n=40, n_classes=3, seed=11)
    b = make_pool_view(req, n=40, n_classes=3, seed=11)
    c = make_pool_view(req, n=40, n_classes=3, seed=12)
    assert np.array_equal(a.unlabeled, b.unlabeled)
    assert torch.equal(a.probs, b.probs) and torch.equal(a.embeddings, b.embeddings)
    assert not torch.equal(a.embeddings, c.embeddings)


# -- broken strategies: the suite must fail them ------------------------------------


class Duplicates(Strategy):
    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        return np.repeat(view.unlabeled[:1], budget)


class ReturnsLabeled(Strategy):
    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        return np.concatenate([view.labeled[:1], view.unlabeled[: budget - 1]])


class WrongCount(Strategy):
    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        return view.unlabeled[: budget + 1]


class Positions(ScoringStrategy):
    """Returns positions in the view instead of dataset indices (a classic slip)."""

    def requirements(self) -> Requirements:
        return Requirements(probs=True)

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        return np.argsort(-self.score(view).numpy())[:budget]

    def score(self, view: PoolView) -> torch.Tensor:
        return 1 - view.require("probs", "positions").max(1).values


class FloatIndices(Strategy):
    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        return view.unlabeled[:budget].astype(np.float64)


class GlobalRandom(Strategy):
    """Draws from numpy's global RNG instead of the generator it is given."""

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        return np.random.choice(view.unlabeled, size=budget, replace=False)


class IgnoresBudget(Strategy):
    """Overrides the library entry point and forgets the budget check."""

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        return view.unlabeled[: min(budget, view.n_unlabeled)]

    def query(self, view: PoolView, budget: int, seed: Any = 0) -> np.ndarray:
        return self.select(view, budget, np.random.default_rng(0))


class Undeclared(ScoringStrategy):
    """Reads probabilities without declaring them."""

    def score(self, view: PoolView) -> torch.Tensor:
        return view.require("probs", "undeclared").max(1).values


class Slow(Strategy):
    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        time.sleep(0.2)
        return rng.choice(view.unlabeled, size=budget, replace=False)


class ExtrasWithoutHooks(Strategy):
    def requirements(self) -> Requirements:
        return Requirements(extra_outputs=("predicted_loss",))


class _Loose(BaseModel):  # a plain pydantic model silently ignores unknown keys
    beta: float = 1.0


class LooseParams(Strategy):
    Params = _Loose


_BROKEN = {
    "duplicates": Duplicates,
    "returns_labeled": ReturnsLabeled,
    "wrong_count": WrongCount,
    "positions": Positions,
    "global_random": GlobalRandom,
}


class _BrokenPlugin:
    @hookimpl
    def alscope_register_strategies(self) -> list:
        return [
            StrategySpec(name, f"{__name__}:{cls.__name__}", "broken on purpose", paper="none")
            for name, cls in _BROKEN.items()
        ] + [StrategySpec("no_paper", f"{__name__}:Duplicates", "broken on purpose")]


@pytest.fixture(scope="module")
def broken_registry() -> Registry:
    return Registry(plugins={"broken": _BrokenPlugin()}, load_entry_points=False)


def _view(strategy: Strategy, **kw: Any) -> PoolView:
    return make_pool_view(strategy.requirements(), **{"n": 60, "n_classes": 3, "seed": 0, **kw})


@pytest.mark.parametrize("cls", [Duplicates, ReturnsLabeled, WrongCount, Positions, FloatIndices])
def test_check_selection_catches_invalid_selections(cls: type[Strategy]) -> None:
    strategy = cls()
    view = _view(strategy, n_labeled=30)
    budget = view.n_unlabeled if cls is Positions else 5
    with pytest.raises((AssertionError, SelectionError)):
        check_selection(run_select(strategy, view, budget), view, budget, strategy)


def test_check_selection_passes_a_valid_selection() -> None:
    view = _view(Strategy())
    out = check_selection(list(view.unlabeled[:4]), view, 4, "ok")
    assert out.dtype == np.int64 and out.tolist() == view.unlabeled[:4].tolist()


def test_check_deterministic_catches_global_rng() -> None:
    view = _view(GlobalRandom())
    with pytest.raises(AssertionError, match="not deterministic"):
        check_deterministic(GlobalRandom, view, 10)


def test_check_budget_rejected_catches_missing_check() -> None:
    view = _view(IgnoresBudget())
    with pytest.raises(AssertionError, match="accepted budget"):
        check_budget_rejected(IgnoresBudget(), view)
    check_budget_rejected(Duplicates(), view)  # the base class's query checks


def test_undeclared_reads_fail_on_the_synthetic_view() -> None:
    strategy = Undeclared()
    with pytest.raises(ModelError, match="needs 'probs'"):
        run_select(strategy, _view(strategy), 3)


def test_check_large_pool_catches_slow_strategy() -> None:
    with pytest.raises(AssertionError, match="limit"):
        check_large_pool(Slow(), n=200, budget=5, time_limit=0.05)


def test_check_requirements_and_params_catch_broken_declarations() -> None:
    with pytest.raises(AssertionError, match="training hooks"):
        check_requirements(ExtrasWithoutHooks())
    with pytest.raises(AssertionError, match="unknown keys"):
        check_params_schema(LooseParams)


def test_check_spec_catches_missing_paper(broken_registry: Registry) -> None:
    with pytest.raises(AssertionError, match="no paper"):
        check_spec(broken_registry.resolve("strategy", "no_paper"))
    with pytest.raises(AssertionError, match="no summary"):
        check_spec(StrategySpec("x", "m:x", " ", paper="p"))


@pytest.mark.parametrize(
    ("name", "test"),
    [
        ("duplicates", "test_selection_is_valid"),
        ("returns_labeled", "test_never_returns_labeled"),
        ("wrong_count", "test_query_entry_point"),
        ("positions", "test_budget_all_unlabeled"),
        ("global_random", "test_deterministic_for_seed"),
    ],
)
def test_suite_methods_fail_broken_strategies(broken_registry: Registry, name: str, test: str) -> None:
    """The template's own test methods, called directly on broken strategies."""
    suite = StrategyConformance()
    case = StrategyCase(name, registry=broken_registry)
    method = getattr(suite, test)
    kwargs = {"n_classes": 10} if test == "test_selection_is_valid" else {}
    with pytest.raises((AssertionError, SelectionError, BudgetError)):
        method(case, **kwargs)
