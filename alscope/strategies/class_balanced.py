"""Class-balanced active learning: entropy and core-set with a class-balance term.

Bengar, van de Weijer, Lopez Fuentes & Raducanu, WACV 2022: *Class-Balanced Active
Learning for Image Classification* (official code: github.com/Javadzb/Class-Balanced-AL).
A query is a binary vector ``z`` over the unlabeled pool with ``sum(z) = b`` that trades
an acquisition objective against how far the query's *predicted* class counts ``P^T z``
(``P``: ``(U, C)`` predicted probabilities) fall from ``Omega``, the number of new
samples each class needs for the labeled set to be balanced after the query:

    Omega_c = max(0, (L + b) / C - L_c)

(``L``: labeled samples of known classes, ``L_c`` of class ``c``; samples answered
out-of-distribution are not counted). ``Omega`` sums to at least ``b``: to more when some
classes already hold more than their share (``rescale_target`` scales it down to ``b``).

* **EntropyCB** minimises ``-sum_i z_i H(p_i) + lambda ||Omega - P^T z||_1``, a linear
  programme once the L1 norm gets one auxiliary variable per class
  (``t_c >= +-(Omega_c - (P^T z)_c)``): ``U + C`` variables, ``2C + 1`` constraints. The
  paper solves it as a binary programme with Gurobi; here HiGHS (``scipy.optimize.milp``)
  solves it as such for pools up to ``exact_max_pool`` samples, and larger pools as its
  LP relaxation (``0 <= z <= 1``). A vertex of that LP has at most ``2C + 1`` basic
  variables, so at most that many ``z`` are fractional: the samples at ``z = 1`` are
  kept and the few slots left are filled greedily on the exact objective.
* **CoresetCB**: the core-set objective (max over samples of the distance to the nearest
  centre) is not linear in ``z``; the paper optimises it, as Sener & Savarese's greedy
  k-center does, one pick at a time, each pick maximising
  ``min_j |x_i - x_j| - lambda ||Omega - P^T z - p_i||_1`` (the distance to the nearest
  labeled or already picked sample, minus the balance term the query would have with
  sample ``i`` added).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from pydantic import AliasChoices, Field

from alscope.components import Params
from alscope.errors import ModelError
from alscope.scenarios.base import OOD
from alscope.strategies._distances import FeatureSpace, MinDistance, select_sequentially, sequential
from alscope.strategies.base import PoolView, Requirements, Strategy, top_k
from alscope.strategies.coreset import pool_features
from alscope.strategies.uncertainty import chunked_probs, entropy_scores

# -- the balance target --------------------------------------------------------------


def labeled_class_counts(view: PoolView, strategy: str) -> np.ndarray:
    """Labeled samples per class, ``(C,)``; OOD answers are not counted."""
    n_classes = view.n_classes
    targets = view.labeled_targets
    if targets is None:
        if len(view.labeled):
            raise ModelError(
                f"strategy {strategy!r} needs the classes of the {len(view.labeled)} labeled samples "
                "(view.labeled_targets; PoolView.from_arrays(labeled_targets=...))"
            )
        return np.zeros(n_classes)
    t = np.asarray(targets).ravel()
    if len(t) != len(view.labeled):
        raise ModelError(
            f"strategy {strategy!r}: {len(t)} labeled targets for {len(view.labeled)} labeled samples"
        )
    integral = np.issubdtype(t.dtype, np.integer) or (np.isfinite(t).all() and np.array_equal(t, np.round(t)))
    if t.size and not integral:
        raise ModelError(f"strategy {strategy!r}: labeled targets must be class indices, got {t.dtype}")
    known = t[t != OOD].astype(np.int64)
    if known.size and (known.min() < 0 or known.max() >= n_classes):
        raise ModelError(
            f"strategy {strategy!r}: labeled targets must lie in [0, {n_classes}) or be OOD ({OOD}), "
            f"got values from {int(known.min())} to {int(known.max())}"
        )
    return np.bincount(known, minlength=n_classes).astype(np.float64)


def balance_target(counts: np.ndarray, budget: int, rescale: bool = False) -> np.ndarray:
    """``Omega``: new samples each class needs for ``counts + Omega`` to be balanced at
    ``(sum(counts) + budget) / C`` per class; classes above that share need none.

    ``Omega`` sums to at least ``budget``; ``rescale`` scales it down to ``budget`` (the
    query can then meet it exactly, and the classes furthest below their share keep the
    largest targets).
    """
    counts = np.asarray(counts, dtype=np.float64)
    share = (counts.sum() + budget) / len(counts)
    omega = np.maximum(share - counts, 0.0)
    total = omega.sum()
    if rescale and total > budget:
        omega *= budget / total
    return omega


def balance_l1(probs: np.ndarray, chosen: np.ndarray, omega: np.ndarray) -> float:
    """``||Omega - P^T z||_1`` for the positions ``chosen``."""
    return float(np.abs(omega - probs[chosen].sum(axis=0)).sum())


def pool_probs(view: PoolView, strategy: str) -> np.ndarray:
    """The unlabeled pool's probabilities as float64 ``(U, C)``, checked."""
    p = view.require("probs", strategy).detach().cpu().double().numpy()
    if p.ndim != 2 or (view.n_classes and p.shape[1] != view.n_classes):
        raise ModelError(
            f"strategy {strategy!r}: probs of shape {tuple(p.shape)} for {view.n_classes} classes"
        )
    if not np.isfinite(p).all() or (p < 0).any():
        raise ModelError(f"strategy {strategy!r}: probs hold negative, NaN or infinite values")
    return p


# -- the programme ---------------------------------------------------------------------


def solve_balanced(
    utility: np.ndarray,
    probs: np.ndarray,
    omega: np.ndarray,
    budget: int,
    weight: float,
    *,
    integral: bool,
    time_limit: float,
) -> tuple[np.ndarray | None, int, str]:
    """Minimise ``-utility . z + weight ||omega - P^T z||_1`` s.t. ``sum z = budget``.

    ``z`` binary (``integral``) or in ``[0, 1]``; HiGHS through ``scipy.optimize.milp``.
    Returns ``z`` (``None`` when no feasible point was found within ``time_limit``),
    HiGHS's status (0 optimal, 1 time or iteration limit) and its message.
    """
    from scipy import sparse
    from scipy.optimize import Bounds, LinearConstraint, milp

    u, c = probs.shape
    pt = sparse.csr_matrix(probs.T)
    eye = sparse.identity(c, format="csr")
    # t_c + (P^T z)_c >= Omega_c and t_c - (P^T z)_c >= -Omega_c: t_c >= |Omega_c - (P^T z)_c|,
    # tight at the optimum because t costs weight > 0.
    a = sparse.vstack(
        [
            sparse.hstack([pt, eye]),
            sparse.hstack([-pt, eye]),
            sparse.hstack([sparse.csr_matrix(np.ones((1, u))), sparse.csr_matrix((1, c))]),
        ],
        format="csr",
    )
    lower = np.concatenate([omega, -omega, [budget]])
    upper = np.concatenate([np.full(2 * c, np.inf), [budget]])
    cost = np.concatenate([-np.asarray(utility, dtype=np.float64), np.full(c, weight)])
    integrality = np.concatenate([np.full(u, 1 if integral else 0), np.zeros(c)])
    bounds = Bounds(np.zeros(u + c), np.concatenate([np.ones(u), np.full(c, np.inf)]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = milp(
            cost,
            constraints=LinearConstraint(a, lower, upper),
            integrality=integrality,
            bounds=bounds,
            options={"time_limit": time_limit, "disp": False},
        )
    return (None if res.x is None else np.asarray(res.x[:u])), int(res.status), str(res.message)


def greedy_balanced(
    base: Callable[[], torch.Tensor],
    probs: torch.Tensor,
    residual: torch.Tensor,
    count: int,
    weight: float,
    rng: np.random.Generator,
    on_pick: Callable[[int], None] | None = None,
    taken: torch.Tensor | None = None,
) -> list[int]:
    """Pick ``count`` rows one at a time, each maximising
    ``base_i - weight ||residual - p_i||_1``, where ``residual`` is ``Omega`` less the
    summed probabilities of the rows picked so far; ties broken by a random priority
    drawn once. Rows in ``taken`` (already in the query) are never picked.

    ``base()`` is read before every pick (the core-set distances shrink as rows are
    picked: ``on_pick`` updates them); all its values infinite (no centre yet) count as
    equal. ``probs`` and ``residual`` share ``base()``'s device and dtype.
    """
    n = len(probs)
    device = probs.device
    priority = torch.from_numpy(rng.permutation(n)).to(device)
    taken = torch.zeros(n, dtype=torch.bool, device=device) if taken is None else taken.clone()
    residual = residual.clone()
    picks: list[int] = []
    for _ in range(count):
        score = base().to(probs.dtype).clone()
        if bool(torch.isinf(score).all()):
            score.zero_()
        if weight > 0:
            score -= weight * (residual[None, :] - probs).abs_().sum(dim=1)
        score[taken] = -math.inf
        best = score.max()
        ties = torch.nonzero(score == best).squeeze(1)
        j = int(ties[torch.argmin(priority[ties])]) if len(ties) > 1 else int(ties[0])
        picks.append(j)
        taken[j] = True
        residual -= probs[j]
        if on_pick is not None:
            on_pick(j)
    return picks


def round_relaxed(
    z: np.ndarray,
    utility: np.ndarray,
    probs: np.ndarray,
    omega: np.ndarray,
    budget: int,
    weight: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """A query of ``budget`` rows from the LP solution ``z``: the rows at ``z = 1``, and
    the few slots the fractional rows leave filled greedily on the exact objective
    (taking the largest fractional ``z`` instead can cost noticeably on small queries)."""
    ones = np.flatnonzero(z >= 1.0 - 1e-6)
    if len(ones) >= budget:
        return ones[top_k(z[ones], budget, rng)]
    p = torch.from_numpy(probs)
    taken = torch.zeros(len(z), dtype=torch.bool)
    taken[torch.from_numpy(ones)] = True
    residual = torch.from_numpy(omega - probs[ones].sum(axis=0))
    util = torch.from_numpy(np.asarray(utility, dtype=np.float64))
    with sequential(torch.device("cpu")):  # a few small passes: threads cost more than they give
        rest = greedy_balanced(lambda: util, p, residual, budget - len(ones), weight, rng, taken=taken)
    return np.concatenate([ones, np.asarray(rest, dtype=np.int64)])


# -- parameters ----------------------------------------------------------------------


class EntropyCBParams(Params):
    weight: float = Field(
        default=0.6,
        ge=0.0,
        validation_alias=AliasChoices("weight", "lambda"),
        description="lambda: weight of the balance term ||Omega - P^T z||_1 against the summed "
        "entropy (also accepted as 'lambda'; the official code uses 0.6 on CIFAR-10 and 2 on "
        "CIFAR-100; 0 is plain entropy sampling)",
    )
    rescale_target: bool = Field(
        default=False,
        description="scale Omega down to sum to the budget when classes above their balanced "
        "share make it sum to more (the official code does not)",
    )
    exact_max_pool: int = Field(
        default=2000,
        ge=0,
        description="pools of at most this many unlabeled samples are solved as the paper does, "
        "as a binary programme; larger ones as its LP relaxation (the samples at z = 1, the few "
        "slots the fractional z leave filled greedily)",
    )
    time_limit: float = Field(
        default=60.0,
        gt=0.0,
        description="seconds HiGHS may spend per query; a binary programme cut short keeps its "
        "best solution (or falls back to the LP), an LP cut short falls back to the greedy "
        "(with a warning)",
    )


class CoresetCBParams(Params):
    weight: float = Field(
        default=0.5,
        ge=0.0,
        validation_alias=AliasChoices("weight", "lambda"),
        description="lambda: weight of the balance term against the distance to the nearest "
        "centre (also accepted as 'lambda'; the official code's lambda/C, 5/10 on CIFAR-10 and "
        "50/100 on CIFAR-100; 0 is plain greedy k-center)",
    )
    rescale_target: bool = Field(
        default=False,
        description="scale Omega down to sum to the budget when classes above their balanced "
        "share make it sum to more (the official code does not)",
    )


# -- strategies ----------------------------------------------------------------------


class EntropyCB(Strategy):
    """Entropy with the class-balance term, solved by HiGHS (binary programme on small
    pools, LP relaxation rounded on large ones)."""

    component_name = "entropy_cb"
    Params = EntropyCBParams

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.last_info: dict[str, Any] = {}

    def requirements(self) -> Requirements:
        return Requirements(probs=True)

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        p = self.params
        name = self.component_name
        probs = pool_probs(view, name)
        counts = labeled_class_counts(view, name)
        entropy = chunked_probs(view, name, entropy_scores).double().numpy()
        omega = balance_target(counts, budget, p.rescale_target)
        u = len(probs)
        start = time.perf_counter()
        if p.weight == 0.0 or budget >= u:
            # no balance term, or no choice: exactly entropy sampling's top-k
            chosen, solver, status = top_k(entropy, budget, rng), "top_k", "no programme to solve"
        else:
            chosen, solver, status = self._solve(entropy, probs, omega, budget, rng)
        self.last_info = {
            "solver": solver,
            "status": status,
            "seconds": time.perf_counter() - start,
            "omega": omega,
            "balance_l1": balance_l1(probs, chosen, omega),
            "entropy": float(entropy[chosen].sum()),
        }
        return view.unlabeled[chosen]

    def _solve(
        self, entropy: np.ndarray, probs: np.ndarray, omega: np.ndarray, budget: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, str, str]:
        p = self.params
        deadline = time.monotonic() + p.time_limit
        if len(probs) <= p.exact_max_pool:
            z, code, message = solve_balanced(
                entropy, probs, omega, budget, p.weight, integral=True, time_limit=p.time_limit
            )
            if z is not None:
                return top_k(z, budget, rng), "milp", message
        left = max(deadline - time.monotonic(), 1.0)
        z, code, message = solve_balanced(
            entropy, probs, omega, budget, p.weight, integral=False, time_limit=left
        )
        if z is not None and code == 0:
            return round_relaxed(z, entropy, probs, omega, budget, p.weight, rng), "lp", message
        warnings.warn(
            f"strategy {self.component_name!r}: HiGHS found no LP solution within {p.time_limit:.0f} s "
            f"({message}); picking greedily instead (raise time_limit to solve the programme)",
            RuntimeWarning,
            stacklevel=3,
        )
        ent_t = torch.from_numpy(entropy)
        with sequential(torch.device("cpu")):
            picks = greedy_balanced(
                lambda: ent_t, torch.from_numpy(probs), torch.from_numpy(omega), budget, p.weight, rng
            )
        return np.asarray(picks, dtype=np.int64), "greedy", message


class CoresetCB(Strategy):
    """Greedy k-center whose every pick also pays the class-balance term; starts from
    the labeled set (without one, the first pick is the best balanced sample)."""

    component_name = "coreset_cb"
    Params = CoresetCBParams

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.last_info: dict[str, Any] = {}

    def requirements(self) -> Requirements:
        return Requirements(probs=True, embeddings=True, labeled_embeddings=True)

    @select_sequentially
    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        p = self.params
        name = self.component_name
        probs = pool_probs(view, name)
        counts = labeled_class_counts(view, name)
        omega = balance_target(counts, budget, p.rescale_target)
        x, lab, mean = pool_features(view, name, rng=rng)
        if len(probs) != len(x):
            raise ModelError(f"strategy {name!r}: {len(probs)} probability rows for {len(x)} embeddings")
        tracker = MinDistance(FeatureSpace(x), rng, shift=mean)
        if lab is not None:
            tracker.add_external(FeatureSpace(lab - mean))
        device = tracker.device
        # Rows in the tracker's storage order, so that its distance vector lines up.
        stored_probs = torch.from_numpy(probs).to(device=device, dtype=torch.float32)[tracker.perm]
        picks = greedy_balanced(
            lambda: tracker.mind,
            stored_probs,
            torch.from_numpy(omega).to(device=device, dtype=torch.float32),
            budget,
            p.weight,
            rng,
            on_pick=tracker.add_row,
        )
        chosen = tracker.original(picks)
        self.last_info = {
            "omega": omega,
            "balance_l1": balance_l1(probs, chosen, omega),
            "radius": float(tracker.mind.max()) if len(picks) < len(x) else 0.0,
        }
        return view.unlabeled[chosen]
