"""OpenAI-compatible routing server (the ``routekit[server]`` extra).

``create_app(config)`` builds a FastAPI app; ``serve(config)`` runs it with uvicorn.  Endpoints:

``POST /v1/chat/completions``
    OpenAI chat schema, streaming (SSE) or not.  ``model`` is ``router-<name>-<threshold>``,
    ``router-<name>-p<strong%>``, ``router-<name>``, ``router-<name>-auto`` or a configured alias
    (see :mod:`routekit.server.wire`).  The request is forwarded, with ``model`` replaced by the
    chosen upstream's model and every other field passed through, to that upstream with the
    official ``openai`` client.  The reply is the upstream's, plus a ``routekit`` field (``route``,
    ``model``, ``upstream``, ``win_rate``, ``threshold``, ``router``, ``fallback``; in the first
    chunk when streaming) and ``x-routekit-*`` headers carrying the same values.
``POST /v1/route``
    Route only: ``{"prompt": str | "messages": [...], "router"?, "threshold"? | "strong_fraction"?}``
    → ``{"route", "model", "win_rate", "threshold", "router", "strong_model", "weak_model"}``.
``GET /v1/models``, ``GET /health``, ``GET /metrics`` (Prometheus, via ``prometheus_client``).

Fallback (config ``fallback``, default on): when the chosen upstream is unreachable, times out or
answers 5xx or a body that is not JSON, the request goes once to the other side (for ``-auto``:
the next-ranked upstream); the reply's ``routekit.fallback`` is then ``{from, to, reason}``, the
``x-routekit-fallback`` header says ``<from>-><to>`` and ``routekit_fallbacks_total`` counts it.
A stream falls back only before its first chunk has been sent.  ``max_retries`` (per upstream, or
``upstream_max_retries``) are the ``openai`` SDK's own retries, made before any fallback.  When the
fallback fails too, the error keeps both causes: its message names both, its ``attempts`` list
holds one ``{side, upstream, model, status, error, exception, message}`` per failed call (the
decision log records the same list), and the HTTP status follows the *first* failure: 504 when the
chosen upstream timed out, 502 otherwise.  A fallback stream that breaks after its first chunk
reports the same in its in-band error event.

Errors use OpenAI's shape ``{"error": {"message", "type", "code"}}``: 400 malformed JSON, JSON
nested deeper than ``max_json_depth``, numbers out of range, bad fields; 401 missing/wrong bearer
token; 404 unknown router/model; 413 body larger than ``max_body_bytes``; 502 upstream failed,
unreachable or not JSON; 503 no upstream configured; 504 upstream timed out (for a failed
fallback: the chosen upstream timed out).

Scoring runs in a worker thread, so a slow client or a long prompt never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from typing import Any, Mapping

from routekit.errors import BadInputError, RoutekitError, require

require("fastapi", "server", "the routing server")
require("openai", "server", "the routing server")

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse, Response  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402
from starlette.requests import ClientDisconnect  # noqa: E402

from routekit._validate import as_prompt  # noqa: E402
from routekit.loading import RouterCache  # noqa: E402
from routekit.select import select as select_model  # noqa: E402
from routekit.server.config import ServerConfig, with_overrides  # noqa: E402
from routekit.server.decision_log import DecisionLog  # noqa: E402
from routekit.server.guard import loads_strict  # noqa: E402
from routekit.server.live import LiveControl  # noqa: E402
from routekit.server.metrics import CONTENT_TYPE_LATEST, Metrics  # noqa: E402
from routekit.server.upstream import HTTPError, Upstreams  # noqa: E402
from routekit.server.wire import (  # noqa: E402
    RouteSpec,
    UnknownRouterError,
    Upstream,  # noqa: E402
    parse_model,
    prompt_from_messages,
)

__all__ = ["ServerConfig", "Upstream", "create_app", "serve", "Metrics", "uvicorn_config", "with_overrides"]
log = logging.getLogger("routekit.server")


def _as_http(exc: Exception) -> HTTPError:
    if isinstance(exc, HTTPError):
        return exc
    if isinstance(exc, UnknownRouterError):
        return HTTPError(404, str(exc), code="model_not_found")
    if isinstance(exc, BadInputError):
        return HTTPError(400, str(exc))
    if isinstance(exc, RoutekitError):  # a broken artifact: the server's fault
        return HTTPError(500, str(exc), "server_error")
    log.error("unexpected error", exc_info=exc)
    return HTTPError(500, f"internal error: {type(exc).__name__}", "server_error")


async def _read_json(request: Request, limit: int, depth: int) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit() or len(declared) > 18:
            raise HTTPError(400, "invalid Content-Length header")
        if int(declared) > limit:
            raise HTTPError(413, f"request body is larger than {limit} bytes", code="request_too_large")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPError(413, f"request body is larger than {limit} bytes", code="request_too_large")
            chunks.append(chunk)
    except ClientDisconnect:
        raise HTTPError(400, "the client closed the connection before sending the whole body") from None
    try:
        body = loads_strict(b"".join(chunks), max_depth=depth)
    except (UnicodeDecodeError, ValueError) as exc:
        raise HTTPError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise HTTPError(400, "request body must be a JSON object", code="invalid_json")
    return body


def create_app(config: ServerConfig | None = None, *, upstream_clients: Mapping[str, Any] | None = None) -> FastAPI:
    """Build the FastAPI app.  ``upstream_clients`` may pass ready ``openai.AsyncOpenAI`` objects
    by upstream name (``"strong"``, ``"weak"``, or a key of ``upstreams``); otherwise they are
    made from the config."""
    cfg = config or ServerConfig()
    cache = RouterCache(cfg.routers, threads=cfg.threads)
    metrics = Metrics()
    ups = Upstreams(cfg, metrics, upstream_clients)
    dlog = DecisionLog(cfg.decision_log, log_prompts=cfg.log_prompts,
                       prompt_chars=cfg.log_prompt_chars) if cfg.decision_log else None
    live = LiveControl(cfg, threads=cfg.threads)
    started = time.time()

    async def lifespan(app):
        if cfg.preload:
            await run_in_threadpool(lambda: live.attach(cache.default, cache.get()))
            if live.shadow_cache is not None:
                await run_in_threadpool(live.shadow_router)
        yield
        try:
            await ups.close()
        finally:  # the budget state is saved and the log closed even when an upstream client fails to close
            try:
                live.close()
            finally:
                if dlog:
                    dlog.close()

    app = FastAPI(title="routekit", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.config, app.state.routers, app.state.metrics, app.state.live = cfg, cache, metrics, live

    def check_auth(request: Request) -> None:
        if not cfg.api_key:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), cfg.api_key.encode()):
            raise HTTPError(401, "missing or invalid bearer token (Authorization: Bearer <key>)",
                            code="invalid_api_key")

    async def decide(spec, text: str, rec: dict):
        def work():
            router = cache.get(spec.router)
            live.attach(spec.router, router)  # a budget controller, when configured for this router
            rec["_router_key"] = spec.router
            t0 = time.perf_counter()
            if spec.auto:
                out = auto_pick(router, text)
            else:
                out = router.route(text, **spec.as_kwargs())
                warning = router.threshold_warning(spec.threshold) if spec.threshold is not None else None
                if warning:  # also logged once by the router
                    rec["_warning"] = warning
            dt = time.perf_counter() - t0
            metrics.router_latency(router.name, dt)
            rec["route_ms"] = round(dt * 1e3, 3)
            return out

        return await run_in_threadpool(work)

    def auto_pick(router, text: str):
        names = ups.candidates(router)
        if not names:
            raise BadInputError(f"router {router.name!r}: no configured upstream is in its model table "
                                "(set router_model on the upstreams)")
        table = {ups.router_model(n): n for n in names}
        prices = ({ups.router_model(n): ups.blended_price(n) for n in names}
                  if cfg.willingness_to_pay is not None else None)
        sel = select_model(router, text, list(table), prices=prices, willingness_to_pay=cfg.willingness_to_pay)
        order = [table[m] for m in sorted(sel.quality, key=lambda m: -sel.utility[m])]
        return sel, order, {table[m]: round(q, 6) for m, q in sel.quality.items()}

    @app.get("/health")
    async def health():
        return {"status": "ok", "routers": cache.names, "loaded": cache.loaded(),
                "upstreams": {k: v.model for k, v in cfg.all_upstreams().items()},
                "uptime_s": round(time.time() - started, 3)}

    @app.get("/metrics")
    async def prom():
        for name, ctl in live.controllers().items():
            metrics.budget(name, ctl.stats())
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

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
        """Auth, JSON body, OpenAI-style errors, the request counter and the decision log around
        ``handle(body, rec)`` (``rec``: the decision-log record, filled in as the request goes)."""
        rid = request.headers.get("x-request-id", "")
        rid = rid if 0 < len(rid) <= 64 and rid.isascii() and rid.isprintable() else uuid.uuid4().hex
        rec: dict[str, Any] = {"ts": round(time.time(), 3), "request_id": rid, "endpoint": endpoint, "route": "none"}
        try:
            check_auth(request)
            response = await handle(await _read_json(request, cfg.max_body_bytes, cfg.max_json_depth), rec)
            rec.setdefault("status", response.status_code)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an OpenAI-style error
            err = _as_http(exc)
            rec["status"], rec["error"] = err.status, err.message[:300]
            response = err.response()
        response.headers["x-request-id"] = rid
        if not rec.pop("_streaming", False):
            finish(rec)
        return response

    def finish(rec: dict) -> None:
        metrics.request(rec["endpoint"], rec["route"], rec.get("status", 200))
        live.observe(rec)
        shadow = rec.get("_shadow")
        if shadow is not None and not shadow.done():  # the log line waits for the shadow's decision
            shadow.add_done_callback(lambda _: write_log(rec))
        else:
            write_log(rec)

    def write_log(rec: dict) -> None:
        shadow = rec.pop("_shadow", None)
        if shadow is not None:
            if shadow.cancelled() or shadow.exception() is not None:
                exc = None if shadow.cancelled() else shadow.exception()
                rec["shadow"] = {"router": live.shadow_name, "error": f"{type(exc).__name__}: {exc}"[:300]}
            else:
                rec["shadow"] = live.shadow_record(shadow.result(), rec)
                metrics.shadow(live.shadow_name, rec["shadow"]["route"], rec["shadow"]["agrees"])
        if dlog and rec.get("router") is not None:
            dlog.write({k: v for k, v in rec.items() if not k.startswith("_")}, rec.get("_prompt"))

    def note_decision(rec: dict, d, text: str, spec=None) -> None:
        rec.update(router=d.router, win_rate=round(d.win_rate, 6), threshold=round(d.threshold, 6),
                   threshold_source=d.threshold_source, route=d.route, _prompt=text)
        metrics.decision(d.router, d.threshold_source)
        if live.shadow_cache is not None and spec is not None:  # scored after the served decision, off its path
            rec["_shadow"] = asyncio.ensure_future(run_in_threadpool(live.shadow_decide, text, spec.strong_fraction))

    def prompt_of(body) -> str:
        if ("prompt" in body) == ("messages" in body):
            raise BadInputError("pass exactly one of 'prompt' or 'messages'")
        if "prompt" in body:
            return as_prompt(body["prompt"])
        return prompt_from_messages(body["messages"], turns=cfg.turns, context_chars=cfg.context_chars)

    async def route_only(body, rec):
        text = prompt_of(body)
        name = body.get("router")
        if name is not None and not isinstance(name, str):
            raise BadInputError("'router' must be a string")
        spec = RouteSpec(name or cache.default, body.get("threshold"), body.get("strong_fraction"))
        explain = body.get("explain", False)
        if not isinstance(explain, bool):
            raise BadInputError("'explain' must be true or false")
        d = await decide(spec, text, rec)
        note_decision(rec, d, text, spec)
        up = cfg.all_upstreams().get(d.route)
        rec["model"] = up.model if up else d.model
        extra = {"warning": rec["_warning"]} if "_warning" in rec else {}
        if explain:  # the served decision's threshold and source, not the next request's
            ex = await run_in_threadpool(lambda: cache.get(spec.router).explain(text, threshold=d.threshold))
            extra["explain"] = {**ex.to_dict(), "route": d.route, "threshold_source": d.threshold_source}
        return JSONResponse({**d.to_dict(), "model": rec["model"], **extra})

    async def chat(body, rec):
        spec = parse_model(body.get("model"), cfg.aliases)
        text = prompt_from_messages(body.get("messages"), turns=cfg.turns, context_chars=cfg.context_chars)
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise BadInputError("'stream' must be true or false")
        rec["stream"] = stream
        if spec.auto:
            sel, order, cands = await decide(spec, text, rec)
            first = order[0]
            rec.update(router=sel.router, route=first, win_rate=round(sel.quality[sel.model], 6), threshold=None,
                       candidates=cands, _prompt=text)
            info = {"route": first, "win_rate": sel.quality[sel.model], "threshold": None, "router": sel.router,
                    "candidates": cands}
            order = order[:2] if cfg.fallback else order[:1]
        else:
            d = await decide(spec, text, rec)
            note_decision(rec, d, text, spec)
            info = {k: v for k, v in d.to_dict().items() if k not in ("model", "strong_model", "weak_model")}
            if "_warning" in rec:
                info["warning"] = rec["_warning"]
            other = "weak" if d.is_strong else "strong"
            order = [d.route] + ([other] if cfg.fallback and ups.configured(other) else [])
        extra = {k: v for k, v in body.items() if k not in ("model", "messages", "stream")}
        return await ups.answer(order, body["messages"], stream, extra or None, info, rec, finish)

    @app.post("/v1/route")
    async def route_endpoint(request: Request):
        return await guarded("/v1/route", request, route_only)

    @app.post("/v1/chat/completions")
    async def chat_endpoint(request: Request):
        return await guarded("/v1/chat/completions", request, chat)

    return app


def _version() -> str:
    from routekit import __version__

    return __version__


def uvicorn_config(app, config: ServerConfig, *, host: str = "127.0.0.1", port: int = 6060,
                   log_level: str = "info", **kw: Any):
    """The ``uvicorn.Config`` routekit serves with: the guarded HTTP/1.1 protocol (request read
    timeout, connection cap), keep-alive timeout and h11's header size limit."""
    uvicorn = require("uvicorn", "server", "the routing server")
    from routekit.server.guard import fit_to_fd_limit, guarded_h11

    cap = fit_to_fd_limit(config.max_connections)
    kw.setdefault("backlog", min(2048, cap))  # one accept burst is at most the cap
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, http=guarded_h11(config.read_timeout, cap),
                          timeout_keep_alive=config.keep_alive_timeout, h11_max_incomplete_event_size=64 * 1024,
                          **kw)


def serve(config: ServerConfig | None = None, *, host: str = "127.0.0.1", port: int = 6060,
          log_level: str = "info") -> None:
    """Run the server with uvicorn until interrupted.  Routers and the decision log are opened
    before the port is bound, so a bad artifact or log path is one clear error."""
    uvicorn = require("uvicorn", "server", "the routing server")
    cfg = config or ServerConfig()
    app = create_app(cfg)
    if cfg.preload:
        app.state.routers.get()  # RoutekitError here, not a uvicorn lifespan traceback
    uvicorn.Server(uvicorn_config(app, cfg, host=host, port=port, log_level=log_level)).run()
