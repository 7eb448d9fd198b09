"""The routing server's Prometheus metrics, kept with ``prometheus_client`` in a registry per app.

Metric names (unchanged from the hand-written exporter they replace):

``routekit_requests_total{endpoint, route, status}``
``routekit_router_latency_seconds{router}``              histogram of the time to score and route
``routekit_upstream_errors_total{upstream, kind}``       kind: timeout, connection, http_<code>, not_json, other
``routekit_fallbacks_total{from_upstream, to_upstream, reason}``
``routekit_tokens_total{model, kind}``                   kind: prompt, completion (the upstream's usage)
``routekit_cost_usd_total{model}``                       usage x configured prices
``routekit_decisions_total{router, threshold_source}``    routed requests by where the threshold came from
``routekit_budget_threshold{router}``                    a budget controller's current threshold (gauge)
``routekit_budget_target_share{router}``                 its target strong share (gauge; the cost form's too)
``routekit_budget_window_share{router}``                 strong share of its last ``budget_window`` decisions
``routekit_budget_feedback{router}``                     its running surplus of strong calls owed (gauge)
``routekit_shadow_decisions_total{router, route, agrees}`` the shadow router's decisions
"""

from __future__ import annotations

from typing import Any, Mapping

from routekit.errors import require

require("prometheus_client", "server", "the routing server's /metrics")

from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,  # noqa: E402
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["Metrics", "CONTENT_TYPE_LATEST", "usage_cost"]

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def usage_cost(usage: Mapping[str, Any] | None, price: Mapping[str, float] | None) -> tuple[int, int, float | None]:
    """(prompt tokens, completion tokens, USD or None without a price) of one upstream ``usage``."""
    usage = usage or {}
    try:
        pin = max(0, int(usage.get("prompt_tokens") or 0))
        pout = max(0, int(usage.get("completion_tokens") or 0))
    except (TypeError, ValueError, OverflowError):
        pin = pout = 0
    if not price:
        return pin, pout, None
    return pin, pout, (pin * float(price.get("input", 0.0)) + pout * float(price.get("output", 0.0))) / 1e6


class Metrics:
    """The server's counters and latency histogram; :meth:`render` gives the exposition text."""

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._requests = Counter("routekit_requests", "Requests by endpoint, routing decision and HTTP status.",
                                 ("endpoint", "route", "status"), registry=r)
        self._latency = Histogram("routekit_router_latency_seconds", "Time to score and route one request.",
                                  ("router",), buckets=_BUCKETS, registry=r)
        self._upstream_errors = Counter("routekit_upstream_errors", "Failed upstream calls by upstream and kind.",
                                        ("upstream", "kind"), registry=r)
        self._fallbacks = Counter("routekit_fallbacks", "Requests answered by another upstream after the chosen "
                                  "one failed.", ("from_upstream", "to_upstream", "reason"), registry=r)
        self._tokens = Counter("routekit_tokens", "Tokens reported by upstreams (usage), by model and kind.",
                               ("model", "kind"), registry=r)
        self._cost = Counter("routekit_cost_usd", "Upstream cost from usage x configured prices.", ("model",),
                             registry=r)
        self._decisions = Counter("routekit_decisions", "Routed requests by router and threshold source "
                                  "(calibration, budget, raw).", ("router", "threshold_source"), registry=r)
        self._budget = {k: Gauge(f"routekit_budget_{k}", doc, ("router",), registry=r) for k, doc in (
            ("threshold", "A budget controller's current threshold."),
            ("target_share", "A budget controller's target strong share."),
            ("window_share", "Strong share of a budget controller's recent decisions (its window)."),
            ("feedback", "A budget controller's running surplus of strong calls owed (< 0: taken too many)."))}
        self._shadow = Counter("routekit_shadow_decisions", "The shadow router's decisions, and whether they "
                               "agree with the served ones.", ("router", "route", "agrees"), registry=r)

    def request(self, endpoint: str, route: str, status: int) -> None:
        self._requests.labels(endpoint, route, str(status)).inc()

    def upstream_error(self, upstream: str, kind: str) -> None:
        self._upstream_errors.labels(upstream, kind).inc()

    def fallback(self, from_upstream: str, to_upstream: str, reason: str) -> None:
        self._fallbacks.labels(from_upstream, to_upstream, reason).inc()

    def decision(self, router: str, threshold_source: str) -> None:
        self._decisions.labels(router, threshold_source).inc()

    def shadow(self, router: str, route: str, agrees: bool) -> None:
        self._shadow.labels(router, route, "yes" if agrees else "no").inc()

    def budget(self, router: str, stats) -> None:
        """Set the gauges of one controller from its :class:`~routekit.control.budget.BudgetStats`."""
        g = self._budget
        g["threshold"].labels(router).set(stats.threshold)
        g["target_share"].labels(router).set(stats.target_strong_share)
        g["feedback"].labels(router).set(stats.feedback)
        if stats.window_strong_share is not None:
            g["window_share"].labels(router).set(stats.window_strong_share)

    def router_latency(self, router: str, seconds: float) -> None:
        self._latency.labels(router).observe(seconds)

    def usage(self, model: str, usage: Mapping[str, Any] | None,
              prices: Mapping[str, Mapping[str, float]]) -> tuple[int, int, float | None]:
        pin, pout, usd = usage_cost(usage, prices.get(model))
        if usage:
            self._tokens.labels(model, "prompt").inc(pin)
            self._tokens.labels(model, "completion").inc(pout)
            if usd is not None:
                self._cost.labels(model).inc(usd)
        return pin, pout, usd

    def render(self) -> bytes:
        return generate_latest(self.registry)
