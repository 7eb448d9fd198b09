"""Evaluate several routers on every dev benchmark and write ``eval.md`` (+ JSON and plots)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from . import evaluate as ev
from .errors import BadInputError

#: The paper's best APGR per benchmark (Ong et al., ICLR 2025, Table/Figure numbers quoted in the README).
PAPER_BEST = {"mmlu": ("0.603", "SW, Arena + 1,500 MMLU gold labels"),
              "gsm8k": ("0.622", "causal LLM, Arena + GPT-4-judge battles"),
              "mt-bench": ("0.802", "MF, Arena + GPT-4-judge battles")}
START, END = "<!-- eval-table:start -->", "<!-- eval-table:end -->"


def router_cache_key(router) -> str:
    """What a router's win rates depend on: artifact content (or the built-in name), the pair and
    the routekit version (scoring code changes between releases; ``--no-cache`` within one)."""
    from . import __version__

    key = router.manifest.content_hash if router.manifest is not None else \
        hashlib.sha256(router.name.encode()).hexdigest()[:16]
    return f"{key}-{router.strong_model}-{router.weak_model}-v{__version__}".replace("/", "_")


def cached_win_rates(routers: Sequence, evalset: ev.EvalSet, cache: Path | None, *, refresh: bool = False,
                     show_progress: bool = True) -> list[np.ndarray]:
    """Win rates of every router on ``evalset``, read from / written to ``cache`` (keyed by benchmark,
    data hash and :func:`router_cache_key`).  Misses are scored together with a
    :class:`~routekit.router.RouterSet`, so routers that share an encoder embed the prompts once."""
    from .router import RouterSet

    paths = [cache / f"{evalset.name}-{evalset.data_hash[:16]}-{router_cache_key(r)}.npy" if cache else None
             for r in routers]
    out = [np.load(p, allow_pickle=False) if p is not None and p.is_file() and not refresh else None
           for p in paths]
    misses = [i for i, r in enumerate(out) if r is None]
    if misses:
        fresh = RouterSet([routers[i] for i in misses]).win_rates(evalset.prompts, show_progress=show_progress)
        for i, rates in zip(misses, fresh):
            out[i] = rates
            if paths[i] is not None:
                paths[i].parent.mkdir(parents=True, exist_ok=True)
                np.save(paths[i], rates)
    return out


def _fmt_ci(d: dict) -> str:
    ci = d.get("apgr_ci95") or [None, None]
    return f"{d['apgr']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci[0] is not None else f"{d['apgr']:.3f}"


def write_report(routers: Sequence[str], data_dir: Path, out: Path, *, threads: int | None = None,
                 cache: Path | None = None, readme: Path | None = None, refresh: bool = False) -> str:
    from .router import load

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    loaded = [load(name, threads=threads) for name in routers]
    summaries = {}
    for bench in ev.BENCHMARKS:
        evalset = ev.load_benchmark(bench, data_dir)
        rates = cached_win_rates(loaded, evalset, cache, refresh=refresh)
        try:
            results = [ev.evaluate(w, evalset, name) for w, name in zip(rates, routers)]
        except BadInputError as exc:  # e.g. strong and weak tie on a tiny sample
            summaries[bench] = {"benchmark": bench, "n": len(evalset), "undefined": str(exc),
                                "quality_strong": evalset.quality_strong, "quality_weak": evalset.quality_weak}
            continue
        summaries[bench] = ev.report(results, evalset, rates)
        ev.plot(results, evalset, out / f"eval-{bench}.png")
    (out / "eval.json").write_text(json.dumps(summaries, indent=2) + "\n")

    head = "| router | " + " | ".join(f"{b} APGR [95% CI]" for b in ev.BENCHMARKS) + " | MMLU CPT(50%) |"
    lines = [head, "|" + "---|" * (len(ev.BENCHMARKS) + 2)]
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
        cpt = f"{100 * mm['routers'][name]['cpt50']:.1f} %" if "routers" in mm else "–"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {cpt} |")
    opt = [f"{summaries[b]['optimal']['apgr']:.3f}" if "optimal" in summaries[b] else "undefined¹" for b in ev.BENCHMARKS]
    lines.append("| optimal (oracle) | " + " | ".join(opt) + " | |")
    lines.append("| paper, best router | " + " | ".join(f"{PAPER_BEST[b][0]} ({PAPER_BEST[b][1]})" for b in ev.BENCHMARKS) + " | |")
    notes = []
    for b in ev.BENCHMARKS:
        s = summaries[b]
        notes.append(f"- {b}: n = {s['n']} questions, strong {s['quality_strong']:.4f}, weak {s['quality_weak']:.4f}"
                     + (f" — ¹ APGR undefined: {s['undefined']}" if "undefined" in s else ""))
    table = "\n".join(lines)
    md = "\n".join([
        "# Routing quality on the dev benchmarks",
        "",
        f"Generated by `routekit eval-report` on {_dt.date.today().isoformat()} from `{data_dir}` "
        "(RouteLLM's eval layout; contaminated prompts dropped). 95 % intervals: percentile bootstrap over "
        "questions (1,000 resamples). The paper's routers trained on ~65k Arena human battles + ~120k GPT-4-judge "
        "battles with OpenAI embeddings; routekit's shipped routers train on the permissive data in "
        "`shared/data/train` only (see each manifest).",
        "", table, "", *notes, "",
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
