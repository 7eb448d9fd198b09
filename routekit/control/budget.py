"""Hold a strong-call share (or a spend) on live traffic: :class:`BudgetController`.

A calibrated threshold sends its share of strong calls only on the mix it was calibrated on; on a
team's own traffic, and whenever that traffic changes, the share drifts.  The controller wraps a
router and picks, request by request, the threshold that keeps the share of strong decisions at a
target:

* **feed-forward** — the threshold is the ``1 − s`` quantile of the last ``memory`` win rates the
  router gave (a ring buffer kept sorted, so a quantile is one interpolation).  When traffic
  changes, the buffer fills with the new traffic's win rates and the threshold follows within
  ``memory`` requests.  The buffer starts from the artifact's calibration table (``memory`` evenly
  spaced quantiles of the calibration mix), so the first request is routed as the calibrated
  threshold would route it;
* **feedback** — ``s = target + e / horizon``, where ``e`` is the running surplus of the target over
  the strong decisions taken (``e ← leak·e + target − [strong]``).  The feed-forward quantile is
  always a little late after a change; the feedback pays the difference back within about
  ``horizon`` requests, so the count of strong calls over any window stays close to
  ``target × window`` (not only its expectation).

One request moves the threshold by at most one buffer entry and one ``1/horizon`` step of the
quantile level: no single prompt makes it jump.

Cost form: ``budget_usd`` per ``window`` requests, with the per-request cost of a strong and of a
weak call (``costs=(strong_usd, weak_usd)``, updated by :meth:`BudgetController.observe_cost` from
real usage when the server knows it), gives the share ``(budget/window − weak) / (strong − weak)``,
clipped to [0, 1].

State (buffer, feedback term, the recent decisions) is written atomically to ``state_path`` every
``save_every`` decisions and by :meth:`BudgetController.save`, and read back when the controller
is created, so a restart carries on where it stopped.  A state written for another artifact, pair
or target is ignored (with a warning).  A periodic save that fails (folder gone, disk full) logs one
warning and is retried ``save_every`` decisions later; routing goes on.

Thread-safe: scoring runs outside the lock, the threshold choice and the update inside it, so
concurrent callers share one budget.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from routekit._validate import as_prompt, as_prompts, check_unit
from routekit.errors import BadInputError, RoutekitError
from routekit.router import Decision, Router, threshold_source

__all__ = ["BudgetController", "BudgetStats", "STATE_FORMAT"]

log = logging.getLogger("routekit")

STATE_FORMAT = "routekit-budget-state"
STATE_VERSION = 1


@dataclass(frozen=True)
class BudgetStats:
    """A snapshot of a controller (``/metrics``, ``routekit explain``)."""

    router: str
    target_strong_share: float
    threshold: float  #: the threshold the next request will meet
    window_strong_share: float | None  #: share of strong decisions over the last ``window`` decisions
    window_decisions: int
    decisions: int  #: decisions taken since the state was created (restarts included)
    feedback: float  #: the running surplus e (strong calls owed, > 0, or taken too many, < 0)
    memory_fill: int  #: win rates in the quantile buffer
    budget_usd: float | None
    cost_per_request_usd: tuple[float, float] | None  #: (strong, weak) estimates used by the cost form

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        if self.cost_per_request_usd is not None:
            out["cost_per_request_usd"] = list(self.cost_per_request_usd)
        return out


def _positive(name: str, value: Any, *, integer: bool = False) -> Any:
    ok = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float, np.integer, np.floating))
    if not ok or isinstance(value, bool) or not math.isfinite(float(value)) or value <= 0:
        raise BadInputError(f"{name} must be a positive {'integer' if integer else 'number'}, got {value!r}")
    return int(value) if integer else float(value)


class BudgetController:
    """Routes with ``router`` at the threshold that keeps the strong share at a target.

    >>> ctl = routekit.BudgetController(routekit.load("default"), target_strong_share=0.3)  # doctest: +SKIP
    >>> ctl.route("Prove that sqrt(2) is irrational.")                                      # doctest: +SKIP
    Decision(route='strong', ..., threshold_source='budget')

    Give exactly one of ``target_strong_share`` and ``budget_usd`` (USD per ``window`` requests;
    needs ``costs``).  ``memory``: win rates in the quantile buffer; ``horizon``: requests over
    which a deviation from the target is paid back; ``leak``: how much of the running surplus is
    kept per request (1 − 1/``window`` by default, so an old deviation fades over a window).
    ``route``/``route_many`` with an explicit ``threshold`` or ``strong_fraction`` bypass the
    controller (the router decides as asked; the win rate still enters the buffer, the decision
    does not count toward the share).
    """

    def __init__(self, router: Router, target_strong_share: float | None = None, *,
                 budget_usd: float | None = None, costs: tuple[float, float] | None = None,
                 window: int = 1000, memory: int = 256, horizon: int = 50, leak: float | None = None,
                 state_path: str | os.PathLike | None = None, save_every: int = 100):
        if not isinstance(router, Router):
            raise BadInputError(f"BudgetController wraps a Router, got {type(router).__name__}")
        if (target_strong_share is None) == (budget_usd is None):
            raise BadInputError("give exactly one of target_strong_share and budget_usd")
        self.router = router
        self.window = _positive("window", window, integer=True)
        self.memory = _positive("memory", memory, integer=True)
        self.horizon = _positive("horizon", horizon)
        self.leak = 1.0 - 1.0 / self.window if leak is None else check_unit("leak", leak)
        self.save_every = _positive("save_every", save_every, integer=True)
        self._target = None if target_strong_share is None else check_unit("target_strong_share",
                                                                           target_strong_share)
        self.budget_usd = None if budget_usd is None else _nonnegative("budget_usd", budget_usd)
        if self.budget_usd is not None and costs is None:
            raise BadInputError("budget_usd needs costs=(strong_usd, weak_usd) per request")
        self._costs = None if costs is None else _cost_pair(costs)
        self.state_path = Path(state_path) if state_path is not None else None
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._ring: deque[float] = deque()
        self._sorted: list[float] = []
        self._recent: deque[bool] = deque(maxlen=self.window)
        self._feedback = 0.0
        self._decisions = 0
        self._since_save = 0
        self._save_failing = False  # the last periodic save failed (warned once)
        if not (self.state_path is not None and self._restore()):
            self._warm_start()

    # -- the target ----------------------------------------------------------------------------
    @property
    def target_strong_share(self) -> float:
        if self._target is not None:
            return self._target
        strong, weak = self._costs
        if strong <= weak:  # strong is no dearer: every call may go strong
            return 1.0
        return float(min(1.0, max(0.0, (self.budget_usd / self.window - weak) / (strong - weak))))

    def observe_cost(self, route: str, usd: float, *, rate: float = 0.02) -> None:
        """Update the per-request cost estimate of one side (``"strong"``/``"weak"``) with a real
        request's cost (an exponential moving average with weight ``rate``)."""
        if self._costs is None or route not in ("strong", "weak"):
            return
        if not isinstance(usd, (int, float)) or isinstance(usd, bool) or not math.isfinite(usd) or usd < 0:
            return
        with self._lock:
            s, w = self._costs
            if route == "strong":
                s += rate * (float(usd) - s)
            else:
                w += rate * (float(usd) - w)
            self._costs = (s, w)

    # -- the quantile buffer -------------------------------------------------------------------
    def _warm_start(self) -> None:
        cal = self.router.calibration
        q = (cal or {}).get("quantiles")
        if q:
            levels = (np.arange(self.memory) + 0.5) / self.memory
            for v in np.interp(levels, np.linspace(0.0, 1.0, len(q)), np.asarray(q, np.float64)):
                self._push(float(v))

    def _push(self, wr: float) -> None:
        if len(self._ring) >= self.memory:
            old = self._ring.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._ring.append(wr)
        bisect.insort(self._sorted, wr)

    def _quantile(self, level: float) -> float:
        v = self._sorted
        pos = level * (len(v) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(v) - 1)
        return v[lo] + (v[hi] - v[lo]) * (pos - lo)

    def _share(self) -> float:
        """The strong share asked of the next request (call with the lock held)."""
        return min(1.0, max(0.0, self.target_strong_share + self._feedback / self.horizon))

    def _threshold(self) -> float:
        """The threshold for the next request (call with the lock held)."""
        share = self._share()
        if share >= 1.0:  # everything strong: every win rate is >= 0
            return 0.0
        if not self._sorted:  # no calibration and no traffic yet: the router's own default, if any
            try:
                return self.router.default_threshold
            except BadInputError:
                return 0.5
        if share <= 0.0:  # nothing strong: above every win rate seen (decide() forces weak)
            return min(1.0, math.nextafter(self._sorted[-1], math.inf))
        return self._quantile(1.0 - share)

    @property
    def threshold(self) -> float:
        """The threshold the next request will meet."""
        with self._lock:
            return self._threshold()

    # -- deciding ------------------------------------------------------------------------------
    def decide(self, win_rate: float) -> Decision:
        """The decision for one win rate at the controlled threshold; updates the state."""
        wr = check_unit("win_rate", win_rate)
        with self._lock:
            thr = self._threshold()
            # a share of 0 sends nothing strong, even a win rate above every one in the buffer
            forced = False if self._share() <= 0.0 else None
            strong = wr >= thr if forced is None else forced
            self._push(wr)
            self._feedback = self.leak * self._feedback + self.target_strong_share - float(strong)
            self._recent.append(strong)
            self._decisions += 1
            self._since_save += 1
            due = self.state_path is not None and self._since_save >= self.save_every
        if due:
            try:
                self.save()
            except (OSError, RoutekitError) as exc:  # routing goes on; the next save_every decisions retry
                with self._lock:
                    self._since_save = 0
                    first = not self._save_failing
                    self._save_failing = True
                (log.warning if first else log.debug)(
                    "could not save the budget state of %s to %s (%s); routing goes on and retries every "
                    "%d decisions", self.router.name, self.state_path, exc, self.save_every)
            else:
                self._save_failing = False
        return self.router.decide(wr, thr, forced, source="budget")

    def observe(self, win_rate: float) -> None:
        """Add a win rate to the buffer without a controlled decision (a request that chose its own
        threshold): it tells the controller about the traffic, not about the share."""
        wr = check_unit("win_rate", win_rate)
        with self._lock:
            self._push(wr)

    def route(self, prompt: str, *, threshold: float | None = None,
              strong_fraction: float | None = None) -> Decision:
        """Route one prompt at the controlled threshold (an explicit option bypasses the controller)."""
        if threshold is not None or strong_fraction is not None:
            thr, forced = self.router.resolve_threshold(threshold, strong_fraction)
            wr = self.router.win_rate(prompt)
            self.observe(wr)
            return self.router.decide(wr, thr, forced, source=threshold_source(threshold))
        return self.decide(self.router.win_rate(as_prompt(prompt)))

    def route_many(self, prompts: Sequence[str], *, threshold: float | None = None,
                   strong_fraction: float | None = None, batch_size: int = 64,
                   show_progress: bool = False) -> list[Decision]:
        """Route many prompts in order, each at the threshold in force when its turn comes."""
        explicit = threshold is not None or strong_fraction is not None
        if explicit:
            thr, forced = self.router.resolve_threshold(threshold, strong_fraction)
        rates = self.router.win_rates(as_prompts(prompts), batch_size=batch_size, show_progress=show_progress)
        if not explicit:
            return [self.decide(w) for w in rates]
        for w in rates:
            self.observe(w)
        source = threshold_source(threshold)
        return [self.router.decide(w, thr, forced, source=source) for w in rates]

    def attach(self) -> "BudgetController":
        """Make ``router.route()``/``route_many()`` go through this controller (returns self)."""
        self.router.budget = self
        return self

    def detach(self) -> None:
        """Undo :meth:`attach` (the router routes at its calibrated threshold again)."""
        if self.router.budget is self:
            self.router.budget = None

    def run(self, win_rates: Iterable[float]) -> np.ndarray:
        """Decisions (bool, strong) for a stream of precomputed win rates (simulation, replay)."""
        return np.array([self.decide(w).is_strong for w in win_rates], dtype=bool)

    def stats(self) -> BudgetStats:
        with self._lock:
            n = len(self._recent)
            return BudgetStats(
                router=self.router.name, target_strong_share=self.target_strong_share, threshold=self._threshold(),
                window_strong_share=(sum(self._recent) / n) if n else None, window_decisions=n,
                decisions=self._decisions, feedback=self._feedback, memory_fill=len(self._ring),
                budget_usd=self.budget_usd, cost_per_request_usd=self._costs)

    def __repr__(self) -> str:
        return (f"<BudgetController {self.router.name!r} target={self.target_strong_share:.3f} "
                f"threshold={self.threshold:.4f}>")

    # -- state ---------------------------------------------------------------------------------
    def _identity(self) -> dict[str, Any]:
        m = self.router.manifest
        return {"router": self.router.name, "artifact": m.content_hash if m is not None else None,
                "pair": [self.router.strong_model, self.router.weak_model], "memory": self.memory,
                "window": self.window}

    def state(self) -> dict[str, Any]:
        """The controller's state as JSON-ready data (what :meth:`save` writes)."""
        with self._lock:
            return {"format": STATE_FORMAT, "version": STATE_VERSION, **self._identity(),
                    "target_strong_share": self._target, "budget_usd": self.budget_usd,
                    "costs": list(self._costs) if self._costs else None,
                    "buffer": list(self._ring), "feedback": self._feedback,
                    "recent": "".join("1" if s else "0" for s in self._recent),
                    "decisions": self._decisions, "saved": round(time.time(), 3)}

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the state atomically (to ``path``, default ``state_path``)."""
        from routekit.io import atomic_write

        target = Path(path) if path is not None else self.state_path
        if target is None:
            raise BadInputError("this controller has no state_path; pass save(path)")
        with self._save_lock:
            data = self.state()
            with atomic_write(target, what="budget state") as f:
                json.dump(data, f, separators=(",", ":"), allow_nan=False)
            with self._lock:
                self._since_save = 0
        return target

    def _restore(self) -> bool:
        """Read ``state_path`` if it exists and matches this controller; True when it was used."""
        p = self.state_path
        if not p.is_file():
            return False
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
                raise ValueError("not a routekit budget state")
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"state version {data.get('version')!r}, this routekit reads {STATE_VERSION}")
            ident = self._identity()
            changed = [k for k in ident if data.get(k) != ident[k]]
            if data.get("target_strong_share") != self._target or data.get("budget_usd") != self.budget_usd:
                changed.append("target")
            if changed:
                log.warning("budget state %s was written for another %s; starting from the calibration table",
                            p, "/".join(changed))
                return False
            buffer = [float(x) for x in data["buffer"]]
            recent = str(data["recent"])
            if not all(0.0 <= x <= 1.0 for x in buffer) or set(recent) - {"0", "1"}:
                raise ValueError("buffer or recent decisions out of range")
            feedback, decisions = float(data["feedback"]), int(data["decisions"])
            if not math.isfinite(feedback):
                raise ValueError("feedback is not finite")
            costs = _cost_pair(data["costs"]) if data.get("costs") is not None and self._costs else None
        except (OSError, ValueError, KeyError, TypeError, BadInputError) as exc:
            log.warning("budget state %s is unreadable (%s); starting from the calibration table", p, exc)
            return False
        for x in buffer[-self.memory:]:
            self._push(x)
        self._recent.extend(c == "1" for c in recent[-self.window:])
        self._feedback, self._decisions = feedback, decisions
        if costs is not None:
            self._costs = costs
        return True


def _nonnegative(name: str, value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise BadInputError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _cost_pair(costs: Any) -> tuple[float, float]:
    if not isinstance(costs, (tuple, list)) or len(costs) != 2:
        raise BadInputError(f"costs must be (strong_usd, weak_usd) per request, got {costs!r}")
    return _nonnegative("costs[0] (strong)", costs[0]), _nonnegative("costs[1] (weak)", costs[1])

