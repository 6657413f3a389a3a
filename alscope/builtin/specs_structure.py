"""Specs of the strategies that learn the pool's structure: a labeled-vs-unlabeled
discriminator (DAL), streaming volume sampling (VeSSAL), hierarchical sampling over a
cluster tree and the sequential-GCN pair (UncertainGCN, CoreGCN). No torch here."""

from __future__ import annotations

from alscope.specs import ComponentSpec, StrategySpec

_S = "alscope.strategies"
_GCN_PAPER = (
    "Caramalau, Bhattarai & Kim, CVPR 2021: Sequential graph convolutional network for active learning"
)

STRUCTURE_STRATEGIES: list[ComponentSpec] = [
    StrategySpec(
        "dal",
        f"{_S}.dal:DAL",
        "samples a labeled-vs-unlabeled MLP finds most unlabeled-looking, in retrained sub-batches",
        aliases=("DAL", "DiscriminativeAL", "DiscriminativeActiveLearning"),
        paper="Gissin & Shalev-Shwartz, 2019: Discriminative active learning (arXiv:1907.06347)",
        needs=("embeddings", "labeled_embeddings"),
        family="diversity",
    ),
    StrategySpec(
        "vessal",
        f"{_S}.vessal:VeSSAL",
        "one streaming pass of volume sampling over gradient embeddings, adaptive rate",
        aliases=("VeSSAL", "VESSAL", "StreamingVolumeSampling"),
        paper="Saran, Yousefi, Krishnamurthy, Langford & Ash, ICML 2023: Streaming active learning "
        "with deep neural networks",
        needs=("probs", "embeddings"),
        family="hybrid",
    ),
    StrategySpec(
        "hierarchical",
        f"{_S}.hierarchical:HierarchicalSampling",
        "samples the impure or unexplored subtrees of a pruned cluster tree (k-means leaves + Ward)",
        aliases=("Hierarchical", "HierarchicalSampling", "HS"),
        paper="Dasgupta & Hsu, ICML 2008: Hierarchical sampling for active learning",
        needs=("embeddings", "labeled_embeddings", "labeled targets"),
        family="diversity",
    ),
    StrategySpec(
        "uncertain_gcn",
        f"{_S}.gcn:UncertainGCN",
        "a GCN over labeled + unlabeled embeddings tells them apart; query outputs nearest s_margin",
        aliases=("UncertainGCN", "GCN", "UGCN", "uncertaingcn"),
        paper=_GCN_PAPER,
        needs=("embeddings", "labeled_embeddings"),
        family="diversity",
    ),
    StrategySpec(
        "core_gcn",
        f"{_S}.gcn:CoreGCN",
        "greedy k-center on the hidden features of a labeled-vs-unlabeled GCN",
        aliases=("CoreGCN", "coregcn"),
        paper=_GCN_PAPER,
        needs=("embeddings", "labeled_embeddings"),
        family="diversity",
    ),
]
