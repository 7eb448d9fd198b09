"""A dependency-free progress bar on stderr (uses tqdm when it is installed)."""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], *, total: int | None = None, desc: str = "", enabled: bool = True,
             unit: str = "it") -> Iterator[T]:
    if not enabled:
        yield from items
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        yield from tqdm(items, total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)
        return
    start, last = time.monotonic(), 0.0
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last > 0.5 or done == total:
            last = now
            rate = done / max(now - start, 1e-9)
            of = f"/{total}" if total else ""
            sys.stderr.write(f"\r{desc} {done}{of} {unit} ({rate:.1f} {unit}/s)")
            sys.stderr.flush()
    sys.stderr.write("\n")


class Meter:
    """A running count with its rate (e.g. prompts/s) on stderr, for work fed in chunks."""

    def __init__(self, *, total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True,
                 initial: int = 0):
        self.enabled, self.total, self.desc, self.unit = enabled, total, desc, unit
        self.done, self._bar, self._start, self._last = initial, None, time.monotonic(), 0.0
        self._initial = initial
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        self._bar = tqdm(total=total, desc=desc, unit=unit, initial=initial, file=sys.stderr,
                         dynamic_ncols=True)

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last > 0.5:
            self._last = now
            self._print(now)

    def _print(self, now: float) -> None:
        rate = (self.done - self._initial) / max(now - self._start, 1e-9)
        of = f"/{self.total}" if self.total else ""
        sys.stderr.write(f"\r{self.desc} {self.done}{of} {self.unit} ({rate:.1f} {self.unit}/s)")
        sys.stderr.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            if self._bar.total is not None and self._bar.total != self.done:  # the total was an estimate
                self._bar.total = self.done
                self._bar.refresh()
            self._bar.close()
            return
        self._print(time.monotonic())
        sys.stderr.write("\n")
