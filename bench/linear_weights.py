#!/usr/bin/env python
"""How the default linear head's source weights were chosen (docs/quality.md, round 4), from a clone.

    python bench/linear_weights.py                          # paste rows at weight 0, 0.5, 1, 2
    python bench/linear_weights.py --source mmlu --weights 0.7 1 1.5

Each row trains the shipped configuration (``export.linear.LinearConfig()``, the real trainer) with one
source's row weight changed and prints its grouped 5-fold cross-validation: APGR of the MMLU gold-train
questions and AUC of the length-control rows (long easy vs short hard), both out of fold. No dev set or
suite is read. Embeddings come from the shipped artifact's encoder (cached under ``$ROUTEKIT_CACHE``).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from _common import DATA, uptime

import routekit
from routekit.eval.suite import auc
from routekit.routers.linear import load_bow_tokenizer


def main(argv=None) -> int:
    from routekit_export.embed import embed_texts
    from routekit_export.linear import LinearConfig, load_prompt_table, train_linear

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA), help="shared data folder (default: %(default)s)")
    ap.add_argument("--source", default="paste", help="training source whose row weight varies (default: paste)")
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0])
    args = ap.parse_args(argv)
    base = LinearConfig()
    if args.source not in base.source_weights:
        ap.error(f"--source must be one of {', '.join(base.source_weights)}")
    router = routekit.load("linear")
    spec = router.manifest["encoder"]
    key = router.manifest.files[spec["file"]]["sha256"]
    table = load_prompt_table(DATA if args.data is None else args.data, tuple(base.extra), log=lambda *a: None)
    emb = embed_texts(router.encoder, table.prompts, encoder_key=key)
    tok = load_bow_tokenizer(router.manifest.path(spec["tokenizer"]))
    length = table.source == "length"
    print(f"{len(table)} training prompts; varying the weight of {args.source!r} "
          f"(shipped: {base.source_weights[args.source]}); box: {uptime()}")
    print(f"| {args.source} weight | CV MMLU APGR | CV AUC, length rows | seconds |\n|---|---|---|---|")
    for wgt in args.weights:
        cfg = LinearConfig()
        cfg.source_weights[args.source] = wgt
        t0 = time.time()
        _, m = train_linear(emb, table, tok, cfg, log=lambda *a: None)
        oof = m["oof_gain"]
        ok = length & ~np.isnan(oof)
        len_auc = auc(oof[ok], table.gain[ok] > 0) if ok.any() else float("nan")
        print(f"| {wgt:g} | {m['cv_apgr'].get('mmlu')} | {len_auc:.3f} | {time.time() - t0:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
