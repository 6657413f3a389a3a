"""Stopping criteria: when to stop labeling, decided from what each cycle measures."""

from alscope.stopping.base import MEASURES, StoppingCriterion

__all__ = ["MEASURES", "StoppingCriterion"]
