"""The component registry: discovers plugins, resolves names, loads targets lazily.

Plugins are found through the entry-point group ``alscope`` (the core registers its
own components the same way). Name lookup ignores case, ``-``, ``_`` and spaces, knows
aliases, accepts a ``namespace:name`` qualifier to pick between plugins that register
the same name, and suggests the closest names for an unknown one.
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

import pluggy

from alscope import hookspecs
from alscope.errors import AmbiguousComponentError, RegistryError, UnknownComponentError
from alscope.known_names import provided_elsewhere
from alscope.specs import KINDS, ComponentKind, ComponentSpec

ENTRY_POINT_GROUP = "alscope"

_HOOK_OF_KIND: dict[ComponentKind, str] = {
    "strategy": "alscope_register_strategies",
    "dataset": "alscope_register_datasets",
    "backbone": "alscope_register_backbones",
    "scenario": "alscope_register_scenarios",
    "stopping": "alscope_register_stopping",
}


class PluginWarning(UserWarning):
    """A plugin could not be loaded or returned something unusable; the rest keeps working."""


def normalize(name: str) -> str:
    """The lookup key of a name: lower case without ``-``, ``_``, ``.`` and spaces."""
    return re.sub(r"[-_.\s]", "", name.lower())


@dataclass(frozen=True)
class PluginInfo:
    namespace: str
    distribution: str
    module: str


class Registry:
    """All components of all installed plugins.

    Args:
        plugins: extra plugins to register, as ``{namespace: module}`` (tests, notebooks).
        load_entry_points: discover installed plugins through the ``alscope`` group.
    """

    def __init__(
        self,
        plugins: Mapping[str, ModuleType | object] | None = None,
        *,
        load_entry_points: bool = True,
    ) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        if load_entry_points:
            self._load_entry_points()
        for namespace, module in (plugins or {}).items():
            self._register(module, namespace, distribution="(registered in code)")
        self._specs: dict[ComponentKind, list[ComponentSpec]] = {k: [] for k in KINDS}
        for kind in KINDS:
            self._collect(kind)

    # -- discovery ---------------------------------------------------------------

    def _load_entry_points(self) -> None:
        seen: dict[str, str] = {}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else "(unknown distribution)"
            if ep.name in seen:
                # The same distribution visible twice on sys.path (an editable install next
                # to a built one) is not a conflict; two distributions sharing a namespace is.
                if seen[ep.name] != dist:
                    warnings.warn(
                        f"plugin namespace {ep.name!r} is used by both {seen[ep.name]} and {dist}; "
                        f"{dist}'s components are unavailable until one is renamed or uninstalled",
                        PluginWarning,
                        stacklevel=2,
                    )
                continue
            seen[ep.name] = dist
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin must not break the others
                warnings.warn(
                    f"plugin {ep.name!r} from {dist} could not be imported "
                    f"({type(exc).__name__}: {exc}); its components are unavailable",
                    PluginWarning,
                    stacklevel=2,
                )
                continue
            self._register(module, ep.name, dist)

    def _register(self, module: ModuleType | object, namespace: str, distribution: str) -> None:
        if namespace in self.plugins:
            raise RegistryError(f"two plugins use the namespace {namespace!r}")
        self._pm.register(module, name=namespace)
        self.plugins[namespace] = PluginInfo(
            namespace, distribution, getattr(module, "__name__", repr(module))
        )

    def _collect(self, kind: ComponentKind) -> None:
        hook = getattr(self._pm.hook, _HOOK_OF_KIND[kind])
        for impl in hook.get_hookimpls():
            info = self.plugins[impl.plugin_name]
            try:
                specs = list(impl.function() or [])
            except Exception as exc:
                warnings.warn(
                    f"plugin {info.namespace!r} from {info.distribution} failed in "
                    f"{_HOOK_OF_KIND[kind]} ({type(exc).__name__}: {exc})",
                    PluginWarning,
                    stacklevel=2,
                )
                continue
            for spec in specs:
                if not isinstance(spec, ComponentSpec):
                    warnings.warn(
                        f"plugin {info.namespace!r} returned {spec!r} from "
                        f"{_HOOK_OF_KIND[kind]}, which is not a ComponentSpec; ignored",
                        PluginWarning,
                        stacklevel=2,
                    )
                    continue
                self._specs[kind].append(spec.with_origin(info.namespace, info.distribution))

    # -- lookup --------------------------------------------------------------------

    def specs(self, kind: ComponentKind) -> list[ComponentSpec]:
        """Every registered spec of a kind, sorted by name then namespace."""
        return sorted(self._specs[kind], key=lambda s: (s.name, s.namespace))

    def names(self, kind: ComponentKind) -> list[str]:
        """Names that resolve unambiguously, qualified where two plugins share a name."""
        counts: dict[str, int] = {}
        for spec in self._specs[kind]:
            counts[normalize(spec.name)] = counts.get(normalize(spec.name), 0) + 1
        return sorted(
            s.qualified_name if counts[normalize(s.name)] > 1 else s.name for s in self._specs[kind]
        )

    def resolve(self, kind: ComponentKind, name: str) -> ComponentSpec:
        """The spec a user-typed name means.

        Raises:
            UnknownComponentError: nothing matches; suggests the closest names.
            AmbiguousComponentError: several plugins register the name.
        """
        namespace, sep, bare = name.rpartition(":")
        candidates = self._specs[kind]
        if sep:
            ns = normalize(namespace)
            candidates = [
                s for s in candidates if normalize(s.namespace) == ns or normalize(s.distribution) == ns
            ]
            if not candidates:
                known = sorted({s.namespace for s in self._specs[kind]})
                raise UnknownComponentError(
                    f"{kind} namespace",
                    namespace,
                    difflib.get_close_matches(namespace, known, n=3, cutoff=0.5),
                    known,
                )
        key = normalize(bare)
        matches = [s for s in candidates if normalize(s.name) == key]
        if not matches:
            matches = [s for s in candidates if key in {normalize(a) for a in s.aliases}]
        if not matches:
            error = UnknownComponentError(kind, name, self.suggest(kind, bare), self.names(kind))
            hint = provided_elsewhere(kind, key)
            if hint is not None:
                error.args = (f"unknown {kind} {name!r}: {hint}",)
            raise error
        if len(matches) > 1:
            who = ", ".join(f"{s.qualified_name!r} from {s.distribution}" for s in matches)
            raise AmbiguousComponentError(
                f"{kind} {name!r} is registered by more than one plugin: {who}; "
                f"pick one with its qualified name"
            )
        return matches[0]

    def resolve_claimed(self, kind: ComponentKind, name: str) -> tuple[ComponentSpec, dict[str, Any]]:
        """Like :meth:`resolve`, but a name no plugin registers may be claimed by one
        (``alscope_claim_name``): returns the spec and the parameters the claim implies."""
        try:
            return self.resolve(kind, name), {}
        except UnknownComponentError as unknown:
            for impl in self._pm.hook.alscope_claim_name.get_hookimpls():
                try:
                    claim = impl.function(kind=kind, name=name)
                except Exception as exc:
                    warnings.warn(
                        f"plugin {impl.plugin_name!r} failed in alscope_claim_name "
                        f"({type(exc).__name__}: {exc})",
                        PluginWarning,
                        stacklevel=2,
                    )
                    continue
                if isinstance(claim, dict) and claim.get("name"):
                    return self.resolve(kind, str(claim["name"])), dict(claim.get("params") or {})
            raise unknown

    def suggest(self, kind: ComponentKind, name: str, n: int = 3) -> list[str]:
        """Canonical names closest to ``name`` (matching names and aliases alike)."""
        by_key: dict[str, str] = {}
        for spec in self._specs[kind]:
            for spelling in (spec.name, *spec.aliases):
                by_key.setdefault(normalize(spelling), spec.name)
        close = difflib.get_close_matches(normalize(name), list(by_key), n=n * 2, cutoff=0.6)
        out: list[str] = []
        for key in close:
            if by_key[key] not in out:
                out.append(by_key[key])
        return out[:n]

    def load(self, kind: ComponentKind, name: str) -> Any:
        """Resolve a name and import its target."""
        return self.load_spec(kind, self.resolve(kind, name))

    def load_spec(self, kind: ComponentKind, spec: ComponentSpec) -> Any:
        """Import a spec's target, turning import problems into :class:`RegistryError`."""
        try:
            return spec.load()
        except (ImportError, AttributeError, ValueError) as exc:
            raise RegistryError(
                f"{kind} {spec.qualified_name!r} from {spec.distribution} cannot be imported: {exc}"
            ) from exc

    def all_specs(self) -> Iterable[tuple[ComponentKind, ComponentSpec]]:
        for kind in KINDS:
            for spec in self.specs(kind):
                yield kind, spec


_default: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry of installed plugins, built on first use."""
    global _default
    if _default is None:
        _default = Registry()
    return _default


def reset_registry() -> None:
    """Forget the cached registry (after installing a plugin in the same process)."""
    global _default
    _default = None
