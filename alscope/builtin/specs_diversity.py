"""Specs of the diversity and hybrid strategies (no torch here)."""

from __future__ import annotations

from alscope.specs import ComponentSpec, StrategySpec

_S = "alscope.strategies"
_CORESET_PAPER = (
    "Sener & Savarese, ICLR 2018: Active learning for convolutional neural networks: a core-set approach"
)

DIVERSITY_STRATEGIES: list[ComponentSpec] = [
    StrategySpec(
        "coreset",
        f"{_S}.coreset:CoreSet",
        "greedy k-center over embeddings from the labeled set (exact, pruned; also a cold-start strategy)",
        aliases=("CoreSet", "CoreSetSampling", "KCenterGreedy", "KCenter", "kcenter_greedy"),
        paper=_CORESET_PAPER,
        needs=("embeddings", "labeled_embeddings"),
        family="diversity",
    ),
    StrategySpec(
        "cdal",
        f"{_S}.cdal:CDAL",
        "contextual diversity: greedy k-center over softmax vectors under the symmetric KL, "
        "from the labeled set (CDAL-CS)",
        aliases=("CDAL", "CDALSampling", "ContextualDiversity", "cdal_cs", "CDAL_CS"),
        paper="Agarwal, Arora, Anand & Arora, ECCV 2020: Contextual diversity for active learning",
        needs=("probs", "labeled_probs"),
        family="diversity",
    ),
    StrategySpec(
        "coreset_mip",
        f"{_S}.coreset_mip:CoreSetMIP",
        "robust k-center with an outlier budget: greedy start, MIP radius search (HiGHS)",
        aliases=("CoreSetMIP", "RobustKCenter", "robust_coreset"),
        paper=_CORESET_PAPER,
        needs=("embeddings", "labeled_embeddings"),
        family="diversity",
    ),
    StrategySpec(
        "kmeans",
        f"{_S}.kmeans:KMeansSampling",
        "k-means into budget clusters, the sample nearest each centroid",
        aliases=("KMeansSampling", "KMeans", "kmeans_sampling"),
        paper="Sener & Savarese, ICLR 2018 (k-means baseline; DeepAL+'s KMeansSampling)",
        needs=("embeddings",),
        family="diversity",
    ),
    StrategySpec(
        "typiclust",
        f"{_S}.typiclust:TypiClust",
        "most typical sample of the largest uncovered k-means clusters of SimCLR embeddings "
        "(low budget, cold start)",
        aliases=("TypiClust", "typi_clust"),
        paper="Hacohen, Dekel & Weinshall, ICML 2022: Active learning on a budget: opposite "
        "strategies suit high and low budgets",
        needs=("ssl embeddings (simclr); embedding=model: embeddings, labeled_embeddings",),
        family="diversity",
    ),
    StrategySpec(
        "probcover",
        f"{_S}.probcover:ProbCover",
        "greedy max coverage of delta-balls in SimCLR embedding space (low budget, cold start)",
        aliases=("ProbCover", "prob_cover"),
        paper="Yehuda, Dekel, Hacohen & Weinshall, NeurIPS 2022: Active learning through a covering lens",
        needs=("ssl embeddings (simclr); embedding=model: embeddings, labeled_embeddings",),
        family="diversity",
    ),
    StrategySpec(
        "badge",
        f"{_S}.badge:Badge",
        "k-means++ seeding over gradient embeddings (factorised, never N x C*D)",
        aliases=("BADGE", "BadgeSampling", "Badge"),
        paper="Ash et al., ICLR 2020: Deep batch active learning by diverse, uncertain gradient lower bounds",
        needs=("probs", "embeddings"),
        family="hybrid",
    ),
    StrategySpec(
        "cluster_margin",
        f"{_S}.cluster_margin:ClusterMargin",
        "lowest-margin samples, round-robin over HAC clusters of the pool, smallest first",
        aliases=("ClusterMargin", "ClusterMarginSampling"),
        paper="Citovsky et al., NeurIPS 2021: Batch active learning at scale",
        needs=("probs", "embeddings"),
        family="hybrid",
    ),
]
