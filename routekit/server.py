"""OpenAI-compatible routing server (the ``routekit[server]`` extra).

``create_app(config)`` builds a FastAPI app; ``serve(config)`` runs it with uvicorn.  Endpoints:

``POST /v1/chat/completions``
    OpenAI chat schema, streaming (SSE) or not.  ``model`` is ``router-<name>-<threshold>``,
    ``router-<name>-p<strong%>``, ``router-<name>`` or a configured alias (see :mod:`routekit.client`
    for the convention and for which turns are scored).  The request is forwarded, with ``model``
    replaced by the chosen upstream's model and every other field passed through, to that upstream
    with the official ``openai`` client.  The reply is the upstream's, plus a ``routekit`` field
    (``route``, ``model``, ``win_rate``, ``threshold``, ``router``; in the first chunk when
    streaming) and ``x-routekit-*`` headers carrying the same values.
``POST /v1/route``
    Route only: ``{"prompt": str | "messages": [...], "router"?, "threshold"? | "strong_fraction"?}``
    → ``{"route", "model", "win_rate", "threshold", "router", "strong_model", "weak_model"}``.
    ``model`` is the configured upstream model name when one is configured, else the artifact's.
``GET /v1/models``, ``GET /health``, ``GET /metrics`` (Prometheus text format).

Errors use OpenAI's shape ``{"error": {"message", "type", "code"}}``: 400 malformed JSON or
fields, 401 missing/wrong bearer token (when ``api_key`` is set), 404 unknown router/model,
413 body larger than ``max_body_bytes``, 502 upstream failed or unreachable (with its message),
503 no upstream configured, 504 upstream timed out.  ``/health`` and ``/metrics`` need no token.

Scoring runs in a worker thread, so a slow client or a long prompt never blocks the event loop;
routers are loaded once per configured name and shared.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from .client import (DEFAULT_CONTEXT_CHARS, RouterCache, RouteSpec, UnknownRouterError, Upstream, parse_model,
                     prompt_from_messages)
from .errors import BadInputError, RoutekitError, require
from .router import as_prompt

require("fastapi", "server", "the routing server")
require("openai", "server", "the routing server")

import openai  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402

__all__ = ["ServerConfig", "Upstream", "create_app", "serve", "Metrics"]


# -- configuration ------------------------------------------------------------------------------
@dataclass
class ServerConfig:
    """Everything the server needs.  Build it in code, or read a TOML/JSON file with :meth:`from_file`.

    ``routers`` maps the router names clients may use to a shipped name or artifact folder; the
    first is the default for ``/v1/route``.  ``prices`` maps an upstream model name to USD per
    million ``input``/``output`` tokens, used for the cost counter in ``/metrics``.
    """

    routers: dict[str, str] = field(default_factory=lambda: {"default": "default"})
    strong: Upstream | None = None
    weak: Upstream | None = None
    aliases: dict[str, str] = field(default_factory=dict)
    api_key: str | None = None  #: bearer token clients must send (None: no auth)
    max_body_bytes: int = 1 << 20
    upstream_timeout: float = 60.0
    upstream_max_retries: int = 0
    turns: str = "user"  #: "user" or "last" (see routekit.client.prompt_from_messages)
    context_chars: int = DEFAULT_CONTEXT_CHARS
    threads: int | None = None  #: onnxruntime intra-op threads per router
    prices: dict[str, dict[str, float]] = field(default_factory=dict)
    preload: bool = True  #: load the default router at startup (fail fast on a bad artifact)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ServerConfig":
        data = dict(data)
        routers = data.pop("routers", None)
        if isinstance(routers, (list, tuple)):
            routers = {str(r): str(r) for r in routers}
        kw: dict[str, Any] = {}
        if routers:
            kw["routers"] = {str(k): str(v) for k, v in routers.items()}
        for side in ("strong", "weak"):
            up = data.pop(side, None)
            if up:
                if isinstance(up, str):
                    up = {"model": up}
                kw[side] = Upstream(**up)
        env = data.pop("api_key_env", None)
        if env and not data.get("api_key"):
            kw["api_key"] = os.environ.get(env) or None
            if kw["api_key"] is None:
                raise BadInputError(f"api_key_env names ${env}, which is not set")
        names = set(cls.__dataclass_fields__)
        unknown = set(data) - names
        if unknown:
            raise BadInputError(f"unknown server config keys: {', '.join(sorted(unknown))}")
        kw.update(data)
        return cls(**kw)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "ServerConfig":
        p = Path(path)
        text = p.read_text(encoding="utf-8")
        if p.suffix == ".json":
            data = json.loads(text)
        else:
            try:
                import tomllib
            except ImportError:  # Python 3.10
                tomllib = require("tomli", "server", "TOML config files")
            data = tomllib.loads(text)
        return cls.from_dict(data)


# -- metrics ------------------------------------------------------------------------------------
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(d: Mapping[str, str]) -> str:
    def esc(v: str) -> str:
        return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in d.items()) + "}" if d else ""


class Metrics:
    """Counters and a histogram, rendered in the Prometheus text exposition format (v0.0.4)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple, int] = {}  # (endpoint, route, status) -> n
        self.upstream_errors: dict[tuple, int] = {}  # (upstream, kind) -> n
        self.tokens: dict[tuple, int] = {}  # (model, kind) -> n
        self.cost: dict[str, float] = {}  # model -> USD
        self.latency: dict[str, list] = {}  # router -> [bucket counts..., sum, count]

    def request(self, endpoint: str, route: str, status: int) -> None:
        with self._lock:
            k = (endpoint, route, str(status))
            self.requests[k] = self.requests.get(k, 0) + 1

    def upstream_error(self, upstream: str, kind: str) -> None:
        with self._lock:
            k = (upstream, kind)
            self.upstream_errors[k] = self.upstream_errors.get(k, 0) + 1

    def router_latency(self, router: str, seconds: float) -> None:
        with self._lock:
            h = self.latency.setdefault(router, [0] * len(_BUCKETS) + [0.0, 0])
            for i, b in enumerate(_BUCKETS):
                if seconds <= b:
                    h[i] += 1
            h[-2] += seconds
            h[-1] += 1

    def usage(self, model: str, usage: Mapping[str, Any] | None, prices: Mapping[str, Mapping[str, float]]) -> None:
        if not usage:
            return
        pin = int(usage.get("prompt_tokens") or 0)
        pout = int(usage.get("completion_tokens") or 0)
        price = prices.get(model) or {}
        usd = (pin * float(price.get("input", 0.0)) + pout * float(price.get("output", 0.0))) / 1e6
        with self._lock:
            for kind, n in (("prompt", pin), ("completion", pout)):
                self.tokens[(model, kind)] = self.tokens.get((model, kind), 0) + n
            if price:
                self.cost[model] = self.cost.get(model, 0.0) + usd

    def render(self) -> str:
        out: list[str] = []
        with self._lock:
            out += ["# HELP routekit_requests_total Requests by endpoint, routing decision and HTTP status.",
                    "# TYPE routekit_requests_total counter"]
            for (ep, route, status), n in sorted(self.requests.items()):
                out.append(f"routekit_requests_total{_labels({'endpoint': ep, 'route': route, 'status': status})} {n}")
            out += ["# HELP routekit_router_latency_seconds Time to score and route one request.",
                    "# TYPE routekit_router_latency_seconds histogram"]
            for router, h in sorted(self.latency.items()):
                for i, b in enumerate(_BUCKETS):
                    out.append(f"routekit_router_latency_seconds_bucket{_labels({'router': router, 'le': repr(b)})} {h[i]}")
                out.append(f"routekit_router_latency_seconds_bucket{_labels({'router': router, 'le': '+Inf'})} {h[-1]}")
                out.append(f"routekit_router_latency_seconds_sum{_labels({'router': router})} {h[-2]!r}")
                out.append(f"routekit_router_latency_seconds_count{_labels({'router': router})} {h[-1]}")
            out += ["# HELP routekit_upstream_errors_total Failed upstream calls by upstream and kind.",
                    "# TYPE routekit_upstream_errors_total counter"]
            for (up, kind), n in sorted(self.upstream_errors.items()):
                out.append(f"routekit_upstream_errors_total{_labels({'upstream': up, 'kind': kind})} {n}")
            out += ["# HELP routekit_tokens_total Tokens reported by upstreams (usage), by model and kind.",
                    "# TYPE routekit_tokens_total counter"]
            for (model, kind), n in sorted(self.tokens.items()):
                out.append(f"routekit_tokens_total{_labels({'model': model, 'kind': kind})} {n}")
            out += ["# HELP routekit_cost_usd_total Upstream cost from usage x configured prices.",
                    "# TYPE routekit_cost_usd_total counter"]
            for model, usd in sorted(self.cost.items()):
                out.append(f"routekit_cost_usd_total{_labels({'model': model})} {usd!r}")
        return "\n".join(out) + "\n"


# -- errors -------------------------------------------------------------------------------------
class HTTPError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type_, code

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"message": self.message, "type": self.type, "param": None,
                                       "code": self.code}}, status_code=self.status)


def _as_http(exc: Exception) -> HTTPError:
    if isinstance(exc, HTTPError):
        return exc
    if isinstance(exc, UnknownRouterError):
        return HTTPError(404, str(exc), code="model_not_found")
    if isinstance(exc, BadInputError):
        return HTTPError(400, str(exc))
    if isinstance(exc, RoutekitError):  # a broken artifact: the server's fault
        return HTTPError(500, str(exc), "server_error")
    logging.getLogger("routekit.server").error("unexpected error", exc_info=exc)
    return HTTPError(500, f"internal error: {type(exc).__name__}", "server_error")


def _upstream_error(exc: Exception, side: str, up: Upstream, metrics: Metrics) -> HTTPError:
    where = f"upstream {side!r} (model {up.model!r}{', ' + up.base_url if up.base_url else ''})"
    if isinstance(exc, openai.APITimeoutError):
        metrics.upstream_error(side, "timeout")
        return HTTPError(504, f"{where} timed out", "upstream_error", "upstream_timeout")
    if isinstance(exc, openai.APIConnectionError):
        metrics.upstream_error(side, "connection")
        return HTTPError(502, f"{where} is unreachable: {exc}", "upstream_error", "upstream_unreachable")
    if isinstance(exc, openai.APIStatusError):
        metrics.upstream_error(side, f"http_{exc.status_code}")
        body = exc.body if isinstance(exc.body, dict) else {}
        detail = body.get("message") if isinstance(body.get("message"), str) else exc.message
        status = exc.status_code if exc.status_code in (400, 404, 409, 413, 422, 429) else 502
        return HTTPError(status, f"{where} returned HTTP {exc.status_code}: {detail}", "upstream_error",
                         "upstream_error")
    metrics.upstream_error(side, "other")
    return HTTPError(502, f"{where} failed: {type(exc).__name__}: {exc}", "upstream_error", "upstream_error")


async def _read_json(request: Request, limit: int) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise HTTPError(413, f"request body is larger than {limit} bytes", code="request_too_large")
        except ValueError:
            raise HTTPError(400, "invalid Content-Length header") from None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"request body is larger than {limit} bytes", code="request_too_large")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except (UnicodeDecodeError, ValueError) as exc:
        raise HTTPError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise HTTPError(400, "request body must be a JSON object", code="invalid_json")
    return body


# -- the app ------------------------------------------------------------------------------------
def create_app(config: ServerConfig | None = None, *, upstream_clients: Mapping[str, Any] | None = None) -> FastAPI:
    """Build the FastAPI app.  ``upstream_clients`` may pass ready ``openai.AsyncOpenAI`` objects
    for ``"strong"``/``"weak"`` (custom HTTP settings); otherwise they are made from the config."""
    cfg = config or ServerConfig()
    if cfg.turns not in ("user", "last"):
        raise BadInputError(f"turns must be 'user' or 'last', got {cfg.turns!r}")
    cache = RouterCache(cfg.routers, threads=cfg.threads)
    metrics = Metrics()
    ups = {"strong": cfg.strong, "weak": cfg.weak}
    clients: dict[str, Any] = dict(upstream_clients or {})
    own_clients: list[Any] = []
    started = time.time()

    def client_for(side: str):
        # made on first use (not in lifespan) so the app also works when mounted inside another app
        if side not in clients and ups[side] is not None:
            up = ups[side]
            c = openai.AsyncOpenAI(base_url=up.base_url, api_key=up.key(), timeout=cfg.upstream_timeout,
                                   max_retries=cfg.upstream_max_retries)
            clients[side] = c
            own_clients.append(c)
        return clients.get(side)

    async def lifespan(app):
        if cfg.preload:
            await run_in_threadpool(cache.get)
        yield
        for side in [k for k, c in clients.items() if any(c is o for o in own_clients)]:
            del clients[side]
        while own_clients:
            await own_clients.pop().close()

    app = FastAPI(title="routekit", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.config, app.state.routers, app.state.metrics = cfg, cache, metrics

    def check_auth(request: Request) -> None:
        if not cfg.api_key:
            return
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), cfg.api_key.encode()):
            raise HTTPError(401, "missing or invalid bearer token (Authorization: Bearer <key>)",
                            code="invalid_api_key")

    async def decide(spec: RouteSpec, text: str):
        def work():
            router = cache.get(spec.router)
            t0 = time.perf_counter()
            d = router.route(text, **spec.as_kwargs())
            metrics.router_latency(router.name, time.perf_counter() - t0)
            return d

        return await run_in_threadpool(work)

    def info(d) -> dict[str, Any]:
        up = ups["strong" if d.is_strong else "weak"]
        return {**d.to_dict(), "model": up.model if up else d.model}

    def headers(i: Mapping[str, Any]) -> dict[str, str]:
        return {"x-routekit-route": i["route"], "x-routekit-model": i["model"],
                "x-routekit-win-rate": f"{i['win_rate']:.6f}", "x-routekit-threshold": f"{i['threshold']:.6f}",
                "x-routekit-router": i["router"]}

    @app.get("/health")
    async def health():
        return {"status": "ok", "routers": cache.names, "loaded": cache.loaded(),
                "upstreams": {k: (v.model if v else None) for k, v in ups.items()},
                "uptime_s": round(time.time() - started, 3)}

    @app.get("/metrics")
    async def prom():
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models")
    async def models(request: Request):
        try:
            check_auth(request)
        except HTTPError as e:
            return e.response()
        ids = [f"router-{n}" for n in cache.names] + list(cfg.aliases)
        return {"object": "list",
                "data": [{"id": i, "object": "model", "created": int(started), "owned_by": "routekit"} for i in ids]}

    async def guarded(endpoint: str, request: Request, handle):
        """Auth, JSON body, OpenAI-style errors and the request counter around ``handle(body, seen)``
        (``seen["route"]``: the decision, once made)."""
        seen, status = {"route": "none"}, 200
        try:
            check_auth(request)
            return await handle(await _read_json(request, cfg.max_body_bytes), seen)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an OpenAI-style error
            err = _as_http(exc)
            status = err.status
            return err.response()
        finally:
            metrics.request(endpoint, seen["route"], status)

    async def route_only(body, seen):
        if ("prompt" in body) == ("messages" in body):
            raise BadInputError("pass exactly one of 'prompt' or 'messages'")
        if "prompt" in body:
            text = as_prompt(body["prompt"])
        else:
            text = prompt_from_messages(body["messages"], turns=cfg.turns, context_chars=cfg.context_chars)
        name = body.get("router")
        if name is not None and not isinstance(name, str):
            raise BadInputError("'router' must be a string")
        spec = RouteSpec(name or cache.default, body.get("threshold"), body.get("strong_fraction"))
        d = await decide(spec, text)
        seen["route"] = d.route
        return JSONResponse(info(d))

    async def chat(body, seen):
        spec = parse_model(body.get("model"), cfg.aliases)
        text = prompt_from_messages(body.get("messages"), turns=cfg.turns, context_chars=cfg.context_chars)
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise BadInputError("'stream' must be true or false")
        d = await decide(spec, text)
        seen["route"] = d.route
        up, client = ups[d.route], client_for(d.route)
        if up is None or client is None:
            raise HTTPError(503, f"no upstream is configured for the {d.route} model "
                                 f"(start the server with --{d.route}-model/--{d.route}-base-url)",
                            "server_error", "upstream_not_configured")
        i = info(d)
        extra = {k: v for k, v in body.items() if k not in ("model", "messages", "stream")}
        try:
            result = await client.chat.completions.create(model=up.model, messages=body["messages"],
                                                          stream=stream, extra_body=extra or None)
        except Exception as exc:  # noqa: BLE001
            raise _upstream_error(exc, d.route, up, metrics) from None
        if not stream:
            payload = result.model_dump(mode="json", exclude_unset=True)
            metrics.usage(up.model, payload.get("usage"), cfg.prices)
            payload["routekit"] = i
            return JSONResponse(payload, headers=headers(i))
        return StreamingResponse(_sse(result, i, d.route, up, metrics, cfg.prices),
                                 media_type="text/event-stream", headers=headers(i))

    @app.post("/v1/route")
    async def route_endpoint(request: Request):
        return await guarded("/v1/route", request, route_only)

    @app.post("/v1/chat/completions")
    async def chat_endpoint(request: Request):
        return await guarded("/v1/chat/completions", request, chat)

    return app


async def _sse(stream, info: dict[str, Any], side: str, up: Upstream, metrics: Metrics, prices):
    first = True
    try:
        async for chunk in stream:
            data = chunk.model_dump(mode="json", exclude_unset=True)
            if first:
                data["routekit"] = info
                first = False
            if data.get("usage"):
                metrics.usage(up.model, data["usage"], prices)
            yield f"data: {json.dumps(data, separators=(',', ':'))}\n\n"
    except asyncio.CancelledError:  # the client went away
        await stream.close()
        raise
    except Exception as exc:  # noqa: BLE001 - headers are sent: report in-band, then end the stream
        err = _upstream_error(exc, side, up, metrics)
        yield f"data: {json.dumps({'error': {'message': err.message, 'type': err.type, 'code': err.code}})}\n\n"
    yield "data: [DONE]\n\n"


def _version() -> str:
    from . import __version__

    return __version__


def serve(config: ServerConfig | None = None, *, host: str = "127.0.0.1", port: int = 6060,
          log_level: str = "info") -> None:
    """Run the server with uvicorn until interrupted."""
    uvicorn = require("uvicorn", "server", "the routing server")
    uvicorn.run(create_app(config), host=host, port=port, log_level=log_level)


def with_overrides(config: ServerConfig, **changes: Any) -> ServerConfig:
    """A copy of ``config`` with the non-None ``changes`` applied (used by the CLI)."""
    return replace(config, **{k: v for k, v in changes.items() if v is not None})
