#!/usr/bin/env python
"""N-model selection measured on held-out RouterBench prompts: quality vs cost curves.

    nice python bench/nmodel.py [--data ../shared/data] [--heldout 0.4] [--seed 0] [--out docs]

``train/multi_model_scores.jsonl`` holds, for 3,162 RouterBench prompts (ARC-Challenge,
Winogrande, MBPP), the 0/1 correctness of 11 models.  The prompts are split *by prompt*: a
``--heldout`` share is never seen in training.  An MF router is trained with the shipped MF recipe
(export/mf.py defaults, the same permissive training data as ``artifacts/mf``) minus every battle on
a held-out prompt, written as a throwaway artifact, loaded with ``routekit.load`` and asked
``router.select(prompt, models, prices=..., willingness_to_pay=w)`` for a sweep of ``w`` — the
library path the server's ``router-<name>-auto`` uses.

Compared on the held-out prompts: every single model, uniform random choice, random mixing of
single models (the upper convex hull of their points: any point on it is reachable by sending a
random share of traffic to each of two models) and the oracle (knows which models are right: the
cheapest correct one, swept the same way).  Summary numbers: AIQ (RouterBench's average quality
over the cost range, the area under each method's non-decreasing convex hull between the cheapest
and the dearest single model, divided by that range) with a bootstrap 95 % interval over held-out
prompts, and accuracy at the best single model's cost.

Prices are approximate 2024 list prices, the mean of input and output USD per million tokens; each
prompt is counted as the same number of tokens, so "cost" is the mean price paid per million tokens.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from routekit_export import data as D
from routekit_export.embed import embed_texts
from routekit_export.mf import MFConfig, train_mf

import routekit
from routekit import artifact

ROOT = Path(__file__).resolve().parent.parent

PRICES = {  # USD per million tokens, mean of input and output list prices (approximate, 2024)
    "gpt-4-1106-preview": 20.0, "claude-v2": 16.0, "claude-1": 16.0, "claude-instant-1": 1.6,
    "gpt-3.5-turbo-1106": 1.5, "llama-2-70b-chat": 0.9, "zero-one-ai/Yi-34B-Chat": 0.8,
    "meta/code-llama-instruct-34b-chat": 0.776, "mixtral-8x7b-instruct-v0.1": 0.6,
    "WizardLM/WizardLM-13B-V1.2": 0.3, "mistral-7b-instruct": 0.2,
}
WTPS = [0.0] + list(np.logspace(-2, 4, 61)) + [float("inf")]


def read_routerbench(data: Path):
    prompts, sources, rows = [], [], []
    for _, r in D.read_jsonl(data / "train" / "multi_model_scores.jsonl", ("prompt", "scores")):
        if not r.get("source", "").startswith("routerbench/"):
            continue
        scores = {D.ALIASES.get(m, m): v for m, v in r["scores"].items()}
        prompts.append(r["prompt"]), sources.append(r["source"].split("/", 1)[1]), rows.append(scores)
    models = sorted(PRICES, key=lambda m: -PRICES[m])
    Y = np.array([[float(s.get(m) or 0.0) for m in models] for s in rows])
    return prompts, np.array(sources), models, Y


def train_router(data: Path, heldout: set[str], out: Path, epochs: int = 10) -> Path:
    """The shipped MF recipe on every permissive battle except those on held-out prompts."""
    battles = D.load_training(data)
    mf = routekit.load("mf")
    enc_file = mf.manifest["encoder"]["file"]
    key = mf.manifest["files"][enc_file]["sha256"]
    emb = embed_texts(mf.encoder, battles.prompts, encoder_key=key)
    arrays = battles.arrays()
    keep = ~np.isin(arrays["prompt"], [i for i, p in enumerate(battles.prompts) if p in heldout])
    print(f"training MF on {int(keep.sum()):,} of {len(keep):,} battles ({len(heldout):,} held-out prompts left out)")
    weights, metrics, _ = train_mf(emb, {k: v[keep] for k, v in arrays.items()}, len(battles.models), MFConfig(epochs=epochs))
    import shutil

    with artifact.ArtifactWriter(out) as w:
        for f in (enc_file, mf.manifest["encoder"]["tokenizer"]):
            shutil.copyfile(mf.path / f, w.dir / f)
        np.savez(w.dir / "mf.npz", **weights)
        w.manifest.update({"name": "mf-heldout", "kind": "mf", "description": "bench/nmodel.py throwaway MF",
                           "pair": {"strong": D.STRONG, "weak": D.WEAK}, "models": battles.models,
                           "encoder": dict(mf.manifest["encoder"]), "router": {"weights": "mf.npz", "hidden": 128},
                           "metrics": {"validation": metrics["final"].get("val", {})}})
    return out


def hull_aiq(cost: np.ndarray, qual: np.ndarray, lo: float, hi: float) -> float:
    """Area under the non-decreasing upper convex hull of the points over [lo, hi], / (hi - lo)."""
    pts = sorted(zip(cost, qual))
    hull: list[tuple[float, float]] = []
    for p in pts:  # upper hull (monotone chain)
        while len(hull) >= 2 and (hull[-1][0] - hull[-2][0]) * (p[1] - hull[-2][1]) - \
                (hull[-1][1] - hull[-2][1]) * (p[0] - hull[-2][0]) >= 0:
            hull.pop()
        hull.append(p)
    best = max(range(len(hull)), key=lambda i: hull[i][1])
    xs = [h[0] for h in hull[:best + 1]] + [hi]
    ys = [h[1] for h in hull[:best + 1]] + [hull[best][1]]
    grid = np.linspace(lo, hi, 2001)
    return float(np.interp(grid, xs, ys, left=ys[0]).mean())


def curves(Q: np.ndarray, Y: np.ndarray, price: np.ndarray, rows: np.ndarray):
    """(cost, accuracy) per willingness to pay for router scores Q and for the oracle."""
    out = {}
    for name, S in (("mf", Q), ("oracle", Y)):
        pts = []
        for w in WTPS:
            u = -np.broadcast_to(price, S.shape) if w == 0 else (S if np.isinf(w) else S - price / w)
            # ties go to the cheaper model (columns are sorted dearest first: take the last maximum)
            pick = S.shape[1] - 1 - np.argmax(u[rows][:, ::-1], axis=1)
            pts.append((float(price[pick].mean()), float(Y[rows, pick].mean())))
        out[name] = np.array(pts)
    return out


def summarise(Q, Y, price, rows, lo, hi):
    c = curves(Q, Y, price, rows)
    singles = np.array([(price[j], Y[rows, j].mean()) for j in range(Y.shape[1])])
    best = int(np.argmax(singles[:, 1]))
    mf = c["mf"]
    at_best_cost = mf[mf[:, 0] <= singles[best, 0] + 1e-9][:, 1].max()
    return {"aiq": {"mf_select": hull_aiq(*mf.T, lo, hi), "single_model_mix": hull_aiq(*singles.T, lo, hi),
                    "oracle": hull_aiq(*c["oracle"].T, lo, hi)},
            "random_uniform": [float(price.mean()), float(Y[rows].mean())],
            "best_single": {"accuracy": float(singles[best, 1]), "cost": float(singles[best, 0])},
            "mf_accuracy_at_best_single_cost": float(at_best_cost),
            "curves": {k: v.tolist() for k, v in c.items()}, "singles": singles.tolist()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=D.default_data_dir())
    ap.add_argument("--heldout", type=float, default=0.4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=10, help="MF epochs (10: the shipped recipe)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    args = ap.parse_args(argv)

    prompts, sources, models, Y = read_routerbench(args.data)
    rng = np.random.default_rng(args.seed)
    uniq = sorted(set(prompts))
    held = set(rng.choice(uniq, size=int(len(uniq) * args.heldout), replace=False).tolist())
    test = np.array([p in held for p in prompts])
    with tempfile.TemporaryDirectory() as tmp:
        router = routekit.load(train_router(args.data, held, Path(tmp) / "mf-heldout", args.epochs))
        idx = np.flatnonzero(test)
        # the library path: select() per prompt at each price level reduces to these predicted qualities
        from routekit.select import rank_many

        Q = np.zeros_like(Y)
        Q[idx] = rank_many(router, [prompts[i] for i in idx], models)
        for i in idx[:50]:  # spot check: select() itself agrees with the sweep's choice
            s = router.select(prompts[i], models, prices=PRICES, willingness_to_pay=10.0)
            u = Q[i] - np.array([PRICES[m] for m in models]) / 10.0
            assert abs(s.utility[s.model] - u.max()) < 1e-6
    price = np.array([PRICES[m] for m in models])
    lo, hi = float(price.min()), float(price.max())
    report = {"heldout_prompts": int(test.sum()), "train_prompts_routerbench": int((~test).sum()), "models": models,
              "prices": PRICES, "seed": args.seed, "overall": summarise(Q, Y, price, idx, lo, hi), "by_source": {}}
    for src in sorted(set(sources)):
        report["by_source"][src] = summarise(Q, Y, price, idx[sources[idx] == src], lo, hi)
    boots = []
    for _ in range(args.boot):
        b = rng.choice(idx, size=len(idx), replace=True)
        s = summarise(Q, Y, price, b, lo, hi)["aiq"]
        boots.append([s["mf_select"], s["single_model_mix"], s["mf_select"] - s["single_model_mix"]])
    boots = np.array(boots)
    report["bootstrap_95"] = {k: np.percentile(boots[:, i], [2.5, 97.5]).round(4).tolist()
                              for i, k in enumerate(("mf_select", "single_model_mix", "difference"))}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "nmodel.json").write_text(json.dumps(report, indent=1))
    plot(report, models, args.out / "nmodel.png")
    print(json.dumps({k: v for k, v in report["overall"].items() if k not in ("curves", "singles")}, indent=1))
    print("by source AIQ:", {str(k): {m: round(x, 4) for m, x in v["aiq"].items()} for k, v in report["by_source"].items()})
    print("bootstrap 95 %:", report["bootstrap_95"])
    return 0


def plot(report, models, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(report["by_source"]), figsize=(16, 4.2))
    for ax, (title, s) in zip(axes, [("all held-out", report["overall"]), *report["by_source"].items()]):
        singles = np.array(s["singles"])
        ax.scatter(singles[:, 0], singles[:, 1], c="grey", s=18, zorder=3, label="single models")
        for (x, y), m in zip(singles, models):
            ax.annotate(m.split("/")[-1][:14], (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
        order = np.argsort(singles[:, 0])
        hull = [0]
        for j in order[1:]:
            hull.append(j) if singles[j, 1] > singles[hull[-1], 1] else None
        ax.plot(singles[hull, 0], singles[hull, 1], "--", c="grey", lw=0.8)
        for k, style in (("mf", "-o"), ("oracle", ":")):
            c = np.array(s["curves"][k])
            ax.plot(c[:, 0], c[:, 1], style, ms=2.5, label={"mf": "MF select (held out)", "oracle": "oracle"}[k])
        ax.scatter(*s["random_uniform"], marker="x", c="k", label="uniform random")
        ax.set_xscale("log")
        ax.set_title(f"{title}: AIQ MF {s['aiq']['mf_select']:.3f} / mix {s['aiq']['single_model_mix']:.3f}",
                     fontsize=8)
        ax.set_xlabel("mean price paid (USD / M tokens)", fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
