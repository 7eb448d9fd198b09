#!/usr/bin/env python
"""Are the win rates probabilities?  ECE and a reliability plot on the dev sets, raw vs calibrated.

    python bench/calibration_report.py --router default --mapped /tmp/linear-mapped [--out docs/calibration]

For each router (``--router``: as shipped; ``--mapped``: artifacts with a ``prob_map``, e.g. written
by ``routekit-export recalibrate --prob-map platt``), on the dev MMLU, GSM8K and MT Bench labels
(shared data, contaminated prompts dropped; never used to fit a map): expected calibration error
(10 equal-width bins) against P(strong wins) with a tie counting half — the target every head is
fitted to — and against P(strong strictly better), plus the range of win rates.  Baselines: a
constant at the label's mean (the best calibrated router that ranks nothing) and the length-only
score (characters, min-max scaled on the set).  Writes ``<out>.md``, ``<out>.json`` and
``<out>.png`` (reliability diagram: each router against the target its map was fitted to; raw
win rates against the soft target, which the heads are trained on).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import routekit
from routekit.eval.sets import load_benchmark

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA  # noqa: E402

BENCH = ("mmlu", "gsm8k", "mt-bench")


def _metrics(p, s, w):
    from routekit_export.calibration_map import ece, reliability, targets_from

    soft, strict = targets_from(s, w, "soft"), targets_from(s, w, "strict")
    return {"n": int(len(p)), "ece_soft": round(ece(p, soft), 4), "ece_strict": round(ece(p, strict), 4),
            "range": [round(float(p.min()), 4), round(float(p.max()), 4)], "mean": round(float(p.mean()), 4),
            "label_mean_soft": round(float(soft.mean()), 4), "reliability": reliability(p, soft),
            "reliability_strict": reliability(p, strict)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--router", nargs="*", default=["default"], help="routers as shipped (default: %(default)s)")
    ap.add_argument("--mapped", nargs="*", default=[], help="artifact folders with a prob_map (default: none)")
    ap.add_argument("--data", type=Path, default=DATA, help="shared data folder (default: $ROUTEKIT_DATA)")
    ap.add_argument("--out", type=Path, default=None, help="write <out>.md/.json/.png (default: print only)")
    args = ap.parse_args(argv)
    dev = {b: load_benchmark(b, args.data / "dev" / "routellm-evals") for b in BENCH}
    rows: dict[str, dict] = {}
    for spec in [*args.router, *args.mapped]:
        r = routekit.load(spec)
        target = "strict" if "strictly" in str((r.manifest.get("prob_map") or {}).get("target")) else "soft"
        label = f"{r.name} (prob_map {r.prob_map.kind}, {target} target)" if r.prob_map else f"{r.name} (raw)"
        rows[label] = {b: _metrics(r.win_rates(ev.prompts), ev.strong, ev.weak) for b, ev in dev.items()}
        if r.prob_map:
            rows[label]["prob_map"] = {k: v for k, v in r.manifest["prob_map"].items() if k not in ("x", "y")}
    for b, ev in dev.items():
        soft = (1 + ev.strong - ev.weak) / 2
        rows.setdefault("baseline: constant at the dev label mean (oracle)", {})[b] = _metrics(np.full(len(ev), soft.mean()), ev.strong, ev.weak)
        n = np.array([len(p) for p in ev.prompts], float)
        rows.setdefault("baseline: length-only (min-max)", {})[b] = _metrics(
            (n - n.min()) / max(n.max() - n.min(), 1.0), ev.strong, ev.weak)
    lines = ["| router | " + " | ".join(f"{b} ECE (soft / strict)" for b in BENCH) + " | win-rate range on MMLU |",
             "|---|" + "---|" * (len(BENCH) + 1)]
    for label, per in rows.items():
        lines.append(f"| {label} | " + " | ".join(f"{per[b]['ece_soft']:.3f} / {per[b]['ece_strict']:.3f}" for b in BENCH)
                     + f" | {per['mmlu']['range'][0]:.3f}–{per['mmlu']['range'][1]:.3f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
        args.out.with_suffix(".md").write_text(table + "\n")
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
        for ax, b in zip(axes, ("mmlu", "gsm8k")):
            ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
            for label, per in rows.items():
                if label.startswith("baseline"):
                    continue
                strict = "strict target" in label
                rel = per[b]["reliability_strict" if strict else "reliability"]
                ece = per[b]["ece_strict" if strict else "ece_soft"]
                ax.plot([x["predicted"] for x in rel], [x["observed"] for x in rel], marker="o",
                        label=f"{label}: ECE {ece:.3f} ({'strict' if strict else 'soft'})")
            ax.set_title(f"dev {b} (n={rows[next(iter(rows))][b]['n']})")
            ax.set_xlabel("reported win rate (bin mean)")
            ax.set_ylabel("observed rate of the router's target")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        fig.savefig(args.out.with_suffix(".png"), dpi=110)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
