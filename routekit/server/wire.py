"""The OpenAI wire conventions routekit speaks: the ``model="router-..."`` grammar and which chat
turns are scored.  Shared by :mod:`routekit.server`, :class:`routekit.client.RoutingOpenAI` and
:mod:`routekit.integrations.litellm`.

``model`` names
    ``router-<name>-<threshold>``    e.g. ``router-mf-0.76``: strong when win rate >= 0.76
    ``router-<name>-p<strong%>``     e.g. ``router-mf-p30``: the artifact's calibrated threshold that
                                     sent 30 % of its calibration prompts to the strong model
    ``router-<name>``                the artifact's calibrated default threshold
    ``router-<name>-auto``           N-model selection: the router ranks every configured upstream
                                     it knows and the best quality for the price wins (server only;
                                     routers with a model table: MF, SW)
    any configured alias             e.g. ``{"cheap": "router-mf-p20"}``

    ``<name>`` must be one of the routers the client/server was configured with (never a path from
    the request).  A router whose own name ends in ``-auto`` cannot be addressed with the short form.

Which turns are scored (:func:`prompt_from_messages`)
    Only ``user`` turns.  ``system`` prompts are usually the same boilerplate on every request and
    ``assistant``/``tool`` turns are model output, so neither says how hard the request is.  With
    ``turns="user"`` (the default) the scored text is the **last user message first**, followed by
    earlier user messages from newest to oldest, separated by blank lines, cut at ``context_chars``
    characters (default 2,000, about the encoder's 256-token window).  The last message comes first
    because the encoder keeps the beginning of a long text: it is never pushed out by history.  A
    one-turn conversation is scored exactly as ``Router.route(that_message)``.  With
    ``turns="last"`` only the last user message is scored.  Text parts of multi-part content
    (``[{"type": "text", "text": ...}, ...]``) are joined; images and other parts are ignored.

Pure Python: importing it imports neither ``openai`` nor a web framework.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from routekit.errors import BadInputError, UnknownRouterError

__all__ = ["DEFAULT_CONTEXT_CHARS", "RouteSpec", "UnknownRouterError", "parse_model", "prompt_from_messages", "Upstream"]

#: Characters of conversation scored by default (the encoder reads ~256 tokens, ~4 chars each).
DEFAULT_CONTEXT_CHARS = 2000

_MODEL_RE = re.compile(
    r"^router-(?P<name>.+?)(?:-(?:p(?P<pct>\d+(?:\.\d+)?)|(?P<thr>\d+(?:\.\d*)?|\.\d+)|(?P<auto>auto)))?$"
)



@dataclass(frozen=True)
class RouteSpec:
    """What a ``model`` string asks for: a router name and a threshold *or* a strong fraction."""

    router: str
    threshold: float | None = None
    strong_fraction: float | None = None
    auto: bool = False  #: ``router-<name>-auto``: pick among all configured upstreams (N-model selection)

    def as_kwargs(self) -> dict[str, float]:
        out = {}
        if self.threshold is not None:
            out["threshold"] = self.threshold
        if self.strong_fraction is not None:  # both set: Router.route refuses, as it should
            out["strong_fraction"] = self.strong_fraction
        return out


def parse_model(model: Any, aliases: Mapping[str, str] | None = None) -> RouteSpec:
    """Parse ``router-<name>-<threshold>`` / ``router-<name>-p<strong%>`` / ``router-<name>`` /
    ``router-<name>-auto`` or an alias.

    Raises :class:`UnknownRouterError` for anything else and :class:`BadInputError` for a threshold
    outside [0, 1] or a percentage outside [0, 100].
    """
    if not isinstance(model, str) or not model:
        raise BadInputError("'model' must be a non-empty string such as 'router-mf-p30'")
    seen = set()
    while aliases and model in aliases and model not in seen:  # aliases may point at aliases
        seen.add(model)
        model = aliases[model]
    m = _MODEL_RE.match(model)
    if not m:
        raise UnknownRouterError(
            f"model {model!r} is not a routing model: use 'router-<name>-<threshold>', "
            "'router-<name>-p<strong%>', 'router-<name>', 'router-<name>-auto' or a configured alias")
    name, pct, thr = m.group("name"), m.group("pct"), m.group("thr")
    if m.group("auto"):
        return RouteSpec(name, auto=True)
    if pct is not None:
        p = float(pct)
        if not 0.0 <= p <= 100.0:
            raise BadInputError(f"strong percentage in {model!r} must be in [0, 100]")
        return RouteSpec(name, strong_fraction=p / 100.0)
    if thr is not None:
        t = float(thr)
        if not 0.0 <= t <= 1.0:
            raise BadInputError(f"threshold in {model!r} must be in [0, 1]")
        return RouteSpec(name, threshold=t)
    return RouteSpec(name)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and part.get("type") in ("text", "input_text"):
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
        return "\n".join(parts)
    raise BadInputError(f"message content must be a string or a list of parts, got {type(content).__name__}")


def prompt_from_messages(messages: Any, *, turns: str = "user",
                         context_chars: int = DEFAULT_CONTEXT_CHARS) -> str:
    """The text a router scores for a chat conversation (see the module docstring)."""
    if turns not in ("user", "last"):
        raise BadInputError(f"turns must be 'user' or 'last', got {turns!r}")
    if not isinstance(messages, (list, tuple)) or not messages:
        raise BadInputError("'messages' must be a non-empty list of {role, content} objects")
    users: list[str] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping):
            raise BadInputError(f"messages[{i}] must be an object with 'role' and 'content'")
        role = msg.get("role")
        if not isinstance(role, str):
            raise BadInputError(f"messages[{i}].role must be a string")
        try:
            text = _content_text(msg.get("content"))
        except BadInputError as exc:
            raise BadInputError(f"messages[{i}]: {exc}") from None
        if role == "user":
            users.append(text)
    if not users:
        raise BadInputError("'messages' has no user turn to route on")
    if turns == "last" or len(users) == 1:
        return users[-1]
    out = users[-1]
    for text in reversed(users[:-1]):
        if len(out) >= context_chars:
            break
        out = out + "\n\n" + text
    return out[:max(context_chars, len(users[-1]))]


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
