"""The plugin's hooks: what ``alscope`` imports through the ``alscope`` entry point.

This module is imported every time alscope builds its registry (``alscope list``,
``alscope run``, ...), so it must stay cheap: no torch, no numpy, no import of the
strategy itself. The spec names its target as a string, imported on first use.
"""

from __future__ import annotations

from alscope.hookspecs import hookimpl
from alscope.specs import ComponentSpec, StrategySpec


@hookimpl
def alscope_register_strategies() -> list[ComponentSpec]:
    return [
        StrategySpec(
            "information_density",
            "alscope_example_strategy.strategy:InformationDensity",
            "entropy weighted by the mean cosine similarity to the unlabeled pool",
            aliases=("InformationDensity", "density_weighted"),
            paper=(
                "Settles & Craven, EMNLP 2008: An analysis of active learning strategies "
                "for sequence labeling tasks"
            ),
            needs=("probs", "embeddings"),
        ),
    ]
