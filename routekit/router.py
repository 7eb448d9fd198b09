"""The Router interface shared by every router kind, the routing Decision, and ``load()``."""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from . import artifact, registry
from ._progress import progress
from .errors import BadInputError, UnknownModelError

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

    @property
    def is_strong(self) -> bool:
        return self.route == "strong"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def as_prompt(prompt: Any) -> str:
    """Validate one prompt: ``str`` as is, ``bytes`` decoded as UTF-8 (invalid bytes replaced)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (bytes, bytearray)):
        return bytes(prompt).decode("utf-8", errors="replace")
    raise BadInputError(f"a prompt must be str (or UTF-8 bytes), got {type(prompt).__name__}")


def as_prompts(prompts: Any) -> list[str]:
    if isinstance(prompts, (str, bytes, bytearray)):
        raise BadInputError("win_rates() takes a sequence of prompts; use win_rate() for one prompt")
    try:
        items = list(prompts)
    except TypeError:
        raise BadInputError(f"prompts must be a sequence of str, got {type(prompts).__name__}") from None
    out = []
    for i, p in enumerate(items):
        try:
            out.append(as_prompt(p))
        except BadInputError as exc:
            raise BadInputError(f"prompts[{i}]: {exc}") from None
    return out


def _short(value: Any) -> str:
    """A short repr for error messages (a 5,000-digit int has no repr at all under Python's limit)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 100:
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - objects with broken __repr__
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def _check_unit(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise BadInputError(f"{name} must be a number in [0, 1], got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        raise BadInputError(f"{name} must be a number in [0, 1], got {_short(value)}") from None
    if math.isnan(v) or not 0.0 <= v <= 1.0:
        raise BadInputError(f"{name} must be in [0, 1], got {_short(value)}")
    return v


def check_batch_size(batch_size: Any) -> int:
    """A batch size: an integer >= 1 (BadInputError otherwise)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise BadInputError(f"batch_size must be an integer >= 1, got {_short(batch_size)}")
    return int(batch_size)


def _check_model_name(role: str, model: Any) -> str:
    if not isinstance(model, str) or not model:
        raise BadInputError(f"{role} must be a model name (a non-empty str), got {_short(model)}")
    return model


class Router:
    """Scores prompts with P(strong model wins) and routes them at a threshold.

    Subclasses implement :meth:`_score` on a list of clean prompts.  Routers are safe to share
    between threads: scoring holds no mutable state.
    """

    kind = "base"

    def __init__(self, manifest: artifact.Manifest | None = None, *, name: str | None = None,
                 strong: str | None = None, weak: str | None = None):
        self.manifest = manifest
        self.name = name or (manifest.name if manifest else self.kind)
        pair = (manifest.get("pair") if manifest else None) or {}
        self._aliases: dict[str, str] = dict((manifest.get("aliases") if manifest else None) or {})
        self.default_strong = pair.get("strong", "strong")
        self.default_weak = pair.get("weak", "weak")
        self.strong_model = (self.canonical(_check_model_name("strong", strong)) if strong is not None
                             else self.default_strong)
        self.weak_model = self.canonical(_check_model_name("weak", weak)) if weak is not None else self.default_weak
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
        _check_model_name("a model", model)
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
    def _score(self, prompts: list[str]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def win_rates(self, prompts: Iterable[str], *, batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        """P(strong beats weak) for each prompt, as a float64 array in [0, 1]."""
        batch_size = check_batch_size(batch_size)
        items = as_prompts(prompts)
        if len(items) <= batch_size and not show_progress:
            return self._finish(self._score(items))
        chunks = range(0, len(items), batch_size)
        parts = [self._score(items[i:i + batch_size])
                 for i in progress(chunks, total=len(chunks), desc=f"scoring ({self.name})",
                                   enabled=show_progress, unit="batch")]
        return self._finish(np.concatenate(parts) if parts else np.zeros(0))

    @staticmethod
    def _finish(scores: np.ndarray) -> np.ndarray:
        out = np.asarray(scores, dtype=np.float64).reshape(-1)
        return np.clip(np.nan_to_num(out, nan=0.5), 0.0, 1.0)

    def score_embeddings(self, embeddings: np.ndarray, prompts: list[str]) -> np.ndarray | None:
        """Win rates from precomputed encoder outputs, for routers whose head sits on a shared
        sentence encoder (MF, SW, linear); ``None`` where the whole model is the router."""
        return None

    def win_rate(self, prompt: str) -> float:
        """P(strong beats weak) for one prompt."""
        return float(self._finish(self._score([as_prompt(prompt)]))[0])

    # -- thresholds -------------------------------------------------------------------------
    @property
    def calibration(self) -> dict[str, Any] | None:
        cal = self.manifest.get("calibration") if self.manifest else None
        if not cal or not self.is_default_pair:
            return None
        return cal

    def threshold_for(self, strong_fraction: float) -> float:
        """Threshold that sends ``strong_fraction`` of the calibration prompts to the strong model."""
        f = _check_unit("strong_fraction", strong_fraction)
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

    def _resolve_threshold(self, threshold: float | None, strong_fraction: float | None) -> tuple[float, bool | None]:
        """Returns (threshold, forced) where forced is True/False for fractions 1/0, else None."""
        if threshold is not None and strong_fraction is not None:
            raise BadInputError("pass threshold or strong_fraction, not both")
        if threshold is not None:
            thr = _check_unit("threshold", threshold)
            self._check_threshold_range(thr)
            return thr, None
        if strong_fraction is not None:
            f = _check_unit("strong_fraction", strong_fraction)
            if f == 0.0:
                return 1.0, False
            if f == 1.0:
                return 0.0, True
            return self.threshold_for(f), None
        return self.default_threshold, None

    # -- routing ----------------------------------------------------------------------------
    def _decide(self, wr: float, thr: float, forced: bool | None) -> Decision:
        strong = forced if forced is not None else wr >= thr
        return Decision("strong" if strong else "weak", self.strong_model if strong else self.weak_model,
                        float(wr), float(thr), self.name, self.strong_model, self.weak_model)

    def route(self, prompt: str, *, threshold: float | None = None, strong_fraction: float | None = None) -> Decision:
        """Route one prompt.  With neither option, uses the artifact's calibrated default threshold."""
        thr, forced = self._resolve_threshold(threshold, strong_fraction)
        return self._decide(self.win_rate(prompt), thr, forced)

    def route_many(self, prompts: Sequence[str], *, threshold: float | None = None,
                   strong_fraction: float | None = None, batch_size: int = 64,
                   show_progress: bool = False) -> list[Decision]:
        """Route many prompts with batched scoring."""
        check_batch_size(batch_size)
        thr, forced = self._resolve_threshold(threshold, strong_fraction)
        rates = self.win_rates(prompts, batch_size=batch_size, show_progress=show_progress)
        return [self._decide(w, thr, forced) for w in rates]


    # -- N models (routers with a model table: MF, SW; see routekit.select) -------------------
    def rank(self, prompt: str, candidates: Sequence[str] | None = None, *, reference: str | None = None):
        """``{model: P(model beats reference)}`` for ``candidates`` (default: the whole table), best first."""
        from .select import rank

        return rank(self, prompt, candidates, reference)

    def select(self, prompt: str, candidates: Sequence[str] | None = None, *, prices=None,
               willingness_to_pay: float | None = None, reference: str | None = None):
        """The candidate with the best predicted quality for its price (a :class:`routekit.select.Selection`)."""
        from .select import select

        return select(self, prompt, candidates, prices=prices, willingness_to_pay=willingness_to_pay,
                      reference=reference)


def load(name_or_path: str | os.PathLike = "default", *, providers: Sequence[str] | None = None,
         threads: int | None = None, strong: str | None = None, weak: str | None = None,
         verify: bool = True, **options: Any) -> Router:
    """Load a router by shipped name (``default``, ``linear``, ``mf``, ``sw``, ``sw-static``, ``bert``,
    ``random[:SEED]``; see ``routekit artifacts list``) or artifact folder of any kind in
    :func:`routekit.registry.kinds`: ``mf``, ``sw``, ``bert``, ``causal``, ``linear``, ``random`` and
    those of installed plugins.

    ``strong``/``weak`` pick another pair from the artifact's model table (MF and SW routers).
    ``providers``/``threads`` configure onnxruntime.  Files are hash-checked unless ``verify=False``.
    Other keywords are the kind's own options (e.g. SW's ``mode="fast"``); one the kind does not
    take raises :class:`BadInputError`.
    """
    key = _router_key(name_or_path)
    from .session import resolve_threads

    resolve_threads(threads)  # a bad thread count is refused before anything is read
    kw = dict(providers=providers, threads=threads, strong=strong, weak=weak, **options)
    if key == "random" or key.startswith("random:"):
        cls = registry.router_class("random")
        registry.check_options("random", cls, options)
        if ":" in key:
            if "seed" in options:
                raise BadInputError(f"give the seed once: {key!r} or seed=, not both")
            kw["seed"] = key.split(":", 1)[1]
        return cls(None, **kw)
    folder = artifact.resolve(name_or_path)
    manifest = artifact.read_manifest(folder, verify=verify)
    if key in artifact.shipped() and key != folder.name:
        manifest.data.setdefault("name", folder.name)
    cls = registry.router_class(manifest.kind)
    registry.check_options(manifest.kind, cls, options)
    return cls(manifest, **kw)


def _router_key(name_or_path: Any) -> str:
    if isinstance(name_or_path, bool) or not isinstance(name_or_path, (str, os.PathLike)):
        raise BadInputError(f"a router is a shipped name or an artifact folder path, got "
                            f"{type(name_or_path).__name__}")
    key = os.fspath(name_or_path)
    if not isinstance(key, str):
        raise BadInputError("a router path must be str, not bytes")
    if not key.strip() or "\0" in key:
        raise BadInputError(f"invalid router name {key!r}")
    return key


class RouterSet:
    """Several routers scored together, running each distinct encoder once per batch.

    Routers whose artifacts ship the same encoder file (same sha256) share one embedding pass;
    the others (BERT, causal, random) score on their own.  ``win_rates`` returns one array per
    router, in the order given, identical to each router's own ``win_rates``.
    """

    def __init__(self, routers: Sequence[Router | str], **load_options: Any):
        if isinstance(routers, (str, bytes, os.PathLike)) or not hasattr(routers, "__iter__"):
            raise BadInputError(f"RouterSet takes a list of routers or router names, got {_short(routers)}")
        self.routers = []
        for i, r in enumerate(routers):
            if isinstance(r, Router):
                self.routers.append(r)
            elif isinstance(r, (str, os.PathLike)) and not isinstance(r, bool):
                self.routers.append(load(r, **load_options))
            else:
                raise BadInputError(f"routers[{i}] must be a Router, a shipped name or a folder, got {_short(r)}")

    @staticmethod
    def _encoder_key(router: Router) -> tuple | None:
        spec = router.manifest.get("encoder") if router.manifest else None
        if not isinstance(spec, dict) or "file" not in spec or getattr(router, "encoder", None) is None:
            return None
        if type(router).score_embeddings is Router.score_embeddings:
            return None
        return (router.manifest.file_key(spec["file"]), int(spec.get("max_length", 256)))

    def _score_chunk(self, items: list[str], batch_size: int) -> list[np.ndarray]:
        out: list[np.ndarray | None] = [None] * len(self.routers)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(self.routers):
            key = self._encoder_key(r)
            if key is None:
                out[i] = r._score(items)
            else:
                groups.setdefault(key, []).append(i)
        for members in groups.values():
            emb = self.routers[members[0]].encoder(items, batch_size=batch_size)
            for i in members:
                out[i] = self.routers[i].score_embeddings(emb, items)
        return [Router._finish(o) for o in out]

    def win_rates(self, prompts: Iterable[str], *, batch_size: int = 64,
                  show_progress: bool = False) -> list[np.ndarray]:
        batch_size = check_batch_size(batch_size)
        items = as_prompts(prompts)
        if not items:
            return [np.zeros(0) for _ in self.routers]
        chunks = range(0, len(items), batch_size)
        parts = [self._score_chunk(items[i:i + batch_size], batch_size)
                 for i in progress(chunks, total=len(chunks), desc="scoring", enabled=show_progress, unit="batch")]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(self.routers))]

    def route(self, prompt: str, **kw: Any) -> list[Decision]:
        """One decision per router for ``prompt`` (``threshold``/``strong_fraction`` as for Router.route)."""
        rates = self.win_rates([prompt])
        decisions = []
        for r, w in zip(self.routers, rates):
            thr, forced = r._resolve_threshold(kw.get("threshold"), kw.get("strong_fraction"))
            decisions.append(r._decide(float(w[0]), thr, forced))
        return decisions


_DEFAULT: Router | None = None
_DEFAULT_LOCK = threading.Lock()


def route(prompt: str, *, threshold: float | None = None, strong_fraction: float | None = None) -> Decision:
    """Route one prompt with the default shipped router (loaded once, on first use, by one thread)."""
    global _DEFAULT
    if _DEFAULT is None:
        with _DEFAULT_LOCK:
            if _DEFAULT is None:
                _DEFAULT = load("default")
    return _DEFAULT.route(prompt, threshold=threshold, strong_fraction=strong_fraction)
