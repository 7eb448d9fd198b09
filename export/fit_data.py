"""Read a user's own label file for ``routekit-export fit`` (file:line errors, or skip and record bad rows).

Accepted rows (one file may mix them; ``.csv`` files hold only the first kind):

* **per-model quality** -- the records ``routekit eval --file`` reads: a ``prompt`` and each model's
  quality (true/false, a number, or a string such as ``"True"``/``"0.5"``) under the model's name::

      {"prompt": "What is 2 + 2?", "gpt-4o": 1, "gpt-4o-mini": 0}
      {"prompt": "...", "scores": {"gpt-4o": 8, "gpt-4o-mini": 6, "llama3": 5}}   # the multi-model layout

  or a CSV with a ``prompt`` column and one column per model (RouteLLM's responses layout; columns
  ending in ``_response`` are ignored).  Every quality field of the record is a model; the strong and the
  weak model must both be there (in the ``scores`` layout a null or absent score is allowed: such a row
  only adds battles among the models it scores).  Rows with a quality outside [0, 1] (e.g. 1-10 judge scores) are rescaled
  by the minimum and maximum over such rows.
* **pairwise battles** -- ``{"prompt", "model_a", "model_b", "winner": "model_a"|"model_b"|"tie"}``
  (``"tie (bothbad)"`` is a tie too).

Everything becomes (a) a per-prompt quality of the strong and the weak model (a battle of the exact
pair counts as 1 / ½ / 0; several labels of one prompt are averaged), used to train the linear head
and to measure APGR, and (b) battles between every pair of models labelled on a prompt (the higher
quality wins, equal is a tie), used by SW and MF, which also learn from models other than the pair.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

from .data import DataError
from .rows import (
    WINNER_OUTCOME as WINNERS,  # the one battle outcome map (export/rows.py)
)

#: Fields of a quality record that are never model names.
META_FIELDS = frozenset({"prompt", "id", "question_id", "source", "license", "label_kind", "benchmark", "subject",
                         "category", "turns", "language", "tstamp", "judge", "reference", "answer", "scores"})
MAX_NAME = 500  #: longest model name an artifact manifest accepts


class LabelError(DataError):
    """A label file is malformed; the message names the file and line."""


@dataclass
class LabelSet:
    path: Path
    sha256: str
    strong: str
    weak: str
    prompts: list[str]                   # every prompt that has the pair's qualities, in file order
    strong_q: np.ndarray                 # quality of the strong / weak model per prompt, in [0, 1]
    weak_q: np.ndarray
    difficulty: np.ndarray               # 1 - mean quality of every model labelled on the prompt (NaN: none)
    models: list[str]                    # every model named in the file (strong, weak first)
    battle_prompts: list[str]            # prompts of the battles below (pair prompts first, same order)
    battles: dict[str, np.ndarray]       # prompt (index into battle_prompts), a, b (model ids), outcome
    counts: dict = field(default_factory=dict)
    rejected: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompts)

    def summary(self) -> dict:
        """What the manifest records about the label file."""
        return {"file": self.path.name, "sha256": self.sha256, **self.counts,
                "pair_prompts": len(self.prompts), "prompts": len(self.battle_prompts),
                "battles": int(self.battles["outcome"].size), "models": self.models,
                "strong_mean_quality": round(float(self.strong_q.mean()), 4) if len(self) else None,
                "weak_mean_quality": round(float(self.weak_q.mean()), 4) if len(self) else None}


def _quality(value, where: str, field_name: str) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        out = float(value)
    elif isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return float(value.strip().lower() == "true")
    elif isinstance(value, str):
        try:
            out = float(value)
        except ValueError:
            out = math.nan
    else:
        raise LabelError(f"{where}: field {field_name!r} must be true/false or a number, got {value!r}")
    if not math.isfinite(out):
        raise LabelError(f"{where}: field {field_name!r} must be true/false or a finite number, got {value!r}")
    return out


def _quality_record(row: dict, where: str, strong: str, weak: str) -> dict[str, float]:
    if "scores" in row:
        if not isinstance(row["scores"], dict):
            raise LabelError(f"{where}: 'scores' must be an object model -> quality")
        items = {m: v for m, v in row["scores"].items() if v is not None}
        if not items:
            raise LabelError(f"{where}: 'scores' has no model with a quality")
    else:
        items = {k: v for k, v in row.items() if k not in META_FIELDS and not k.endswith("_response")}
    long = [m for m in items if not m or len(str(m)) > MAX_NAME]
    if long:
        raise LabelError(f"{where}: model names must be 1-{MAX_NAME} characters, got {str(long[0])[:40]!r}...")
    missing = [m for m in (strong, weak) if m is not None and m not in items]
    if "scores" in row and items:  # the multi-model layout: null / absent scores are normal
        missing = []
    if missing:
        fields = sorted(items)
        raise LabelError(f"{where}: no quality for {' or '.join(repr(m) for m in missing)}; models in this row: "
                         f"{fields[:8]}{' ...' if len(fields) > 8 else ''} (check --strong/--weak)")
    return {str(m): _quality(v, where, m) for m, v in items.items()}


def _battle(row: dict, where: str) -> tuple[str, str, float]:
    a, b, winner = row.get("model_a"), row.get("model_b"), row.get("winner")
    if not isinstance(a, str) or not isinstance(b, str) or not a or not b:
        raise LabelError(f"{where}: model_a and model_b must be model names (strings)")
    if len(a) > MAX_NAME or len(b) > MAX_NAME:
        raise LabelError(f"{where}: model names must be at most {MAX_NAME} characters")
    if a == b:
        raise LabelError(f"{where}: model_a and model_b are the same model {a!r}")
    if winner not in WINNERS:
        raise LabelError(f"{where}: winner must be one of {', '.join(WINNERS)}, got {winner!r}")
    return a, b, WINNERS[winner]


def _rows(path: Path, text: str):
    """Yield (line number, raw line, parsed row or LabelError)."""
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        cols = reader.fieldnames or []
        if "prompt" not in cols:
            raise LabelError(f"{path}:1: CSV header has no 'prompt' column (columns: {cols})")
        line = 1
        for row in reader:
            start, line = line + 1, reader.line_num
            if None in row or any(v is None for v in row.values()):
                got = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or ())
                yield start, json.dumps(row, default=str), LabelError(
                    f"{path}:{start}: row has {got} fields, header has {len(cols)}")
                continue
            yield start, json.dumps(row), {k: (v if k == "prompt" else v.strip()) for k, v in row.items()}
        return
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield lineno, line, LabelError(f"{path}:{lineno}: invalid JSON ({exc.msg}; truncated line?)")
            continue
        if not isinstance(row, dict):
            yield lineno, line, LabelError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            continue
        yield lineno, line, row


def read_labels(path: str | Path, strong: str, weak: str, *, skip_bad: bool = False) -> LabelSet:
    """Parse and validate ``path``; a bad row raises :class:`LabelError` (file:line) unless ``skip_bad``,
    which drops it into ``LabelSet.rejected`` (line, error, text)."""
    if strong == weak:
        raise LabelError(f"--strong and --weak are the same model {strong!r}")
    path, digest, quality, battles, rejected, counts = _parse(path, strong, weak, skip_bad)
    return _assemble(path, digest, strong, weak, quality, battles, rejected, counts)


def _parse(path: str | Path, strong: str | None, weak: str | None, skip_bad: bool):
    """(path, sha256, quality rows, battle rows, rejected rows, counts) of a label file."""
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: no such label file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise LabelError(f"{path}:{line}: not valid UTF-8 (byte {exc.start})") from None
    quality: list[tuple[str, dict[str, float]]] = []
    battles: list[tuple[str, str, str, float]] = []
    rejected: list[dict] = []
    n_rows = 0
    for lineno, line, row in _rows(path, text):
        n_rows += 1
        where = f"{path}:{lineno}"
        try:
            if isinstance(row, LabelError):
                raise row
            if not isinstance(row.get("prompt"), str):
                raise LabelError(f"{where}: needs a string 'prompt'")
            if "model_a" in row or "model_b" in row or "winner" in row:
                battles.append((row["prompt"], *_battle(row, where)))
            else:
                quality.append((row["prompt"], _quality_record(row, where, strong, weak)))
        except LabelError as exc:
            if not skip_bad:
                raise
            rejected.append({"line": lineno, "error": str(exc), "text": line})
    if not quality and not battles:
        raise LabelError(f"{path}: no usable rows ({n_rows} read, {len(rejected)} rejected)")
    counts = {"rows": n_rows, "quality_rows": len(quality), "battle_rows": len(battles), "rejected_rows": len(rejected)}
    return path, hashlib.sha256(raw).hexdigest(), quality, battles, rejected, counts


def _unit_scale(quality, counts: dict):
    """The map of a quality record to [0, 1]: rows whose qualities all lie in [0, 1] are kept as they
    are; the others (e.g. 1-10 judge scores) are rescaled by the minimum and maximum over those rows
    (recorded in ``counts["quality_scale"]``)."""
    wide = [v for _, q in quality if min(q.values()) < 0.0 or max(q.values()) > 1.0 for v in q.values()]
    lo, hi = (min(wide), max(wide)) if wide else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1.0
    counts["quality_scale"] = [lo, hi] if wide else None

    def unit(q: dict) -> dict:
        if min(q.values()) >= 0.0 and max(q.values()) <= 1.0:
            return q
        return {m: (v - lo) / (hi - lo) for m, v in q.items()}

    return unit


def _assemble(path, digest, strong, weak, quality, battles, rejected, counts) -> LabelSet:
    unit = _unit_scale(quality, counts)
    models = [strong, weak]
    mid = {strong: 0, weak: 1}

    def model_id(m):
        if m not in mid:
            mid[m] = len(models)
            models.append(m)
        return mid[m]

    pair = defaultdict(lambda: [0.0, 0.0, 0])        # prompt -> [sum strong, sum weak, n] (quality rows)
    pair_b = defaultdict(lambda: [0.0, 0])           # prompt -> [sum strong outcome, n] (battles of the pair)
    diff = defaultdict(list)
    order: dict[str, None] = {}
    out_battles: list[tuple[str, int, int, float]] = []
    for prompt, q in quality:
        q = unit(q)
        order.setdefault(prompt)
        if strong in q and weak in q:
            acc = pair[prompt]
            acc[0] += q[strong]
            acc[1] += q[weak]
            acc[2] += 1
            diff[prompt].append(1.0 - float(np.mean(list(q.values()))))
        for (ma, va), (mb, vb) in combinations(sorted(q.items()), 2):
            out_battles.append((prompt, model_id(ma), model_id(mb), 0.5 if va == vb else float(va > vb)))
    for prompt, a, b, o in battles:
        ia, ib = model_id(a), model_id(b)
        out_battles.append((prompt, ia, ib, o))
        if {ia, ib} == {0, 1}:
            acc = pair_b[prompt]
            acc[0] += o if ia == 0 else 1.0 - o
            acc[1] += 1
            order.setdefault(prompt)
    prompts = [p for p in order if p in pair or p in pair_b]
    s = np.array([pair[p][0] / pair[p][2] if p in pair else pair_b[p][0] / pair_b[p][1] for p in prompts])
    w = np.array([pair[p][1] / pair[p][2] if p in pair else 1.0 - pair_b[p][0] / pair_b[p][1] for p in prompts])
    d = np.array([float(np.mean(diff[p])) if p in diff else np.nan for p in prompts])
    if not prompts:
        raise LabelError(f"{path}: no row labels both {strong!r} and {weak!r} (a quality record with both, or a "
                         f"battle between them); models in the file: {models[2:12]}")
    pidx = {p: i for i, p in enumerate(prompts)}
    for p, *_ in out_battles:
        if p not in pidx:
            pidx[p] = len(pidx)
    bp = list(pidx)
    arr = {"prompt": np.array([pidx[p] for p, *_ in out_battles], np.int64),
           "a": np.array([a for _, a, _, _ in out_battles], np.int64),
           "b": np.array([b for _, _, b, _ in out_battles], np.int64),
           "outcome": np.array([o for *_, o in out_battles], np.float32)}
    return LabelSet(path, digest, strong, weak, prompts, s, w, d, models, bp, arr, counts, rejected)


@dataclass
class ModelLabels:
    """Every model's labels in a file, for the per-model (item-response) fit: no pair needed."""

    path: Path
    sha256: str
    prompts: list[str]                   # every labelled prompt, in file order
    models: list[str]                    # every model named (or the ``models`` asked for, in that order)
    quality: dict[str, np.ndarray]       # prompt, model (indices), y in [0, 1]: one entry per label
    battles: dict[str, np.ndarray]       # prompt, a, b (indices), outcome of a (1 / ½ / 0): explicit battles
    counts: dict = field(default_factory=dict)
    rejected: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        """What the manifest records about the label file."""
        per = np.bincount(self.quality["model"], minlength=len(self.models))
        return {"file": self.path.name, "sha256": self.sha256, **self.counts, "prompts": len(self.prompts),
                "models": self.models, "quality_labels": int(self.quality["y"].size),
                "battles": int(self.battles["outcome"].size),
                "quality_labels_per_model": {m: int(c) for m, c in zip(self.models, per)}}


def read_model_labels(path: str | Path, *, models: list[str] | None = None, skip_bad: bool = False,
                      require_all: bool = True) -> ModelLabels:
    """Every quality label and battle of ``path`` (the layouts of :func:`read_labels`; no model has to be
    on every row), restricted to ``models`` when given (a battle counts only if both are kept; with
    ``require_all`` each of them must have a label)."""
    path, digest, quality, battles, rejected, counts = _parse(path, None, None, skip_bad)
    unit = _unit_scale(quality, counts)
    names: dict[str, int] = {m: i for i, m in enumerate(models)} if models else {}
    if models and len(names) != len(models):
        raise LabelError("--models names a model twice")

    def mid(m: str) -> int:
        if m not in names:
            if models:
                return -1
            names[m] = len(names)
        return names[m]

    pidx: dict[str, int] = {}
    q_rows, b_rows = [], []
    for prompt, q in quality:
        for m, v in unit(q).items():
            j = mid(m)
            if j >= 0:
                q_rows.append((pidx.setdefault(prompt, len(pidx)), j, float(v)))
    for prompt, a, b, o in battles:
        ia, ib = mid(a), mid(b)
        if ia >= 0 and ib >= 0:
            b_rows.append((pidx.setdefault(prompt, len(pidx)), ia, ib, o))
    if not q_rows and not b_rows:
        raise LabelError(f"{path}: no label of {'the models asked for (' + ', '.join(models) + ')' if models else 'any model'}")
    if models and require_all:
        seen = {j for _, j, _ in q_rows} | {j for _, a, b, _ in b_rows for j in (a, b)}
        unseen = [m for m, j in names.items() if j not in seen]
        if unseen:
            raise LabelError(f"{path}: no label of {', '.join(map(repr, unseen))} (check --models)")
    def col(rows, k, t):
        return np.array([r[k] for r in rows], t).reshape(-1)

    return ModelLabels(path, digest, list(pidx), list(names),
                       {"prompt": col(q_rows, 0, np.int64), "model": col(q_rows, 1, np.int64),
                        "y": col(q_rows, 2, np.float64)},
                       {"prompt": col(b_rows, 0, np.int64), "a": col(b_rows, 1, np.int64),
                        "b": col(b_rows, 2, np.int64), "outcome": col(b_rows, 3, np.float64)},
                       counts, rejected)


def prompt_folds(n: int, folds: int, seed: int) -> np.ndarray:
    """Fold of every labelled prompt (each prompt in exactly one fold: cross-validation grouped by prompt)."""
    return np.random.default_rng(seed).permutation(n) % folds


def write_rejected(rejected: list[dict], path: Path) -> None:
    """The rows ``--skip-bad`` dropped, one JSON object per line: ``{line, error, text}``."""
    from routekit.io import atomic_write

    with atomic_write(path, what="--rejected file") as fh:
        for r in rejected:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
