#!/usr/bin/env python
"""How well do the routers rank *chat* prompts?  A proxy measured on AlpacaEval judge battles.

    python bench/chat_proxy.py [--data ../shared/data] [--routers linear sw mf bert] [--by-suite]

The dev MT Bench set is degenerate (9 uncontaminated questions, equal strong and weak means), so
there is no dev number for conversational prompts.  ``train/battles.jsonl`` holds, for 803
AlpacaEval instructions, two GPT-4-turbo judgements of Mixtral against gpt-4-1106-preview (the
default pair).  Per instruction the strong model's quality is the share of the two judgements it
wins (ties half) and the weak model's is the rest; APGR is computed on that as on any benchmark.

These rows are CC BY-NC 4.0: they are only *read here to measure*; no shipped artifact is trained
on them, and none of the shipped routers saw these prompts.  The script also prints what an oracle
that knows the other ~65 AlpacaEval models' results on each instruction reaches (how often
gpt-4-1106-preview beat them there), to show how much signal the labels carry.

``--by-suite`` asks whether the proxy and the everyday suite (routekit/suites/everyday.jsonl) agree:
each instruction is placed by its 5 nearest suite prompts (cosine, the linear artifact's MiniLM
embedding), and the judge's strong share is printed for instructions that look trivial / mixed /
hard and per nearest suite category, with the APGR of ranking instructions by "how hard-like".
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import numpy as np
from _common import DATA

import routekit
from routekit.eval import EvalSet, apgr, bootstrap_apgr, cpt, random_baseline

STRONG, WEAK = "gpt-4-1106-preview", "mixtral-8x7b-instruct-v0.1"


def load_proxy(data: Path) -> tuple[EvalSet, np.ndarray]:
    """(the pair's eval set, the oracle's score per prompt) from the AlpacaEval battles."""
    pair: dict[str, list[float]] = collections.defaultdict(list)
    others: dict[str, list[float]] = collections.defaultdict(list)
    with open(data / "train" / "battles.jsonl", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            if not str(r.get("source", "")).startswith("alpaca_eval") or STRONG not in (r["model_a"], r["model_b"]):
                continue
            other = r["model_b"] if r["model_a"] == STRONG else r["model_a"]
            won = 0.5 if r["winner"] == "tie" else float(r[r["winner"]] == STRONG)
            (pair if other == WEAK else others)[r["prompt"]].append(won)
    prompts = sorted(pair)
    q = np.array([np.mean(pair[p]) for p in prompts])
    oracle = np.array([np.mean(others[p]) if others[p] else 0.5 for p in prompts])
    return EvalSet("alpaca-chat-proxy", prompts, q, 1.0 - q, 0, "alpaca"), oracle


def by_suite(ev: EvalSet, k: int = 5) -> None:
    """Judge strong share of the proxy's instructions grouped by their nearest everyday-suite prompts."""
    from routekit.eval.suite import load_suite

    suite = load_suite("everyday")
    encoder = routekit.load("linear").encoder

    def unit(x):
        x = np.asarray(x, np.float64)
        return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)

    nn = np.argsort(-(unit(encoder(ev.prompts)) @ unit(encoder(suite.prompts)).T), axis=1)[:, :k]
    hard = np.asarray(suite.hard, bool)
    share = hard[nn].mean(axis=1)
    print(f"\nproxy instructions by their {k} nearest everyday-suite prompts (share that are hard):")
    for lo, hi, label in ((0.0, 0.2, "look trivial"), (0.2, 0.8, "mixed"), (0.8, 1.01, "look hard")):
        m = (share >= lo) & (share < hi)
        if m.any():
            print(f"  {label:13s} n={int(m.sum()):4d}  judge prefers strong {ev.strong[m].mean():.3f}")
    cats = np.array(suite.categories)[nn[:, 0]]
    rows = sorted((float(ev.strong[cats == c].mean()), int((cats == c).sum()), c, bool(hard[suite.categories.index(c)]))
                  for c in dict.fromkeys(suite.categories) if (cats == c).sum() >= 5)
    for q, n, c, h in rows:
        print(f"  nearest {c:22s} ({'hard' if h else 'trivial'}) n={n:4d}  judge prefers strong {q:.3f}")
    tie_break = 1e-9 * np.arange(len(share))  # a fixed order among equal shares
    print(f"  APGR of ranking by the hard share {apgr(share + tie_break, ev.strong, ev.weak):.3f}, "
          f"corr(hard share, judge) {np.corrcoef(share, ev.strong)[0, 1]:+.3f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="shared data folder (default: $ROUTEKIT_DATA, else ../shared/data)")
    ap.add_argument("--routers", nargs="+", default=["linear", "sw", "mf", "bert"])
    ap.add_argument("--by-suite", action="store_true",
                    help="also group the instructions by their nearest everyday-suite prompts")
    args = ap.parse_args(argv)
    if not (args.data / "train" / "battles.jsonl").is_file():
        print(f"no {args.data / 'train' / 'battles.jsonl'}; pass --data", file=sys.stderr)
        return 2
    ev, oracle = load_proxy(args.data)
    if not len(ev):
        print("no AlpacaEval battles of the default pair in battles.jsonl", file=sys.stderr)
        return 2
    print(f"{len(ev)} AlpacaEval instructions; strong wins {ev.quality_strong:.3f} of judgements")
    rb = random_baseline(ev, 20)
    print(f"{'random (20 seeds)':24s} APGR {rb.apgr_mean:.3f} ± {rb.apgr_std:.3f}")
    lo, hi = bootstrap_apgr(oracle, ev)
    print(f"{'oracle (other models)':24s} APGR {apgr(oracle, ev.strong, ev.weak):.3f} [{lo:.3f}, {hi:.3f}]")
    for name in args.routers:
        router = routekit.load(name)
        w = router.win_rates(ev.prompts)
        lo, hi = bootstrap_apgr(w, ev)
        print(f"{name:24s} APGR {apgr(w, ev.strong, ev.weak):.3f} [{lo:.3f}, {hi:.3f}]  "
              f"CPT(50%) {cpt(w, ev.strong, ev.weak, 0.5):.1%}  "
              f"sent to strong at its default threshold {np.mean(w >= router.default_threshold):.1%}", flush=True)
    if args.by_suite:
        by_suite(ev)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
