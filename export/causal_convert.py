"""Convert a RouteLLM causal-LLM checkpoint (Llama-format folder + its prompt files) into a routekit
``causal`` artifact (``routekit-export convert-routellm --kind causal``)."""

from __future__ import annotations

import json
import string
from pathlib import Path

from routekit.routers.causal import (
    DEFAULT_MAX_LENGTH,
    SCORE_TOKENS,
    PromptSpec,
    configure_tokenizer,
    score_token_ids,
)

from . import data as D
from .causal_labels import LLAMA3_ASSISTANT, LLAMA3_TEMPLATE
from .causal_train import write_causal_artifact


def format_to_template(text: str, field_name: str = "question") -> str:
    """A Python ``str.format`` template with ``{question}`` -> routekit's ``{prompt}`` template."""
    literal = []
    for piece, fname, spec, conv in string.Formatter().parse(text):
        literal.append(piece)
        if fname is None:
            continue
        if fname != field_name or spec or conv:
            raise ValueError(f"unsupported field {{{fname}}} in prompt template (only {{{field_name}}})")
        literal.append("\x00")
    joined = "".join(literal)
    if any(f"{{{k}}}" in joined for k in ("system", "user", "prompt")):
        raise ValueError("the template's text contains a literal {system}, {user} or {prompt}")
    return joined.replace("\x00", "{prompt}")


def find_prompt_file(folder: Path, stem: str) -> Path:
    """``<stem>*.txt`` in ``folder`` (e.g. ``system_ft_v5.txt``); exactly one must match."""
    found = sorted(Path(folder).glob(f"{stem}*.txt"))
    if len(found) != 1:
        raise FileNotFoundError(
            f"{folder}: {'no' if not found else 'several'} {stem}*.txt prompt file(s) "
            f"{[p.name for p in found] if found else ''}; pass {stem}_prompt=PATH "
            f"(CLI: --set {stem}_prompt=PATH) with RouteLLM's {stem} prompt file")
    return found[0]


def convert_routellm_causal(checkpoint_dir: Path, out: Path, *, system_prompt: Path | None = None,
                            classifier_prompt: Path | None = None, tokenizer_dir: Path | None = None,
                            prompt_format: str = "llama3", score_threshold: int = 4,
                            max_length: int | None = None, strong: str = D.STRONG, weak: str = D.WEAK,
                            name: str | None = None, calibration: tuple[list[str], str] | None = None,
                            overwrite: bool = False, source: str | None = None,
                            license: str = "unknown") -> Path:
    """RouteLLM causal checkpoint (Llama-format folder) + its system/classifier prompt files -> artifact.

    The prompt files default to the single ``system*.txt`` / ``classifier*.txt`` in the checkpoint
    folder (RouteLLM ships them as ``system_ft_v5.txt`` and ``classifier_ft_v5.txt`` in its package).

    * weights: ``*.safetensors`` are copied byte for byte; a folder with only ``pytorch_model*.bin``
      is loaded once here (torch's ``weights_only`` loader) and re-saved as safetensors, so the
      runtime never unpickles;
    * tokenizer: from ``tokenizer_dir`` (the base model folder, e.g. Meta-Llama-3-8B) or the
      checkpoint; the five score tokens are added as special tokens if absent (ids right after the
      base vocabulary, as the reference does) and must fall inside the checkpoint's output rows;
    * prompt: the system file (stripped) as system message, the classifier file with ``{question}``
      as user message (stripped), in the Llama-3 turn format, BOS from the tokenizer, followed by the
      assistant header the model writes before its score (``prompt_format="llama3"``), or the
      tokenizer's chat template (``prompt_format="chat_template"``);
    * P(strong) = 1 − P(score ≥ score_threshold) = Σ_{k < score_threshold} P(k).
    """
    import tempfile

    import transformers

    checkpoint_dir, out = Path(checkpoint_dir), Path(out)
    if not (checkpoint_dir / "config.json").is_file():
        raise FileNotFoundError(f"{checkpoint_dir}: no config.json (not a Hugging Face model folder)")
    if not 2 <= score_threshold <= len(SCORE_TOKENS):
        raise ValueError(f"score_threshold must be in 2..{len(SCORE_TOKENS)}")
    system_file = Path(system_prompt) if system_prompt else find_prompt_file(checkpoint_dir, "system")
    classifier_file = Path(classifier_prompt) if classifier_prompt else find_prompt_file(checkpoint_dir, "classifier")
    system = system_file.read_text(encoding="utf-8")
    user = format_to_template(classifier_file.read_text(encoding="utf-8"))
    name = name or out.name
    max_length = int(max_length or DEFAULT_MAX_LENGTH)
    if prompt_format == "llama3":
        spec = PromptSpec(format="template", system=system, user=user, template=LLAMA3_TEMPLATE,
                          generation_prefix=LLAMA3_ASSISTANT, add_special_tokens=True, strip=True)
    elif prompt_format == "chat_template":
        spec = PromptSpec(format="chat_template", system=system, user=user, add_special_tokens=False, strip=True)
    else:
        raise ValueError(f"prompt_format must be llama3 or chat_template, got {prompt_format!r}")
    tok = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir or checkpoint_dir), local_files_only=True)
    configure_tokenizer(tok)
    ids = score_token_ids(tok, SCORE_TOKENS, add=True)
    config = json.loads((checkpoint_dir / "config.json").read_text())
    rows = int(config.get("vocab_size", 0))
    if max(ids) >= rows:
        raise ValueError(f"score token ids {ids} do not fit the checkpoint's vocab_size {rows}: "
                         "is this the fine-tuned classifier (with the five extra rows)?")
    from routekit.artifact import sha256_file

    sections = {"source": {"format": "routellm-causal", "checkpoint": source or checkpoint_dir.name,
                           "license": license, "system_file": system_file.name,
                           "classifier_file": classifier_file.name, "config": config,
                           "prompt_files_sha256": {p.name: sha256_file(p) for p in (system_file, classifier_file)},
                           "score_threshold": score_threshold, "prompt_format": prompt_format},
                "training": {"note": "converted from a RouteLLM causal-LLM checkpoint; see its model card "
                                     "for data and licence"}}
    strong_scores = list(range(1, score_threshold))
    desc = "Causal-LLM classifier converted from a RouteLLM checkpoint (P(strong) = 1 - P(score >= %d))" % score_threshold
    if any(checkpoint_dir.glob("*.safetensors")):
        return write_causal_artifact(out, None, tok, spec, name=name, max_length=max_length, strong=strong,
                                     weak=weak, strong_scores=strong_scores, description=desc, sections=sections,
                                     calibration=calibration, overwrite=overwrite, model_dir=checkpoint_dir)
    if not any(checkpoint_dir.glob("pytorch_model*.bin")):
        raise FileNotFoundError(f"{checkpoint_dir}: no *.safetensors or pytorch_model*.bin weights")
    model = transformers.AutoModelForCausalLM.from_pretrained(str(checkpoint_dir), local_files_only=True,
                                                              use_safetensors=False, dtype="auto")
    with tempfile.TemporaryDirectory(prefix="routekit-convert-", dir=out.parent if out.parent.exists() else None) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        del model
        return write_causal_artifact(out, None, tok, spec, name=name, max_length=max_length, strong=strong,
                                     weak=weak, strong_scores=strong_scores, description=desc, sections=sections,
                                     calibration=calibration, overwrite=overwrite, model_dir=Path(tmp))
