"""SIMILAR: submodular conditional mutual information for open-set pools.

Kothawade et al., NeurIPS 2021, "SIMILAR: Submodular Information Measures Based Active
Learning in Realistic Scenarios". The batch ``A`` maximises the conditional mutual
information ``I_f(A; Q | P)`` between the batch and a *query set* ``Q`` given a *private
set* ``P``, by greedy maximisation. For open-set pools (the paper's realistic scenario
with out-of-distribution samples): the ground set ``V`` is the unlabeled pool, ``Q`` the
labeled known-class samples and ``P`` the labeled samples the oracle answered OOD, so the
batch is like the known classes and unlike what was already found to be out of
distribution.

``I_f(A; Q | P) = f(A u P) + f(Q u P) - f(A u Q u P) - f(P)`` for a submodular ``f`` over a
kernel on ``V u Q u P`` whose ``V``-``Q`` similarities are multiplied by ``eta`` (query
relevance) and ``V``-``P`` similarities by ``nu`` (privacy hardness), as in submodlib:

* **FLCMI** (facility location): ``sum_{i in V} max(min(a_i, eta q_i) - nu p_i, 0)`` with
  ``a_i``, ``q_i``, ``p_i`` the largest similarity of pool sample ``i`` to ``A``, ``Q``
  and ``P`` (coverage starting at 0, as submodlib's memoised greedy has it).
* **LogDetCMI** (log determinant, ``f(X) = log det(S_X + lambda I)``): the gain of adding
  ``c`` is ``log s^2(c | A u P) - log s^2(c | A u Q u P)``, two conditional variances.

Similarities are cosine similarities of the penultimate embeddings (submodlib's and
distil's default metric; distil defaults to gradient embeddings, the penultimate
features are its ``features`` option). Nothing here builds a kernel over the pool:

* FLCMI is computed exactly from per-sample vectors. With ``lo_i = max(a_i, nu p_i)``
  (the coverage so far, floored by the private set) and ``hi_i = eta q_i`` (the cap the
  query set allows), the gain of ``c`` is ``sum_i max(0, min(s_ic, hi_i) - lo_i)`` over
  the samples with ``lo_i < hi_i``; saturated samples drop out for good. One chunked
  pass over ``V x V`` (``O(N^2 D)`` time, the cost of any exact facility-location greedy)
  gives the first gains; afterwards lazy greedy (valid: FLCMI is submodular in ``A``)
  re-evaluates candidates only while their stale bound leads, a batch of them per
  product. Memory ``O(N D)`` plus one chunk. ``max_ground`` sums over a uniform sample of
  the pool instead (``O(N m D)``), a documented approximation for very large pools.
* LogDetCMI conditions on ``Q`` and ``P`` in closed form: cross-similarities to the
  labeled sets are linear in the normalised embeddings, so the Schur complement of the
  super-kernel on ``Q u P`` leaves the pool kernel ``X H X^T + lambda I`` with a ``D x D``
  matrix ``H`` (Woodbury). The batch is then handled by incremental Cholesky updates
  (Chen et al. 2018, as submodlib's memoised LogDet): per pick, one kernel column
  ``X (H x_a)`` and one ``O(N |A|)`` update per chain. All gains are exact at every step
  (plain greedy), in float64. Memory ``O(N (D + budget))``. With ``eta = nu = 1`` the
  super-kernel is a Gram matrix; other values can make it indefinite, which is reported
  instead of taking the log of a negative variance.

Before any OOD is labeled (``P`` empty) the functions are the mutual informations FLMI
(submodlib's FacilityLocationMutualInformation, the paper's FLVMI) and LogDetMI. Without
labeled known samples (cold start) ``Q`` is empty and CMI is identically 0, so the
conditional gain ``f(A | P)`` is maximised instead: facility location (resp. log
determinant) diversity over the pool, away from any labeled OOD. Once FLCMI has no
positive gain left (every sample covered up to its cap) the remaining picks are the
samples most like the query set relative to the private set (``eta q_i - nu p_i``).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from pydantic import AliasChoices, Field

from alscope.components import Params
from alscope.errors import ConfigError, ModelError
from alscope.scenarios.base import OOD
from alscope.strategies._distances import (
    as_tensor,
    is_big,
    l2_normalize,
    max_cosine,
    parallel,
    rows_per_block,
    sequential,
)
from alscope.strategies.base import PoolView, Requirements, Strategy, top_k


class SimilarParams(Params):
    function: Literal["flcmi", "logdetcmi"] = Field(
        default="flcmi",
        description="conditional mutual information to maximise: flcmi (facility location) or "
        "logdetcmi (log determinant)",
    )
    eta: float = Field(
        default=1.0,
        ge=0.0,
        description="query relevance (submodlib's magnificationEta): multiplies the pool-to-known "
        "similarities; larger favours samples close to the labeled known ones over coverage",
    )
    nu: float = Field(
        default=1.0,
        ge=0.0,
        description="privacy hardness: multiplies the pool-to-OOD similarities; larger pushes the "
        "batch further from the labeled OOD samples",
    )
    lambda_val: float = Field(
        default=1.0,
        gt=0.0,
        validation_alias=AliasChoices("lambda_val", "lambda", "lambdaVal"),
        description="logdetcmi: added to the kernel's diagonal (submodlib's lambdaVal; also "
        "accepted as 'lambda')",
    )
    max_ground: int | None = Field(
        default=None,
        ge=1,
        description="flcmi: take the facility-location sum over a uniform sample of at most this "
        "many pool samples (cost N x max_ground instead of N x N; an unbiased estimate of the "
        "objective up to scale); default: the whole pool, exact",
    )
    lazy_batch: int = Field(
        default=128,
        ge=1,
        description="flcmi: stale candidates re-evaluated together per lazy-greedy step (one "
        "product each); a speed knob, the greedy stays exact",
    )


class SIMILAR(Strategy):
    """Greedy FLCMI / LogDetCMI with the labeled known samples as query set and the
    labeled OOD samples as private set."""

    Params = SimilarParams
    component_name = "similar"

    def requirements(self) -> Requirements:
        return Requirements(embeddings=True, labeled_embeddings=True)

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        x, query, private = split_sets(view, self.component_name)
        p = self.params
        if p.function == "flcmi":
            picks, _ = flcmi_greedy(x, query, private, budget, rng, p.eta, p.nu, p.lazy_batch, p.max_ground)
        else:
            picks, _ = logdetcmi_greedy(x, query, private, budget, rng, p.eta, p.nu, p.lambda_val)
        return view.unlabeled[picks]


def split_sets(view: PoolView, who: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalised pool, query (labeled known) and private (labeled OOD) embeddings.

    Without ``labeled_targets`` (a view built by hand) every labeled sample is a query
    sample: there is no answer that says which are OOD.
    """
    x = l2_normalize(as_tensor(view.require("embeddings", who), view.device))
    d = x.shape[1]
    lab = view.labeled_embeddings
    if lab is None or len(lab) == 0:
        empty = x.new_zeros((0, d))
        return x, empty, empty
    lab_t = l2_normalize(as_tensor(lab, view.device))
    if lab_t.shape[1] != d:
        raise ModelError(
            f"strategy {who!r}: labeled embeddings have {lab_t.shape[1]} dimensions, the pool's {d}"
        )
    if view.labeled_targets is None:
        return x, lab_t, x.new_zeros((0, d))
    targets = np.asarray(view.labeled_targets)
    if len(targets) != len(lab_t):
        raise ModelError(
            f"strategy {who!r}: {len(targets)} labeled targets for {len(lab_t)} labeled embeddings"
        )
    ood = torch.from_numpy(targets == OOD).to(view.device)
    return x, lab_t[~ood], lab_t[ood]


def max_similarity(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Largest cosine similarity of each (normalised) row of ``x`` to the rows of ``y``,
    floored at 0 (facility location's empty coverage)."""
    if len(y) == 0:
        return x.new_zeros(len(x))
    return max_cosine(x, y)[0].clamp_min_(0.0)


# -- FLCMI -----------------------------------------------------------------------------


def _fl_gains(rows: torch.Tensor, ground: torch.Tensor, hi: torch.Tensor, lo: torch.Tensor) -> torch.Tensor:
    """``sum_i max(0, min(s_ci, hi_i) - lo_i)`` over the ground rows for each row ``c`` of
    ``rows``: the exact FLCMI gains, one block of ``rows x ground`` at a time.

    Needs ``lo <= hi``; then the term is ``clamp(s_ci, lo_i, hi_i) - lo_i``: two in-place
    passes over the block, and the samples ``c`` does not reach add exactly 0.
    """
    out = torch.zeros(len(rows), dtype=torch.float64, device=rows.device)
    if len(ground) == 0:
        return out
    step = rows_per_block(len(ground))
    with parallel(is_big(len(rows), len(ground), rows.shape[1])):
        for r0 in range(0, len(rows), step):
            s = (rows[r0 : r0 + step] @ ground.T).clamp_(min=lo, max=hi).sub_(lo)
            out[r0 : r0 + step] = s.sum(dim=1)
    return out


def flcmi_greedy(
    x: torch.Tensor,
    query: torch.Tensor,
    private: torch.Tensor,
    budget: int,
    rng: np.random.Generator,
    eta: float = 1.0,
    nu: float = 1.0,
    lazy_batch: int = 128,
    max_ground: int | None = None,
) -> tuple[np.ndarray, list[float]]:
    """Lazy greedy maximisation of FLCMI over the rows of ``x`` (all normalised).

    The candidates are every row; the sum runs over every row too, or over a uniform
    sample of ``max_ground`` rows (drawn with ``rng``) when that is smaller.

    Without query rows the conditional gain ``f(A | P)`` (FLCG; plain facility location
    when ``P`` is empty too) is maximised instead, since CMI would be 0 everywhere. Once
    no candidate has a positive gain the remaining picks are the samples most similar to
    the query set relative to the private set (``eta q - nu p``), ties drawn with ``rng``.
    Returns positions into ``x`` in pick order and each pick's gain.
    """
    with sequential(x.device):
        return _flcmi_greedy(x, query, private, budget, rng, eta, nu, lazy_batch, max_ground)


def _flcmi_greedy(
    x: torch.Tensor,
    query: torch.Tensor,
    private: torch.Tensor,
    budget: int,
    rng: np.random.Generator,
    eta: float,
    nu: float,
    lazy_batch: int,
    max_ground: int | None,
) -> tuple[np.ndarray, list[float]]:
    n = len(x)
    perm = torch.from_numpy(rng.permutation(n)).to(x.device)  # exact ties fall randomly
    xp = x[perm]
    lo = nu * max_similarity(xp, private)
    if len(query):
        q = eta * max_similarity(xp, query)
        hi = q
        fill = (q - lo).cpu().numpy()
    else:
        hi = torch.full_like(lo, math.inf)
        fill = (-lo).cpu().numpy()
    keep = lo < hi
    if max_ground is not None:
        keep[max_ground:] = False  # the rows are already in random order
    ground, g_hi, g_lo = xp[keep], hi[keep], lo[keep]
    bound = _fl_gains(xp, ground, g_hi, g_lo)
    fresh = torch.zeros(n, dtype=torch.long, device=x.device)  # step of the last exact gain
    taken = torch.zeros(n, dtype=torch.bool, device=x.device)
    picks: list[int] = []
    gains: list[float] = []
    while len(picks) < budget:
        step = len(picks)
        while True:
            masked = bound.masked_fill(taken, -math.inf)
            vals, cand = masked.topk(min(lazy_batch, n - step))
            if float(vals[0]) <= 0.0:
                break
            if int(fresh[cand[0]]) == step:
                break  # an exact gain no stale bound can beat (bounds only shrink)
            stale = cand[(fresh[cand] != step) & (vals > 0)]
            bound[stale] = _fl_gains(xp[stale], ground, g_hi, g_lo)
            fresh[stale] = step
        if float(vals[0]) <= 0.0:
            rest = np.flatnonzero(~taken.cpu().numpy())
            order = rest[top_k(fill[rest], budget - step, rng)]
            picks.extend(int(i) for i in order)
            gains.extend([0.0] * len(order))
            break
        c = int(cand[0])
        picks.append(c)
        gains.append(float(vals[0]))
        taken[c] = True
        if len(ground):
            torch.minimum(torch.maximum(g_lo, ground @ xp[c]), g_hi, out=g_lo)
            alive = g_lo < g_hi
            if int(alive.sum()) < 0.875 * len(ground):  # saturated samples never gain again
                ground, g_hi, g_lo = ground[alive], g_hi[alive], g_lo[alive]
    return perm[torch.tensor(picks, dtype=torch.long, device=x.device)].cpu().numpy(), gains


# -- LogDetCMI ---------------------------------------------------------------------------


def conditioned_metric(
    base: torch.Tensor, scale: torch.Tensor, lam: float, dim: int, device: torch.device
) -> torch.Tensor:
    """``H`` such that the pool kernel conditioned on the labeled rows ``base`` is
    ``X H X^T + lam I`` (float64, ``D x D``).

    The super-kernel has ``S_BB = B B^T`` among labeled rows and ``S_VB = X B^T diag(scale)``
    to the pool (scale: eta for query rows, nu for private rows), so the Schur complement
    is ``X (I - W) X^T`` with ``W = Y^T (B B^T + lam I)^{-1} Y``, ``Y = diag(scale) B``.
    ``W`` is formed in ``D x D`` by Woodbury when there are more labeled rows than
    dimensions, else by a direct solve.
    """
    eye = torch.eye(dim, dtype=torch.float64, device=device)
    if len(base) == 0:
        return eye
    b = base.double()
    y = b * scale.double()[:, None]
    if len(b) <= dim:
        gram = b @ b.T
        gram.diagonal().add_(lam)
        w = y.T @ torch.linalg.solve(gram, y)
    else:
        g = b.T @ b
        c = y.T @ b
        inner = g.clone()
        inner.diagonal().add_(lam)
        w = (y.T @ y - c @ torch.linalg.solve(inner, c.T)) / lam
    return eye - (w + w.T) / 2


class _Chain:
    """Incremental Cholesky of ``X H X^T + lam I`` over the pool as picks are added:
    ``var`` holds each row's conditional variance given the picks so far."""

    def __init__(self, x: torch.Tensor, h: torch.Tensor, lam: float, budget: int) -> None:
        self.x, self.h, self.lam = x, h, lam
        self.var = torch.einsum("ij,ij->i", x @ h, x) + lam
        self.e = torch.empty(len(x), budget, dtype=torch.float64, device=x.device)
        self.k = 0

    def add(self, a: int) -> None:
        col = self.x @ (self.h @ self.x[a])
        col[a] += self.lam
        if self.k:
            col -= self.e[:, : self.k] @ self.e[a, : self.k]
        col /= math.sqrt(float(self.var[a]))
        self.e[:, self.k] = col
        self.k += 1
        self.var -= col.square()


def logdetcmi_greedy(
    x: torch.Tensor,
    query: torch.Tensor,
    private: torch.Tensor,
    budget: int,
    rng: np.random.Generator,
    eta: float = 1.0,
    nu: float = 1.0,
    lam: float = 1.0,
) -> tuple[np.ndarray, list[float]]:
    """Greedy maximisation of LogDetCMI over the rows of ``x`` (all normalised).

    Gain of ``c``: ``log var(c | A u P) - log var(c | A u Q u P)``. Without query rows
    CMI is 0 everywhere and the conditional gain ``log var(c | A u P)`` (LogDetCG; plain
    log determinant when ``P`` is empty too) is maximised instead. Returns positions into
    ``x`` in pick order and each pick's gain.
    """
    with sequential(x.device):
        return _logdetcmi_greedy(x, query, private, budget, rng, eta, nu, lam)


def _logdetcmi_greedy(
    x: torch.Tensor,
    query: torch.Tensor,
    private: torch.Tensor,
    budget: int,
    rng: np.random.Generator,
    eta: float,
    nu: float,
    lam: float,
) -> tuple[np.ndarray, list[float]]:
    n, dim = x.shape
    perm = torch.from_numpy(rng.permutation(n)).to(x.device)
    xp = x[perm].double()
    ones_p = private.new_full((len(private),), nu)
    outer = _Chain(xp, conditioned_metric(private, ones_p, lam, dim, x.device), lam, budget)
    inner = None
    if len(query):
        both = torch.cat([query, private])
        scale = torch.cat([query.new_full((len(query),), eta), ones_p])
        inner = _Chain(xp, conditioned_metric(both, scale, lam, dim, x.device), lam, budget)
    taken = torch.zeros(n, dtype=torch.bool, device=x.device)
    picks: list[int] = []
    gains: list[float] = []
    for _ in range(budget):
        _check_positive(outer.var, taken, eta, nu, lam)
        gain = outer.var.log()
        if inner is not None:
            _check_positive(inner.var, taken, eta, nu, lam)
            gain = gain - inner.var.log()
        gain.masked_fill_(taken, -math.inf)
        c = int(gain.argmax())
        picks.append(c)
        gains.append(float(gain[c]))
        taken[c] = True
        outer.add(c)
        if inner is not None:
            inner.add(c)
    return perm[torch.tensor(picks, dtype=torch.long, device=x.device)].cpu().numpy(), gains


def _check_positive(var: torch.Tensor, taken: torch.Tensor, eta: float, nu: float, lam: float) -> None:
    """Scaled cross-similarities can make the super-kernel indefinite; a non-positive
    conditional variance would turn the log determinant into NaN."""
    left = var.masked_fill(taken, math.inf)
    if len(left) and float(left.min()) <= 0.0:
        raise ConfigError(
            f"strategy 'similar': the LogDetCMI kernel with eta={eta}, nu={nu}, lambda={lam} is not "
            f"positive definite on this pool; raise lambda or bring eta and nu closer to 1"
        )
