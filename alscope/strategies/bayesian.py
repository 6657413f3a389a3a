"""Strategies on sampled predictions: MC dropout samples or deep-ensemble members.

Each reads ``view.mc_probs``, ``(U, K, C)``: K stochastic predictions per unlabeled
sample (MC dropout with ``n_drop`` samples, or the M members of ``--ensemble M``, in
which case K = M whatever ``n_drop`` says). Scores are computed in torch chunks on the
run's device; higher scores are queried first, ties broken at random with the cycle's
generator.

* ``mc_least_confidence``, ``mc_margin``, ``mc_entropy``: the single-pass criteria on the
  *mean* prediction over the samples (Gal et al., ICML 2017, "Max Entropy" with MC
  dropout; ALScope's CONFDropout, MarginDropout, EntropyDropout).
* ``bald``: mutual information between the label and the model parameters,
  ``H[mean_k p_k] - mean_k H[p_k]`` (Houlsby et al., 2011; Gal et al., 2017). The
  *highest* MI is queried: disagreement between samples, not mere uncertainty.
* ``mean_std``: mean over classes of the standard deviation over samples (Kampffmeyer
  et al., CVPR-W 2016).
* ``variation_ratio``: ``1 - f_mode / K``, the fraction of samples whose predicted class
  is not the modal one (Freeman, 1965; Gal et al., 2017).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import ClassVar

import torch
from pydantic import Field

from alscope.components import Params
from alscope.strategies.base import PoolView, Requirements, ScoringStrategy
from alscope.strategies.uncertainty import entropy_scores, least_confidence_scores, margin_scores

#: elements of one ``(rows, K, C)`` chunk moved to the device at a time
CHUNK_ELEMENTS = 1 << 22


class SampledParams(Params):
    n_drop: int = Field(
        default=10,
        ge=1,
        description="stochastic forward passes (MC dropout samples) per pool sample; with "
        "--ensemble M the M members are used instead",
    )


@contextlib.contextmanager
def one_thread_on_cpu(device: torch.device) -> Iterator[None]:
    """Run a long sequence of medium-sized tensor operations on one intra-op thread when
    on the CPU (the previous setting is restored afterwards).

    Waking a second thread for each operation costs more than it saves for the
    memory-bound work of ``batchbald``'s greedy loop and ``epig``'s chunks, and on a busy
    machine, where that thread waits to be scheduled, several times more.
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def rows_per_chunk(k: int, c: int, budget: int = CHUNK_ELEMENTS) -> int:
    return max(1, budget // max(1, k * c))


def chunked_mc(
    view: PoolView,
    strategy: str,
    fn: Callable[[torch.Tensor], torch.Tensor],
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``fn`` applied to ``view.mc_probs`` in row chunks on ``view.device``; ``(U,)`` on the CPU."""
    mc = require_mc(view, strategy)
    return map_chunks(mc, fn, view.device, dtype)


def require_mc(view: PoolView, strategy: str) -> torch.Tensor:
    mc = view.require("mc_probs", strategy)
    if mc.ndim != 3:
        raise ValueError(f"strategy {strategy!r}: mc_probs must be (U, K, C), got shape {tuple(mc.shape)}")
    return mc


def map_chunks(
    mc: torch.Tensor,
    fn: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    u, k, c = mc.shape
    step = rows_per_chunk(k, c)
    out = torch.empty(u, dtype=dtype)
    for start in range(0, u, step):
        # the samples stay float32 (half the memory traffic of float64); a score function
        # that needs more precision accumulates in float64 itself (bald_parts)
        chunk = mc[start : start + step].to(device, torch.float32)
        out[start : start + step] = fn(chunk).to("cpu", dtype)
    return out


# -- score functions on (n, K, C) samples ------------------------------------------------


def mean_prediction(mc: torch.Tensor) -> torch.Tensor:
    """The predictive distribution: the mean over the K samples, ``(n, C)``."""
    return mc.mean(dim=1)


def mc_least_confidence_scores(mc: torch.Tensor) -> torch.Tensor:
    return least_confidence_scores(mean_prediction(mc))


def mc_margin_scores(mc: torch.Tensor) -> torch.Tensor:
    return margin_scores(mean_prediction(mc))


def mc_entropy_scores(mc: torch.Tensor) -> torch.Tensor:
    return entropy_scores(mean_prediction(mc))


def sample_entropies(mc: torch.Tensor) -> torch.Tensor:
    """``H[p_k]`` of every sample, ``(n, K)`` (0 log 0 = 0)."""
    tiny = torch.finfo(mc.dtype).tiny
    return -(mc * torch.log(mc.clamp_min(tiny))).sum(dim=2)


def bald_parts(mc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mutual information, expected entropy) of each row, float64.

    One fused float32 ``xlogy`` pass gives the ``p log p`` terms, and the class sums are
    float32 (ten-odd terms); the entropies and their difference are float64. The error is
    about 1e-7 nats (float64 throughout: the reference in the tests), far below any gap
    that changes a selection, at a sixth of float64's time (benchmarks/bench_scoring.py)."""
    k = mc.shape[1]
    cond = -torch.special.xlogy(mc, mc).sum(dim=2).double().mean(dim=1)
    mean = mc.sum(dim=1).double() / k
    mi = (-torch.special.xlogy(mean, mean).sum(dim=1) - cond).clamp_min(0.0)
    return mi, cond


def bald_scores(mc: torch.Tensor) -> torch.Tensor:
    """``I[y; w | x] = H[mean_k p_k] - mean_k H[p_k]`` (>= 0), ``(n,)``."""
    return bald_parts(mc)[0]


def mean_std_scores(mc: torch.Tensor) -> torch.Tensor:
    """``mean_c sqrt(E_k[p_kc^2] - E_k[p_kc]^2)``: population std over samples, averaged
    over classes."""
    return mc.std(dim=1, correction=0).mean(dim=1)


def variation_ratio_scores(mc: torch.Tensor) -> torch.Tensor:
    """``1 - f_mode / K`` where ``f_mode`` counts the samples predicting the modal class."""
    n, k, c = mc.shape
    labels = mc.argmax(dim=2)
    counts = torch.zeros(n, c, dtype=mc.dtype, device=mc.device)
    counts.scatter_add_(1, labels, torch.ones_like(labels, dtype=mc.dtype))
    return 1.0 - counts.max(dim=1).values / k


# -- strategies ---------------------------------------------------------------------------


class SampledScoring(ScoringStrategy):
    """Scores each unlabeled sample by a function of its K sampled predictions."""

    Params = SampledParams
    scores_of: ClassVar[staticmethod[[torch.Tensor], torch.Tensor]]
    score_dtype: ClassVar[torch.dtype] = torch.float32

    def requirements(self) -> Requirements:
        return Requirements(mc_samples=self.params.n_drop)

    def score(self, view: PoolView) -> torch.Tensor:
        return chunked_mc(view, self.component_name, type(self).scores_of, type(self).score_dtype)


class MCLeastConfidence(SampledScoring):
    component_name = "mc_least_confidence"
    scores_of = staticmethod(mc_least_confidence_scores)


class MCMargin(SampledScoring):
    component_name = "mc_margin"
    scores_of = staticmethod(mc_margin_scores)


class MCEntropy(SampledScoring):
    component_name = "mc_entropy"
    scores_of = staticmethod(mc_entropy_scores)


class BALD(SampledScoring):
    """Bayesian Active Learning by Disagreement: the highest mutual information."""

    component_name = "bald"
    scores_of = staticmethod(bald_scores)
    score_dtype = torch.float64


class MeanSTD(SampledScoring):
    component_name = "mean_std"
    scores_of = staticmethod(mean_std_scores)


class VariationRatio(SampledScoring):
    component_name = "variation_ratio"
    scores_of = staticmethod(variation_ratio_scores)
