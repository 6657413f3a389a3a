"""The strategy contract.

A strategy declares what it needs from the model (:class:`Requirements`); the engine
computes all of it in one batched pass over the pool and hands it over as a
:class:`PoolView`; :meth:`Strategy.select` returns dataset indices of unlabeled
samples. The engine checks every selection (count, uniqueness, membership) and names
the strategy when one breaks the contract.

The same classes work without the engine: build a view with
:meth:`PoolView.from_arrays` from your own probabilities, embeddings or MC samples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from alscope.components import Component
from alscope.errors import BudgetError, ModelError, SelectionError
from alscope.scenarios.base import OOD

if TYPE_CHECKING:
    from alscope.engine.hooks import TrainingHooks


@dataclass(frozen=True)
class SSLRequest:
    """A self-supervised embedding of the pool that a strategy reads (MQ-Net, CCAL).

    The encoder is trained once per dataset, pool and request on the scenario's pool
    without labels and its embeddings are cached on disk (``alscope.ssl``), so every
    cycle, trial and later run reuses them.

    Attributes:
        method: ``"simclr"`` (two augmented views agree; NT-Xent) or ``"csi"`` (SimCLR
            plus shifted instances as negatives, Tack et al. 2020, where the domain
            provides a shifting transformation; otherwise as simclr).
        epochs: training epochs over the pool.
        dim: output dimension of the projection head used in training.
        temperature: NT-Xent temperature.
        batch_size: samples per contrastive batch (2x views).
        lr: learning rate of the encoder's optimiser.
    """

    method: str = "simclr"
    epochs: int = 20
    dim: int = 128
    temperature: float = 0.5
    batch_size: int = 256
    lr: float = 1e-3


@dataclass(frozen=True)
class Requirements:
    """What a strategy reads from the model, computed in one pool pass.

    Attributes:
        probs: softmax probabilities of the unlabeled pool, ``(U, C)``.
        logits: logits of the unlabeled pool, ``(U, C)``.
        embeddings: penultimate embeddings of the unlabeled pool, ``(U, D)``.
        labeled_embeddings: embeddings of the labeled set, ``(L, D)``.
        labeled_probs: probabilities of the labeled set, ``(L, C)``.
        mc_samples: K > 0 asks for K stochastic predictions ``(U, K, C)`` (MC dropout).
        consistent_mc: sample k uses the same dropout masks for every pool row, so the K
            predictions are K sub-networks (what joint quantities such as BatchBALD's and
            EPIG's need); otherwise every row draws its own masks.
        extra_outputs: names of per-sample outputs that the strategy's training hooks
            compute in the pool pass (e.g. Learning Loss's predicted loss).
        model: the strategy gets the trained model itself (``view.model``).
        ssl: self-supervised embeddings of the pool (``view.ssl_embeddings[method]`` and
            ``view.labeled_ssl_embeddings[method]``); they need no trained classifier.
        pool_inputs: the unlabeled pool's evaluation-transformed inputs, batch by batch
            on the device (``view.input_batches()``), for strategies that run the model
            themselves: input-space gradients (adversarial), perturbed weights (noise
            stability), per-sample gradients. Nothing is precomputed or stored.
    """

    probs: bool = False
    logits: bool = False
    embeddings: bool = False
    labeled_embeddings: bool = False
    labeled_probs: bool = False
    mc_samples: int = 0
    consistent_mc: bool = False
    extra_outputs: tuple[str, ...] = ()
    model: bool = False
    ssl: tuple[SSLRequest, ...] = ()
    pool_inputs: bool = False

    @property
    def needs_trained_model(self) -> bool:
        """True unless only embeddings are asked for: those can come from the inputs
        themselves when nothing is labeled yet (cold start)."""
        return bool(
            self.probs
            or self.logits
            or self.labeled_probs
            or self.mc_samples
            or self.extra_outputs
            or self.model
        )

    @property
    def needs_model(self) -> bool:
        return (
            any(bool(getattr(self, f.name)) for f in fields(self) if f.name not in ("model", "pool_inputs"))
            or self.model
        )

    def describe(self) -> list[str]:
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "ssl" and value:
                out.append("ssl=" + "+".join(r.method for r in value))
            elif value:
                out.append(f"{f.name}={value}" if not isinstance(value, bool) else f.name)
        return out


@dataclass(frozen=True)
class PoolInputs:
    """The unlabeled pool's model inputs, re-read batch by batch (``Requirements.pool_inputs``).

    ``batches(batch_size)`` yields the evaluation-transformed inputs (a tensor, or the
    dict a text backbone takes) of ``view.unlabeled`` in that order, already on the
    view's device; every call starts a fresh pass. ``batch_size`` is the run's inference
    batch size and ``amp`` whether its inference passes use mixed precision (forward-only
    passes may honour it; gradient computations should stay in float32).
    """

    batches: Callable[[int], Iterator[Any]]
    batch_size: int = 512
    amp: bool = False


def tensor_input_batches(inputs: torch.Tensor, device: torch.device) -> Callable[[int], Iterator[Any]]:
    """``PoolInputs.batches`` over an in-memory ``(U, ...)`` tensor of inputs."""

    def batches(batch_size: int) -> Iterator[Any]:
        for start in range(0, len(inputs), batch_size):
            yield inputs[start : start + batch_size].to(device)

    return batches


@dataclass
class PoolView:
    """Everything a strategy may read about the pool in one cycle.

    Arrays over the unlabeled pool are aligned with ``unlabeled`` (dataset indices).
    Tensors live on the CPU; strategies move chunks to ``device`` for heavy work.
    """

    unlabeled: np.ndarray
    labeled: np.ndarray
    n_classes: int
    labeled_targets: np.ndarray | None = None
    probs: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    embeddings: torch.Tensor | None = None
    labeled_embeddings: torch.Tensor | None = None
    labeled_probs: torch.Tensor | None = None
    mc_probs: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    #: self-supervised embeddings by method, ``(U, D)`` and ``(L, D)`` (``Requirements.ssl``)
    ssl_embeddings: dict[str, torch.Tensor] = field(default_factory=dict)
    labeled_ssl_embeddings: dict[str, torch.Tensor] = field(default_factory=dict)
    model: Any = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    #: the unlabeled pool's inputs (``Requirements.pool_inputs``); read with :meth:`input_batches`
    pool_inputs: PoolInputs | None = None

    @property
    def n_unlabeled(self) -> int:
        return len(self.unlabeled)

    def input_batches(self, strategy: str, batch_size: int | None = None) -> Iterator[Any]:
        """One pass over the unlabeled pool's evaluation-transformed inputs, in the order
        of ``unlabeled``, each batch on ``device`` (default batch size: the run's inference
        batch size); a clear error when the strategy did not declare ``pool_inputs``."""
        if self.pool_inputs is None:
            raise ModelError(
                f"strategy {strategy!r} needs the pool's inputs in the view "
                f"(Requirements(pool_inputs=True)), which were not provided"
            )
        return self.pool_inputs.batches(batch_size or self.pool_inputs.batch_size)

    def require_model(self, strategy: str) -> Any:
        """``view.model`` or a clear error saying the strategy needs the trained model."""
        if self.model is None:
            raise ModelError(
                f"strategy {strategy!r} needs the trained model in the view (Requirements(model=True))"
            )
        return self.model

    def require(self, name: str, strategy: str) -> torch.Tensor:
        """The tensor ``name`` or a clear error saying the strategy needs it."""
        value = self.extras.get(name) if name not in _VIEW_TENSORS else getattr(self, name)
        if value is None:
            raise ModelError(f"strategy {strategy!r} needs {name!r} in the pool view, which was not computed")
        return value

    def labeled_known(self, strategy: str) -> np.ndarray:
        """Positions in ``labeled`` of the samples answered with a known class (not
        ``OOD``), or a clear error when the targets are missing."""
        if not len(self.labeled):
            return np.empty(0, dtype=np.int64)
        if self.labeled_targets is None:
            raise ModelError(f"strategy {strategy!r} needs the labeled set's targets")
        return np.flatnonzero(np.asarray(self.labeled_targets) != OOD)

    def ssl_pair(self, method: str, strategy: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``method`` self-supervised embeddings of the unlabeled and the labeled rows,
        or a clear error when they are missing or do not cover the view."""
        unl = self.ssl_embeddings.get(method)
        lab = self.labeled_ssl_embeddings.get(method)
        if unl is None or lab is None:
            raise ModelError(
                f"strategy {strategy!r} needs {method} self-supervised embeddings in the pool view"
            )
        if len(unl) != len(self.unlabeled) or len(lab) != len(self.labeled):
            raise ModelError(
                f"strategy {strategy!r}: {method} embeddings cover {len(unl)} unlabeled and "
                f"{len(lab)} labeled samples, the view {len(self.unlabeled)} and {len(self.labeled)}"
            )
        return unl, lab

    @classmethod
    def from_arrays(
        cls,
        *,
        probs: Any = None,
        logits: Any = None,
        embeddings: Any = None,
        mc_probs: Any = None,
        labeled_mask: Any = None,
        labeled_embeddings: Any = None,
        labeled_targets: Any = None,
        extras: Mapping[str, Any] | None = None,
        n_classes: int | None = None,
        device: str | torch.device = "cpu",
        inputs: Any = None,
        model: Any = None,
        batch_size: int = 512,
    ) -> PoolView:
        """A view over plain arrays, for users who keep their own training loop.

        Arrays cover the *whole* pool (labeled rows included) when ``labeled_mask`` is
        given; they are cut to the unlabeled rows here, and selections come back as
        indices into the whole pool. ``inputs`` (the model's input tensor of every pool
        sample) and ``model`` serve strategies that run the model themselves
        (``Requirements(model=True, pool_inputs=True)``); ``batch_size`` is their batch.
        """

        def t(a: Any) -> torch.Tensor | None:
            return None if a is None else torch.as_tensor(np.asarray(a), dtype=torch.float32)

        given = [a for a in (probs, logits, embeddings, mc_probs, inputs) if a is not None]
        given += list((extras or {}).values())
        if not given:
            raise ValueError("from_arrays needs at least one of probs, logits, embeddings, mc_probs, inputs")
        n = len(given[0])
        mask = np.zeros(n, bool) if labeled_mask is None else np.asarray(labeled_mask, bool)
        if len(mask) != n:
            raise ValueError(f"labeled_mask has {len(mask)} entries for {n} samples")
        unl = np.flatnonzero(~mask)
        lab = np.flatnonzero(mask)
        tensors = {
            k: t(v)
            for k, v in dict(probs=probs, logits=logits, embeddings=embeddings, mc_probs=mc_probs).items()
        }
        if n_classes is None:
            ref = next(
                (v for v in (tensors["probs"], tensors["logits"], tensors["mc_probs"]) if v is not None), None
            )
            n_classes = int(ref.shape[-1]) if ref is not None else 0
        emb = tensors["embeddings"]
        lab_emb = t(labeled_embeddings)
        if lab_emb is None and emb is not None:
            lab_emb = emb[torch.from_numpy(lab)]
        probs_t = tensors["probs"]
        if probs_t is None and tensors["logits"] is not None:
            probs_t = torch.softmax(tensors["logits"], dim=1)
        unl_t = torch.from_numpy(unl)

        def cut(x: torch.Tensor | None) -> torch.Tensor | None:
            if x is None:
                return None
            if x.device.type == "cpu":  # numpy's take copies rows about 4x faster than torch indexing
                return torch.from_numpy(np.take(x.numpy(), unl, axis=0))
            return x[unl_t]

        return cls(
            unlabeled=unl,
            labeled=lab,
            n_classes=n_classes,
            labeled_targets=None if labeled_targets is None else np.asarray(labeled_targets),
            probs=cut(probs_t),
            logits=cut(tensors["logits"]),
            embeddings=cut(emb),
            labeled_embeddings=lab_emb,
            labeled_probs=None if probs_t is None else probs_t[torch.from_numpy(lab)],
            mc_probs=cut(tensors["mc_probs"]),
            extras={k: cut(t(v)) for k, v in (extras or {}).items()},  # type: ignore[misc]
            model=model,
            device=torch.device(device),
            pool_inputs=None
            if inputs is None
            else PoolInputs(tensor_input_batches(cut(t(inputs)), torch.device(device)), batch_size),  # type: ignore[arg-type]
        )


_VIEW_TENSORS = {"probs", "logits", "embeddings", "labeled_embeddings", "labeled_probs", "mc_probs"}


class Strategy(Component):
    """Base class of query strategies.

    Subclasses set ``Params`` (pydantic schema of their parameters), override
    :meth:`requirements` and :meth:`select`, and may return :class:`TrainingHooks`
    from :meth:`training_hooks` to add modules and losses to training.
    """

    @classmethod
    def kind_name(cls) -> str:
        return "strategy"

    def requirements(self) -> Requirements:
        return Requirements()

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        """Return ``budget`` distinct dataset indices taken from ``view.unlabeled``."""
        raise NotImplementedError

    def training_hooks(self) -> TrainingHooks | None:
        """Modules and losses this strategy adds to training (None: plain training)."""
        return None

    def training_defaults(self) -> dict[str, Any]:
        """Training settings of this strategy's official recipe, applied where neither the
        user nor the backbone set them (e.g. ``{"warm_start": True}``: Learning Loss and
        TiDAL continue the model and their module across cycles). Keys are
        :class:`~alscope.config.TrainingConfig` fields."""
        return {}

    def proposal(self, view: PoolView) -> torch.Tensor | None:
        """A stochastic strategy's proposal: non-negative weights ``(U,)`` over
        ``view.unlabeled`` from which :meth:`select` draws its batch one sample at a time
        without replacement (each draw ``∝ weight`` among the samples not drawn yet; once
        only zero weights remain, uniformly), returning the samples in the order drawn.

        ``None`` (the default) marks a deterministic strategy. The engine turns the
        proposal and the selection into each pick's acquisition probability
        (:func:`sequential_probabilities`), which the PURE/LURE bias-corrected losses
        (``training.bias_correction``) need; they refuse strategies without a proposal.
        """
        del view
        return None

    def state_dict(self) -> dict[str, Any]:
        """State kept across cycles (saved in checkpoints so a resumed run continues)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state

    # -- library use -------------------------------------------------------------

    def query(self, view: PoolView, budget: int, seed: int | np.random.Generator = 0) -> np.ndarray:
        """Select and check ``budget`` indices: the entry point for library users."""
        check_budget(budget, view.n_unlabeled, self.component_name or type(self).__name__)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        chosen = self.select(view, budget, rng)
        return validate_selection(chosen, view.unlabeled, budget, self.component_name)


class ScoringStrategy(Strategy):
    """A strategy that scores each unlabeled sample and takes the top ``budget``.

    Ties are broken uniformly at random with the cycle's generator, so equal scores
    never favour low indices and the same seed gives the same pick.
    """

    def score(self, view: PoolView) -> torch.Tensor:
        """Informativeness of each unlabeled sample (higher is queried first), ``(U,)``."""
        raise NotImplementedError

    def select(self, view: PoolView, budget: int, rng: np.random.Generator) -> np.ndarray:
        scores = self.score(view).detach().float().cpu().numpy()
        return view.unlabeled[top_k(scores, budget, rng)]


def top_k(scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of the ``k`` highest scores, ties broken uniformly at random."""
    perm = rng.permutation(len(scores))
    shuffled = scores[perm]
    if k < len(scores):
        # argpartition first keeps this O(N) for small k on large pools; the stable
        # sort of the candidates keeps the random tie order.
        threshold = np.partition(shuffled, len(shuffled) - k)[len(shuffled) - k]
        candidates = np.flatnonzero(shuffled >= threshold)
    else:
        candidates = np.arange(len(shuffled))
    order = candidates[np.argsort(-shuffled[candidates], kind="stable")][:k]
    return perm[order]


def has_proposal(strategy: Strategy) -> bool:
    """True when the strategy overrides :meth:`Strategy.proposal` (it is stochastic)."""
    return type(strategy).proposal is not Strategy.proposal


def sequential_probabilities(weights: Any, positions: np.ndarray) -> np.ndarray:
    """The probability of each draw of a sequential draw without replacement.

    ``positions`` index ``weights`` in the order the samples were drawn; draw ``m`` had
    probability ``w[i_m] / sum(w over samples not drawn before)``, or ``1 / (samples
    left)`` once only zero weights remain. A zero-weight sample drawn while positive
    weight remained gets 0 (the draw did not follow the proposal).
    """
    raw = weights.detach().cpu().numpy() if isinstance(weights, torch.Tensor) else weights
    w = np.nan_to_num(np.asarray(raw, dtype=np.float64), nan=0.0, posinf=0.0).clip(min=0.0)
    positions = np.asarray(positions, dtype=np.int64)
    drawn = w[positions]
    never = np.ones(len(w), dtype=bool)
    never[positions] = False
    # weight not drawn before draw m: the never-drawn samples plus draws m, m+1, ...
    left = w[never].sum() + np.cumsum(drawn[::-1])[::-1]
    n_left = len(w) - np.arange(len(positions))
    positive = left > 0
    return np.where(positive, drawn / np.where(positive, left, 1.0), 1.0 / n_left)


def check_budget(budget: int, n_unlabeled: int, strategy: str) -> None:
    if not isinstance(budget, int | np.integer) or budget < 1:
        raise BudgetError(f"budget={budget!r} is invalid: it must be a positive integer")
    if budget > n_unlabeled:
        raise BudgetError(
            f"budget {budget} exceeds the {n_unlabeled} unlabeled samples left for strategy "
            f"{strategy!r}; lower --n-query or --cycle"
        )


def validate_selection(chosen: Any, unlabeled: np.ndarray, budget: int, strategy: str) -> np.ndarray:
    """Check a selection: integers, the right count, unique, inside the unlabeled pool."""
    arr = np.asarray(chosen.cpu() if isinstance(chosen, torch.Tensor) else chosen)
    who = f"strategy {strategy!r}"
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise SelectionError(f"{who} returned {arr.dtype} of shape {arr.shape}, not 1-D indices")
    if len(arr) != budget:
        raise SelectionError(f"{who} returned {len(arr)} indices for a budget of {budget}")
    if len(np.unique(arr)) != len(arr):
        raise SelectionError(f"{who} returned duplicate indices")
    outside = arr[~np.isin(arr, unlabeled)]
    if len(outside):
        raise SelectionError(
            f"{who} returned {len(outside)} indices outside the unlabeled pool (e.g. {outside[:5].tolist()})"
        )
    return arr.astype(np.int64)


def make_base_strategy(name: str, params: dict[str, Any], outer: type[Strategy]) -> Strategy:
    """The strategy a wrapper (CEAL, the class balancer) builds on, resolved by any accepted
    spelling; a wrapper cannot wrap its own kind."""
    from alscope.errors import ConfigError
    from alscope.registry import get_registry

    registry = get_registry()
    spec, implied = registry.resolve_claimed("strategy", name)
    cls = registry.load_spec("strategy", spec)
    if isinstance(cls, type) and issubclass(cls, outer):
        raise ConfigError(f"strategy {outer.component_name}: base cannot be {spec.name} itself")
    base: Strategy = cls({**implied, **params})
    base.component_name = spec.name
    return base
