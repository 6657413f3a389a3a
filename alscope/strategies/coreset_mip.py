"""Robust k-center core-set: greedy start, then a MIP feasibility search over the radius.

Sener & Savarese, ICLR 2018: *Active learning for convolutional neural networks: a
core-set approach*, section 4.2. The greedy k-center solution (radius ``delta_g``) is a
2-approximation, so the optimal radius lies in ``[delta_g / 2, delta_g]``. The paper
binary-searches that interval with a mixed-integer feasibility problem: can ``budget``
new centres (plus the labeled ones) cover every sample within ``delta`` except at most
``Xi`` outliers (``Xi = outlier_fraction x n``, the paper uses ``1e-4``)? The search moves
over the actual pairwise distances, so it ends on the optimal radius of the problem.
With outliers allowed the optimum can lie below ``delta_g / 2`` (the greedy covers the
outliers too), so the search then starts at 0; so it does when the MIP covers a
subsample, whose greedy solution the pool's picks need not be.

Here the problem is the paper's, written as partial set cover (the assignment
variables of the paper collapse, as a sample may go to any centre within ``delta``):
binary ``u_j`` (sample ``j`` becomes a centre) and ``o_i`` (sample ``i`` is an outlier),

    sum_j u_j = budget,   sum_i o_i <= Xi,
    o_i + sum_{j : d(i, j) <= delta} u_j >= 1   for every i no labeled sample covers,

solved by HiGHS through ``scipy.optimize.milp`` (an open solver; no Gurobi).

Limits, to keep problem sizes sane: the MIP runs on at most ``max_points`` samples: the
greedy picks plus unlabeled samples drawn at random (all of them when the pool is that
small), which are both the candidate centres and the samples to cover. The whole search
has ``time_limit`` seconds; a solve cut short without a solution counts as infeasible,
and when time runs out the smallest radius proven feasible so far is kept (the greedy
one at worst), never an unproven one. When the
budget is at least half of ``max_points`` the greedy picks are returned as they are.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import torch
from pydantic import Field

from alscope.components import Params
from alscope.strategies._distances import (
    FeatureSpace,
    kcenter_greedy,
    min_sqdist,
    select_sequentially,
    sqdist,
)
from alscope.strategies.base import PoolView, Requirements, Strategy
from alscope.strategies.coreset import pool_features


class CoresetMIPParams(Params):
    outlier_fraction: float = Field(
        default=1e-4,
        ge=0.0,
        lt=1.0,
        description="outlier budget Xi as a share of the samples in the MIP (the paper's 1e-4)",
    )
    max_points: int = Field(
        default=600,
        ge=2,
        description="samples in the MIP: the greedy picks plus random unlabeled samples",
    )
    time_limit: float = Field(
        default=60.0,
        gt=0.0,
        description="seconds for the whole radius search; when they run out the smallest "
        "radius found so far is kept",
    )


def robust_kcenter(
    dist: np.ndarray,
    lab_dist: np.ndarray,
    budget: int,
    n_outliers: int,
    start: np.ndarray,
    time_limit: float = 60.0,
    half_bound: bool = False,
) -> tuple[np.ndarray, float, int]:
    """The paper's binary search with the MIP as feasibility oracle.

    Args:
        dist: ``(n, n)`` distances between the samples (candidate centres = samples).
        lab_dist: ``(n,)`` distance of each sample to the nearest labeled sample
            (``inf`` without labeled samples).
        budget: centres to choose among the samples.
        n_outliers: ``Xi``, samples that may stay uncovered.
        start: a feasible solution (the greedy picks, positions into the samples).
        time_limit: seconds for the whole search (each solve gets what is left).
        half_bound: start the search at half the starting radius, as the paper does;
            valid when ``start`` is the greedy solution of this very problem and no
            outliers are allowed (the greedy 2-approximation). Otherwise the search
            starts at 0: with outliers the optimum can be far below half.

    Returns:
        The chosen positions, their radius (max over the non-outliers of the distance
        to the nearest centre) and the number of solves.
    """
    n = len(dist)
    cover0 = np.minimum(lab_dist, dist[:, start].min(axis=1))
    ub = float(np.sort(cover0)[n - 1 - n_outliers]) if n_outliers < n else 0.0
    values = np.unique(np.concatenate([dist.ravel(), lab_dist[np.isfinite(lab_dist)]]))
    low = ub / 2.0 - 1e-12 if half_bound and n_outliers == 0 else -1.0
    values = values[(values >= low) & (values <= ub)]
    if len(values) == 0 or values[-1] < ub:
        values = np.append(values, ub)
    best, lo, hi, solves = np.asarray(start), 0, len(values) - 1, 0
    deadline = time.monotonic() + time_limit
    while lo < hi and time.monotonic() < deadline:
        mid = (lo + hi) // 2
        solves += 1
        left = deadline - time.monotonic()
        found = _feasible(dist, lab_dist, budget, n_outliers, float(values[mid]), left)
        if found is not None:
            best, hi = found, mid
        else:
            lo = mid + 1
    radius = np.minimum(lab_dist, dist[:, best].min(axis=1))
    r = float(np.sort(radius)[n - 1 - n_outliers]) if n_outliers < n else 0.0
    return best, r, solves


def _feasible(
    dist: np.ndarray, lab_dist: np.ndarray, budget: int, n_outliers: int, delta: float, time_limit: float
) -> np.ndarray | None:
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_matrix, hstack, identity, vstack

    n = len(dist)
    need = np.flatnonzero(lab_dist > delta)  # not covered by a labeled sample
    rows, cols = np.nonzero(dist[need] <= delta)
    cover = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(need), n))
    outlier = identity(n, format="csr")[need]
    a = vstack(
        [
            hstack([cover, outlier]),
            hstack([csr_matrix(np.ones((1, n))), csr_matrix((1, n))]),
            hstack([csr_matrix((1, n)), csr_matrix(np.ones((1, n)))]),
        ]
    ).tocsr()
    lower = np.concatenate([np.ones(len(need)), [budget], [-np.inf]])
    upper = np.concatenate([np.full(len(need), np.inf), [budget], [n_outliers]])
    cost = np.concatenate([np.zeros(n), np.ones(n)])  # among feasible sets, fewest outliers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = milp(
            cost,
            constraints=LinearConstraint(a, lower, upper),
            integrality=np.ones(2 * n),
            bounds=Bounds(0, 1),
            options={"time_limit": time_limit, "disp": False},
        )
    if res.x is None:
        return None
    chosen = np.flatnonzero(res.x[:n] > 0.5)
    return chosen if len(chosen) == budget else None


class CoreSetMIP(Strategy):
    """Robust k-center (outlier budget) by MIP feasibility search over the radius,
    started from the greedy k-center solution; HiGHS via SciPy."""

    component_name = "coreset_mip"
    Params = CoresetMIPParams

    def requirements(self) -> Requirements:
        return Requirements(embeddings=True, labeled_embeddings=True)

    @select_sequentially
    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        p = self.params
        x, lab, mean = pool_features(view, self.component_name, rng=rng)
        greedy, _ = kcenter_greedy(
            FeatureSpace(x), budget, rng, FeatureSpace(lab) if lab is not None else None, shift=mean
        )
        n = len(x)
        self.last_info = {"greedy_radius": math.nan, "radius": math.nan, "solves": 0}
        if 2 * budget > p.max_points:
            return view.unlabeled[greedy]
        if n <= p.max_points:
            points = np.arange(n)
        else:
            rest = np.setdiff1d(np.arange(n), greedy)
            extra = rng.choice(rest, size=p.max_points - budget, replace=False)
            points = np.sort(np.concatenate([greedy, extra]))
        pts = x[torch.from_numpy(points).to(x.device)].double()
        dist = sqdist(pts, pts).sqrt_().cpu().numpy()
        np.fill_diagonal(dist, 0.0)
        if lab is not None:
            lab_d2, _ = min_sqdist(pts, lab.double())
            lab_dist = lab_d2.sqrt().cpu().numpy()
        else:
            lab_dist = np.full(len(points), np.inf)
        start = np.searchsorted(points, greedy)
        n_out = math.floor(p.outlier_fraction * len(points))
        chosen, radius, solves = robust_kcenter(
            dist, lab_dist, budget, n_out, start, p.time_limit, half_bound=len(points) == n
        )
        greedy_cover = np.minimum(lab_dist, dist[:, start].min(axis=1))
        self.last_info = {"greedy_radius": float(greedy_cover.max()), "radius": radius, "solves": solves}
        return view.unlabeled[points[chosen]]
