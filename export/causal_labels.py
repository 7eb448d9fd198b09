"""The causal router's training examples: the classification prompt and the 1–5 score labels
(mapping: :mod:`routekit_export.causal`), read from the shared training data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routekit.routers.causal import PromptSpec

from . import data as D

#: Our classification instructions (high score = the weak model is good enough).
SYSTEM_PROMPT = (
    "You help decide which AI model should answer a user's question. Predict how a capable, "
    "cost-efficient assistant would do on the question below compared with a frontier model, and "
    "answer with exactly one rating token:\n"
    "[[5]] its answer would be as good as or better than the frontier model's;\n"
    "[[4]] about as good: the difference would not matter;\n"
    "[[3]] slightly worse;\n"
    "[[2]] clearly worse;\n"
    "[[1]] much worse: the question needs the frontier model."
)
USER_TEMPLATE = "Question:\n{prompt}\n\nRating:"
PLAIN_TEMPLATE = "{system}\n\n{user}\n"

#: Llama-3 turn format written out (what RouteLLM's causal checkpoint was trained on); the
#: tokenizer adds <|begin_of_text|>.  The model writes the assistant header before its score.
LLAMA3_TEMPLATE = ("<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>"
                   "<|start_header_id|>user<|end_header_id|>\n\n{user}<|eot_id|>")
LLAMA3_ASSISTANT = "<|start_header_id|>assistant<|end_header_id|>\n\n"

#: Reference-free Jinja chat template in the Llama-3 layout, for tiny test models.
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
TINY_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def score_from_margin(strong_score: float, weak_score: float) -> int:
    """Judge scores of both answers -> 1..5 (1: strong far better … 4: tie, 5: weak better)."""
    m = float(strong_score) - float(weak_score)
    if m >= 4:
        return 1
    if m >= 2:
        return 2
    if m > 0:
        return 3
    return 4 if m == 0 else 5


def score_from_outcome(outcome: float) -> int:
    """A winner without scores: strong wins -> 2, tie -> 4, weak wins -> 5."""
    return 2 if outcome > 0.5 else (4 if outcome == 0.5 else 5)


def score_from_golden(strong_correct: bool, weak_correct: bool) -> int:
    if strong_correct and not weak_correct:
        return 1
    return 5 if weak_correct else 4


@dataclass
class Examples:
    prompts: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, prompt: str, label: int, source: str, license: str) -> None:
        self.prompts.append(prompt)
        self.labels.append(int(label))
        info = self.sources.setdefault(source, {"rows": 0, "license": license})
        info["rows"] += 1

    def __len__(self) -> int:
        return len(self.labels)


def load_examples(data_dir: Path | None = None, *, strong: str = D.STRONG, weak: str = D.WEAK,
                  allow_noncommercial: bool = False, limit: int | None = None) -> Examples:
    """Pair-specific training examples from ``train/battles.jsonl`` and ``train/golden.jsonl``."""
    train = Path(data_dir or D.default_data_dir()) / "train"
    out = Examples()
    for r in D.battle_rows(train / "battles.jsonl", allow_noncommercial=allow_noncommercial):
        if {r.model_a, r.model_b} != {strong, weak}:
            continue
        strong_first = r.model_a == strong
        if r.score_a is not None and r.score_b is not None:
            s, w = (r.score_a, r.score_b) if strong_first else (r.score_b, r.score_a)
            label = score_from_margin(s, w)
        else:
            label = score_from_outcome(r.outcome if strong_first else 1.0 - r.outcome)
        out.add(r.prompt, label, r.source, r.license)
        if limit is not None and len(out) >= limit:
            return out
    for r in D.golden_rows(train / "golden.jsonl", allow_noncommercial=allow_noncommercial):
        if (r.strong_model, r.weak_model) != (strong, weak):
            continue
        out.add(r.prompt, score_from_golden(r.strong_correct, r.weak_correct), r.source, r.license)
        if limit is not None and len(out) >= limit:
            break
    return out



def default_prompt_spec(tokenizer, system: str = SYSTEM_PROMPT, user: str = USER_TEMPLATE) -> PromptSpec:
    """The tokenizer's chat template when it has one, else a plain template (BOS from the tokenizer)."""
    if getattr(tokenizer, "chat_template", None):
        return PromptSpec(format="chat_template", system=system, user=user, add_special_tokens=False)
    return PromptSpec(format="template", system=system, user=user, template=PLAIN_TEMPLATE, add_special_tokens=True)

