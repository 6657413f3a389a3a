"""Specs of the strategies on gradients, embeddings and their interplay with the
classifier (BEMPS, ALFA-Mix, EGL, CAL, ISAL); no torch here."""

from __future__ import annotations

from alscope.specs import ComponentSpec, StrategySpec

_S = "alscope.strategies"
#: normalised spellings of BEMPS with the log score (claimed in plugin.py: bemps, score=log)
CORELOG_NAMES = ("corelog", "bempscorelog", "corelogbatch")
_MC = ("mc_probs (consistent MC dropout or ensemble members)",)

EMBEDDING_STRATEGIES: list[ComponentSpec] = [
    StrategySpec(
        "bemps",
        f"{_S}.bemps:Bemps",
        "expected reduction of a strictly proper score (Brier: CoreMSE, log: CoreLog) from MC "
        "samples against reference points, then k-means over the change vectors",
        aliases=("BEMPS", "CoreMSE", "bemps_coremse", "coremse_batch", "coremsebatch"),
        paper="Tan, Du & Buntine, NeurIPS 2021: Diversity enhanced active learning with strictly "
        "proper scoring rules",
        needs=_MC,
        family="bayesian",
    ),
    StrategySpec(
        "alfa_mix",
        f"{_S}.alfa_mix:AlfaMix",
        "candidates whose prediction flips when mixed toward labeled class anchors (closed-form "
        "alpha), then k-means over them",
        aliases=("AlphaMixSampling", "ALFAMix", "AlfaMix", "AlphaMix", "ALFA-Mix"),
        paper="Parvaneh et al., CVPR 2022: Active learning by feature mixing",
        needs=("embeddings", "labeled_embeddings", "model (its classifier)"),
        family="hybrid",
    ),
    StrategySpec(
        "egl",
        f"{_S}.egl:EGL",
        "largest expected last-layer gradient norm over the predicted labels (closed form)",
        aliases=("EGL", "ExpectedGradientLength", "expected_gradient_length"),
        paper="Settles, Craven & Ray, NIPS 2008: Multiple-instance active learning; Huang et al., "
        "2016: Active learning for speech recognition: the power of gradients",
        needs=("probs", "embeddings"),
        family="uncertainty",
    ),
    StrategySpec(
        "cal",
        f"{_S}.cal:CAL",
        "largest mean KL between a candidate's prediction and its nearest labeled neighbours'",
        aliases=("CAL", "ContrastiveAL", "ContrastiveActiveLearning"),
        paper="Margatina, Vernikos, Barrault & Aletras, EMNLP 2021: Active learning by acquiring "
        "contrastive examples",
        needs=("probs", "embeddings", "labeled_embeddings", "labeled_probs"),
        family="hybrid",
    ),
    StrategySpec(
        "isal",
        f"{_S}.isal:ISAL",
        "largest influence on the labeled loss: LiSSA inverse-Hessian product on the last layer "
        "dotted with each candidate's pseudo-labeled gradient",
        aliases=("ISAL", "InfluenceSelection", "influence_selection"),
        paper="Liu et al., ICCV 2021: Influence selection for active learning",
        needs=("probs", "embeddings", "labeled_embeddings", "labeled_probs"),
        family="hybrid",
    ),
]
