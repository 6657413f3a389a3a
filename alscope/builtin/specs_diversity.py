"""Specs of the diversity and hybrid strategies (no torch here)."""

from __future__ import annotations

from alscope.specs import ComponentSpec

DIVERSITY_STRATEGIES: list[ComponentSpec] = []
