"""How many labels does ``routekit-export fit`` need?  Learning curves and a transfer check on public data.

For each strong/weak pair built from ``$ROUTEKIT_DATA`` (RouterBench's 11 models' correctness,
ZeroEval's per-model correctness, Arena-Bench's judge scores), a fixed set of prompts is held out;
each kind is trained on random subsets of N labelled training prompts (the pair's qualities, plus
for SW and MF the battles among every model scored on those prompts) with the same per-fold
trainers ``fit`` uses (``routekit_export.fit.fit_predict``) and scored on the held-out prompts.
Reported: held-out APGR, the mean over ``--repeats`` training subsets, with a 95 % percentile
bootstrap interval over held-out prompts (each resample re-scores every subset), next to random
routing and the oracle.

Transfer (the paper's Table 4 idea): a router fitted for one pair, used unchanged to rank the
prompts of another pair (same held-out prompts, the other pair's labels), against one fitted on
that pair directly.

    nice python bench/own_models.py                     # -> docs/own-models.md, .png, .json
    nice python bench/own_models.py --sizes 100 300 --repeats 2 --kinds linear   # quicker

Embeddings are computed once per prompt set and cached in ``build/own-models/`` (not committed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from _common import DATA

REPO = Path(__file__).resolve().parent.parent

PAIRS = [  # (dataset, strong, weak, short label)
    ("routerbench", "gpt-4-1106-preview", "mistralai/mixtral-8x7b-chat", "RouterBench: GPT-4 Turbo vs Mixtral"),
    ("routerbench", "gpt-3.5-turbo-1106", "mistralai/mistral-7b-chat", "RouterBench: GPT-3.5 Turbo vs Mistral-7B"),
    ("zeroeval", "gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18", "ZeroEval: GPT-4o vs GPT-4o-mini"),
    ("arena", "gpt-4-1106-preview", "mixtral-8x7b-instruct-v0.1", "Arena-Bench: GPT-4 Turbo vs Mixtral"),
]
TRANSFER = [  # (fitted on pair i, used for pair j)
    (0, 1), (1, 0), (0, 2), (2, 0),
]


#: ZeroEval scores 38-48 models per prompt; SW and MF see these 12 (the pair among them) to keep
#: the battle count (and MF's memory) at RouterBench's scale.
ZEROEVAL_MODELS = ("gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18", "claude-3-5-sonnet-20240620",
                   "claude-3-haiku-20240307", "gemini-1.5-pro", "gemini-1.5-flash", "Meta-Llama-3.1-70B-Instruct",
                   "Meta-Llama-3.1-8B-Instruct", "Qwen2.5-72B-Instruct", "Qwen2.5-7B-Instruct", "gemma-2-9b-it",
                   "gpt-3.5-turbo-0125")


def load_rows(dataset: str) -> list[tuple[str, dict]]:
    """(prompt, {model: quality}) rows of one public dataset."""
    train = DATA / "train"
    if dataset == "zeroeval":
        path, keep = train / "extra" / "zeroeval_scores.jsonl", ("zeroeval/",)
    else:
        path = train / "multi_model_scores.jsonl"
        keep = ("routerbench/",) if dataset == "routerbench" else ("arena-bench-v1",)
    out = []
    for line in open(path, encoding="utf-8"):
        r = json.loads(line)
        if r["source"].startswith(keep):
            q = {m: float(v) for m, v in r["scores"].items() if v is not None}
            if dataset == "zeroeval":
                q = {m: v for m, v in q.items() if m in ZEROEVAL_MODELS}
            out.append((r["prompt"], q))
    return out


def labels_for(rows, strong: str, weak: str, name: str):
    """A LabelSet (as ``fit`` reads it) from in-memory rows that score both models."""
    from routekit_export.fit_data import _assemble

    quality = [(p, q) for p, q in rows if strong in q and weak in q]
    return _assemble(Path(name), "", strong, weak, quality, [], [], {"rows": len(quality)})


def embeddings(enc, prompts: list[str], tag: str) -> np.ndarray:
    cache = REPO / "build" / "own-models"
    cache.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256((enc.key + "\n" + "\n".join(prompts)).encode("utf-8", "replace")).hexdigest()[:16]
    path = cache / f"emb-{tag}-{key}.npy"
    if path.is_file():
        return np.load(path)
    emb = enc.embed(prompts)
    np.save(path, emb)
    return emb


def boot_mean_apgr(score_sets: list[np.ndarray], s: np.ndarray, w: np.ndarray, n_boot: int, seed: int = 0):
    """Mean APGR over subsets and its percentile bootstrap interval over held-out prompts."""
    from routekit.eval import apgr

    point = float(np.mean([apgr(x, s, w) for x in score_sets]))
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(s), len(s))
        if np.isclose(s[idx].mean(), w[idx].mean()):
            continue
        vals.append(np.mean([apgr(x[idx], s[idx], w[idx]) for x in score_sets]))
    lo, hi = np.quantile(vals, [0.025, 0.975])
    return round(point, 4), [round(float(lo), 4), round(float(hi), 4)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000, 3000])
    ap.add_argument("--kinds", nargs="+", default=["linear", "sw", "mf"])
    ap.add_argument("--repeats", type=int, default=3, help="random training subsets per size")
    ap.add_argument("--test", type=int, default=600, help="held-out prompts per pair (at most a third of the pair's)")
    ap.add_argument("--pairs", type=int, nargs="+", default=list(range(len(PAIRS))), help="indices into PAIRS")
    ap.add_argument("--n-boot", type=int, default=300)
    ap.add_argument("--transfer-n", type=int, default=1000, help="training labels of the transfer check")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "own-models")
    ap.add_argument("--from-json", action="store_true", help="only rewrite the .md and .png from OUT.json")
    args = ap.parse_args(argv)
    if args.from_json:
        res = json.loads(args.out.with_suffix(".json").read_text())
        write_markdown(res, args.out.with_suffix(".md"), args)
        plot(res, args.out.with_suffix(".png"))
        return 0
    if not (DATA / "train").is_dir():
        print(f"no data at {DATA} (set ROUTEKIT_DATA)", file=sys.stderr)
        return 2
    from routekit_export import fit as F
    from routekit_export.fit_build import EncoderSource

    from routekit.eval import apgr

    enc = EncoderSource()
    results = {"sizes": args.sizes, "kinds": args.kinds, "repeats": args.repeats, "pairs": {}, "transfer": []}
    setups = {}
    t0 = time.time()
    for pi in args.pairs:
        ds, strong, weak, label = PAIRS[pi]
        lab = labels_for(load_rows(ds), strong, weak, f"{ds}.jsonl")
        emb = embeddings(enc, lab.battle_prompts, ds)
        inp = F.FitInputs(lab, emb, enc.tokenizer())
        n = len(lab)
        rng = np.random.default_rng(1000 + pi)
        perm = rng.permutation(n)
        n_test = min(args.test, n // 3)
        test, pool = np.sort(perm[:n_test]), perm[n_test:]
        s, w = lab.strong_q[test], lab.weak_q[test]
        from routekit.eval import EvalSet, optimal_curve, random_baseline

        ev = EvalSet("t", [""] * n_test, s, w, 0, "")
        rnd = random_baseline(ev, 10)
        entry = {"label": label, "dataset": ds, "strong": strong, "weak": weak, "prompts": n, "test": n_test,
                 "train_pool": len(pool), "models": len(lab.models), "strong_mean": round(float(s.mean()), 4),
                 "weak_mean": round(float(w.mean()), 4),
                 "random": {"apgr_mean": round(rnd.apgr_mean, 4), "apgr_std": round(rnd.apgr_std, 4)},
                 "oracle": round(optimal_curve(ev).area(), 4), "curves": {}}
        setups[pi] = (lab, inp, test, pool)
        for kind in args.kinds:
            curve = []
            for asked in args.sizes:
                size = min(asked, len(pool))  # "3000" on a smaller pool: every training prompt
                if curve and curve[-1]["n"] == size:
                    continue
                sets, t1 = [], time.time()
                for r in range(args.repeats if size < len(pool) else 1):
                    tr = np.sort(np.random.default_rng(r).choice(pool, size, replace=False))
                    sets.append(F.fit_predict(kind, inp, tr, test))
                point, ci = boot_mean_apgr(sets, s, w, args.n_boot)
                sd = float(np.std([apgr(x, s, w) for x in sets]))
                curve.append({"asked": asked, "n": size, "apgr": point, "ci95": ci, "sd_subsets": round(sd, 4),
                              "fit_s": round((time.time() - t1) / args.repeats, 1)})
                print(f"[{time.time() - t0:6.0f}s] {label} {kind:<6} N={size:<5} held-out APGR {point:.3f} "
                      f"[{ci[0]:.3f}, {ci[1]:.3f}] (sd over subsets {sd:.3f})", file=sys.stderr, flush=True)
            entry["curves"][kind] = curve
        results["pairs"][str(pi)] = entry
    for i, j in TRANSFER:
        if i in setups and j in setups:
            results["transfer"].extend(transfer(i, j, setups, args, F))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    write_markdown(results, args.out.with_suffix(".md"), args)
    plot(results, args.out.with_suffix(".png"))
    print(f"wrote {args.out.with_suffix('.md')}, .png, .json in {time.time() - t0:.0f}s", file=sys.stderr)
    return 0


def transfer(i: int, j: int, setups, args, F) -> list[dict]:
    """Fit on pair i's training pool (largest size), score pair j's held-out prompts with it; compare
    with the same kind fitted on pair j.  Only prompts both pairs label can be used across datasets."""
    from routekit.eval import apgr

    lab_i, inp_i, test_i, pool_i = setups[i]
    lab_j, inp_j, test_j, pool_j = setups[j]
    size = min(args.transfer_n, len(pool_i), len(pool_j))
    s, w = lab_j.strong_q[test_j], lab_j.weak_q[test_j]
    out = []
    for kind in [k for k in args.kinds if k != "bert"]:
        tr_i = np.sort(np.random.default_rng(0).choice(pool_i, size, replace=False))
        tr_j = np.sort(np.random.default_rng(0).choice(pool_j, size, replace=False))
        # pair i's router, trained on pair i's labels of prompts that are not among pair j's held-out ones
        held = {lab_j.prompts[k] for k in test_j}
        tr_i = np.array([t for t in tr_i if lab_i.prompts[t] not in held])
        scores_own = F.fit_predict(kind, inp_j, tr_j, test_j)
        scores_other = _score_other(kind, inp_i, tr_i, inp_j, test_j, F)
        out.append({"fitted_on": PAIRS[i][3], "used_for": PAIRS[j][3], "kind": kind, "n": int(size),
                    "apgr_own_pair": round(apgr(scores_own, s, w), 4),
                    "apgr_other_pair": round(apgr(scores_other, s, w), 4),
                    "ci95_other": boot_mean_apgr([scores_other], s, w, args.n_boot)[1],
                    "ci95_own": boot_mean_apgr([scores_own], s, w, args.n_boot)[1]})
        print(f"transfer {kind}: {PAIRS[i][3]} -> {PAIRS[j][3]}: own {out[-1]['apgr_own_pair']:.3f}, "
              f"transferred {out[-1]['apgr_other_pair']:.3f}", file=sys.stderr, flush=True)
    return out


def _score_other(kind, inp_i, tr_i, inp_j, test_j, F):
    """Train on pair i (rows tr_i), score pair j's prompts ``test_j`` with that router, unchanged."""
    from routekit_export.fit_data import LabelSet

    lab_i, lab_j = inp_i.labels, inp_j.labels
    # append j's test prompts to i's inputs as unlabelled prompts, then score them with i's router
    prompts = lab_i.prompts + [lab_j.prompts[k] for k in test_j]
    n_i = len(lab_i)
    extra = LabelSet(lab_i.path, "", lab_i.strong, lab_i.weak, prompts,
                     np.concatenate([lab_i.strong_q, np.zeros(len(test_j))]),
                     np.concatenate([lab_i.weak_q, np.zeros(len(test_j))]),
                     np.concatenate([lab_i.difficulty, np.full(len(test_j), np.nan)]), lab_i.models,
                     prompts + lab_i.battle_prompts[n_i:], lab_i.battles | {"prompt": np.where(
                         lab_i.battles["prompt"] >= n_i, lab_i.battles["prompt"] + len(test_j), lab_i.battles["prompt"])})
    emb = np.concatenate([inp_i.emb[:n_i], inp_j.emb[test_j], inp_i.emb[n_i:]])
    inp = F.FitInputs(extra, emb, inp_i.tokenizer)
    return F.fit_predict(kind, inp, np.asarray(tr_i), np.arange(n_i, n_i + len(test_j)))


def write_markdown(res: dict, path: Path, args) -> None:
    lines = ["# Routing between your own models: how many labels are enough?", "",
             "Generated by `bench/own_models.py` (do not edit by hand); numbers in "
             "[own-models.json](own-models.json), plot [own-models.png](own-models.png).", "",
             "Each pair's prompts are split once: a fixed held-out set, and a pool that random training "
             "subsets of N labelled prompts are drawn from. Every kind is trained with the per-fold trainers "
             "`routekit-export fit` uses (linear head, SW with its weighting chosen inside the training set, "
             "MF) on the N prompts' labels (SW and MF also on the battles among every other model scored on "
             "those prompts) and scored on the held-out prompts. A cell is the held-out APGR, averaged over "
             f"{res['repeats']} training subsets (one when N is the whole pool), with a 95 % percentile "
             "bootstrap interval over held-out prompts. Random routing has APGR ≈ 0.5; the oracle is the "
             "ceiling. The shared 2-core box was contended while this ran, so the fit times in the JSON are "
             "only comparable within the run.", ""]
    for pi, e in res["pairs"].items():
        lines += [f"## {e['label']}", "",
                  f"{e['prompts']} prompts labelled for both models ({e['models']} models scored); {e['test']} held out, "
                  f"training subsets drawn from the other {e['train_pool']}. Held-out means: strong "
                  f"{e['strong_mean']:.3f}, weak {e['weak_mean']:.3f}. Random routing "
                  f"{e['random']['apgr_mean']:.3f} ± {e['random']['apgr_std']:.3f} (10 seeds), oracle {e['oracle']:.3f}.", "",
                  "| kind | " + " | ".join(f"N = {n}" for n in res["sizes"]) + " |",
                  "|---|" + "---|" * len(res["sizes"])]
        for kind, curve in e["curves"].items():
            by_n = {c["asked"]: c for c in curve}
            cells = [(f"{by_n[n]['apgr']:.3f} [{by_n[n]['ci95'][0]:.3f}, {by_n[n]['ci95'][1]:.3f}]"
                      + ("" if by_n[n]["n"] == n else f" (all {by_n[n]['n']})")) if n in by_n else "–"
                     for n in res["sizes"]]
            lines.append(f"| {kind} | " + " | ".join(cells) + " |")
        lines.append("")
        rnd = e["random"]["apgr_mean"]
        for kind, curve in e["curves"].items():
            ok = [c for c in curve if c["ci95"][0] > rnd]
            if not ok:
                lines.append(f"- **{kind}: not enough at any size tried** (up to {curve[-1]['n'] if curve else 0} labels): "
                             f"the held-out interval never clears random ({rnd:.3f}).")
            else:
                first = ok[0]
                small = [c["n"] for c in curve if c["n"] < first["n"]]
                lines.append(f"- {kind}: the held-out interval first clears random at N = {first['n']} ({first['apgr']:.3f} "
                             f"[{first['ci95'][0]:.3f}, {first['ci95'][1]:.3f}])"
                             + (f"; N = {', '.join(map(str, small))} is not enough." if small else ".")
                             + ("" if all(c["ci95"][0] > rnd for c in curve if c["n"] >= first["n"])
                                else " (not at every larger N: treat it as borderline)"))
        lines.append("")
    if res["transfer"]:
        lines += ["## Transfer: a router fitted for one pair, used unchanged for another", "",
                  "| kind | fitted on | used for | N | APGR, fitted on the target pair | APGR, transferred |",
                  "|---|---|---|---|---|---|"]
        for t in res["transfer"]:
            lines.append(f"| {t['kind']} | {t['fitted_on']} | {t['used_for']} | {t['n']} | {t['apgr_own_pair']:.3f} "
                         f"[{t['ci95_own'][0]:.3f}, {t['ci95_own'][1]:.3f}] | {t['apgr_other_pair']:.3f} "
                         f"[{t['ci95_other'][0]:.3f}, {t['ci95_other'][1]:.3f}] |")
        lines.append("")
    lines += ["Command: `nice python bench/own_models.py " + " ".join(a for a in sys.argv[1:] if a != "--from-json")
              + "`" + f" (sizes {res['sizes']}, {res['repeats']} training subsets per size).", ""]
    path.write_text("\n".join(lines))


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(res["pairs"].values())
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 3.6), squeeze=False)
    for ax, e in zip(axes[0], pairs):
        for kind, curve in e["curves"].items():
            if not curve:
                continue
            x = [c["n"] for c in curve]
            y = [c["apgr"] for c in curve]
            lo = [c["ci95"][0] for c in curve]
            hi = [c["ci95"][1] for c in curve]
            ax.plot(x, y, marker="o", label=kind)
            ax.fill_between(x, lo, hi, alpha=0.15)
        ax.axhline(e["random"]["apgr_mean"], color="grey", ls="--", lw=1, label="random")
        ax.set_xscale("log")
        ax.set_title(e["label"], fontsize=9)
        ax.set_xlabel("training labels (prompts)")
        ax.set_ylabel("held-out APGR")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
