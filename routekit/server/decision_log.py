"""Per-request decision log (one JSON object per line) and ``routekit report`` over such a log.

The server writes a line per routed request when ``decision_log`` is set (``--decision-log PATH``,
``-`` for stderr).  Fields:

``ts`` (UNIX seconds), ``request_id``, ``endpoint``, ``router``, ``win_rate``, ``threshold``,
``route`` (the router's decision: ``strong``/``weak``, or the chosen upstream for ``-auto``),
``upstream`` (who answered), ``model``, ``fallback`` (null or ``{from, to, reason}``), ``status``
(the HTTP status routekit returned), ``upstream_status``, ``route_ms``, ``upstream_ms``, ``stream``,
``prompt_tokens``, ``completion_tokens``, ``cost_usd`` and ``strong_cost_usd`` (what the same
tokens would have cost at the strong model's price; null without prices), for ``-auto``
``candidates`` (``{upstream: predicted quality}``), and when an upstream call failed ``attempts``:
one ``{side, upstream, model, status, error, exception, message}`` per failed call (``side``:
``chosen`` or ``fallback``; ``error``: timeout, connection, http_<status>, not_json or other;
``message``: the upstream's own words, cut to 200 characters), so a failed fallback keeps both causes.
``threshold_source`` says where the threshold came from (``calibration``, ``budget`` or ``raw``);
with a shadow router (``--shadow``), ``shadow`` holds its decision (``router``, ``route``,
``win_rate``, ``threshold``, ``threshold_source``, ``agrees``, ``cost_usd``: the served answer's
tokens at the shadow's side's price), or ``{router, error}``.

The prompt is never logged unless ``log_prompts`` is on (``--log-prompts``); then ``prompt`` holds
the scored text cut to ``log_prompt_chars`` characters and ``prompt_chars`` its full length.

Pure Python; no server dependency, so ``routekit report`` works anywhere.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import threading
from pathlib import Path
from typing import IO, Any, Iterable

from routekit.errors import BadInputError

__all__ = ["DecisionLog", "summarise", "format_summary"]
log = logging.getLogger("routekit.server")


class DecisionLog:
    """Append JSON lines to a file (or stderr for ``"-"``), thread-safe, one ``write`` per line.

    A file is opened for appending (``O_APPEND``) and each line goes out whole in one system call,
    under an advisory lock (``flock``) shared with any other process logging to the same file.  A
    process killed in the middle of a line (SIGKILL, power cut) can still leave a torn last line:
    opening the log cuts such a tail off (under the same lock), so the file never holds a partial
    line followed by a new one, and every complete line before it is kept."""

    def __init__(self, target: str, *, log_prompts: bool = False, prompt_chars: int = 200):
        self.log_prompts, self.prompt_chars = log_prompts, prompt_chars
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._fh: IO[str] | None = None
        self._closed = False
        self.repaired = 0  #: bytes of a torn last line removed on open
        self.dropped = 0  #: lines written after close() (a request that outlived the server's shutdown)
        if target == "-":
            self._fh = sys.stderr
            return
        path = Path(target)
        if path.is_dir():
            raise BadInputError(f"decision log {target!r} is a directory")
        if not path.parent.is_dir():
            raise BadInputError(f"decision log folder {str(path.parent)!r} does not exist")
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise BadInputError(f"cannot open decision log {target!r}: {exc}") from None
        try:
            with _flock(self._fd):
                self.repaired = _cut_torn_tail(path, self._fd)
        except OSError as exc:
            os.close(self._fd)
            raise BadInputError(f"cannot repair decision log {target!r}: {exc}") from None
        if self.repaired:
            log.warning("decision log %s: removed a torn last line (%d bytes) left by a process that "
                        "stopped while writing it", path, self.repaired)

    def write(self, record: dict[str, Any], prompt: str | None = None) -> None:
        rec = dict(record)
        if self.log_prompts and prompt is not None:
            rec["prompt"] = prompt[:self.prompt_chars]
            rec["prompt_chars"] = len(prompt)
        line = json.dumps(rec, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str) + "\n"
        with self._lock:
            if self._closed:  # a late request after shutdown: drop the line, never fail the request
                self.dropped += 1
                return
            try:
                if self._fd is None:
                    self._fh.write(line)
                    self._fh.flush()
                    return
                data = line.encode("utf-8")
                with _flock(self._fd):
                    while data:  # one call unless the kernel writes less (a full disk)
                        data = data[os.write(self._fd, data):]
            except (OSError, ValueError, TypeError):  # a full disk or closed stderr must not fail the request
                pass

    def close(self) -> None:
        """Close the file (stderr stays open); later writes are dropped and counted in :attr:`dropped`."""
        with self._lock:
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


@contextlib.contextmanager
def _flock(fd: int):
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the thread lock only
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _cut_torn_tail(path: Path, fd: int) -> int:
    """Truncate ``path`` after its last newline when it does not end with one; bytes removed."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0
    with open(path, "rb") as f:
        pos = size
        while pos > 0:
            step = min(pos, 1 << 16)
            f.seek(pos - step)
            block = f.read(step)
            if pos == size and block.endswith(b"\n"):
                return 0
            nl = block.rfind(b"\n")
            if nl >= 0:
                keep = pos - step + nl + 1
                break
            pos -= step
        else:
            keep = 0
    os.truncate(path, keep)
    return size - keep


# -- report --------------------------------------------------------------------------------------
def _read(path: str | Path) -> Iterable[dict[str, Any]]:
    p = Path(path)
    try:
        fh = open(p, encoding="utf-8", errors="replace")  # a torn tail may end inside a character
    except FileNotFoundError:
        raise BadInputError(f"decision log {str(p)!r} does not exist") from None
    except OSError as exc:
        raise BadInputError(f"cannot read decision log {str(p)!r}: {exc}") from None
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError) as exc:
                if not line.endswith("\n") and not fh.read(1):  # a last line still being written, or torn
                    return
                raise BadInputError(f"{p}:{n}: not a JSON object: {exc}") from None
            if not isinstance(rec, dict):
                raise BadInputError(f"{p}:{n}: not a JSON object")
            yield rec


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def _num(rec: dict, key: str) -> float | None:
    v = rec.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def summarise(path: str | Path) -> dict[str, Any]:
    """Totals of a decision log: requests, share per route, fallbacks, errors, cost vs all-strong,
    routing and upstream latency percentiles (ms)."""
    n = 0
    routes: dict[str, int] = {}
    routers: dict[str, int] = {}
    fallbacks = errors = 0
    cost = strong_cost = 0.0
    priced = 0
    lat: dict[str, list[float]] = {"route_ms": [], "upstream_ms": []}
    sources: dict[str, int] = {}
    sh = {"n": 0, "agree": 0, "strong": 0, "served_strong": 0, "errors": 0, "priced": 0, "cost": 0.0,
          "served_cost": 0.0, "routers": {}}
    for rec in _read(path):
        n += 1
        src = rec.get("threshold_source")
        if isinstance(src, str):
            sources[src] = sources.get(src, 0) + 1
        _shadow(sh, rec)
        route = str(rec.get("route") or "none")
        routes[route] = routes.get(route, 0) + 1
        routers[str(rec.get("router"))] = routers.get(str(rec.get("router")), 0) + 1
        fallbacks += bool(rec.get("fallback"))
        status = rec.get("status")
        errors += isinstance(status, int) and status >= 400
        c, s = _num(rec, "cost_usd"), _num(rec, "strong_cost_usd")
        if c is not None and s is not None:
            cost, strong_cost, priced = cost + c, strong_cost + s, priced + 1
        for k in lat:
            v = _num(rec, k)
            if v is not None:
                lat[k].append(v)
    out: dict[str, Any] = {
        "requests": n, "routes": routes,
        "strong_share": (routes.get("strong", 0) / n) if n else None,
        "routers": routers, "fallbacks": fallbacks, "errors": errors,
        "priced_requests": priced, "cost_usd": cost, "all_strong_cost_usd": strong_cost,
        "saved_fraction": (1.0 - cost / strong_cost) if strong_cost > 0 else None,
    }
    for k, values in lat.items():
        out[k] = {f"p{int(q * 100)}": _pct(values, q) for q in (0.5, 0.9, 0.99)} | {"n": len(values)}
    out["threshold_sources"] = sources
    if sh["n"] or sh["errors"]:
        k = sh["n"]
        out["shadow"] = {
            "routers": sh["routers"], "requests": k, "errors": sh["errors"],
            "agreement": sh["agree"] / k if k else None, "strong_share": sh["strong"] / k if k else None,
            "served_strong_share": sh["served_strong"] / k if k else None,
            "priced_requests": sh["priced"], "cost_usd": sh["cost"], "served_cost_usd": sh["served_cost"]}
    return out


def _shadow(acc: dict, rec: dict) -> None:
    """Add one log line's ``shadow`` field to the running totals of :func:`summarise`."""
    s = rec.get("shadow")
    if not isinstance(s, dict):
        return
    if "error" in s or s.get("route") not in ("strong", "weak"):
        acc["errors"] += 1
        return
    acc["n"] += 1
    name = str(s.get("router"))
    acc["routers"][name] = acc["routers"].get(name, 0) + 1
    acc["agree"] += s["route"] == rec.get("route")
    acc["strong"] += s["route"] == "strong"
    acc["served_strong"] += rec.get("route") == "strong"
    c, served = _num(s, "cost_usd"), _num(rec, "cost_usd")
    if c is not None and served is not None:
        acc["priced"] += 1
        acc["cost"] += c
        acc["served_cost"] += served


def format_summary(s: dict[str, Any]) -> str:
    def ms(d):
        return ", ".join(f"{k} {v:.1f}" for k, v in d.items() if k != "n" and v is not None) or "n/a"

    n = s["requests"]
    lines = [f"requests: {n}"]
    for route, k in sorted(s["routes"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  route {route}: {k} ({100.0 * k / n:.1f} %)")
    lines.append(f"fallbacks: {s['fallbacks']}   errors (status >= 400): {s['errors']}")
    if s["priced_requests"]:
        saved = s["saved_fraction"]
        lines.append(f"cost: ${s['cost_usd']:.6f} vs ${s['all_strong_cost_usd']:.6f} all-strong "
                     f"({'n/a' if saved is None else f'{100 * saved:.1f} % saved'}) over {s['priced_requests']} "
                     "priced requests")
    else:
        lines.append("cost: no priced requests (set prices in the server config)")
    if s.get("threshold_sources"):
        lines.append("threshold from: " + ", ".join(f"{k} {v}" for k, v in sorted(s["threshold_sources"].items())))
    sh = s.get("shadow")
    if sh:
        k = sh["requests"]
        lines.append(f"shadow {', '.join(sh['routers']) or '(none)'}: {k} requests scored, {sh['errors']} errors")
        if k:
            lines.append(f"  agreement with the served route: {100 * sh['agreement']:.1f} %; strong share "
                         f"{100 * sh['strong_share']:.1f} % (served {100 * sh['served_strong_share']:.1f} %)")
        if sh["priced_requests"]:
            lines.append(f"  counterfactual cost: ${sh['cost_usd']:.6f} vs ${sh['served_cost_usd']:.6f} served over "
                         f"{sh['priced_requests']} priced requests (the served answers' tokens at the shadow's prices)")
        else:
            lines.append("  counterfactual cost: no priced requests")
    lines.append(f"routing latency ms: {ms(s['route_ms'])}")
    lines.append(f"upstream latency ms: {ms(s['upstream_ms'])}")
    return "\n".join(lines)
