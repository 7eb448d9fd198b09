"""Why a prompt went where it went: :class:`Explanation` and the pieces the router kinds fill in.

``router.explain(prompt)`` (linear, MF and SW routers; other kinds raise
:class:`~routekit.errors.BadInputError`) returns an :class:`Explanation`: the reported and the raw
win rate, the decision, the threshold in force and where it came from (``calibration``, ``budget``
or ``raw``, as :attr:`routekit.Decision.threshold_source`), and what moved the score:

* linear: the largest contributions to the logit of the raw win rate — the embedding block, each
  word piece of the tf-idf bag, each surface feature, the bias (the stacked difficulty model is
  folded into the embedding and feature weights at export, so it shows up there);
* MF: the model-pair projection ``logit = u·v_q + c`` (``u`` the strong-minus-weak direction in
  embedding space): the projection, the pair constant, the cosine of the prompt to ``u`` and both
  models' scores;
* SW: the training prompts that weigh most in the per-prompt Bradley–Terry fit (artifacts store
  their embeddings, not their text: each neighbour is its index in the artifact), with similarity,
  share of the total weight and the outcomes of the battles between the pair's tiers on it.

Explanations never change state: with a budget controller attached, the threshold shown is the
one the next request would meet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from routekit._validate import short
from routekit.errors import BadInputError

__all__ = ["Contribution", "Neighbour", "Explanation", "build", "check_top", "threshold_in_force", "top_contributions"]


@dataclass(frozen=True)
class Contribution:
    """One part of a linear score, in logit units of the raw win rate."""

    name: str  #: e.g. "embedding", "▁integral" (a word piece), "log_chars", "bias"
    group: str  #: "embedding", "term", "feature", "bias" or "pair"
    contribution: float  #: added to the logit (> 0 pushes toward strong)
    value: float | None = None  #: the input's value: tf-idf weight, raw surface feature, ...


@dataclass(frozen=True)
class Neighbour:
    """A training prompt of an SW artifact that weighs in this prompt's fit."""

    index: int  #: the prompt's row in the artifact's embeddings
    similarity: float  #: cosine similarity to the prompt
    weight_share: float  #: its share of all training prompts' weight
    strong_wins: float  #: battles on it won by the strong model's tier over the weak's (ties count ½)
    weak_wins: float  #: the reverse
    battles: float  #: all its cross-tier battle outcomes (each battle counts once)


@dataclass(frozen=True)
class Explanation:
    """Why one prompt was routed as it was (see the module docstring)."""

    router: str
    kind: str
    route: str
    win_rate: float  #: as reported (after the artifact's prob_map, if any)
    raw_win_rate: float  #: the kind's own score
    threshold: float
    threshold_source: str
    logit: float | None = None  #: logit of the raw win rate, where the kind has one
    contributions: tuple[Contribution, ...] = ()
    neighbours: tuple[Neighbour, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        """A few readable lines (``routekit explain``)."""
        lines = [f"{self.router} ({self.kind}): {self.route}  win rate {self.win_rate:.4f}"
                 + (f" (raw {self.raw_win_rate:.4f})" if abs(self.raw_win_rate - self.win_rate) > 5e-5 else "")
                 + f"  threshold {self.threshold:.4f} from {self.threshold_source}"]
        if self.logit is not None:
            lines.append(f"logit of the raw win rate: {self.logit:+.4f}")
        for c in self.contributions:
            val = "" if c.value is None else f"  (value {c.value:.4g})"
            lines.append(f"  {c.contribution:+.4f}  {c.group:<9} {c.name}{val}")
        for n in self.neighbours:
            lines.append(f"  training prompt #{n.index}: similarity {n.similarity:.3f}, weight {100 * n.weight_share:.2f} %, "
                         f"strong tier won {n.strong_wins:g} / weak tier won {n.weak_wins:g} of {n.battles:g} battles")
        for k, v in self.detail.items():
            lines.append(f"  {k}: {_short(v)}")
        return "\n".join(lines)


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_short(x)}" for k, x in v.items())
    return str(v)


def check_top(top: Any) -> int:
    """``explain(top=...)``: an integer >= 1 (BadInputError otherwise)."""
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise BadInputError(f"top must be an integer >= 1, got {short(top)}")
    return int(top)


def top_contributions(items: list[Contribution], k: int) -> tuple[Contribution, ...]:
    """The ``k`` largest by absolute contribution, largest first."""
    return tuple(sorted(items, key=lambda c: -abs(c.contribution))[:k])


def threshold_in_force(router, threshold: float | None, strong_fraction: float | None) -> tuple[float, bool | None, str]:
    """(threshold, forced, source) the router would use for these options now, without changing any state."""
    if threshold is None and strong_fraction is None and router.budget is not None:
        return router.budget.threshold, None, "budget"
    thr, forced = router.resolve_threshold(threshold, strong_fraction)
    return thr, forced, ("calibration" if threshold is None else "raw")


def build(router, raw: float, *, threshold: float | None, strong_fraction: float | None,
          logit: float | None = None, contributions=(), neighbours=(), detail=None) -> Explanation:
    """The :class:`Explanation` of a raw score: reported win rate, decision and threshold in force."""
    wr = float(router.to_win_rates([raw])[0])
    thr, forced, source = threshold_in_force(router, threshold, strong_fraction)
    d = router.decide(wr, thr, forced, source=source)
    return Explanation(router.name, router.kind, d.route, wr, float(np.clip(raw, 0.0, 1.0)), float(thr), source,
                       None if logit is None else float(logit), tuple(contributions), tuple(neighbours),
                       dict(detail or {}))
