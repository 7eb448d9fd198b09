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

#: kinds whose routers read ``manifest["router"]`` (must be an object)
_NEEDS_ROUTER = {"mf", "sw", "linear", "causal"}
#: kinds whose routers read ``manifest["encoder"]``
_NEEDS_ENCODER = {"mf", "sw", "linear", "bert"}


def check(data: dict, where: str, kinds) -> None:
    """Check a parsed manifest (``format``/``format_version`` already checked by the caller)."""
    files = data.get("files")
    c = Checker(where, files if isinstance(files, dict) else {})
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in kinds:
        raise BadArtifactError(f"{where}: unknown router kind {kind!r} (known: {', '.join(kinds)})")
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
    if kind in _NEEDS_ENCODER or enc is not None:
        _encoder(c, enc, required=kind in _NEEDS_ENCODER)
    router = data.get("router")
    if kind in _NEEDS_ROUTER or router is not None:
        router = c.obj(router, "router")
        _ROUTER_CHECKS.get(kind, lambda *a: None)(c, router, data, models)
    if data.get("calibration") is not None:
        _calibration(c, data["calibration"])


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


def _router_mf(c: Checker, r: dict, data, models) -> None:
    c.listed_file(r.get("weights", "mf.npz"), "router.weights")
    c.integer(r.get("hidden"), "router.hidden", lo=1, hi=MAX_DIM, optional=True)


def _router_sw(c: Checker, r: dict, data, models) -> None:
    c.listed_file(r.get("data", "sw.npz"), "router.data")
    tiers = c.integer(r.get("tiers"), "router.tiers", lo=1, hi=1000, optional=True)
    mt = c.obj(r.get("model_tiers"), "router.model_tiers")
    if not mt:
        c.fail("router.model_tiers", "must give each model a tier")
    if len(mt) > MAX_MODELS:
        c.fail("router.model_tiers", f"has {len(mt):,} entries")
    for m, t in mt.items():
        c.integer(t, f"router.model_tiers[{m!r}]", lo=0, hi=(tiers - 1) if tiers else 999)
    for m in models or []:
        if m not in mt:
            c.fail("router.model_tiers", f"has no tier for model {m!r}")
    w = r.get("weighting")
    if w is not None and w not in ("paper", "reference"):
        c.fail("router.weighting", f"must be 'paper' or 'reference', got {short(w)}")
    c.number(r.get("gamma"), "router.gamma", lo=0.0, hi=1e300, lo_open=True, optional=True)
    c.number(r.get("ridge"), "router.ridge", lo=0.0, hi=1e6, optional=True)
    c.integer(r.get("k"), "router.k", lo=1, hi=1 << 31, optional=True)
    if r.get("mode") not in (None, "exact", "fast"):
        c.fail("router.mode", f"must be 'exact' or 'fast', got {short(r.get('mode'))}")
    index = c.obj(r.get("index"), "router.index", optional=True)
    if index:
        c.listed_file(index.get("file"), "router.index.file")
        c.integer(index.get("efSearch"), "router.index.efSearch", lo=1, hi=1 << 20, optional=True)


def _router_linear(c: Checker, r: dict, data, models) -> None:
    c.listed_file(r.get("weights", "linear.npz"), "router.weights")
    if r.get("features") is not None:
        c.str_list(r["features"], "router.features", max_items=1000)
    c.integer(r.get("max_chars"), "router.max_chars", lo=1, hi=1 << 30, optional=True)


def _router_bert(c: Checker, r: dict, data, models) -> None:
    labels = r.get("labels")
    if labels is not None:
        c.str_list(labels, "router.labels", max_items=3, unique=True)
        if len(labels) != 3 or "strong_wins" not in labels:
            c.fail("router.labels", f"must be 3 labels incl. 'strong_wins', got {labels!r}")


def _router_causal(c: Checker, r: dict, data, models) -> None:
    c.string(r.get("model_dir"), "router.model_dir", optional=True, max_len=1000)
    if isinstance(r.get("model_dir"), str) and safe_relpath(r["model_dir"]):
        c.fail("router.model_dir", safe_relpath(r["model_dir"]))
    c.integer(r.get("max_length"), "router.max_length", lo=1, hi=MAX_TOKENS, optional=True)
    c.integer(r.get("batch_size"), "router.batch_size", lo=1, hi=1 << 16, optional=True)
    if r.get("score_tokens") is not None:
        c.str_list(r["score_tokens"], "router.score_tokens", max_items=1000, max_len=100)
    if r.get("strong_scores") is not None:
        ss = r["strong_scores"]
        if not isinstance(ss, list) or not ss:
            c.fail("router.strong_scores", "must be a non-empty list of integers")
        for i, k in enumerate(ss):
            c.integer(k, f"router.strong_scores[{i}]", lo=1, hi=1000)
    _prompt(c, r.get("prompt"), "router.prompt")
    onnx = c.obj(r.get("onnx"), "router.onnx", optional=True)
    if onnx is not None:  # the classifier exported for onnxruntime (routekit-export causal-onnx)
        c.listed_file(onnx.get("model"), "router.onnx.model")
        c.listed_file(onnx.get("tokenizer"), "router.onnx.tokenizer")
        c.integer(onnx.get("pad_id"), "router.onnx.pad_id", lo=0, hi=1 << 31, optional=True)
        if not isinstance(onnx.get("clean_up_tokenization_spaces", False), bool):
            c.fail("router.onnx.clean_up_tokenization_spaces", "must be true or false")
        _prompt(c, onnx.get("prompt"), "router.onnx.prompt")


def _prompt(c: Checker, prompt, field: str) -> None:
    for k, v in (c.obj(prompt, field, optional=True) or {}).items():
        if isinstance(v, bool):
            continue
        c.string(v, f"{field}.{k}", empty=True, max_len=100_000)


def _router_random(c: Checker, r: dict, data, models) -> None:
    c.integer(r.get("seed"), "router.seed", lo=-(1 << 63), hi=(1 << 63) - 1, optional=True)


_ROUTER_CHECKS = {"mf": _router_mf, "sw": _router_sw, "linear": _router_linear, "bert": _router_bert,
                  "causal": _router_causal, "random": _router_random}


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
