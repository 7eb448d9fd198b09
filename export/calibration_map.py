"""Calibrated win rates: fit a strictly increasing map raw win rate -> P(strong wins) on held-out
labels and store it in an artifact (``prob_map``, read by :class:`routekit.router.Router`).

    routekit-export recalibrate ARTIFACT --prob-map platt [--prob-map-labels oof | FILE ...]

The target is the one every routekit head is fitted to: P(strong wins) with a tie counting half,
i.e. the mean of ``(1 + gain) / 2`` where gain = strong quality − weak quality (golden labels:
strong right and weak wrong = 1, the reverse = 0, both right or both wrong = ½);
``--prob-map-target strict`` fits P(strong strictly better) instead.

Held-out labels, never the dev sets the result is reported on:

* ``oof`` (linear artifacts trained by ``train-linear``): the artifact's own training run is
  repeated from its recorded config and every training prompt gets its out-of-fold score (the
  cross-validation folds the trainer already uses, grouped by prompt start) — cross-fitted labels;
  ``--prob-map-sources`` keeps the rows of some sources only (default: the golden benchmark rows
  mmlu, arc-challenge, winogrande, mbpp);
* FILE: labelled prompts the artifact was not trained on — ``golden.jsonl`` rows
  (``strong_correct``/``weak_correct`` for the artifact's pair) or anything
  :func:`routekit.eval.sets.load_labelled` reads.

The map is ``platt`` (σ(a·logit(raw) + b), two parameters) or ``isotonic`` (pool-adjacent-violators,
then straight lines between the blocks' centres and the corners (0, 0), (1, 1): strictly increasing).
Both keep the ranking; the artifact's calibration table is moved to the new scale with the map (an
existing map is undone first), so strong_fraction thresholds route exactly as before.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from routekit.artifact.probmap import ProbMap
from routekit.numeric import logit

from .errors import ExportError

GOLDEN_SOURCES = ("mmlu", "arc-challenge", "winogrande", "mbpp")
TARGETS = ("soft", "strict")


# ---------------------------------------------------------------------------------------- metrics
def targets_from(strong: np.ndarray, weak: np.ndarray, target: str = "soft") -> np.ndarray:
    """Per prompt, the label a win rate estimates (see the module docstring)."""
    s, w = np.asarray(strong, np.float64), np.asarray(weak, np.float64)
    if target == "soft":
        return np.clip((1.0 + (s - w)) / 2.0, 0.0, 1.0)
    if target == "strict":
        return (s > w).astype(np.float64)
    raise ExportError(f"--prob-map-target must be one of {TARGETS}, got {target!r}")


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict]:
    """Equal-width bins of predicted p: count, mean predicted, mean observed (empty bins left out)."""
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        if m.any():
            out.append({"lo": b / bins, "hi": (b + 1) / bins, "n": int(m.sum()),
                        "predicted": float(p[m].mean()), "observed": float(y[m].mean())})
    return out


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: Σ_bins (n_bin / n) · |mean predicted − mean observed|, equal-width bins."""
    n = len(p)
    return float(sum(r["n"] / n * abs(r["predicted"] - r["observed"]) for r in reliability(p, y, bins))) if n else 0.0


# ---------------------------------------------------------------------------------------- fitting


def fit_platt(raw: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None, iters: int = 100) -> ProbMap:
    """σ(a·logit(raw) + b) minimising (weighted) cross-entropy against targets in [0, 1] (Newton)."""
    x = logit(raw)
    w = np.ones_like(x) if weights is None else np.asarray(weights, np.float64)
    X = np.stack([x, np.ones_like(x)], 1)
    theta = np.array([1.0, 0.0])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(X @ theta)))
        grad = X.T @ (w * (p - y))
        H = (X * (w * p * (1 - p))[:, None]).T @ X + 1e-9 * np.eye(2)
        step = np.linalg.solve(H, grad)
        theta -= step
        if np.abs(step).max() < 1e-12:
            break
    a, b = float(theta[0]), float(theta[1])
    if not a > 0:
        raise ExportError(f"the Platt map has slope {a:.4g} <= 0: these labels do not rise with the router's "
                          "win rate (wrong pair or too few labels)")
    return ProbMap("platt", a=a, b=b)


def fit_isotonic(raw: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> ProbMap:
    """Pool-adjacent-violators on (raw, y), then a strictly increasing polyline through the blocks'
    weighted centres, from (0, 0) to (1, 1)."""
    order = np.argsort(raw, kind="mergesort")
    x, t = np.asarray(raw, np.float64)[order], np.asarray(y, np.float64)[order]
    w = np.ones_like(x) if weights is None else np.asarray(weights, np.float64)[order]
    blocks: list[list[float]] = []  # [sum w·y, sum w, sum w·x]
    for xi, ti, wi in zip(x, t, w):
        blocks.append([wi * ti, wi, wi * xi])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            last = blocks.pop()
            for k in range(3):
                blocks[-1][k] += last[k]
    kx = np.array([b[2] / b[1] for b in blocks])
    ky = np.array([b[0] / b[1] for b in blocks])
    keep = (kx > 0.0) & (kx < 1.0) & (ky > 0.0) & (ky < 1.0)
    kx, ky = kx[keep], ky[keep]
    ux, first = np.unique(kx, return_index=True)  # equal centres: keep one
    kx, ky = ux, ky[first]
    return ProbMap("isotonic", x=tuple([0.0, *kx.tolist(), 1.0]), y=tuple([0.0, *ky.tolist(), 1.0]))


def fit_prob_map(raw: np.ndarray, y: np.ndarray, kind: str = "platt", weights: np.ndarray | None = None) -> ProbMap:
    raw, y = np.asarray(raw, np.float64), np.asarray(y, np.float64)
    if raw.shape != y.shape or raw.size < 20:
        raise ExportError(f"a probability map needs at least 20 labelled prompts, got {raw.size}")
    if kind == "platt":
        return fit_platt(raw, y, weights)
    if kind == "isotonic":
        return fit_isotonic(raw, y, weights)
    raise ExportError(f"--prob-map must be platt or isotonic, got {kind!r}")


# ---------------------------------------------------------------------------------------- labels
def raw_win_rates(router, prompts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """The router's scores before any prob_map (what a new map is fitted on)."""
    from routekit.router import clip_win_rates

    parts = [clip_win_rates(router.score(list(prompts[i:i + batch_size]))) for i in range(0, len(prompts), batch_size)]
    return np.concatenate(parts) if parts else np.zeros(0)


def file_labels(path: Path, router) -> tuple[list[str], np.ndarray, np.ndarray, str]:
    """(prompts, strong quality, weak quality, description) of a labelled file for the router's pair."""
    path = Path(path)
    rows = []
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as fh:
            first = json.loads(next((ln for ln in fh if ln.strip()), "{}"))
        if "strong_correct" in first:  # golden.jsonl
            with open(path, encoding="utf-8") as fh:
                for ln in fh:
                    if ln.strip():
                        r = json.loads(ln)
                        if (router.canonical(r["strong_model"]), router.canonical(r["weak_model"])) == \
                                (router.strong_model, router.weak_model):
                            rows.append((r["prompt"], float(r["strong_correct"]), float(r["weak_correct"])))
            if not rows:
                raise ExportError(f"{path}: no rows for {router.strong_model} vs {router.weak_model}")
            p, s, w = zip(*rows)
            return list(p), np.array(s), np.array(w), f"{path.name} ({len(p)} rows)"
    from routekit.eval.sets import load_labelled

    ev = load_labelled(path, strong_model=router.strong_model, weak_model=router.weak_model)
    return list(ev.prompts), ev.strong, ev.weak, f"{path.name} ({len(ev)} rows)"


def oof_labels(folder: Path, data_dir: Path, sources: Sequence[str] | None = GOLDEN_SOURCES,
               log=print, router=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(out-of-fold raw win rates, strong quality, weak quality, description) of a linear artifact's
    own training prompts: its training run repeated from the manifest's recorded config (``router``:
    the artifact already loaded)."""
    import dataclasses

    import routekit
    from routekit.routers.linear import load_bow_tokenizer

    from .embed import embed_texts
    from .linear import LinearConfig, load_prompt_table, train_linear

    router = router or routekit.load(folder)
    if router.kind != "linear":
        raise ExportError(f"{folder}: --prob-map-labels oof needs a linear artifact (kind {router.kind}); "
                          "give a labelled file the artifact was not trained on")
    recorded = ((router.manifest.get("metrics") or {}).get("config")) or {}
    if not recorded:
        raise ExportError(f"{folder}: the manifest records no training config (metrics.config); give a labelled file")
    names = {f.name for f in dataclasses.fields(LinearConfig)}
    cfg = LinearConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in recorded.items() if k in names})
    table = load_prompt_table(data_dir, tuple(cfg.extra), gsm8k_limit=cfg.gsm8k_limit, log=log)
    spec = router.manifest["encoder"]
    emb = embed_texts(router.encoder, table.prompts, encoder_key=router.manifest.files[spec["file"]]["sha256"])
    tokenizer = load_bow_tokenizer(router.manifest.path(spec["tokenizer"]))
    kw = {}
    if getattr(cfg, "part_scale", 0) and cfg.part_scale > 0:
        from .linear import part_embeddings

        kw["parts"] = part_embeddings(router.encoder, table.prompts, emb, cfg.part_chars,
                                      encoder_key=router.manifest.files[spec["file"]]["sha256"])
    weights, metrics = train_linear(emb, table, tokenizer, cfg, log=log, **kw)
    drift = float(np.abs(weights["w_emb"].astype(np.float64) - router.w_emb).max())
    if drift > 1e-4:
        raise ExportError(f"{folder}: retraining from the recorded config does not reproduce the artifact "
                          f"(max |Δw_emb| {drift:.3g}); its out-of-fold scores would not be this head's")
    a, c = metrics["platt"]["a"], metrics["platt"]["c"]
    raw = 1.0 / (1.0 + np.exp(-(a * metrics["oof_gain"] + c)))
    keep = ~np.isnan(table.gain) & ~np.isnan(raw)
    if sources:
        keep &= np.isin(table.source, list(sources))
    desc = (f"out-of-fold scores of the artifact's {cfg.folds}-fold training run (folds grouped by prompt start), "
            f"{int(keep.sum())} training prompts of {', '.join(sources) if sources else 'every source'}")
    return raw[keep], table.strong[keep], table.weak[keep], desc


# ---------------------------------------------------------------------------------------- artifact
def apply_prob_map(folder: Path, pm: ProbMap | None, record: dict, router=None) -> dict:
    """Rewrite the artifact (atomically, weights untouched) with ``pm`` as its ``prob_map`` (None:
    remove it) and its calibration table moved to the new scale (``router``: the artifact already loaded)."""
    import routekit
    from routekit import artifact

    folder = Path(folder)
    router = router or routekit.load(folder)
    old = ProbMap.from_manifest(router.manifest)
    section = None if pm is None else {**pm.to_section(), **record}
    cal = router.manifest.get("calibration")
    if cal:
        identity = ProbMap("platt", a=1.0, b=0.0)
        cal = (pm or identity).map_calibration(cal, inverse_of=old)
    with artifact.rewrite(router.manifest, folder, overwrite=True, drop=("prob_map",)) as w:
        if cal:
            w.manifest["calibration"] = cal
        if section is not None:
            w.manifest["prob_map"] = section
    return section or {}


def recalibrate_map(folder: Path, *, kind: str, labels: Sequence[str], data_dir: Path, target: str = "soft",
                    sources: Sequence[str] | None = GOLDEN_SOURCES, log=print) -> dict:
    """Fit a map of ``kind`` (``none``: remove the map) on ``labels`` (``["oof"]`` or labelled files)
    and store it in the artifact; returns the stored section."""
    import routekit

    folder = Path(folder)
    if kind == "none":
        return apply_prob_map(folder, None, {})
    router = routekit.load(folder)
    if not router.is_default_pair:  # pragma: no cover - load() gives the default pair
        raise ExportError("a probability map is stored for the artifact's default pair only")
    raws, ys, descs = [], [], []
    for spec in labels:
        if spec == "oof":
            raw, s, w, desc = oof_labels(folder, data_dir, sources, log=log, router=router)
        else:
            prompts, s, w, desc = file_labels(Path(spec), router)
            raw = raw_win_rates(router, prompts)
        raws.append(raw)
        ys.append(targets_from(s, w, target))
        descs.append(desc)
    raw, y = np.concatenate(raws), np.concatenate(ys)
    pm = fit_prob_map(raw, y, kind)
    record = {"target": "P(strong wins), a tie counting half" if target == "soft" else "P(strong strictly better)",
              "fitted_on": "; ".join(descs), "n": int(raw.size),
              "ece_before": round(ece(raw, y), 4), "ece_after": round(ece(pm(raw), y), 4),
              "fitted": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    log(f"{folder}: {kind} map on {raw.size} labels: ECE {record['ece_before']} -> {record['ece_after']} "
        f"(in-sample, 10 equal-width bins)")
    return apply_prob_map(folder, pm, record, router=router)


def add_arguments(p) -> None:
    """The ``--prob-map*`` options of ``routekit-export recalibrate``."""
    p.add_argument("--prob-map", choices=["platt", "isotonic", "none"], default=None,
                   help="fit a calibrated win-rate map of this kind and store it (none: remove the map); the "
                        "calibration table is moved to the new scale and the thresholds are not recomputed "
                        "(default: no map change, recompute the thresholds on the traffic mix)")
    p.add_argument("--prob-map-labels", nargs="+", default=["oof"], metavar="oof|FILE",
                   help="held-out labels: oof (a linear artifact's out-of-fold training scores) and/or labelled "
                        "files the artifact was not trained on (golden.jsonl rows or a labelled CSV/JSONL) "
                        "(default: oof)")
    p.add_argument("--prob-map-target", choices=list(TARGETS), default="soft",
                   help="soft: P(strong wins) with ties half; strict: P(strong strictly better) (default: %(default)s)")
    p.add_argument("--prob-map-sources", default=",".join(GOLDEN_SOURCES),
                   help="with oof: training sources whose rows are used, comma-separated; 'all' for every "
                        "source (default: %(default)s)")


def run(args) -> int:
    sources = None if args.prob_map_sources == "all" else tuple(s for s in args.prob_map_sources.split(",") if s)
    for folder in args.artifact:
        sec = recalibrate_map(folder, kind=args.prob_map, labels=args.prob_map_labels, data_dir=args.data,
                              target=args.prob_map_target, sources=sources,
                              log=lambda m: print(m, file=sys.stderr))
        print(f"{folder}: prob_map {json.dumps(sec)[:300]}", file=sys.stderr)
    return 0
