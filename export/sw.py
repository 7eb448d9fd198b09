"""Build a similarity-weighted (SW) ranking artifact (RouteLLM paper §4.1).

Steps: load the training battles, fit a Bradley–Terry MLE over *models* on all of them, group the
models into tiers by an optimal 1-D k-means split of their ratings (paper: 10 tiers; the strong and
the weak model must end up in different tiers), embed every unique prompt once with the artifact's
encoder, store battles compactly (``battle_prompt`` int32, ``tier_a``/``tier_b`` uint8, ``outcome``
float32) with the embeddings in ``sw.npz``, optionally a FAISS index for ``mode="fast"``, and
calibrate through the runtime like every other artifact.

The weighting (``paper`` γ^(1+s) or ``reference`` γ^(1+s/max s)) and γ can be chosen by
prompt-grouped k-fold cross-validation on the training battles (:func:`cross_validate`): for every
held-out prompt the SW model is fitted on the other folds' battles and scored by the log-loss of
its held-out battles between the strong and the weak tier.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from routekit import artifact
from routekit.routers.sw.bradley_terry import DEFAULT_RIDGE, bt_fit
from routekit.routers.sw.model import SWModel

from . import data as D
from .build import (
    calibrate_in_place,
    calibration_prompts,
    copy_encoder,
    load_encoder,
    pair_fields,
    training_section,
)
from .embed import embed_texts

#: Grid searched by ``--gamma cv``: (weighting, gamma).
CV_GRID = tuple([("paper", g) for g in (10.0, 1e2, 1e3, 1e4, 1e5, 1e6, 1e8)]
                + [("reference", g) for g in (10.0, 1e2, 1e3, 1e4, 1e6)])


@dataclass
class SWConfig:
    tiers: int = 10
    weighting: str = "paper"
    gamma: float | str = "cv"  # a number, or "cv" to pick (weighting, gamma) from CV_GRID
    k: int = 256  # default top-k of fast mode
    index: str = "auto"  # sw.faiss: auto (flat-fp16; hnsw above HNSW_ABOVE) | none | flat | flat-fp16 | hnsw
    embed_dtype: str = "float32"
    ridge: float = DEFAULT_RIDGE
    cv_folds: int = 5
    seed: int = 0


# --------------------------------------------------------------------------- tiers


def model_ratings(a: np.ndarray, b: np.ndarray, outcome: np.ndarray, n_models: int,
                  weights: np.ndarray | None = None) -> np.ndarray:
    """Bradley–Terry MLE strength of every model (natural-log logits, ties = ½ win each way)."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    o = np.asarray(outcome, np.float64)
    w = np.ones_like(o) if weights is None else np.asarray(weights, np.float64)
    wins = np.zeros((n_models, n_models))
    np.add.at(wins, (a, b), w * o)
    np.add.at(wins, (b, a), w * (1.0 - o))
    return bt_fit(wins, ridge=1e-6)


def compute_tiers(ratings: np.ndarray, n_tiers: int) -> np.ndarray:
    """Tier of every model (0 = lowest), splitting the sorted ratings into ``n_tiers`` contiguous
    groups with the least within-group sum of squares (optimal 1-D k-means, by dynamic programming).

    With fewer models than tiers every model gets its own tier."""
    r = np.asarray(ratings, np.float64)
    n = r.size
    k = max(1, min(int(n_tiers), n))
    order = np.argsort(r, kind="stable")
    x = r[order]
    c1 = np.concatenate([[0.0], np.cumsum(x)])
    c2 = np.concatenate([[0.0], np.cumsum(x * x)])

    def sse(i, j):  # cost of group x[i:j] (j exclusive), vectorised over i
        cnt = j - i
        s = c1[j] - c1[i]
        return c2[j] - c2[i] - s * s / np.maximum(cnt, 1)

    cost = np.full((k + 1, n + 1), np.inf)
    cut = np.zeros((k + 1, n + 1), dtype=np.int64)
    cost[0, 0] = 0.0
    for t in range(1, k + 1):
        for j in range(t, n + 1):
            i = np.arange(t - 1, j)
            c = cost[t - 1, i] + sse(i, j)
            best = int(np.argmin(c))
            cost[t, j], cut[t, j] = c[best], i[best]
    tiers_sorted = np.zeros(n, dtype=np.int64)
    j = n
    for t in range(k, 0, -1):
        i = cut[t, j]
        tiers_sorted[i:j] = t - 1
        j = i
    out = np.empty(n, dtype=np.int64)
    out[order] = tiers_sorted
    return out


# --------------------------------------------------------------------------- cross-validation


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def cross_validate(emb: np.ndarray, battle_prompt: np.ndarray, tier_a: np.ndarray, tier_b: np.ndarray,
                   outcome: np.ndarray, n_tiers: int, strong_tier: int, weak_tier: int,
                   grid=CV_GRID, *, folds: int = 5, seed: int = 0, ridge: float = DEFAULT_RIDGE,
                   pair_mask: np.ndarray | None = None) -> list[dict]:
    """Prompt-grouped k-fold CV of SW weightings on training battles.

    For each (weighting, gamma): held-out log-loss (nats per battle, ties as ½ targets) of the
    battles between the strong and the weak tier (``pair_logloss``; ``pair_mask`` narrows these down,
    e.g. to the battles of the exact model pair) and of all cross-tier battles
    (``all_logloss``), and the AUC of P(strong) on decisive strong-vs-weak battles (``pair_auc``)."""
    n_prompts = emb.shape[0]
    rng = np.random.default_rng(seed)
    fold_of = rng.permutation(n_prompts) % folds
    bp = np.asarray(battle_prompt, np.int64)
    ta, tb = np.asarray(tier_a, np.int64), np.asarray(tier_b, np.int64)
    o = np.asarray(outcome, np.float64)
    cross = ta != tb
    is_pair = cross & (((ta == strong_tier) & (tb == weak_tier)) | ((ta == weak_tier) & (tb == strong_tier)))
    if pair_mask is not None:  # e.g. only the battles of the exact strong/weak model pair
        is_pair &= np.asarray(pair_mask, bool)
    results = []
    for weighting, gamma in grid:
        loss_all, loss_pair, n_all, n_pair = 0.0, 0.0, 0, 0
        p_strong, y_strong = [], []
        for f in range(folds):
            test_prompts = np.flatnonzero(fold_of == f)
            train_prompts = np.flatnonzero(fold_of != f)
            remap = np.full(n_prompts, -1)
            remap[train_prompts] = np.arange(train_prompts.size)
            tr = remap[bp] >= 0
            model = SWModel(emb[train_prompts], remap[bp[tr]], ta[tr], tb[tr], o[tr], n_tiers,
                            weighting=weighting, gamma=gamma, ridge=ridge)
            theta = model.tier_ratings(emb[test_prompts])
            row = np.full(n_prompts, -1)
            row[test_prompts] = np.arange(test_prompts.size)
            te = (row[bp] >= 0) & cross
            r = row[bp[te]]
            d = theta[r, ta[te]] - theta[r, tb[te]]
            ll = -(o[te] * _log_sigmoid(d) + (1.0 - o[te]) * _log_sigmoid(-d))
            loss_all += ll.sum()
            n_all += ll.size
            pm = is_pair[te]
            loss_pair += ll[pm].sum()
            n_pair += int(pm.sum())
            # P(strong beats weak) and the strong tier's result, for decisive pair battles
            sign = np.where(ta[te][pm] == strong_tier, 1.0, -1.0)
            ps = 1.0 / (1.0 + np.exp(-sign * d[pm]))
            ys = np.where(sign > 0, o[te][pm], 1.0 - o[te][pm])
            dec = ys != 0.5
            p_strong.append(ps[dec])
            y_strong.append(ys[dec])
        ps, ys = np.concatenate(p_strong), np.concatenate(y_strong)
        results.append({"weighting": weighting, "gamma": gamma,
                        "pair_logloss": loss_pair / max(n_pair, 1), "all_logloss": loss_all / max(n_all, 1),
                        "pair_auc": _auc(ps, ys), "n_pair_battles": n_pair, "n_battles": n_all})
    return results


def _auc(score: np.ndarray, label: np.ndarray) -> float | None:
    pos, neg = score[label == 1], score[label == 0]
    if not pos.size or not neg.size:
        return None
    ranks = np.empty(score.size)
    order = np.argsort(score, kind="stable")
    ranks[order] = np.arange(1, score.size + 1)
    # average ranks of ties
    s_sorted = score[order]
    _, first, counts = np.unique(s_sorted, return_index=True, return_counts=True)
    for f, c in zip(first[counts > 1], counts[counts > 1]):
        ranks[order[f:f + c]] = f + (c + 1) / 2.0
    r_pos = ranks[label == 1].sum()
    return float((r_pos - pos.size * (pos.size + 1) / 2.0) / (pos.size * neg.size))


# --------------------------------------------------------------------------- artifact


#: Above this many training prompts the shipped index is HNSW (1.8 ms vs 71 ms per query for a
#: flat fp16 search at 55k prompts); at or below it a flat fp16 index (exact neighbours, half the
#: bytes of float32).  Exact stays the default mode at every size (fast's error grows with the
#: size at k=256): docs/sw.md has the measurements (bench/sw_scale.py).
HNSW_ABOVE = 50_000
INDEX_KINDS = ("auto", "none", "flat", "flat-fp16", "hnsw")


def _write_index(emb: np.ndarray, kind: str, path: Path) -> dict | None:
    """Write ``sw.faiss`` for fast mode; returns the manifest's ``router.index`` section.  Only the
    neighbours come from the index: fast mode recomputes their similarities from ``sw.npz``."""
    if kind == "none":
        return None
    import faiss

    if kind == "auto":
        kind = "hnsw" if len(emb) > HNSW_ABOVE else "flat-fp16"
    d = emb.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
        spec = {"type": "IndexFlatIP"}
    elif kind == "flat-fp16":
        index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
        spec = {"type": "IndexScalarQuantizer(fp16, inner product)"}
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 200
        spec = {"type": "IndexHNSWFlat(M=32, inner product)", "efSearch": 256}
    else:
        raise ValueError(f"unknown index kind {kind!r} ({', '.join(INDEX_KINDS)})")
    x = np.ascontiguousarray(emb, dtype=np.float32)
    index.train(x)
    index.add(x)
    faiss.write_index(index, str(path))
    return {"file": path.name, **spec}


def add_index(folder: Path, kind: str = "auto") -> dict | None:
    """Write ``sw.faiss`` into an existing SW artifact (its embeddings from ``sw.npz``) and list it in
    the manifest; ``kind`` "none" removes it.  Returns the ``router.index`` section.  The artifact is
    rewritten through :func:`routekit.artifact.rewrite`, as ``recalibrate`` does: an interrupted run
    leaves it as it was."""
    folder = Path(folder)
    m = artifact.read_manifest(folder, verify=True)
    if m.kind != "sw":
        raise ValueError(f"{folder} is a {m.kind} artifact, not sw")
    with np.load(m.path(m["router"].get("data", "sw.npz")), allow_pickle=False) as z:
        emb = z["embeddings"].astype(np.float32)
    router = dict(m["router"])
    with artifact.rewrite(m, folder, overwrite=True, skip=("sw.faiss",)) as w:
        spec = _write_index(emb, kind, w.dir / "sw.faiss")
        if spec is None:
            router.pop("index", None)
        else:
            router["index"] = spec
        w.manifest["router"] = router
    return spec


def build_sw(out: Path, *, encoder_dir: Path, data_dir: Path, cfg: SWConfig | None = None,
             allow_noncommercial: bool = False, limit: int | None = None, calib_limit: int | None = None,
             overwrite: bool = False, name: str = "sw", threads: int | None = None,
             extra: list[str] | None = None) -> dict:
    artifact.check_output_dir(out, overwrite=overwrite, inputs=[encoder_dir, data_dir])
    cfg = cfg or SWConfig()
    battles = D.load_training(data_dir, allow_noncommercial=allow_noncommercial, limit=limit, extra=extra)
    arr = battles.arrays()
    models = battles.models
    ratings = model_ratings(arr["a"], arr["b"], arr["outcome"], len(models))
    tier_of = compute_tiers(ratings, cfg.tiers)
    n_tiers = int(tier_of.max()) + 1
    model_tiers = {m: int(t) for m, t in zip(models, tier_of)}
    strong_tier, weak_tier = model_tiers[D.STRONG], model_tiers[D.WEAK]
    if strong_tier == weak_tier:
        raise D.DataError(
            f"{D.STRONG} and {D.WEAK} fall into the same tier ({strong_tier}) of {n_tiers}: SW could not "
            f"tell them apart; use more tiers (--tiers) or more data")

    enc, spec = load_encoder(encoder_dir, threads=threads)
    emb = embed_texts(enc, battles.prompts, encoder_key=spec["sha256"]).astype(np.float64)
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    emb = emb.astype(np.float32)
    ta, tb = tier_of[arr["a"]], tier_of[arr["b"]]

    weighting, gamma = cfg.weighting, cfg.gamma
    grid = CV_GRID if gamma == "cv" else ((weighting, float(gamma)),)
    s_id, w_id = models.index(D.STRONG), models.index(D.WEAK)
    exact_pair = ((arr["a"] == s_id) & (arr["b"] == w_id)) | ((arr["a"] == w_id) & (arr["b"] == s_id))
    cv = []
    if len(battles.prompts) >= 2 * cfg.cv_folds:
        cv = cross_validate(emb, arr["prompt"], ta, tb, arr["outcome"], n_tiers, strong_tier, weak_tier, grid,
                            folds=cfg.cv_folds, seed=cfg.seed, ridge=cfg.ridge,
                            pair_mask=exact_pair if exact_pair.any() else None)
    if gamma == "cv":
        if not cv:
            raise D.DataError(f"too few prompts ({len(battles.prompts)}) for {cfg.cv_folds}-fold CV; pass --gamma")
        best = min(cv, key=lambda r: r["pair_logloss"])
        weighting, gamma = best["weighting"], best["gamma"]
    gamma = float(gamma)

    prompts, source = calibration_prompts(data_dir, calib_limit)
    elo = 1000.0 + 400.0 / math.log(10.0) * (ratings - ratings.mean())
    with artifact.ArtifactWriter(out, overwrite=overwrite) as w:
        enc_section = copy_encoder(encoder_dir, w.dir)
        np.savez(w.dir / "sw.npz", embeddings=emb.astype(cfg.embed_dtype),
                 battle_prompt=arr["prompt"].astype(np.int32), tier_a=ta.astype(np.uint8),
                 tier_b=tb.astype(np.uint8), outcome=arr["outcome"].astype(np.float32))
        index_spec = _write_index(emb, cfg.index, w.dir / "sw.faiss")
        router = {"data": "sw.npz", "tiers": n_tiers, "model_tiers": model_tiers,
                  "weighting": weighting, "gamma": gamma, "ridge": cfg.ridge, "k": cfg.k,
                  "tier_method": "Bradley-Terry MLE over all training battles, optimal 1-D k-means split "
                                 "of the ratings into contiguous tiers (0 = lowest)"}
        if index_spec:
            router["index"] = index_spec
        same = int((ta == tb).sum())
        w.manifest.update({
            "name": name, "kind": "sw",
            "description": "Similarity-weighted ranking router (RouteLLM §4.1): per-prompt weighted "
                           "Bradley-Terry over model tiers, on MiniLM-L6 embeddings",
            **pair_fields(models),
            "encoder": enc_section,
            "router": router,
            "training": training_section(battles, allow_noncommercial),
            "metrics": {
                "model_elo": {m: round(float(e), 1) for m, e in sorted(zip(models, elo), key=lambda t: -t[1])},
                "strong_tier": strong_tier, "weak_tier": weak_tier,
                "battles_same_tier_ignored": same,
                "cross_validation": {
                    "folds": cfg.cv_folds, "seed": cfg.seed, "grouped_by": "prompt",
                    "selected_by": "pair_logloss" if cfg.gamma == "cv" else None,
                    "pair": "held-out battles of the exact strong/weak model pair",
                    "results": [{k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in r.items()}
                                for r in cv]},
                "config": {**asdict(cfg), "gamma": cfg.gamma},
            },
        })
        calibrate_in_place(w, prompts, source)
    return {"tiers": n_tiers, "strong_tier": strong_tier, "weak_tier": weak_tier, "weighting": weighting,
            "gamma": gamma, "battles": len(battles), "prompts": len(battles.prompts),
            "battles_same_tier_ignored": same, "cross_validation": cv}
