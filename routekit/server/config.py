"""The routing server's configuration: a pydantic model read from code, TOML or JSON.

Every key is checked (type, range, unknown keys refused) and a bad value becomes one
:class:`~routekit.errors.BadInputError` naming the key, so ``routekit serve --config bad.toml``
prints one ``routekit: error:`` line.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Literal, Mapping

from routekit.errors import BadInputError, require
from routekit.server.wire import DEFAULT_CONTEXT_CHARS, Upstream

require("pydantic", "server", "the routing server")

from pydantic import (  # noqa: E402
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = ["ServerConfig", "Upstream", "with_overrides"]


def _upstream(value: Any) -> Any:
    if isinstance(value, str):
        return {"model": value}
    return value


class ServerConfig(BaseModel):
    """Everything the server needs.  Build it in code, or read a TOML/JSON file with :meth:`from_file`.

    ``routers`` maps the router names clients may use to a shipped name or artifact folder; the
    first is the default for ``/v1/route``.  ``prices`` maps an upstream model name to USD per
    million ``input``/``output`` tokens (cost counter, decision log, ``router-<name>-auto``).
    ``upstreams`` names more upstreams (beyond ``strong``/``weak``) that ``router-<name>-auto`` may
    pick from.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=False)

    routers: dict[str, str] = Field(default_factory=lambda: {"default": "default"}, min_length=1)
    strong: Upstream | None = None
    weak: Upstream | None = None
    upstreams: dict[str, Upstream] = Field(default_factory=dict)  #: extra upstreams for router-<name>-auto
    aliases: dict[str, str] = Field(default_factory=dict)
    api_key: str | None = None  #: bearer token clients must send (None: no auth)
    max_body_bytes: int = Field(1 << 20, ge=1, le=1 << 30)
    upstream_timeout: float = Field(60.0, gt=0, le=3600)
    upstream_max_retries: int = Field(0, ge=0, le=10)  #: the openai SDK's own retries, per upstream call
    fallback: bool = True  #: on connection error / timeout / 5xx, try the other side once
    turns: Literal["user", "last"] = "user"  #: see routekit.server.wire.prompt_from_messages
    context_chars: int = Field(DEFAULT_CONTEXT_CHARS, ge=1, le=1_000_000)
    threads: int | None = Field(None, ge=1, le=1024)  #: onnxruntime intra-op threads per router
    prices: dict[str, dict[Literal["input", "output"], float]] = Field(default_factory=dict)
    willingness_to_pay: float | None = Field(None, ge=0)  #: router-<name>-auto: see routekit.select
    preload: bool = True  #: load the default router at startup (fail fast on a bad artifact)
    decision_log: str | None = None  #: path of a JSON-lines decision log, "-" for stderr, None: off
    log_prompts: bool = False  #: put the (truncated) scored text in the decision log
    log_prompt_chars: int = Field(200, ge=0, le=100_000)
    max_json_depth: int = Field(32, ge=2, le=1000)  #: deeper request bodies get HTTP 400
    read_timeout: float = Field(30.0, gt=0, le=3600)  #: seconds a client has to send one whole request
    keep_alive_timeout: float = Field(5.0, gt=0, le=3600)
    max_connections: int = Field(1000, ge=1, le=1_000_000)  #: open connections; the oldest idle one is dropped
    # -- live traffic (routekit.server.live): budget control and shadow routing ------------------------
    #: keep this share of each router's requests strong over a rolling window (a number for every
    #: router, or {router: share}); requests with their own threshold / strong_fraction are not controlled
    target_strong_share: float | dict[str, float] | None = None
    #: the cost form: USD per budget_window requests (a number for every router, or {router: usd});
    #: needs prices for the strong and weak upstream models
    budget_usd: float | dict[str, float] | None = None
    budget_window: int = Field(1000, ge=10, le=10_000_000)  #: requests the share / budget is held over
    #: tokens per request assumed for the cost form until real usage arrives
    budget_request_tokens: dict[Literal["input", "output"], int] = Field(
        default_factory=lambda: {"input": 1000, "output": 500})
    budget_state: str | None = None  #: folder for the controllers' state (one JSON per router); None: not kept
    shadow: str | None = None  #: a router (configured name, shipped name or folder) that scores every request too

    def __init__(self, **data: Any):
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise BadInputError(_explain(exc)) from None

    @model_validator(mode="before")
    @classmethod
    def _resolve_env(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "api_key_env" in data:
            data = dict(data)
            env = data.pop("api_key_env")
            if env and not data.get("api_key"):
                if not isinstance(env, str):
                    raise ValueError("api_key_env must be the name of an environment variable")
                data["api_key"] = os.environ.get(env) or None
                if data["api_key"] is None:
                    raise ValueError(f"api_key_env names ${env}, which is not set")
        return data

    @field_validator("routers", mode="before")
    @classmethod
    def _routers(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return {str(r): str(r) for r in value}
        return value

    @field_validator("strong", "weak", mode="before")
    @classmethod
    def _side(cls, value: Any) -> Any:
        return _upstream(value)

    @field_validator("upstreams", mode="before")
    @classmethod
    def _many(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: _upstream(v) for k, v in value.items()}
        return value

    @field_validator("prices")
    @classmethod
    def _prices(cls, value: dict) -> dict:
        for model, p in value.items():
            for k, v in p.items():
                if not math.isfinite(v) or v < 0:
                    raise ValueError(f"prices.{model}.{k} must be a finite number >= 0, got {v!r}")
        return value

    @model_validator(mode="after")
    def _names(self) -> "ServerConfig":
        for name in self.upstreams:
            if name in ("strong", "weak"):
                raise ValueError(f"upstreams.{name}: use the [{name}] table for the strong/weak upstream")
        return self

    @model_validator(mode="after")
    def _budget(self) -> "ServerConfig":
        for key in ("target_strong_share", "budget_usd"):
            value = getattr(self, key)
            per = value if isinstance(value, dict) else {"*": value} if value is not None else {}
            for name, v in per.items():
                if isinstance(value, dict) and name not in self.routers:
                    # "*" included: a wildcard is not a router name; one number covers every router
                    raise ValueError(f"{key}.{name}: not a configured router ({', '.join(self.routers)}); "
                                     f"give {key} = <number> for every router or one key per router")
                if not math.isfinite(v) or v < 0 or (key == "target_strong_share" and v > 1):
                    raise ValueError(f"{key}{'' if name == '*' else '.' + name} must be "
                                     f"{'in [0, 1]' if key == 'target_strong_share' else 'a finite number >= 0'}, "
                                     f"got {v!r}")
        both = set(self.target_for_all()) & set(self.budget_for_all())
        if both:
            raise ValueError(f"router {sorted(both)[0]!r} has both target_strong_share and budget_usd; give one")
        if self.budget_usd is not None:
            for side in ("strong", "weak"):
                up = getattr(self, side)
                if up is None or up.model not in self.prices:
                    raise ValueError(f"budget_usd needs prices for the {side} upstream's model "
                                     f"({up.model if up else f'no {side} upstream configured'})")
        return self

    def target_for_all(self) -> dict[str, float]:
        """target_strong_share per configured router (routers without one left out)."""
        return _per_router(self.target_strong_share, self.routers)

    def budget_for_all(self) -> dict[str, float]:
        """budget_usd per configured router (routers without one left out)."""
        return _per_router(self.budget_usd, self.routers)

    def all_upstreams(self) -> dict[str, Upstream]:
        """strong, weak and the extra ``upstreams``, by name (unconfigured sides left out)."""
        out = {k: v for k, v in (("strong", self.strong), ("weak", self.weak)) if v is not None}
        out.update(self.upstreams)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ServerConfig":
        if not isinstance(data, Mapping):
            raise BadInputError("a server config must be a table/object of keys")
        return cls(**dict(data))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "ServerConfig":
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise BadInputError(f"server config {str(p)!r} does not exist") from None
        except IsADirectoryError:
            raise BadInputError(f"server config {str(p)!r} is a directory, not a TOML/JSON file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInputError(f"cannot read server config {str(p)!r}: {exc}") from None
        try:
            if p.suffix == ".json":
                data = json.loads(text)
            else:
                try:
                    import tomllib
                except ImportError:  # Python 3.10
                    tomllib = require("tomli", "server", "TOML config files")
                data = tomllib.loads(text)
        except (ValueError, RecursionError) as exc:
            raise BadInputError(f"server config {str(p)!r} is not valid {'JSON' if p.suffix == '.json' else 'TOML'}: "
                                f"{exc}") from None
        try:
            return cls.from_dict(data)
        except BadInputError as exc:
            raise BadInputError(f"server config {str(p)!r}: {exc}") from None


def _per_router(value, routers) -> dict[str, float]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return {k: float(v) for k, v in value.items()}
    return {name: float(value) for name in routers}


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(x) for x in err.get("loc", ())) or "config"
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown server config key"
        parts.append(f"{where}: {msg.removeprefix('Value error, ')}")
    more = len(exc.errors()) - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def with_overrides(config: ServerConfig, **changes: Any) -> ServerConfig:
    """A copy of ``config`` with the non-None ``changes`` applied and checked (used by the CLI)."""
    data = {k: getattr(config, k) for k in type(config).model_fields}
    data.update({k: v for k, v in changes.items() if v is not None})
    return ServerConfig(**data)
