"""The project's eval report: every shipped router on every dev benchmark and shipped prompt suite
-> ``docs/eval.md`` (+ ``eval.json`` and plots), and optionally the table between the eval-table
markers of a README. The baselines ``random`` and ``length`` (number of characters, no model) are
rows of every table, whatever ``--router`` names.

    python bench/eval_report.py --readme README.md            # from the repository root

Win rates are cached like ``routekit eval``'s (``$ROUTEKIT_CACHE/winrates``; ``--no-cache``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import sys
from pathlib import Path
from typing import Sequence

from routekit import artifact
from routekit import eval as ev
from routekit.errors import BadInputError, RoutekitError
from routekit.eval.suite import format_band_table, load_suites, suite_report
from routekit.loading import load

#: The paper's best APGR per benchmark (Ong et al., ICLR 2025, Table/Figure numbers quoted in the README).
PAPER_BEST = {"mmlu": ("0.603", "SW, Arena + 1,500 MMLU gold labels"),
              "gsm8k": ("0.622", "causal LLM, Arena + GPT-4-judge battles"),
              "mt-bench": ("0.802", "MF, Arena + GPT-4-judge battles")}
START, END = "<!-- eval-table:start -->", "<!-- eval-table:end -->"
#: Rows every table carries.
BASELINES = ("random", "length")


def _fmt_ci(d: dict) -> str:
    ci = d.get("apgr_ci95") or [None, None]
    return f"{d['apgr']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci[0] is not None else f"{d['apgr']:.3f}"


def write_report(routers: Sequence[str], data_dir: Path, out: Path, *, threads: int | None = None,
                 cache: Path | None = None, readme: Path | None = None, refresh: bool = False) -> str:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    routers = list(routers) + [b for b in BASELINES if b not in routers]
    loaded = [load(name, threads=threads) for name in routers]
    summaries = {}
    for bench in ev.BENCHMARKS:
        evalset = ev.load_benchmark(bench, data_dir)
        rates = ev.cached_win_rates(loaded, evalset, cache, refresh=refresh)
        try:
            results = [ev.evaluate(w, evalset, name) for w, name in zip(rates, routers)]
        except BadInputError as exc:  # e.g. strong and weak tie on a tiny sample
            summaries[bench] = {"benchmark": bench, "n": len(evalset), "undefined": str(exc),
                                "quality_strong": evalset.quality_strong, "quality_weak": evalset.quality_weak}
            continue
        summaries[bench] = ev.report(results, evalset, rates)
        ev.plot(results, evalset, out / f"eval-{bench}.png")
    suites = load_suites("all")
    for suite in suites:
        summaries[suite.name] = {r.name: suite_report(r, suite) for r in loaded}
    (out / "eval.json").write_text(json.dumps(summaries, indent=2) + "\n")

    head = ("| router | " + " | ".join(f"{b} APGR [95% CI]" for b in ev.BENCHMARKS) + " | MMLU CPT(50%) | "
            + " | ".join(f"{s.name} suite AUC | {s.name} trivial / hard → strong²" for s in suites) + " |")
    lines = [head, "|" + "---|" * (len(ev.BENCHMARKS) + 2 + 2 * len(suites))]
    for name in routers:
        cells = []
        for b in ev.BENCHMARKS:
            s = summaries[b]
            if "undefined" in s:
                cells.append("undefined¹")
            else:
                cells.append(_fmt_ci(s["routers"][name]) if name != "random" else
                             f"{s['routers'][name]['apgr']:.3f} (seed 0; mean of 10 seeds {s['random']['apgr_mean']:.3f})")
        mm = summaries["mmlu"]
        cells.append(f"{100 * mm['routers'][name]['cpt50']:.1f} %" if "routers" in mm else "–")
        for suite in suites:
            rep = summaries[suite.name][loaded[routers.index(name)].name]
            d = rep.get("default")
            cells += [f"{rep['auc']:.3f}",
                      f"{100 * d['trivial_to_strong']:.0f} % / {100 * d['hard_to_strong']:.0f} %" if d else "–"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    opt = [f"{summaries[b]['optimal']['apgr']:.3f}" if "optimal" in summaries[b] else "undefined¹" for b in ev.BENCHMARKS]
    lines.append("| optimal (oracle) | " + " | ".join(opt) + " | | " + " | ".join("1.000 | 0 % / 100 %" for _ in suites) + " |")
    lines.append("| paper, best router | " + " | ".join(f"{PAPER_BEST[b][0]} ({PAPER_BEST[b][1]})" for b in ev.BENCHMARKS)
                 + " |" * (2 + 2 * len(suites)))
    notes = []
    for b in ev.BENCHMARKS:
        s = summaries[b]
        notes.append(f"- {b}: n = {s['n']} questions, strong {s['quality_strong']:.4f}, weak {s['quality_weak']:.4f}"
                     + (f" — ¹ APGR undefined: {s['undefined']}" if "undefined" in s else ""))
    for suite in suites:
        bands = f"; bands {', '.join(dict.fromkeys(suite.bands))}" if suite.bands else ""
        notes.append(f"- {suite.name} suite: the {len(suite)} prompts of `routekit/suites/{suite.name}.jsonl` "
                     f"({int(suite.hard.sum())} hard{bands}; never trained on)")
    notes.append("- length (router): the length-only baseline (win rate = a monotone function of the number of characters, "
                 "no model; `routekit.load(\"length\")`); random: seed 0, with the mean of 10 seeds where given")
    notes.append("- AUC = P(a hard prompt scores above a trivial one); ² share of each side sent to strong at the "
                 "router's default threshold (`routekit eval --suite all`)")
    band_tables = [f"**{s.name} suite by band** (default threshold):\n\n" + format_band_table(list(summaries[s.name].values()))
                   for s in suites if s.bands]
    table = "\n".join(lines)
    md = "\n".join([
        "# Routing quality on the dev benchmarks",
        "",
        f"Generated by `python bench/eval_report.py` on {_dt.date.today().isoformat()} from `{data_dir}` "
        "(RouteLLM's eval layout; contaminated prompts dropped). 95 % intervals: percentile bootstrap over "
        "questions (1,000 resamples). The paper's routers trained on ~65k Arena human battles + ~120k GPT-4-judge "
        "battles with OpenAI embeddings; routekit's shipped routers train on the permissive data in "
        "`shared/data/train` only (see each manifest).",
        "", table, "", *notes, "", *[x for t in band_tables for x in (t, "")],
        *[f"![{b}](eval-{b}.png)" for b in ev.BENCHMARKS if "undefined" not in summaries[b]], "",
    ])
    (out / "eval.md").write_text(md)
    if readme is not None:
        text = Path(readme).read_text()
        if START in text and END in text:
            new = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: f"{START}\n{table}\n\n" +
                         "\n".join(notes) + f"\n{END}", text, flags=re.S)
            Path(readme).write_text(new)
    return md


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="eval_report.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None,
                   help="RouteLLM evals folder (default: $ROUTEKIT_DATA/dev/routellm-evals)")
    p.add_argument("--router", action="append", default=None, help="routers (default: every shipped one; the baselines random and "
                   "length are always added)")
    p.add_argument("--out", type=Path, default=Path("docs"), help="folder for eval.md, eval.json and PNGs "
                   "(default: %(default)s)")
    p.add_argument("--readme", type=Path, default=None,
                   help="also rewrite the table between the eval-table markers in this README")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    p.add_argument("--no-cache", action="store_true", help="recompute win rates")
    args = p.parse_args(argv)
    data = args.data or Path(os.environ.get("ROUTEKIT_DATA", "../shared/data")) / "dev" / "routellm-evals"
    routers = args.router or [n for n in artifact.shipped() if n != "default"]
    try:
        md = write_report(routers, data, args.out, threads=args.threads, cache=artifact.cache_dir() / "winrates",
                          readme=args.readme, refresh=args.no_cache)
    except RoutekitError as exc:
        print(f"eval_report.py: error: {exc}", file=sys.stderr)
        return 2
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
