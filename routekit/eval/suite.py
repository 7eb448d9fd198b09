"""Prompt suites with a known side (``trivial`` / ``hard``): does a router order everyday traffic?

A suite is a JSONL file of ``{"id", "prompt", "side": "trivial"|"hard", "category"}`` records. The
shipped suite ``everyday`` (``routekit/suites/everyday.jsonl``, 240 prompts written for routekit,
10 categories per side; labelling rule in ``routekit/suites/README.md``) is a development set: no
shipped router is trained on it.

For a router the report gives

* ``auc``: the probability that a hard prompt gets a higher win rate than a trivial one (ties
  count half); 0.5 is chance, below 0.5 the router ranks everyday traffic backwards;
* the share of each side sent to the strong model at the router's default threshold and at the
  threshold calibrated for ``strong_fraction=0.3``;
* the mean win rate per category.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from routekit.errors import BadInputError
from routekit.io import json_line, text_lines

SIDES = ("trivial", "hard")
_FOLDER = Path(__file__).resolve().parent.parent / "suites"


@dataclass(frozen=True)
class Suite:
    name: str
    ids: list[str]
    prompts: list[str]
    hard: np.ndarray  # bool per prompt
    categories: list[str]

    def __len__(self) -> int:
        return len(self.prompts)


def shipped_suites() -> list[str]:
    return sorted(p.stem for p in _FOLDER.glob("*.jsonl"))


def load_suite(name_or_path: str | Path = "everyday") -> Suite:
    """A shipped suite by name, or a JSONL file of ``{prompt, side, category?, id?}`` records."""
    path = Path(name_or_path)
    if not path.suffix and (_FOLDER / f"{path}.jsonl").is_file():
        path = _FOLDER / f"{path}.jsonl"
    if not path.is_file():
        raise BadInputError(f"{name_or_path}: no such suite (shipped: {', '.join(shipped_suites())}) or file")
    ids, prompts, hard, cats = [], [], [], []
    for lineno, line in text_lines(path):
        if not line.strip():
            continue
        row = json_line(line, f"{path}:{lineno}")
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or row.get("side") not in SIDES:
            raise BadInputError(f"{path}:{lineno}: expected an object with a 'prompt' string and "
                                f"'side' in {SIDES}")
        ids.append(str(row.get("id", f"{path.stem}:{lineno}")))
        prompts.append(row["prompt"])
        hard.append(row["side"] == "hard")
        cats.append(str(row.get("category", row["side"])))
    hard_arr = np.array(hard, dtype=bool)
    if not hard_arr.any() or hard_arr.all():
        raise BadInputError(f"{path}: a suite needs prompts on both sides ({' and '.join(SIDES)})")
    return Suite(path.stem, ids, prompts, hard_arr, cats)


def average_ranks(values) -> np.ndarray:
    """Ranks 1..n, tied values sharing their mean rank (Mann–Whitney's and Spearman's convention)."""
    _, inv, counts = np.unique(np.asarray(values, dtype=np.float64), return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2.0)[inv]


def auc(scores, hard) -> float:
    """P(score of a random hard prompt > score of a random trivial one), ties counted half."""
    s = np.asarray(scores, dtype=np.float64)
    h = np.asarray(hard, dtype=bool)
    a, b = s[h], s[~h]
    # rank formulation (Mann–Whitney U) with average ranks for ties: O(n log n)
    r = average_ranks(np.concatenate([a, b]))
    u = r[: len(a)].sum() - len(a) * (len(a) + 1) / 2.0
    return float(u / (len(a) * len(b)))


def suite_report(router, suite: Suite, win_rates=None) -> dict:
    """AUC, share of each side to strong at the default threshold and at ``strong_fraction=0.3``,
    and the mean win rate per category (``win_rates``: precomputed, in suite order)."""
    w = np.asarray(router.win_rates(suite.prompts) if win_rates is None else win_rates, dtype=np.float64)
    out: dict = {"router": router.name, "suite": suite.name, "n": len(suite),
                 "n_hard": int(suite.hard.sum()), "auc": round(auc(w, suite.hard), 4)}
    thresholds = {}
    try:
        thresholds["default"] = router.default_threshold
        thresholds["p30"] = router.threshold_for(0.3)
    except BadInputError:  # no calibration (e.g. another pair): AUC only
        pass
    for key, thr in thresholds.items():
        out[key] = {"threshold": round(float(thr), 4),
                    "trivial_to_strong": round(float((w[~suite.hard] >= thr).mean()), 4),
                    "hard_to_strong": round(float((w[suite.hard] >= thr).mean()), 4)}
    cats = np.array(suite.categories)
    out["categories"] = {c: {"side": "hard" if suite.hard[cats == c].all() else "trivial",
                             "mean_win_rate": round(float(w[cats == c].mean()), 4)}
                         for c in dict.fromkeys(suite.categories)}
    return out


def format_suite_table(reports: list[dict]) -> str:
    pct = lambda x: f"{100 * x:.0f} %"  # noqa: E731
    lines = ["| router | AUC hard > trivial | trivial → strong (default) | hard → strong (default) "
             "| trivial → strong (30 %) | hard → strong (30 %) |", "|---|---|---|---|---|---|"]
    for r in reports:
        d, p = r.get("default"), r.get("p30")
        cells = [pct(d["trivial_to_strong"]) if d else "n/a", pct(d["hard_to_strong"]) if d else "n/a",
                 pct(p["trivial_to_strong"]) if p else "n/a", pct(p["hard_to_strong"]) if p else "n/a"]
        lines.append(f"| {r['router']} | {r['auc']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
