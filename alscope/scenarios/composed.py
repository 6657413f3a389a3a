"""Scenarios composed: ``--scenario openset+imbalanced`` is an open-set pool whose known
classes are long-tailed.

Each part refines the setting the previous parts made (:meth:`Scenario.refine`), in the
parts' ``composition_order`` whatever order the user wrote them in, so that
``imbalanced+openset`` and ``openset+imbalanced`` are the same experiment. The parameters of
all parts are given together; each goes to the part whose schema has it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field

from alscope.components import Params, validate_params
from alscope.errors import ConfigError
from alscope.scenarios import composition_name
from alscope.scenarios.base import PreparedScenario, Scenario

if TYPE_CHECKING:
    from alscope.registry import Registry


class ComposedParams(Params):
    # the parts' own parameters ride along and are validated by each part
    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

    parts: list[str] = Field(min_length=2, description="the scenarios to compose, e.g. [openset, imbalanced]")


class ComposedScenario(Scenario):
    """Several scenarios applied one after another (open set, then imbalance, then noise)."""

    Params = ComposedParams
    component_name = "composed"

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.parts: list[Scenario] = []

    def resolve_parts(self, registry: Registry | None = None) -> None:
        """Find, check and parametrise the parts (the engine passes its registry; library
        use falls back to the installed one)."""
        from alscope.registry import get_registry

        registry = registry or get_registry()
        given: dict[str, Any] = dict(self.params.model_extra or {})
        parts: list[Scenario] = []
        seen: set[str] = set()
        for name in self.params.parts:
            spec = registry.resolve("scenario", name)
            if spec.name in seen:
                raise ConfigError(f"scenario {name!r} appears twice in the composition {self._written()}")
            seen.add(spec.name)
            cls = registry.load_spec("scenario", spec)
            if cls is ComposedScenario:
                raise ConfigError("a composed scenario cannot contain another composition")
            if not cls.composable():
                raise ConfigError(
                    f"scenario {spec.name!r} cannot be composed with others: it makes its setting from the "
                    f"dataset alone (it implements prepare, not refine); run it on its own"
                )
            own = {k: given[k] for k in cls.Params.model_fields if k in given}
            part = cls(validate_params(cls.Params, own, f"scenario {spec.name}"))
            part.component_name = spec.name
            parts.append(part)
        accepted = {k for part in parts for k in type(part).Params.model_fields}
        unknown = sorted(set(given) - accepted)
        if unknown:
            raise ConfigError(
                f"scenario {self._written()}: unknown parameter(s) {', '.join(map(repr, unknown))} "
                f"(accepted: {', '.join(sorted(accepted)) or '(none)'})"
            )
        # sorted() is stable: parts of equal order keep the order the user gave
        self.parts = sorted(parts, key=lambda part: part.composition_order)

    def _written(self) -> str:
        return composition_name(self.params.parts)

    def refine(self, setting: PreparedScenario, seed: int) -> PreparedScenario:
        if not self.parts:
            self.resolve_parts()
        for i, part in enumerate(self.parts):
            # each part draws from its own stream (the seed offset by its place in the order),
            # so no two parts share random draws
            setting = part.refine(setting, seed + 7919 * i)
        setting.info = {**setting.info, "composition": [part.component_name for part in self.parts]}
        return setting
