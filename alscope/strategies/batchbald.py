"""BatchBALD: greedy maximisation of the joint mutual information of a batch.

Kirsch, van Amersfoort & Gal, NeurIPS 2019: "BatchBALD: Efficient and Diverse Batch
Acquisition for Deep Bayesian Active Learning". The batch ``A`` maximises

    a(A) = I[y_A; w] = H[y_A] - sum_{i in A} E_w H[y_i | w]

greedily. With K samples ``p_k(y_i)`` (MC dropout samples or ensemble members) the
joint of the batch is a mixture over k of products, and the gain of a candidate ``i``
given the batch ``A`` is the conditional mutual information

    a(A + i) - a(A) = H[y_i | y_A] - E_w H[y_i | w]
                    = E_{y_A}[ H( sum_k w_k(y_A) p_k(y_i) ) ] - mean_k H[p_k(y_i)],

where ``w_k(y_A) ∝ prod_{j in A} p_k(y_j)`` is the posterior over the K samples given
the labels ``y_A``. This is the paper's joint entropy ``H[y_A, y_i]`` minus ``H[y_A]``,
a constant within a step, so the greedy choice is the paper's. The expectation over
``y_A`` is exact (every configuration, weighted by its probability) while ``C^|A| <=
num_samples``; beyond that it is the paper's estimate from ``num_samples``
configurations sampled from the joint, ``num_samples / K`` under each sample k, as in
the reference implementation (BlackHC/batchbald_redux).

What makes it fast at pool scale, none of which changes the estimate beyond float32
rounding and the ``TAIL`` / ``COLLAPSED`` tolerances below:

* **Lazy greedy** (Minoux, 1978). A candidate's gain can only shrink as the batch
  grows (the submodularity the paper proves), so a gain computed at an earlier step
  bounds the current one. Each step visits candidates in order of their bounds and
  stops once the best gain found beats every remaining bound.
* **Jensen screening.** Entropy is concave, so replacing groups of configurations by
  their weighted mean posterior gives an upper bound of ``H[y_i | y_A]`` at a fraction
  of the cost (tens to hundreds of groups instead of thousands of configurations);
  only candidates whose screened bounds beat the best gain so far are evaluated in
  full. Configurations are grouped by the sample their posterior leans to and how far
  it has concentrated there, which keeps the bound tight as the posteriors collapse.
* **Merged configurations.** Configurations with the same labels have the same
  posterior and are merged (exact); configurations whose posterior has collapsed onto
  one sample k (as happens once the batch has pinned down the K samples) contribute
  ``H[p_k(y_i)]``, precomputed once per candidate.
* **Incremental sampling.** Each sampled configuration keeps the sample k it was drawn
  under and is extended by one label per acquired point, which keeps it a draw from
  the joint (the reference resamples every configuration at every step).
* One matrix product ``(M, K) @ (K, b*C)`` per chunk of candidates on the run's
  device; memory O(M*b*C) with b chosen to fit, never ``U x M``.

With exact joint entropies the lazy, screened greedy picks what the full sweep picks
(``lazy=False``); with sampled configurations both carry the same Monte Carlo noise and
the later steps' bounds are themselves estimates.

Joint sampling needs *consistent* samples: sample k must be the same model for every
pool point. Ensemble members are; MC dropout samples are only when the dropout masks
are shared across the pool (consistent MC dropout, as in the reference).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from pydantic import Field

from alscope.strategies.base import PoolView, Requirements, Strategy, top_k
from alscope.strategies.bayesian import (
    CHUNK_ELEMENTS,
    SampledParams,
    mean_prediction,
    one_thread_on_cpu,
    require_mc,
    rows_per_chunk,
    sample_entropies,
)
from alscope.strategies.uncertainty import entropy_scores

#: at most this much probability mass of the lightest configurations is left out; the
#: conditional entropy moves by at most ``TAIL * log C``
TAIL = 1e-6
#: posteriors within this total-variation distance of one sample count as collapsed onto
#: it; the entropy error per configuration is at most ``COLLAPSED * log(C - 1) +
#: h(COLLAPSED)``, about 2e-7 nats for C = 10: the float32 resolution of the entropies
COLLAPSED = 1e-8
#: the Jensen screens, coarse to fine: (bins of concentration, group by runner-up too)
SCREENS = ((8, False), (16, True))
#: slack (nats) for float32 rounding when a screened bound rules a candidate out
SLACK = 1e-6

#: ``(w, weight, alpha)``: posteriors ``(M, K)`` and weights ``(M,)`` of the configurations
#: still spread over the K samples, and the weight ``alpha`` ``(K,)`` collapsed onto each k
Posterior = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
Gains = Callable[[np.ndarray], np.ndarray]


#: a batch whose joint information reaches this share of log K has exhausted the K samples
SATURATION = 0.95


class SaturatedBatchWarning(UserWarning):
    """A BatchBALD batch reached the log K bound: its later picks carried no information."""


class BatchBALDParams(SampledParams):
    n_drop: int = Field(
        default=100,
        ge=1,
        description="MC dropout samples K (the paper's 100 on MNIST); a batch's joint information "
        "cannot exceed log K, so large batches need large K; with --ensemble M the M members",
    )
    num_samples: int = Field(
        default=10_000,
        ge=1,
        description="joint label configurations: exact while C^n <= num_samples for a batch "
        "of n, then this many sampled from the joint",
    )
    lazy: bool = Field(
        default=True,
        description="lazy greedy with Jensen screening (same picks as the full sweep for "
        "exact joint entropies); False re-scores the whole pool at every step",
    )


class JointConfigurations:
    """Label configurations ``y_A`` of the batch so far, with ``log p_k(y_A)`` for every k.

    Exact: every configuration of positive probability, weighted by ``p(y_A)``. Sampled:
    ``num_samples // K`` configurations drawn under each sample k, equally weighted,
    each extended by one draw per acquired point. Small bookkeeping arrays, kept in
    numpy on the CPU.
    """

    def __init__(self, k: int, c: int, num_samples: int, rng: np.random.Generator) -> None:
        self.k, self.c, self.num_samples, self.rng = k, c, num_samples, rng
        self.exact = True
        self.log_w = np.zeros((1, k))  # the empty batch: one configuration
        self.weight = np.ones(1)
        self.sample_of: np.ndarray | None = None
        self.members: list[np.ndarray] = []

    def add(self, probs_kc: np.ndarray) -> None:
        """Extend every configuration by the label of one more acquired point."""
        p = np.asarray(probs_kc, dtype=np.float64)
        self.members.append(p)
        if self.exact and len(self.log_w) * self.c <= self.num_samples:
            with np.errstate(divide="ignore"):
                log_p = np.log(p).T  # (C, K)
            self.log_w = (self.log_w[:, None, :] + log_p[None, :, :]).reshape(-1, self.k)
            q = np.exp(self.log_w).mean(axis=1)
            keep = q > 0
            self.log_w, q = self.log_w[keep], q[keep]
            self.weight = q / q.sum()
        elif self.exact:  # from now on: sampled configurations of everything so far
            self.exact = False
            self.sample_of = np.repeat(np.arange(self.k), max(1, self.num_samples // self.k))
            m = len(self.sample_of)
            self.log_w = np.zeros((m, self.k))
            self.weight = np.full(m, 1.0 / m)
            for member in self.members:
                self._extend(member)
        else:
            self._extend(p)

    def _extend(self, p: np.ndarray) -> None:
        assert self.sample_of is not None
        cdf = np.cumsum(p, axis=1)[self.sample_of]  # (M, C): each configuration's own sample
        u = self.rng.random(len(cdf)) * cdf[:, -1]
        y = np.minimum((cdf <= u[:, None]).sum(axis=1), self.c - 1)  # first class with cdf > u
        with np.errstate(divide="ignore"):
            self.log_w += np.log(p).T[y]

    def posterior(self, device: torch.device) -> Posterior:
        """The configurations as the gains need them, float32 on ``device``: merged,
        collapsed ones summed per sample, the lightest ``TAIL`` of the mass left out."""
        log_w, weight = merge_duplicates(self.log_w, self.weight)
        w = np.exp(log_w - log_w.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        arg = w.argmax(axis=1)
        collapsed = w[np.arange(len(w)), arg] >= 1.0 - COLLAPSED
        alpha = np.bincount(arg[collapsed], weights=weight[collapsed], minlength=self.k)
        w, weight = w[~collapsed], weight[~collapsed]
        if len(weight):
            order = np.argsort(weight, kind="stable")
            keep = np.sort(order[np.cumsum(weight[order]) > TAIL])
            w, weight = w[keep], weight[keep]
        total = alpha.sum() + weight.sum()
        return (
            torch.from_numpy(w.astype(np.float32)).to(device),
            torch.from_numpy((weight / total).astype(np.float32)).to(device),
            torch.from_numpy((alpha / total).astype(np.float32)).to(device),
        )


def merge_duplicates(log_w: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Identical rows of ``log_w`` merged into one (first occurrence kept), weights summed."""
    if len(log_w) < 2:
        return log_w, weight
    key = np.nan_to_num(log_w, neginf=-1e300) @ _PROJECTION[: log_w.shape[1]]
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    if len(first) == len(log_w):
        return log_w, weight
    rows = log_w[first]
    if not np.array_equal(rows[inverse], log_w):  # different rows share a key: group exactly
        _, first, inverse = np.unique(log_w, axis=0, return_index=True, return_inverse=True)
        rows = log_w[first]
    return rows, np.bincount(inverse.ravel(), weights=weight, minlength=len(rows))


_PROJECTION = np.random.default_rng(20190619).uniform(0.5, 1.5, size=4096)


def coarsen(posterior: Posterior, bins: int, by_second: bool) -> Posterior:
    """Configurations grouped by the sample their posterior leans to (and, with
    ``by_second``, the runner-up) and by how far it has concentrated there (``bins``
    logarithmic bins of ``1 - max_k w_k`` from 1e-8 to 1), each group replaced by its
    weighted mean posterior. By the concavity of entropy the conditional entropy from
    the groups bounds the one from ``posterior`` from above; the grouping keeps
    nearly collapsed posteriors apart, where that bound is tight."""
    w_t, weight_t, alpha = posterior
    if len(w_t) < 2:
        return posterior
    w, weight = w_t.cpu().numpy(), weight_t.cpu().numpy()
    k = w.shape[1]
    first = w.argmax(axis=1)
    second = np.where(np.arange(k)[None, :] == first[:, None], -1.0, w).argmax(axis=1) if k > 1 else first
    with np.errstate(divide="ignore"):
        spread = np.log10(np.maximum(1.0 - w[np.arange(len(w)), first].astype(np.float64), 1e-12))
    level = np.clip(np.floor((spread + 8.0) * (bins / 8.0)), 0, bins - 1).astype(np.int64)
    key = (first * k + second) * bins + level if by_second else first * bins + level
    _, inverse = np.unique(key, return_inverse=True)
    inverse = inverse.ravel()
    groups = int(inverse.max()) + 1
    mass = np.bincount(inverse, weights=weight, minlength=groups)
    sums = np.zeros((groups, k))
    np.add.at(sums, inverse, w * weight[:, None])
    means = (sums / mass[:, None]).astype(np.float32)
    device = w_t.device
    return (
        torch.from_numpy(means).to(device),
        torch.from_numpy(mass.astype(np.float32)).to(device),
        alpha,
    )


def conditional_entropies(
    probs: torch.Tensor,
    sample_entropy: torch.Tensor,
    rows: torch.Tensor,
    posterior: Posterior,
    device: torch.device,
) -> torch.Tensor:
    """``H[y_i | y_A] = sum_m weight_m H(w_m @ p_i) + sum_k alpha_k H[p_k(y_i)]`` for the
    pool rows ``rows`` (float64, CPU), in chunks of at most ``CHUNK_ELEMENTS``."""
    w, weight, alpha = posterior
    k, c = probs.shape[1], probs.shape[2]
    out = torch.empty(len(rows), dtype=torch.float64)
    step = max(1, CHUNK_ELEMENTS // (max(1, len(w)) * c))
    for start in range(0, len(rows), step):
        sub = rows[start : start + step]
        h = sample_entropy[sub].to(device, torch.float32) @ alpha
        if len(w):
            b = len(sub)
            chunk = probs[sub].to(device, torch.float32)  # (b, K, C)
            y = w @ chunk.permute(1, 0, 2).reshape(k, b * c)  # (M, b*C): p(y_i | y_A = m)
            log_y = torch.log(y.clamp_min_(_TINY))
            h -= (weight @ log_y.mul_(y)).view(b, c).sum(dim=1)
        out[start : start + len(sub)] = h.to("cpu", torch.float64)
    return out


_TINY = float(torch.finfo(torch.float32).tiny)


def bald_and_expected_entropy(
    probs: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BALD ``(U,)`` and expected entropy ``(U,)`` of every row (float64, computed as
    :class:`~alscope.strategies.bayesian.BALD` computes its scores) and the per-sample
    entropies ``H[p_k(y_i)]`` ``(U, K)`` (float32), all on the CPU."""
    u, k, c = probs.shape
    mi = torch.empty(u, dtype=torch.float64)
    cond = torch.empty(u, dtype=torch.float64)
    sample_entropy = torch.empty(u, k, dtype=torch.float32)
    step = rows_per_chunk(k, c)
    for start in range(0, u, step):
        chunk = probs[start : start + step].to(device, torch.float64)
        h = sample_entropies(chunk)
        expected = h.mean(dim=1)
        mi[start : start + step] = (entropy_scores(mean_prediction(chunk)) - expected).clamp_min(0.0).cpu()
        cond[start : start + step] = expected.cpu()
        sample_entropy[start : start + step] = h.cpu()
    return mi, cond, sample_entropy


def batchbald_positions(
    probs: torch.Tensor,
    budget: int,
    rng: np.random.Generator,
    *,
    num_samples: int = 10_000,
    lazy: bool = True,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Positions (rows of ``probs``, ``(U, K, C)``) of a greedy BatchBALD batch of ``budget``.

    The first pick is BALD's top pick for the same generator state. Candidates with
    equal gains are taken in an order drawn from ``rng``, which also draws the sampled
    configurations.
    """
    return batchbald_batch(probs, budget, rng, num_samples=num_samples, lazy=lazy, device=device)[0]


def batchbald_batch(
    probs: torch.Tensor,
    budget: int,
    rng: np.random.Generator,
    *,
    num_samples: int = 10_000,
    lazy: bool = True,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """``(positions, gains)``: the greedy batch of :func:`batchbald_positions` and each
    pick's gain in nats (the first pick's is its BALD score). The gains sum to the
    batch's joint mutual information, which K samples bound by ``log K``."""
    device = torch.device(device)
    with one_thread_on_cpu(device):
        return _batchbald(probs, budget, rng, num_samples, lazy, device)


def _batchbald(
    probs: torch.Tensor,
    budget: int,
    rng: np.random.Generator,
    num_samples: int,
    lazy: bool,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    u, k, c = probs.shape
    mi, cond, sample_entropy = bald_and_expected_entropy(probs, device)
    first = int(top_k(mi.float().numpy(), 1, rng)[0])
    gained = [float(mi[first])]
    if budget == 1:
        return np.array([first], dtype=np.int64), np.asarray(gained)
    perm = rng.permutation(u)  # the candidates' order among equal bounds
    bound = mi.numpy()[perm]  # upper bounds of the gains, in permuted order
    cond_p = cond.numpy()[perm]
    bound[np.flatnonzero(perm == first)] = -np.inf
    chosen = [first]
    joint = JointConfigurations(k, c, num_samples, rng)
    joint.add(probs[first].numpy())
    while len(chosen) < budget:
        posterior = joint.posterior(device)

        def gains(pos: np.ndarray, post: Posterior = posterior) -> np.ndarray:
            rows = torch.from_numpy(perm[pos])
            return conditional_entropies(probs, sample_entropy, rows, post, device).numpy() - cond_p[pos]

        if lazy:
            screens = []
            for bins, by_second in SCREENS:
                coarse = coarsen(posterior, bins, by_second)
                if len(coarse[0]) * 4 <= len(posterior[0]):
                    screens.append(functools.partial(gains, post=coarse))
            best = _lazy_best(bound, gains, screens)
        else:
            best = _full_best(bound, gains)
        chosen.append(int(perm[best]))
        gained.append(float(bound[best]))  # the search left the pick's exact gain there
        bound[best] = -np.inf
        if len(chosen) < budget:
            joint.add(probs[chosen[-1]].numpy())
    return np.asarray(chosen, dtype=np.int64), np.asarray(gained)


def _full_best(bound: np.ndarray, gains: Gains) -> int:
    """Every candidate scored; the first of the largest gains."""
    pos = np.flatnonzero(bound > -np.inf)
    g = gains(pos)
    bound[pos] = g
    return int(pos[int(np.argmax(g))])


def _lazy_best(bound: np.ndarray, gains: Gains, screens: Sequence[Gains] = ()) -> int:
    """The candidate with the largest gain. Candidates are visited in order of their
    bounds (updated in place); each visited one goes through the ``screens`` (cheaper
    upper bounds, coarse to fine) as long as it can still beat the best gain so far,
    then gets its exact gain. Stops once the best gain reaches the bound of every
    candidate not visited yet."""
    remaining = int((bound > -np.inf).sum())
    visited = np.zeros(len(bound), dtype=bool)
    n_visited, listed, width = 0, 512, 16
    best_gain, best_pos = -np.inf, -1
    while n_visited < remaining:
        open_bounds = np.where(visited, -np.inf, bound)
        n_list = min(listed, remaining - n_visited)
        order = np.argpartition(-open_bounds, n_list - 1)[:n_list]
        order = order[np.argsort(-open_bounds[order], kind="stable")]
        i = 0
        while i < len(order):
            if best_gain >= open_bounds[order[i]]:
                return best_pos
            chunk = order[i : i + width]
            i += len(chunk)
            visited[chunk] = True
            n_visited += len(chunk)
            width = min(2 * width, 4096)
            upper = np.full(len(chunk), np.inf)
            for screen in screens:
                upper = np.minimum(upper, screen(chunk))
                bound[chunk] = np.minimum(bound[chunk], upper)
                keep = upper + SLACK > best_gain
                chunk, upper = chunk[keep], upper[keep]
                if not len(chunk):
                    break
            by_bound = np.argsort(-upper, kind="stable")
            chunk, upper = chunk[by_bound], upper[by_bound]
            j = 0
            while j < len(chunk):  # exact gains, best-bounded first, re-pruned as the best rises
                sub, sub_upper = chunk[j : j + 64], upper[j : j + 64]
                j += len(sub)
                sub = sub[sub_upper + SLACK > best_gain]
                if not len(sub):
                    continue
                g = gains(sub)
                bound[sub] = g
                top = int(np.argmax(g))
                if g[top] > best_gain:
                    best_gain, best_pos = float(g[top]), int(sub[top])
        listed *= 4
    return best_pos


class BatchBALD(Strategy):
    """Greedy joint mutual information of the batch (BatchBALD)."""

    component_name = "batchbald"
    Params = BatchBALDParams

    def requirements(self) -> Requirements:
        return Requirements(mc_samples=self.params.n_drop, consistent_mc=True)

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        mc = require_mc(view, self.component_name)
        positions, gains = batchbald_batch(
            mc,
            budget,
            rng,
            num_samples=self.params.num_samples,
            lazy=self.params.lazy,
            device=view.device,
        )
        message = saturation_message(gains, mc.shape[1])
        if message is not None:
            warnings.warn(message, SaturatedBatchWarning, stacklevel=1)
        return view.unlabeled[positions]


def saturation_message(gains: np.ndarray, k: int) -> str | None:
    """A warning when the batch's joint information (the summed ``gains``) reached log K."""
    total, bound = float(np.sum(gains)), math.log(k)
    if total < SATURATION * bound:
        return None
    empty = int(np.sum(gains < 1e-3))
    return (
        f"batchbald: the batch's joint information {total:.2f} nats reached log K = {bound:.2f} "
        f"(K = {k} samples); {empty} of {len(gains)} picks added less than 1e-3 nats. Raise n_drop "
        f"(--n-drop) or lower n_query"
    )
