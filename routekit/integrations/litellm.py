"""routekit inside LiteLLM: a proxy pre-call hook and an async picker.

``RoutekitHook`` is a LiteLLM ``CustomLogger``.  On the proxy, requests whose ``model`` is a
routing name (``router-<name>-<threshold>``, ``router-<name>-p<strong%>``, ``router-<name>``, see
:mod:`routekit.server.wire`) are scored by the routekit router in a worker thread (never on the
event loop), ``data["model"]`` is set to the chosen ``strong_model``/``weak_model`` (names from
the proxy's ``model_list``, so spend is booked under the model that answered), and the decision
is recorded in ``data["metadata"]["routekit"]`` (route, model, win_rate, threshold, router) and
returned to the client as ``x-routekit-*`` response headers (route, model, router, win-rate,
threshold, requested-model; LiteLLM versions with ``async_post_call_response_headers_hook``).
Other requests pass through untouched.  Proxy ``config.yaml`` (docs/integrations.md has a tested one)::

    model_list:
      - model_name: gpt-4o
        litellm_params: {model: openai/gpt-4o, api_key: os.environ/OPENAI_API_KEY}
      - model_name: llama3
        litellm_params: {model: ollama/llama3.1, api_base: "http://127.0.0.1:11434"}
    litellm_settings:
      callbacks: routekit_hook.handler      # routekit_hook.py next to config.yaml

with ``routekit_hook.py``::

    from routekit.integrations.litellm import RoutekitHook
    handler = RoutekitHook(strong_model="gpt-4o", weak_model="llama3", routers=["mf"])

Clients then call the proxy with ``model="router-mf-p30"``.  Outside the proxy (the LiteLLM SDK,
your own gateway), ``await make_async_picker(...)(request)`` returns the full decision.

Importing this module imports ``litellm`` (``pip install 'routekit[litellm]'``); LiteLLM itself may
fetch its model cost map at import unless ``LITELLM_LOCAL_MODEL_COST_MAP=True`` is set.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Mapping, Sequence

from routekit.errors import require
from routekit.loading import RouterCache
from routekit.server.wire import (
    DEFAULT_CONTEXT_CHARS,
    RouteSpec,
    UnknownRouterError,
    parse_model,
    prompt_from_messages,
)

require("litellm", "litellm", "the LiteLLM plug-in")

from litellm.integrations.custom_logger import CustomLogger  # noqa: E402

__all__ = ["RoutekitHook", "make_async_picker", "decide", "decision_headers"]

_CHAT_CALLS = {"completion", "acompletion", "text_completion", "atext_completion", "responses", "aresponses"}


def decide(cache: RouterCache, spec: RouteSpec, messages: Any, *, strong_model: str, weak_model: str,
           turns: str = "user", context_chars: int = DEFAULT_CONTEXT_CHARS) -> dict[str, Any]:
    """The decision dict for ``messages`` under ``spec`` (blocking: call it from a worker thread)."""
    text = prompt_from_messages(messages, turns=turns, context_chars=context_chars)
    d = cache.get(spec.router).route(text, **spec.as_kwargs())
    return {"route": d.route, "model": strong_model if d.is_strong else weak_model, "win_rate": d.win_rate,
            "threshold": d.threshold, "router": d.router}


def make_async_picker(strong_model: str, weak_model: str, *, router: str = "default",
                      threshold: float | None = None, strong_fraction: float | None = None, turns: str = "user",
                      context_chars: int = DEFAULT_CONTEXT_CHARS,
                      cache: RouterCache | None = None) -> Callable[[Any], Awaitable[dict[str, Any]]]:
    """``await pick(request_or_messages)`` → ``{"route", "model", "win_rate", "threshold", "router"}``,
    scored in a worker thread."""
    cache = cache or RouterCache([router])
    spec = RouteSpec(router, threshold, strong_fraction)

    async def pick(request: Any) -> dict[str, Any]:
        messages = request.get("messages") if isinstance(request, Mapping) else request
        return await asyncio.to_thread(decide, cache, spec, messages, strong_model=strong_model,
                                       weak_model=weak_model, turns=turns, context_chars=context_chars)

    return pick


class RoutekitHook(CustomLogger):
    """LiteLLM proxy hook: routes ``model="router-..."`` requests between two ``model_list`` names."""

    def __init__(self, *, strong_model: str, weak_model: str, routers: Mapping[str, str] | Sequence[str] = ("default",),
                 aliases: Mapping[str, str] | None = None, turns: str = "user",
                 context_chars: int = DEFAULT_CONTEXT_CHARS, cache: RouterCache | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.strong_model, self.weak_model = strong_model, weak_model
        self.aliases = dict(aliases or {})
        self.turns, self.context_chars = turns, context_chars
        self.routers = cache or RouterCache(routers)

    def spec_for(self, model: Any) -> RouteSpec | None:
        """The routing spec a ``model`` name asks for, or None when it is not a routing name."""
        if not isinstance(model, str):
            return None
        try:
            spec = parse_model(model, self.aliases)
        except UnknownRouterError:
            return None
        if spec.router not in self.routers.specs:
            raise UnknownRouterError(f"router {spec.router!r} is not configured in RoutekitHook "
                                     f"(configured: {', '.join(self.routers.specs)})")
        return spec

    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict, call_type: Any) -> dict:
        kind = getattr(call_type, "value", call_type)
        spec = self.spec_for(data.get("model")) if kind in _CHAT_CALLS else None
        if spec is None or spec.auto:
            return data
        decision = await asyncio.to_thread(decide, self.routers, spec, data.get("messages"),
                                           strong_model=self.strong_model, weak_model=self.weak_model,
                                           turns=self.turns, context_chars=self.context_chars)
        decision["requested_model"] = data["model"]
        data["model"] = decision["model"]
        metadata = data.get("metadata")
        data["metadata"] = {**(metadata if isinstance(metadata, dict) else {}), "routekit": decision}
        return data

    async def async_post_call_response_headers_hook(self, data: dict, user_api_key_dict: Any, response: Any,
                                                    request_headers: Any = None, **kwargs: Any) -> dict | None:
        """The proxy's reply headers for a routed request: ``x-routekit-route``, ``-model`` (the
        ``model_list`` name chosen), ``-router``, ``-win-rate``, ``-threshold`` and
        ``-requested-model`` (the routing name the client sent); None for other requests."""
        decision = None
        for key in ("metadata", "litellm_metadata"):
            meta = data.get(key) if isinstance(data, dict) else None
            if isinstance(meta, dict) and isinstance(meta.get("routekit"), dict):
                decision = meta["routekit"]
                break
        if decision is None:
            return None
        return decision_headers(decision)


def decision_headers(decision: Mapping[str, Any]) -> dict[str, str]:
    """``x-routekit-*`` headers for a decision dict (as :func:`decide` returns, plus ``requested_model``)."""
    out = {"x-routekit-route": str(decision["route"]), "x-routekit-model": str(decision["model"]),
           "x-routekit-router": str(decision["router"]), "x-routekit-win-rate": f"{decision['win_rate']:.6f}"}
    if decision.get("threshold") is not None:
        out["x-routekit-threshold"] = f"{decision['threshold']:.6f}"
    if decision.get("requested_model") is not None:
        out["x-routekit-requested-model"] = str(decision["requested_model"])
    return out
