"""Training data: read, validate (line-numbered errors) and turn into one table of battles.

Formats (see ``../shared/data/README.md``):

* ``battles.jsonl``: ``{prompt, model_a, model_b, winner: model_a|model_b|tie, source, license}``
* ``golden.jsonl``: ``{prompt, strong_model, weak_model, strong_correct, weak_correct, source, license}``
* ``multi_model_scores.jsonl``: ``{prompt, source, label_kind, scores: {model: value|null}, license}``

Each file is read and checked in one place (:mod:`.rows`) into typed rows (:func:`battle_rows`,
:func:`golden_rows`, :func:`score_rows`); every trainer (MF, SW, BERT, linear, causal) reads them from there.  For MF
and SW every source becomes battles ``(prompt, model_a, model_b, outcome)`` with outcome 1 (a wins),
0 (b wins) or 0.5 (tie).  Rows under a non-commercial licence are skipped unless asked for.
"""

from __future__ import annotations

import hashlib
import os
from itertools import combinations
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import hub
from .rows import (
    ALIASES,
    NONCOMMERCIAL,
    STRONG,
    WEAK,
    WINNER_OUTCOME,
    BattleRow,
    Battles,
    DataError,
    GoldenRow,
    ScoreRow,
    battle_outcome,
    battle_rows,
    golden_rows,
    is_noncommercial,
    read_jsonl,
    score_rows,
)

#: Short source name of the MMLU gold-train rows (their ``source`` field contains it).
MMLU = "mmlu"

__all__ = ["ALIASES", "MMLU", "NONCOMMERCIAL", "STRONG", "WEAK", "WINNER_OUTCOME", "BattleRow", "Battles", "DataError",
           "GoldenRow", "ScoreRow", "add_battles_file", "add_golden_file", "add_multi_model_file", "battle_outcome",
           "battle_rows", "default_data_dir", "golden_rows", "is_noncommercial", "load_training", "read_jsonl",
           "read_prompts", "score_rows", "split_by_prompt"]


def default_data_dir() -> Path:
    """``$ROUTEKIT_DATA``; else ``shared/data`` beside a source checkout (``export/`` run from the
    repository); else ``../shared/data`` from the current folder, as the README writes it (an
    installed wheel has no checkout beside it)."""
    env = os.environ.get("ROUTEKIT_DATA")
    if env:
        return Path(env)
    beside_checkout = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    return beside_checkout if beside_checkout.is_dir() else Path("..") / "shared" / "data"


def split_by_prompt(prompts: Sequence[Any], val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, val)`` of rows keyed by their prompt (its text or id): every row of a prompt
    is on the same side, decided by a hash of (seed, prompt), so a split does not move when rows
    are added.  The one train/validation splitter of the trainers (MF, BERT, causal)."""
    if val_fraction <= 0:
        return np.arange(len(prompts)), np.zeros(0, np.int64)
    u = np.array([int(hashlib.sha1(f"{seed}:{p}".encode("utf-8", "replace")).hexdigest()[:8], 16) / 2**32
                  for p in prompts])
    val = u < val_fraction
    return np.flatnonzero(~val), np.flatnonzero(val)


def add_battles_file(out: Battles, path: Path, *, allow_noncommercial: bool = False, limit: int | None = None) -> None:
    if limit is not None and len(out) >= limit:
        return
    for r in battle_rows(path, allow_noncommercial=allow_noncommercial):
        out.add(r.prompt, r.model_a, r.model_b, r.outcome, r.source, r.license)
        if limit is not None and len(out) >= limit:
            return


def add_golden_file(out: Battles, path: Path, *, skip_sources: tuple[str, ...] = (), limit: int | None = None,
                    allow_noncommercial: bool = False) -> None:
    """Golden labels for the pair -> battles: the one that was right wins; both right/wrong is a tie."""
    if limit is not None and len(out) >= limit:
        return
    for r in golden_rows(path, allow_noncommercial=allow_noncommercial):
        if skip_sources and r.source.startswith(skip_sources):
            continue
        out.add(r.prompt, r.strong_model, r.weak_model, r.outcome, r.source, r.license)
        if limit is not None and len(out) >= limit:
            return


def add_multi_model_file(out: Battles, path: Path, *, sources: tuple[str, ...] = ("routerbench/",),
                         allow_noncommercial: bool = False) -> None:
    """Every pair of models scored on a prompt -> one battle (higher score wins, equal is a tie)."""
    for r in score_rows(path, allow_noncommercial=allow_noncommercial):
        if not r.source.startswith(sources):
            continue
        for (ma, va), (mb, vb) in combinations(sorted(r.scores.items()), 2):
            out.add(r.prompt, ma, mb, 0.5 if va == vb else float(va > vb), r.source, r.license)


def load_training(data_dir: Path | None = None, *, allow_noncommercial: bool = False,
                  multi_model: bool = True, limit: int | None = None,
                  extra: list[str] | None = None) -> Battles:
    """All permissive training battles from ``data_dir/train`` (pair battles + multi-model battles),
    plus ``extra`` sources: local files in the hub schema (see export/hub.py) or ``hf:<dataset name>``
    (needs network)."""
    train = Path(data_dir or default_data_dir()) / "train"
    out = Battles()
    for src in extra or ():
        if src.startswith("hf:"):
            hub.add_hub_dataset(out, src[3:])
        else:
            hub.add_local_file(out, Path(src))
    out.ensure_models(STRONG, WEAK)
    # ``limit``: at most that many battles in all, four fifths from battles.jsonl, the rest golden rows
    add_battles_file(out, train / "battles.jsonl", allow_noncommercial=allow_noncommercial,
                     limit=None if limit is None else len(out) + limit - limit // 5)
    skip = ("routerbench/",) if multi_model else ()
    add_golden_file(out, train / "golden.jsonl", skip_sources=skip, limit=limit,
                    allow_noncommercial=allow_noncommercial)
    if multi_model and limit is None:
        add_multi_model_file(out, train / "multi_model_scores.jsonl", allow_noncommercial=allow_noncommercial)
    return out


def read_prompts(path: Path, field_name: str = "prompt") -> list[str]:
    """Prompts from a JSONL file (one object with ``prompt`` per line) or a plain text file (one per line)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return [row[field_name] for _, row in read_jsonl(path, (field_name,))]
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]
