"""Specs of the single-pass and sampled-prediction (Bayesian) strategies (no torch here)."""

from __future__ import annotations

from alscope.specs import ComponentSpec

UNCERTAINTY_STRATEGIES: list[ComponentSpec] = []
