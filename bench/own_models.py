"""Does fitting on your own labels beat not fitting?  Learning curves of ``routekit-export fit`` on public pairs.

For strong/weak pairs built from ``$ROUTEKIT_DATA`` -- RouterBench (11 models' correctness on ARC,
Winogrande, MBPP), ZeroEval CRUX and MATH-L5 (correctness of 2024 models), Arena-Bench battles
(``train/battles.jsonl``, source ``arena-bench-v1``: GPT-4-judged, the higher score wins) -- each
*draw* splits the pair's prompts at random into a held-out set and a pool, takes N labelled prompts
from the pool and scores the held-out prompts with:

* ``default``: routekit's prior as it is (0 labels);
* ``adapted``: the item-response fit on the N labels (``routekit_export.fit.fit_predict("irt")``,
  what ``routekit-export fit`` cross-validates and writes);
* from-scratch kinds (``--kinds``, default ``linear``): the same per-fold trainers ``fit`` uses;
* baselines: random routing (10 seeds) and length only (score = number of characters).

**The prior is routekit's default recipe retrained without the pair's data set** (leave-source-out:
``export/linear.py`` with the shipped configuration on every training source except the pair's, and
no prompt of the pair).  The shipped ``linear`` artifact was trained on these very prompts (pair labels
and multi-model difficulty), so scoring them with it would measure recall, not what routekit knows
of a task it never saw, which is the situation of a team fitting its own models.

A cell is the held-out APGR averaged over ``--draws`` draws (a new split and a new training draw
each), with a 95 % t-interval over draws; "adapted − default" is the paired difference per draw.
Pairs marked *design* were looked at while the item-response model was built; its fixed pair prior
(``export/irt.py`` ``PAIR_CONFIG``) was then chosen on all the pairs here (no pair is a hold-out).

    nice python bench/own_models.py                      # -> docs/own-models.md, .png, .json
    nice python bench/own_models.py --pairs 0 4 --draws 3 --kinds     # quicker, adapted only

Embeddings and the leave-source-out priors are cached in ``build/own-models/`` (not committed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from _common import DATA, uptime

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "build" / "own-models"

PAIRS = [  # (data set, subset, strong, weak, label, looked at while designing)
    ("routerbench", None, "gpt-4-1106-preview", "mistralai/mixtral-8x7b-chat", "RouterBench: GPT-4 Turbo vs Mixtral", True),
    ("routerbench", None, "gpt-3.5-turbo-1106", "mistralai/mistral-7b-chat", "RouterBench: GPT-3.5 Turbo vs Mistral-7B", True),
    ("routerbench", None, "claude-v1", "claude-instant-v1", "RouterBench: Claude 1 vs Claude Instant", False),
    ("routerbench", None, "gpt-4-1106-preview", "meta/llama-2-70b-chat", "RouterBench: GPT-4 Turbo vs Llama-2-70B", False),
    ("zeroeval", "crux", "gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18", "CRUX: GPT-4o vs GPT-4o-mini", True),
    ("zeroeval", "crux", "claude-3-5-sonnet-20240620", "claude-3-haiku-20240307", "CRUX: Claude 3.5 Sonnet vs Claude 3 Haiku", True),
    ("zeroeval", "crux", "gemini-1.5-pro", "gemini-1.5-flash", "CRUX: Gemini 1.5 Pro vs Flash", False),
    ("zeroeval", "crux", "Meta-Llama-3.1-70B-Instruct", "Meta-Llama-3.1-8B-Instruct", "CRUX: Llama-3.1 70B vs 8B", False),
    ("zeroeval", "math-l5", "Llama-3.1-405B-Inst@sambanova", "Meta-Llama-3.1-8B-Instruct", "MATH-L5: Llama-3.1 405B vs 8B", True),
    ("zeroeval", "math-l5", "Qwen2-72B-Instruct", "Qwen2-7B-Instruct", "MATH-L5: Qwen2 72B vs 7B", True),
    ("zeroeval", "math-l5", "claude-3-5-sonnet-20240620", "claude-3-haiku-20240307", "MATH-L5: Claude 3.5 Sonnet vs Claude 3 Haiku", False),
    ("zeroeval", "math-l5", "Qwen2.5-72B-Instruct", "Qwen2.5-7B-Instruct", "MATH-L5: Qwen2.5 72B vs 7B", False),
    ("arena", None, "gpt-4-1106-preview", "mixtral-8x7b-instruct-v0.1", "Arena-Bench battles: GPT-4 Turbo vs Mixtral", True),
    ("arena", None, "gpt-4-0314", "gpt-3.5-turbo", "Arena-Bench battles: GPT-4-0314 vs GPT-3.5 Turbo", False),
    ("arena", None, "claude-2.1", "claude-instant-1", "Arena-Bench battles: Claude 2.1 vs Claude Instant", False),
]
#: training sources of the default recipe (export/linear.py short names) left out per data set
LEAVE_OUT = {"routerbench": {"arc-challenge", "winogrande", "mbpp"}, "zeroeval": {"crux", "math-l5"},
             "arena": {"arena-bench-v1"}}
#: a pair's held-out prompts: this share of its prompts, at most this many
TEST_SHARE, TEST_MAX = 1 / 3, 600
#: a split whose held-out strong − weak mean quality is below this is drawn again (APGR divides by it)
MIN_GAP = 0.02


# --------------------------------------------------------------------------- data


def load_dataset(name: str) -> tuple[list[str], dict]:
    """(prompts, labels): labels are {"quality": {model: array over prompts, NaN = none}, "source": array}
    for quality data sets, {"battles": [(prompt index, a, b, outcome of a)]} for Arena-Bench."""
    from routekit_export.mixture import zeroeval_question

    train = DATA / "train"
    rows: dict[str, tuple[str, dict]] = {}
    battles = []
    if name == "arena":
        at: dict[str, int] = {}
        with open(train / "battles.jsonl", encoding="utf-8") as fh:
            for line in fh:
                r = json.loads(line)
                if r["source"].startswith("arena-bench-v1"):
                    o = {"model_a": 1.0, "model_b": 0.0}.get(r["winner"], 0.5)  # tie: ½
                    battles.append((at.setdefault(r["prompt"], len(at)), r["model_a"], r["model_b"], o))
        return list(at), {"battles": battles}
    path = train / ("extra/zeroeval_scores.jsonl" if name == "zeroeval" else "multi_model_scores.jsonl")
    with open(path, encoding="utf-8") as fh:
        lines = [json.loads(line) for line in fh]
    for r in lines:
        if not r["source"].startswith("zeroeval/" if name == "zeroeval" else "routerbench/"):
            continue
        # ZeroEval's fixed answer-format template is cut off, as export/mixture.py does: the router sees
        # the bare question a user would send (and 800 prompts sharing a 100-character prefix would
        # also put every prompt into one fold of the linear head's prefix-grouped CV)
        prompt = zeroeval_question(r["prompt"]) if name == "zeroeval" else r["prompt"]
        _, q = rows.setdefault(prompt, (r["source"].split("/", 1)[1], {}))
        for m, v in r["scores"].items():
            if v is not None:
                q.setdefault(m, []).append(float(v))
    prompts = list(rows)
    models = sorted({m for _, q in rows.values() for m in q})
    quality = {m: np.array([np.mean(rows[p][1][m]) if m in rows[p][1] else np.nan for p in prompts]) for m in models}
    return prompts, {"quality": quality, "source": np.array([rows[p][0] for p in prompts])}


def embeddings(enc, prompts: list[str], tag: str) -> np.ndarray:
    CACHE.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256((enc.key + "\n" + "\n".join(prompts)).encode("utf-8", "replace")).hexdigest()[:16]
    path = CACHE / f"emb-{tag}-{key}.npy"
    if path.is_file():
        return np.load(path)
    emb = enc.embed(prompts)
    np.save(path, emb)
    return emb


def leave_source_out_weights(enc, name: str, prompts: list[str]) -> tuple[dict, dict]:
    """linear.npz arrays of the default recipe trained without data set ``name`` and none of ``prompts``
    (cached), and a note on what it was trained on."""
    from routekit_export.linear import (
        LinearConfig,
        PromptTable,
        load_prompt_table,
        train_linear,
    )
    from routekit_export.mixture import zeroeval_question

    cfg = LinearConfig()
    key = hashlib.sha256((enc.key + json.dumps(cfg.__dict__, default=str, sort_keys=True) + name + "\n"
                          + "\n".join(prompts)).encode("utf-8", "replace")).hexdigest()[:16]
    path = CACHE / f"default-without-{name}-{key}.npz"
    if path.is_file():
        z = np.load(path)
        return {k: z[k] for k in z.files if k != "note"}, json.loads(str(z["note"]))
    table = load_prompt_table(DATA.parent / DATA.name, tuple(cfg.extra), gsm8k_limit=cfg.gsm8k_limit, log=lambda *a: None)
    held = set(prompts) | {zeroeval_question(p) for p in prompts}
    keep = np.flatnonzero([s not in LEAVE_OUT[name] and p not in held for p, s in zip(table.prompts, table.source)])
    sub = PromptTable([table.prompts[i] for i in keep], table.source[keep], table.strong[keep], table.weak[keep],
                      table.difficulty[keep], table.sources)
    temb = embeddings(enc, table.prompts, "default-training")[keep]
    weights, metrics = train_linear(temb, sub, enc.tokenizer(), cfg, log=lambda *a: None)
    note = {"training_prompts": int(keep.size), "of": len(table), "left_out_sources": sorted(LEAVE_OUT[name]),
            "cv_apgr": metrics["cv_apgr"]}
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, note=json.dumps(note), **weights)
    return weights, note


def leave_source_out_prior(enc, name: str, prompts: list[str], emb: np.ndarray) -> tuple[np.ndarray, dict]:
    """logit P(strong wins) of :func:`leave_source_out_weights` on ``prompts``, and its note."""
    from routekit_export.fit import linear_gains

    weights, note = leave_source_out_weights(enc, name, prompts)
    return weights["affine"][1] * linear_gains(weights, emb, prompts, enc.tokenizer()) + weights["affine"][2], note


def pair_labels(ds: dict, strong: str, weak: str):
    """(rows, strong quality, weak quality, is_battle): per prompt of the data set (NaN: not labelled)."""
    if "battles" in ds:
        n = 1 + max(p for p, *_ in ds["battles"])
        acc = np.zeros((n, 2))
        for p, a, b, o in ds["battles"]:
            if {a, b} == {strong, weak}:
                acc[p] += (o if a == strong else 1.0 - o, 1.0)
        s = np.where(acc[:, 1] > 0, acc[:, 0] / np.maximum(acc[:, 1], 1), np.nan)
        return s, 1.0 - s, True
    return ds["quality"][strong], ds["quality"][weak], False


# --------------------------------------------------------------------------- one draw


def fit_inputs(prompts, emb, d, s, w, battle, rows, strong, weak, tokenizer):
    """FitInputs over ``rows`` (the pair's prompts, in that order) as ``routekit-export fit`` builds them."""
    from routekit_export import fit as F
    from routekit_export import irt as T
    from routekit_export.fit_data import _assemble

    sub = [prompts[i] for i in rows]
    if battle:
        lab = _assemble(Path("pair.jsonl"), "", strong, weak, [],
                        [(p, strong, weak, float(x)) for p, x in zip(sub, s[rows])], [], {"rows": len(rows)})
        obs = T.Observations(b_prompt=np.arange(len(rows)), b_a=np.zeros(len(rows)), b_b=np.ones(len(rows)),
                             b_o=s[rows])
    else:
        lab = _assemble(Path("pair.jsonl"), "", strong, weak,
                        [(p, {strong: float(a), weak: float(b)}) for p, a, b in zip(sub, s[rows], w[rows])], [], [],
                        {"rows": len(rows)})
        k = np.arange(len(rows))
        obs = T.Observations(np.r_[k, k], np.r_[np.zeros(len(k)), np.ones(len(k))], np.r_[s[rows], w[rows]])
    assert lab.prompts == sub, "prompts must keep their order (one label row per prompt)"
    raw = d[rows]
    X = emb[rows].astype(np.float64)
    return F.FitInputs(lab, emb[rows], tokenizer, prior_d=(raw - raw.mean()) / raw.std(), irt_X=X - X.mean(0),
                       irt_obs=obs)


def run_pair(pi, prompts, emb, d, ds, args, tokenizer) -> dict:
    from routekit_export import fit as F

    from routekit.eval.metrics import apgr

    name, subset, strong, weak, label, design = PAIRS[pi]
    s, w, battle = pair_labels(ds, strong, weak)
    ok = np.isfinite(s) & np.isfinite(w)
    if subset:
        ok &= ds["source"] == subset
    rows = np.flatnonzero(ok)
    inp = fit_inputs(prompts, emb, d, s, w, battle, rows, strong, weak, tokenizer)
    S, W = s[rows], w[rows]
    n_test = min(TEST_MAX, int(len(rows) * TEST_SHARE))
    pool_n = len(rows) - n_test
    sizes = sorted({min(n, pool_n) for n in args.sizes})
    kinds = ["adapted"] + [k for k in args.kinds]
    res = {k: {n: [] for n in sizes} for k in kinds}
    base = {"default": [], "length": [], "random": []}
    fit_s = {n: [] for n in sizes}
    failures: dict[str, str] = {}
    nchars = np.array([len(prompts[i]) for i in rows], float)
    redrawn = 0
    for r in range(3 * args.draws):
        if len(base["default"]) == args.draws:
            break
        rng = np.random.default_rng(10_000 * pi + r)
        perm = rng.permutation(len(rows))
        test, pool = np.sort(perm[:n_test]), perm[n_test:]
        st, wt = S[test], W[test]
        if st.mean() - wt.mean() < MIN_GAP:  # APGR divides by this gap: near 0 it is noise, for every kind
            redrawn += 1
            continue
        base["default"].append(apgr(inp.prior_d[test], st, wt))
        base["length"].append(apgr(nchars[test], st, wt))
        base["random"].append(float(np.mean([apgr(np.random.default_rng(k).random(len(test)), st, wt) for k in range(10)])))
        for n in sizes:
            tr = np.sort(rng.choice(pool, n, replace=False)) if n else np.zeros(0, int)
            for kind in kinds:
                if n == 0 and kind != "adapted":
                    continue
                if n == 0:
                    sc = inp.prior_d[test]  # no label: the adapted model is the prior (the same ranking)
                elif kind == "adapted":
                    t0 = time.time()
                    sc = F.fit_predict("irt", inp, tr, test)
                    fit_s[n].append(time.time() - t0)
                else:
                    try:
                        sc = F.fit_predict(kind, inp, tr, test)
                    except np.linalg.LinAlgError as exc:  # recorded, not hidden: the kind fails on this pair
                        failures.setdefault(kind, str(exc))
                        res[kind][n].append(np.nan)
                        continue
                res[kind][n].append(apgr(sc, st, wt))
        print(f"[{time.time() - T0:6.0f}s] {label} draw {r}: default {base['default'][-1]:.3f} "
              + " ".join(f"{k}@{n}={res[k][n][-1]:.3f}" for k in kinds for n in sizes if n in (50, 300) or n == sizes[-1]),
              file=sys.stderr, flush=True)
    dflt = np.array(base["default"])
    out = {"label": label, "dataset": name, "subset": subset, "strong": strong, "weak": weak, "design": design,
           "battles": battle, "prompts": len(rows), "test": n_test, "pool": pool_n, "draws": len(dflt),
           "strong_mean": round(float(S.mean()), 4), "weak_mean": round(float(W.mean()), 4),
           "baselines": {k: interval(v) for k, v in base.items()}, "curves": {}, "vs_default": {},
           "fit_seconds": {str(n): round(float(np.mean(v)), 3) for n, v in fit_s.items() if v},
           "failures": failures, "redrawn_small_gap": redrawn}
    for kind in kinds:
        out["curves"][kind] = {str(n): interval(res[kind][n]) for n in sizes if res[kind][n]}
        out["vs_default"][kind] = {str(n): interval(np.array(res[kind][n]) - dflt) for n in sizes if res[kind][n]}
    return out


def interval(values) -> dict:
    """Mean and 95 % t-interval over draws (draws where the kind failed are left out and counted)."""
    v = np.asarray(values, float)
    failed = int((~np.isfinite(v)).sum())
    v = v[np.isfinite(v)]
    if failed:
        return {"mean": None, "ci95": None, "n": int(v.size), "failed": failed}
    if v.size < 2:
        return {"mean": round(float(v.mean()), 4) if v.size else None, "ci95": None, "n": int(v.size)}
    half = T_975.get(v.size - 1, 1.96) * v.std(ddof=1) / math.sqrt(v.size)
    return {"mean": round(float(v.mean()), 4), "ci95": [round(float(v.mean() - half), 4), round(float(v.mean() + half), 4)],
            "se": round(float(v.std(ddof=1) / math.sqrt(v.size)), 4), "n": int(v.size)}


T_975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23, 11: 2.20,
         12: 2.18, 15: 2.13, 19: 2.09}


def summary(pairs: list[dict], sizes_asked: list[int], kind: str = "adapted") -> list[dict]:
    """Mean over pairs of (kind − default) per asked size (a pair whose pool is smaller counts at its
    largest size), with a 95 % normal interval from the per-pair standard errors."""
    out = []
    for n in sizes_asked:
        vals, ses, worst, below = [], [], None, []
        for p in pairs:
            sizes = [int(k) for k in p["vs_default"][kind]]
            k = str(max(x for x in sizes if x <= n)) if any(x <= n for x in sizes) else None
            if k is None:
                continue
            c = p["vs_default"][kind][k]
            if c["mean"] is None:
                continue
            vals.append(c["mean"])
            ses.append(c.get("se") or 0.0)
            if c["ci95"] and (worst is None or c["ci95"][1] < worst[1]):
                worst = (p["label"], c["ci95"][1], c["mean"])
            if c["ci95"] and c["ci95"][1] < -0.02:
                below.append(p["label"])
        if not vals:
            out.append({"n": n, "pairs": 0})
            continue
        m, se = float(np.mean(vals)), math.sqrt(float(np.sum(np.square(ses)))) / len(vals)
        out.append({"n": n, "pairs": len(vals), "mean_minus_default": round(m, 4),
                    "ci95": [round(m - 1.96 * se, 4), round(m + 1.96 * se, 4)],
                    "lowest_upper_bound": {"pair": worst[0], "upper": worst[1], "mean": worst[2]} if worst else None,
                    "below_default_minus_0.02": below})
    return out


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    global T0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[0, 25, 50, 100, 300, 1000])
    ap.add_argument("--kinds", nargs="*", default=["linear"], help="from-scratch kinds beside adapted (linear, sw, mf)")
    ap.add_argument("--draws", type=int, default=8, help="random splits + training draws per size")
    ap.add_argument("--pairs", type=int, nargs="+", default=list(range(len(PAIRS))), help="indices into PAIRS")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "own-models")
    ap.add_argument("--from-json", action="store_true", help="only rewrite the .md and .png from OUT.json")
    args = ap.parse_args(argv)
    if args.from_json:
        res = json.loads(args.out.with_suffix(".json").read_text())
        write_markdown(res, args.out.with_suffix(".md"))
        plot(res, args.out.with_suffix(".png"))
        return 0
    if not (DATA / "train").is_dir():
        print(f"no data at {DATA} (set ROUTEKIT_DATA)", file=sys.stderr)
        return 2
    from routekit_export.fit_build import EncoderSource

    T0 = time.time()
    enc = EncoderSource()
    tokenizer = enc.tokenizer()
    results = {"sizes": args.sizes, "kinds": ["adapted"] + args.kinds, "draws": args.draws, "pairs": {},
               "priors": {}, "box": uptime(), "command": "nice python bench/own_models.py " + " ".join(sys.argv[1:])}
    loaded: dict = {}
    for pi in args.pairs:
        name = PAIRS[pi][0]
        if name not in loaded:
            prompts, ds = load_dataset(name)
            emb = embeddings(enc, prompts, name)
            d, note = leave_source_out_prior(enc, name, prompts, emb)
            loaded[name] = (prompts, ds, emb, d)
            results["priors"][name] = note
            print(f"[{time.time() - T0:6.0f}s] {name}: {len(prompts)} prompts; prior trained on {note['training_prompts']} "
                  f"of {note['of']} default-training prompts", file=sys.stderr, flush=True)
        prompts, ds, emb, d = loaded[name]
        results["pairs"][str(pi)] = run_pair(pi, prompts, emb, d, ds, args, tokenizer)
    pairs = list(results["pairs"].values())
    results["summary"] = {kind: {"all": summary(pairs, args.sizes, kind),
                                 "design": summary([p for p in pairs if p["design"]], args.sizes, kind),
                                 "confirmation": summary([p for p in pairs if not p["design"]], args.sizes, kind)}
                          for kind in results["kinds"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    write_markdown(results, args.out.with_suffix(".md"))
    plot(results, args.out.with_suffix(".png"))
    print(f"wrote {args.out.with_suffix('.md')}, .png, .json in {time.time() - T0:.0f}s", file=sys.stderr)
    return 0


T0 = 0.0


# --------------------------------------------------------------------------- report


def _cell(c: dict | None, signed: bool = False) -> str:
    if c and c.get("failed"):
        return f"fails ({c['failed']} of {c['failed'] + c['n']} draws)"
    if not c or c.get("mean") is None:
        return "–"
    fmt = "{:+.3f}" if signed else "{:.3f}"
    ci = f" [{fmt.format(c['ci95'][0])}, {fmt.format(c['ci95'][1])}]" if c.get("ci95") else ""
    return fmt.format(c["mean"]) + ci


def write_markdown(res: dict, path: Path) -> None:
    kinds = res["kinds"]
    L = ["# Your own models: does fitting on your labels beat not fitting?", "",
         "Generated by `bench/own_models.py` (do not edit by hand); numbers in [own-models.json](own-models.json), "
         "plot [own-models.png](own-models.png). Command: `" + res["command"] + "`.", "",
         "`routekit-export fit --strong A --weak B` cross-validates **default** (routekit's prior score as it is), "
         "**adapted** (the item-response fit of `export/irt.py`: each model's quality = σ(b + α·prior + a·u·x + v·x), "
         "the labels moving it only as far as they support) and from-scratch kinds, and keeps *adapted* unless another "
         "is better with the paired interval above 0. Here every kind is trained on N labelled prompts of a pair and "
         "scored on held-out prompts of the same pair.", "",
         "**The prior here is the default recipe retrained without the pair's data set** (leave-source-out): the "
         "shipped default saw these prompts in training, so it would be measured on recall. Each draw is a new random "
         "held-out split and a new training draw; a cell is the mean held-out APGR over the draws with a 95 % "
         "t-interval over draws; *adapted − default* is the paired difference per draw. A split whose held-out "
         f"strong − weak gap is below {MIN_GAP} is drawn again (APGR divides by that gap; near 0 it is noise for "
         "every kind alike). N = 0 is the prior itself "
         "(adapted equals default there by construction). *Design* pairs were looked at while the model was built; the "
         "fixed pair prior (`PAIR_CONFIG`: how far the labels may move the default's direction, and the penalties) "
         "was then chosen on all of these pairs, so no pair here is an untouched hold-out. Random routing has APGR ≈ 0.5; length-only "
         "scores a prompt by its number of characters.", ""]
    for part, title in (("all", "all pairs"), ("design", "design pairs"), ("confirmation", "confirmation pairs")):
        rows = [r for r in res["summary"]["adapted"][part] if r["pairs"]]
        if not rows:
            continue
        L += [f"## Adapted − default, mean over {title}", "",
              "| N labels | pairs | mean adapted − default [95 %] | pairs whose interval lies below −0.02 | "
              "lowest upper end of a pair's interval |",
              "|---|---|---|---|---|"]
        for r in rows:
            lo = r["lowest_upper_bound"]
            L.append(f"| {r['n']} | {r['pairs']} | {r['mean_minus_default']:+.3f} [{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}] | "
                     f"{', '.join(r['below_default_minus_0.02']) or 'none'} | "
                     + (f"{lo['upper']:+.3f} ({lo['pair']}, mean {lo['mean']:+.3f})" if lo else "–") + " |")
        L.append("")
    for kind in kinds[1:]:
        rows = [r for r in res["summary"][kind]["all"] if r["pairs"]]
        L += [f"Mean {kind} (from scratch) − default over all pairs: "
              + ", ".join(f"N={r['n']}: {r['mean_minus_default']:+.3f}" for r in rows if r["n"]) + ".", ""]
    L += ["## Per pair", ""]
    for p in res["pairs"].values():
        b = p["baselines"]
        L += [f"### {p['label']}{' (design)' if p['design'] else ''}", "",
              f"{p['prompts']} prompts labelled for both ({'battles' if p['battles'] else 'correctness'}), "
              f"{p['test']} held out per draw, N drawn from the other {p['pool']}; {p['draws']} draws"
              + (f" ({p['redrawn_small_gap']} splits drawn again: held-out gap < {MIN_GAP})" if p.get("redrawn_small_gap") else "")
              + ". "
              f"Means: strong {p['strong_mean']:.3f}, weak {p['weak_mean']:.3f}. "
              f"Default {_cell(b['default'])}, random {_cell(b['random'])}, length-only {_cell(b['length'])}."
              + "".join(f" {k} fails here: {e}." for k, e in p.get("failures", {}).items()), "",
              "| kind | " + " | ".join(f"N = {n}" for n in p["curves"]["adapted"]) + " |",
              "|---|" + "---|" * len(p["curves"]["adapted"])]
        for kind in kinds:
            L.append(f"| {kind} | " + " | ".join(_cell(p["curves"][kind].get(n)) for n in p["curves"]["adapted"]) + " |")
            L.append(f"| {kind} − default | "
                     + " | ".join(_cell(p["vs_default"][kind].get(n), True) for n in p["curves"]["adapted"]) + " |")
        L.append("")
    L += ["Priors (leave-source-out default recipe): "
          + "; ".join(f"{k}: {v['training_prompts']} of {v['of']} training prompts (without {', '.join(v['left_out_sources'])})"
                      for k, v in res["priors"].items()) + ".", "",
          "Adapted fit time per draw (seconds, mean): "
          + "; ".join(f"{p['label'].split(':')[0]} " + ", ".join(f"N={n}: {t}" for n, t in p["fit_seconds"].items())
                      for p in list(res["pairs"].values())[:2]) + f". Box: `{res['box']}` (the 2-core box is shared).", ""]
    path.write_text("\n".join(L))


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(res["pairs"].values())
    cols = 4
    rows = math.ceil((len(pairs) + 1) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    flat = axes.ravel()
    for ax, p in zip(flat, pairs):
        for kind, curve in p["curves"].items():
            curve = {n: c for n, c in curve.items() if c["mean"] is not None}
            if not curve:
                continue
            xs = [max(int(n), 10) for n in curve]
            ys = [c["mean"] for c in curve.values()]
            lo = [c["ci95"][0] if c["ci95"] else c["mean"] for c in curve.values()]
            hi = [c["ci95"][1] if c["ci95"] else c["mean"] for c in curve.values()]
            ax.plot(xs, ys, marker="o", ms=3, label=kind)
            ax.fill_between(xs, lo, hi, alpha=0.12)
        for k, style in (("default", "-"), ("random", ":"), ("length", "--")):
            ax.axhline(p["baselines"][k]["mean"], color="grey", ls=style, lw=1, label=k)
        ax.set_xscale("log")
        ax.set_title(p["label"] + (" (design)" if p["design"] else ""), fontsize=7)
        ax.tick_params(labelsize=7)
    ax = flat[len(pairs)]
    for part, style in (("all", "-o"), ("design", "--"), ("confirmation", ":")):
        rows_ = [r for r in res["summary"]["adapted"][part] if r["pairs"]]
        if rows_:
            xs = [max(r["n"], 10) for r in rows_]
            ax.plot(xs, [r["mean_minus_default"] for r in rows_], style, label=f"adapted − default ({part})")
            if part == "all":
                ax.fill_between(xs, [r["ci95"][0] for r in rows_], [r["ci95"][1] for r in rows_], alpha=0.15)
    ax.axhline(0, color="k", lw=0.8)
    ax.axhline(-0.02, color="red", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_title("mean over pairs (x = labels; 0 plotted at 10)", fontsize=7)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6)
    flat[0].legend(fontsize=6)
    for ax in flat[len(pairs) + 1:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
