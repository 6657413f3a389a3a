"""Component specifications: what a plugin hook returns.

A spec is cheap to build and import (no torch): it names the component, its aliases,
a one-line summary, its paper, the domains it supports and a ``module:attr`` *target*
that is imported only when the component is used.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from typing import Any, Literal

ComponentKind = Literal["strategy", "dataset", "backbone", "scenario", "stopping"]
KINDS: tuple[ComponentKind, ...] = ("strategy", "dataset", "backbone", "scenario", "stopping")
Domain = Literal["tabular", "image", "text"]
ALL_DOMAINS: tuple[Domain, ...] = ("tabular", "image", "text")


@dataclass(frozen=True)
class ComponentSpec:
    """One registrable component.

    Attributes:
        name: canonical name, e.g. ``"entropy"``.
        target: ``"package.module:attr"``; imported lazily by :meth:`load`.
        summary: one line for ``alscope list``.
        aliases: other spellings accepted on the command line (ALScope's names, ...).
        paper: reference shown by ``alscope info``.
        domains: the data domains the component works with.
        needs: for strategies, what they read from the model (``probs``, ``embeddings``,
            ``mc_samples``, ...), shown by ``alscope info`` before anything is imported.
        family: for strategies, the family shown by ``alscope list``: ``baseline``,
            ``uncertainty``, ``bayesian``, ``diversity``, ``hybrid``, ``model-based``,
            ``open-set``, ``imbalance``.
        namespace: set by the registry: the entry-point name of the providing plugin
            (``core``, ``cv``, ...), usable as a qualifier: ``cv:resnet18``.
        distribution: set by the registry: the distribution that provides the plugin.
    """

    name: str
    target: str
    summary: str
    aliases: tuple[str, ...] = ()
    paper: str = ""
    domains: tuple[Domain, ...] = ALL_DOMAINS
    needs: tuple[str, ...] = ()
    family: str = ""
    namespace: str = ""
    distribution: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def qualified_name(self) -> str:
        return f"{self.namespace}:{self.name}" if self.namespace else self.name

    def with_origin(self, namespace: str, distribution: str) -> ComponentSpec:
        return replace(self, namespace=namespace, distribution=distribution)

    def load(self) -> Any:
        """Import and return the target object."""
        module_name, _, attr = self.target.partition(":")
        if not attr:
            raise ValueError(f"target {self.target!r} of {self.name!r} is not 'module:attr'")
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj


def StrategySpec(name: str, target: str, summary: str, **kw: Any) -> ComponentSpec:
    """Spec of a query strategy (see :class:`alscope.strategies.base.Strategy`)."""
    return ComponentSpec(name=name, target=target, summary=summary, **kw)


def DatasetSpec(name: str, target: str, summary: str, **kw: Any) -> ComponentSpec:
    """Spec of a dataset (see :class:`alscope.data.base.DatasetFactory`)."""
    return ComponentSpec(name=name, target=target, summary=summary, **kw)


def BackboneSpec(name: str, target: str, summary: str, **kw: Any) -> ComponentSpec:
    """Spec of a backbone (see :class:`alscope.models.base.Backbone`)."""
    return ComponentSpec(name=name, target=target, summary=summary, **kw)


def ScenarioSpec(name: str, target: str, summary: str, **kw: Any) -> ComponentSpec:
    """Spec of a scenario (see :class:`alscope.scenarios.base.Scenario`)."""
    return ComponentSpec(name=name, target=target, summary=summary, **kw)


def StoppingSpec(name: str, target: str, summary: str, **kw: Any) -> ComponentSpec:
    """Spec of a stopping criterion (see :class:`alscope.stopping.StoppingCriterion`);
    ``needs`` lists the measures it reads."""
    return ComponentSpec(name=name, target=target, summary=summary, **kw)
