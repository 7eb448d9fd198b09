"""Defences of the routing server below the app: strict JSON bodies, and an HTTP/1.1 protocol
(uvicorn's h11 one) that closes connections which do not send a whole request in time and caps
the number of open connections.

Slow-loris: uvicorn times out idle keep-alive connections, but not a connection that has sent
part of a request line or headers (or a body shorter than its Content-Length), so such sockets
pile up until the process runs out of file descriptors.  :func:`guarded_h11` gives every request
``read_timeout`` seconds from its first byte (or from the connection's start) to arrive in full,
and when more than ``max_connections`` are open it drops the oldest one that is still waiting for
a request, or refuses the new one if all are busy answering.  :func:`fit_to_fd_limit` keeps the
cap (plus one accept burst) inside the process's file-descriptor limit.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["loads_strict", "guarded_h11", "fit_to_fd_limit", "JSONLimitError"]

_MAX_INT_DIGITS = 18


class JSONLimitError(ValueError):
    """A JSON body outside routekit's limits (too deep, a number out of range)."""


def _int(s: str) -> int:
    if len(s.lstrip("-")) > _MAX_INT_DIGITS:
        raise JSONLimitError(f"integer with {len(s.lstrip('-'))} digits is out of range")
    return int(s)


def _float(s: str) -> float:
    v = float(s)
    if not math.isfinite(v):
        raise JSONLimitError(f"number {s[:40]!r} is out of range")
    return v


def _constant(s: str) -> Any:
    raise JSONLimitError(f"{s} is not a JSON number")


def _depth(obj: Any, limit: int) -> None:
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict):
            children = o.values()
        elif isinstance(o, list):
            children = o
        else:
            continue
        if d > limit:
            raise JSONLimitError(f"JSON nested deeper than {limit} levels")
        stack.extend((c, d + 1) for c in children if isinstance(c, (dict, list)))


def loads_strict(data: bytes | str, *, max_depth: int = 32) -> Any:
    """``json.loads`` that refuses NaN/Infinity, integers over 18 digits, floats that overflow and
    nesting deeper than ``max_depth`` (raising :class:`JSONLimitError` / ``ValueError``)."""
    try:
        obj = json.loads(data, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except RecursionError:
        raise JSONLimitError(f"JSON nested deeper than {max_depth} levels") from None
    _depth(obj, max_depth)
    return obj


def fit_to_fd_limit(max_connections: int, *, spare: int = 64) -> int:
    """A connection cap the process's file-descriptor limit can hold.

    asyncio accepts up to ``backlog`` sockets in one go before any protocol sees them, so at the
    peak the process holds ``max_connections`` open sockets plus one accept burst (routekit sets
    ``backlog`` to the cap): it needs ``2 * max_connections + spare`` descriptors.  The soft limit
    is raised towards the hard one when that is short; if even the hard limit is too low, the cap
    is lowered to fit and a warning says so.
    """
    try:
        import resource
    except ImportError:  # not POSIX
        return max_connections
    need = 2 * max_connections + spare
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < need:
        fitted = max(1, (soft - spare) // 2)
        import logging

        logging.getLogger("routekit.server").warning(
            "max_connections %d needs %d file descriptors, the limit is %d: using max_connections %d "
            "(raise it with `ulimit -n`)", max_connections, need, soft, fitted)
        return fitted
    return max_connections


def guarded_h11(read_timeout: float, max_connections: int):
    """A subclass of uvicorn's ``H11Protocol`` with a request read timeout and a connection cap
    (pass it as ``uvicorn.Config(http=...)``)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        _timer = None
        _opened = 0.0

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._opened = self.loop.time()
            self._arm()
            if len(self.connections) > max_connections:
                waiting = [c for c in self.connections if c is not self and getattr(c, "_timer", None) is not None]
                if waiting:
                    min(waiting, key=lambda c: c._opened)._drop()
                else:
                    self._drop()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is h11.IDLE:
                if self._timer is None:  # a new request started on a kept-alive connection
                    self._arm()
            elif self.conn.their_state is not h11.SEND_BODY:
                self._disarm()  # the whole request is in

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()  # uvicorn's keep-alive timer now guards the idle connection
            self._disarm()

        def _arm(self) -> None:
            self._disarm()
            self._timer = self.loop.call_later(read_timeout, self._drop)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _drop(self) -> None:
            self._disarm()
            if self.cycle is not None and not self.cycle.response_complete and self.cycle.response_started:
                return  # answering already: never cut a response
            if not self.transport.is_closing():
                self.transport.close()

    return GuardedH11Protocol
