"""``routekit-export fit``: fit a router for *your* strong/weak pair from *your* labels.

1. read the label file (:mod:`.fit_data`: per-model quality records or pairwise battles);
2. embed every prompt once with the encoder (the shipped MiniLM int8 one unless ``--encoder``);
3. choose the candidate kinds the data size allows (:func:`candidate_kinds`);
4. k-fold cross-validation **grouped by prompt**, the same folds for every candidate: each kind is
   trained on the other folds with the existing trainers (``export/linear.py``, ``export/sw.py``,
   ``export/mf.py``) and scores the held-out prompts; APGR of the out-of-fold win rates with a
   bootstrap interval, next to random routing and the oracle;
5. the kind with the best CV APGR is trained on all labels and written as a normal artifact
   (calibrated on ``--calibration-prompts`` or on the labelled prompts), whose manifest records
   the label file's sha256, the row counts, the CV table and the choice.

The per-fold functions (:func:`fit_predict`) take embeddings, so ``bench/own_models.py`` reuses them
for learning curves.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from routekit.progress import progress

from .fit_data import LabelSet, prompt_folds

KINDS = ("irt", "linear", "sw", "mf", "bert")
#: Not a kind one trains: the prior (the shipped default's score) as it is, always cross-validated.
DEFAULT = "default"
#: Labelled prompts from which MF is a candidate without being asked for (it overfits small sets).
MF_MIN_PROMPTS = 500
#: ... and from which BERT fine-tuning is (hours of CPU below that buy nothing measurable here).
BERT_MIN_PROMPTS = 20_000
MIN_PROMPTS = 20
#: MF trains on at most this many battles (a seeded random subset beyond it).
MF_MAX_BATTLES = 200_000
#: (weighting, γ) searched for SW inside every training fold (inner 3-fold CV, pair log-loss).
SW_GRID = (("paper", 10.0), ("paper", 1e2), ("paper", 1e3), ("paper", 1e4), ("reference", 10.0), ("reference", 1e3))


def candidate_kinds(labels: LabelSet, asked: list[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """(kinds to cross-validate, why each other kind is left out)."""
    n = len(labels)
    if asked:
        bad = [k for k in asked if k not in KINDS]
        if bad:
            raise ValueError(f"unknown --kinds {', '.join(bad)} (known: {', '.join(KINDS)})")
        return list(dict.fromkeys([DEFAULT] + list(asked))), {}
    kinds, why = [DEFAULT, "irt", "linear", "sw"], {}
    if n >= MF_MIN_PROMPTS:
        kinds.append("mf")
    else:
        why["mf"] = f"{n} labelled prompts < {MF_MIN_PROMPTS} (ask with --kinds ... mf)"
    if n >= BERT_MIN_PROMPTS:
        kinds.append("bert")
    else:
        why["bert"] = f"{n} labelled prompts < {BERT_MIN_PROMPTS} (ask with --kinds ... bert; CPU hours)"
    return kinds, why


@dataclass
class FitInputs:
    """Labels plus what every trainer needs: embeddings of ``labels.battle_prompts`` (pair prompts
    first) and the encoder's tokenizer (for the linear head's bag of words)."""

    labels: LabelSet
    emb: np.ndarray
    tokenizer: object
    #: for "default" and "irt": the prior standardised over ``battle_prompts``, the centred embeddings
    #: and the pair's labels as :class:`routekit_export.irt.Observations` (models 0 = strong, 1 = weak)
    prior_d: np.ndarray | None = None
    irt_X: np.ndarray | None = None
    irt_obs: object = None
    bert_steps: int = 600
    mf_steps: int = 800
    torch_threads: int = 1
    seed: int = 0


# --------------------------------------------------------------------------- per-kind train + predict


def _linear_fit(inp: FitInputs, rows: np.ndarray):
    from .linear import LinearConfig, PromptTable, train_linear

    lab = inp.labels
    diff = lab.difficulty[rows]
    has_diff = np.isfinite(diff).sum() >= 10 and np.nanstd(diff) > 1e-6
    cfg = LinearConfig(other_weight=1.0, diff_scale=LinearConfig.diff_scale if has_diff else 0.0,
                       folds=min(5, max(2, len(rows) // 10)), seed=inp.seed)
    table = PromptTable([lab.prompts[i] for i in rows], np.array(["labels"] * len(rows)), lab.strong_q[rows],
                        lab.weak_q[rows], diff if has_diff else np.full(len(rows), 0.5),
                        {lab.path.name: {"rows": len(rows)}})
    weights, metrics = train_linear(inp.emb[rows], table, inp.tokenizer, cfg, log=lambda *a: None)
    return weights, metrics


def linear_gains(weights: dict, emb: np.ndarray, prompts: list[str], tokenizer) -> np.ndarray:
    """The linear score g of a weight set on prompts (what the runtime computes before its Platt map)."""
    from routekit.routers.linear import clean_text, text_features, tfidf_rows, token_ids

    texts = [clean_text(p) for p in prompts]
    raw = np.array([text_features(t) for t in texts], np.float64).reshape(len(texts), -1)
    feats = (np.clip(raw, weights["feat_lo"], weights["feat_hi"]) - weights["feat_mean"]) / weights["feat_std"]
    ids = weights["bow_ids"]
    col = np.full(int(ids.max(initial=-1)) + 1, -1, np.int64)
    col[ids] = np.arange(len(ids))
    bow = np.array([v @ weights["w_bow"][c] for c, v in tfidf_rows(token_ids(tokenizer, texts), col, weights["bow_idf"])])
    return np.asarray(emb, np.float64) @ weights["w_emb"] + bow + feats @ weights["w_feat"] + weights["affine"][0]


def _sw_prepare(inp: FitInputs, keep: np.ndarray):
    """Tiers and battles restricted to the prompts in ``keep`` (bool over battle_prompts)."""
    from .sw import compute_tiers, model_ratings

    b = inp.labels.battles
    m = keep[b["prompt"]]
    a, bb, o, p = b["a"][m], b["b"][m], b["outcome"][m], b["prompt"][m]
    n_models = len(inp.labels.models)
    ratings = model_ratings(a, bb, o, n_models)
    tiers = compute_tiers(ratings, min(10, n_models))
    if tiers[0] == tiers[1]:  # strong and weak must be apart: one tier per model
        tiers = np.argsort(np.argsort(ratings, kind="stable"), kind="stable")
    remap = np.full(keep.size, -1)
    remap[np.flatnonzero(keep)] = np.arange(int(keep.sum()))
    return {"emb": inp.emb[keep], "prompt": remap[p], "ta": tiers[a], "tb": tiers[bb], "outcome": o,
            "tiers": int(tiers.max()) + 1, "tier_of": tiers, "ratings": ratings,
            "pair_mask": ((a == 0) & (bb == 1)) | ((a == 1) & (bb == 0))}


def _sw_choose(d: dict, seed: int) -> tuple[str, float, list[dict]]:
    from .sw import cross_validate

    st, wt = int(d["tier_of"][0]), int(d["tier_of"][1])
    if d["emb"].shape[0] < 30:
        return "paper", 1e2, []
    res = cross_validate(d["emb"], d["prompt"], d["ta"], d["tb"], d["outcome"], d["tiers"], st, wt, SW_GRID,
                         folds=3, seed=seed, pair_mask=d["pair_mask"] if d["pair_mask"].any() else None)
    best = min(res, key=lambda r: r["pair_logloss"])
    return best["weighting"], float(best["gamma"]), res


def _sw_model(d: dict, weighting: str, gamma: float):
    from routekit.routers.sw import SWModel

    return SWModel(d["emb"], d["prompt"], d["ta"], d["tb"], d["outcome"], d["tiers"], weighting=weighting,
                   gamma=gamma, precision="float32")


def _mf_cfg(n_battles: int, seed: int, steps: int = 800):
    """About ``steps`` optimiser steps (at least 8 epochs): large battle sets get larger batches (with
    a larger step size), small ones smaller batches, so one fit stays within seconds on CPU."""
    from .mf import MFConfig

    batch = int(min(max(64, math.ceil(n_battles * 8 / steps)), max(8, n_battles // 8)))
    per_epoch = max(1, math.ceil(n_battles / batch))
    epochs = int(min(200, max(8, math.ceil(steps / per_epoch))))
    return MFConfig(epochs=epochs, batch_size=batch, lr=3e-4 if batch <= 64 else 1e-3, val_fraction=0.0, seed=seed)


def _mf_fit(inp: FitInputs, keep: np.ndarray):
    from .mf import train_mf

    b = inp.labels.battles
    m = np.flatnonzero(keep[b["prompt"]])
    if m.size > MF_MAX_BATTLES:  # e.g. 40 models scored per prompt: a random subset keeps memory bounded
        m = np.sort(np.random.default_rng(inp.seed).choice(m, MF_MAX_BATTLES, replace=False))
    arrays = {k: v[m] for k, v in b.items()}
    cfg = _mf_cfg(int(m.size), inp.seed, inp.mf_steps)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(inp.torch_threads)  # MF's steps are tiny: extra threads only wait on each other
    try:
        weights, metrics, _ = train_mf(inp.emb, arrays, len(inp.labels.models), cfg, show_progress=False)
    finally:
        torch.set_num_threads(threads)
    return weights, metrics


def mf_scores(weights: dict, emb: np.ndarray, strong: int = 0, weak: int = 1) -> np.ndarray:
    a = (weights["model_emb"][strong].astype(np.float64) - weights["model_emb"][weak]) * weights["head"]
    return (np.asarray(emb, np.float64) @ (a @ weights["proj_w"]) + a @ weights["proj_b"])


def _bert_examples(inp: FitInputs, rows: np.ndarray):
    from .bert import Examples

    lab = inp.labels
    s, w = lab.strong_q[rows], lab.weak_q[rows]
    gain = np.clip(s - w, -1.0, 1.0)  # target: P(strong wins), P(tie), P(weak wins)
    targets = [[max(g, 0.0), 1.0 - abs(g), max(-g, 0.0)] for g in gain.tolist()]
    return Examples([lab.prompts[i] for i in rows], targets, {lab.path.name: {"rows": len(rows)}})


def _bert_fit(inp: FitInputs, rows: np.ndarray, work: Path):
    from .bert import BertTrainConfig, train_bert
    from .encoder import minilm_dir

    cfg = BertTrainConfig(steps=inp.bert_steps, val_fraction=0.0, seed=inp.seed, save_every=10 ** 9)
    model_dir, _ = train_bert(_bert_examples(inp, rows), minilm_dir(), work, cfg)
    return model_dir, cfg


def fit_predict(kind: str, inp: FitInputs, train_rows: np.ndarray, test_rows: np.ndarray,
                extra_train: np.ndarray | None = None, *, work: Path | None = None) -> np.ndarray:
    """Train ``kind`` on the pair prompts ``train_rows`` (indices into ``labels.prompts``) plus, for SW
    and MF, the battles of ``extra_train`` (bool over ``battle_prompts``: prompts without the pair's
    labels); return scores (higher = strong needed) for the pair prompts ``test_rows``."""
    lab = inp.labels
    keep = np.zeros(len(lab.battle_prompts), bool) if extra_train is None else extra_train.copy()
    keep[train_rows] = True
    keep[test_rows] = False
    test_prompts = [lab.prompts[i] for i in test_rows]
    if kind in (DEFAULT, "irt") and inp.prior_d is None:
        raise ValueError(f"kind {kind!r} needs the prior (FitInputs.prior_d)")
    if kind == DEFAULT:
        return inp.prior_d[np.asarray(test_rows)]
    if kind == "irt":
        from . import irt as T

        mask = np.zeros(len(lab.battle_prompts), bool)
        mask[train_rows] = True
        params = T.fit(inp.prior_d, inp.irt_X, inp.irt_obs.subset(mask), [lab.strong, lab.weak], T.PAIR_CONFIG,
                       alpha0=T.prior_alpha([lab.strong, lab.weak], lab.strong, lab.weak))
        rows = np.asarray(test_rows)
        return T.pair_win_rate(params.theta(inp.prior_d[rows], inp.irt_X[rows]), bool(params.absolute.all()))
    if kind == "linear":
        weights, _ = _linear_fit(inp, np.asarray(train_rows))
        return linear_gains(weights, inp.emb[test_rows], test_prompts, inp.tokenizer)
    if kind == "sw":
        d = _sw_prepare(inp, keep)
        weighting, gamma, _ = _sw_choose(d, inp.seed)
        return _sw_model(d, weighting, gamma).scores(inp.emb[test_rows], int(d["tier_of"][0]), int(d["tier_of"][1]))
    if kind == "mf":
        weights, _ = _mf_fit(inp, keep)
        return mf_scores(weights, inp.emb[test_rows])
    if kind == "bert":
        from .bert import torch_p_strong

        model_dir, cfg = _bert_fit(inp, np.asarray(train_rows), Path(work or "build/fit-bert") / "cv")
        return torch_p_strong(model_dir, test_prompts, max_length=cfg.max_length)
    raise ValueError(f"unknown kind {kind!r}")


# --------------------------------------------------------------------------- cross-validation


def score_table(scores: dict[str, np.ndarray], strong_q: np.ndarray, weak_q: np.ndarray, *,
                n_boot: int = 1000, seed: int = 0) -> dict:
    """APGR + bootstrap 95 % interval per scored candidate, random (mean ± sd of 10 seeds), oracle."""
    from routekit.eval import (
        EvalSet,
        apgr,
        bootstrap_apgr,
        optimal_curve,
        random_baseline,
    )

    ev = EvalSet("labels", [""] * len(strong_q), np.asarray(strong_q, float), np.asarray(weak_q, float), 0, "")
    rows = {}
    for kind, s in scores.items():
        lo, hi = bootstrap_apgr(s, ev, n_boot=n_boot, seed=seed)
        ci = [round(lo, 4), round(hi, 4)] if np.isfinite(lo) and np.isfinite(hi) else None  # None: no valid resample
        rows[kind] = {"apgr": round(apgr(s, ev.strong, ev.weak), 4), "apgr_ci95": ci}
    rnd = random_baseline(ev, 10)
    return {"candidates": rows, "random": {"apgr_mean": round(rnd.apgr_mean, 4), "apgr_std": round(rnd.apgr_std, 4)},
            "oracle": {"apgr": round(optimal_curve(ev).area(), 4)}, "n": len(strong_q),
            "strong_mean": round(float(ev.strong.mean()), 4), "weak_mean": round(float(ev.weak.mean()), 4)}


def cross_validate(inp: FitInputs, kinds: list[str], *, folds: int = 5, work: Path | None = None) -> dict:
    """Out-of-fold scores of every kind on the same prompt-grouped folds, and their :func:`score_table`."""
    lab = inp.labels
    n = len(lab)
    fold = prompt_folds(n, folds, inp.seed)
    extra = np.zeros(len(lab.battle_prompts), bool)
    extra[n:] = True  # prompts without the pair's labels: always training data (never scored)
    oof = {k: np.full(n, np.nan) for k in kinds}
    jobs = [(k, f) for k in kinds for f in range(folds)]
    for kind, f in progress(jobs, total=len(jobs), desc="cross-validating", unit="fit"):
        te, tr = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        if te.size:
            oof[kind][te] = fit_predict(kind, inp, tr, te, extra, work=work)
    table = score_table(oof, lab.strong_q, lab.weak_q, seed=inp.seed)
    if "irt" in oof:
        for kind, gap in paired_gaps(oof, "irt", lab.strong_q, lab.weak_q, seed=inp.seed).items():
            table["candidates"][kind]["minus_adapted_ci95"] = gap
    table.update(folds=folds, grouped_by="prompt", seed=inp.seed,
                 note="out-of-fold APGR on the labelled prompts; every kind scored on the same folds")
    return table


def paired_gaps(oof: dict[str, np.ndarray], ref: str, strong_q, weak_q, *, n_boot: int = 1000,
                seed: int = 0) -> dict[str, list | None]:
    """95 % bootstrap interval (prompts resampled, the same resample for both) of APGR(kind) − APGR(ref)."""
    from routekit.eval.metrics import apgr

    s, w = np.asarray(strong_q, float), np.asarray(weak_q, float)
    rng = np.random.default_rng(seed)
    gaps: dict[str, list] = {k: [] for k in oof if k != ref}
    for _ in range(n_boot):
        i = rng.integers(0, len(s), len(s))
        if np.isclose(s[i].mean(), w[i].mean()):
            continue
        base = apgr(oof[ref][i], s[i], w[i])
        for k, v in gaps.items():
            v.append(apgr(oof[k][i], s[i], w[i]) - base)
    return {k: ([round(float(x), 4) for x in np.quantile(v, [0.025, 0.975])] if v else None) for k, v in gaps.items()}


def choose(table: dict) -> str:
    """The adapted kind (``irt``) unless another candidate's CV APGR is above it with the paired
    interval of the difference above 0 (then the best of those); without ``irt``, the best CV APGR
    (earlier = simpler kind on a tie).  ``default`` chosen means: write the prior as it is."""
    cands = table["candidates"]
    if "irt" in cands:
        better = [k for k in cands if k != "irt" and (cands[k].get("minus_adapted_ci95") or [0.0])[0] > 0]
        return max(better, key=lambda k: cands[k]["apgr"]) if better else "irt"
    return max(cands, key=lambda k: (cands[k]["apgr"], -list(cands).index(k)))


def format_cv(table: dict, chosen: str | None = None, why: dict | None = None) -> str:
    lines = [f"CV ({table['folds']}-fold, grouped by prompt) on {table['n']} labelled prompts: "
             f"strong mean {table['strong_mean']:.3f}, weak mean {table['weak_mean']:.3f}",
             f"{'candidate':<12} {'APGR':>7}  {'95% CI':<17} {'minus irt, 95% CI':<18}"]
    for k, r in table["candidates"].items():
        ci = f"[{r['apgr_ci95'][0]:.3f}, {r['apgr_ci95'][1]:.3f}]" if r["apgr_ci95"] else "(undefined)"
        gap = r.get("minus_adapted_ci95")
        gap = f"[{gap[0]:+.3f}, {gap[1]:+.3f}]" if gap else ""
        mark = "  <- chosen" if k == chosen else ""
        lines.append(f"{k:<12} {r['apgr']:>7.3f}  {ci:<17} {gap:<18}{mark}")
    r = table["random"]
    lines.append(f"{'random':<12} {r['apgr_mean']:>7.3f}  ± {r['apgr_std']:.3f} (10 seeds)")
    lines.append(f"{'oracle':<12} {table['oracle']['apgr']:>7.3f}")
    for k, reason in (why or {}).items():
        lines.append(f"(not tried: {k}: {reason})")
    return "\n".join(lines)


def verdict(table: dict, chosen: str) -> str | None:
    """A plain warning when the chosen router is not measurably better than random routing."""
    lo = (table["candidates"][chosen]["apgr_ci95"] or [float("nan")])[0]
    rnd = table["random"]["apgr_mean"]
    if not lo > rnd:
        return (f"warning: {chosen}'s CV interval starts at {lo:.3f}, not above random ({rnd:.3f}): with "
                f"{table['n']} labelled prompts no router here is measurably better than random routing; "
                f"label more prompts (see docs/own-models.md for how many were needed on public data)")
    return None


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
