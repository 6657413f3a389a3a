"""Specs of the single-pass and sampled-prediction (Bayesian) strategies (no torch here).

Documented in docs/strategies-bayesian.md.
"""

from __future__ import annotations

from alscope.specs import ComponentSpec, StrategySpec

_S = "alscope.strategies"
_GAL = "Gal, Islam & Ghahramani, ICML 2017: Deep Bayesian Active Learning with Image Data"
_KIRSCH_2023 = (
    "Kirsch, Farquhar, Atighehchian, Jesson, Branchaud-Charron & Gal, TMLR 2023: "
    "Stochastic Batch Acquisition: A Simple Baseline for Deep Active Learning"
)
_MC = ("mc_samples",)

UNCERTAINTY_STRATEGIES: list[ComponentSpec] = [
    # -- single pass -------------------------------------------------------------------
    StrategySpec(
        "ratio",
        f"{_S}.uncertainty:MarginRatio",
        "highest ratio of the second to the top class probability (margin ratio)",
        aliases=("MarginRatio", "RatioSampling", "RatioOfConfidence", "UncertaintyRatio"),
        paper="Monarch, 2021: Human-in-the-Loop Machine Learning (ratio of confidence), "
        "a scale-free variant of margin sampling (Scheffer et al., IDA 2001)",
        needs=("probs",),
        family="uncertainty",
    ),
    StrategySpec(
        "power_entropy",
        f"{_S}.power:PowerEntropy",
        "batch drawn with probability proportional to entropy^beta (stochastic batch acquisition)",
        aliases=("PowerEntropy", "StochasticEntropy"),
        paper=_KIRSCH_2023,
        needs=("probs",),
        family="uncertainty",
    ),
    StrategySpec(
        "power_margin",
        f"{_S}.power:PowerMargin",
        "batch drawn with probability proportional to (1 - margin)^beta",
        aliases=("PowerMargin", "StochasticMargin"),
        paper=_KIRSCH_2023,
        needs=("probs",),
        family="uncertainty",
    ),
    # -- sampled predictions (MC dropout or deep ensemble) -------------------------------
    StrategySpec(
        "mc_least_confidence",
        f"{_S}.bayesian:MCLeastConfidence",
        "least confidence of the mean prediction over MC dropout samples",
        aliases=("CONFDropout", "LeastConfidenceDropout", "BayesianLeastConfidence", "MCConfidence"),
        paper=f"{_GAL} (acquisition on the MC dropout predictive); Lewis & Gale, SIGIR 1994",
        needs=_MC,
        family="bayesian",
    ),
    StrategySpec(
        "mc_margin",
        f"{_S}.bayesian:MCMargin",
        "margin of the mean prediction over MC dropout samples",
        aliases=("MarginDropout", "MarginSamplingDropout", "BayesianMargin"),
        paper=f"{_GAL} (acquisition on the MC dropout predictive); Scheffer et al., IDA 2001",
        needs=_MC,
        family="bayesian",
    ),
    StrategySpec(
        "mc_entropy",
        f"{_S}.bayesian:MCEntropy",
        "entropy of the mean prediction over MC dropout samples (Max Entropy)",
        aliases=("EntropyDropout", "EntropySamplingDropout", "BayesianEntropy", "MaxEntropyDropout"),
        paper=f"{_GAL} (Max Entropy)",
        needs=_MC,
        family="bayesian",
    ),
    StrategySpec(
        "bald",
        f"{_S}.bayesian:BALD",
        "highest mutual information between label and model (disagreement of the samples)",
        aliases=("BALD", "BALDDropout", "BayesianALD", "MutualInformation"),
        paper="Houlsby, Huszár, Ghahramani & Lengyel, 2011: Bayesian Active Learning for "
        f"Classification and Preference Learning; {_GAL}",
        needs=_MC,
        family="bayesian",
    ),
    StrategySpec(
        "batchbald",
        f"{_S}.batchbald:BatchBALD",
        "greedy joint mutual information of the batch (diverse BALD batches)",
        aliases=("BatchBALD", "BatchBALDDropout"),
        paper="Kirsch, van Amersfoort & Gal, NeurIPS 2019: BatchBALD: Efficient and Diverse "
        "Batch Acquisition for Deep Bayesian Active Learning",
        needs=_MC,
        family="bayesian",
    ),
    StrategySpec(
        "mean_std",
        f"{_S}.bayesian:MeanSTD",
        "mean over classes of the standard deviation of the sampled probabilities",
        aliases=("MeanSTD", "MeanStandardDeviation"),
        paper="Kampffmeyer, Salberg & Jenssen, CVPR Workshops 2016: Semantic Segmentation of "
        "Small Objects and Modeling of Uncertainty in Urban Remote Sensing Images Using Deep "
        f"Convolutional Neural Networks; {_GAL}",
        needs=_MC,
        family="bayesian",
    ),
    StrategySpec(
        "variation_ratio",
        f"{_S}.bayesian:VariationRatio",
        "fraction of MC samples that disagree with the modal predicted class",
        aliases=("VarRatio", "VariationRatios", "VarRatios"),
        paper=f"Freeman, 1965: Elementary Applied Statistics; {_GAL}",
        needs=_MC,
        family="bayesian",
    ),
    StrategySpec(
        "power_bald",
        f"{_S}.power:PowerBALD",
        "batch drawn with probability proportional to BALD^beta (stochastic BALD)",
        aliases=("PowerBALD", "StochasticBALD"),
        paper=_KIRSCH_2023,
        needs=_MC,
        family="bayesian",
    ),
    StrategySpec(
        "epig",
        f"{_S}.epig:EPIG",
        "expected information gain about predictions on target inputs set aside from the "
        "pool; batch drawn with probability proportional to EPIG^beta",
        aliases=("EPIG", "ExpectedPredictiveInformationGain"),
        paper="Bickford Smith, Kirsch, Farquhar, Gal, Foster & Rainforth, AISTATS 2023: "
        f"Prediction-oriented Bayesian active learning; batch form: {_KIRSCH_2023}",
        needs=_MC,
        family="bayesian",
    ),
]
