"""Distance machinery shared by the diversity and hybrid strategies.

Everything here is chunked torch on the run's device and never holds an ``N x N``
matrix (nor, for BADGE, the ``N x (C*D)`` gradient embeddings):

* :class:`FeatureSpace` and :class:`GradientSpace` give inner products between rows,
  the latter in factorised form: for ``g_i = a_i (x) h_i``,
  ``<g_i, g_j> = (a_i . a_j)(h_i . h_j)`` and ``|g_i|^2 = |a_i|^2 |h_i|^2``.
* :class:`MinDistance` keeps, for every pool row, the distance to its nearest centre
  while centres are added (k-center greedy, k-means++ / D^2 sampling). Rows are
  grouped once around seed rows and stored group by group; new centres only visit the
  groups the triangle inequality cannot rule out: for a row ``x`` of group ``g`` (seed
  ``s``, radius ``R_g``), ``|x - c| >= |c - s| - R_g``, so when
  ``|c - s| - R_g >= max_{x in g} d(x)`` no row of ``g`` can get closer. Centres can
  also be recorded and applied in batches (one blocked product per batch instead of a
  pass per centre). The distances kept are exactly those of a full pass.
* :func:`kcenter_greedy` (lazy: a short list of the farthest rows decides while it
  provably can; float64 for float32 near-ties), :func:`kmeans_pp` (lazy D^2 sampling
  by rejection, exact), :func:`kmeans`, :func:`knn_mean_sqdist`, :func:`min_sqdist`,
  :func:`project`, :func:`l2_normalize`.

On the CPU, loops of small operations run on one thread (:func:`sequential`) and only
large products use all threads (:func:`parallel`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar, cast

import numpy as np
import torch

# Elements of one (rows x columns) block of a chunked distance computation.
BLOCK_ELEMENTS = 1 << 22
# Bytes below which a run of groups the bound rules out is processed anyway, because
# the fixed cost of one more tensor operation outweighs streaming it.
_MERGE_BYTES = 1 << 19
# Relative slack on pruning decisions, so float rounding never prunes a row that a
# full pass would have updated.
_SLACK = 1e-5


_OUTER_THREADS: list[int] = []
_Select = TypeVar("_Select", bound=Callable[..., np.ndarray])


@contextmanager
def sequential(device: torch.device) -> Iterator[None]:
    """Run small tensor operations on one CPU thread (nothing changes on a GPU).

    The greedy loops here are many small operations on a few thousand rows; with
    several threads each pays a parallel-region start and barrier, which on a busy
    machine costs far more than the work (measured on 2 shared cores: picks 10x and a
    150 x 32 ``index_add_`` 100x slower). Large products inside go back to all threads
    through :func:`parallel`, where threads pay off.
    """
    if device.type != "cpu":
        yield
        return
    _OUTER_THREADS.append(torch.get_num_threads())
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(_OUTER_THREADS.pop())


def select_sequentially(select: _Select) -> _Select:
    """Decorates a strategy's ``select`` so that the whole selection runs under
    :func:`sequential` on the view's device."""

    @functools.wraps(select)
    def wrapper(self: Any, view: Any, budget: int, rng: np.random.Generator) -> np.ndarray:
        with sequential(view.device):
            return select(self, view, budget, rng)

    return cast("_Select", wrapper)


@contextmanager
def parallel(big: bool = True) -> Iterator[None]:
    """All of the caller's threads for one large product inside :func:`sequential`."""
    if not (big and _OUTER_THREADS):
        yield
        return
    torch.set_num_threads(_OUTER_THREADS[0])
    try:
        yield
    finally:
        torch.set_num_threads(1)


def is_big(rows: int, cols: int, depth: int) -> bool:
    """Worth more than one thread: about 10^8 multiply-adds or more."""
    return rows * cols * depth >= 100_000_000


def as_tensor(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` as contiguous float32 on ``device`` (no copy when it already is)."""
    return x.to(device=device, dtype=torch.float32).contiguous()


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length (zero rows stay zero)."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def row_mean(parts: list[torch.Tensor]) -> torch.Tensor:
    """Float64 mean of the rows of all ``parts``, summed in blocks (``sum(dtype=float64)``
    on a whole matrix would first make a float64 copy of it)."""
    d = parts[0].shape[1]
    total = torch.zeros(d, dtype=torch.float64, device=parts[0].device)
    n = 0
    for p in parts:
        rows = rows_per_block(d)
        for r0 in range(0, len(p), rows):
            total += p[r0 : r0 + rows].sum(dim=0, dtype=torch.float64)
        n += len(p)
    return total / max(n, 1)


def rows_per_block(columns: int, elements: int = BLOCK_ELEMENTS) -> int:
    return max(1, elements // max(1, columns))


def max_cosine(x: torch.Tensor, anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For unit rows ``x``, the highest cosine similarity to a unit row of ``anchors`` and
    its position, in blocks of rows (``block x len(anchors)`` at a time); ``anchors`` must
    not be empty."""
    best = x.new_empty(len(x))
    arg = torch.empty(len(x), dtype=torch.long, device=x.device)
    step = rows_per_block(len(anchors))
    with parallel(is_big(len(x), len(anchors), x.shape[1])):
        for r0 in range(0, len(x), step):
            best[r0 : r0 + step], arg[r0 : r0 + step] = (x[r0 : r0 + step] @ anchors.T).max(dim=1)
    return best, arg


def sq_norms(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,ij->i", x, x)


def sqdist(a: torch.Tensor, b: torch.Tensor, a_sq: torch.Tensor | None = None) -> torch.Tensor:
    """``(len(a), len(b))`` squared Euclidean distances, clamped at 0 (one block)."""
    a_sq = sq_norms(a) if a_sq is None else a_sq
    d2 = torch.addmm(a_sq[:, None] + sq_norms(b)[None, :], a, b.T, alpha=-2.0)
    return d2.clamp_min_(0.0)


def min_sqdist(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of ``x``, the squared distance to and the position of its nearest
    row of ``y``, in blocks of both (never the full ``len(x) x len(y)`` matrix)."""
    n = len(x)
    best = torch.full((n,), math.inf, device=x.device)
    arg = torch.zeros(n, dtype=torch.long, device=x.device)
    if len(y) == 0:
        return best, arg
    cols = min(len(y), 4096)
    rows = rows_per_block(cols)
    x_sq = sq_norms(x)
    with parallel(is_big(n, len(y), x.shape[1])):
        for c0 in range(0, len(y), cols):
            yb = y[c0 : c0 + cols]
            for r0 in range(0, n, rows):
                d2 = sqdist(x[r0 : r0 + rows], yb, x_sq[r0 : r0 + rows])
                val, pos = d2.min(dim=1)
                better = val < best[r0 : r0 + rows]
                best[r0 : r0 + rows] = torch.where(better, val, best[r0 : r0 + rows])
                arg[r0 : r0 + rows] = torch.where(better, pos + c0, arg[r0 : r0 + rows])
    return best, arg


def knn_mean_sqdist(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean squared distance of each row to its ``k`` nearest other rows (blocks of rows
    against all rows: memory ``O(block x len(x))``)."""
    n = len(x)
    k = min(k, n - 1)
    if k < 1:
        return torch.zeros(n, device=x.device)
    out = torch.empty(n, device=x.device)
    x_sq = sq_norms(x)
    rows = rows_per_block(n)
    with parallel(is_big(n, n, x.shape[1])):
        for r0 in range(0, n, rows):
            d2 = sqdist(x[r0 : r0 + rows], x, x_sq[r0 : r0 + rows])
            idx = torch.arange(r0, min(n, r0 + rows), device=x.device)
            d2[idx - r0, idx] = math.inf  # not its own neighbour
            out[r0 : r0 + rows] = d2.topk(k, dim=1, largest=False).values.mean(dim=1)
    return out


def project(
    x: torch.Tensor, others: list[torch.Tensor], mode: str, dim: int, rng: np.random.Generator
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Project ``x`` and ``others`` to ``dim`` dimensions: ``pca`` (principal axes of
    all rows together, as DeepAL+'s KCenterGreedyPCA) or ``random`` (Gaussian
    Johnson-Lindenstrauss matrix from ``rng``). Nothing happens when ``mode`` is
    ``none`` or the rows already have at most ``dim`` dimensions."""
    d = x.shape[1]
    if mode == "none" or d <= dim:
        return x, others
    if mode == "random":
        w = torch.from_numpy(rng.standard_normal((d, dim)).astype(np.float32) / math.sqrt(dim))
        w = w.to(x.device)
        return x @ w, [o @ w for o in others]
    if mode != "pca":
        raise ValueError(f"unknown projection {mode!r}")
    parts = [x, *others]
    mean = row_mean(parts)
    cov = torch.zeros(d, d, dtype=torch.float64, device=x.device)
    rows = rows_per_block(d)
    for p in parts:
        for r0 in range(0, len(p), rows):
            c = p[r0 : r0 + rows].double() - mean
            cov += c.T @ c
    _, vecs = torch.linalg.eigh(cov)
    w = vecs[:, -dim:].flip(1).float()  # largest components first
    m = mean.float()
    return (x - m) @ w, [(o - m) @ w for o in others]


# -- spaces ----------------------------------------------------------------------


class Space(Protocol):
    """Rows with an inner product; distances follow from ``sq`` and :meth:`cross`."""

    sq: torch.Tensor

    def __len__(self) -> int: ...

    def take(self, index: torch.Tensor) -> Space: ...

    def cross(self, start: int, stop: int, other: Space) -> torch.Tensor:
        """``(stop - start, len(other))`` inner products of rows ``start:stop``."""
        ...

    def cross_row(self, start: int, stop: int, row: int) -> torch.Tensor:
        """``(stop - start,)`` inner products of rows ``start:stop`` with row ``row``."""
        ...

    @property
    def row_bytes(self) -> int: ...


class FeatureSpace:
    """Rows of a feature matrix ``x`` ``(N, D)``."""

    def __init__(self, x: torch.Tensor, sq: torch.Tensor | None = None) -> None:
        self.x = x
        self.sq = sq_norms(x) if sq is None else sq

    def __len__(self) -> int:
        return len(self.x)

    @property
    def row_bytes(self) -> int:
        return 4 * self.x.shape[1]

    def take(self, index: torch.Tensor) -> FeatureSpace:
        return FeatureSpace(self.x[index], self.sq[index])

    def cross(self, start: int, stop: int, other: Space) -> torch.Tensor:
        assert isinstance(other, FeatureSpace)
        return self.x[start:stop] @ other.x.T

    def cross_row(self, start: int, stop: int, row: int) -> torch.Tensor:
        return torch.mv(self.x[start:stop], self.x[row])


class GradientSpace:
    """BADGE's gradient embeddings ``g_i = a_i (x) h_i`` kept factorised: ``a`` ``(N, C)``
    and ``h`` ``(N, D)``; ``<g_i, g_j> = (a_i . a_j)(h_i . h_j)``."""

    def __init__(self, a: torch.Tensor, h: torch.Tensor, sq: torch.Tensor | None = None) -> None:
        self.a, self.h = a, h
        self.sq = sq_norms(a) * sq_norms(h) if sq is None else sq

    def __len__(self) -> int:
        return len(self.h)

    @property
    def row_bytes(self) -> int:
        return 4 * (self.a.shape[1] + self.h.shape[1])

    def take(self, index: torch.Tensor) -> GradientSpace:
        return GradientSpace(self.a[index], self.h[index], self.sq[index])

    def cross(self, start: int, stop: int, other: Space) -> torch.Tensor:
        assert isinstance(other, GradientSpace)
        return (self.a[start:stop] @ other.a.T) * (self.h[start:stop] @ other.h.T)

    def cross_row(self, start: int, stop: int, row: int) -> torch.Tensor:
        return torch.mv(self.a[start:stop], self.a[row]) * torch.mv(self.h[start:stop], self.h[row])


def space_sqdist(space: Space, start: int, stop: int, other: Space) -> torch.Tensor:
    """``(stop - start, len(other))`` squared distances (one block)."""
    d2 = space.cross(start, stop, other).mul_(-2.0).add_(other.sq[None, :]).add_(space.sq[start:stop, None])
    return d2.clamp_min_(0.0)


def space_min_dist(space: Space, start: int, stop: int, other: Space) -> torch.Tensor:
    """Distance from each of rows ``start:stop`` to its nearest row of ``other``,
    in blocks of rows (``|x|^2`` is added after the minimum over ``other``)."""
    out = torch.empty(stop - start, device=space.sq.device)
    step = rows_per_block(len(other), 1 << 20)
    with parallel(is_big(stop - start, len(other), space.row_bytes // 4)):
        for r0 in range(start, stop, step):
            r1 = min(stop, r0 + step)
            m = space.cross(r0, r1, other).mul_(-2.0).add_(other.sq[None, :]).min(dim=1).values
            out[r0 - start : r1 - start] = m.add_(space.sq[r0:r1]).clamp_min_(0.0).sqrt_()
    return out


def gradient_factors(probs: torch.Tensor) -> torch.Tensor:
    """``a = p - onehot(argmax p)``: the factor of BADGE's last-layer gradient embedding
    that multiplies the penultimate embedding (up to sign, which distances ignore)."""
    a = probs.clone()
    a[torch.arange(len(a), device=a.device), probs.argmax(dim=1)] -= 1.0
    return a


# -- the min-distance vector under centre additions --------------------------------


def default_groups(n: int) -> int:
    """Groups for :class:`MinDistance`: none below a few thousand rows, then about
    ``sqrt(N) / 2``, at most 128 (assigning the rows costs ``N x groups x D``; at
    N = 50,000 anything from 32 to 200 groups measured the same)."""
    if n < 4096:
        return 1
    return int(min(128, max(16, round(math.sqrt(n) / 2))))


class MinDistance:
    """Distance from every row of ``space`` to its nearest centre as centres are added.

    Two ways to skip work that cannot change the result:

    * **Groups.** Rows are stored group by group around seed rows (``perm[i]`` is the
      original position of stored row ``i``). A batch of new centres visits only the
      groups whose triangle-inequality bound ``|c - s_g| - R_g`` is below the group's
      largest current distance.
    * **Pending centres.** :meth:`add_pending` only records a centre; :meth:`flush`
      applies all recorded centres in one blocked product (one pass over the rows per
      batch of centres instead of per centre). Between flushes ``mind`` is an upper
      bound, and :meth:`pending_distance` gives the exact value for the few rows the
      caller looks at.

    Every position taken or returned is a stored position unless said otherwise.
    ``n_groups=1`` disables grouping.
    """

    def __init__(
        self,
        space: Space,
        rng: np.random.Generator,
        n_groups: int | None = None,
        shift: torch.Tensor | None = None,
    ) -> None:
        n = len(space)
        device = space.sq.device
        self.device = device
        n_groups = default_groups(n) if n_groups is None else max(1, min(int(n_groups), n))
        if n_groups == 1:
            self.perm = torch.arange(n, device=device)
            self.space = space
            self.seeds: Space | None = None
            sizes = torch.tensor([n], device=device)
            self.radius = torch.full((1,), math.inf, device=device)
        else:
            gid, r, self.seeds = self._group(space, n_groups, rng)
            self.perm = torch.argsort(gid, stable=True)
            self.space = space.take(self.perm)
            gid, r = gid[self.perm], r[self.perm]
            sizes = torch.bincount(gid, minlength=len(self.seeds))
            keep = sizes > 0
            sizes = sizes[keep]
            self.radius = torch.segment_reduce(r, "max", lengths=sizes)
            self.seeds = self.seeds.take(torch.nonzero(keep).squeeze(1))
        if shift is not None:
            # Centre the stored rows (distances are unchanged, float32 rounding of
            # |x|^2 + |c|^2 - 2 x.c shrinks), in place on our own copy when there is one.
            assert isinstance(self.space, FeatureSpace)
            x = self.space.x - shift if self.space is space else self.space.x.sub_(shift)
            self.space = FeatureSpace(x)
            if self.seeds is not None:
                assert isinstance(self.seeds, FeatureSpace)
                self.seeds = FeatureSpace(self.seeds.x - shift)
        self.sizes = sizes
        self.offsets = np.concatenate([[0], np.cumsum(sizes.cpu().numpy())]).astype(np.int64)
        self.n_groups = len(sizes)
        self.mind = torch.full((n,), math.inf, device=device)
        self.gmax = torch.full((self.n_groups,), math.inf, device=device)
        self.pending: list[int] = []
        self.rows_visited = 0  # row x centre distance evaluations of full passes

    # grouping

    @staticmethod
    def _group(
        space: Space, n_groups: int, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, Space]:
        """Seeds by farthest-first traversal of a random subsample, every row assigned
        to its nearest seed; seeds are renumbered along a nearest-neighbour chain so
        that nearby groups are stored next to each other."""
        n = len(space)
        device = space.sq.device
        sub_n = min(n, 8 * n_groups)
        sub = space.take(torch.from_numpy(np.sort(rng.choice(n, size=sub_n, replace=False))).to(device))
        chosen = [int(rng.integers(sub_n))]
        with sequential(device):
            d = space_sqdist(sub, 0, sub_n, sub.take(torch.tensor(chosen, device=device)))[:, 0]
            for _ in range(n_groups - 1):
                nxt = int(d.argmax())
                if float(d[nxt]) <= 0.0:
                    break
                chosen.append(nxt)
                d = torch.minimum(
                    d, space_sqdist(sub, 0, sub_n, sub.take(torch.tensor([nxt], device=device)))[:, 0]
                )
        seeds = sub.take(torch.tensor(chosen, device=device))
        k = len(seeds)
        sd = space_sqdist(seeds, 0, k, seeds).cpu().numpy()
        order = [0]
        seen = np.zeros(k, bool)
        seen[0] = True
        for _ in range(k - 1):
            nxt = int(np.where(seen, np.inf, sd[order[-1]]).argmin())
            order.append(nxt)
            seen[nxt] = True
        seeds = seeds.take(torch.tensor(order, device=device))
        gid = torch.empty(n, dtype=torch.long, device=device)
        r = torch.empty(n, device=device)
        rows = rows_per_block(k)
        with parallel(is_big(n, k, space.row_bytes // 4)):
            for s in range(0, n, rows):
                e = min(n, s + rows)
                val, pos = space.cross(s, e, seeds).mul_(-2.0).add_(seeds.sq[None, :]).min(dim=1)
                gid[s:e] = pos
                r[s:e] = val.add_(space.sq[s:e]).clamp_min_(0.0).sqrt_()
        return gid, r, seeds

    def _runs(self, active: torch.Tensor) -> list[tuple[int, int]]:
        """Runs of consecutive active groups; short inactive gaps are bridged."""
        act = active.cpu().numpy()
        if act.all():
            return [(0, self.n_groups)]
        idx = np.flatnonzero(act)
        if len(idx) == 0:
            return []
        breaks = np.flatnonzero(np.diff(idx) > 1)
        starts = np.concatenate([[idx[0]], idx[breaks + 1]])
        stops = np.concatenate([idx[breaks] + 1, [idx[-1] + 1]])
        gap_rows = _MERGE_BYTES // self.space.row_bytes
        runs: list[tuple[int, int]] = []
        for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
            if runs and self.offsets[a] - self.offsets[runs[-1][1]] <= gap_rows:
                runs[-1] = (runs[-1][0], b)
            else:
                runs.append((a, b))
        return runs

    def _refresh(self, g0: int, g1: int) -> None:
        s, e = int(self.offsets[g0]), int(self.offsets[g1])
        if g1 - g0 == 1:
            self.gmax[g0] = self.mind[s:e].max()
        else:
            self.gmax[g0:g1] = torch.segment_reduce(self.mind[s:e], "max", lengths=self.sizes[g0:g1])

    def _active(self, lower: torch.Tensor) -> torch.Tensor:
        """Groups whose lower bound on the distance to the new centre(s) does not
        rule out an improvement (with slack, so rounding never rules one out)."""
        return lower < self.gmax * (1.0 + _SLACK) + _SLACK

    # updates

    def add_row(self, j: int) -> None:
        """Make stored row ``j`` a centre now (one pass over the groups it may improve)."""
        sp = self.space
        sq_c = sp.sq[j]
        runs = [(0, 1)]
        if self.seeds is not None:
            c = sp.take(torch.tensor([j], device=self.device))
            dc = space_sqdist(self.seeds, 0, self.n_groups, c)[:, 0].sqrt_()
            runs = self._runs(self._active(dc - self.radius))
        for g0, g1 in runs:
            s, e = int(self.offsets[g0]), int(self.offsets[g1])
            d = (sp.sq[s:e] + sq_c - 2.0 * sp.cross_row(s, e, j)).clamp_min_(0.0).sqrt_()
            torch.minimum(self.mind[s:e], d, out=self.mind[s:e])
            self.rows_visited += e - s
            self._refresh(g0, g1)
        self._zero([j])

    def _zero(self, rows: list[int]) -> None:
        """Centres are at distance exactly 0 from themselves (not float32's tiny residue)."""
        self.mind[torch.tensor(rows, device=self.device)] = 0.0
        for g in sorted({self.group_of(j) for j in rows}):
            self._refresh(g, g + 1)

    def add_external(self, centres: Space, chunk: int = 4096) -> None:
        """Make rows of another space (or of this one, see :meth:`flush`) centres.

        Each group is compared only with the centres whose bound
        ``|c - s_g| - R_g`` does not rule it out, in one product per group. While
        distances are still infinite (nothing applied yet), a first batch of centres
        spread over the groups is applied to every row to make the bounds useful.
        """
        m = len(centres)
        if m == 0:
            return
        if self.seeds is None:
            d = space_min_dist(self.space, 0, len(self.space), centres)
            torch.minimum(self.mind, d, out=self.mind)
            self.rows_visited += len(self.space) * m
            self._refresh(0, 1)
            return
        nearest = torch.empty(m, dtype=torch.long, device=self.device)
        rows = rows_per_block(self.n_groups)
        for s in range(0, m, rows):
            nearest[s : s + rows] = space_sqdist(centres, s, min(m, s + rows), self.seeds).argmin(dim=1)
        order = torch.argsort(nearest, stable=True)
        if not bool(torch.isfinite(self.gmax).all()):
            k = min(m, 64)
            spread = torch.zeros(m, dtype=torch.bool, device=self.device)
            spread[order[torch.linspace(0, m - 1, k, device=self.device).long()]] = True
            d = space_min_dist(self.space, 0, len(self.space), centres.take(torch.nonzero(spread).squeeze(1)))
            torch.minimum(self.mind, d, out=self.mind)
            self.rows_visited += len(self.space) * k
            self._refresh(0, self.n_groups)
            order = order[~spread[order]]
        for c0 in range(0, len(order), chunk):
            cb = centres.take(order[c0 : c0 + chunk])
            lower = space_sqdist(cb, 0, len(cb), self.seeds).sqrt_().sub_(self.radius[None, :])
            limit = (self.gmax * (1.0 + _SLACK) + _SLACK)[None, :]
            active = (lower < limit).T.contiguous().cpu().numpy()
            with sequential(self.device):
                for g in np.flatnonzero(active.any(axis=1)).tolist():
                    sel = np.flatnonzero(active[g])
                    s, e = int(self.offsets[g]), int(self.offsets[g + 1])
                    d = space_min_dist(self.space, s, e, cb.take(torch.from_numpy(sel).to(self.device)))
                    torch.minimum(self.mind[s:e], d, out=self.mind[s:e])
                    self.rows_visited += (e - s) * len(sel)
                    self._refresh(g, g + 1)

    def add_pending(self, j: int) -> None:
        """Record stored row ``j`` as a centre, applied to the pool at the next flush."""
        self.pending.append(j)

    def flush(self) -> None:
        """Apply the pending centres to every row (groups they cannot improve skipped)."""
        if not self.pending:
            return
        rows = self.pending
        self.pending = []
        self.add_external(self.space.take(torch.tensor(rows, device=self.device)))
        self._zero(rows)

    def pending_distance(self, rows: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Exact current distances of stored ``rows``: their stored (flushed) distance
        and the pending centres from ``start`` on."""
        d = self.mind[rows]
        if len(self.pending) > start:
            sp = self.space
            c = sp.take(torch.tensor(self.pending[start:], device=self.device))
            r = sp.take(rows)
            d = torch.minimum(d, space_sqdist(r, 0, len(r), c).min(dim=1).values.sqrt_())
        return d

    # queries

    def group_of(self, j: int) -> int:
        return int(np.searchsorted(self.offsets, j, side="right") - 1)

    def argmax(self) -> tuple[int, float]:
        """Stored position of the row farthest from every (flushed) centre and its
        distance (the first such row in storage order when several tie)."""
        g = int(self.gmax.argmax())
        s, e = int(self.offsets[g]), int(self.offsets[g + 1])
        j = s + int(self.mind[s:e].argmax())
        return j, float(self.mind[j])

    def stored_position(self, original: int) -> int:
        return int(torch.nonzero(self.perm == original).squeeze())

    def original(self, stored: list[int]) -> np.ndarray:
        return self.perm[torch.tensor(stored, dtype=torch.long, device=self.device)].cpu().numpy()

    def distances(self) -> torch.Tensor:
        """The (flushed) min-distance vector in the original row order."""
        out = torch.empty_like(self.mind)
        out[self.perm] = self.mind
        return out


def _fill_ties(n: int, picked: list[int], count: int, rng: np.random.Generator) -> list[int]:
    """``count`` rows not yet picked, drawn uniformly: what is left when every row
    coincides with a centre (all remaining scores tie at 0)."""
    taken = np.zeros(n, bool)
    taken[picked] = True
    return rng.permutation(np.flatnonzero(~taken))[:count].tolist()


# -- k-center greedy ----------------------------------------------------------------


def kcenter_greedy(
    space: FeatureSpace,
    budget: int,
    rng: np.random.Generator,
    centres: FeatureSpace | None = None,
    n_groups: int | None = None,
    lazy: bool = True,
    top: int = 256,
    max_pending: int = 256,
    shift: torch.Tensor | None = None,
) -> tuple[np.ndarray, MinDistance]:
    """Sener & Savarese's greedy k-center: repeatedly take the row farthest from every
    centre (``centres`` first, e.g. the labeled set; without any, a random first row).

    ``lazy`` (default): the ``top`` rows with the largest (stale) distances are kept
    exact against the centres picked since the last full update; a pick is certain
    while the best of them beats the stale distance of every other row, which only
    shrinks as centres are added. The pool is updated in one blocked product per
    batch of picks. ``lazy=False`` with ``n_groups=1`` is the plain full pass per pick.

    Float32 decides unless rows come within rounding error of the farthest; those are
    compared in float64 against every centre, so the picks are those of an exact
    greedy (exact ties: the lowest original row). ``shift`` (e.g. the mean) is subtracted
    from every row and centre first: distances are unchanged, rounding shrinks. Returns
    original row positions in pick order and the tracker.
    """
    tracker = MinDistance(space, rng, n_groups=n_groups, shift=shift)
    if shift is not None and centres is not None:
        centres = FeatureSpace(centres.x - shift)
    n = len(space)
    stored = tracker.space
    assert isinstance(stored, FeatureSpace)
    n_ext = len(centres) if centres is not None else 0
    # every centre in float64, for deciding near-ties exactly
    every = torch.empty(n_ext + budget, stored.x.shape[1], dtype=torch.float64, device=tracker.device)
    every_sq = torch.empty(n_ext + budget, dtype=torch.float64, device=tracker.device)
    if centres is not None and n_ext:
        every[:n_ext] = centres.x.double()
        every_sq[:n_ext] = sq_norms(every[:n_ext])
    # Rounding of |x|^2 + |c|^2 - 2 x.c in float32: 2 sqrt(D) u max|x|^2 (u = 2^-24),
    # about 5x the largest error measured on 512-d Gaussian data.
    max_sq = float(stored.sq.max())
    if centres is not None and n_ext:
        max_sq = max(max_sq, float(centres.sq.max()))
    tol2 = 2.0 * math.sqrt(stored.x.shape[1]) * 2.0**-24 * max_sq
    picked: list[int] = []

    def take(j: int) -> None:
        row = stored.x[j].double()
        every[n_ext + len(picked)] = row
        every_sq[n_ext + len(picked)] = row.dot(row)
        picked.append(j)

    def exact(cand: torch.Tensor, vals: torch.Tensor) -> int:
        k = n_ext + len(picked)
        return _exact_farthest(tracker, cand, vals, tol2, every[:k], every_sq[:k])

    if centres is not None and n_ext:
        tracker.add_external(centres)
    else:
        first = tracker.stored_position(int(rng.integers(n)))
        take(first)
        tracker.add_row(first)
    if not lazy:
        with sequential(tracker.device):
            while len(picked) < budget:
                j, dist = tracker.argmax()
                if dist <= 0.0:
                    picked.extend(_fill_ties(n, picked, budget - len(picked), rng))
                    break
                near = torch.nonzero(tracker.mind >= math.sqrt(max(dist * dist - tol2, 0.0))).squeeze(1)
                if len(near) > 1:
                    j = exact(near, tracker.mind[near])
                take(j)
                tracker.add_row(j)
        return tracker.original(picked), tracker
    while len(picked) < budget:
        tracker.flush()
        mind = tracker.mind
        top_vals = torch.topk(mind, min(top, n)).values
        best = float(top_vals[0])
        if best <= 0.0:
            picked.extend(_fill_ties(n, picked, budget - len(picked), rng))
            break
        # candidates: the top rows and every row within rounding of the best
        floor = min(float(top_vals[-1]), math.sqrt(max(best * best - tol2, 0.0)))
        in_list = mind >= floor
        cand = torch.nonzero(in_list).squeeze(1)
        tail = float(mind.masked_fill(in_list, -math.inf).max()) if len(cand) < n else -math.inf
        tail2 = tail * tail if tail > 0 else -math.inf
        vals = mind[cand].clone()
        cand_x, cand_sq = stored.x[cand], stored.sq[cand]
        with sequential(tracker.device):
            while len(picked) < budget and len(tracker.pending) < max_pending:
                i = int(vals.argmax())
                v = float(vals[i])
                if v <= 0.0 or v * v - tol2 < tail2:
                    break  # a row outside the list may be as far: update the pool first
                j = int(cand[i])
                near = torch.nonzero(vals.square() >= v * v - tol2).squeeze(1)
                if len(near) > 1:
                    j = exact(cand[near], vals[near])
                    i = int(torch.nonzero(cand == j).squeeze())
                take(j)
                tracker.add_pending(j)
                vals[i] = -1.0
                d = (cand_sq + stored.sq[j] - 2.0 * torch.mv(cand_x, stored.x[j])).clamp_min_(0.0).sqrt_()
                torch.minimum(vals, d, out=vals)
    tracker.flush()
    return tracker.original(picked), tracker


def _exact_farthest(
    tracker: MinDistance,
    cand: torch.Tensor,
    vals: torch.Tensor,
    tol2: float,
    every: torch.Tensor,
    every_sq: torch.Tensor,
) -> int:
    """Among candidate rows (stored positions) whose float32 distances ``vals`` are
    within rounding of the largest, the one farthest in float64 from ``every`` centre;
    the lowest original row on exact ties."""
    stored = tracker.space
    assert isinstance(stored, FeatureSpace)
    best = float(vals.max())
    cand = cand[vals.square() >= best * best - tol2]
    if len(cand) == 1:
        return int(cand[0])
    rows = stored.x[cand].double()
    d2 = torch.full((len(cand),), math.inf, dtype=torch.float64, device=tracker.device)
    step = rows_per_block(len(cand))
    for c0 in range(0, len(every), step):
        block = torch.addmm(every_sq[None, c0 : c0 + step], rows, every[c0 : c0 + step].T, alpha=-2.0)
        d2 = torch.minimum(d2, block.min(dim=1).values)
    d2 += sq_norms(rows)
    pos = torch.nonzero(d2 == d2.max()).squeeze(1)
    original = tracker.perm[cand[pos]]
    return int(cand[pos[torch.argmin(original)]])


# -- k-means++ / D^2 sampling ---------------------------------------------------------


def kmeans_pp(
    space: Space,
    k: int,
    rng: np.random.Generator,
    first: int | None = None,
    n_groups: int | None = 1,
    lazy: bool = True,
    max_pending: int = 128,
    max_rejections: int = 16,
) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): ``first`` (default: uniform),
    then rows drawn with probability proportional to the squared distance to the
    nearest chosen row; when every distance is 0 the rest is drawn uniformly.

    ``lazy`` (default) draws exactly the same distribution by rejection: a row is
    proposed in proportion to its squared distance at the last full update (an upper
    bound) and accepted with probability (exact / stale)^2, the exact value taking the
    centres chosen since then into account; the pool is updated in one blocked product
    per ``max_pending`` centres (or after ``max_rejections`` proposals in a row fail).
    ``lazy=False`` updates every row after every centre. Original positions, in order.
    """
    tracker = MinDistance(space, rng, n_groups=n_groups)
    n = len(space)
    start = int(rng.integers(n)) if first is None else int(first)
    j0 = tracker.stored_position(start)
    picked = [j0]
    is_picked = np.zeros(n, bool)
    is_picked[j0] = True
    if not lazy:
        tracker.add_row(j0)
        with sequential(tracker.device):
            while len(picked) < k:
                w = tracker.mind.double().square().cpu().numpy()
                j = _draw(w, rng)
                if j is None:
                    picked.extend(_fill_ties(n, picked, k - len(picked), rng))
                    break
                picked.append(j)
                tracker.add_row(j)
        return tracker.original(picked)
    tracker.add_pending(j0)
    while len(picked) < k:
        tracker.flush()
        stale = tracker.mind.double().cpu().numpy()
        cum = np.cumsum(stale * stale)
        total = float(cum[-1])
        if not (total > 0.0 and math.isfinite(total)):
            picked.extend(_fill_ties(n, picked, k - len(picked), rng))
            break
        rejected = 0
        with sequential(tracker.device):
            while len(picked) < k and len(tracker.pending) < max_pending and rejected < max_rejections:
                j = min(int(np.searchsorted(cum, rng.random() * total, side="right")), n - 1)
                s = stale[j]
                accept = rng.random()
                if s <= 0.0 or is_picked[j]:
                    rejected += 1
                    continue
                t = float(tracker.pending_distance(torch.tensor([j], device=tracker.device))[0])
                if accept * s * s >= t * t:
                    rejected += 1
                    continue
                rejected = 0
                picked.append(j)
                is_picked[j] = True
                tracker.add_pending(j)
    return tracker.original(picked)


def _draw(weights: np.ndarray, rng: np.random.Generator) -> int | None:
    """A position drawn in proportion to ``weights`` (``None`` when they sum to 0)."""
    cum = np.cumsum(weights)
    total = float(cum[-1])
    if not (total > 0.0 and math.isfinite(total)):
        return None
    j = min(int(np.searchsorted(cum, rng.random() * total, side="right")), len(weights) - 1)
    while weights[j] <= 0.0:  # rounding at the very end of the cumulative sum
        j -= 1
    return j


# -- k-means -------------------------------------------------------------------------


def assign(
    x: torch.Tensor, centres: torch.Tensor, x_sq: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre of every row and the squared distance to it (blocks of rows)."""
    n = len(x)
    x_sq = sq_norms(x) if x_sq is None else x_sq
    labels = torch.empty(n, dtype=torch.long, device=x.device)
    d2 = torch.empty(n, device=x.device)
    rows = rows_per_block(len(centres))
    c_sq = sq_norms(centres)
    with parallel(is_big(n, len(centres), x.shape[1])):
        for s in range(0, n, rows):
            e = min(n, s + rows)
            val, pos = torch.addmm(c_sq[None, :], x[s:e], centres.T, alpha=-2.0).min(dim=1)
            labels[s:e], d2[s:e] = pos, val.add_(x_sq[s:e]).clamp_min_(0.0)
    return labels, d2


def kmeans(
    x: torch.Tensor,
    k: int,
    rng: np.random.Generator,
    max_iter: int = 20,
    tol: float = 1e-4,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lloyd's k-means with k-means++ seeding, chunked on ``x``'s device.

    Stops when the squared centre shift falls below ``tol`` times the mean feature
    variance (scikit-learn's criterion) or after ``max_iter`` iterations. An emptied
    cluster is moved to the row farthest from its centre. Returns labels ``(N,)``,
    centres ``(k, D)`` and each row's squared distance to its centre.
    """
    with sequential(x.device):
        return _kmeans(x, k, rng, max_iter, tol)


def _kmeans(
    x: torch.Tensor, k: int, rng: np.random.Generator, max_iter: int, tol: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n = len(x)
    k = min(k, n)
    x_sq = sq_norms(x)
    seeds = kmeans_pp(FeatureSpace(x, x_sq), k, rng, n_groups=None)
    centres = x[torch.from_numpy(seeds).to(x.device)].clone()
    threshold = tol * float(x.var(dim=0, unbiased=False).mean()) if n > 1 else 0.0
    labels, d2 = assign(x, centres, x_sq)
    for _ in range(max_iter):
        counts = torch.bincount(labels, minlength=k)
        sums = torch.zeros_like(centres).index_add_(0, labels, x)
        new = sums / counts.clamp_min(1)[:, None]
        empty = torch.nonzero(counts == 0).squeeze(1)
        if len(empty):
            far = torch.argsort(d2, descending=True)[: len(empty)]
            new[empty] = x[far]
        shift = float((new - centres).square().sum())
        centres = new
        labels, d2 = assign(x, centres, x_sq)
        if shift <= threshold:
            break
    return labels, centres, d2
