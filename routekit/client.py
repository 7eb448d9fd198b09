"""In-process routing for OpenAI-style calls: :class:`RoutingOpenAI`, :class:`Upstream`,
:class:`RouterCache` and :func:`make_model_picker`.

The ``model="router-..."`` grammar and the choice of scored turns live in
:mod:`routekit.server.wire` (re-exported here for compatibility).  Importing this module imports
neither ``openai`` nor any web framework; :class:`RoutingOpenAI` imports ``openai`` when it is
created (``pip install 'routekit[openai]'``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from routekit.errors import BadInputError
from routekit.server.wire import (
    DEFAULT_CONTEXT_CHARS,
    RouteSpec,
    UnknownRouterError,
    parse_model,
    prompt_from_messages,
)

__all__ = ["DEFAULT_CONTEXT_CHARS", "RouteSpec", "RouterCache", "RoutingOpenAI", "UnknownRouterError", "Upstream",
           "make_model_picker", "parse_model", "prompt_from_messages"]

class RouterCache:
    """Routers loaded once per configured name and shared (routers are thread-safe).

    ``routers`` maps the names clients may use to what :func:`routekit.load` accepts (a shipped
    name, ``random[:seed]`` or an artifact folder).  Names not in the map are refused, so a request
    can never make the process load an arbitrary path.
    """

    def __init__(self, routers: Mapping[str, str] | Sequence[str], *, threads: int | None = None,
                 loader: Callable[..., Any] | None = None):
        if isinstance(routers, Mapping):
            self.specs = {str(k): str(v) for k, v in routers.items()}
        else:
            self.specs = {str(r): str(r) for r in routers}
        if not self.specs:
            raise BadInputError("at least one router must be configured")
        self.threads = threads
        self._loader = loader
        self._routers: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self.specs)

    @property
    def default(self) -> str:
        return next(iter(self.specs))

    def loaded(self) -> list[str]:
        return list(self._routers)

    def get(self, name: str | None = None):
        name = self.default if name is None else name
        router = self._routers.get(name)
        if router is not None:
            return router
        if name not in self.specs:
            raise UnknownRouterError(
                f"router {name!r} is not configured here (configured: {', '.join(self.specs)})")
        with self._lock:  # one load per name even when many requests arrive at once
            router = self._routers.get(name)
            if router is None:
                if self._loader is not None:
                    loader = self._loader
                else:
                    from routekit.loading import load as loader
                router = loader(self.specs[name], threads=self.threads)
                self._routers[name] = router
        return router


@dataclass(frozen=True)
class Upstream:
    """An OpenAI-compatible endpoint serving one model."""

    model: str
    base_url: str | None = None  #: None: the openai client's default (api.openai.com or $OPENAI_BASE_URL)
    api_key: str | None = None  #: None: read from ``api_key_env``
    api_key_env: str = "OPENAI_API_KEY"
    max_retries: int | None = None  #: the openai SDK's retries for this upstream (None: the server's default)
    router_model: str | None = None  #: its name in the router's model table, for router-<name>-auto (None: model)

    def key(self) -> str:
        import os

        # Local OpenAI-compatible servers (vLLM, llama.cpp, Ollama) accept any key.
        return self.api_key or os.environ.get(self.api_key_env) or "unused"


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

        from routekit.client import RoutingOpenAI, Upstream
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
