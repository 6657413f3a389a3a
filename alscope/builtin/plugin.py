"""Components the core ships, registered through the same hooks as any plugin.

Nothing here imports torch: each spec names its target, imported only when used.
"""

from __future__ import annotations

from typing import Any

from alscope.builtin.specs_diversity import DIVERSITY_STRATEGIES
from alscope.builtin.specs_embedding import CORELOG_NAMES, EMBEDDING_STRATEGIES
from alscope.builtin.specs_model_based import MODEL_BASED_STRATEGIES
from alscope.builtin.specs_perturbation import PERTURBATION_STRATEGIES
from alscope.builtin.specs_settings import SETTING_STRATEGIES
from alscope.builtin.specs_stopping import STOPPING_CRITERIA
from alscope.builtin.specs_structure import STRUCTURE_STRATEGIES
from alscope.builtin.specs_uncertainty import UNCERTAINTY_STRATEGIES
from alscope.hookspecs import hookimpl
from alscope.scenarios import composition_parts
from alscope.specs import BackboneSpec, ComponentSpec, DatasetSpec, ScenarioSpec, StrategySpec

_S = "alscope.strategies"


_CORE_STRATEGIES: list[ComponentSpec] = [
    StrategySpec(
        "random",
        f"{_S}.random:RandomSampling",
        "uniform random sampling (the baseline; also a cold-start strategy)",
        aliases=("RandomSampling", "Rand"),
        paper="baseline",
        family="baseline",
    ),
    StrategySpec(
        "least_confidence",
        f"{_S}.uncertainty:LeastConfidence",
        "lowest top-class probability",
        aliases=("LeastConfidence", "CONF", "Confidence", "LC", "UncertaintyCONF"),
        paper="Lewis & Gale, SIGIR 1994: A sequential algorithm for training text classifiers",
        needs=("probs",),
        family="uncertainty",
    ),
    StrategySpec(
        "margin",
        f"{_S}.uncertainty:MarginSampling",
        "smallest gap between the two likeliest classes",
        aliases=("Margin", "MarginSampling", "UncertaintyMargin", "SM"),
        paper="Scheffer et al., IDA 2001: Active hidden Markov models for information extraction",
        needs=("probs",),
        family="uncertainty",
    ),
    StrategySpec(
        "entropy",
        f"{_S}.uncertainty:EntropySampling",
        "highest predictive entropy",
        aliases=("Entropy", "EntropySampling", "UncertaintyEntropy", "ENT"),
        paper="Settles, 2009: Active Learning Literature Survey (Shannon entropy sampling)",
        needs=("probs",),
        family="uncertainty",
    ),
]


@hookimpl
def alscope_register_strategies() -> list[ComponentSpec]:
    return [
        *_CORE_STRATEGIES,
        *UNCERTAINTY_STRATEGIES,
        *DIVERSITY_STRATEGIES,
        *MODEL_BASED_STRATEGIES,
        *SETTING_STRATEGIES,
        *EMBEDDING_STRATEGIES,
        *PERTURBATION_STRATEGIES,
        *STRUCTURE_STRATEGIES,
    ]


@hookimpl
def alscope_register_datasets() -> list[ComponentSpec]:
    t = "alscope.data.tabular"
    kw = {"domains": ("tabular",)}
    return [
        DatasetSpec(
            "digits",
            f"{t}:Digits",
            "8x8 handwritten digits from scikit-learn (1,797 x 64, 10 classes); the default",
            aliases=("DIGITS", "sklearn_digits"),
            **kw,
        ),
        DatasetSpec("iris", f"{t}:Iris", "Fisher's iris from scikit-learn (150 x 4, 3 classes)", **kw),
        DatasetSpec("wine", f"{t}:Wine", "wine recognition from scikit-learn (178 x 13, 3 classes)", **kw),
        DatasetSpec(
            "breast_cancer",
            f"{t}:BreastCancer",
            "Wisconsin breast cancer from scikit-learn (569 x 30, binary)",
            **kw,
        ),
        DatasetSpec(
            "features",
            f"{t}:FeatureFile",
            "your own feature file: CSV, NPZ or Parquet with a label column (param path=...)",
            aliases=("csv", "npz", "parquet", "tabular"),
            **kw,
        ),
    ]


@hookimpl
def alscope_register_backbones() -> list[ComponentSpec]:
    return [
        BackboneSpec(
            "mlp",
            "alscope.models.mlp:MLP",
            "multilayer perceptron with dropout, for feature vectors",
            aliases=("MLP", "MLPNet"),
            domains=("tabular", "image"),
        ),
    ]


@hookimpl
def alscope_register_scenarios() -> list[ComponentSpec]:
    return [
        ScenarioSpec(
            "standard",
            "alscope.scenarios.standard:StandardScenario",
            "closed, as-given pool with a truthful oracle",
            aliases=("default", "closed"),
        ),
        ScenarioSpec(
            "openset",
            "alscope.scenarios.openset:OpenSetScenario",
            "known classes labeled and tested; unknown-class samples in the pool at --ood-rate, "
            "answered OOD by the oracle",
            aliases=("open_set", "OpenSet", "ood"),
            paper="Du et al., ICCV 2021: Contrastive coding for active learning under class "
            "distribution mismatch (setting)",
        ),
        ScenarioSpec(
            "imbalanced",
            "alscope.scenarios.imbalanced:ImbalancedScenario",
            "long-tailed pool (exponential or step profile, --imb-factor), balanced test set",
            aliases=("imbalance", "longtail", "long_tail", "LT"),
            paper="Cui et al., CVPR 2019: Class-balanced loss based on effective number of samples",
        ),
        ScenarioSpec(
            "noisy_oracle",
            "alscope.scenarios.noisy_oracle:NoisyOracleScenario",
            "the annotator answers wrongly: symmetric rate or a class transition matrix",
            aliases=("noisy", "label_noise"),
            paper="Younesian et al., 2021: Active learning for noisy data streams using weak and "
            "strong labelers",
        ),
        ScenarioSpec(
            "composed",
            "alscope.scenarios.composed:ComposedScenario",
            "several scenarios in one setting, written a+b (open set, then imbalance, then noise)",
            aliases=("composition", "compose"),
        ),
    ]


@hookimpl
def alscope_register_stopping() -> list[ComponentSpec]:
    return list(STOPPING_CRITERIA)


@hookimpl
def alscope_claim_name(kind: str, name: str) -> dict[str, Any] | None:
    """``--scenario openset+imbalanced``: the composed scenario of the named parts (checked,
    ordered and given their parameters by ``alscope.scenarios.composed``). ``--strategy
    flcmi`` / ``logdetcmi``: SIMILAR with that function (the paper's names). ``--strategy
    corelog`` (ALScope, BEMPS): BEMPS with the log score."""
    if kind == "strategy":
        function = name.lower().replace("-", "").replace("_", "")
        if function in ("flcmi", "logdetcmi"):
            return {"name": "similar", "params": {"function": function}}
        if function in CORELOG_NAMES:
            return {"name": "bemps", "params": {"score": "log"}}
        return None
    if kind != "scenario":
        return None
    parts = composition_parts(name)
    if len(parts) < 2 or any(not part for part in parts):
        return None
    return {"name": "composed", "params": {"parts": parts}}
