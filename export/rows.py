"""The training files' rows, read and checked in one place: :func:`read_jsonl` (line-numbered
errors), the typed rows of each file (:func:`battle_rows`, :func:`golden_rows`, :func:`score_rows`),
the one battle outcome map and :class:`Battles`, the table MF and SW train on.  ``data.py`` builds
the training sets from them (and re-exports every name here)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import ExportError

STRONG = "gpt-4-1106-preview"
WEAK = "mixtral-8x7b-instruct-v0.1"

#: Names that denote the same model across sources -> the name used in the battles.
ALIASES = {
    "mistralai/Mixtral-8x7B-Instruct-v0.1": WEAK,
    "mistralai/mixtral-8x7b-chat": WEAK,
    "mistralai/mistral-7b-chat": "mistral-7b-instruct",
    "meta/llama-2-70b-chat": "llama-2-70b-chat",
    "claude-instant-v1": "claude-instant-1",
    "claude-v1": "claude-1",
}

NONCOMMERCIAL = ("CC-BY-NC",)


class DataError(ExportError, ValueError):
    """A training file is malformed; the message names the file and line."""


def is_noncommercial(license: str | None) -> bool:
    return any(tag in (license or "") for tag in NONCOMMERCIAL)


def read_jsonl(path: Path, required: tuple[str, ...] = ()) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, row)``; a bad line raises DataError naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg}; truncated line?)") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            missing = [k for k in required if k not in row]
            if missing:
                raise DataError(f"{path}:{lineno}: missing field(s) {', '.join(missing)}")
            yield lineno, row


@dataclass
class Battles:
    """Battles as index arrays into ``prompts`` and ``models``."""

    prompts: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    prompt_idx: list[int] = field(default_factory=list)
    a: list[int] = field(default_factory=list)
    b: list[int] = field(default_factory=list)
    outcome: list[float] = field(default_factory=list)
    source: list[str] = field(default_factory=list)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    _p: dict[str, int] = field(default_factory=dict, repr=False)
    _m: dict[str, int] = field(default_factory=dict, repr=False)

    def _pid(self, prompt: str) -> int:
        if prompt not in self._p:
            self._p[prompt] = len(self.prompts)
            self.prompts.append(prompt)
        return self._p[prompt]

    def _mid(self, model: str) -> int:
        model = ALIASES.get(model, model)
        if model not in self._m:
            self._m[model] = len(self.models)
            self.models.append(model)
        return self._m[model]

    def add(self, prompt: str, model_a: str, model_b: str, outcome: float, source: str, license: str) -> None:
        self.prompt_idx.append(self._pid(prompt))
        self.a.append(self._mid(model_a))
        self.b.append(self._mid(model_b))
        self.outcome.append(float(outcome))
        self.source.append(source)
        info = self.sources.setdefault(source, {"rows": 0, "license": license})
        info["rows"] += 1

    def __len__(self) -> int:
        return len(self.outcome)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"prompt": np.asarray(self.prompt_idx, np.int64), "a": np.asarray(self.a, np.int64),
                "b": np.asarray(self.b, np.int64), "outcome": np.asarray(self.outcome, np.float32)}

    def ensure_models(self, *names: str) -> None:
        for n in names:
            self._mid(n)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for arr in self.arrays().values():
            h.update(arr.tobytes())
        h.update("\n".join(self.models).encode())
        return h.hexdigest()[:16]


#: ``winner`` of a battle row -> outcome for model_a (the one map every trainer uses).
WINNER_OUTCOME = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}


def battle_outcome(row: dict, where: str) -> float:
    """Outcome for ``model_a`` of a battle row (1 / 0 / 0.5); an unknown ``winner`` is a DataError."""
    try:
        return WINNER_OUTCOME[row["winner"]]
    except (KeyError, TypeError):
        raise DataError(f"{where}: unknown winner {row.get('winner')!r} (expected model_a, model_b or tie)") from None


# -- typed rows: each training file read and checked in one place ------------------------------------
@dataclass(frozen=True)
class BattleRow:
    """One ``battles.jsonl`` row; model names canonical (:data:`ALIASES`), ``outcome`` for ``model_a``."""

    prompt: str
    model_a: str
    model_b: str
    outcome: float
    source: str
    license: str
    score_a: float | None = None  #: judge scores where the source has them (causal labels use the margin)
    score_b: float | None = None


@dataclass(frozen=True)
class GoldenRow:
    """One ``golden.jsonl`` row: whether each model of the pair answered correctly."""

    prompt: str
    strong_model: str
    weak_model: str
    strong_correct: bool
    weak_correct: bool
    source: str
    license: str

    @property
    def outcome(self) -> float:
        """For ``strong_model``: the one that was right wins; both right or both wrong is a tie."""
        return 0.5 if self.strong_correct == self.weak_correct else (1.0 if self.strong_correct else 0.0)


@dataclass(frozen=True)
class ScoreRow:
    """One ``multi_model_scores.jsonl`` row: ``scores`` of the models that have one (nulls dropped),
    under the names the file uses (:data:`ALIASES` is applied where the rows become battles)."""

    prompt: str
    scores: dict[str, float]
    source: str
    license: str
    label_kind: str = ""


def _canon(model: Any) -> Any:
    return ALIASES.get(model, model) if isinstance(model, str) else model


def _text(row: dict, key: str, where: str) -> str:
    value = row[key]
    if not isinstance(value, str):
        raise DataError(f"{where}: {key} must be a string")
    return value


def _optional_score(row: dict, key: str, where: str) -> float | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{where}: {key} must be a number or null, got {value!r:.40}")
    return float(value)


def battle_rows(path: Path, *, allow_noncommercial: bool = False) -> Iterator[BattleRow]:
    """The rows of a battles file (non-commercial ones only when asked for); a bad row is a DataError."""
    for lineno, row in read_jsonl(path, ("prompt", "model_a", "model_b", "winner")):
        if is_noncommercial(row.get("license")) and not allow_noncommercial:
            continue
        where = f"{path}:{lineno}"
        outcome = battle_outcome(row, where)
        yield BattleRow(_text(row, "prompt", where), _canon(row["model_a"]), _canon(row["model_b"]), outcome,
                        row.get("source", Path(path).stem), row.get("license", "unknown"),
                        _optional_score(row, "score_a", where), _optional_score(row, "score_b", where))


def golden_rows(path: Path, *, allow_noncommercial: bool = False) -> Iterator[GoldenRow]:
    """The rows of a golden-labels file; ``strong_correct``/``weak_correct`` must be booleans."""
    for lineno, row in read_jsonl(path, ("prompt", "strong_model", "weak_model", "strong_correct", "weak_correct")):
        if is_noncommercial(row.get("license")) and not allow_noncommercial:
            continue
        where = f"{path}:{lineno}"
        s, w = row["strong_correct"], row["weak_correct"]
        if not isinstance(s, bool) or not isinstance(w, bool):
            raise DataError(f"{where}: strong_correct/weak_correct must be true or false")
        yield GoldenRow(_text(row, "prompt", where), _canon(row["strong_model"]), _canon(row["weak_model"]), s, w,
                        row.get("source", Path(path).stem), row.get("license", "unknown"))


def score_rows(path: Path, *, allow_noncommercial: bool = False) -> Iterator[ScoreRow]:
    """The rows of a multi-model scores file; ``scores`` must be an object model -> number or null."""
    for lineno, row in read_jsonl(path, ("prompt", "scores")):
        if is_noncommercial(row.get("license")) and not allow_noncommercial:
            continue
        where = f"{path}:{lineno}"
        scores = row["scores"]
        if not isinstance(scores, dict):
            raise DataError(f"{where}: scores must be an object model -> value")
        try:
            clean = {m: float(v) for m, v in scores.items() if v is not None}
        except (TypeError, ValueError):
            raise DataError(f"{where}: every score must be a number or null") from None
        yield ScoreRow(_text(row, "prompt", where), clean, row.get("source", Path(path).stem),
                       row.get("license", "unknown"), row.get("label_kind", ""))
