"""Specs of the perturbation strategies: the model is run on perturbed inputs or
weights (no torch here)."""

from __future__ import annotations

from alscope.specs import ComponentSpec, StrategySpec

_S = "alscope.strategies"
_NEEDS = ("model", "pool_inputs")

PERTURBATION_STRATEGIES: list[ComponentSpec] = [
    StrategySpec(
        "adversarial_bim",
        f"{_S}.adversarial:AdversarialBIM",
        "smallest sign-gradient (BIM) input perturbation that flips the predicted label, batched",
        aliases=("AdversarialBIM", "BIMSampling", "BIM", "adversarial_bim_sampling"),
        paper="Kurakin, Goodfellow & Bengio, ICLR 2017 workshop: Adversarial examples in the "
        "physical world (BIM); as DeepAL's AdversarialBIM",
        needs=_NEEDS,
        family="perturbation",
    ),
    StrategySpec(
        "dfal",
        f"{_S}.adversarial:DFAL",
        "smallest DeepFool input perturbation that flips the predicted label, batched",
        aliases=("DFAL", "AdversarialDeepFool", "DeepFool", "DeepFoolSampling", "adversarial_deepfool"),
        paper="Ducoffe & Precioso, 2018: Adversarial active learning for deep networks: a margin "
        "based approach",
        needs=_NEEDS,
        family="perturbation",
    ),
]
PERTURBATION_STRATEGIES.append(
    StrategySpec(
        "noise_stability",
        f"{_S}.noise_stability:NoiseStability",
        "greedy k-center over softmax deviations under weight noise scaled to each layer's norm",
        aliases=("NoiseStability", "NoiseStabilitySampling", "noise_stability_sampling"),
        paper="Li et al., AAAI 2024: Deep active learning via noise stability",
        needs=_NEEDS,
        family="perturbation",
    )
)
_DATA_DIET = (
    "Paul, Ganguli & Dziugaite, NeurIPS 2021: Deep learning on a data diet: finding important "
    "examples early in training (pool: the predicted label as label)"
)
PERTURBATION_STRATEGIES += [
    StrategySpec(
        "el2n",
        f"{_S}.data_diet:EL2N",
        "norm of the error vector p - onehot(predicted label)",
        aliases=("EL2N", "EL2NSampling", "el2n_score"),
        paper=_DATA_DIET,
        needs=("probs",),
        family="perturbation",
    ),
    StrategySpec(
        "grand",
        f"{_S}.data_diet:GraNd",
        "per-sample gradient norm of the loss at the predicted label (all parameters, torch.func)",
        aliases=("GraNd", "GRAND", "GraNdSampling", "grand_score"),
        paper=_DATA_DIET,
        needs=("model, pool_inputs (parameters=classifier: probs, embeddings)",),
        family="perturbation",
    ),
]
PERTURBATION_STRATEGIES.append(
    StrategySpec(
        "saal",
        f"{_S}.saal:SAAL",
        "loss at the predicted label after each sample's worst-case (ASAM) weight step, "
        "k-means++ over the scores",
        aliases=("SAAL", "SAALSampling", "MaxSharpness", "max_sharpness"),
        paper="Kim et al., ICML 2023: SAAL: sharpness-aware active learning",
        needs=_NEEDS,
        family="perturbation",
    )
)
PERTURBATION_STRATEGIES.append(
    StrategySpec(
        "forgetting",
        f"{_S}.forgetting:Forgetting",
        "most changes of the predicted class between checkpoints of the cycle's training, "
        "ties by the final margin",
        aliases=("Forgetting", "ForgettingEvents", "forgetting_events"),
        paper="Toneva et al., ICLR 2019: An empirical study of example forgetting during deep "
        "neural network learning (pool: flips of the predicted label)",
        needs=("probs", "unlabeled data in training", "extra_outputs"),
        family="perturbation",
    )
)
