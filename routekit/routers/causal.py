"""Causal-LLM classifier router (RouteLLM paper, §4.1 "causal LLM classifier"): optional torch backend.

A decoder-only LM (Llama-style) is fine-tuned to answer a classification prompt with one of five
score tokens ``[[1]]`` … ``[[5]]``.  The score says how well the *weak* model is expected to answer
(5 = as well as the strong one).  Routing needs one forward pass per prompt::

    p_k          = softmax(logits of the next token, restricted to the ids of [[1]]..[[5]])_k
    P(strong)    = Σ_{k in strong_scores} p_k         default strong_scores = (1, 2, 3)

This is the reference's convention: RouteLLM computes ``binary_prob = P(score >= 4)`` ("the weak
model is good enough", ``score_threshold = 4``) and routes with ``1 - binary_prob``, i.e.
P(strong) = P(1) + P(2) + P(3).  The reference calls ``generate()`` and reads the scores of the
first generated score token; with greedy decoding that is the same distribution as one forward pass
over the prompt followed by whatever the model emits before the score (the Llama-3 assistant header
for the published checkpoint), which the manifest stores as ``generation_prefix``.

Install with ``pip install 'routekit[causal]'`` (torch + transformers, imported only when a causal
artifact is loaded with the torch backend).  Device: CUDA when ``torch.cuda.is_available()`` (bf16
where supported, else fp16), otherwise CPU in fp32; override with ``routekit.load(path, device=...,
dtype=...)``.  An artifact exported with ``routekit-export causal-onnx`` also (or only) holds the
classifier as an ONNX graph (``router.onnx``, :mod:`.causal_onnx`) that runs on onnxruntime with no
torch (``backend="onnx"``).  An artifact with both runs on torch when CUDA is there (or ``device``
names a GPU), else on onnxruntime.

Artifact layout (``kind: "causal"``)::

    manifest.json
    model/config.json, model/model.safetensors (or sharded + index), model/tokenizer.json, ...

``router`` section of the manifest::

    model_dir        "model"  — a Hugging Face causal-LM folder; every file in it must be listed in the
                     manifest (hash-checked); weights are loaded with ``use_safetensors=True`` only
    score_tokens     ["[[1]]", …, "[[5]]"]   added to the tokenizer as special tokens when absent
    strong_scores    [1, 2, 3]               scores whose probabilities sum to P(strong)
    max_length       token budget of the whole classification prompt (the user prompt is cut to fit,
                     the system prompt and the template never are)
    prompt           {format, system, user, template, generation_prefix, add_special_tokens, strip}
                     (see :class:`PromptSpec`)

Batches are left-padded with explicit position ids, so a prompt's score does not depend on its
batch-mates (up to float rounding).  A lock serialises scoring: one ``CausalRouter`` may be shared by
threads, and one model forward at a time is what a single GPU does anyway.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from routekit.artifact.strict_json import MAX_TOKENS, safe_relpath
from routekit.encoders import clean_text
from routekit.errors import BadArtifactError, BadInputError, require
from routekit.router import Router

SCORE_TOKENS = tuple(f"[[{k}]]" for k in range(1, 6))
#: Scores whose probabilities sum to P(strong): the reference's ``1 - P(score >= 4)``.
DEFAULT_STRONG_SCORES = (1, 2, 3)
DEFAULT_MAX_LENGTH = 1024
#: Characters kept per token of budget before tokenizing (tokenizers encode the whole string first).
CHARS_PER_TOKEN = 12
#: Weight files the runtime refuses to see in a model folder: they would be unpickled by torch.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")

_PLACEHOLDER = re.compile(r"\{(system|user|prompt)\}")
_SCORE_IN_TEXT = re.compile(r"\[\[([1-5])\]\]")


def fill(template: str, **values: str) -> str:
    """Replace ``{system}``, ``{user}``, ``{prompt}`` in one pass; no other brace is interpreted,
    and replaced text is never scanned again (a prompt may contain ``{user}`` or ``{}`` freely)."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)] if m.group(1) in values else m.group(0), template)


def neutralise_score_tokens(prompt: str) -> str:
    """``[[3]]`` in a *user's* prompt would be read as the score token itself; write it ``[[3 ]]``."""
    return _SCORE_IN_TEXT.sub(r"[[\1 ]]", prompt)


@dataclass(frozen=True)
class PromptSpec:
    """How a user prompt becomes the classifier's input text.

    ``format``:
      * ``"chat_template"`` — messages ``[system (if non-empty), user]`` through the tokenizer's own
        chat template with ``add_generation_prompt=True``;
      * ``"template"`` — ``template`` with ``{system}`` and ``{user}`` filled in (for base models with
        no chat template, and for checkpoints trained with a hand-written format).
    ``user`` is the user message, with ``{prompt}`` where the prompt goes.  ``generation_prefix``
    is appended after the rendered text (what the model writes before its score token).
    ``add_special_tokens``: let the tokenizer add BOS etc. (False for chat templates, which write BOS
    themselves).  ``strip``: strip the system text and the filled user message (the reference does).
    """

    format: str = "template"
    system: str = ""
    user: str = "{prompt}"
    template: str = "{system}\n\n{user}\n"
    generation_prefix: str = ""
    add_special_tokens: bool = True
    strip: bool = True

    FORMATS = ("template", "chat_template")

    def __post_init__(self):
        if self.format not in self.FORMATS:
            raise BadArtifactError(f"prompt format {self.format!r} is not one of {self.FORMATS}")
        if "{prompt}" not in self.user:
            raise BadArtifactError("prompt.user must contain '{prompt}'")
        if self.format == "template" and "{user}" not in self.template:
            raise BadArtifactError("prompt.template must contain '{user}'")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PromptSpec":
        if not isinstance(data, dict):
            raise BadArtifactError(f"router.prompt must be an object, got {type(data).__name__}")
        known = {k: data[k] for k in ("format", "system", "user", "template", "generation_prefix",
                                      "add_special_tokens", "strip") if k in data}
        for key, value in known.items():
            want = bool if key in ("add_special_tokens", "strip") else str
            if not isinstance(value, want):
                raise BadArtifactError(f"router.prompt.{key} must be {want.__name__}")
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def messages(self, prompt: str) -> tuple[str, str]:
        system = self.system.strip() if self.strip else self.system
        user = fill(self.user, prompt=neutralise_score_tokens(prompt))
        return system, (user.strip() if self.strip else user)

    def render(self, prompt: str, tokenizer=None) -> str:
        """The full classifier input text for ``prompt`` (before tokenization)."""
        system, user = self.messages(prompt)
        if self.format == "chat_template":
            if tokenizer is None or not getattr(tokenizer, "chat_template", None):
                raise BadArtifactError("prompt format 'chat_template' but the tokenizer has no chat template")
            msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
            text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        else:
            text = fill(self.template, system=system, user=user)
        return text + self.generation_prefix


class PromptEncoder:
    """Prompt -> token ids within ``max_length`` (shared by the runtime and the training script)."""

    def __init__(self, tokenizer, spec: PromptSpec, max_length: int = DEFAULT_MAX_LENGTH):
        self.tokenizer = tokenizer
        self.spec = spec
        self.max_length = int(max_length)

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=self.spec.add_special_tokens)["input_ids"])

    def encode(self, prompt: str) -> list[int]:
        prompt = clean_text(prompt, self.max_length * CHARS_PER_TOKEN)
        ids = self._ids(self.spec.render(prompt, self.tokenizer))
        for _ in range(4):  # cut the *user prompt* (never the instructions) until the whole fits
            over = len(ids) - self.max_length
            if over <= 0:
                return ids
            p_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            keep = max(0, len(p_ids) - over - 4)
            if keep == 0 and not prompt:
                break
            prompt = self.tokenizer.decode(p_ids[:keep], skip_special_tokens=False)
            ids = self._ids(self.spec.render(prompt, self.tokenizer))
        if len(ids) > self.max_length:
            raise BadArtifactError(f"the classification prompt alone is {len(ids)} tokens, more than "
                                   f"max_length={self.max_length}")
        return ids

    @staticmethod
    def pad_left(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Left-pad to (ids, attention_mask, position_ids); positions count real tokens from 0."""
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            if len(r):
                ids[i, width - len(r):] = r
                mask[i, width - len(r):] = 1
        pos = np.clip(np.cumsum(mask, axis=1) - 1, 0, None)
        return ids, mask, pos


def score_token_ids(tokenizer, tokens: Sequence[str] = SCORE_TOKENS, *, add: bool = True) -> list[int]:
    """Ids of the score tokens, adding them as special tokens when absent (each must be one token)."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in tokens if t not in vocab]
    if missing:
        if not add:
            raise BadArtifactError(f"tokenizer lacks score tokens {missing}")
        tokenizer.add_tokens(list(missing), special_tokens=True)
    ids = []
    for t in tokens:
        enc = tokenizer(t, add_special_tokens=False)["input_ids"]
        if len(enc) != 1:
            raise BadArtifactError(f"score token {t!r} is not a single token in this tokenizer ({enc})")
        ids.append(int(enc[0]))
    if len(set(ids)) != len(ids):
        raise BadArtifactError(f"score tokens share ids: {dict(zip(tokens, ids))}")
    return ids


def configure_tokenizer(tokenizer) -> None:
    """Left padding, a pad token, and no ``token_type_ids`` (Llama's forward does not take them)."""
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"
    tokenizer.model_input_names = ["input_ids", "attention_mask"]
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.bos_token


def pick_device_dtype(torch, device: str | None = None, dtype: str | None = None):
    """(device, dtype): CUDA with bf16 (fp16 where bf16 is unsupported) when present, else CPU fp32."""
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dtype and dtype != "auto":
        try:
            dt = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                  "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[str(dtype)]
        except KeyError:
            raise BadInputError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}") from None
    elif dev.type == "cuda":
        dt = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dt = torch.float32
    return dev, dt


def model_files(manifest, model_dir: str) -> Path:
    """Check the model folder file by file against the manifest; return its path.

    Every file in the folder must be listed (so transformers reads nothing unverified), weights must
    be safetensors, and pickle-based weight files are refused outright.
    """
    prefix = model_dir.rstrip("/") + "/"
    listed = [rel for rel in manifest.files if rel.startswith(prefix)]
    if not listed:
        raise BadArtifactError(f"{manifest.folder}: no files listed under {prefix!r}")
    for rel in listed:
        manifest.path(rel)  # refuses symlinks and escapes
        if rel.lower().endswith(PICKLE_SUFFIXES):
            raise BadArtifactError(f"{manifest.folder}: {rel!r} is a pickle-based weight file; "
                                   "causal artifacts must hold safetensors weights only")
    names = {rel[len(prefix):] for rel in listed}
    if "config.json" not in names:
        raise BadArtifactError(f"{manifest.folder}: {prefix}config.json is not listed")
    if not any(n.endswith(".safetensors") for n in names):
        raise BadArtifactError(f"{manifest.folder}: {model_dir}/ has no .safetensors weights")
    folder = manifest.folder / model_dir
    for path in folder.rglob("*"):
        rel = path.relative_to(manifest.folder).as_posix()
        if (path.is_file() or path.is_symlink()) and rel not in manifest.files:
            raise BadArtifactError(f"{manifest.folder}: {rel!r} is in the model folder but not in the "
                                   "manifest (transformers would read it unverified)")
    return folder


BACKENDS = ("torch", "onnx")


def pick_backend(backend: str | None, *, has_torch: bool, has_onnx: bool, device: str | None = None) -> str:
    """``torch`` or ``onnx``: the one asked for, else the only one the artifact holds, else torch when
    a CUDA device is asked for or present (torch installed), else onnx (CPU: no torch needed)."""
    if backend not in (None, "auto", *BACKENDS):
        raise BadInputError(f"backend must be auto, torch or onnx, got {backend!r}")
    if backend == "onnx" and not has_onnx:
        raise BadInputError("this causal artifact has no ONNX graph (make one with routekit-export causal-onnx)")
    if backend == "torch" and not has_torch:
        raise BadInputError("this causal artifact holds only its ONNX graph: load it with backend='onnx' "
                            "(the default)")
    if backend in BACKENDS:
        return backend
    if not has_onnx:
        return "torch"
    if not has_torch:
        return "onnx"
    if device not in (None, "auto"):
        return "onnx" if str(device) == "cpu" else "torch"
    if importlib.util.find_spec("torch") is None:
        return "onnx"
    import torch  # installed: one CUDA query decides

    return "torch" if torch.cuda.is_available() else "onnx"


def _check_prompt(c, prompt, field: str) -> None:
    for k, v in (c.obj(prompt, field, optional=True) or {}).items():
        if isinstance(v, bool):
            continue
        c.string(v, f"{field}.{k}", empty=True, max_len=100_000)


class CausalRouter(Router):
    kind = "causal"
    needs_router_section = True

    @classmethod
    def check_section(cls, c, r: dict, data: dict, models) -> None:
        c.string(r.get("model_dir"), "router.model_dir", optional=True, max_len=1000)
        if isinstance(r.get("model_dir"), str) and safe_relpath(r["model_dir"]):
            c.fail("router.model_dir", safe_relpath(r["model_dir"]))
        c.integer(r.get("max_length"), "router.max_length", lo=1, hi=MAX_TOKENS, optional=True)
        c.integer(r.get("batch_size"), "router.batch_size", lo=1, hi=1 << 16, optional=True)
        if r.get("score_tokens") is not None:
            c.str_list(r["score_tokens"], "router.score_tokens", max_items=1000, max_len=100)
        if r.get("strong_scores") is not None:
            ss = r["strong_scores"]
            if not isinstance(ss, list) or not ss:
                c.fail("router.strong_scores", "must be a non-empty list of integers")
            for i, k in enumerate(ss):
                c.integer(k, f"router.strong_scores[{i}]", lo=1, hi=1000)
        _check_prompt(c, r.get("prompt"), "router.prompt")
        onnx = c.obj(r.get("onnx"), "router.onnx", optional=True)
        if onnx is not None:  # the classifier exported for onnxruntime (routekit-export causal-onnx)
            c.listed_file(onnx.get("model"), "router.onnx.model")
            c.listed_file(onnx.get("tokenizer"), "router.onnx.tokenizer")
            c.integer(onnx.get("pad_id"), "router.onnx.pad_id", lo=0, hi=1 << 31, optional=True)
            if not isinstance(onnx.get("clean_up_tokenization_spaces", False), bool):
                c.fail("router.onnx.clean_up_tokenization_spaces", "must be true or false")
            _check_prompt(c, onnx.get("prompt"), "router.onnx.prompt")

    def __init__(self, manifest, *, providers=None, threads=None, strong=None, weak=None,
                 device: str | None = None, dtype: str | None = None, batch_size: int | None = None,
                 backend: str | None = None):
        super().__init__(manifest, strong=strong, weak=weak)
        if not self.is_default_pair:
            raise BadInputError(f"a causal classifier scores only the pair it was trained for "
                                f"({self.default_strong} vs {self.default_weak})")
        spec = manifest["router"]
        try:
            self.prompt = PromptSpec.from_dict(spec.get("prompt", {}))
            tokens = tuple(spec.get("score_tokens", SCORE_TOKENS))
            self.strong_scores = tuple(int(k) for k in spec.get("strong_scores", DEFAULT_STRONG_SCORES))
            max_length = int(spec.get("max_length", DEFAULT_MAX_LENGTH))
            has_onnx = spec.get("onnx") is not None
            model_dir = spec.get("model_dir", None if has_onnx else "model")
            model_dir = None if model_dir is None else str(model_dir)
        except (TypeError, ValueError, AttributeError) as exc:
            raise BadArtifactError(f"{manifest.folder}: invalid causal router section ({exc})") from exc
        if len(tokens) < 2 or not self.strong_scores or not all(1 <= k <= len(tokens) for k in self.strong_scores):
            raise BadArtifactError(f"{manifest.folder}: strong_scores {self.strong_scores} do not fit "
                                   f"{len(tokens)} score tokens")
        self.score_tokens = tokens
        self._strong_idx = [k - 1 for k in self.strong_scores]
        self._lock = threading.Lock()
        self.batch_size = int(batch_size or spec.get("batch_size", 16))
        self.backend = pick_backend(backend, has_torch=model_dir is not None, has_onnx=has_onnx, device=device)
        if self.backend == "onnx":
            if dtype not in (None, "auto", "float32", "fp32") or (device not in (None, "auto", "cpu")):
                raise BadInputError("device= and dtype= choose the torch backend's device; the ONNX backend "
                                    "runs in float32 on the onnxruntime providers= (CUDA with routekit-gpu)")
            from routekit.routers.causal_onnx import OnnxCausalScorer

            self._onnx = OnnxCausalScorer(manifest, spec["onnx"], tokens, providers=providers, threads=threads)
            onnx_prompt = PromptSpec.from_dict(spec["onnx"].get("prompt", {}))
            if onnx_prompt.format != "template":
                raise BadArtifactError(f"{manifest.folder}: router.onnx.prompt must use format 'template' "
                                       "(the runtime renders no chat templates)")
            self.tokenizer, self._ids, self._pad_id = self._onnx.tokenizer, self._onnx.score_ids, self._onnx.pad_id
            self.encoder = PromptEncoder(self.tokenizer, onnx_prompt, max_length)
            self.device, self.dtype = self._onnx.providers[0], "float32"
            self._check_budget(manifest, onnx_prompt, self.tokenizer)
            return
        torch = require("torch", "causal", "the causal-LLM router (or export it for onnxruntime: "
                                           "routekit-export causal-onnx)")
        transformers = require("transformers", "causal", "the causal-LLM router")
        self._torch = torch
        if threads:
            torch.set_num_threads(int(threads))  # process-wide: torch has one intra-op pool
        folder = model_files(manifest, model_dir)
        self.device, self.dtype = pick_device_dtype(torch, device, dtype)
        try:
            tok = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True,
                                                             trust_remote_code=False)
            model = transformers.AutoModelForCausalLM.from_pretrained(
                str(folder), local_files_only=True, trust_remote_code=False, use_safetensors=True,
                dtype=self.dtype)
        except (OSError, ValueError, KeyError) as exc:
            raise BadArtifactError(f"{folder}: transformers could not load the model/tokenizer ({exc})") from exc
        configure_tokenizer(tok)
        self._ids = score_token_ids(tok, tokens)
        rows = model.get_output_embeddings().weight.shape[0]
        if max(self._ids) >= rows:
            raise BadArtifactError(f"{folder}: score token ids {self._ids} exceed the model's {rows} output rows "
                                   "(was this model fine-tuned with the score tokens?)")
        self.tokenizer = tok
        self.model = model.to(self.device).eval()
        self.encoder = PromptEncoder(tok, self.prompt, max_length)
        self._pad_id = int(tok.pad_token_id if tok.pad_token_id is not None else 0)
        self._sel = torch.tensor(self._ids, dtype=torch.long, device=self.device)
        self._check_budget(manifest, self.prompt, tok)

    def _check_budget(self, manifest, prompt: PromptSpec, tok) -> None:
        fixed = len(self.encoder._ids(prompt.render("", tok)))
        if fixed >= self.encoder.max_length:
            raise BadArtifactError(f"{manifest.folder}: the classification prompt without a user prompt is "
                                   f"{fixed} tokens, not less than max_length={self.encoder.max_length}")

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + (f" backend={self.backend} device={self.device} "
                                          f"dtype={str(self.dtype).replace('torch.', '')}>")

    # -- scoring --------------------------------------------------------------------------------
    def _forward(self, rows: list[list[int]]) -> np.ndarray:
        if self.backend == "onnx":
            return self._onnx.forward(*PromptEncoder.pad_left(rows, self._pad_id))
        torch = self._torch
        ids, mask, pos = (torch.from_numpy(a).to(self.device) for a in PromptEncoder.pad_left(rows, self._pad_id))
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False, logits_to_keep=1)
        logits = out.logits[:, -1, :].index_select(-1, self._sel).double()
        return torch.softmax(logits, dim=-1).cpu().numpy()

    def score_distribution(self, prompts: Sequence[str]) -> np.ndarray:
        """P(score = k) for k = 1..5, one row per prompt (rows sum to 1)."""
        from routekit._validate import as_prompts

        items = as_prompts(prompts)
        out = np.zeros((len(items), len(self.score_tokens)))
        if not items:
            return out
        with self._lock, (self._torch.inference_mode() if self.backend == "torch" else contextlib.nullcontext()):
            rows = [self.encoder.encode(p) for p in items]
            order = np.argsort([len(r) for r in rows], kind="stable")  # similar lengths pad less
            for start in range(0, len(rows), self.batch_size):
                idx = order[start:start + self.batch_size]
                out[idx] = self._forward([rows[i] for i in idx])
        return out

    def score(self, prompts: list[str]) -> np.ndarray:
        return self.score_distribution(prompts)[:, self._strong_idx].sum(axis=1)
