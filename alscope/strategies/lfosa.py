"""LfOSA: Active Learning for Open-set Annotation.

Ning, Zhao, Liu, Tang, Gao & Huang, CVPR 2022 (code: github.com/ningkp/LfOSA, the
``AV_temperature`` strategy). A (C+1)-way detector, a separate copy of the backbone
(see :mod:`alscope.strategies._open_set`), is trained on the labeled known samples and
the labeled OOD samples (class ``C``) with a temperature-scaled cross-entropy. For each
unlabeled sample the detector gives its predicted class over all ``C + 1`` outputs and
its max activation value (MAV), the top logit. Per predicted known class a two-component
Gaussian mixture is fitted to the MAVs of the samples predicted as that class; the
posterior of the component with the larger mean is the probability that the sample is
known. The query takes the highest probabilities: known samples cluster at high
activations, OOD samples that slip into a known class sit in the low component.

As in the authors' code: the GMM uses 10 EM iterations, ``tol=1e-2`` and
``reg_covar=5e-4``; samples predicted as class ``C`` get probability 0. Samples of a
predicted class with a single member (the authors skip those, so they are never queried)
also get 0 and come last. Where a class's MAVs are all equal the mixture cannot tell
anything apart and every member gets 0.5. Before any OOD sample is labeled the detector
has never seen class ``C``; it trains on the known samples alone and the query runs
unchanged, as in the authors' first round.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from pydantic import Field
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from torch import nn

from alscope.errors import ModelError
from alscope.models.base import BackboneOutput
from alscope.strategies._open_set import DetectorHooks, DetectorParams, class_ids
from alscope.strategies.base import PoolView, Requirements, Strategy, top_k

MAV, CLASS = "lfosa_mav", "lfosa_class"


class LfOSAParams(DetectorParams):
    gmm_max_iter: int = Field(
        default=10, ge=1, description="EM iterations of each class's two-component GMM (the authors' 10)"
    )
    gmm_tol: float = Field(default=1e-2, gt=0.0, description="convergence tolerance of the GMM's EM")
    gmm_reg_covar: float = Field(
        default=5e-4, gt=0.0, description="variance added to the GMM's components (the authors' 5e-4)"
    )


class LfOSAHooks(DetectorHooks):
    """The detector; its pool outputs are the MAV and the predicted class (as floats)."""

    def pool_batch_outputs(
        self, inputs: object, output: BackboneOutput, modules: dict[str, nn.Module]
    ) -> dict[str, torch.Tensor]:
        del output
        mav, predicted = self.detect(inputs, modules).logits.float().max(dim=1)
        return {MAV: mav, CLASS: predicted.float()}


def known_probability(
    mav: np.ndarray,
    predicted: np.ndarray,
    n_classes: int,
    seed: int,
    max_iter: int = 10,
    tol: float = 1e-2,
    reg_covar: float = 5e-4,
) -> np.ndarray:
    """LfOSA's probability of being known: per predicted known class, the posterior of
    the higher-mean component of a two-component GMM over the class's MAVs; 0 for the
    predicted-unknown class ``n_classes`` and for classes with a single sample."""
    mav = np.asarray(mav, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.int64)
    prob = np.zeros(len(mav))
    for cls in np.unique(predicted[predicted < n_classes]):
        members = np.flatnonzero(predicted == cls)
        if len(members) < 2:
            continue
        values = mav[members].reshape(-1, 1)
        if np.ptp(values) == 0.0:
            prob[members] = 0.5
            continue
        gmm = GaussianMixture(
            n_components=2, max_iter=max_iter, tol=tol, reg_covar=reg_covar, random_state=seed
        )
        with warnings.catch_warnings():
            # 10 EM iterations are the method's setting, not a failure to converge
            warnings.simplefilter("ignore", ConvergenceWarning)
            gmm.fit(values)
        prob[members] = gmm.predict_proba(values)[:, int(np.argmax(gmm.means_.ravel()))]
    return prob


class LfOSA(Strategy):
    """Queries the samples the per-class MAV mixtures find most likely to be known."""

    Params = LfOSAParams
    component_name = "lfosa"

    def requirements(self) -> Requirements:
        return Requirements(extra_outputs=(MAV, CLASS))

    def training_hooks(self) -> LfOSAHooks:
        return LfOSAHooks(self.params, self.component_name)

    def known_probability(self, view: PoolView, seed: int) -> np.ndarray:
        mav = view.require(MAV, self.component_name).detach().double().cpu().numpy().ravel()
        if not np.isfinite(mav).all():
            raise ModelError(
                f"strategy {self.component_name!r}: the detector gave non-finite activations "
                f"({int((~np.isfinite(mav)).sum())} of {len(mav)}); training diverged"
            )
        predicted = class_ids(view.require(CLASS, self.component_name).ravel(), view.n_classes)
        p = self.params
        return known_probability(
            mav, predicted, view.n_classes, seed, p.gmm_max_iter, p.gmm_tol, p.gmm_reg_covar
        )

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        prob = self.known_probability(view, int(rng.integers(2**31 - 1)))
        return view.unlabeled[top_k(prob, budget, rng)]
