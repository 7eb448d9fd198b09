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
