"""Scenario contract and the core's standard setting.

The naming of compositions lives here, free of torch, because the CLI and the core
plugin's name claim read it before anything heavy is imported.
"""

from __future__ import annotations

#: what separates the parts of a composed scenario's name: ``openset+imbalanced``
COMPOSITION_SEPARATOR = "+"


def composition_parts(name: str) -> list[str]:
    """The parts of a scenario name, ``["openset", "imbalanced"]`` for
    ``openset+imbalanced`` and ``[name]`` for a single scenario."""
    return [part.strip() for part in name.split(COMPOSITION_SEPARATOR)]


def composition_name(parts: list[str]) -> str:
    return COMPOSITION_SEPARATOR.join(parts)
