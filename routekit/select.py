"""N-model selection: rank any models of a router's model table for a prompt, and pick the one
with the best predicted quality for its price.

Routers with a model table implement ``model_logits(prompts, models) -> (n, m)`` array: a
per-prompt strength of each model on one logit scale, such that
P(model a beats model b | prompt) = σ(logit_a − logit_b).  MF: δ(model, prompt) of the paper;
SW: the prompt's Bradley–Terry tier ratings (models of one tier tie).

``rank(router, prompt, candidates, reference=None)``
    predicted quality of each candidate = P(candidate beats ``reference``) (default: the
    router's weak model), a number in [0, 1].  Routers that predict each model's own quality
    (``model_quality(prompts, models)``, the item-response kind ``irt``) give that instead when no
    ``reference`` is named: the probability the model answers the prompt well.
``select(router, prompt, candidates, prices=None, willingness_to_pay=None)``
    the candidate maximising ``quality − price / willingness_to_pay``.  ``prices`` are one number
    per candidate (e.g. USD per million tokens); ``willingness_to_pay`` is what one full unit of
    quality (win rate 0 → 1) is worth in the same unit.  ``None`` (or no prices): the best
    predicted quality; ``0``: the cheapest.  Ties go to the cheaper, then to the earlier candidate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from routekit._validate import as_prompt, as_prompts
from routekit.errors import BadInputError

__all__ = ["Selection", "rank", "rank_many", "select", "utilities"]


@dataclass(frozen=True)
class Selection:
    model: str  #: the chosen candidate
    quality: dict[str, float]  #: predicted quality per candidate (P(beats reference); irt: its own quality)
    utility: dict[str, float]  #: quality − price / willingness_to_pay per candidate
    reference: str
    router: str
    prices: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "quality": dict(self.quality), "utility": dict(self.utility),
                "reference": self.reference, "router": self.router, "prices": dict(self.prices)}


def _table(router, candidates: Sequence[str] | None) -> list[str]:
    if not router.has_model_scores:
        raise BadInputError(f"router {router.name!r} ({router.kind}) has no model table to rank; "
                            "use an MF or SW router")
    if candidates is None:
        return list(router.models)
    if isinstance(candidates, (str, bytes)) or not isinstance(candidates, Sequence) or not candidates:
        raise BadInputError("candidates must be a non-empty list of model names")
    names = [router.canonical(c) if isinstance(c, str) else _bad(c) for c in candidates]
    if len(set(names)) != len(names):
        raise BadInputError("candidates name a model twice")
    return list(candidates)


def _bad(c: Any):
    raise BadInputError(f"a candidate must be a model name (str), got {type(c).__name__}")


def rank_many(router, prompts: Sequence[str], candidates: Sequence[str] | None = None,
              reference: str | None = None) -> np.ndarray:
    """Predicted quality ``(n prompts, m candidates)``; see :func:`rank`."""
    if isinstance(prompts, (str, bytes, bytearray)):
        raise BadInputError("rank_many() takes a sequence of prompts; use rank() for one prompt")
    prompts = as_prompts(prompts)
    names = _table(router, candidates)
    canon = [router.canonical(c) for c in names]
    own = getattr(router, "model_quality", None)
    if reference is None and own is not None:
        quality = own(prompts, canon)  # None: a model of the table has no absolute quality (battles only)
        if quality is not None:
            return np.asarray(quality, dtype=np.float64)
    ref = router.canonical(reference) if reference is not None else router.weak_model
    logits = np.asarray(router.model_logits(prompts, canon + [ref]), dtype=np.float64)
    return 1.0 / (1.0 + np.exp(logits[:, -1:] - logits[:, :-1]))


def rank(router, prompt: str, candidates: Sequence[str] | None = None,
         reference: str | None = None) -> dict[str, float]:
    """``{candidate: P(candidate beats reference | prompt)}``, best first."""
    prompt = as_prompt(prompt)
    names = _table(router, candidates)
    q = rank_many(router, [prompt], names, reference)[0]
    return dict(sorted(zip(names, map(float, q)), key=lambda kv: -kv[1]))


def _prices(names: list[str], prices: Mapping[str, float] | None) -> dict[str, float]:
    if not prices:
        return {}
    out = {}
    for n in names:
        if n not in prices:
            raise BadInputError(f"no price for candidate {n!r}")
        try:
            p = float(prices[n])
        except (TypeError, ValueError, OverflowError):
            raise BadInputError(f"price of {n!r} must be a number, got {prices[n]!r}") from None
        if not math.isfinite(p) or p < 0:
            raise BadInputError(f"price of {n!r} must be finite and >= 0, got {prices[n]!r}")
        out[n] = p
    return out


def utilities(quality: np.ndarray, prices: np.ndarray | None, willingness_to_pay: float | None) -> np.ndarray:
    """quality − price / willingness_to_pay (broadcast over rows); quality alone without prices."""
    if prices is None or willingness_to_pay is None:
        return np.asarray(quality, dtype=np.float64)
    if willingness_to_pay == 0:
        return -np.broadcast_to(np.asarray(prices, dtype=np.float64), np.shape(quality)).copy()
    return quality - np.asarray(prices, dtype=np.float64) / willingness_to_pay


def select(router, prompt: str, candidates: Sequence[str] | None = None, *, prices: Mapping[str, float] | None = None,
           willingness_to_pay: float | None = None, reference: str | None = None) -> Selection:
    """The candidate with the best predicted quality for its price (see the module docstring)."""
    prompt = as_prompt(prompt)
    names = _table(router, candidates)
    if willingness_to_pay is not None:
        try:
            wtp = float(willingness_to_pay)
        except (TypeError, ValueError, OverflowError):
            raise BadInputError(f"willingness_to_pay must be a number >= 0, got {willingness_to_pay!r}") from None
        if math.isnan(wtp) or wtp < 0:
            raise BadInputError(f"willingness_to_pay must be >= 0, got {willingness_to_pay!r}")
        willingness_to_pay = None if math.isinf(wtp) else wtp
    p = _prices(names, prices)
    if willingness_to_pay is not None and not p:
        raise BadInputError("willingness_to_pay needs prices for the candidates")
    q = rank_many(router, [prompt], names, reference)[0]
    pr = np.array([p[n] for n in names]) if p else None
    u = utilities(q, pr, willingness_to_pay)
    cheap = pr if pr is not None else np.zeros(len(names))
    best = min(range(len(names)), key=lambda i: (-u[i], cheap[i], i))
    ref = reference if reference is not None else router.weak_model
    return Selection(names[best], dict(zip(names, map(float, q))), dict(zip(names, map(float, u))), ref,
                     router.name, p)
