"""Strict JSON for files routekit reads before trusting them (manifests, ``index.json``): parsing
with caps (size, nesting depth, no NaN/Infinity, no duplicate keys) and :class:`Checker`, typed
field checks (strict integers, finite bounded numbers, bounded strings, listed file names), each
failure a :class:`~routekit.errors.BadArtifactError` naming the file and the field."""

from __future__ import annotations

import json
import math
import re
from pathlib import PurePosixPath
from typing import Any

from routekit._validate import short
from routekit.errors import BadArtifactError

MAX_BYTES = 8 << 20  #: a manifest larger than this is refused before it is parsed
MAX_DEPTH = 32  #: deepest nesting of objects/arrays
MAX_STR = 1 << 20  #: longest string value
MAX_NAME = 500  #: longest model / artifact name
MAX_MODELS = 100_000
MAX_FILES = 100_000
MAX_DIM = 1 << 16
MAX_TOKENS = 1 << 20  #: largest max_length (tokens) an encoder may ask for
MAX_QUANTILES = 100_001
HEX64 = re.compile(r"[0-9a-f]{64}")
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(r"[\[\]{}]")


class _Reject(Exception):
    pass


def _no_constant(name: str):
    raise _Reject(f"{name} is not allowed (numbers must be finite)")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise _Reject(f"number {text[:40]} is out of range")
    return v


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise _Reject(f"duplicate key {k[:80]!r}")
        out[k] = v
    return out


def depth(text: str) -> int:
    """Deepest bracket nesting of a JSON text (strings skipped), without recursion."""
    d = deepest = 0
    for m in _BRACKETS.finditer(_STRINGS.sub('""', text)):
        if m.group() in "[{":
            d += 1
            deepest = max(deepest, d)
        else:
            d -= 1
    return deepest


def parse(raw: bytes, where: str, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """JSON from ``raw`` with caps on size and depth, finite numbers only, no duplicate keys."""
    if len(raw) > max_bytes:
        raise BadArtifactError(f"{where}: {len(raw):,} bytes is more than a manifest may have ({max_bytes:,})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadArtifactError(f"{where}: not valid UTF-8 ({exc})") from None
    if depth(text) > max_depth:
        raise BadArtifactError(f"{where}: nested more than {max_depth} levels deep")
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float,
                          object_pairs_hook=_no_duplicates)
    except _Reject as exc:
        raise BadArtifactError(f"{where}: not a valid manifest ({exc})") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, int too long
        raise BadArtifactError(f"{where}: not valid JSON ({exc})") from None


class Checker:
    """Field checks that raise BadArtifactError naming ``where`` and the field path."""

    def __init__(self, where: str, files: dict):
        self.where = where
        self.files = files

    def fail(self, field: str, msg: str):
        raise BadArtifactError(f"{self.where}: {field} {msg}")

    def obj(self, v, field, *, optional=False) -> dict | None:
        if v is None and optional:
            return None
        if not isinstance(v, dict):
            self.fail(field, f"must be an object, got {_tname(v)}")
        return v

    def string(self, v, field, *, optional=False, max_len=MAX_STR, empty=False) -> str | None:
        if v is None and optional:
            return None
        if not isinstance(v, str):
            self.fail(field, f"must be a string, got {_tname(v)}")
        if not empty and not v:
            self.fail(field, "must not be empty")
        if len(v) > max_len:
            self.fail(field, f"is {len(v):,} characters long (at most {max_len:,})")
        if "\0" in v:
            self.fail(field, "contains a NUL byte")
        return v

    def integer(self, v, field, *, lo=None, hi=None, optional=False) -> int | None:
        if v is None and optional:
            return None
        if type(v) is not int:  # bool is an int subclass: refused on purpose
            self.fail(field, f"must be an integer, got {_tname(v)} {short(v)}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            self.fail(field, f"must be in [{lo}, {hi}], got {short(v)}")
        return v

    def number(self, v, field, *, lo=None, hi=None, optional=False, lo_open=False) -> float | None:
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.fail(field, f"must be a number, got {_tname(v)} {short(v)}")
        try:
            f = float(v)
        except OverflowError:
            self.fail(field, f"is out of range ({short(v)})")
        if not math.isfinite(f):
            self.fail(field, f"must be finite, got {short(v)}")
        if (lo is not None and (f < lo or (lo_open and f == lo))) or (hi is not None and f > hi):
            self.fail(field, f"must be in {'(' if lo_open else '['}{lo}, {hi}], got {short(v)}")
        return f

    def listed_file(self, v, field, *, optional=False) -> str | None:
        if v is None and optional:
            return None
        rel = self.string(v, field, max_len=1000)
        if rel not in self.files:
            self.fail(field, f"names {rel!r}, which is not listed in the manifest's files")
        return rel

    def str_list(self, v, field, *, max_items=MAX_MODELS, unique=False, max_len=MAX_NAME) -> list[str]:
        if not isinstance(v, list):
            self.fail(field, f"must be a list of strings, got {_tname(v)}")
        if len(v) > max_items:
            self.fail(field, f"has {len(v):,} entries (at most {max_items:,})")
        for i, s in enumerate(v):
            self.string(s, f"{field}[{i}]", max_len=max_len)
        if unique and len(set(v)) != len(v):
            self.fail(field, "has duplicate entries")
        return v


def _tname(v) -> str:
    return "null" if v is None else {bool: "boolean", int: "integer", float: "number", str: "string",
                                     list: "list", dict: "object"}.get(type(v), type(v).__name__)


def safe_relpath(rel: Any) -> str | None:
    """Why ``rel`` is not an acceptable file path inside an artifact, or None if it is."""
    if not isinstance(rel, str) or not rel:
        return "is not a non-empty string"
    if "\0" in rel:
        return "contains a NUL byte"
    if len(rel) > 1000:
        return "is longer than 1000 characters"
    if rel.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", rel) or "\\" in rel:
        return "is absolute or uses backslashes"
    if ".." in PurePosixPath(rel).parts:
        return "points outside the artifact folder"
    return None
