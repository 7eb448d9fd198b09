"""Prompt suites with a known side (``trivial`` / ``hard``): does a router order everyday traffic?

A suite is a JSONL file of ``{"id", "prompt", "side": "trivial"|"hard", "category"}`` records,
optionally with a ``band`` (a slice of the suite reported on its own) and a ``pair`` (an id shared by
a trivial and a hard prompt written as a matched pair). The shipped suites (``routekit/suites/``,
labelling rules in its ``README.md``) are development sets: no shipped router is trained on them.

* ``everyday``: 240 prompts written for routekit, 10 categories per side;
* ``length``: length-controlled: long easy prompts (pasted text or code with a routine
  instruction, band ``long_easy``), short hard ones (``short_hard``) and length-matched pairs
  (``matched``), so that the number of characters gives nothing away.

For a router the report gives

* ``auc``: the probability that a hard prompt gets a higher win rate than a trivial one (ties
  count half); 0.5 is chance, below 0.5 the router ranks everyday traffic backwards;
* the share of each side sent to the strong model at the router's default threshold and at the
  threshold calibrated for ``strong_fraction=0.3``;
* the mean win rate per category;
* for a suite with bands, per band: its AUC (bands holding both sides) and the share of each side
  sent to strong at the default threshold; with pairs, the share of pairs whose hard prompt scores
  above its trivial one (ties count half).

``routekit eval --suite`` adds the baselines ``random`` and ``length`` (number of characters) to
every suite report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    bands: list[str | None] = field(default_factory=list)  # per prompt; empty: the suite has no bands
    pairs: list[str | None] = field(default_factory=list)  # per prompt; empty: no pairs

    def __len__(self) -> int:
        return len(self.prompts)


def shipped_suites() -> list[str]:
    return sorted(p.stem for p in _FOLDER.glob("*.jsonl"))


def load_suites(names) -> list[Suite]:
    """Suites by shipped name or path; ``all`` stands for every shipped suite (in name order)."""
    names = [names] if isinstance(names, (str, Path)) else list(names)
    expanded = [n for name in names for n in (shipped_suites() if str(name) == "all" else [name])]
    return [load_suite(n) for n in dict.fromkeys(expanded)]


def load_suite(name_or_path: str | Path = "everyday") -> Suite:
    """A shipped suite by name, or a JSONL file of ``{prompt, side, category?, id?, band?, pair?}`` records."""
    path = Path(name_or_path)
    if not path.suffix and (_FOLDER / f"{path}.jsonl").is_file():
        path = _FOLDER / f"{path}.jsonl"
    if not path.is_file():
        raise BadInputError(f"{name_or_path}: no such suite (shipped: {', '.join(shipped_suites())}) or file")
    ids, prompts, hard, cats, bands, pairs = [], [], [], [], [], []
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
        for key, out in (("band", bands), ("pair", pairs)):
            value = row.get(key)
            if value is not None and not isinstance(value, str):
                raise BadInputError(f"{path}:{lineno}: {key!r} must be a string")
            out.append(value)
    hard_arr = np.array(hard, dtype=bool)
    if not hard_arr.any() or hard_arr.all():
        raise BadInputError(f"{path}: a suite needs prompts on both sides ({' and '.join(SIDES)})")
    return Suite(path.stem, ids, prompts, hard_arr, cats,
                 bands if any(b is not None for b in bands) else [],
                 pairs if any(p is not None for p in pairs) else [])


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


def pair_accuracy(scores, hard, pairs) -> float | None:
    """Share of pairs (one trivial and one hard prompt with the same ``pairs`` id) whose hard prompt
    scores higher, ties counted half; ``None`` without a complete pair."""
    sides: dict[str, dict[bool, float]] = {}
    for s, h, p in zip(np.asarray(scores, dtype=np.float64), hard, pairs):
        if p is not None:
            sides.setdefault(p, {})[bool(h)] = s
    wins = [1.0 if d[True] > d[False] else 0.5 if d[True] == d[False] else 0.0
            for d in sides.values() if len(d) == 2]
    return float(np.mean(wins)) if wins else None


def _band_report(w: np.ndarray, hard: np.ndarray, pairs: list, thr: float | None) -> dict:
    out: dict = {"n": len(w), "n_hard": int(hard.sum())}
    out["auc"] = round(auc(w, hard), 4) if 0 < hard.sum() < len(hard) else None
    acc = pair_accuracy(w, hard, pairs) if pairs else None
    if acc is not None:
        out["pair_accuracy"] = round(acc, 4)
    if thr is not None:
        for side, mask in (("trivial", ~hard), ("hard", hard)):
            if mask.any():
                out[f"{side}_to_strong"] = round(float((w[mask] >= thr).mean()), 4)
    return out


def suite_report(router, suite: Suite, win_rates=None) -> dict:
    """AUC, share of each side to strong at the default threshold and at ``strong_fraction=0.3``,
    the mean win rate per category and, for a suite with bands or pairs, per band and pair
    (``win_rates``: precomputed, in suite order)."""
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
    if suite.pairs:
        acc = pair_accuracy(w, suite.hard, suite.pairs)
        out["pair_accuracy"] = round(acc, 4) if acc is not None else None
    if suite.bands:
        thr = thresholds.get("default")
        bands = np.array([b if b is not None else "" for b in suite.bands])
        out["bands"] = {}
        for b in dict.fromkeys(bands.tolist()):
            m = bands == b
            out["bands"][b or "(none)"] = _band_report(w[m], suite.hard[m], [p for p, k in zip(suite.pairs, m) if k]
                                                       if suite.pairs else [], thr)
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


def format_band_table(reports: list[dict]) -> str:
    """Per band of a banded suite: AUC (bands with both sides), share of each side sent to strong at the
    default threshold and, with pairs, the share of pairs ranked right ("" where a router has no
    calibration or the band lacks the number)."""
    bands = list(dict.fromkeys(b for r in reports for b in r.get("bands", {})))
    if not bands:
        return ""
    cols: list[tuple[str, str, str]] = []  # (band, key, title)
    for b in bands:
        d = next(r["bands"][b] for r in reports if b in r.get("bands", {}))
        if d.get("auc") is not None:
            cols.append((b, "auc", f"{b} AUC"))
        if "pair_accuracy" in d:
            cols.append((b, "pair_accuracy", f"{b} pairs right"))
        for side in SIDES:
            if (side == "hard" and d["n_hard"]) or (side == "trivial" and d["n_hard"] < d["n"]):
                cols.append((b, f"{side}_to_strong", f"{b} {side} → strong"))
    lines = ["| router | " + " | ".join(c[2] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in reports:
        cells = []
        for b, key, _ in cols:
            v = r.get("bands", {}).get(b, {}).get(key)
            cells.append("n/a" if v is None else f"{v:.3f}" if key == "auc" else f"{100 * v:.0f} %")
        lines.append(f"| {r['router']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
