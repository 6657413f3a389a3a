"""Hook specifications of the ``alscope`` plugin system.

A plugin is a plain module with ``@hookimpl`` functions, made known through the
entry-point group ``alscope`` of its distribution::

    [project.entry-points.alscope]
    example = "alscope_example_strategy.plugin"

The entry-point name (``example``) is the plugin's *namespace*: a user who has two
plugins registering the same component name picks one with ``example:name``.

Every hook is called once, when the registry is first built, and must be cheap: it
returns specs whose ``target`` is imported only when the component is used, so a
hook module must not import torch, torchvision or transformers.
"""

from __future__ import annotations

from typing import Any

import pluggy

from alscope.specs import ComponentSpec

PROJECT_NAME = "alscope"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def alscope_register_strategies() -> list[ComponentSpec]:
    """Return the query strategies this plugin provides.

    :return: a list of :func:`~alscope.specs.StrategySpec`. Each target must be a
        subclass of :class:`alscope.strategies.base.Strategy`; its ``Params`` pydantic
        model is the schema of ``--strategy-param`` and its :meth:`requirements`
        declares what the pool view must compute.
    """
    raise NotImplementedError


@hookspec
def alscope_register_datasets() -> list[ComponentSpec]:
    """Return the datasets this plugin provides.

    :return: a list of :func:`~alscope.specs.DatasetSpec`. Each target must be a
        subclass of :class:`alscope.data.base.DatasetFactory` whose ``load`` returns an
        :class:`alscope.data.base.ALDataset` (pool and test sources, class names,
        domain, labels as arrays, input description, default backbone).
    """
    raise NotImplementedError


@hookspec
def alscope_register_backbones() -> list[ComponentSpec]:
    """Return the backbones this plugin provides.

    :return: a list of :func:`~alscope.specs.BackboneSpec`. Each target must be a
        subclass of :class:`alscope.models.base.Backbone`: an ``nn.Module`` whose
        forward returns :class:`~alscope.models.base.BackboneOutput` (logits, the
        penultimate embedding and, on request, intermediate features) and whose last
        linear layer is ``classifier``.
    """
    raise NotImplementedError


@hookspec
def alscope_register_scenarios() -> list[ComponentSpec]:
    """Return the scenarios this plugin provides.

    :return: a list of :func:`~alscope.specs.ScenarioSpec`. Each target must be a
        subclass of :class:`alscope.scenarios.base.Scenario`, which turns a dataset
        into an experimental setting and owns the oracle that answers label queries.
    """
    raise NotImplementedError


@hookspec
def alscope_register_stopping() -> list[ComponentSpec]:
    """Return the stopping criteria this plugin provides.

    :return: a list of :func:`~alscope.specs.StoppingSpec`. Each target must be a
        subclass of :class:`alscope.stopping.StoppingCriterion`: it names the per-cycle
        measures it reads (:data:`alscope.stopping.MEASURES`) and decides from their
        history alone, so that a resumed run stops where the uninterrupted one would.
    """
    raise NotImplementedError


@hookspec
def alscope_claim_name(kind: str, name: str) -> dict[str, Any] | None:
    """Claim a name that no plugin registers, e.g. a local path or a hub id.

    Called only when ``name`` resolves to no registered component of ``kind``, so a text
    plugin can accept ``--backbone /models/minilm`` or ``--backbone roberta-large`` as
    its generic transformer backbone, or a dataset plugin a file path. Must be cheap and
    must not import torch.

    :param kind: ``"strategy"``, ``"dataset"``, ``"backbone"``, ``"scenario"`` or ``"stopping"``.
    :param name: what the user typed.
    :return: None to decline, or ``{"name": <a registered name>, "params": {...}}``: the
        component to use and parameters that the user's own parameters override. The
        first plugin that claims wins.
    """
    raise NotImplementedError
