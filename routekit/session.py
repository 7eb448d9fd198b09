"""ONNX Runtime sessions and the text encoder built on them (tokenizers + onnxruntime, no torch).

One ``InferenceSession`` per (model file hash, providers, threads) is kept and shared, so several
routers that ship the same encoder run it once in memory.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import BadArtifactError

_SESSIONS: dict[tuple, object] = {}
_LOCK = threading.Lock()


def default_providers() -> list[str]:
    """CUDA when the installed onnxruntime offers it (``routekit[gpu]``), else CPU."""
    import onnxruntime as ort

    env = os.environ.get("ROUTEKIT_PROVIDERS")
    if env:
        return [p.strip() for p in env.split(",") if p.strip()]
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def onnx_session(path: Path, *, key: str, providers: Sequence[str] | None = None, threads: int | None = None):
    """A shared, fully optimised ORT session for ``path`` (``key`` is the file's sha256)."""
    import onnxruntime as ort

    providers = list(providers) if providers else default_providers()
    threads = int(threads) if threads else int(os.environ.get("ROUTEKIT_THREADS", 0)) or None
    cache_key = (key, tuple(providers), threads)
    with _LOCK:
        sess = _SESSIONS.get(cache_key)
        if sess is not None:
            return sess
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        try:
            sess = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BadArtifactError(f"{path}: onnxruntime could not load this model ({exc})") from exc
        _SESSIONS[cache_key] = sess
        return sess


def load_tokenizer(path: Path, max_length: int, *, pad: bool = True):
    """A ``tokenizers.Tokenizer`` that truncates to ``max_length`` and (with ``pad``) pads to the longest
    in a batch (the MiniLM tokenizer.json pads and truncates to 128 by default; both are reset here)."""
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:
        raise BadArtifactError(f"{path}: not a valid tokenizer.json ({exc})") from exc
    tok.no_padding()
    tok.enable_truncation(max_length=int(max_length))
    if pad:
        pad_token = tok.id_to_token(0) or "[PAD]"
        tok.enable_padding(pad_id=tok.token_to_id(pad_token) or 0, pad_token=pad_token)
    return tok


def clean_text(text: str, max_chars: int) -> str:
    """Cut before tokenizing; replace lone surrogates that cannot be encoded as UTF-8."""
    text = text[:max_chars]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


class Encoder:
    """Tokenizer + ONNX model that maps texts to one output row per text.

    For sentence encoders the graph already does mean pooling and L2 normalisation and its output
    is the embedding; for classifiers it is the logits.  Long texts are cut by characters before
    tokenizing (tokenizers encodes the whole string before truncating), then truncated to
    ``max_length`` tokens.
    """

    def __init__(self, model: Path, tokenizer: Path, *, key: str, max_length: int = 256,
                 providers: Sequence[str] | None = None, threads: int | None = None,
                 output: str | None = None, chars_per_token: int = 12, row_by_row: bool = False):
        self.max_length = int(max_length)
        # Dynamic int8 models quantise activations with one scale per call, so a row's result would
        # depend on its batch-mates: run such models one text at a time (also faster: no padding).
        self.row_by_row = row_by_row
        self.max_chars = self.max_length * chars_per_token
        self.tokenizer = load_tokenizer(tokenizer, self.max_length)
        self.session = onnx_session(model, key=key, providers=providers, threads=threads)
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.output = output or self.session.get_outputs()[0].name

    def _clean(self, text: str) -> str:
        return clean_text(text, self.max_chars)

    def _run(self, texts: list[str]) -> np.ndarray:
        encs = self.tokenizer.encode_batch([self._clean(t) for t in texts])
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64)}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        return self.session.run([self.output], feeds)[0]

    def __call__(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Run the model on ``texts``; batches are formed from texts of similar length."""
        texts = list(texts)
        if self.row_by_row:
            batch_size = 1
        if not texts:
            dim = self.session.get_outputs()[0].shape[-1]
            return np.zeros((0, dim if isinstance(dim, int) else 0), dtype=np.float32)
        if len(texts) <= batch_size:
            return self._run(texts)
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = None
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            block = self._run([texts[i] for i in idx])
            if out is None:
                out = np.empty((len(texts),) + block.shape[1:], dtype=block.dtype)
            out[idx] = block
        return out


class StaticEncoder:
    """The "ultra-fast" tier: a token-embedding table distilled from a sentence encoder.

    An embedding is the mean of the table rows of the prompt's tokens (special tokens excluded),
    L2-normalised.  No neural network runs at query time: tokenizing is the main cost.
    """

    def __init__(self, table: np.ndarray, tokenizer: Path, *, max_length: int = 512, chars_per_token: int = 12):
        self.table = np.ascontiguousarray(table, dtype=np.float32)
        self.max_length = int(max_length)
        self.max_chars = self.max_length * chars_per_token
        self.tokenizer = load_tokenizer(tokenizer, self.max_length, pad=False)

    def __call__(self, texts: Sequence[str], *, batch_size: int = 256) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), self.table.shape[1]), dtype=np.float32)
        if not texts:
            return out
        encs = self.tokenizer.encode_batch([clean_text(t, self.max_chars) for t in texts])
        for i, e in enumerate(encs):
            ids = [t for t, special in zip(e.ids, e.special_tokens_mask) if not special]
            if ids:
                v = self.table[ids].mean(axis=0)
                n = float(np.linalg.norm(v))
                out[i] = v / n if n > 0 else v
        return out


def encoder_from_manifest(manifest, *, providers=None, threads=None, section: str = "encoder") -> Encoder:
    """Build the Encoder described by ``manifest[section]`` (files must be listed in the manifest).

    ``{"kind": "openai", ...}`` gives a remote :class:`~routekit.openai_embedder.OpenAIEmbedder`
    (same call signature; its client is created on the first call).
    """
    spec = manifest[section]
    if isinstance(spec, dict) and spec.get("kind") == "openai":
        from .openai_embedder import OpenAIEmbedder

        return OpenAIEmbedder.from_spec(spec)
    try:
        model_rel, tok_rel = spec["file"], spec["tokenizer"]
        max_length = int(spec.get("max_length", 256))
    except (KeyError, TypeError, ValueError) as exc:
        raise BadArtifactError(f"{manifest.folder}: invalid {section!r} section ({exc})") from exc
    if spec.get("kind") == "static":
        table = manifest.array(model_rel)
        if not isinstance(table, np.ndarray) or table.ndim != 2:
            raise BadArtifactError(f"{manifest.folder}: {model_rel} must be a 2-D token-embedding table")
        return StaticEncoder(table, manifest.path(tok_rel), max_length=max_length)
    return Encoder(manifest.path(model_rel), manifest.path(tok_rel), key=manifest.file_key(model_rel),
                   max_length=max_length, providers=providers, threads=threads, output=spec.get("output"),
                   row_by_row="dynamic" in str(spec.get("quantization", "")))
