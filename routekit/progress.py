"""A dependency-free progress bar on stderr (uses tqdm when it is installed).

Every bar that is open is known to this module: :func:`close_all` ends them (each left on its own
finished line), so a command that stops on an error prints that error on a fresh line, after the
bars, and no bar is drawn again later.  ``routekit`` and ``routekit-export`` call it before they
print an error or an interruption message.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

_open: "weakref.WeakSet[Meter]" = weakref.WeakSet()
_lock = threading.Lock()


def close_all() -> None:
    """Close every open bar (a finished line each; never drawn again): this module's, and any
    tqdm bar another library left open (tqdm keeps a set of its live bars)."""
    with _lock:
        bars = list(_open)
    for bar in bars:
        bar.close(finished=False)
    tqdm_std = sys.modules.get("tqdm.std")
    for bar in list(getattr(getattr(tqdm_std, "tqdm", None), "_instances", ())):
        try:
            bar.close()
        except Exception:  # noqa: BLE001 - a bar that cannot draw any more is closed enough
            pass


def progress(items: Iterable[T], *, total: int | None = None, desc: str = "", enabled: bool = True,
             unit: str = "it") -> Iterator[T]:
    """``items``, with a bar that counts them; the bar is closed when the loop ends, stops early
    or raises (and by :func:`close_all`)."""
    if not enabled:
        yield from items
        return
    with Meter(total=total, desc=desc, unit=unit) as meter:
        for item in items:
            yield item
            meter.update(1)


class Meter:
    """A running count with its rate (e.g. prompts/s) on stderr, for work fed in chunks.

    Use it as a context manager (or call :meth:`close`): the bar then ends on its own line
    however the block ends, so an error printed next starts on a fresh line."""

    def __init__(self, *, total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True,
                 initial: int = 0):
        self.enabled, self.total, self.desc, self.unit = enabled, total, desc, unit
        self.done, self._bar, self._start, self._last = initial, None, time.monotonic(), 0.0
        self._initial, self._drawn, self._closed = initial, False, False
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            tqdm = None
        if tqdm is not None:
            self._bar = tqdm(total=total, desc=desc, unit=unit, initial=initial, file=sys.stderr,
                             dynamic_ncols=True)
        with _lock:
            _open.add(self)

    def __enter__(self) -> "Meter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(finished=exc_type is None)

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled or self._closed:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last > 0.5 or (self.total is not None and self.done == self.total):
            self._last = now
            self._print(now)

    def _print(self, now: float) -> None:
        rate = (self.done - self._initial) / max(now - self._start, 1e-9)
        of = f"/{self.total}" if self.total else ""
        sys.stderr.write(f"\r{self.desc} {self.done}{of} {self.unit} ({rate:.1f} {self.unit}/s)")
        sys.stderr.flush()
        self._drawn = True

    def close(self, *, finished: bool = True) -> None:
        """End the bar on its own line (idempotent).  ``finished``: the work is complete, so an
        estimated total becomes the count reached (an interrupted bar keeps its total)."""
        if not self.enabled or self._closed:
            return
        self._closed = True
        with _lock:
            _open.discard(self)
        try:
            if self._bar is not None:
                if self._bar.total is not None and self._bar.total != self.done and (
                        finished or self.done > self._bar.total):  # the total was an estimate
                    self._bar.total = self.done
                self._bar.close()
                return
            self._print(time.monotonic())
            sys.stderr.write("\n")
            sys.stderr.flush()
        except (OSError, ValueError):  # stderr closed or gone: nothing to tidy
            pass
