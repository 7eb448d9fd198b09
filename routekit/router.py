"""The router API in one place: :class:`Router` and :class:`Decision` (``router_base``), ``load()``
(``loading``), :class:`RouterSet` (``router_set``), the input checks (``_validate``), and
:func:`route` with the module-level default router."""

from __future__ import annotations

import threading

from ._validate import as_prompt, as_prompts, check_batch_size
from .loading import load
from .router_base import DEFAULT_STRONG_FRACTION, Decision, Router
from .router_set import RouterSet

__all__ = ["DEFAULT_STRONG_FRACTION", "Decision", "Router", "RouterSet", "as_prompt", "as_prompts",
           "check_batch_size", "load", "route"]


_DEFAULT: Router | None = None
_DEFAULT_LOCK = threading.Lock()


def route(prompt: str, *, threshold: float | None = None, strong_fraction: float | None = None) -> Decision:
    """Route one prompt with the default shipped router (loaded once, on first use, by one thread)."""
    global _DEFAULT
    if _DEFAULT is None:
        with _DEFAULT_LOCK:
            if _DEFAULT is None:
                _DEFAULT = load("default")
    return _DEFAULT.route(prompt, threshold=threshold, strong_fraction=strong_fraction)
