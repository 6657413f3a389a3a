"""The component registry: plugin discovery, name resolution, errors and lazy loading."""

from __future__ import annotations

import subprocess
import sys
import types
import warnings
from collections.abc import Callable
from typing import Any

import pytest

import alscope.registry as registry_module
from alscope.errors import AmbiguousComponentError, RegistryError, UnknownComponentError
from alscope.hookspecs import hookimpl
from alscope.registry import PluginWarning, Registry, get_registry, normalize
from alscope.specs import (
    KINDS,
    BackboneSpec,
    ComponentSpec,
    DatasetSpec,
    ScenarioSpec,
    StoppingSpec,
    StrategySpec,
)
from alscope.strategies.uncertainty import EntropySampling, MarginSampling

ENTROPY = "alscope.strategies.uncertainty:EntropySampling"
MARGIN = "alscope.strategies.uncertainty:MarginSampling"


def strategy_plugin(*specs: Any) -> types.SimpleNamespace:
    """A plugin object whose strategy hook returns ``specs``."""

    @hookimpl
    def alscope_register_strategies() -> list[Any]:
        return list(specs)

    return types.SimpleNamespace(alscope_register_strategies=alscope_register_strategies)


def raising_plugin(exc: Exception) -> types.SimpleNamespace:
    @hookimpl
    def alscope_register_strategies() -> list[Any]:
        raise exc

    return types.SimpleNamespace(alscope_register_strategies=alscope_register_strategies)


def build(plugins: dict[str, Any], **kw: Any) -> tuple[Registry, list[warnings.WarningMessage]]:
    """A registry without installed plugins, and the warnings building it raised."""
    kw.setdefault("load_entry_points", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg = Registry(plugins=plugins, **kw)
    return reg, list(caught)


def plugin_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]


class FakeDist:
    def __init__(self, name: str) -> None:
        self.name = name


class FakeEntryPoint:
    """What ``importlib.metadata.entry_points`` yields, as far as the registry looks."""

    def __init__(self, name: str, dist: str | None, load: Callable[[], Any]) -> None:
        self.name = name
        self.dist = None if dist is None else FakeDist(dist)
        self._load = load
        self.loads = 0

    def load(self) -> Any:
        self.loads += 1
        return self._load()


def fake_entry_points(monkeypatch: pytest.MonkeyPatch, eps: list[FakeEntryPoint]) -> list[str]:
    groups: list[str] = []

    def entry_points(*, group: str) -> list[FakeEntryPoint]:
        groups.append(group)
        return list(eps)

    monkeypatch.setattr(registry_module, "entry_points", entry_points)
    return groups


# -- normalisation and lookup ------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "key"),
    [
        ("Entropy", "entropy"),
        ("least-confidence", "leastconfidence"),
        ("LEAST_CONFIDENCE", "leastconfidence"),
        ("least confidence", "leastconfidence"),
        ("a.b-c_d e", "abcde"),
    ],
)
def test_normalize(typed: str, key: str) -> None:
    assert normalize(typed) == key


@pytest.mark.parametrize(
    "typed",
    ["my_entropy", "MY_ENTROPY", "My-Entropy", "myentropy", "my entropy", "mY_-eNtRoPy"],
)
def test_lookup_ignores_case_dashes_and_underscores(typed: str) -> None:
    reg, caught = build({"ns": strategy_plugin(StrategySpec("my_entropy", ENTROPY, "e"))})
    assert plugin_warnings(caught) == []
    spec = reg.resolve("strategy", typed)
    assert spec.name == "my_entropy"
    assert spec.namespace == "ns"
    assert spec.distribution == "(registered in code)"
    assert spec.qualified_name == "ns:my_entropy"
    assert reg.load("strategy", typed) is EntropySampling


def test_alias_lookup_in_a_plugin_registry() -> None:
    spec = StrategySpec("my_entropy", ENTROPY, "e", aliases=("MaxEnt", "Shannon-Sampling"))
    reg, _ = build({"ns": strategy_plugin(spec)})
    assert reg.resolve("strategy", "maxent").name == "my_entropy"
    assert reg.resolve("strategy", "shannon_sampling").name == "my_entropy"
    assert reg.resolve("strategy", "ns:MaxEnt").name == "my_entropy"


def test_name_match_wins_over_an_alias_of_another_component() -> None:
    a = StrategySpec("alpha", ENTROPY, "a", aliases=("beta",))
    b = StrategySpec("beta", MARGIN, "b")
    reg, _ = build({"ns": strategy_plugin(a, b)})
    assert reg.resolve("strategy", "beta").name == "beta"
    assert reg.load("strategy", "beta") is MarginSampling


def test_specs_and_names_are_sorted_and_per_kind() -> None:
    reg, _ = build(
        {"ns": strategy_plugin(StrategySpec("zeta", ENTROPY, "z"), StrategySpec("alpha", MARGIN, "a"))}
    )
    assert [s.name for s in reg.specs("strategy")] == ["alpha", "zeta"]
    assert reg.names("strategy") == ["alpha", "zeta"]
    for kind in KINDS:
        if kind != "strategy":
            assert reg.specs(kind) == []
    pairs = [(k, s.name) for k, s in reg.all_specs()]
    assert pairs == [("strategy", "alpha"), ("strategy", "zeta")]
    assert set(reg.plugins) == {"ns"}


def test_kinds_are_separate() -> None:
    class Plugin:
        @hookimpl
        def alscope_register_strategies(self) -> list[ComponentSpec]:
            return [StrategySpec("thing", ENTROPY, "a strategy")]

        @hookimpl
        def alscope_register_datasets(self) -> list[ComponentSpec]:
            return [DatasetSpec("thing", "alscope.data.tabular:Digits", "a dataset")]

        @hookimpl
        def alscope_register_backbones(self) -> list[ComponentSpec]:
            return [BackboneSpec("thing", "alscope.models.mlp:MLP", "a backbone")]

        @hookimpl
        def alscope_register_scenarios(self) -> list[ComponentSpec]:
            return [ScenarioSpec("thing", "alscope.scenarios.standard:StandardScenario", "s")]

        @hookimpl
        def alscope_register_stopping(self) -> list[ComponentSpec]:
            return [StoppingSpec("thing", "alscope.stopping.criteria:StabilizingPredictions", "a criterion")]

    reg, caught = build({"p": Plugin()})
    assert plugin_warnings(caught) == []
    for kind in KINDS:
        specs = reg.specs(kind)
        assert len(specs) == 1, kind
        assert reg.resolve(kind, "thing") is specs[0]
    assert reg.resolve("dataset", "thing").target == "alscope.data.tabular:Digits"
    from alscope.models.mlp import MLP

    assert reg.load("backbone", "thing") is MLP


# -- the real registry ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "typed", "name"),
    [
        ("strategy", "Entropy", "entropy"),
        ("strategy", "EntropySampling", "entropy"),
        ("strategy", "UncertaintyEntropy", "entropy"),
        ("strategy", "entropy-sampling", "entropy"),
        ("strategy", "CONF", "least_confidence"),
        ("strategy", "least-confidence", "least_confidence"),
        ("strategy", "LeastConfidence", "least_confidence"),
        ("strategy", "MarginSampling", "margin"),
        ("strategy", "core:margin", "margin"),
        ("strategy", "RandomSampling", "random"),
        ("dataset", "DIGITS", "digits"),
        ("dataset", "sklearn-digits", "digits"),
        ("dataset", "csv", "features"),
        ("backbone", "MLP", "mlp"),
        ("scenario", "default", "standard"),
    ],
)
def test_aliases_of_the_core(kind: str, typed: str, name: str) -> None:
    spec = get_registry().resolve(kind, typed)  # type: ignore[arg-type]
    assert spec.name == name
    assert spec.namespace == "core"


def test_core_targets_load() -> None:
    reg = get_registry()
    assert reg.load("strategy", "Entropy") is EntropySampling
    assert reg.load("strategy", "MarginSampling") is MarginSampling
    from alscope.data.tabular import Digits
    from alscope.models.mlp import MLP

    assert reg.load("dataset", "DIGITS") is Digits
    assert reg.load("backbone", "MLP") is MLP


def test_did_you_mean() -> None:
    reg = get_registry()
    assert reg.suggest("strategy", "entrpy")[0] == "entropy"
    with pytest.raises(UnknownComponentError) as info:
        reg.resolve("strategy", "entrpy")
    err = info.value
    assert isinstance(err, RegistryError)
    assert err.kind == "strategy"
    assert err.name == "entrpy"
    assert err.suggestions[0] == "entropy"
    assert str(err).startswith("unknown strategy 'entrpy'; did you mean 'entropy'")
    assert str(err).endswith("?")


def test_suggestions_are_canonical_names_without_duplicates() -> None:
    # 'marginsampl' is closest to the alias 'MarginSampling'; the suggestion is the name.
    sugg = get_registry().suggest("strategy", "marginsampl")
    assert sugg[0] == "margin"
    assert len(sugg) == len(set(sugg))
    assert all(s in get_registry().names("strategy") for s in sugg)


def test_unknown_without_close_match_lists_known_names() -> None:
    with pytest.raises(UnknownComponentError) as info:
        get_registry().resolve("strategy", "qqqqqqqqqqqq")
    err = info.value
    assert err.suggestions == []
    msg = str(err)
    assert "did you mean" not in msg
    for name in ("entropy", "least_confidence", "margin", "random"):
        assert name in msg


def test_unknown_in_an_empty_registry() -> None:
    reg, _ = build({})
    with pytest.raises(UnknownComponentError, match=r"\(none installed\)"):
        reg.resolve("strategy", "entropy")


def test_torch_is_not_imported_by_cli_and_specs() -> None:
    code = (
        "import sys, alscope.cli; from alscope.registry import get_registry; "
        "get_registry().specs('strategy'); assert 'torch' not in sys.modules, 'torch imported'"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr


# -- conflicts and namespaces --------------------------------------------------------------


def two_plugins() -> Registry:
    reg, caught = build(
        {
            "first": strategy_plugin(StrategySpec("dup", ENTROPY, "from first")),
            "second": strategy_plugin(StrategySpec("dup", MARGIN, "from second")),
        }
    )
    assert plugin_warnings(caught) == []
    return reg


def test_same_name_in_two_plugins_is_ambiguous() -> None:
    reg = two_plugins()
    with pytest.raises(AmbiguousComponentError) as info:
        reg.resolve("strategy", "dup")
    msg = str(info.value)
    assert "first:dup" in msg
    assert "second:dup" in msg
    assert "qualified" in msg
    assert isinstance(info.value, RegistryError)
    with pytest.raises(AmbiguousComponentError):
        reg.load("strategy", "DUP")


def test_qualified_name_picks_one_plugin() -> None:
    reg = two_plugins()
    assert reg.resolve("strategy", "first:dup").summary == "from first"
    assert reg.resolve("strategy", "second:dup").summary == "from second"
    assert reg.resolve("strategy", "SECOND:Dup").namespace == "second"
    assert reg.load("strategy", "first:dup") is EntropySampling
    assert reg.load("strategy", "second:dup") is MarginSampling


def test_names_qualify_only_shared_names() -> None:
    reg, _ = build(
        {
            "first": strategy_plugin(StrategySpec("dup", ENTROPY, "1"), StrategySpec("solo", ENTROPY, "s")),
            "second": strategy_plugin(StrategySpec("Dup", MARGIN, "2")),
        }
    )
    assert reg.names("strategy") == ["first:dup", "second:Dup", "solo"]
    for name in reg.names("strategy"):
        reg.resolve("strategy", name)  # every listed name resolves unambiguously


def test_unknown_namespace() -> None:
    reg = two_plugins()
    with pytest.raises(UnknownComponentError) as info:
        reg.resolve("strategy", "third:dup")
    msg = str(info.value)
    assert "namespace" in msg
    assert "'third'" in msg
    assert "first" in msg and "second" in msg


def test_unknown_namespace_suggests_a_close_one() -> None:
    reg = two_plugins()
    with pytest.raises(UnknownComponentError) as info:
        reg.resolve("strategy", "secnd:dup")
    assert info.value.suggestions == ["second"]
    assert "did you mean 'second'" in str(info.value)


def test_known_namespace_unknown_name() -> None:
    reg = two_plugins()
    with pytest.raises(UnknownComponentError, match="unknown strategy 'first:dupp'"):
        reg.resolve("strategy", "first:dupp")


def test_namespace_of_an_other_kind_does_not_leak() -> None:
    reg = two_plugins()
    with pytest.raises(UnknownComponentError):
        reg.resolve("dataset", "first:dup")


# -- broken plugins --------------------------------------------------------------------------


def test_a_raising_hook_warns_once_and_the_others_still_resolve() -> None:
    reg, caught = build(
        {
            "broken": raising_plugin(RuntimeError("boom")),
            "good": strategy_plugin(StrategySpec("fine", ENTROPY, "works")),
        }
    )
    msgs = plugin_warnings(caught)
    assert len(msgs) == 1
    assert "'broken'" in msgs[0]
    assert "alscope_register_strategies" in msgs[0]
    assert "RuntimeError: boom" in msgs[0]
    assert reg.load("strategy", "fine") is EntropySampling
    assert [s.name for s in reg.specs("strategy")] == ["fine"]


def test_a_non_spec_is_ignored_with_a_warning() -> None:
    good = StrategySpec("good", ENTROPY, "works")
    reg, caught = build({"odd": strategy_plugin("not a spec", good, {"name": "dict"})})
    msgs = plugin_warnings(caught)
    assert len(msgs) == 2
    assert all("'odd'" in m and "not a ComponentSpec" in m for m in msgs)
    assert "'not a spec'" in msgs[0]
    assert [s.name for s in reg.specs("strategy")] == ["good"]


def test_a_hook_returning_none_registers_nothing_silently() -> None:
    @hookimpl
    def alscope_register_strategies() -> None:
        return None

    quiet = types.SimpleNamespace(alscope_register_strategies=alscope_register_strategies)
    reg, caught = build({"quiet": quiet})
    assert plugin_warnings(caught) == []
    assert reg.specs("strategy") == []
    assert "quiet" in reg.plugins


def test_a_broken_entry_point_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail() -> Any:
        raise ImportError("No module named 'missing_dep'")

    good = FakeEntryPoint("good", "alscope-good", lambda: strategy_plugin(StrategySpec("fine", ENTROPY, "x")))
    bad = FakeEntryPoint("badplug", "alscope-bad", fail)
    groups = fake_entry_points(monkeypatch, [bad, good])
    reg, caught = build({}, load_entry_points=True)
    assert groups == ["alscope"]
    msgs = plugin_warnings(caught)
    assert len(msgs) == 1
    assert "'badplug'" in msgs[0]
    assert "alscope-bad" in msgs[0]
    assert "ImportError" in msgs[0]
    assert "missing_dep" in msgs[0]
    assert set(reg.plugins) == {"good"}
    assert reg.plugins["good"].distribution == "alscope-good"
    spec = reg.resolve("strategy", "fine")
    assert (spec.namespace, spec.distribution) == ("good", "alscope-good")


def test_an_entry_point_without_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = FakeEntryPoint("anon", None, lambda: strategy_plugin(StrategySpec("fine", ENTROPY, "x")))
    fake_entry_points(monkeypatch, [ep])
    reg, caught = build({}, load_entry_points=True)
    assert plugin_warnings(caught) == []
    assert reg.resolve("strategy", "fine").distribution == "(unknown distribution)"


def test_a_duplicated_entry_point_is_loaded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = strategy_plugin(StrategySpec("fine", ENTROPY, "x"))
    first = FakeEntryPoint("twice", "alscope-twice", lambda: plugin)
    second = FakeEntryPoint("twice", "alscope-twice", lambda: plugin)
    fake_entry_points(monkeypatch, [first, second])
    reg, caught = build({}, load_entry_points=True)
    assert plugin_warnings(caught) == []
    assert (first.loads, second.loads) == (1, 0)
    assert reg.resolve("strategy", "fine").namespace == "twice"  # not ambiguous


def test_distribution_name_works_as_a_qualifier(monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = strategy_plugin(StrategySpec("dup", MARGIN, "x"))
    fake_entry_points(monkeypatch, [FakeEntryPoint("ex", "alscope-example", lambda: plugin)])
    other = strategy_plugin(StrategySpec("dup", ENTROPY, "y"))
    reg, _ = build({"other": other}, load_entry_points=True)
    assert reg.resolve("strategy", "alscope_example:dup").namespace == "ex"
    assert reg.resolve("strategy", "ex:dup").namespace == "ex"


def test_a_namespace_used_twice_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = FakeEntryPoint("same", "alscope-same", lambda: strategy_plugin())
    fake_entry_points(monkeypatch, [ep])
    with pytest.raises(RegistryError, match="'same'"):
        Registry(plugins={"same": strategy_plugin()}, load_entry_points=True)


def test_no_entry_points_when_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    groups = fake_entry_points(monkeypatch, [])
    build({}, load_entry_points=False)
    assert groups == []


# -- lazy loading ----------------------------------------------------------------------------


def test_targets_are_imported_only_by_load() -> None:
    module = "alscope_test_no_such_module_xyz"
    reg, caught = build({"lazy": strategy_plugin(StrategySpec("ghost", f"{module}:Ghost", "g"))})
    assert plugin_warnings(caught) == []
    spec = reg.resolve("strategy", "ghost")
    assert spec.target == f"{module}:Ghost"
    assert module not in sys.modules
    with pytest.raises(RegistryError) as info:
        reg.load("strategy", "ghost")
    msg = str(info.value)
    assert "lazy:ghost" in msg
    assert "cannot be imported" in msg
    assert module in msg


def test_spec_load_follows_dotted_attributes() -> None:
    spec = ComponentSpec("x", "alscope.strategies.uncertainty:EntropySampling.Params", "x")
    assert spec.load() is EntropySampling.Params
    bad = ComponentSpec("x", "alscope.strategies.uncertainty.EntropySampling", "x")
    with pytest.raises(ValueError, match="module:attr"):
        bad.load()


def test_a_missing_target_attribute_is_a_registry_error() -> None:
    target = "alscope.strategies.uncertainty:NoSuchClass"
    reg, _ = build({"ns": strategy_plugin(StrategySpec("ghost", target, "g"))})
    with pytest.raises(RegistryError, match="ns:ghost"):
        reg.load("strategy", "ghost")


def test_spec_with_origin_keeps_everything_else() -> None:
    spec = StrategySpec("e", ENTROPY, "sum", aliases=("E",), needs=("probs",), paper="p")
    moved = spec.with_origin("ns", "dist")
    assert (moved.namespace, moved.distribution) == ("ns", "dist")
    assert (moved.name, moved.target, moved.aliases, moved.needs, moved.paper) == (
        "e",
        ENTROPY,
        ("E",),
        ("probs",),
        "p",
    )
    assert spec.namespace == ""
    assert spec.qualified_name == "e"
    assert moved.qualified_name == "ns:e"


def test_names_provided_elsewhere_are_what_those_distributions_register() -> None:
    """Every hint of the known-names table points at a real distribution: with it installed,
    the name resolves to a component of that distribution (a stale row would send a user
    to install something that does not provide the name, or that does not exist)."""
    from importlib.metadata import PackageNotFoundError, distribution

    from alscope.known_names import PROVIDED_ELSEWHERE

    registry = get_registry()
    checked = 0
    for kind, table in PROVIDED_ELSEWHERE.items():
        for key, (canonical, source) in table.items():
            try:
                distribution(source)
            except PackageNotFoundError:
                pytest.fail(f"{kind} {key!r}: {source!r} is not a distribution that exists")
            spec = registry.resolve(kind, key)  # type: ignore[arg-type]
            assert spec.distribution == source, (kind, key, spec.distribution)
            assert normalize(spec.name) == normalize(canonical), (kind, key, spec.name)
            checked += 1
    assert checked > 0


def test_names_of_strategies_alscope_lacks_are_unknown_with_suggestions() -> None:
    """A strategy name nobody installs is unknown with the closest names, not "install a
    plugin"."""
    with pytest.raises(UnknownComponentError) as info:
        get_registry().resolve("strategy", "coresett")
    assert "plugin" not in str(info.value)
    assert "coreset" in str(info.value)


@pytest.mark.parametrize(
    ("name", "canonical", "params"),
    [
        ("coremse", "bemps", {}),
        ("CoreMSE", "bemps", {}),
        ("corelog", "bemps", {"score": "log"}),
        ("CoreLog", "bemps", {"score": "log"}),
        ("AlphaMixSampling", "alfa_mix", {}),
        ("alphamix", "alfa_mix", {}),
    ],
)
def test_alscope_names_once_missing_are_installed(name: str, canonical: str, params: dict[str, Any]) -> None:
    """ALScope's --method coremse / corelog / AlphaMixSampling resolve to the core's BEMPS and
    ALFA-Mix (corelog with the log score)."""
    spec, implied = get_registry().resolve_claimed("strategy", name)
    assert (spec.name, implied) == (canonical, params)
