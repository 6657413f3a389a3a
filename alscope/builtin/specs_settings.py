"""Specs of the strategies made for realistic settings: open-set pools and class
imbalance (no torch here). See ``docs/strategies-settings.md``."""

from __future__ import annotations

from alscope.specs import ComponentSpec, StrategySpec

_S = "alscope.strategies"

SETTING_STRATEGIES: list[ComponentSpec] = [
    StrategySpec(
        "lfosa",
        f"{_S}.lfosa:LfOSA",
        "a (C+1)-way detector trained with the labeled OOD samples as an extra class; per predicted "
        "class a two-component GMM on the max activation picks the likely known samples",
        aliases=("LfOSA", "LearningForOpenSet"),
        paper="Ning et al., CVPR 2022: Active Learning for Open-set Annotation",
        needs=("raw inputs", "labeled OOD in training", "extra_outputs"),
        family="open-set",
    ),
    StrategySpec(
        "eoal",
        f"{_S}.eoal:EOAL",
        "two entropies, over the known classes (one-vs-all heads) and over clusters of the labeled "
        "OOD samples, separate known from unknown; then diversity among the likely known",
        aliases=("EOAL", "EntropicOpenSet"),
        paper="Safaei et al., WACV 2024: Entropic Open-set Active Learning",
        needs=("raw inputs", "labeled OOD in training", "extra_outputs"),
        family="open-set",
    ),
    StrategySpec(
        "ccal",
        f"{_S}.ccal:CCAL",
        "contrastive coding: a semantic (SimCLR) score near the labeled known samples selects "
        "candidates, a distinctive (CSI) score picks the most informative among them",
        aliases=("CCAL", "ContrastiveCoding"),
        paper="Du et al., ICCV 2021: Contrastive Coding for Active Learning under Class "
        "Distribution Mismatch",
        needs=("ssl embeddings (simclr + csi)", "labeled_targets"),
        family="open-set",
    ),
    StrategySpec(
        "mqnet",
        f"{_S}.mqnet:MQNet",
        "a meta query network balances purity (self-supervised CSI score) against informativeness "
        "(confidence or Learning Loss); retrained each cycle on every sample queried so far",
        aliases=("MQNet", "MQ-Net", "MetaQueryNet"),
        paper="Park et al., NeurIPS 2022: Meta-Query-Net: Resolving Purity-Informativeness Dilemma "
        "in Open-set Active Learning",
        needs=("ssl embeddings (csi)", "probs", "extra_outputs with informativeness=learning_loss"),
        family="open-set",
    ),
    StrategySpec(
        "similar",
        f"{_S}.similar:SIMILAR",
        "submodular conditional mutual information (FLCMI or LogDetCMI): like the labeled known "
        "samples, unlike the labeled OOD samples, without an N x N kernel",
        aliases=("SIMILAR", "SMI"),
        paper="Kothawade et al., NeurIPS 2021: SIMILAR: Submodular Information Measures Based "
        "Active Learning in Realistic Scenarios",
        needs=("embeddings", "labeled_embeddings"),
        family="open-set",
    ),
    StrategySpec(
        "entropy_cb",
        f"{_S}.class_balanced:EntropyCB",
        "entropy with a class-balance term: a relaxed programme (HiGHS) trades uncertainty for "
        "predicted class counts that fill the labeled set's gaps",
        aliases=("EntropyCB", "CBEntropy"),
        paper="Bengar et al., WACV 2022: Class-Balanced Active Learning for Image Classification",
        needs=("probs", "labeled_targets"),
        family="imbalance",
    ),
    StrategySpec(
        "coreset_cb",
        f"{_S}.class_balanced:CoresetCB",
        "greedy k-center whose every pick also pays the class-balance term ||Omega - P^T z||_1",
        aliases=("CoresetCB", "CBCoreset"),
        paper="Bengar et al., WACV 2022: Class-Balanced Active Learning for Image Classification",
        needs=("probs", "embeddings", "labeled_embeddings", "labeled_targets"),
        family="imbalance",
    ),
    StrategySpec(
        "class_balancer",
        f"{_S}.class_balancer:ClassBalancer",
        "a scoring strategy's best samples taken round robin over the predicted classes",
        aliases=("ClassBalancer", "ClassBalanced", "balanced"),
        paper="Bengar et al., WACV 2022: Class-Balanced Active Learning for Image Classification "
        "(balancing constraint, solved greedily)",
        needs=("probs", "the base strategy's needs"),
        family="imbalance",
    ),
]
