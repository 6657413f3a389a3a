"""Bring your own model: alscope's strategies, stopping criteria and tracking around a
torch module (:class:`ActiveLearner`), a Hugging Face ``Trainer`` (:class:`HFActiveLearner`)
or a scikit-learn estimator (:class:`SklearnLearner`). All three share one loop,
:class:`~alscope.integrations.loop.LearnerLoop`; see ``docs/integrations.md``.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "ActiveLearner": "alscope.integrations.pytorch",
    "ModuleBackbone": "alscope.integrations.pytorch",
    "SklearnLearner": "alscope.integrations.scikit_learn",
    "HFActiveLearner": "alscope.integrations.huggingface",
    "StoppingCallback": "alscope.integrations.huggingface",
    "LearnerLoop": "alscope.integrations.loop",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # the front ends import torch, scikit-learn or transformers: only the one asked for loads
    if name not in _EXPORTS:
        raise AttributeError(f"module 'alscope.integrations' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
