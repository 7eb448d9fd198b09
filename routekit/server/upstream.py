"""The routing server's upstream side: one ``openai.AsyncOpenAI`` client per configured upstream,
the call with its fallback, the SSE relay, and the mapping of upstream failures to HTTP errors."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Callable, Mapping

from routekit.errors import RoutekitError, UnknownModelError, require
from routekit.server.wire import Upstream

require("openai", "server", "the routing server")

import openai  # noqa: E402
from fastapi.responses import JSONResponse, StreamingResponse  # noqa: E402

__all__ = ["HTTPError", "Upstreams", "headers_for"]


class HTTPError(Exception):
    """An OpenAI-shaped error reply; ``attempts`` (upstream calls that failed, when a fallback was
    tried) goes into the error object beside ``message``."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                 attempts: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type_, code
        self.attempts = attempts

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"message": self.message, "type": self.type, "param": None, "code": self.code}
        if self.attempts:
            err["attempts"] = self.attempts
        return {"error": err}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


#: characters of an upstream's own error text kept in an attempt record
EXCERPT_CHARS = 200


def _excerpt(exc: Exception) -> str:
    """The upstream's own words for a failure: its error message for an HTTP status, else the
    exception's text (cut to :data:`EXCERPT_CHARS`)."""
    text = ""
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        text = body.get("message") if isinstance(body.get("message"), str) else exc.message
    text = " ".join(str(text or exc or type(exc).__name__).split())
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS - 1] + "…"


def attempt_record(side: str, name: str, up: Upstream, kind: str, status: int | None, exc: Exception) -> dict:
    """One failed upstream call, as the error body and the decision log keep it."""
    return {"side": side, "upstream": name, "model": up.model, "status": status, "error": kind,
            "exception": type(exc).__name__, "message": _excerpt(exc)}


def both_failed(first: HTTPError, first_kind: str, last: HTTPError, attempts: list[dict]) -> HTTPError:
    """The error for a call whose fallback failed too: both causes in the message and in
    ``attempts``; the status follows the first failure's kind (504 for a timeout, else 502)."""
    return HTTPError(504 if first_kind == "timeout" else 502,
                     f"{first.message}; then the fallback {last.message}", "upstream_error", first.code,
                     attempts=attempts)


class NotJSONError(Exception):
    """The upstream answered 2xx with a body that is not a JSON chat completion."""


def headers_for(i: Mapping[str, Any]) -> dict[str, str]:
    out = {"x-routekit-route": str(i["route"]), "x-routekit-model": i["model"], "x-routekit-router": i["router"],
           "x-routekit-upstream": i["upstream"], "x-routekit-win-rate": f"{i['win_rate']:.6f}"}
    if i.get("threshold") is not None:
        out["x-routekit-threshold"] = f"{i['threshold']:.6f}"
    if i.get("fallback"):
        out["x-routekit-fallback"] = f"{i['fallback']['from']}->{i['fallback']['to']}"
    return out


class Upstreams:
    """Clients for every configured upstream (made on first use, so the app also works when
    mounted inside another app), and the chat call with fallback."""

    def __init__(self, cfg, metrics, clients: Mapping[str, Any] | None = None):
        self.cfg, self.metrics = cfg, metrics
        self.ups: dict[str, Upstream] = cfg.all_upstreams()
        self._clients: dict[str, Any] = dict(clients or {})
        self._own: list[Any] = []

    def configured(self, name: str) -> bool:
        return name in self.ups

    def client(self, name: str):
        if name not in self._clients:
            up = self.ups[name]
            retries = up.max_retries if up.max_retries is not None else self.cfg.upstream_max_retries
            c = openai.AsyncOpenAI(base_url=up.base_url, api_key=up.key(), timeout=self.cfg.upstream_timeout,
                                   max_retries=retries)
            self._clients[name] = c
            self._own.append(c)
        return self._clients[name]

    async def close(self) -> None:
        for name in [k for k, c in self._clients.items() if any(c is o for o in self._own)]:
            del self._clients[name]
        while self._own:
            await self._own.pop().close()

    # -- N-model selection ----------------------------------------------------------------------
    def router_model(self, name: str, router=None) -> str:
        up = self.ups[name]
        return up.router_model or up.model

    def candidates(self, router) -> list[str]:
        """Configured upstreams whose model is in ``router``'s model table."""
        out = []
        for name in self.ups:
            try:
                router.canonical(self.router_model(name))
            except UnknownModelError:
                continue
            out.append(name)
        return out

    def blended_price(self, name: str) -> float | None:
        """Mean of the input and output USD per million tokens (None without a price)."""
        if self.cfg.willingness_to_pay is None:
            return None
        p = self.cfg.prices.get(self.ups[name].model)
        if p is None:
            raise RoutekitError(f"willingness_to_pay is set but upstream {name!r} (model {self.ups[name].model!r}) "
                                "has no entry in prices")
        return (p.get("input", 0.0) + p.get("output", 0.0)) / 2

    # -- the call ---------------------------------------------------------------------------------
    def error(self, exc: Exception, name: str, up: Upstream) -> tuple[HTTPError, str, bool, int | None]:
        """(HTTP error for the client, metric kind, may fall back, upstream status)."""
        where = f"upstream {name!r} (model {up.model!r}{', ' + up.base_url if up.base_url else ''})"
        if isinstance(exc, openai.APITimeoutError):
            return HTTPError(504, f"{where} timed out", "upstream_error", "upstream_timeout"), "timeout", True, None
        if isinstance(exc, openai.APIConnectionError):
            return (HTTPError(502, f"{where} is unreachable: {exc}", "upstream_error", "upstream_unreachable"),
                    "connection", True, None)
        if isinstance(exc, openai.APIStatusError):
            body = exc.body if isinstance(exc.body, dict) else {}
            detail = body.get("message") if isinstance(body.get("message"), str) else exc.message
            status = exc.status_code if exc.status_code in (400, 404, 409, 413, 422, 429) else 502
            return (HTTPError(status, f"{where} returned HTTP {exc.status_code}: {detail}", "upstream_error",
                              "upstream_error"), f"http_{exc.status_code}", exc.status_code >= 500, exc.status_code)
        if isinstance(exc, (NotJSONError, openai.APIResponseValidationError, json.JSONDecodeError)):
            return (HTTPError(502, f"{where} answered with a body that is not a JSON chat completion",
                              "upstream_error", "upstream_not_json"), "not_json", True, 200)
        return (HTTPError(502, f"{where} failed: {type(exc).__name__}: {exc}", "upstream_error", "upstream_error"),
                "other", False, None)

    async def answer(self, order: list[str], messages: Any, stream: bool, extra: dict | None,
                     info: dict[str, Any], rec: dict[str, Any], finish: Callable[[dict], None]):
        """Call ``order[0]``; on a failure that allows it, ``order[1]`` once.  Fills ``rec``."""
        if not self.configured(order[0]):
            side = order[0]
            raise HTTPError(503, f"no upstream is configured for the {side} model (start the server with "
                                 f"--{side}-model/--{side}-base-url)", "server_error", "upstream_not_configured")
        fallback, t0, attempts, first = None, time.perf_counter(), [], None
        for i, name in enumerate(order):
            up, head, it = self.ups[name], None, None
            try:
                result = await self.client(name).chat.completions.create(model=up.model, messages=messages,
                                                                         stream=stream, extra_body=extra)
                if stream:
                    it = result.__aiter__()
                    try:
                        head = await it.__anext__()
                    except StopAsyncIteration:
                        head = None
                elif not hasattr(result, "model_dump"):
                    raise NotJSONError()
            except Exception as exc:  # noqa: BLE001
                err, kind, may_fall_back, status = self.error(exc, name, up)
                self.metrics.upstream_error(name, kind)
                attempts.append(attempt_record("fallback" if i else "chosen", name, up, kind, status, exc))
                rec.update(upstream_status=status, attempts=attempts)
                nxt = order[i + 1] if i + 1 < len(order) else None
                if may_fall_back and nxt is not None and self.configured(nxt):
                    self.metrics.fallback(name, nxt, kind)
                    fallback = {"from": name, "to": nxt, "reason": kind}
                    first = (err, kind)
                    continue
                rec.update(upstream=name, model=up.model, fallback=fallback,
                           upstream_ms=round((time.perf_counter() - t0) * 1e3, 3))
                if first is not None:  # the fallback failed too: keep both causes
                    err = both_failed(first[0], first[1], err, attempts)
                raise err from None
            break
        rec.update(upstream=name, model=up.model, fallback=fallback, upstream_status=200)
        i = {**info, "model": up.model, "upstream": name, "fallback": fallback}
        if not stream:
            payload = result.model_dump(mode="json", exclude_unset=True)
            rec["upstream_ms"] = round((time.perf_counter() - t0) * 1e3, 3)
            self._usage(rec, up, payload.get("usage"))
            payload["routekit"] = i
            rec["status"] = 200
            return JSONResponse(payload, headers=headers_for(i))
        rec["_streaming"], rec["status"] = True, 200
        return StreamingResponse(self._sse(head, it, result, i, name, up, rec, finish, t0),
                                 media_type="text/event-stream", headers=headers_for(i))

    def _usage(self, rec: dict, up: Upstream, usage: Mapping[str, Any] | None) -> None:
        if not usage:  # e.g. a stream without stream_options.include_usage: tokens unknown
            rec.update(prompt_tokens=None, completion_tokens=None, cost_usd=None, strong_cost_usd=None)
            return
        pin, pout, usd = self.metrics.usage(up.model, usage, self.cfg.prices)
        strong = self.cfg.strong
        sprice = self.cfg.prices.get(strong.model) if strong else None
        rec.update(prompt_tokens=pin, completion_tokens=pout,
                   cost_usd=None if usd is None else round(usd, 9),
                   strong_cost_usd=None if sprice is None else round((pin * sprice.get("input", 0.0) +
                                                                      pout * sprice.get("output", 0.0)) / 1e6, 9))

    async def _sse(self, head, it, stream, info, name, up, rec, finish, t0):
        usage = None
        try:
            first = True
            while head is not None:
                data = head.model_dump(mode="json", exclude_unset=True)
                if first:
                    data["routekit"] = info
                    first = False
                usage = data.get("usage") or usage
                yield f"data: {json.dumps(data, separators=(',', ':'))}\n\n"
                try:
                    head = await it.__anext__()
                except StopAsyncIteration:
                    head = None
        except asyncio.CancelledError:  # the client went away
            rec["error"] = "client disconnected"
            await stream.close()
            raise
        except Exception as exc:  # noqa: BLE001 - headers are sent: report in-band, then end the stream
            err, kind, _, status = self.error(exc, name, up)
            self.metrics.upstream_error(name, kind)
            attempts = rec.setdefault("attempts", [])
            attempts.append(attempt_record("fallback" if attempts else "chosen", name, up, kind, status, exc))
            event = {"message": err.message, "type": err.type, "code": err.code}
            if len(attempts) > 1:  # this stream was already a fallback: name the first cause too
                first = attempts[0]
                event["message"] = (f"{err.message} (this stream was the fallback after upstream "
                                    f"{first['upstream']!r} failed: {first['error']}"
                                    f"{'' if first['status'] is None else ' ' + str(first['status'])}: "
                                    f"{first['message']})")
                event["attempts"] = attempts
            rec.update(error=event["message"][:300], upstream_status=status)
            yield f"data: {json.dumps({'error': event})}\n\n"
        finally:
            rec["upstream_ms"] = round((time.perf_counter() - t0) * 1e3, 3)
            self._usage(rec, up, usage)
            finish(rec)
        yield "data: [DONE]\n\n"
