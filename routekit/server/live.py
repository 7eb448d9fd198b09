"""The gateway's live-traffic control: a budget controller per router and an optional shadow router.

* **Budget** (``target_strong_share`` or ``budget_usd`` in the config; ``routekit serve
  --target-strong-share 0.3``): each configured router gets a
  :class:`~routekit.control.budget.BudgetController`, attached when the router is first used, so
  requests without their own threshold or strong fraction are routed at the controlled threshold
  (``threshold_source: "budget"``).  With ``budget_state`` the controllers' state is kept in
  ``<budget_state>/<router>.json`` (written every 100 decisions and at shutdown, read at startup).
  Every request the server answers shares one controller per router, whichever client sent it.
  With ``budget_usd`` the per-request costs start from the configured prices ×
  ``budget_request_tokens`` and follow the upstreams' real usage.
* **Shadow** (``shadow``; ``--shadow NAME``): a second router scores every routed request after the
  served decision is made (never before, never instead): with a strong fraction in the request it
  uses the same fraction, otherwise its own budget controller when budgets are on (same target,
  state ``shadow-<name>.json``), else its calibrated default.  Its decision goes in the decision
  log beside the served one (``shadow``: router, route, win_rate, threshold, threshold_source,
  agrees, cost_usd — what the answer's tokens would have cost on the shadow's side).
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any

from routekit.control.budget import BudgetController
from routekit.errors import BadInputError
from routekit.loading import RouterCache
from routekit.server.metrics import usage_cost

__all__ = ["LiveControl"]

log = logging.getLogger("routekit.server")


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100] or "router"


class LiveControl:
    """Budget controllers per router name and the shadow router of one server (see the module docstring)."""

    def __init__(self, cfg, *, threads: int | None = None):
        self.cfg = cfg
        self.targets = cfg.target_for_all()
        self.budgets = cfg.budget_for_all()
        self.state_dir = Path(cfg.budget_state) if cfg.budget_state else None
        if self.state_dir is not None and not self.state_dir.is_dir():
            raise BadInputError(f"budget_state folder {cfg.budget_state!r} does not exist")
        self._controllers: dict[str, BudgetController] = {}
        self._lock = threading.Lock()
        self.shadow_name = cfg.shadow
        self.shadow_cache = None
        self._shadow_ready = False
        if cfg.shadow:
            spec = cfg.routers.get(cfg.shadow, cfg.shadow)
            self.shadow_cache = RouterCache({cfg.shadow: spec}, threads=threads)

    # -- budget ---------------------------------------------------------------------------------
    def _costs(self) -> tuple[float, float]:
        tok = {"prompt_tokens": self.cfg.budget_request_tokens.get("input", 0),
               "completion_tokens": self.cfg.budget_request_tokens.get("output", 0)}
        return tuple(usage_cost(tok, self.cfg.prices.get(getattr(self.cfg, side).model))[2] or 0.0
                     for side in ("strong", "weak"))

    def _make(self, key: str, router, state: str) -> BudgetController | None:
        target, budget = self.targets.get(key), self.budgets.get(key)
        if target is None and budget is None:
            return None
        kw: dict[str, Any] = {"window": self.cfg.budget_window}
        if self.state_dir is not None:
            kw["state_path"] = self.state_dir / f"{_file_name(state)}.json"
        if budget is not None:
            return BudgetController(router, budget_usd=budget, costs=self._costs(), **kw)
        return BudgetController(router, target_strong_share=target, **kw)

    def attach(self, name: str, router) -> BudgetController | None:
        """The controller of configured router ``name`` (made and attached on first use), or None."""
        ctl = self._controllers.get(name)
        if ctl is None and (name in self.targets or name in self.budgets):
            with self._lock:
                ctl = self._controllers.get(name)
                if ctl is None:
                    ctl = self._make(name, router, name)
                    ctl.attach()
                    self._controllers[name] = ctl
        return ctl

    def observe(self, rec: dict) -> None:
        """Feed a finished request's real cost to its router's controller (the cost form)."""
        ctl = self._controllers.get(rec.get("_router_key", ""))
        usd = rec.get("cost_usd")
        if ctl is not None and ctl.budget_usd is not None and usd is not None:
            ctl.observe_cost(str(rec.get("upstream")), usd)

    def controllers(self) -> dict[str, BudgetController]:
        return dict(self._controllers)

    # -- shadow ---------------------------------------------------------------------------------
    def shadow_router(self):
        """The shadow router (loaded on first use) and, when budgets are on, its own controller with the
        first configured router's target."""
        router = self.shadow_cache.get(self.shadow_name)
        if not self._shadow_ready:
            with self._lock:
                if not self._shadow_ready:
                    key, first = f"shadow-{self.shadow_name}", next(iter(self.cfg.routers))
                    if first in self.targets:
                        self.targets[key] = self.targets[first]
                    elif first in self.budgets:
                        self.budgets[key] = self.budgets[first]
                    ctl = self._make(key, router, key)
                    if ctl is not None:
                        self._controllers[key] = ctl
                    self._shadow_ready = True
        return router

    def shadow_decide(self, text: str, strong_fraction: float | None) -> dict[str, Any]:
        """The shadow's decision for one request (runs in a worker thread)."""
        router = self.shadow_router()
        ctl = self._controllers.get(f"shadow-{self.shadow_name}")
        if strong_fraction is None and ctl is not None:
            d = ctl.route(text)
        else:
            thr, forced = router.resolve_threshold(None, strong_fraction)
            d = router.decide(router.win_rate(text), thr, forced)
        return {"router": self.shadow_name, "route": d.route, "win_rate": round(d.win_rate, 6),
                "threshold": round(d.threshold, 6), "threshold_source": d.threshold_source}

    def shadow_record(self, shadow: dict[str, Any], rec: dict) -> dict[str, Any]:
        """The log's ``shadow`` field: the decision, whether it agrees with the served one and what
        the answer's tokens would have cost on the shadow's side (None without usage or prices)."""
        out = dict(shadow)
        out["agrees"] = shadow.get("route") == rec.get("route")
        cost = None
        if rec.get("prompt_tokens") is not None and shadow.get("route") in ("strong", "weak"):
            up = getattr(self.cfg, shadow["route"])
            tok = {"prompt_tokens": rec.get("prompt_tokens"), "completion_tokens": rec.get("completion_tokens")}
            usd = usage_cost(tok, self.cfg.prices.get(up.model) if up else None)[2]
            cost = None if usd is None else round(usd, 9)
        out["cost_usd"] = cost
        return out

    def close(self) -> None:
        """Write every controller's state (at shutdown)."""
        for name, ctl in self.controllers().items():
            if ctl.state_path is not None:
                try:
                    ctl.save()
                except Exception as exc:  # noqa: BLE001 - shutdown goes on; the last periodic save stays
                    log.warning("could not save the budget state of %s: %s", name, exc)
