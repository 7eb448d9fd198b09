#!/usr/bin/env python
"""Do the routers know the *kind of task*?  A check on the Vicuna-80 prompts (measure only).

    python bench/task_kind.py [--data ../shared/data] [--routers linear mf sw bert]

``train/extra/vicuna80_gpt4_reviews.jsonl`` holds GPT-4 (March 2023) score pairs for 77 everyday
prompts in nine categories.  Per prompt the "gap" is gpt-3.5-turbo-0301's score minus the mean
score of llama-13b and alpaca-13b: how much a stronger model is worth there.  The script prints
each router's correlation with that gap and its mean win rate per category (categories ordered by
gap).  No shipped router is trained on these prompts (all 77 are also AlpacaEval instructions).
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
from routekit.eval.suite import average_ranks

STRONGER, WEAKER = "gpt-3.5-turbo-0301", ("llama-13b", "alpaca-13b")


def load_gaps(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    scores: dict[str, dict[str, float]] = collections.defaultdict(dict)
    category: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            scores[r["prompt"]][r["model_a"]] = float(r["score_a"])
            category[r["prompt"]] = r["category"]
    prompts = [p for p, s in scores.items() if STRONGER in s and any(m in s for m in WEAKER)]
    gap = np.array([scores[p][STRONGER] - np.mean([scores[p][m] for m in WEAKER if m in scores[p]])
                    for p in prompts])
    return prompts, gap, np.array([category[p] for p in prompts])


def _ranks(x) -> np.ndarray:
    """Ranks 0..n-1 with ties given their mean rank (Spearman's convention: the gap has few distinct
    values, so ranking ties by position would make the coefficient depend on the prompts' order)."""
    return average_ranks(x) - 1.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="shared data folder (default: $ROUTEKIT_DATA, else ../shared/data)")
    ap.add_argument("--routers", nargs="+", default=["linear", "mf", "sw", "bert"])
    args = ap.parse_args(argv)
    path = args.data / "train" / "extra" / "vicuna80_gpt4_reviews.jsonl"
    if not path.is_file():
        print(f"no {path}; pass --data", file=sys.stderr)
        return 2
    prompts, gap, cats = load_gaps(path)
    print(f"{len(prompts)} Vicuna-80 prompts; gap = {STRONGER} − mean({', '.join(WEAKER)}) GPT-4 score")
    wins = {}
    for name in args.routers:
        w = routekit.load(name).win_rates(prompts)
        wins[name] = w
        print(f"{name:10s} corr(win rate, gap) {np.corrcoef(w, gap)[0, 1]:+.3f}  "
              f"Spearman {np.corrcoef(_ranks(w), _ranks(gap))[0, 1]:+.3f}")
    print(f"\n{'category':16s}  n   gap " + "".join(f"{n:>9s}" for n in wins))
    for c in sorted(set(cats.tolist()), key=lambda c: -gap[cats == c].mean()):
        m = cats == c
        print(f"{c:16s} {int(m.sum()):2d} {gap[m].mean():5.2f} " + "".join(f"{wins[n][m].mean():9.3f}" for n in wins))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
