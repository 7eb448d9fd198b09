"""Read the paper's public training sets in their Hugging Face schema (online users), or local
files with the same columns (offline, tests).

Schema shared by ``lmsys/lmsys-arena-human-preference-55k`` and ``routellm/gpt4_judge_battles``:
``id, model_a, model_b, prompt, response_a, response_b, winner_model_a, winner_model_b, winner_tie``
where ``prompt`` is either a string or a JSON-encoded list of user turns (the 55k set); the
user turns are joined with blank lines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from .errors import ExportError
from .rows import Battles, DataError, read_jsonl

HUB_SETS = {
    "lmsys/lmsys-arena-human-preference-55k": "Apache-2.0",
    "routellm/gpt4_judge_battles": "see the dataset card",
}
COLUMNS = ("model_a", "model_b", "prompt", "winner_model_a", "winner_model_b", "winner_tie")


def prompt_text(value: Any) -> str:
    if isinstance(value, list):
        return "\n\n".join(str(v) for v in value if v is not None)
    if isinstance(value, str) and value.startswith("["):
        try:
            turns = json.loads(value)
        except json.JSONDecodeError:
            return value
        if isinstance(turns, list):
            return prompt_text(turns)
    return str(value)


def add_preference_rows(out: Battles, rows: Iterable[dict], *, source: str, license: str, where: str = "") -> int:
    """Add rows of the shared schema; returns how many were added. Exactly one winner flag must be set."""
    n = 0
    for i, row in enumerate(rows, 1):
        missing = [c for c in COLUMNS if c not in row]
        if missing:
            raise DataError(f"{where or source}:{i}: missing column(s) {', '.join(missing)}")
        flags = [int(row["winner_model_a"] or 0), int(row["winner_model_b"] or 0), int(row["winner_tie"] or 0)]
        if sorted(flags) != [0, 0, 1]:
            raise DataError(f"{where or source}:{i}: exactly one of winner_model_a/winner_model_b/winner_tie "
                            f"must be 1, got {flags}")
        outcome = 1.0 if flags[0] else 0.0 if flags[1] else 0.5
        out.add(prompt_text(row["prompt"]), row["model_a"], row["model_b"], outcome, source, license)
        n += 1
    return n


def add_local_file(out: Battles, path: Path, *, license: str = "see source") -> int:
    """A local ``.jsonl`` (or, with ``datasets`` installed, ``.parquet``/``.csv``) in the hub schema."""
    path = Path(path)
    if path.suffix == ".jsonl":
        rows = (row for _, row in read_jsonl(path))
        return add_preference_rows(out, rows, source=f"file:{path.name}", license=license, where=str(path))
    ds = _datasets().load_dataset(path.suffix.lstrip("."), data_files=str(path), split="train")
    return add_preference_rows(out, ds, source=f"file:{path.name}", license=license, where=str(path))


def add_hub_dataset(out: Battles, name: str, *, split: str = "train", revision: str | None = None) -> int:
    """Download (network needed) and add a hub dataset of the shared schema."""
    ds = _datasets().load_dataset(name, split=split, revision=revision)
    return add_preference_rows(out, ds, source=f"hf:{name}", license=HUB_SETS.get(name, "see the dataset card"))


def _datasets():
    try:
        import datasets
    except ImportError as exc:
        raise ExportError("reading hub datasets needs `pip install datasets` (and network access)") from exc
    return datasets
