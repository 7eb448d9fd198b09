"""Train the linear-head router (``kind: linear``) on pair labels and multi-model difficulty.

Signal (all permissive; AlpacaEval is never read):

* **pair gain** per prompt: ``golden.jsonl`` correctness of the strong and weak model
  (MMLU gold-train split, RouterBench ARC / Winogrande / MBPP) -> strong − weak ∈ {−1, 0, 1};
  Arena-Bench judge scores of the pair (``multi_model_scores.jsonl``) -> (s − w) / 10.
* **difficulty** per prompt: the fraction of RouterBench's 11 models that fail it (Arena-Bench:
  1 − mean score / 10).  A ridge model on the embedding (+ surface features) predicts it; its
  prediction is one more input of the gain model (stacking), folded into the linear weights.

The gain model is a kernel (dual) ridge regression over ``[c_e·embedding, c_b·tfidf(word pieces),
c_f·surface features, c_d·difficulty]``; the block scales act as per-block regularisation.  Rows
weigh by source (:data:`DEFAULT_SOURCE_WEIGHTS`; unlisted golden / Arena-Bench rows
``other_weight``).  K-fold cross-validation, grouped by the first :data:`CV_GROUP_CHARS` characters
(MMLU questions that share a reading passage fall in one fold), gives out-of-fold gains, their
APGR per source (for model selection) and the Platt map
P(strong wins) = σ(a·g + c) fitted on soft targets (1 + gain) / 2.
"""

from __future__ import annotations

import argparse
import datetime as _dt
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from routekit.cli.common import Command
from routekit.routers.linear import (
    FEATURE_NAMES,
    clean_text,
    load_bow_tokenizer,
    part_texts,
    text_features,
    token_ids,
)

from . import data as D

MMLU = D.MMLU


#: Row weights per training source, chosen by CV (MMLU gold-train APGR) and the everyday dev suite
#: (docs/quality.md, "Round 2", "Round 2b" and "Round 3": length 2.0 and everyday 4.0, with the hard length
#: rows' gain mixture.LENGTH_HARD_GAIN; length 2.0 was chosen over 1.0 once the calibration mix held long
#: easy requests; paste 1.0 by CV, bench/linear_weights.py: the length rows' out-of-fold AUC 0.946 -> 0.981
#: for -0.008 CV MMLU, where weight 2 buys +0.007 AUC for -0.014 more); unlisted golden / Arena-Bench rows weigh
#: other_weight.
DEFAULT_SOURCE_WEIGHTS = {"mmlu": 0.7, "everyday": 4.0, "crux": 0.3, "math-l5": 0.05, "gsm8k-train": 0.3,
                          "arena-human": 0.2, "length": 2.0, "paste": 1.0}
#: Cross-validation groups prompts by their first characters: 113 of the 1,501 MMLU gold-train
#: questions share a passage or a long stem with another, and random folds let the head memorise it
#: (the shipped head's CV MMLU APGR was 0.683 with random folds, 0.634-0.638 grouped).
CV_GROUP_CHARS = 100


@dataclass
class LinearConfig:
    emb_scale: float = 0.05
    bow_scale: float = 0.3
    feat_scale: float = 0.3
    diff_scale: float = 0.3
    other_weight: float = 0.1  # weight of golden / Arena-Bench rows whose source has no source_weights entry
    ridge: float = 1.0  # λ of the gain model (on the scaled blocks)
    diff_ridge: float = 10.0  # λ of the difficulty model
    diff_feat_scale: float = 0.3
    min_df: int = 3  # word pieces seen in fewer training prompts are dropped
    folds: int = 5
    seed: int = 0
    #: per-source row weights overriding ``other_weight`` (e.g. {"everyday": 1.0, "crux": 0.3})
    source_weights: dict = field(default_factory=lambda: dict(DEFAULT_SOURCE_WEIGHTS))
    #: extra training sources from :mod:`.mixture` (everyday prompts, code reasoning, maths, Arena votes)
    extra: tuple = ("everyday", "crux", "math-l5", "arena-human", "gsm8k-train", "length", "paste")
    gsm8k_limit: int = 1000  # GSM8K train questions drawn for the ``gsm8k-train`` source
    #: "mix": thresholds calibrated on the reference traffic mix (build.TRAFFIC_MIX); "arena": Arena-Hard only
    calibration: str = "mix"
    #: of the calibration prompts, for the default threshold; None: on the mix, the share of its
    #: traffic that needs the strong model (build.strong_share(): 0.5 x 0.671 arena-hard + 0.1 x 0.176
    #: gsm8k-train = 0.353),
    #: on Arena-Hard alone 0.5
    default_strong_fraction: float | None = None
    #: scale of two more embedding blocks, of a long prompt's first and last ``part_chars`` characters
    #: (:func:`~routekit.routers.linear.prompt_parts`; prompts of at most 2 × part_chars characters use
    #: their whole embedding there); 0 = off.  The encoder sees a long prompt's pasted content and
    #: truncates it; the instruction sits at one of its ends.
    part_scale: float = 0.0
    part_chars: int = 200
    #: surface features left out (weight 0 in the gain and the difficulty model), e.g. the raw lengths
    feat_drop: tuple = ()


@dataclass
class PromptTable:
    prompts: list[str]
    source: np.ndarray  # short source name per prompt: mmlu, arc-challenge, winogrande, mbpp, arena
    strong: np.ndarray  # quality of the strong model (NaN = unknown)
    weak: np.ndarray
    difficulty: np.ndarray  # NaN where only the pair was scored
    sources: dict  # full source name -> {rows, license}

    @property
    def gain(self) -> np.ndarray:
        return self.strong - self.weak

    def __len__(self) -> int:
        return len(self.prompts)


def _short(source: str) -> str:
    return MMLU if "mmlu" in source else source.split(" ")[0].split("/")[-1] if "/" in source else source


def load_prompt_table(data_dir: Path | None = None, extra: tuple[str, ...] = (), *,
                      gsm8k_limit: int = 1000, log=print) -> PromptTable:
    """One row per unique training prompt with pair qualities and multi-model difficulty;
    ``extra`` adds sources from :mod:`.mixture` (a prompt already present keeps its first label)."""
    from .mixture import extra_rows

    train = Path(data_dir or D.default_data_dir()) / "train"
    rows: dict[str, dict] = {}
    sources: dict[str, dict] = {}

    def note(src, lic, file):
        info = sources.setdefault(src, {"license": lic})
        info[file] = info.get(file, 0) + 1  # rows read from that file

    for g in D.golden_rows(train / "golden.jsonl"):
        rows.setdefault(g.prompt, {}).update(src=_short(g.source), s=float(g.strong_correct), w=float(g.weak_correct))
        note(g.source, g.license, "golden.jsonl")
    for r in D.score_rows(train / "multi_model_scores.jsonl"):
        sc = {D.ALIASES.get(k, k): v for k, v in r.scores.items()}
        if not sc:
            continue
        src = r.source
        scale = 10.0 if max(sc.values()) > 1.0 or "score 1-10" in r.label_kind else 1.0
        d = rows.setdefault(r.prompt, {})
        d.setdefault("src", _short(src))
        d["diff"] = 1.0 - float(np.mean(list(sc.values()))) / scale
        if "s" not in d and D.STRONG in sc and D.WEAK in sc:
            d["s"], d["w"] = sc[D.STRONG] / scale, sc[D.WEAK] / scale
        note(src, r.license, "multi_model_scores.jsonl")
    for row in extra_rows(train.parent, extra, gsm8k_limit=gsm8k_limit, log=log) if extra else ():
        if row.prompt not in rows:
            rows[row.prompt] = {"src": row.source, "s": row.strong, "w": row.weak, "diff": row.difficulty}
            note(row.origin, row.license, "prompts")
    prompts = list(rows)
    get = lambda k: np.array([rows[p].get(k, np.nan) for p in prompts], np.float64)  # noqa: E731
    return PromptTable(prompts, np.array([rows[p]["src"] for p in prompts]), get("s"), get("w"), get("diff"),
                       sources)


# ------------------------------------------------------------------------------------------ features


def surface_features(prompts: list[str]) -> np.ndarray:
    return np.array([text_features(clean_text(p)) for p in prompts], np.float64).reshape(len(prompts), -1)


def build_vocab(ids: list[np.ndarray], min_df: int) -> tuple[np.ndarray, np.ndarray]:
    """Word-piece ids kept (seen in >= min_df prompts) and their smoothed idf."""
    df: dict[int, int] = {}
    for row in ids:
        for t in np.unique(row).tolist():
            df[t] = df.get(t, 0) + 1
    keep = np.array(sorted(t for t, c in df.items() if c >= min_df), np.int64)
    n = len(ids)
    idf = np.array([np.log((1 + n) / (1 + df[t])) + 1.0 for t in keep.tolist()], np.float64)
    return keep, idf


def tfidf_matrix(ids: list[np.ndarray], vocab: np.ndarray, idf: np.ndarray) -> np.ndarray:
    from routekit.routers.linear import tfidf_rows

    col_of_id = np.full(int(vocab.max(initial=-1)) + 1, -1, np.int64)
    col_of_id[vocab] = np.arange(len(vocab))
    out = np.zeros((len(ids), len(vocab)), np.float32)
    for r, (cols, vals) in enumerate(tfidf_rows(ids, col_of_id, idf)):
        out[r, cols] = vals
    return out


def cv_folds(prompts: list[str], folds: int, seed: int) -> np.ndarray:
    """Fold of every row; rows whose prompts start with the same :data:`CV_GROUP_CHARS` characters
    share one (a passage shared by several questions never straddles train and test).  A start shared
    by more than 1/``folds`` of the rows is a template or system prompt, not a passage: those rows are
    grouped by their whole text.  Every fold that can get a group gets one."""
    from collections import Counter

    starts = Counter(p[:CV_GROUP_CHARS] for p in prompts)
    big = {k for k, c in starts.items() if c > len(prompts) / folds}
    group: dict[str, int] = {}
    keys = np.array([group.setdefault(p if p[:CV_GROUP_CHARS] in big else p[:CV_GROUP_CHARS], len(group))
                     for p in prompts], np.int64)
    rng = np.random.default_rng(seed)
    of_group = rng.integers(0, folds, len(group))
    if len(set(of_group.tolist())) < min(folds, len(group)):  # a tiny set: deal the groups round-robin
        of_group = rng.permutation(len(group)) % folds
    return of_group[keys]


def _ridge(X: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """Primal ridge with an unpenalised intercept (last column of X must be ones)."""
    A = X.T @ X + lam * np.eye(X.shape[1])
    A[-1, -1] -= lam
    return np.linalg.solve(A, X.T @ y)


def _platt(g: np.ndarray, target: np.ndarray, iters: int = 50) -> tuple[float, float]:
    """(a, c) minimising cross-entropy of σ(a·g + c) against soft targets in [0, 1] (Newton)."""
    a, c = 1.0, 0.0
    Xg = np.stack([g, np.ones_like(g)], 1)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(a * g + c)))
        grad = Xg.T @ (p - target)
        H = (Xg * (p * (1 - p))[:, None]).T @ Xg + 1e-6 * np.eye(2)
        step = np.linalg.solve(H, grad)
        a, c = a - step[0], c - step[1]
        if np.abs(step).max() < 1e-10:
            break
    return float(a), float(c)


class _Fit:
    """Difficulty model + dual ridge gain model on a subset of rows; predicts g for any rows."""

    def __init__(self, cfg: LinearConfig, X, Fz, K_base, gain, diff, weight, train: np.ndarray):
        self.cfg = cfg
        dm = train & ~np.isnan(diff)
        Xd = np.hstack([X, cfg.diff_feat_scale * Fz, np.ones((len(X), 1))])
        self.delta = _ridge(Xd[dm], diff[dm], cfg.diff_ridge)
        d_raw = Xd @ self.delta
        self.d_mean, self.d_std = float(d_raw[dm].mean()), float(d_raw[dm].std() + 1e-12)
        self.d = (d_raw - self.d_mean) / self.d_std
        gm = train & ~np.isnan(gain) & (weight > 0)
        self.rows = np.flatnonzero(gm)
        y, w = gain[gm], weight[gm]
        self.mu = float(np.average(y, weights=w))
        dd = cfg.diff_scale * self.d
        K = K_base[np.ix_(self.rows, self.rows)] + np.outer(dd[gm], dd[gm])
        K[np.diag_indices_from(K)] += cfg.ridge / w
        self.alpha = np.linalg.solve(K, y - self.mu)

    def predict(self, K_base_cols: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """g for rows ``idx`` given K_base[idx][:, self.rows]."""
        dd = self.cfg.diff_scale * self.d
        return K_base_cols @ self.alpha + dd[idx] * (dd[self.rows] @ self.alpha) + self.mu


def part_embeddings(encoder, prompts: list[str], emb: np.ndarray, part_chars: int, **kw) -> tuple:
    """(head, tail) embeddings of each prompt as the runtime computes them (:func:`part_texts`):
    the whole prompt's embedding for short prompts, the ends' for long ones."""
    H, T = np.array(emb, np.float32), np.array(emb, np.float32)
    long_, heads, tails = part_texts(prompts, part_chars)
    if long_:
        from .embed import embed_texts

        pe = embed_texts(encoder, heads + tails, **kw)
        H[long_], T[long_] = pe[:len(long_)], pe[len(long_):]
    return H, T


def design(emb: np.ndarray, table: PromptTable, tokenizer, min_df: int, parts: tuple | None = None) -> dict:
    """The inputs of the head that do not depend on weights or block scales (features and their
    Gram matrices; the tf-idf Gram is the expensive part), reusable across configurations.
    ``parts``: the (head, tail) embeddings of :func:`part_embeddings`, for ``part_scale`` > 0."""
    X = np.asarray(emb, np.float64)
    F = surface_features(table.prompts)
    f_mean, f_std = F.mean(0), F.std(0) + 1e-9
    Fz = (F - f_mean) / f_std
    ids = token_ids(tokenizer, [clean_text(p) for p in table.prompts])
    vocab, idf = build_vocab(ids, min_df)
    B = tfidf_matrix(ids, vocab, idf)
    out = {"X": X, "F": F, "f_mean": f_mean, "f_std": f_std, "Fz": Fz, "vocab": vocab, "idf": idf, "B": B,
           "XX": X @ X.T, "BB": (B @ B.T).astype(np.float64), "min_df": min_df}
    if parts is not None:
        H, T = (np.asarray(x, np.float64) for x in parts)
        out.update(H=H, T=T, PP=H @ H.T + T @ T.T)
    return out


def train_linear(emb: np.ndarray, table: PromptTable, tokenizer, cfg: LinearConfig,
                 *, log=print, prepared: dict | None = None, parts: tuple | None = None
                 ) -> tuple[dict[str, np.ndarray], dict]:
    """Fit the linear head; returns (arrays for ``linear.npz``, metrics incl. cross-validated APGR).

    ``prepared``: :func:`design` of the same rows (and ``cfg.min_df``), to skip recomputing it;
    ``parts``: the rows' (head, tail) embeddings (:func:`part_embeddings`), needed when
    ``cfg.part_scale`` > 0."""
    from routekit.eval import EvalDataError, apgr

    n = len(table)
    d = prepared if prepared is not None and prepared["min_df"] == cfg.min_df else design(
        emb, table, tokenizer, cfg.min_df, parts)
    if cfg.part_scale > 0 and "PP" not in d:
        raise ValueError("part_scale > 0 needs the rows' part embeddings (parts=)")
    unknown = set(cfg.feat_drop) - set(FEATURE_NAMES)
    if unknown:
        raise ValueError(f"unknown surface features {sorted(unknown)}; known: {', '.join(FEATURE_NAMES)}")
    keep_feat = np.array([f not in cfg.feat_drop for f in FEATURE_NAMES], np.float64)
    X, F, f_mean, f_std, vocab, idf, B = (d[k] for k in ("X", "F", "f_mean", "f_std", "vocab", "idf", "B"))
    Fz = d["Fz"] * keep_feat
    log(f"linear head: {n} prompts, {len(vocab)} word pieces, {F.shape[1]} surface features")
    gain, diff = table.gain, table.difficulty
    weight = np.array([cfg.source_weights.get(s, 1.0 if s == MMLU else cfg.other_weight)
                       for s in table.source.tolist()], np.float64)
    c = cfg
    K_base = (c.emb_scale ** 2) * d["XX"] + (c.feat_scale ** 2) * (Fz @ Fz.T) + (c.bow_scale ** 2) * d["BB"]
    if c.part_scale > 0:
        K_base += (c.part_scale ** 2) * d["PP"]

    fold = cv_folds(table.prompts, cfg.folds, cfg.seed)
    oof = np.full(n, np.nan)
    for f in range(cfg.folds):
        te = np.flatnonzero(fold == f)
        fit = _Fit(cfg, X, Fz, K_base, gain, diff, weight, fold != f)
        oof[te] = fit.predict(K_base[np.ix_(te, fit.rows)], te)
    cv = {}
    for src in sorted(set(table.source.tolist())):
        m = (table.source == src) & ~np.isnan(gain)
        try:
            cv[src] = round(apgr(oof[m], table.strong[m], table.weak[m]), 4)
        except EvalDataError:
            cv[src] = None
    has = ~np.isnan(gain)
    a, c0 = _platt(oof[has], (1.0 + gain[has]) / 2.0)
    log(f"cross-validated APGR by source: {cv}; Platt a={a:.3f} c={c0:.3f}")

    # final fit on all rows, folded into one linear map over (embedding, tf-idf, z-features)
    fit = _Fit(cfg, X, Fz, K_base, gain, diff, weight, np.ones(n, bool))
    al, r = fit.alpha, fit.rows
    w_emb = c.emb_scale ** 2 * (X[r].T @ al)
    w_bow = c.bow_scale ** 2 * (B[r].T @ al.astype(np.float32)).astype(np.float64)
    w_feat = c.feat_scale ** 2 * (Fz[r].T @ al)
    w_d = c.diff_scale ** 2 * float(fit.d[r] @ al)
    dim = X.shape[1]
    w_emb = w_emb + w_d * fit.delta[:dim] / fit.d_std
    w_feat = (w_feat + w_d * c.diff_feat_scale * fit.delta[dim:-1] / fit.d_std) * keep_feat
    bias = fit.mu + w_d * (fit.delta[-1] - fit.d_mean) / fit.d_std
    keep = w_bow != 0
    weights = {
        "w_emb": w_emb.astype(np.float32), "w_feat": w_feat.astype(np.float64),
        "feat_mean": f_mean, "feat_std": f_std, "feat_lo": F.min(0), "feat_hi": F.max(0),
        "bow_ids": vocab[keep], "bow_idf": idf[keep].astype(np.float64), "w_bow": w_bow[keep].astype(np.float64),
        "affine": np.array([bias, a, c0], np.float64),
    }
    g_parts = 0.0
    if c.part_scale > 0:
        weights["w_head"] = (c.part_scale ** 2 * (d["H"][r].T @ al)).astype(np.float32)
        weights["w_tail"] = (c.part_scale ** 2 * (d["T"][r].T @ al)).astype(np.float32)
        weights["parts"] = np.array([c.part_chars], np.int64)
        g_parts = d["H"] @ weights["w_head"].astype(np.float64) + d["T"] @ weights["w_tail"].astype(np.float64)
    # in-sample check that the folded weights reproduce the kernel model
    g_kernel = fit.predict(K_base[:, r], np.arange(n))
    g_folded = X @ w_emb + (B @ w_bow.astype(np.float32)).astype(np.float64) + Fz @ w_feat + g_parts + bias
    metrics = {
        "config": asdict(cfg),
        "cv_apgr": cv,
        "cv_note": (f"{cfg.folds}-fold out-of-fold APGR per training source (pair labels), prompts grouped by "
                    f"their first {CV_GROUP_CHARS} characters"),
        "platt": {"a": a, "c": c0},
        "prompts": n, "vocab": int(keep.sum()),
        "fold_check_max_abs": float(np.abs(g_kernel - g_folded).max()),
        "oof_gain": oof, "sources_of_rows": table.source,
    }
    return weights, metrics


# ------------------------------------------------------------------------------------------ dev metrics


def dev_metrics(router, data_dir: Path, *, n_boot: int = 1000) -> dict:
    """APGR, CPT(50 %) and a bootstrap 95 % CI on the dev benchmarks (undefined ones say why)."""
    from routekit.eval import EvalDataError, bootstrap_apgr, evaluate, load_benchmark

    root = Path(data_dir) / "dev" / "routellm-evals"
    out = {}
    for name in ("mmlu", "gsm8k", "mt-bench"):
        try:
            ev = load_benchmark(name, root)
        except EvalDataError as exc:
            out[name] = {"error": str(exc)}
            continue
        w = router.win_rates(ev.prompts)
        try:
            res = evaluate(w, ev, router.name)
            d = res.to_dict()
            lo, hi = bootstrap_apgr(w, ev, n_boot=n_boot)
            out[name] = {"n": len(ev), "apgr": round(float(d["apgr"]), 4),
                         "apgr_ci95": [round(lo, 4), round(hi, 4)],
                         "cpt50": d.get("cpt50"), "cpt80": d.get("cpt80"),
                         "dropped_contaminated": ev.n_dropped_contaminated}
        except EvalDataError as exc:
            out[name] = {"n": len(ev), "error": str(exc)}
    return out


# ------------------------------------------------------------------------------------------ artifact


def _suite_metrics(router, name: str = "everyday") -> dict:
    """A dev suite's report (never trained on; recorded for the record, not for fitting)."""
    from routekit.eval.suite import load_suite, suite_report

    rep = suite_report(router, load_suite(name))
    return {k: rep[k] for k in ("n", "auc", "default", "p30") if k in rep}


def build_linear(out: Path, *, encoder_dir: Path, data_dir: Path, cfg: LinearConfig,
                 calib_limit: int | None = None, overwrite: bool = False, name: str = "linear",
                 threads: int | None = None, measure_dev: bool = False) -> dict:
    import routekit
    from routekit import artifact

    from .build import (
        calibrate_in_place,
        calibration_prompts,
        copy_encoder,
        load_encoder,
        pair_fields,
        traffic_mix,
    )
    from .embed import embed_texts

    artifact.check_output_dir(out, overwrite=overwrite, inputs=[encoder_dir, data_dir])
    table = load_prompt_table(data_dir, tuple(cfg.extra), gsm8k_limit=cfg.gsm8k_limit)
    enc, spec = load_encoder(encoder_dir, threads=threads)
    emb = embed_texts(enc, table.prompts, encoder_key=spec["sha256"])
    tokenizer = load_bow_tokenizer(Path(encoder_dir) / spec["tokenizer"])
    parts = (part_embeddings(enc, table.prompts, emb, cfg.part_chars, encoder_key=spec["sha256"])
             if cfg.part_scale > 0 else None)
    weights, metrics = train_linear(emb, table, tokenizer, cfg, parts=parts)
    if cfg.calibration == "mix":
        prompts, cal_w, source, mix = traffic_mix(data_dir, limit=calib_limit)
    else:
        (prompts, source), cal_w, mix = calibration_prompts(data_dir, calib_limit), None, None
    with artifact.ArtifactWriter(out, overwrite=overwrite) as w:
        enc_section = copy_encoder(encoder_dir, w.dir)
        np.savez(w.dir / "linear.npz", **weights)
        w.manifest.update({
            "name": name, "kind": "linear",
            "description": ("Linear head on MiniLM-L6 embedding + word-piece tf-idf + surface features, "
                            "trained on pair golden labels and multi-model difficulty (stacked)"
                            + (f", plus {', '.join(cfg.extra)}" if cfg.extra else "")),
            **pair_fields([D.STRONG, D.WEAK]),
            "encoder": enc_section,
            "router": {"weights": "linear.npz", "features": list(FEATURE_NAMES), "max_chars": 4000,
                       **({"part_chars": cfg.part_chars} if cfg.part_scale > 0 else {})},
            "training": {
                "prompts": len(table), "sources": table.sources,
                "noncommercial_rows_included": False,
                "note": ("golden.jsonl + multi_model_scores.jsonl" + (" + export/mixture.py sources "
                         f"{list(cfg.extra)} (labels documented there)" if cfg.extra else " only")
                         + "; AlpacaEval (CC BY-NC 4.0) never read"),
            },
            "metrics": {k: metrics[k] for k in ("config", "cv_apgr", "cv_note", "platt", "vocab",
                                                  "fold_check_max_abs")},
        })
        calibrate_in_place(w, prompts, source, weights=cal_w, mix=mix,
                           default_strong_fraction=cfg.default_strong_fraction)
        w.write_manifest()
        router = routekit.load(w.dir)  # calibrated; the metrics added below do not change its scores
        w.manifest["metrics"]["everyday_suite"] = _suite_metrics(router)
        w.manifest["metrics"]["length_suite"] = _suite_metrics(router, "length")
        if measure_dev:
            dev = dev_metrics(router, data_dir)
            w.manifest["metrics"]["dev"] = {
                "data": "shared/data/dev/routellm-evals (contaminated prompts dropped)",
                "measured": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                **dev}
            metrics["dev"] = dev
    return metrics


# ------------------------------------------------------------------------------------------ CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register ``routekit-export train-linear``."""
    p.add_argument("--data", type=Path, default=D.default_data_dir(), help="data folder")
    p.add_argument("--encoder", type=Path, required=True, help="folder written by `routekit-export encoder`")
    p.add_argument("--out", type=Path, required=True, help="artifact folder to write")
    p.add_argument("--name", default=argparse.SUPPRESS, help="artifact name in the manifest (default: folder name)")
    p.add_argument("--calib-limit", type=int, default=None, help="calibrate on the first N prompts only (default: all)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads for embedding (default: all cores)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    d = LinearConfig()
    p.add_argument("--emb-scale", type=float, default=d.emb_scale, help="embedding block scale (smaller = more shrinkage)")
    p.add_argument("--bow-scale", type=float, default=d.bow_scale, help="word-piece tf-idf block scale")
    p.add_argument("--feat-scale", type=float, default=d.feat_scale, help="surface-feature block scale")
    p.add_argument("--diff-scale", type=float, default=d.diff_scale, help="stacked difficulty feature scale (0 = off)")
    p.add_argument("--other-weight", type=float, default=d.other_weight,
                   help="weight of golden / Arena-Bench pair labels whose source has no --source-weight "
                        "entry (default: %(default)s; the --source-weight defaults give mmlu its own)")
    p.add_argument("--part-scale", type=float, default=d.part_scale,
                   help="scale of the embeddings of a long prompt's first and last --part-chars characters "
                        "(default: %(default)s; 0 = off)")
    p.add_argument("--part-chars", type=int, default=d.part_chars,
                   help="characters of each end of a prompt longer than twice this (default: %(default)s)")
    p.add_argument("--feat-drop", default=",".join(d.feat_drop),
                   help="comma-separated surface features left out (default: %(default)r; known: "
                        + ", ".join(FEATURE_NAMES) + ")")
    p.add_argument("--ridge", type=float, default=d.ridge, help="L2 penalty of the head")
    p.add_argument("--min-df", type=int, default=d.min_df, help="word pieces in fewer prompts are dropped")
    p.add_argument("--folds", type=int, default=d.folds, help="cross-validation folds")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the folds")
    p.add_argument("--extra", default=",".join(d.extra),
                   help="comma-separated extra training sources from export/mixture.py "
                        "(everyday, crux, math-l5, arena-human, gsm8k-train, length, paste; empty = none)")
    p.add_argument("--source-weight", action="append", default=None, metavar="SOURCE=W",
                   help="row weight of one training source (repeatable; default: "
                        + (", ".join(f"{k}={v}" for k, v in d.source_weights.items()) or "none") + ")")
    p.add_argument("--gsm8k-limit", type=int, default=d.gsm8k_limit, help="GSM8K train questions to draw")
    p.add_argument("--calibration", choices=["mix", "arena"], default=d.calibration,
                   help="calibrate thresholds on the reference traffic mix or on Arena-Hard prompts only")
    p.add_argument("--default-strong-fraction", type=float, default=d.default_strong_fraction,
                   help="share of the calibration prompts the default threshold sends to strong (default: on the "
                        "mix, the share of its components that need the strong model, 0.6 with all of them; 0.5 "
                        "with --calibration arena)")
    p.add_argument("--dev-metrics", action="store_true",
                   help="measure APGR/CPT(50%%) with bootstrap CIs on <data>/dev and record them in the manifest")


def run_cli(args) -> int:
    import json
    import sys

    from routekit.errors import OutputError

    weights = dict(LinearConfig().source_weights)
    for item in args.source_weight or ():
        name, sep, val = item.partition("=")
        try:
            weights[name.strip()] = float(val)
        except ValueError:
            sep = ""
        if not sep:
            print(f"routekit-export: error: --source-weight expects SOURCE=NUMBER, got {item!r}", file=sys.stderr)
            return 2
    cfg = LinearConfig(emb_scale=args.emb_scale, bow_scale=args.bow_scale, feat_scale=args.feat_scale,
                       diff_scale=args.diff_scale, other_weight=args.other_weight, ridge=args.ridge,
                       min_df=args.min_df, folds=args.folds, seed=args.seed, source_weights=weights,
                       extra=tuple(x.strip() for x in args.extra.split(",") if x.strip()),
                       gsm8k_limit=args.gsm8k_limit, calibration=args.calibration,
                       default_strong_fraction=args.default_strong_fraction, part_scale=args.part_scale,
                       part_chars=args.part_chars,
                       feat_drop=tuple(x.strip() for x in args.feat_drop.split(",") if x.strip()))
    try:
        metrics = build_linear(args.out, encoder_dir=args.encoder, data_dir=args.data, cfg=cfg,
                               calib_limit=args.calib_limit, overwrite=args.force,
                               name=getattr(args, "name", None) or args.out.name, threads=args.threads,
                               measure_dev=args.dev_metrics)
    except (D.DataError, FileExistsError, OutputError) as exc:
        print(f"routekit-export: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"artifact": str(args.out), "cv_apgr": metrics["cv_apgr"], "dev": metrics.get("dev")},
                     indent=2))
    return 0


COMMAND = Command('train-linear', 'train the linear-head router (pair labels + stacked difficulty) and write its artifact', add_arguments, run_cli)
