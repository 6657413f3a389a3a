"""Specs of the model-based strategies, which train modules alongside the classifier
through trainer hooks (no torch here). See ``docs/strategies-model-based.md``."""

from __future__ import annotations

from alscope.specs import ComponentSpec, StrategySpec

_S = "alscope.strategies"

MODEL_BASED_STRATEGIES: list[ComponentSpec] = [
    StrategySpec(
        "tidal",
        f"{_S}.tidal:TiDAL",
        "a module on intermediate features predicts each sample's training dynamics (mean softmax "
        "over training); queries their highest entropy or smallest margin",
        aliases=("TIDAL", "TiDAL"),
        paper="Kye et al., ICCV 2023: TiDAL: Learning Training Dynamics for Active Learning",
        needs=("features", "extra_outputs"),
        family="model-based",
    ),
    StrategySpec(
        "learning_loss",
        f"{_S}.learning_loss:LearningLoss",
        "a loss-prediction module on intermediate features, trained with a margin ranking loss; "
        "queries the highest predicted loss",
        aliases=("LL", "LearningLoss", "LL4AL", "LossPrediction"),
        paper="Yoo & Kweon, CVPR 2019: Learning Loss for Active Learning",
        needs=("features", "extra_outputs"),
        family="model-based",
    ),
    StrategySpec(
        "vaal",
        f"{_S}.vaal:VAAL",
        "a VAE and a discriminator trained adversarially on labeled vs unlabeled inputs; queries "
        "what the discriminator finds least labeled-looking",
        aliases=("VAAL", "VariationalAdversarial"),
        paper="Sinha et al., ICCV 2019: Variational Adversarial Active Learning",
        needs=("raw inputs", "unlabeled data in training", "extra_outputs"),
        family="model-based",
    ),
    StrategySpec(
        "ta_vaal",
        f"{_S}.vaal:TAVAAL",
        "VAAL conditioned on Learning Loss's ranked loss prediction (task-aware)",
        aliases=("TAVAAL", "TA-VAAL", "TaskAwareVAAL"),
        paper="Kim et al., CVPR 2021: Task-Aware Variational Adversarial Active Learning",
        needs=("features", "raw inputs", "unlabeled data in training", "extra_outputs"),
        family="model-based",
    ),
    StrategySpec(
        "sraal",
        f"{_S}.vaal:SRAAL",
        "VAAL whose discriminator relabels unlabeled samples by the classifier's online "
        "uncertainty, with a generator that also classifies",
        aliases=("SRAAL", "StateRelabeling"),
        paper="Zhang et al., CVPR 2020: State-Relabeling Adversarial Active Learning",
        needs=("raw inputs", "unlabeled data in training", "extra_outputs"),
        family="model-based",
    ),
    StrategySpec(
        "waal",
        f"{_S}.waal:WAAL",
        "Wasserstein adversarial training of the embedding against a critic on labeled vs unlabeled; "
        "queries uncertainty plus the critic's diversity score",
        aliases=("WAAL", "Wasserstein"),
        paper="Shui et al., AISTATS 2020: Deep Active Learning: Unified and Principled Method for "
        "Query and Training",
        needs=("probs", "embeddings in training", "unlabeled data in training", "extra_outputs"),
        family="model-based",
    ),
    StrategySpec(
        "ceal",
        f"{_S}.ceal:CEAL",
        "any base strategy's query (default entropy) plus confident pool samples trained on with "
        "pseudo-labels (never given to the oracle's labeled set)",
        aliases=("CEAL", "CostEffective"),
        paper="Wang et al., IEEE TCSVT 2016: Cost-Effective Active Learning for Deep Image Classification",
        needs=("probs", "the base strategy's needs"),
        family="hybrid",
    ),
]
