"""ONNX Runtime backend of the causal-LLM router: no torch, no transformers.

The exporter (``routekit_export.causal_onnx``) writes one graph that maps a left-padded batch
``(input_ids, attention_mask, position_ids)`` to the logits of the five score tokens at the last
position, ``scores[batch, 5]``: the same quantity the torch backend reads, without the full
vocabulary matmul.  The tokenizer is the model's ``tokenizer.json`` read by ``tokenizers``; the
classification prompt is a plain ``template`` (the exporter renders the chat template once with
placeholders and checks, on probe prompts, that the token ids are unchanged).

Manifest (``router.onnx``)::

    model        "onnx/model.onnx"          (hash-checked like every file)
    tokenizer    "onnx/tokenizer.json"
    prompt       a PromptSpec of format "template" (see causal.PromptSpec)
    pad_id       id used for left padding
    clean_up_tokenization_spaces   bool, as the Hugging Face tokenizer decodes (used when a long
                 prompt is cut and re-encoded)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from routekit.errors import BadArtifactError

#: Hugging Face's ``clean_up_tokenization`` replacements, in its order (decode of a cut prompt).
_CLEANUP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
            (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


class TokenizerJson:
    """The slice of a Hugging Face tokenizer :class:`~routekit.routers.causal.PromptEncoder` uses."""

    def __init__(self, path, *, clean_up_tokenization_spaces: bool = False):
        from tokenizers import Tokenizer

        try:
            self.tk = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises its own exception type
            raise BadArtifactError(f"{path}: tokenizers could not read this file ({exc})") from exc
        self.tk.no_padding()
        self.tk.no_truncation()
        self.clean_up = bool(clean_up_tokenization_spaces)
        self.chat_template = None

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        return {"input_ids": self.tk.encode(text, add_special_tokens=add_special_tokens).ids}

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        text = self.tk.decode(list(ids), skip_special_tokens=skip_special_tokens)
        if self.clean_up:
            for a, b in _CLEANUP:
                text = text.replace(a, b)
        return text

    def token_id(self, token: str) -> int:
        ids = self.tk.encode(token, add_special_tokens=False).ids
        if len(ids) != 1:
            raise BadArtifactError(f"score token {token!r} is not a single token in this tokenizer ({ids})")
        return int(ids[0])


class OnnxCausalScorer:
    """The exported graph and its tokenizer: ``forward`` maps a left-padded batch to P(score = k).

    Prompt rendering and padding stay in :mod:`routekit.routers.causal` (one implementation for
    both backends); this module does not import it."""

    def __init__(self, manifest, section: dict, score_tokens: Sequence[str], *, providers=None, threads=None):
        from routekit.encoders.session import onnx_session

        if not isinstance(section, dict):
            raise BadArtifactError(f"{manifest.folder}: router.onnx must be an object")
        try:
            model, tok = str(section["model"]), str(section["tokenizer"])
            self.pad_id = int(section.get("pad_id", 0))
            clean = bool(section.get("clean_up_tokenization_spaces", False))
        except (KeyError, TypeError, ValueError) as exc:
            raise BadArtifactError(f"{manifest.folder}: invalid router.onnx section ({exc})") from exc
        self.tokenizer = TokenizerJson(manifest.path(tok), clean_up_tokenization_spaces=clean)
        self.score_ids = [self.tokenizer.token_id(t) for t in score_tokens]
        path = manifest.path(model)
        self.session = onnx_session(path, key=manifest.files[model]["sha256"], providers=providers, threads=threads)
        names = {i.name for i in self.session.get_inputs()}
        if names != {"input_ids", "attention_mask", "position_ids"}:
            raise BadArtifactError(f"{path}: graph inputs {sorted(names)} are not input_ids, attention_mask, "
                                   "position_ids")
        width = self.session.get_outputs()[0].shape[-1]
        if isinstance(width, int) and width != len(score_tokens):
            raise BadArtifactError(f"{path}: graph gives {width} scores for {len(score_tokens)} score tokens")

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def forward(self, ids: np.ndarray, mask: np.ndarray, pos: np.ndarray) -> np.ndarray:
        (logits,) = self.session.run(None, {"input_ids": ids, "attention_mask": mask, "position_ids": pos})
        z = logits.astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
