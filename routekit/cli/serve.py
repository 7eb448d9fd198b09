"""``routekit serve`` (the OpenAI-compatible routing server) and ``routekit report`` (its decision log)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from routekit.cli import common
from routekit.cli.common import Command
from routekit.errors import RoutekitError


def _serve_args(sv) -> None:
    sv.add_argument("--config", type=Path, default=None,
                    help="TOML or JSON server config (flags override it; default: built-in settings)")
    sv.add_argument("--router", action="append", default=None, metavar="NAME[=PATH]",
                    help="router clients may name in model='router-NAME-...' (repeatable; first is the default; "
                         "default: default)")
    common.threads_arg(sv, "onnxruntime intra-op threads per router")
    for side in ("strong", "weak"):
        sv.add_argument(f"--{side}-model", default=None,
                        help=f"model name the {side} upstream serves (default: none; chat requests "
                             f"routed {side} get HTTP 503)")
        sv.add_argument(f"--{side}-base-url", default=None,
                        help=f"OpenAI-compatible base URL of the {side} upstream (default: api.openai.com)")
        sv.add_argument(f"--{side}-api-key-env", default=None,
                        help=f"env var holding the {side} upstream's key (default: OPENAI_API_KEY)")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    sv.add_argument("--port", type=int, default=6060, help="port to listen on (default: %(default)s)")
    sv.add_argument("--api-key-env", default=None, metavar="VAR",
                    help="require clients to send 'Authorization: Bearer $VAR' (default: no key)")
    sv.add_argument("--alias", action="append", default=None, metavar="NAME=MODEL",
                    help="extra model name, e.g. cheap=router-mf-p20 (repeatable; default: none)")
    sv.add_argument("--max-body-bytes", type=int, default=None,
                    help="largest request body (default: 1 MiB)")
    sv.add_argument("--upstream-timeout", type=float, default=None, help="seconds (default: 60)")
    sv.add_argument("--turns", choices=["user", "last"], default=None,
                    help="score all user turns, newest first (default) or only the last one")
    sv.add_argument("--upstream-max-retries", type=int, default=None,
                    help="the openai SDK's retries per upstream call (default: 0)")
    sv.add_argument("--fallback", action=argparse.BooleanOptionalAction, default=None,
                    help="on connection error, timeout or 5xx, try the other upstream once (default: on)")
    sv.add_argument("--decision-log", default=None, metavar="PATH",
                    help="append one JSON line per request to PATH ('-': stderr); summarise with `routekit report` "
                         "(default: no log)")
    sv.add_argument("--log-prompts", action="store_true", default=None,
                    help="also log the scored text, cut to log_prompt_chars (default 200)")
    sv.add_argument("--target-strong-share", type=float, default=None, metavar="SHARE",
                    help="keep this share of each router's requests strong over a rolling window "
                         "(budget control; default: off, the calibrated threshold)")
    sv.add_argument("--budget-usd", type=float, default=None, metavar="USD",
                    help="or spend at most USD per --budget-window requests (needs prices for both "
                         "upstreams in --config; default: off)")
    sv.add_argument("--budget-window", type=int, default=None, metavar="N",
                    help="requests the share or budget is held over (default: 1000)")
    sv.add_argument("--budget-state", default=None, metavar="DIR",
                    help="keep the budget controllers' state in DIR across restarts (default: not kept)")
    sv.add_argument("--shadow", default=None, metavar="NAME",
                    help="also score every request with router NAME (a configured name, shipped name or folder) "
                         "and log its decision; never changes what is served (default: none)")
    sv.add_argument("--log-level", default="info", help="uvicorn's log level (default: %(default)s)")
    from routekit.batch.ray import add_serve_arguments

    add_serve_arguments(sv)  # --engine ray, --replicas, --max-replicas, --address


def _pairs(values, what: str) -> dict:
    out = {}
    for v in values or []:
        k, sep, rest = v.partition("=")
        if what == "--alias" and not sep:
            raise RoutekitError(f"{what} takes NAME=VALUE, got {v!r}")
        out[k] = rest if sep else k
    return out


def run_serve(args) -> int:
    from routekit.server.app import (  # MissingExtraError without the extra
        ServerConfig,
        Upstream,
        serve,
        with_overrides,
    )

    cfg = ServerConfig.from_file(args.config) if args.config else ServerConfig()
    ups = {}
    for side in ("strong", "weak"):
        model, url, env = (getattr(args, f"{side}_{k}") for k in ("model", "base_url", "api_key_env"))
        if model is None and (url or env):
            raise RoutekitError(f"--{side}-base-url/--{side}-api-key-env need --{side}-model")
        if model is not None:
            ups[side] = Upstream(model, url, api_key_env=env or "OPENAI_API_KEY")
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise RoutekitError(f"--api-key-env names ${args.api_key_env}, which is not set")
    cfg = with_overrides(cfg, routers=_pairs(args.router, "--router") or None, threads=args.threads,
                         api_key=api_key, aliases={**cfg.aliases, **_pairs(args.alias, "--alias")} or None,
                         max_body_bytes=args.max_body_bytes, upstream_timeout=args.upstream_timeout,
                         turns=args.turns, upstream_max_retries=args.upstream_max_retries,
                         fallback=args.fallback, decision_log=args.decision_log, log_prompts=args.log_prompts,
                         target_strong_share=args.target_strong_share, budget_usd=args.budget_usd,
                         budget_window=args.budget_window, budget_state=args.budget_state, shadow=args.shadow,
                         **ups)
    if args.engine == "ray":
        from routekit.batch.ray import serve_cli

        serve_cli(cfg, host=args.host, port=args.port, address=args.address, replicas=args.replicas,
                  max_replicas=args.max_replicas)
        return 0
    from routekit.io import Terminated

    try:
        serve(cfg, host=args.host, port=args.port, log_level=args.log_level)
    except (KeyboardInterrupt, Terminated):  # uvicorn has shut down cleanly: the normal way to stop a server
        pass
    return 0


def _report_args(rp) -> None:
    rp.add_argument("log", type=Path, help="decision log (JSON lines)")
    rp.add_argument("--json", action="store_true", help="print the summary as JSON")


def run_report(args) -> int:
    from routekit.server.decision_log import format_summary, summarise

    s = summarise(args.log)
    print(json.dumps(s, indent=2) if args.json else format_summary(s))
    return 0


SERVE = Command("serve", "OpenAI-compatible routing server (needs: pip install 'routekit[server]')", _serve_args,
                run_serve)
REPORT = Command("report", "summarise a decision log written by `routekit serve --decision-log`", _report_args,
                 run_report)
