"""In-process routing for OpenAI-style calls: :class:`RoutingOpenAI` and :func:`make_model_picker`.

The ``model="router-..."`` grammar, the choice of scored turns and :class:`~routekit.server.wire.Upstream`
(an endpoint) live in :mod:`routekit.server.wire`; :class:`~routekit.loading.RouterCache` (named routers,
loaded once) in :mod:`routekit.loading`.  Importing this module imports neither ``openai`` nor any web
framework; :class:`RoutingOpenAI` imports ``openai`` when it is created (``pip install 'routekit[openai]'``).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from routekit.loading import RouterCache
from routekit.server.wire import (
    DEFAULT_CONTEXT_CHARS,
    RouteSpec,
    Upstream,
    parse_model,
    prompt_from_messages,
)

__all__ = ["RoutingOpenAI", "make_model_picker"]

def make_model_picker(strong_model: str, weak_model: str, *, router: str = "default",
                      threshold: float | None = None, strong_fraction: float | None = None,
                      turns: str = "user", context_chars: int = DEFAULT_CONTEXT_CHARS,
                      cache: RouterCache | None = None) -> Callable[[Any], str]:
    """A LiteLLM-style hook: a function that maps a chat request to the model name to call.

    The returned function accepts either a request dict with ``messages`` or the messages list
    itself, and returns ``strong_model`` or ``weak_model``.  Use it in a gateway's pre-call hook::

        pick = make_model_picker("gpt-4o", "gpt-4o-mini", router="mf", strong_fraction=0.3)
        data["model"] = pick(data)
    """
    cache = cache or RouterCache([router])
    kwargs = RouteSpec(router, threshold, strong_fraction).as_kwargs()

    def pick(request: Any) -> str:
        messages = request.get("messages") if isinstance(request, Mapping) else request
        text = prompt_from_messages(messages, turns=turns, context_chars=context_chars)
        d = cache.get(router).route(text, **kwargs)
        return strong_model if d.is_strong else weak_model

    return pick


class _Completions:
    def __init__(self, owner: "RoutingOpenAI"):
        self._owner = owner

    def create(self, *, model: str, messages: Any, **kwargs: Any):
        """Route, then call ``chat.completions.create`` on the chosen upstream.

        Returns the upstream's result (a ``ChatCompletion`` or a ``Stream``) with a ``routekit``
        attribute holding the routing decision as a dict.
        """
        owner = self._owner
        decision = owner.route(messages, model=model)
        up = owner.strong if decision.is_strong else owner.weak
        result = owner._clients[decision.route].chat.completions.create(
            model=up.model, messages=messages, **kwargs)
        info = owner._info(decision)
        try:
            setattr(result, "routekit", info)
        except Exception:  # pragma: no cover - an object that refuses attributes
            pass
        return result


class _Chat:
    def __init__(self, owner: "RoutingOpenAI"):
        self.completions = _Completions(owner)


class RoutingOpenAI:
    """A drop-in for ``openai.OpenAI().chat.completions.create`` that routes each call in-process.

    ::

        from routekit.client import RoutingOpenAI
        from routekit.server.wire import Upstream
        client = RoutingOpenAI(strong=Upstream("gpt-4o"), weak=Upstream("llama3", "http://localhost:11434/v1"),
                               routers=["mf"])
        r = client.chat.completions.create(model="router-mf-p30", messages=[{"role": "user", "content": "hi"}])
        r.routekit   # {'route': 'weak', 'model': 'llama3', 'win_rate': ..., 'threshold': ..., 'router': 'mf'}

    Scoring uses the router in this process (no server); the chosen upstream is called with the
    official ``openai`` client.  ``clients`` may pass ready ``openai.OpenAI`` objects for
    ``"strong"``/``"weak"`` (tests, custom HTTP settings).
    """

    def __init__(self, *, strong: Upstream, weak: Upstream, routers: Mapping[str, str] | Sequence[str] = ("default",),
                 aliases: Mapping[str, str] | None = None, turns: str = "user",
                 context_chars: int = DEFAULT_CONTEXT_CHARS, timeout: float = 60.0, max_retries: int = 2,
                 threads: int | None = None, clients: Mapping[str, Any] | None = None,
                 cache: RouterCache | None = None):
        self.strong, self.weak = strong, weak
        self.aliases = dict(aliases or {})
        self.turns, self.context_chars = turns, context_chars
        self.routers = cache or RouterCache(routers, threads=threads)
        if clients is None:
            from routekit.errors import require

            openai = require("openai", "openai", "RoutingOpenAI")
            clients = {name: openai.OpenAI(base_url=up.base_url, api_key=up.key(), timeout=timeout,
                                           max_retries=max_retries)
                       for name, up in (("strong", strong), ("weak", weak))}
        self._clients = dict(clients)
        self.chat = _Chat(self)

    def route(self, messages: Any, *, model: str):
        """The routing decision for ``messages`` under ``model`` (no upstream call)."""
        spec = parse_model(model, self.aliases)
        text = prompt_from_messages(messages, turns=self.turns, context_chars=self.context_chars)
        return self.routers.get(spec.router).route(text, **spec.as_kwargs())

    def _info(self, decision) -> dict[str, Any]:
        up = self.strong if decision.is_strong else self.weak
        return {"route": decision.route, "model": up.model, "win_rate": decision.win_rate,
                "threshold": decision.threshold, "router": decision.router}

    def close(self) -> None:
        for c in self._clients.values():
            close = getattr(c, "close", None)
            if close:
                close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
