"""Benchmark evaluation of routers, with the metrics of the RouteLLM paper (Ong et al., ICLR 2025, §3.2).

A router gives every prompt a *win rate* (its estimate that the strong model is needed). For a
strong-call fraction ``c`` the ``round(c·n)`` prompts with the highest win rates go to the strong
model (ties: earlier prompt first), the rest to the weak one. With ``r`` the mean quality:

* ``PGR(c) = (r(router at c) - r(weak)) / (r(strong) - r(weak))`` (performance gap recovered)
* ``APGR`` = trapezoid area under PGR over the grid ``c = 0, 0.1, ..., 1``
* ``CPT(x)`` = the smallest ``c = k/n`` (k = 0..n, exact) at which ``PGR >= x``

``round`` rounds halves up (``c·n = 2.5`` gives 3). Pure numpy + stdlib; matplotlib is imported by
:func:`plot` only.

Data layout (RouteLLM's ``routellm/evals`` folder, or ``<data>/dev/routellm-evals``)::

    mmlu/responses/mmlu_<subject>.csv   prompt,<weak>,<strong>           (True/False)
    gsm8k/gsm8k_responses.csv           prompt,<weak>,<strong>,<m>_response...
    mt_bench/question.jsonl             question_id, category, turns[2]
    mt_bench/judgements.jsonl           question_id, model, judge, score (1-10), turn
    <bench>/contaminated_prompts.jsonl  eval_prompt (dropped by exact string match)

MT Bench is routed once per question on its first turn; a model's quality on a question is the mean
of its per-turn scores (several judgements of one turn are averaged first). Scores of ``-1`` (the
judge's "no rating parsed") or missing scores are skipped; a question left without any valid score
for either model is dropped and counted in ``EvalSet.n_dropped_invalid``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import BadInputError

__all__ = [
    "DEFAULT_STRONG", "DEFAULT_WEAK", "BENCHMARKS", "DEFAULT_GRID", "DEFAULT_PRICES",
    "EvalDataError", "EvalSet", "Curve", "CostSavings", "RandomBaseline", "EvalResult",
    "load_benchmark", "load_labelled", "pgr_curve", "apgr", "cpt", "evaluate", "optimal_curve",
    "random_baseline", "cost_savings", "plot",
]

DEFAULT_STRONG = "gpt-4-1106-preview"
DEFAULT_WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
BENCHMARKS = ("mmlu", "gsm8k", "mt-bench")
DEFAULT_GRID = np.linspace(0.0, 1.0, 11)
#: USD per million tokens, as in the paper (GPT-4 / Mixtral 8x7B).
DEFAULT_PRICES = {"strong": 24.7, "weak": 0.24}

_FOLDERS = {"mmlu": "mmlu", "gsm8k": "gsm8k", "mt-bench": "mt_bench"}
_ALIASES = {"mt_bench": "mt-bench", "mtbench": "mt-bench"}


class EvalDataError(BadInputError):
    """Benchmark data is missing or malformed, or a metric is undefined for it."""


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class EvalSet:
    """One benchmark: a prompt per row and each model's quality on it (correctness 0/1 or score)."""

    name: str
    prompts: list[str]
    strong: np.ndarray
    weak: np.ndarray
    n_dropped_contaminated: int
    data_hash: str
    strong_model: str = DEFAULT_STRONG
    weak_model: str = DEFAULT_WEAK
    ids: list[str] = field(default_factory=list)  # e.g. "mmlu_virology:3", "mt-bench:86"
    n_dropped_invalid: int = 0

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def quality_strong(self) -> float:
        return float(self.strong.mean())

    @property
    def quality_weak(self) -> float:
        return float(self.weak.mean())


def load_benchmark(
    name: str,
    data_dir: str | Path,
    *,
    strong_model: str = DEFAULT_STRONG,
    weak_model: str = DEFAULT_WEAK,
    drop_contaminated: bool = True,
) -> EvalSet:
    """Load ``mmlu``, ``gsm8k`` or ``mt-bench`` from a RouteLLM-style eval folder.

    ``data_dir`` is the folder holding ``mmlu/``, ``gsm8k/`` and ``mt_bench/``; a data root with
    ``dev/routellm-evals/`` inside is accepted too.
    """
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _FOLDERS:
        raise EvalDataError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
    root = _resolve_root(Path(data_dir), _FOLDERS[key])
    folder = root / _FOLDERS[key]
    if key == "mt-bench":
        ids, prompts, strong, weak, n_invalid = _load_mt_bench(folder, strong_model, weak_model)
    else:
        files = (sorted((folder / "responses").glob("mmlu_*.csv")) if key == "mmlu"
                 else [folder / "gsm8k_responses.csv"])
        if not files or not files[0].is_file():
            want = folder / ("responses/mmlu_<subject>.csv" if key == "mmlu" else "gsm8k_responses.csv")
            raise EvalDataError(f"{key}: no response file found at {want}")
        ids, prompts, strong, weak = [], [], [], []
        for f in files:
            for i, p, s, w in _read_correctness_csv(f, strong_model, weak_model):
                ids.append(f"{f.stem}:{i}"); prompts.append(p); strong.append(s); weak.append(w)
        n_invalid = 0

    n_dropped = 0
    if drop_contaminated:
        bad = _contaminated(folder / "contaminated_prompts.jsonl")
        keep = [i for i, p in enumerate(prompts) if p not in bad]
        n_dropped = len(prompts) - len(keep)
        ids, prompts = [ids[i] for i in keep], [prompts[i] for i in keep]
        strong, weak = [strong[i] for i in keep], [weak[i] for i in keep]
    if not prompts:
        raise EvalDataError(f"{key}: no rows left to evaluate in {folder}")

    digest = hashlib.sha256(json.dumps(
        [key, strong_model, weak_model, drop_contaminated, prompts, strong, weak],
        ensure_ascii=False).encode()).hexdigest()
    return EvalSet(key, prompts, np.asarray(strong, float), np.asarray(weak, float), n_dropped,
                   digest, strong_model, weak_model, ids, n_invalid)


def load_labelled(path: str | Path, *, strong_model: str = DEFAULT_STRONG, weak_model: str = DEFAULT_WEAK,
                  name: str | None = None) -> EvalSet:
    """Your own labelled prompts as an eval set: a CSV (RouteLLM's responses layout) or a JSONL file
    with a ``prompt`` and each model's quality (True/False or a number) under the model's name::

        {"prompt": "What is 2 + 2?", "gpt-4o": 1, "gpt-4o-mini": 1}

    ``strong_model`` / ``weak_model`` name the two columns / fields; nothing is dropped as
    contaminated."""
    path = Path(path)
    if not path.is_file():
        raise EvalDataError(f"no labelled file at {path}")
    if path.suffix.lower() == ".csv":
        rows = [(p, s, w) for _, p, s, w in _read_correctness_csv(path, strong_model, weak_model)]
    else:
        rows = []
        for i, r in enumerate(_read_jsonl(path), 1):
            where = f"{path}, record {i}"
            if not isinstance(r, dict) or not isinstance(r.get("prompt"), str):
                raise EvalDataError(f"{where}: needs a string 'prompt'")
            for model, role in ((strong_model, "strong"), (weak_model, "weak")):
                if model not in r:
                    raise EvalDataError(f"{where}: no {role} model field {model!r}; fields: "
                                        f"{sorted(k for k in r if k != 'prompt')} (set --strong-model/--weak-model)")
            rows.append((r["prompt"], *(_parse_quality(str(r[m]), f"{where}, field {m!r}")
                                        for m in (strong_model, weak_model))))
    if not rows:
        raise EvalDataError(f"{path}: no rows to evaluate")
    prompts, strong, weak = (list(x) for x in zip(*rows))
    digest = hashlib.sha256(json.dumps([str(path.name), strong_model, weak_model, prompts, strong, weak],
                                       ensure_ascii=False).encode()).hexdigest()
    return EvalSet(name or path.stem, prompts, np.asarray(strong, float), np.asarray(weak, float), 0, digest,
                   strong_model, weak_model, [f"{path.stem}:{i}" for i in range(len(prompts))])


def _resolve_root(data_dir: Path, folder: str) -> Path:
    for cand in (data_dir, data_dir / "dev" / "routellm-evals"):
        if (cand / folder).is_dir():
            return cand
    if not data_dir.is_dir():
        raise EvalDataError(f"data folder {data_dir} does not exist")
    raise EvalDataError(
        f"no {folder}/ folder in {data_dir} (nor in {data_dir / 'dev' / 'routellm-evals'}); "
        f"expected RouteLLM's evals layout with mmlu/, gsm8k/ and mt_bench/")


def _parse_quality(value: str | None, where: str) -> float:
    text = (value or "").strip()
    low = text.lower()
    if low in ("true", "false"):
        return float(low == "true")
    try:
        out = float(text)
    except ValueError:
        out = math.nan
    if not math.isfinite(out):
        raise EvalDataError(f"{where}: expected True/False or a number, got {value!r}")
    return out


def _available_models(columns: Iterable[str]) -> list[str]:
    return [c for c in columns if c != "prompt" and not c.endswith("_response")]


def _read_correctness_csv(path: Path, strong: str, weak: str):
    """Yield (row index, prompt, strong quality, weak quality) from one responses CSV."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = list(reader.fieldnames or [])
        if "prompt" not in cols:
            raise EvalDataError(f"{path}: missing column 'prompt'; columns found: {cols}")
        for model, role in ((strong, "strong"), (weak, "weak")):
            if model not in cols:
                raise EvalDataError(
                    f"{path}: unknown {role} model {model!r}; models available: "
                    f"{_available_models(cols)}")
        for i, row in enumerate(reader):
            where = f"{path}, data row {i + 1}"
            yield (i, row["prompt"], _parse_quality(row[strong], f"{where}, column {strong!r}"),
                   _parse_quality(row[weak], f"{where}, column {weak!r}"))


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise EvalDataError(f"missing file {path}")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise EvalDataError(f"{path}, line {line_no}: invalid JSON ({exc})") from None
    return rows


def _contaminated(path: Path) -> set[str]:
    """Eval prompts found in training data; an absent file means none."""
    if not path.is_file():
        return set()
    rows = _read_jsonl(path)
    if any("eval_prompt" not in r for r in rows):
        raise EvalDataError(f"{path}: every row needs 'eval_prompt'")
    return {r["eval_prompt"] for r in rows}


def _load_mt_bench(folder: Path, strong: str, weak: str):
    questions = _read_jsonl(folder / "question.jsonl")
    judgements = _read_jsonl(folder / "judgements.jsonl")
    for path, rows, need in ((folder / "question.jsonl", questions, ("question_id", "turns")),
                             (folder / "judgements.jsonl", judgements,
                              ("question_id", "model", "score", "turn"))):
        for i, r in enumerate(rows, 1):
            missing = [k for k in need if k not in r]
            if missing:
                raise EvalDataError(f"{path}, row {i}: missing field(s) {missing}; "
                                    f"fields found: {sorted(r)}")
    models = sorted({str(j["model"]) for j in judgements})
    for model, role in ((strong, "strong"), (weak, "weak")):
        if model not in models:
            raise EvalDataError(f"{folder / 'judgements.jsonl'}: unknown {role} model {model!r}; "
                                f"models available: {models}")
    # (question, model) -> turn -> valid scores
    scores: dict[tuple[Any, str], dict[Any, list[float]]] = {}
    for j in judgements:
        s = j["score"]
        if s is None or isinstance(s, bool) or not isinstance(s, (int, float)) or s < 0:
            continue  # -1 = judge output unparseable; skip it
        scores.setdefault((j["question_id"], j["model"]), {}).setdefault(j["turn"], []).append(float(s))

    def quality(qid: Any, model: str) -> float | None:
        turns = scores.get((qid, model))
        return float(np.mean([np.mean(v) for v in turns.values()])) if turns else None

    ids, prompts, qs, qw, n_invalid = [], [], [], [], 0
    for q in questions:
        s, w = quality(q["question_id"], strong), quality(q["question_id"], weak)
        if s is None or w is None or not q["turns"]:
            n_invalid += 1
            continue
        ids.append(f"mt-bench:{q['question_id']}"); prompts.append(q["turns"][0]); qs.append(s); qw.append(w)
    return ids, prompts, qs, qw, n_invalid


# --------------------------------------------------------------------------- metrics


@dataclass
class Curve:
    """Routed quality and PGR at each strong-call fraction ``strong_fraction``."""

    strong_fraction: np.ndarray
    quality: np.ndarray
    pgr: np.ndarray

    def area(self) -> float:
        """Trapezoid area under PGR over ``strong_fraction`` (APGR on the default grid)."""
        x, y = self.strong_fraction, self.pgr
        return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))

    def to_dict(self) -> dict:
        return {"strong_fraction": _jsonable(self.strong_fraction), "quality": _jsonable(self.quality),
                "pgr": _jsonable(self.pgr)}


def _inputs(win_rates, strong_q, weak_q) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w, s, q = (np.asarray(a, dtype=float) for a in (win_rates, strong_q, weak_q))
    if w.ndim != 1 or s.shape != w.shape or q.shape != w.shape:
        raise BadInputError(f"win_rates, strong and weak quality must be 1-D of equal length; "
                            f"got shapes {w.shape}, {s.shape}, {q.shape}")
    if w.size == 0:
        raise BadInputError("no prompts to evaluate")
    if not (np.isfinite(w).all() and np.isfinite(s).all() and np.isfinite(q).all()):
        raise BadInputError("win_rates and qualities must be finite (found NaN or inf)")
    return w, s, q


def _cumulative(win_rates, strong_q, weak_q) -> tuple[np.ndarray, float, float]:
    """Gain over all-weak from routing the top k prompts to strong, for k = 0..n.

    Returns (cumulative gain summed over prompts, length n+1; r(weak); total gain)."""
    w, s, q = _inputs(win_rates, strong_q, weak_q)
    order = np.argsort(-w, kind="stable")  # ties: earlier index first
    cum = np.concatenate(([0.0], np.cumsum((s - q)[order])))
    total = float(np.sum(s - q))
    if abs(total) <= 1e-12 * max(1.0, float(np.abs(s - q).sum())):
        raise EvalDataError(
            f"r(strong) == r(weak) (= {s.mean():.6g}): PGR is undefined when the strong and weak "
            f"models have the same mean quality on this set (too small or contaminated-filtered "
            f"sample? try the full benchmark or other prompts)")
    cum[-1] = total  # PGR(1) is exactly 1
    return cum, float(q.mean()), total


def _grid_k(grid: np.ndarray, n: int) -> np.ndarray:
    g = np.asarray(grid, dtype=float)
    if g.ndim != 1 or g.size < 2 or (g < 0).any() or (g > 1).any() or (np.diff(g) <= 0).any():
        raise BadInputError("grid must be increasing strong-call fractions within [0, 1]")
    return np.floor(np.round(g * n, 9) + 0.5).astype(int)  # round halves up


def _curve(cum: np.ndarray, r_weak: float, total: float, grid) -> Curve:
    n = len(cum) - 1
    if grid is None:
        k = np.arange(n + 1)
        x = k / n
    else:
        x = np.asarray(grid, dtype=float)
        k = _grid_k(x, n)
    return Curve(x.copy(), r_weak + cum[k] / n, cum[k] / total)


def pgr_curve(win_rates, strong_q, weak_q, grid: Sequence[float] | None = DEFAULT_GRID) -> Curve:
    """Quality and PGR on ``grid`` (default 0, 0.1, ..., 1); ``grid=None`` gives every k/n."""
    return _curve(*_cumulative(win_rates, strong_q, weak_q), grid)


def apgr(win_rates, strong_q, weak_q, grid: Sequence[float] | None = DEFAULT_GRID) -> float:
    """Average performance gap recovered: trapezoid area under PGR over ``grid``."""
    return pgr_curve(win_rates, strong_q, weak_q, grid).area()


def _cpt_from_cum(cum: np.ndarray, total: float, target: float) -> float:
    t = float(target) if isinstance(target, (int, float, np.number)) and not isinstance(target, bool) else None
    if t is None or not 0.0 <= t <= 1.0:
        raise BadInputError(f"CPT target must be a PGR fraction in [0, 1] (0.5 for 50%), got {target!r}")
    hit = np.flatnonzero(cum / total >= t - 1e-12)
    return float(hit[0] / (len(cum) - 1))


def cpt(win_rates, strong_q, weak_q, target: float) -> float:
    """Smallest strong-call fraction k/n (k = 0..n) at which PGR >= ``target`` (e.g. 0.5)."""
    cum, _, total = _cumulative(win_rates, strong_q, weak_q)
    return _cpt_from_cum(cum, total, target)


def optimal_curve(evalset: EvalSet, grid: Sequence[float] | None = DEFAULT_GRID) -> Curve:
    """Oracle router: prompts with the largest strong-minus-weak quality gain go to strong first."""
    return pgr_curve(evalset.strong - evalset.weak, evalset.strong, evalset.weak, grid)


@dataclass
class RandomBaseline:
    """A router with uniformly random win rates, over several seeds."""

    apgr_mean: float
    apgr_std: float
    apgrs: np.ndarray
    curve: Curve  # mean over seeds
    quality_std: np.ndarray
    pgr_std: np.ndarray


def random_baseline(evalset: EvalSet, seeds: int | Iterable[int] = 10,
                    grid: Sequence[float] | None = DEFAULT_GRID) -> RandomBaseline:
    """Random routing: ``seeds`` is a count (seeds 0..n-1) or explicit seeds. Std is over seeds (ddof=0)."""
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise BadInputError("random_baseline needs at least one seed")
    curves = [pgr_curve(np.random.default_rng(s).random(len(evalset)), evalset.strong, evalset.weak, grid)
              for s in seed_list]
    areas = np.array([c.area() for c in curves])
    q = np.stack([c.quality for c in curves]); p = np.stack([c.pgr for c in curves])
    mean = Curve(curves[0].strong_fraction, q.mean(0), p.mean(0))
    return RandomBaseline(float(areas.mean()), float(areas.std()), areas, mean, q.std(0), p.std(0))


@dataclass(frozen=True)
class CostSavings:
    """Cost of routing at ``strong_fraction`` relative to sending every prompt to strong."""

    strong_fraction: float
    cost_ratio: float  # (c·p_s + (1-c)·p_w) / p_s
    savings: float  # 1 - cost_ratio
    times_cheaper: float  # 1 / cost_ratio

    def to_dict(self) -> dict:
        return {k: _jsonable(v) for k, v in self.__dict__.items()}


def cost_savings(strong_fraction: float, prices: Mapping[str, float] | Sequence[float] | None = None
                 ) -> CostSavings:
    """Savings vs. all-strong for a strong-call fraction; prices are per million tokens
    (``{"strong": p_s, "weak": p_w}`` or ``(p_s, p_w)``; default GPT-4 $24.7, Mixtral $0.24)."""
    p_s, p_w = _prices(prices)
    c = float(strong_fraction)
    if math.isnan(c):
        return CostSavings(c, math.nan, math.nan, math.nan)
    if not 0.0 <= c <= 1.0:
        raise BadInputError(f"strong_fraction must be within [0, 1], got {strong_fraction!r}")
    ratio = (c * p_s + (1 - c) * p_w) / p_s
    return CostSavings(c, ratio, 1 - ratio, 1 / ratio if ratio > 0 else math.inf)


def _prices(prices) -> tuple[float, float]:
    if prices is None:
        prices = DEFAULT_PRICES
    p_s, p_w = (prices["strong"], prices["weak"]) if isinstance(prices, Mapping) else prices
    if not (p_s > 0 and p_w >= 0):
        raise BadInputError(f"prices need strong > 0 and weak >= 0, got {p_s!r}, {p_w!r}")
    return float(p_s), float(p_w)


# --------------------------------------------------------------------------- results


@dataclass
class EvalResult:
    """Metrics of one router on one benchmark; ``to_dict()`` is JSON-able (NaN becomes null)."""

    router: str
    benchmark: str
    n: int
    apgr: float
    cpt50: float
    cpt80: float
    curve: Curve
    quality_strong: float
    quality_weak: float
    savings50: CostSavings
    savings80: CostSavings
    fine_curve: Curve | None = None  # every k/n, for plots
    data_hash: str = ""

    def to_dict(self, include_fine_curve: bool = False) -> dict:
        out = {k: _jsonable(getattr(self, k)) for k in
               ("router", "benchmark", "n", "apgr", "cpt50", "cpt80", "quality_strong",
                "quality_weak", "data_hash")}
        out["curve"] = self.curve.to_dict()
        out["savings50"], out["savings80"] = self.savings50.to_dict(), self.savings80.to_dict()
        if include_fine_curve and self.fine_curve is not None:
            out["fine_curve"] = self.fine_curve.to_dict()
        return out


def evaluate(win_rates, evalset: EvalSet, router_name: str, *,
             prices: Mapping[str, float] | Sequence[float] | None = None,
             grid: Sequence[float] = DEFAULT_GRID) -> EvalResult:
    """All metrics of a router's win rates (one per prompt of ``evalset``, same order)."""
    w = np.asarray(win_rates, dtype=float)
    if w.shape != (len(evalset),):
        raise BadInputError(f"{router_name}: expected {len(evalset)} win rates for "
                            f"{evalset.name}, got shape {w.shape}")
    cum, r_weak, total = _cumulative(w, evalset.strong, evalset.weak)
    c50, c80 = _cpt_from_cum(cum, total, 0.5), _cpt_from_cum(cum, total, 0.8)
    curve = _curve(cum, r_weak, total, grid)
    return EvalResult(router_name, evalset.name, len(evalset), curve.area(), c50, c80, curve,
                      evalset.quality_strong, evalset.quality_weak, cost_savings(c50, prices),
                      cost_savings(c80, prices), _curve(cum, r_weak, total, None), evalset.data_hash)


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return [_jsonable(x) for x in v.tolist()]
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


# --------------------------------------------------------------------------- plot


def plot(results: Sequence[EvalResult], evalset: EvalSet, path: str | Path, *,
         random_seeds: int = 10, title: str | None = None) -> Path:
    """Write a PNG of quality vs. % strong calls: each router, strong-only, weak-only, optimal and
    random (mean ± std over ``random_seeds``). Needs matplotlib (``pip install 'routekit[plot]'``)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        from .errors import MissingExtraError
        raise MissingExtraError("matplotlib", "plot", "plotting evaluation curves") from exc

    fig, ax = plt.subplots(figsize=(8, 5.5))
    try:
        opt = optimal_curve(evalset, None)
        rnd = random_baseline(evalset, random_seeds, None)
        x = 100 * rnd.curve.strong_fraction
        ax.axhline(evalset.quality_strong, color="black", ls="--", lw=1,
                   label=f"strong only ({evalset.strong_model})")
        ax.axhline(evalset.quality_weak, color="black", ls=":", lw=1.2,
                   label=f"weak only ({evalset.weak_model})")
        ax.plot(100 * opt.strong_fraction, opt.quality, color="0.3", ls="-.", lw=1,
                label=f"optimal (APGR {apgr(evalset.strong - evalset.weak, evalset.strong, evalset.weak):.3f})")
        ax.plot(x, rnd.curve.quality, color="0.55", lw=1,
                label=f"random, {len(rnd.apgrs)} seeds (APGR {rnd.apgr_mean:.3f} ± {rnd.apgr_std:.3f})")
        ax.fill_between(x, rnd.curve.quality - rnd.quality_std, rnd.curve.quality + rnd.quality_std,
                        color="0.55", alpha=0.25, lw=0)
        for r in results:
            c = r.fine_curve or r.curve
            ax.plot(100 * c.strong_fraction, c.quality, lw=1.8,
                    label=f"{r.router} (APGR {r.apgr:.3f}, CPT50 {100 * r.cpt50:.0f}%)")
        ax.set_title(title or f"{evalset.name}: quality vs. strong-model calls (n={len(evalset)})")
        ax.set_xlabel(f"% of calls to the strong model ({evalset.strong_model})")
        ax.set_ylabel("mean quality" + (" (MT Bench score)" if evalset.name == "mt-bench" else " (accuracy)"))
        ax.set_xlim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=120, format="png")
    finally:
        plt.close(fig)
    return out


# --------------------------------------------------------------------------- reports


def bootstrap_apgr(win_rates, evalset: EvalSet, *, n_boot: int = 1000, seed: int = 0,
                   level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of APGR, resampling questions with replacement.

    Resamples whose strong and weak means coincide (PGR undefined) are skipped."""
    w = np.asarray(win_rates, dtype=float)
    rng = np.random.default_rng(seed)
    n = len(evalset)
    vals = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        s, k = evalset.strong[idx], evalset.weak[idx]
        if np.isclose(s.mean(), k.mean()):
            continue
        vals.append(apgr(w[idx], s, k))
    if not vals:
        return float("nan"), float("nan")
    lo, hi = np.quantile(vals, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def report(results: Sequence[EvalResult], evalset: EvalSet, win_rates: Sequence[np.ndarray] | None = None,
           *, random_seeds: int = 10) -> dict:
    """One JSON-able summary of several routers on one benchmark, with random and optimal baselines."""
    rnd = random_baseline(evalset, random_seeds)
    opt = optimal_curve(evalset)
    routers = {}
    for i, r in enumerate(results):
        d = r.to_dict()
        if win_rates is not None:
            d["apgr_ci95"] = list(bootstrap_apgr(win_rates[i], evalset))
        routers[r.router] = d
    return {
        "benchmark": evalset.name, "n": len(evalset), "n_dropped_contaminated": evalset.n_dropped_contaminated,
        "strong_model": evalset.strong_model, "weak_model": evalset.weak_model,
        "quality_strong": evalset.quality_strong, "quality_weak": evalset.quality_weak,
        "random": {"apgr_mean": rnd.apgr_mean, "apgr_std": rnd.apgr_std, "seeds": len(rnd.apgrs)},
        "optimal": {"apgr": opt.area(), "curve": opt.to_dict()},
        "routers": routers,
    }


def format_table(summary: dict) -> str:
    """A terminal table of :func:`report` output."""
    lines = [f"{summary['benchmark']}: n={summary['n']} (dropped {summary['n_dropped_contaminated']} contaminated), "
             f"strong {summary['quality_strong']:.4f}, weak {summary['quality_weak']:.4f}",
             f"{'router':<28} {'APGR':>7} {'95% CI':>15} {'CPT50':>7} {'CPT80':>7} {'save@CPT50':>11}"]
    for name, d in summary["routers"].items():
        ci = d.get("apgr_ci95")
        ci_s = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci and ci[0] is not None else ""
        lines.append(f"{name:<28} {d['apgr']:>7.3f} {ci_s:>15} {100 * d['cpt50']:>6.1f}% {100 * d['cpt80']:>6.1f}% "
                     f"{100 * d['savings50']['savings']:>10.1f}%")
    r = summary["random"]
    lines.append(f"{'random (' + str(r['seeds']) + ' seeds)':<28} {r['apgr_mean']:>7.3f} "
                 f"{'± ' + format(r['apgr_std'], '.3f'):>15}")
    lines.append(f"{'optimal':<28} {summary['optimal']['apgr']:>7.3f}")
    return "\n".join(lines)
