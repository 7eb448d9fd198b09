"""Input checks shared by the router API: prompts, [0, 1] numbers, batch sizes, model names.
Each refuses bad input with :class:`~routekit.errors.BadInputError` and a short message."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from routekit.errors import BadInputError


def as_prompt(prompt: Any) -> str:
    """Validate one prompt: ``str`` as is, ``bytes`` decoded as UTF-8 (invalid bytes replaced)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (bytes, bytearray)):
        return bytes(prompt).decode("utf-8", errors="replace")
    raise BadInputError(f"a prompt must be str (or UTF-8 bytes), got {type(prompt).__name__}")


def as_prompts(prompts: Any) -> list[str]:
    if isinstance(prompts, (str, bytes, bytearray)):
        raise BadInputError("win_rates() takes a sequence of prompts; use win_rate() for one prompt")
    try:
        items = list(prompts)
    except TypeError:
        raise BadInputError(f"prompts must be a sequence of str, got {type(prompts).__name__}") from None
    out = []
    for i, p in enumerate(items):
        try:
            out.append(as_prompt(p))
        except BadInputError as exc:
            raise BadInputError(f"prompts[{i}]: {exc}") from None
    return out


def short(value: Any) -> str:
    """A short repr for error messages (a 5,000-digit int has no repr at all under Python's limit)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 100:
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - objects with broken __repr__
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def check_unit(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise BadInputError(f"{name} must be a number in [0, 1], got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        raise BadInputError(f"{name} must be a number in [0, 1], got {short(value)}") from None
    if math.isnan(v) or not 0.0 <= v <= 1.0:
        raise BadInputError(f"{name} must be in [0, 1], got {short(value)}")
    return v


def check_batch_size(batch_size: Any) -> int:
    """A batch size: an integer >= 1 (BadInputError otherwise)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise BadInputError(f"batch_size must be an integer >= 1, got {short(batch_size)}")
    return int(batch_size)


def check_model_name(role: str, model: Any) -> str:
    if not isinstance(model, str) or not model:
        raise BadInputError(f"{role} must be a model name (a non-empty str), got {short(model)}")
    return model
