"""The routing server's Prometheus metrics, kept with ``prometheus_client`` in a registry per app.

Metric names (unchanged from the hand-written exporter they replace):

``routekit_requests_total{endpoint, route, status}``
``routekit_router_latency_seconds{router}``              histogram of the time to score and route
``routekit_upstream_errors_total{upstream, kind}``       kind: timeout, connection, http_<code>, not_json, other
``routekit_fallbacks_total{from_upstream, to_upstream, reason}``
``routekit_tokens_total{model, kind}``                   kind: prompt, completion (the upstream's usage)
``routekit_cost_usd_total{model}``                       usage x configured prices
"""

from __future__ import annotations

from typing import Any, Mapping

from routekit.errors import require

require("prometheus_client", "server", "the routing server's /metrics")

from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,  # noqa: E402
    CollectorRegistry,
    Counter,
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

    def request(self, endpoint: str, route: str, status: int) -> None:
        self._requests.labels(endpoint, route, str(status)).inc()

    def upstream_error(self, upstream: str, kind: str) -> None:
        self._upstream_errors.labels(upstream, kind).inc()

    def fallback(self, from_upstream: str, to_upstream: str, reason: str) -> None:
        self._fallbacks.labels(from_upstream, to_upstream, reason).inc()

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
