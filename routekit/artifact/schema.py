"""The manifest schema: what ``manifest.json`` may contain, checked before anything is loaded.

The JSON is parsed with caps (size, nesting depth, no NaN/Infinity, no duplicate keys), then every
section routekit reads is checked for type and sane bounds: strict integers (``true`` is not 1),
finite numbers, quantiles in [0, 1] and non-decreasing, model names that exist, file names that are
listed in ``files``.  Unknown top-level keys are allowed (they are carried, not read), within the caps.
Every problem is a :class:`~routekit.errors.BadArtifactError` naming the manifest and the field.
"""

from __future__ import annotations

import math

from routekit._validate import short
from routekit.artifact.probmap import ProbMap
from routekit.artifact.strict_json import (
    HEX64,
    MAX_BYTES,
    MAX_DIM,
    MAX_FILES,
    MAX_MODELS,
    MAX_NAME,
    MAX_QUANTILES,
    MAX_TOKENS,
    Checker,
    depth,
    parse,
    safe_relpath,
)
from routekit.errors import BadArtifactError

__all__ = ["MAX_BYTES", "Checker", "check", "depth", "parse", "safe_relpath"]


# --------------------------------------------------------------------------- sections

def check(data: dict, where: str, cls) -> None:
    """Check a parsed manifest (``format``/``format_version`` and the kind already checked by the caller)
    whose kind ``cls`` (a :class:`~routekit.router.Router` class) loads: the shared sections here, the
    kind's ``router`` section by ``cls.check_section``."""
    files = data.get("files")
    c = Checker(where, files if isinstance(files, dict) else {})
    _files(c, files)
    c.string(data.get("name"), "name", optional=True, max_len=MAX_NAME)
    c.string(data.get("description"), "description", optional=True, empty=True)
    digest = data.get("manifest_sha256")
    if digest is not None and (not isinstance(digest, str) or not HEX64.fullmatch(digest)):
        c.fail("manifest_sha256", "must be 64 lowercase hex digits")
    models = _models(c, data)
    _pair(c, data, models)
    _aliases(c, data, models)
    enc = data.get("encoder")
    needs_encoder = bool(getattr(cls, "needs_encoder", False))
    if needs_encoder or enc is not None:
        _encoder(c, enc, required=needs_encoder)
    router = data.get("router")
    if getattr(cls, "needs_router_section", False) or router is not None:
        router = c.obj(router, "router")
        check_section = getattr(cls, "check_section", None)
        if check_section is not None:
            check_section(c, router, data, models)
    if data.get("calibration") is not None:
        _calibration(c, data["calibration"])
    if data.get("prob_map") is not None:  # built here so that a bad map is refused at load, not on first use
        ProbMap.from_section(data["prob_map"], f"{where}: prob_map")


def _files(c: Checker, files) -> None:
    if not isinstance(files, dict):
        c.fail("files", "must be an object of path -> {sha256, bytes}")
    if len(files) > MAX_FILES:
        c.fail("files", f"lists {len(files):,} files (at most {MAX_FILES:,})")
    for rel, meta in files.items():
        why = safe_relpath(rel)
        if why:
            raise BadArtifactError(f"{c.where}: manifest names an invalid file path {rel[:200]!r} ({why})")
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
            c.fail(f"files[{rel!r}]", "has no sha256")
        if not HEX64.fullmatch(meta["sha256"]):
            c.fail(f"files[{rel!r}].sha256", "must be 64 lowercase hex digits")
        c.integer(meta.get("bytes"), f"files[{rel!r}].bytes", lo=0, hi=1 << 50, optional=True)


def _models(c: Checker, data) -> list[str] | None:
    if data.get("models") is None:
        return None
    return c.str_list(data["models"], "models", unique=True)


def _pair(c: Checker, data, models) -> None:
    pair = c.obj(data.get("pair"), "pair", optional=models is None)
    if pair is None:  # routers then call the sides "strong" and "weak"
        return
    s = c.string(pair.get("strong"), "pair.strong", max_len=MAX_NAME)
    w = c.string(pair.get("weak"), "pair.weak", max_len=MAX_NAME)
    if s == w:
        c.fail("pair", f"has the same model on both sides ({s!r})")
    for side, m in (("strong", s), ("weak", w)):
        if models is not None and m not in models:
            c.fail(f"pair.{side}", f"{m!r} is not in models")


def _aliases(c: Checker, data, models) -> None:
    aliases = c.obj(data.get("aliases"), "aliases", optional=True)
    if aliases is None:
        return
    if len(aliases) > MAX_MODELS:
        c.fail("aliases", f"has {len(aliases):,} entries (at most {MAX_MODELS:,})")
    pair = data.get("pair") or {}
    known = models if models is not None else [pair.get("strong", "strong"), pair.get("weak", "weak")]
    for k, v in aliases.items():
        c.string(k, "aliases key", max_len=MAX_NAME)
        c.string(v, f"aliases[{k!r}]", max_len=MAX_NAME)
        if v not in known:
            c.fail(f"aliases[{k!r}]", f"names {v!r}, which is not a known model")


def _encoder(c: Checker, enc, *, required: bool) -> None:
    enc = c.obj(enc, "encoder", optional=not required)
    if enc is None:
        return
    kind = enc.get("kind")
    if kind is not None and kind not in ("static", "openai"):
        c.fail("encoder.kind", f"must be absent, 'static' or 'openai', got {short(kind)}")
    c.integer(enc.get("dim"), "encoder.dim", lo=1, hi=MAX_DIM, optional=kind != "openai")
    c.integer(enc.get("batch_size"), "encoder.batch_size", lo=1, hi=1 << 20, optional=True)
    if kind == "openai":
        c.string(enc.get("model"), "encoder.model", optional=True, max_len=MAX_NAME)
        c.integer(enc.get("dimensions"), "encoder.dimensions", lo=1, hi=MAX_DIM, optional=True)
        for key in ("base_url", "api_key_env", "api_version"):
            c.string(enc.get(key), f"encoder.{key}", optional=True, max_len=2000)
        return
    c.listed_file(enc.get("file"), "encoder.file")
    c.listed_file(enc.get("tokenizer"), "encoder.tokenizer")
    c.integer(enc.get("max_length"), "encoder.max_length", lo=1, hi=MAX_TOKENS, optional=True)
    c.string(enc.get("output"), "encoder.output", optional=True, max_len=200)
    c.string(enc.get("quantization"), "encoder.quantization", optional=True, max_len=200)
    c.integer(enc.get("n_labels"), "encoder.n_labels", lo=1, hi=MAX_DIM, optional=True)
    dis = enc.get("ort_disabled_optimizers")
    if dis is not None and not isinstance(dis, str):
        c.str_list(dis, "encoder.ort_disabled_optimizers", max_items=100, max_len=200)


def _calibration(c: Checker, cal) -> None:
    cal = c.obj(cal, "calibration")
    q = cal.get("quantiles")
    if not isinstance(q, list) or not 2 <= len(q) <= MAX_QUANTILES:
        c.fail("calibration.quantiles", f"must be a list of 2 to {MAX_QUANTILES:,} numbers")
    prev = -math.inf
    for i, x in enumerate(q):
        v = c.number(x, f"calibration.quantiles[{i}]", lo=0.0, hi=1.0)
        if v < prev:
            c.fail("calibration.quantiles", f"must be non-decreasing ([{i - 1}] = {prev!r} > [{i}] = {v!r})")
        prev = v
    c.number(cal.get("default_strong_fraction"), "calibration.default_strong_fraction", lo=0.0, hi=1.0,
             optional=True)
    c.integer(cal.get("n"), "calibration.n", lo=1, hi=1 << 62, optional=True)
    c.string(cal.get("prompts"), "calibration.prompts", optional=True, empty=True)
    th = c.obj(cal.get("thresholds"), "calibration.thresholds", optional=True)
    for k, v in (th or {}).items():
        c.number(v, f"calibration.thresholds[{k!r}]", lo=0.0, hi=1.0)
