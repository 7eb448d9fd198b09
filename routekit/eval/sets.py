"""Benchmark and labelled-prompt data for router evaluation: :class:`EvalSet` and its loaders.

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
from typing import Any, Iterable

import numpy as np

from routekit.errors import EvalDataError

DEFAULT_STRONG = "gpt-4-1106-preview"
DEFAULT_WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
BENCHMARKS = ("mmlu", "gsm8k", "mt-bench")

_FOLDERS = {"mmlu": "mmlu", "gsm8k": "gsm8k", "mt-bench": "mt_bench"}
_ALIASES = {"mt_bench": "mt-bench", "mtbench": "mt-bench"}



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
        for line_no, r in _read_jsonl_lines(path):
            where = f"{path}, line {line_no}"
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
    try:
        yield from _read_correctness_rows(path, strong, weak)
    except (UnicodeDecodeError, csv.Error) as exc:  # invalid UTF-8, a field over csv's size limit
        raise EvalDataError(f"{path}: not a readable CSV ({type(exc).__name__}: {str(exc)[:200]})") from None


def _read_correctness_rows(path: Path, strong: str, weak: str):
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


def _read_jsonl_lines(path: Path) -> list[tuple[int, object]]:
    """(line number, parsed value) for every non-blank line of a JSONL file."""
    if not path.is_file():
        raise EvalDataError(f"missing file {path}")
    from routekit.io import json_line, text_lines

    return [(line_no, json_line(line, f"{path}, line {line_no}", error=EvalDataError))
            for line_no, line in text_lines(path, error=EvalDataError) if line.strip()]


def _read_jsonl(path: Path) -> list[dict]:
    return [r for _, r in _read_jsonl_lines(path)]


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

