"""The router contract: :class:`Router` (every kind), :class:`EncoderRouter` (a head on a sentence
encoder, so that routers sharing one encoder can share its pass), and the routing :class:`Decision`.

A kind implements :meth:`Router.score` (raw win rates for a list of clean prompts) — or, on an
encoder, :meth:`EncoderRouter.score_embeddings` — and registers its class (``routekit.registry``:
a built-in line or an entry point in the group ``routekit.routers``).  Everything else (input checks,
batching, thresholds, decisions) is the base class's."""

from __future__ import annotations

import abc
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from routekit._validate import (
    as_prompt,
    as_prompts,
    check_batch_size,
    check_model_name,
    check_unit,
)
from routekit.artifact.manifest import Manifest
from routekit.artifact.probmap import ProbMap
from routekit.errors import BadInputError, UnknownModelError
from routekit.progress import progress

#: Strong-call fraction the default threshold is calibrated for, unless the artifact says otherwise.
DEFAULT_STRONG_FRACTION = 0.5

log = logging.getLogger("routekit")


@dataclass(frozen=True)
class Decision:
    """The outcome of routing one prompt."""

    route: str  #: "strong" or "weak"
    model: str  #: name of the chosen model
    win_rate: float  #: P(strong model beats weak model) for this prompt
    threshold: float  #: the prompt goes to strong when win_rate >= threshold
    router: str  #: name of the router that decided
    strong_model: str
    weak_model: str
    #: where the threshold came from: "calibration" (the artifact's table: the default threshold or a
    #: strong_fraction), "budget" (a BudgetController) or "raw" (a threshold given by the caller)
    threshold_source: str = "calibration"

    @property
    def is_strong(self) -> bool:
        return self.route == "strong"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def threshold_source(threshold: float | None) -> str:
    """:attr:`Decision.threshold_source` of a threshold resolved from these options: "raw" when the caller
    gave the threshold, else "calibration" (the default threshold or a strong_fraction)."""
    return "calibration" if threshold is None else "raw"


def clip_win_rates(scores) -> np.ndarray:
    """A kind's raw scores as win rates: float64, one per prompt, NaN -> 0.5, clipped to [0, 1]."""
    out = np.asarray(scores, dtype=np.float64).reshape(-1)
    return np.clip(np.nan_to_num(out, nan=0.5), 0.0, 1.0)


class Router(abc.ABC):
    """Scores prompts with P(strong model wins) and routes them at a threshold.

    Subclasses implement :meth:`score` on a list of clean prompts.  Routers are safe to share
    between threads: scoring holds no mutable state.
    """

    kind = "base"
    #: a :class:`~routekit.control.budget.BudgetController` attached with its ``attach()``: routes
    #: without an explicit threshold or strong_fraction then go through it
    budget: Any = None
    #: True for kinds with a model table that score any model per prompt (:meth:`model_logits`; MF, SW)
    has_model_scores = False
    #: the kind's artifacts must have a ``router`` / an ``encoder`` manifest section
    needs_router_section = False
    needs_encoder = False

    @classmethod
    def check_section(cls, c, router: dict, data: dict, models: list[str] | None) -> None:
        """Check the kind's own ``manifest["router"]`` section before anything is loaded: ``c`` is the
        manifest's :class:`~routekit.artifact.strict_json.Checker` (``c.listed_file``, ``c.integer``,
        ``c.number``, ``c.fail`` ... raise BadArtifactError naming the field), ``data`` the whole manifest,
        ``models`` its model table.  The shared sections (files, pair, models, encoder, calibration) are
        checked by :mod:`routekit.artifact.schema`.  The default accepts any object."""

    def __init__(self, manifest: Manifest | None = None, *, name: str | None = None,
                 strong: str | None = None, weak: str | None = None):
        self.manifest = manifest
        self.name = name or (manifest.name if manifest else self.kind)
        pair = (manifest.get("pair") if manifest else None) or {}
        self._aliases: dict[str, str] = dict((manifest.get("aliases") if manifest else None) or {})
        self.default_strong = pair.get("strong", "strong")
        self.default_weak = pair.get("weak", "weak")
        self.strong_model = (self.canonical(check_model_name("strong", strong)) if strong is not None
                             else self.default_strong)
        self.weak_model = self.canonical(check_model_name("weak", weak)) if weak is not None else self.default_weak
        if self.strong_model == self.weak_model:
            raise BadInputError(f"strong and weak model are both {self.strong_model!r}")

    # -- identity ---------------------------------------------------------------------------
    @property
    def path(self) -> Path | None:
        """Folder the router was loaded from (None for built-in routers such as ``random``)."""
        return self.manifest.folder if self.manifest else None

    @property
    def models(self) -> list[str]:
        """Model names this router can score (any two may be used as the pair)."""
        return list((self.manifest.get("models") if self.manifest else None) or
                    [self.default_strong, self.default_weak])

    def canonical(self, model: str) -> str:
        check_model_name("a model", model)
        name = self._aliases.get(model, model)
        if name not in self.models:
            close = [m for m in self.models if model.lower().split("/")[-1][:6] in m.lower()]
            hint = f" Did you mean {', '.join(close[:3])}?" if close else ""
            shown = ", ".join(self.models[:100]) + (", …" if len(self.models) > 100 else "")
            raise UnknownModelError(
                f"model {model!r} is not in router {self.name!r}'s model table "
                f"({len(self.models)} models; see router.models).{hint} Known models: {shown}"
            )
        return name

    @property
    def is_default_pair(self) -> bool:
        return (self.strong_model, self.weak_model) == (self.default_strong, self.default_weak)

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        return (f"<{type(self).__name__} {self.name!r} kind={self.kind} "
                f"{self.strong_model} vs {self.weak_model}{where}>")

    # -- scoring ----------------------------------------------------------------------------
    @abc.abstractmethod
    def score(self, prompts: list[str]) -> np.ndarray:
        """Raw P(strong beats weak) for each prompt of a list of clean strings (checked and batched by
        :meth:`win_rates`); any array-like of one number per prompt."""

    def win_rates(self, prompts: Iterable[str], *, batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        """P(strong beats weak) for each prompt, as a float64 array in [0, 1]."""
        batch_size = check_batch_size(batch_size)
        items = as_prompts(prompts)
        if len(items) <= batch_size and not show_progress:
            return self.to_win_rates(self.score(items))
        chunks = range(0, len(items), batch_size)
        parts = [self.score(items[i:i + batch_size])
                 for i in progress(chunks, total=len(chunks), desc=f"scoring ({self.name})",
                                   enabled=show_progress, unit="batch")]
        return self.to_win_rates(np.concatenate(parts) if parts else np.zeros(0))

    def win_rate(self, prompt: str) -> float:
        """P(strong beats weak) for one prompt."""
        return float(self.to_win_rates(self.score([as_prompt(prompt)]))[0])

    @property
    def prob_map(self) -> ProbMap | None:
        """The artifact's calibrated win-rate map (manifest ``prob_map``; for the default pair only),
        or None: win rates are the kind's raw scores.  See :mod:`routekit.artifact.probmap`."""
        if "_prob_map" not in self.__dict__:
            self.__dict__["_prob_map"] = ProbMap.from_manifest(self.manifest) if self.is_default_pair else None
        return self.__dict__["_prob_map"]

    def to_win_rates(self, scores) -> np.ndarray:
        """A kind's raw scores as the win rates it reports: :func:`clip_win_rates`, then the artifact's
        :attr:`prob_map`, if any (strictly increasing: the ranking is the raw scores')."""
        out = clip_win_rates(scores)
        pm = self.prob_map
        return out if pm is None else pm(out)

    # -- thresholds -------------------------------------------------------------------------
    @property
    def calibration(self) -> dict[str, Any] | None:
        cal = self.manifest.get("calibration") if self.manifest else None
        if not cal or not self.is_default_pair:
            return None
        return cal

    def threshold_for(self, strong_fraction: float) -> float:
        """Threshold that sends ``strong_fraction`` of the calibration prompts to the strong model."""
        f = check_unit("strong_fraction", strong_fraction)
        cal = self.calibration
        if cal is None:
            raise BadInputError(
                f"router {self.name!r} has no calibration for {self.strong_model} vs {self.weak_model}; "
                "pass threshold=..., or run `routekit calibrate` on your prompts"
            )
        q = np.asarray(cal["quantiles"], dtype=np.float64)  # win-rate quantiles at 0, 1/(len-1), ..., 1
        levels = np.linspace(0.0, 1.0, len(q))
        return float(np.interp(1.0 - f, levels, q))

    def calibrated_range(self) -> tuple[float, float] | None:
        """Lowest and highest win rate on the calibration prompts (``None`` without calibration)."""
        q = (self.calibration or {}).get("quantiles")
        return (float(q[0]), float(q[-1])) if q else None

    def threshold_warning(self, threshold: float) -> str | None:
        """Why a raw ``threshold`` is suspicious for this router, or ``None``: outside the range of win
        rates the router gave its calibration prompts, it sends (nearly) every prompt one way."""
        rng = self.calibrated_range()
        if rng is None or rng[0] <= threshold <= rng[1]:
            return None
        word, side = ("below", "strong") if threshold < rng[0] else ("above", "weak")
        return (f"threshold {threshold:g} is {word} every win rate router {self.name!r} gave its calibration "
                f"prompts ({rng[0]:.4f}..{rng[1]:.4f}): nearly every prompt will go to {side}. Raw "
                "thresholds are specific to one router and artifact; pass strong_fraction instead")

    def _check_threshold_range(self, threshold: float) -> None:
        """Log :meth:`threshold_warning` once per router and direction (too low / too high)."""
        msg = self.threshold_warning(threshold)
        if msg is None:
            return
        low = threshold < self.calibrated_range()[0]
        warned = self.__dict__.setdefault("_threshold_warned", set())
        if low not in warned:
            warned.add(low)
            log.warning(msg)

    @property
    def default_threshold(self) -> float:
        cal = self.calibration or {}
        return self.threshold_for(cal.get("default_strong_fraction", DEFAULT_STRONG_FRACTION))

    def resolve_threshold(self, threshold: float | None = None,
                          strong_fraction: float | None = None) -> tuple[float, bool | None]:
        """The threshold in force for these options (checked): ``(threshold, forced)``, where forced is
        True/False for strong fractions 1/0 (everything strong / weak), else None."""
        if threshold is not None and strong_fraction is not None:
            raise BadInputError("pass threshold or strong_fraction, not both")
        if threshold is not None:
            thr = check_unit("threshold", threshold)
            self._check_threshold_range(thr)
            return thr, None
        if strong_fraction is not None:
            f = check_unit("strong_fraction", strong_fraction)
            if f == 0.0:
                return 1.0, False
            if f == 1.0:
                return 0.0, True
            return self.threshold_for(f), None
        return self.default_threshold, None

    # -- routing ----------------------------------------------------------------------------
    def decide(self, win_rate: float, threshold: float, forced: bool | None = None, *,
               source: str = "calibration") -> Decision:
        """The decision for a win rate at a threshold (``forced`` as from :meth:`resolve_threshold`;
        ``source``: where the threshold came from, see :attr:`Decision.threshold_source`)."""
        wr, thr = win_rate, threshold
        strong = forced if forced is not None else wr >= thr
        return Decision("strong" if strong else "weak", self.strong_model if strong else self.weak_model,
                        float(wr), float(thr), self.name, self.strong_model, self.weak_model, source)

    def route(self, prompt: str, *, threshold: float | None = None, strong_fraction: float | None = None) -> Decision:
        """Route one prompt.  With neither option, uses the attached :attr:`budget` controller, else the
        artifact's calibrated default threshold."""
        if self.budget is not None:
            return self.budget.route(prompt, threshold=threshold, strong_fraction=strong_fraction)
        thr, forced = self.resolve_threshold(threshold, strong_fraction)
        return self.decide(self.win_rate(prompt), thr, forced, source=threshold_source(threshold))

    def route_many(self, prompts: Sequence[str], *, threshold: float | None = None,
                   strong_fraction: float | None = None, batch_size: int = 64,
                   show_progress: bool = False) -> list[Decision]:
        """Route many prompts with batched scoring (through the attached :attr:`budget`, as :meth:`route`)."""
        check_batch_size(batch_size)
        if self.budget is not None:
            return self.budget.route_many(prompts, threshold=threshold, strong_fraction=strong_fraction,
                                          batch_size=batch_size, show_progress=show_progress)
        thr, forced = self.resolve_threshold(threshold, strong_fraction)
        rates = self.win_rates(prompts, batch_size=batch_size, show_progress=show_progress)
        source = threshold_source(threshold)
        return [self.decide(w, thr, forced, source=source) for w in rates]

    def explain(self, prompt: str, *, threshold: float | None = None, strong_fraction: float | None = None,
                top: int = 12):
        """Why ``prompt`` is routed as it is: a :class:`routekit.control.explain.Explanation` (the ``top``
        parts that moved the score, the threshold in force and its source).  Kinds that can say
        implement it (linear, mf, sw); the others raise :class:`BadInputError`."""
        raise BadInputError(f"router {self.name!r} (kind {self.kind}) cannot explain its decisions; "
                            "explain works for the linear, mf and sw kinds")


    # -- N models (routers with a model table: MF, SW; see routekit.select) -------------------
    def model_logits(self, prompts: Sequence[str], models: Sequence[str]) -> np.ndarray:
        """``(len(prompts), len(models))`` per-model scores on one scale (kinds with
        :attr:`has_model_scores`)."""
        raise BadInputError(f"router {self.name!r} (kind {self.kind}) has no per-model scores; "
                            "rank and select need a router with a model table (mf, sw)")

    def rank(self, prompt: str, candidates: Sequence[str] | None = None, *, reference: str | None = None):
        """``{model: P(model beats reference)}`` for ``candidates`` (default: the whole table), best first."""
        from routekit.select import rank

        return rank(self, prompt, candidates, reference)

    def select(self, prompt: str, candidates: Sequence[str] | None = None, *, prices=None,
               willingness_to_pay: float | None = None, reference: str | None = None):
        """The candidate with the best predicted quality for its price (a :class:`routekit.select.Selection`)."""
        from routekit.select import select

        return select(self, prompt, candidates, prices=prices, willingness_to_pay=willingness_to_pay,
                      reference=reference)


class EncoderRouter(Router):
    """A router whose head sits on a sentence encoder (linear, MF, SW): ``self.encoder`` maps prompts to
    an ``(n, dim)`` array and :meth:`score_embeddings` maps those rows to win rates.  Routers whose
    artifacts list the same encoder file share one encoder pass in a :class:`~routekit.router_set.RouterSet`."""

    encoder: Any = None

    @abc.abstractmethod
    def score_embeddings(self, embeddings: np.ndarray, prompts: list[str]) -> np.ndarray:
        """Raw win rates from the encoder's outputs for ``prompts``."""

    def score(self, prompts: list[str]) -> np.ndarray:
        return self.score_embeddings(self.encoder(prompts), prompts)
