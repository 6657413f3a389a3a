"""VeSSAL: volume sampling for streaming active learning.

Saran, Yousefi, Krishnamurthy, Langford & Ash, ICML 2023: *Streaming active learning
with deep neural networks*. The pool is read once, as a stream; sample ``u_t`` (its
BADGE gradient embedding ``(p - onehot(argmax p)) (x) h``) is queried with probability

    p_t = z_t * u_t^T A^{-1} u_t,   z_t = ((k - picked) / (N - t)) / tr(Sigma_t A^{-1})

where ``A = I / lambda + sum_{queried} u u^T`` (``lambda = cov_inv_scaling``, 100 in the
official code), kept as its inverse with rank-one Woodbury updates, and
``Sigma_t = (1/t) sum_{s <= t} u_s u_s^T`` is the running covariance of the stream: the
adaptive rate of the official ``streaming_sampler``, which steers the expected number of
picks to the budget. If the pass ends with fewer than ``k`` picks, the rest are drawn
uniformly from the samples not picked (official ``fill_random``, on by default).

Memory is ``O(N x (C + D) + d^2)`` with ``d = C x D``: the gradient embeddings stay
factorised (:class:`~alscope.strategies._distances.GradientSpace`) and ``u`` rows are
built one chunk of the stream at a time. Within a chunk the quadratic forms
``u^T A^{-1} u`` are computed in one product and kept exact after each pick by the
rank-one identity ``u^T A'^{-1} u = u^T A^{-1} u - (u^T A^{-1} u_p)^2 / (1 + u_p^T A^{-1} u_p)``,
so a pick costs ``O(chunk x d + d^2)``, not a fresh pass. When ``d`` exceeds
``max_dim`` the embeddings ``h`` are first multiplied by a Gaussian matrix drawn from the
cycle's ``rng`` (``D -> max_dim // C`` columns, so ``g`` stays a Kronecker product) and
the ``d x d`` matrices stay bounded.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pydantic import Field

from alscope.components import Params
from alscope.strategies._distances import is_big, parallel, select_sequentially
from alscope.strategies.badge import gradient_space
from alscope.strategies.base import PoolView, Requirements, Strategy


class VeSSALParams(Params):
    cov_inv_scaling: float = Field(
        default=100.0, gt=0.0, description="A^{-1} starts as this times the identity (official: 100)"
    )
    shuffle: bool = Field(
        default=True,
        description="stream the pool in an order drawn from the cycle's generator (False: pool order, "
        "as the official code streams its unlabeled indices)",
    )
    max_dim: int = Field(
        default=2048,
        ge=1,
        description="largest gradient-embedding dimension C x D kept exactly; above it the "
        "embeddings are randomly projected to max_dim // C columns",
    )
    chunk: int = Field(default=1024, ge=1, description="stream rows turned into gradient embeddings at once")


def stream_volume_sampling(
    a: torch.Tensor,
    h: torch.Tensor,
    budget: int,
    uniforms: np.ndarray,
    cov_inv_scaling: float,
    chunk: int = 1024,
) -> list[int]:
    """One streaming pass over rows ``u_i = a_i (x) h_i`` in row order; row ``i`` is
    taken when ``uniforms[i] < p_i`` (the VeSSAL probability). Returns positions in pick
    order, at most ``budget`` of them."""
    device = h.device
    n, c, dim = len(h), a.shape[1], h.shape[1]
    d = c * dim
    total = n
    a64, h64 = a.double(), h.double()
    ainv = torch.eye(d, dtype=torch.float64, device=device) * cov_inv_scaling
    seen = torch.zeros(d, d, dtype=torch.float64, device=device)  # sum of u u^T before the chunk
    picks: list[int] = []
    t0 = 0  # stream position of the chunk's first row
    while t0 < total and len(picks) < budget:
        t1 = min(total, t0 + chunk)
        u = (a64[t0:t1, :, None] * h64[t0:t1, None, :]).reshape(t1 - t0, d)
        big = is_big(t1 - t0, d, d)
        with parallel(big):
            quad = ((u @ ainv) * u).sum(dim=1)  # u^T A^{-1} u of every chunk row
        tr_seen = float((seen * ainv).sum())  # tr(seen A^{-1})
        t = torch.arange(t0, t1, device=device, dtype=torch.float64)
        r = torch.from_numpy(uniforms[t0:t1]).to(device)
        pos = 0
        while pos < len(u) and len(picks) < budget:
            # tr(Sigma_t A^{-1}) = (tr(seen A^{-1}) + sum of the chunk's quad up to t) / (t + 1)
            trace = (tr_seen + torch.cumsum(quad, dim=0)[pos:]) / (t[pos:] + 1.0)
            prob = ((budget - len(picks)) / (total - t[pos:])) / trace.clamp_min(1e-300) * quad[pos:].abs()
            hit = torch.nonzero(r[pos:] < prob).flatten()
            if not len(hit):
                break
            j = pos + int(hit[0])
            picks.append(t0 + j)
            # rank-one (Woodbury) update of A^{-1}, and of every quantity read from it
            w = ainv @ u[j]
            denom = 1.0 + float(u[j] @ w)
            tr_seen -= float(w @ (seen @ w)) / denom
            quad -= (u @ w).square_() / denom
            ainv.addr_(w, w, alpha=-1.0 / denom)
            pos = j + 1
        with parallel(big):
            seen.addmm_(u.T, u)
        t0 = t1
    return picks


class VeSSAL(Strategy):
    """Streaming volume sampling of gradient embeddings with an adaptive rate (one pass;
    fills a short batch uniformly)."""

    component_name = "vessal"
    Params = VeSSALParams

    def requirements(self) -> Requirements:
        return Requirements(probs=True, embeddings=True)

    @select_sequentially
    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        p: VeSSALParams = self.params
        space = gradient_space(view, self.component_name)
        a, h = space.a, space.h
        c = a.shape[1]
        if c * h.shape[1] > p.max_dim:
            cols = max(1, p.max_dim // c)
            proj = rng.standard_normal((h.shape[1], cols)).astype(np.float32) / math.sqrt(cols)
            h = h @ torch.from_numpy(proj).to(h.device)
        u = len(h)
        order = rng.permutation(u) if p.shuffle else np.arange(u)
        order_t = torch.from_numpy(order).to(h.device)
        a, h = a[order_t], h[order_t]
        uniforms = rng.random(u)
        picks = stream_volume_sampling(a, h, budget, uniforms, p.cov_inv_scaling, p.chunk)
        if len(picks) < budget:  # the official fill_random (its default)
            taken = np.zeros(u, dtype=bool)
            taken[picks] = True
            picks += rng.permutation(np.flatnonzero(~taken))[: budget - len(picks)].tolist()
        return view.unlabeled[order[np.asarray(picks, dtype=np.int64)]]
