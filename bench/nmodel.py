"""N models, one artifact: quality vs cost of ``select`` on held-out prompts, against mixing single models.

    nice python bench/nmodel.py                 # -> docs/nmodel.md, .png, .json
    nice python bench/nmodel.py --mf            # also retrain the MF router (about an hour on the 2-core box)

Two label sets with every model's 0/1 correctness per prompt: RouterBench (``train/multi_model_scores.jsonl``:
3,160 prompts of ARC-Challenge, Winogrande, MBPP; 11 models) and ZeroEval (``train/extra/zeroeval_scores.jsonl``:
CRUXEval-O and MATH level 5, 1,502 prompts; the 12 current models of :data:`ZE_PRICES`).  The prompts are
split *by prompt*: a ``--heldout`` share is never seen in fitting.

**adapted (irt)**: the training prompts' labels are written as a label file and fitted by the real command,
``routekit-export fit --labels FILE --out DIR --prior PRIOR`` (no --strong/--weak: every model, penalties
chosen by cross-validated log-loss on that file); the artifact is loaded with ``routekit.load`` and asked
for each model's predicted quality (``router.model_quality``, what ``select`` uses), then
``quality − price / w`` is maximised over a sweep of willingness to pay ``w`` (0 … ∞).  PRIOR is routekit's
default recipe retrained without the data set (the shipped default saw these prompts; see
``bench/own_models.py``).  **MF** (RouterBench only): the shipped MF recipe minus every battle on a
held-out prompt (``--mf``; otherwise its numbers are read from the previous ``nmodel.json``: same split).

Compared on the held-out prompts: every single model, random mixing of single models (the upper convex
hull of their points: any point on it is reachable by sending a random share of traffic to each of two
models), uniform random choice and the oracle (the cheapest correct model).  AIQ (RouterBench's average
quality over the cost range): the area under a method's non-decreasing convex hull between the cheapest
and the dearest single model, divided by that range; 95 % bootstrap intervals over held-out prompts
(the difference to the mix resampled jointly).  Prices: approximate list prices (USD per million tokens,
mean of input and output); every prompt counts as the same number of tokens.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import DATA, uptime

import routekit
from routekit import artifact

ROOT = Path(__file__).resolve().parent.parent

RB_PRICES = {  # USD per million tokens, mean of input and output list prices (approximate, 2024)
    "gpt-4-1106-preview": 20.0, "claude-v2": 16.0, "claude-1": 16.0, "claude-instant-1": 1.6,
    "gpt-3.5-turbo-1106": 1.5, "llama-2-70b-chat": 0.9, "zero-one-ai/Yi-34B-Chat": 0.8,
    "meta/code-llama-instruct-34b-chat": 0.776, "mixtral-8x7b-instruct-v0.1": 0.6,
    "WizardLM/WizardLM-13B-V1.2": 0.3, "mistral-7b-instruct": 0.2,
}
ZE_PRICES = {  # USD per million tokens, mean of input and output list prices (approximate, late 2024)
    "claude-3-5-sonnet-20240620": 9.0, "gpt-4o-2024-08-06": 6.25, "gemini-1.5-pro": 3.125,
    "Qwen2.5-72B-Instruct": 1.2, "gpt-3.5-turbo-0125": 1.0, "Meta-Llama-3.1-70B-Instruct": 0.88,
    "claude-3-haiku-20240307": 0.75, "gpt-4o-mini-2024-07-18": 0.375, "Qwen2.5-7B-Instruct": 0.3,
    "gemma-2-9b-it": 0.3, "gemini-1.5-flash": 0.1875, "Meta-Llama-3.1-8B-Instruct": 0.18,
}
SETS = {"routerbench": RB_PRICES, "zeroeval": ZE_PRICES}
WTPS = [0.0] + list(np.logspace(-2, 4, 61)) + [float("inf")]


def read_set(name: str, data: Path):
    """(prompts, sources, models, Y (0/1, NaN = not scored)) of a label set, models dearest first."""
    from routekit_export import data as D
    from routekit_export.mixture import zeroeval_question

    prices = SETS[name]
    path = data / "train" / ("extra/zeroeval_scores.jsonl" if name == "zeroeval" else "multi_model_scores.jsonl")
    want = "zeroeval/" if name == "zeroeval" else "routerbench/"
    prompts, sources, rows = [], [], []
    for _, r in D.read_jsonl(path, ("prompt", "scores")):
        if not r.get("source", "").startswith(want):
            continue
        prompts.append(zeroeval_question(r["prompt"]) if name == "zeroeval" else r["prompt"])
        sources.append(r["source"].split("/", 1)[1])
        rows.append({D.ALIASES.get(m, m): v for m, v in r["scores"].items()})
    models = sorted(prices, key=lambda m: -prices[m])
    Y = np.array([[np.nan if s.get(m) is None else float(s[m]) for m in models] for s in rows])
    return prompts, np.array(sources), models, Y


def split(prompts: list[str], heldout: float, seed: int) -> np.ndarray:
    """Held-out mask, by prompt (bench/nmodel.py's split since its first version: the MF numbers match)."""
    rng = np.random.default_rng(seed)
    uniq = sorted(set(prompts))
    held = set(rng.choice(uniq, size=int(len(uniq) * heldout), replace=False).tolist())
    return np.array([p in held for p in prompts])


# --------------------------------------------------------------------------- the adapted (irt) router


def prior_artifact(name: str, prompts: list[str], out: Path) -> Path:
    """A linear artifact with the default recipe's weights retrained without data set ``name``."""
    sys.path.insert(0, str(ROOT / "bench"))
    from own_models import leave_source_out_weights
    from routekit_export.fit_build import EncoderSource

    weights, note = leave_source_out_weights(EncoderSource(), name, prompts)
    src = artifact.resolve("linear")
    man = artifact.read_manifest(src)
    with artifact.ArtifactWriter(out) as w:
        for rel in (man["encoder"]["file"], man["encoder"]["tokenizer"]):
            (w.dir / rel).write_bytes(man.path(rel).read_bytes())
        np.savez(w.dir / "linear.npz", **weights)
        w.manifest.update({k: man.data[k] for k in ("kind", "pair", "models", "aliases", "encoder", "router") if k in man.data})
        w.manifest.update(name=f"linear-without-{name}", description="bench/nmodel.py: the default recipe without "
                          f"{name}'s prompts (leave-source-out prior)", training=note)
    return out


def fit_irt(name: str, prompts, models, Y, train: np.ndarray, tmp: Path) -> tuple[object, float, dict]:
    """Write the training labels, run ``routekit-export fit`` on them, load the artifact."""
    from routekit_export.cli import main as export_main

    labels = tmp / f"{name}-train.jsonl"
    with open(labels, "w", encoding="utf-8") as fh:
        for i in np.flatnonzero(train):
            scores = {m: float(Y[i, j]) for j, m in enumerate(models) if np.isfinite(Y[i, j])}
            fh.write(json.dumps({"prompt": prompts[i], "scores": scores}) + "\n")
    prior = prior_artifact(name, [prompts[i] for i in range(len(prompts))], tmp / f"prior-{name}")
    out = tmp / f"irt-{name}"
    t0 = time.time()
    rc = export_main(["fit", "--labels", str(labels), "--out", str(out), "--prior", str(prior), "--threads", "2"])
    seconds = time.time() - t0
    if rc != 0:
        raise SystemExit(f"routekit-export fit failed ({rc})")
    router = routekit.load(out)
    return router, seconds, router.manifest["metrics"]["cross_validation"]


# --------------------------------------------------------------------------- curves and AIQ


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


def curve(S: np.ndarray, Y: np.ndarray, price: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(cost, accuracy) per willingness to pay for predicted qualities S (ties go to the cheaper model)."""
    pts = []
    for w in WTPS:
        u = -np.broadcast_to(price, S.shape) if w == 0 else (S if np.isinf(w) else S - price / w)
        # columns are sorted dearest first: the last maximum is the cheapest
        pick = S.shape[1] - 1 - np.argmax(u[rows][:, ::-1], axis=1)
        pts.append((float(price[pick].mean()), float(Y[rows, pick].mean())))
    return np.array(pts)


def summarise(Qs: dict, Y, price, rows) -> dict:
    lo, hi = float(price.min()), float(price.max())
    singles = np.array([(price[j], Y[rows, j].mean()) for j in range(Y.shape[1])])
    best = int(np.argmax(singles[:, 1]))
    curves = {k: curve(Q, Y, price, rows) for k, Q in {**Qs, "oracle": Y}.items()}
    out = {"aiq": {k: hull_aiq(*c.T, lo, hi) for k, c in curves.items()},
           "random_uniform": [float(price.mean()), float(Y[rows].mean())],
           "best_single": {"accuracy": float(singles[best, 1]), "cost": float(singles[best, 0])},
           "accuracy_at_best_single_cost": {k: float(c[c[:, 0] <= singles[best, 0] + 1e-9][:, 1].max())
                                            for k, c in curves.items() if k != "oracle"},
           "curves": {k: c.tolist() for k, c in curves.items()}, "singles": singles.tolist()}
    out["aiq"]["single_model_mix"] = hull_aiq(*singles.T, lo, hi)
    return out


def bootstrap(Qs: dict, Y, price, idx, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    keys = list(Qs)
    draws = []
    for _ in range(n):
        b = rng.choice(idx, size=len(idx), replace=True)
        a = summarise(Qs, Y, price, b)["aiq"]
        draws.append([a[k] for k in keys] + [a["single_model_mix"]] + [a[k] - a["single_model_mix"] for k in keys])
    draws = np.array(draws)
    names = keys + ["single_model_mix"] + [f"{k} - single_model_mix" for k in keys]
    return {k: np.percentile(draws[:, i], [2.5, 97.5]).round(4).tolist() for i, k in enumerate(names)}


def run_set(name: str, args, tmp: Path, previous: dict) -> dict:
    prompts, sources, models, Y = read_set(name, args.data)
    prices = SETS[name]
    price = np.array([prices[m] for m in models])
    test = split(prompts, args.heldout, args.seed)
    idx = np.flatnonzero(test)
    router, seconds, cv = fit_irt(name, prompts, models, Y, ~test, tmp)
    Qs = {"irt": np.zeros_like(Y)}
    Qs["irt"][idx] = router.model_quality([prompts[i] for i in idx], models)
    for i in idx[:50]:  # the library path agrees with the sweep: select() picks the best utility
        s = router.select(prompts[i], models, prices=prices, willingness_to_pay=10.0)
        assert abs(s.utility[s.model] - (Qs["irt"][i] - price / 10.0).max()) < 1e-6, (s, i)
    mf_note = None
    if name == "routerbench" and args.mf:
        Qs["mf"] = np.zeros_like(Y)
        Qs["mf"][idx] = mf_quality(args, prompts, set(np.array(prompts)[idx].tolist()), models, idx, tmp)
    elif name == "routerbench":
        mf_note = previous or None
    Ye = np.nan_to_num(Y)  # a model that did not answer scores 0
    rep = {"prompts": len(prompts), "heldout_prompts": int(test.sum()), "models": models, "prices": prices,
           "fit_seconds": round(seconds, 1), "fit_cv": cv, "overall": summarise(Qs, Ye, price, idx),
           "by_source": {s: summarise(Qs, Ye, price, idx[sources[idx] == s]) for s in sorted(set(sources))},
           "bootstrap_95": bootstrap(Qs, Ye, price, idx, args.boot, args.seed), "mf_previous": mf_note}
    a = rep["overall"]["aiq"]
    print(f"{name}: irt AIQ {a['irt']:.4f} vs mix {a['single_model_mix']:.4f} (diff CI "
          f"{rep['bootstrap_95']['irt - single_model_mix']}), fit {seconds:.0f}s", file=sys.stderr, flush=True)
    return rep


def mf_quality(args, prompts, heldout: set, models, idx, tmp: Path) -> np.ndarray:
    """The shipped MF recipe minus held-out prompts' battles; P(model beats the weak model) per prompt."""
    import shutil

    from routekit_export import data as D
    from routekit_export.embed import embed_texts
    from routekit_export.mf import MFConfig, train_mf

    from routekit.select import rank_many

    battles = D.load_training(args.data)
    mf = routekit.load("mf")
    enc_file = mf.manifest["encoder"]["file"]
    emb = embed_texts(mf.encoder, battles.prompts, encoder_key=mf.manifest.files[enc_file]["sha256"])
    arrays = battles.arrays()
    keep = ~np.isin(arrays["prompt"], [i for i, p in enumerate(battles.prompts) if p in heldout])
    weights, _, _ = train_mf(emb, {k: v[keep] for k, v in arrays.items()}, len(battles.models),
                                   MFConfig(epochs=args.epochs))
    out = tmp / "mf-heldout"
    with artifact.ArtifactWriter(out) as w:
        for f in (enc_file, mf.manifest["encoder"]["tokenizer"]):
            shutil.copyfile(mf.path / f, w.dir / f)
        np.savez(w.dir / "mf.npz", **weights)
        w.manifest.update({"name": "mf-heldout", "kind": "mf", "description": "bench/nmodel.py throwaway MF",
                           "pair": {"strong": D.STRONG, "weak": D.WEAK}, "models": battles.models,
                           "encoder": dict(mf.manifest["encoder"]), "router": {"weights": "mf.npz", "hidden": 128}})
    return rank_many(routekit.load(out), [prompts[i] for i in idx], models)


# --------------------------------------------------------------------------- main and report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--heldout", type=float, default=0.4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--mf", action="store_true", help="retrain MF on RouterBench (else its previous numbers)")
    ap.add_argument("--epochs", type=int, default=10, help="MF epochs (10: the shipped recipe)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--from-json", action="store_true", help="only rewrite nmodel.md and nmodel.png from nmodel.json")
    args = ap.parse_args(argv)
    path = args.out / "nmodel.json"
    if args.from_json:
        report = json.loads(path.read_text())
    else:
        report = {"command": "nice python bench/nmodel.py " + " ".join(sys.argv[1:]), "box": uptime(),
                  "heldout": args.heldout, "seed": args.seed, "sets": {}}
        with tempfile.TemporaryDirectory() as tmp:
            for name in args.sets:
                report["sets"][name] = run_set(name, args, Path(tmp), previous_mf(path))
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1) + "\n")
    write_markdown(report, args.out / "nmodel.md")
    plot(report, args.out / "nmodel.png")
    return 0


def previous_mf(path: Path) -> dict:
    """MF's numbers from the last nmodel.json that has them (the first format, or this one's note)."""
    if not path.is_file():
        return {}
    prev = json.loads(path.read_text())
    if "overall" in prev:  # the first version of this script (MF only)
        return {"aiq": prev["overall"]["aiq"]["mf_select"], "ci95": prev["bootstrap_95"]["mf_select"],
                "difference_ci95": prev["bootstrap_95"]["difference"],
                "at_best_single_cost": prev["overall"]["mf_accuracy_at_best_single_cost"]}
    return prev.get("sets", {}).get("routerbench", {}).get("mf_previous") or {}


def _ci(ci) -> str:
    return f"{ci[0]:.3f} – {ci[1]:.3f}" if ci else ""


def write_markdown(report: dict, path: Path) -> None:
    L = ["# N models in one artifact: `select` on held-out prompts", "",
         "Generated by `bench/nmodel.py` (do not edit by hand; numbers in [nmodel.json](nmodel.json), plot "
         "[nmodel.png](nmodel.png)). Command: `" + report["command"] + "`.", "",
         "Each label set's prompts are split by prompt; " f"{report['heldout']:.0%} are held out (seed {report['seed']}). "
         "**adapted (irt)** is `routekit-export fit --labels TRAIN.jsonl --out DIR --prior PRIOR` on the training "
         "prompts' per-model correctness (no --strong/--weak: every model, penalties by cross-validated log-loss on "
         "that file), loaded with `routekit.load`; on each held-out prompt `select` picks the model with the best "
         "predicted quality − price / w, swept over the willingness to pay w. PRIOR is the default recipe retrained "
         "without the label set (the shipped default saw these prompts). *Single-model mix* is the hull of the "
         "single models: any point on it is reached by sending a random share of traffic to each of two models, "
         "so it is the baseline a router must beat. AIQ: area under a method's non-decreasing convex hull between "
         "the cheapest and the dearest model's price, divided by that range; intervals: 95 % bootstrap over "
         "held-out prompts. Prices: approximate list prices, USD per million tokens (mean of input and output), "
         "every prompt counted as the same number of tokens.", "", "![quality vs cost](nmodel.png)", ""]
    for name, rep in report["sets"].items():
        o, bs = rep["overall"], rep["bootstrap_95"]
        b = o["best_single"]
        L += [f"## {name}: {len(rep['models'])} models, {rep['heldout_prompts']} held-out prompts", "",
              "| method | AIQ | 95 % bootstrap | AIQ − mix, 95 % bootstrap | accuracy at the best single model's price "
              f"({b['cost']:g}) |", "|---|---|---|---|---|"]
        for k in [x for x in o["aiq"] if x not in ("oracle", "single_model_mix")]:
            L.append(f"| {'adapted (irt) select' if k == 'irt' else k + ' select'} | {o['aiq'][k]:.3f} | {_ci(bs.get(k))} | "
                     f"{o['aiq'][k] - o['aiq']['single_model_mix']:+.3f} ({_ci(bs.get(k + ' - single_model_mix'))}) | "
                     f"{o['accuracy_at_best_single_cost'][k]:.3f} |")
        if rep.get("mf_previous"):
            m = rep["mf_previous"]
            L.append(f"| MF select (previous run, same split) | {m['aiq']:.3f} | {_ci(m['ci95'])} | "
                     f"{m['aiq'] - o['aiq']['single_model_mix']:+.3f} ({_ci(m['difference_ci95'])}) | "
                     f"{m['at_best_single_cost']:.3f} |")
        L += [f"| single-model mix (random mixing) | {o['aiq']['single_model_mix']:.3f} | {_ci(bs.get('single_model_mix'))} | | "
              f"{b['accuracy']:.3f} (the best single model) |",
              f"| oracle (cheapest correct model) | {o['aiq']['oracle']:.3f} | | | |",
              f"| uniform random model | | | | {o['random_uniform'][1]:.3f} at cost {o['random_uniform'][0]:.2f} |", ""]
        L += ["By source (AIQ): " + "; ".join(
            f"{s}: adapted {v['aiq']['irt']:.3f}, mix {v['aiq']['single_model_mix']:.3f}, oracle {v['aiq']['oracle']:.3f}"
            for s, v in rep["by_source"].items()) + ".", ""]
        L += ["| model | price | held-out accuracy |", "|---|---|---|"]
        for (c, acc), m in zip(o["singles"], rep["models"]):
            L.append(f"| {m} | {c:g} | {acc:.3f} |")
        cv = rep["fit_cv"]
        sel = cv.get("selection", {})
        L += ["", f"`fit` took {rep['fit_seconds']:.0f} s (shared 2-core box) for {rep['prompts'] - rep['heldout_prompts']} "
              f"training prompts × {len(rep['models'])} models; its own cross-validation on the training file: quality "
              f"log-loss {cv['quality_log_loss']['adapted']:.4f} (each model's mean: {cv['quality_log_loss']['model_mean']:.4f})"
              + (f"; the predicted-best model right on {sel['adapted_best_pick']:.3f} of {sel['prompts']} fully labelled "
                 f"prompts vs {sel['best_single_model']:.3f} for the best single model" if sel else "") + ".", ""]
    L += [f"Box while measuring: `{report['box']}`.", ""]
    path.write_text("\n".join(L))


def plot(report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(report["sets"].items())
    fig, axes = plt.subplots(1, len(sets), figsize=(7 * len(sets), 4.6), squeeze=False)
    for ax, (name, rep) in zip(axes[0], sets):
        s = rep["overall"]
        singles = np.array(s["singles"])
        ax.scatter(singles[:, 0], singles[:, 1], c="grey", s=18, zorder=3, label="single models")
        for (x, y), m in zip(singles, rep["models"]):
            ax.annotate(m.split("/")[-1][:16], (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
        order = np.argsort(singles[:, 0])
        hull = [order[0]]
        for j in order[1:]:
            if singles[j, 1] > singles[hull[-1], 1]:
                hull.append(j)
        ax.plot(singles[hull, 0], singles[hull, 1], "--", c="grey", lw=0.8)
        for k, c in s["curves"].items():
            c = np.array(c)
            ax.plot(c[:, 0], c[:, 1], ":" if k == "oracle" else "-o", ms=2.5,
                    label={"irt": "adapted (irt) select", "mf": "MF select", "oracle": "oracle"}.get(k, k))
        ax.scatter(*s["random_uniform"], marker="x", c="k", label="uniform random")
        ax.set_xscale("log")
        ax.set_title(f"{name}: AIQ adapted {s['aiq']['irt']:.3f} / mix {s['aiq']['single_model_mix']:.3f}", fontsize=9)
        ax.set_xlabel("mean price paid (USD / M tokens)", fontsize=8)
        ax.set_ylabel("accuracy (held out)", fontsize=8)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
