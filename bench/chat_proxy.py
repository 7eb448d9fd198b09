#!/usr/bin/env python
"""How well do the routers rank *chat* prompts?  A proxy measured on AlpacaEval judge battles.

    python bench/chat_proxy.py [--data ../shared/data] [--routers linear sw mf bert]

The dev MT Bench set is degenerate (9 uncontaminated questions, equal strong and weak means), so
there is no dev number for conversational prompts.  ``train/battles.jsonl`` holds, for 803
AlpacaEval instructions, two GPT-4-turbo judgements of Mixtral against gpt-4-1106-preview (the
default pair).  Per instruction the strong model's quality is the share of the two judgements it
wins (ties half) and the weak model's is the rest; APGR is computed on that as on any benchmark.

These rows are CC BY-NC 4.0: they are only *read here to measure*; no shipped artifact is trained
on them, and none of the shipped routers saw these prompts.  The script also prints what an oracle
that knows the other ~65 AlpacaEval models' results on each instruction reaches (how often
gpt-4-1106-preview beat them there), to show how much signal the labels carry.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import numpy as np

import routekit
from routekit.evaluate import EvalSet, apgr, bootstrap_apgr, cpt, random_baseline

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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--routers", nargs="+", default=["linear", "sw", "mf", "bert"])
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
