"""Text encoders (tokenizers + onnxruntime, no torch): :class:`Encoder` for ONNX sentence encoders
and classifiers, :class:`StaticEncoder` for token-embedding tables, and the readers of an
artifact's ``encoder`` section."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from routekit.encoders.session import onnx_session
from routekit.errors import BadArtifactError


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
                 output: str | None = None, chars_per_token: int = 12, row_by_row: bool = False,
                 disabled_optimizers: Sequence[str] = (), dim: int | None = None):
        self.max_length = int(max_length)
        self.model_path, self.tokenizer_path, self.dim = Path(model), Path(tokenizer), dim
        # Dynamic int8 models quantise activations with one scale per call, so a row's result would
        # depend on its batch-mates: run such models one text at a time (also faster: no padding).
        # So are graphs exported for one unpadded prompt per run (manifest ``"batch_size": 1``: no
        # attention-mask path, see routekit_export.convert.drop_attention_mask).
        self.row_by_row = row_by_row
        self.max_chars = self.max_length * chars_per_token
        self.tokenizer = load_tokenizer(tokenizer, self.max_length)
        self.session = onnx_session(model, key=key, providers=providers, threads=threads,
                                    disabled_optimizers=disabled_optimizers)
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.output = output or self.session.get_outputs()[0].name
        check_graph(self.session, model, self.output, dim)
        # whether the post-processor adds exactly one token each side ([CLS] … [SEP]), so that a
        # text's own word pieces can be read off its encoding (see _content_ids)
        inner = self.tokenizer.encode("routekit 1", add_special_tokens=False).ids
        outer = self.tokenizer.encode("routekit 1").ids
        self._wraps_one_each_side = len(outer) == len(inner) + 2 and outer[1:-1] == inner

    def _clean(self, text: str) -> str:
        return clean_text(text, self.max_chars)

    def _run(self, texts: list[str], token_ids: list | None = None) -> np.ndarray:
        encs = self.tokenizer.encode_batch([self._clean(t) for t in texts])
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64)}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        if token_ids is not None:
            token_ids.extend(self._content_ids(t, e) for t, e in zip(texts, encs))
        return self._session_run(feeds, len(texts))

    def _session_run(self, feeds: dict, rows: int, run_options=None) -> np.ndarray:
        feeds = {k: v for k, v in feeds.items() if k in self.input_names}
        try:
            out = self.session.run([self.output], feeds, run_options)[0]
        except Exception as exc:  # onnxruntime's own exception types: the graph and tokenizer do not fit
            raise BadArtifactError(f"{self.model_path}: onnxruntime failed on tokens from {self.tokenizer_path.name} "
                                   f"({type(exc).__name__}: {str(exc)[:300]})") from exc
        if out.ndim != 2 or out.shape[0] != rows or (self.dim is not None and out.shape[1] != self.dim):
            want = f"({rows}, {self.dim if self.dim is not None else 'dim'})"
            raise BadArtifactError(f"{self.model_path}: output {self.output!r} has shape {out.shape}, expected {want}")
        return out

    def probe(self, top: int | None = None) -> None:
        """Run the graph once on token ids 0 and ``top`` (default: the vocabulary size - 1): a model
        whose embedding table is smaller than the tokenizer's vocabulary, or that is not the graph
        the manifest describes, fails here (BadArtifactError) instead of on some later prompt."""
        import onnxruntime as ort

        if top is None:
            top = last_token_id(self.tokenizer)
        ids = np.array([[0, max(top, 0)]], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        quiet = ort.RunOptions()
        quiet.log_severity_level = 4
        try:
            out = self._session_run(feeds, 1, quiet)
        except BadArtifactError as exc:
            raise BadArtifactError(f"{self.model_path} does not fit {self.tokenizer_path.name} "
                                   f"(token ids up to {top}): {exc}") from exc
        if not np.all(np.isfinite(out)):
            raise BadArtifactError(f"{self.model_path}: output {self.output!r} is not finite on a test input")

    def check_vocab(self) -> None:
        """The slower, complete form of :meth:`probe` (``routekit artifacts verify``): the largest id
        the tokenizer can produce, whether or not its ids are contiguous."""
        self.probe(max_token_id(self.tokenizer))

    def _content_ids(self, text: str, enc) -> np.ndarray | None:
        """A text's word-piece ids without [CLS]/[SEP]/padding; ``None`` where it was cut."""
        if len(text) > self.max_chars or enc.overflowing or not self._wraps_one_each_side:
            return None
        return np.asarray(enc.ids[1:sum(enc.attention_mask) - 1], dtype=np.int64)

    def __call__(self, texts: Sequence[str], *, batch_size: int = 32, token_ids: list | None = None) -> np.ndarray:
        """Run the model on ``texts``; batches are formed from texts of similar length.

        ``token_ids``: a list that receives, per text in order, its word-piece ids without special
        tokens (as a tokenizer without truncation gives them), or ``None`` for a text that was cut;
        routers that also count word pieces reuse them instead of tokenizing twice."""
        texts = list(texts)
        if self.row_by_row:
            batch_size = 1
        if not texts:
            dim = self.session.get_outputs()[0].shape[-1]
            return np.zeros((0, dim if isinstance(dim, int) else 0), dtype=np.float32)
        if len(texts) <= batch_size:
            return self._run(texts, token_ids)
        order = np.argsort([len(t) for t in texts], kind="stable")
        out, ids = None, [] if token_ids is not None else None
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            block = self._run([texts[i] for i in idx], ids)
            if out is None:
                out = np.empty((len(texts),) + block.shape[1:], dtype=block.dtype)
            out[idx] = block
        if token_ids is not None:
            token_ids.extend(ids[i] for i in np.argsort(order, kind="stable"))
        return out


#: the inputs an encoder graph may take (routekit feeds exactly these)
GRAPH_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def check_graph(session, model: Path, output: str, dim: int | None) -> None:
    """The ONNX graph is the one the manifest describes: int64 token inputs routekit knows how to
    feed (``input_ids`` at least), the named output, of rank 2, ``dim`` wide where the graph says."""
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    unknown = sorted(set(inputs) - set(GRAPH_INPUTS))
    if "input_ids" not in inputs or unknown:
        raise BadArtifactError(f"{model}: graph inputs {sorted(inputs)} are not a text encoder's "
                               f"(expected input_ids and optionally attention_mask, token_type_ids)")
    for name, i in inputs.items():
        if i.type != "tensor(int64)" or len(i.shape) != 2:
            raise BadArtifactError(f"{model}: input {name!r} is {i.type} of rank {len(i.shape)}, expected int64 rank 2")
    if output not in outputs:
        raise BadArtifactError(f"{model}: no output {output!r} (the graph has {sorted(outputs)})")
    shape = outputs[output].shape
    if len(shape) != 2:
        raise BadArtifactError(f"{model}: output {output!r} has rank {len(shape)}, expected 2 (batch × dim)")
    if dim is not None and isinstance(shape[1], int) and shape[1] != dim:
        raise BadArtifactError(f"{model}: output {output!r} is {shape[1]} wide, the manifest says {dim}")


def last_token_id(tokenizer) -> int:
    """The vocabulary's last id (the base vocabulary's or the highest added token's; -1 if empty), the quick
    bound :meth:`Encoder.probe` and :class:`StaticEncoder` check against (with_added_tokens=True
    would build the whole vocabulary: ~7 ms; :func:`max_token_id` is the complete check)."""
    return max(tokenizer.get_vocab_size(with_added_tokens=False) - 1,
               max(tokenizer.get_added_tokens_decoder(), default=-1))


def max_token_id(tokenizer) -> int:
    """The largest id ``tokenizer`` can emit (its vocabulary need not be contiguous; ~50 ms)."""
    return max(tokenizer.get_vocab(with_added_tokens=True).values(), default=0)


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
        vocab = last_token_id(self.tokenizer) + 1
        if self.table.ndim != 2 or self.table.shape[0] < vocab:
            raise BadArtifactError(f"token table of shape {self.table.shape} has fewer rows than "
                                   f"{Path(tokenizer).name}'s {vocab} tokens")
        if not np.all(np.isfinite(self.table)):
            raise BadArtifactError("token table has values that are not finite")
        self._tokenizer_name = Path(tokenizer).name

    def check_vocab(self) -> None:
        """Every id the tokenizer can emit has a table row (``routekit artifacts verify``)."""
        top = max_token_id(self.tokenizer)
        if top >= self.table.shape[0]:
            raise BadArtifactError(f"{self._tokenizer_name} emits token ids up to {top}, the token table has "
                                   f"{self.table.shape[0]} rows")

    def __call__(self, texts: Sequence[str], *, batch_size: int = 256) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), self.table.shape[1]), dtype=np.float32)
        if not texts:
            return out
        encs = self.tokenizer.encode_batch([clean_text(t, self.max_chars) for t in texts])
        for i, e in enumerate(encs):
            ids = [t for t, special in zip(e.ids, e.special_tokens_mask) if not special]
            if ids:
                try:
                    v = self.table[ids].mean(axis=0)
                except IndexError:
                    raise BadArtifactError(f"{self._tokenizer_name} gave token id {max(ids)}, the token table has "
                                           f"{self.table.shape[0]} rows") from None
                n = float(np.linalg.norm(v))
                out[i] = v / n if n > 0 else v
        return out


def encoder_from_manifest(manifest, *, providers=None, threads=None, section: str = "encoder") -> Encoder:
    """Build the Encoder described by ``manifest[section]`` (files must be listed in the manifest).

    ``{"kind": "openai", ...}`` gives a remote :class:`~routekit.encoders.openai.OpenAIEmbedder`
    (same call signature; its client is created on the first call).
    """
    spec = manifest[section]
    if isinstance(spec, dict) and spec.get("kind") == "openai":
        from routekit.encoders.openai import OpenAIEmbedder

        return OpenAIEmbedder.from_spec(spec)
    return encoder_from_spec(spec, path=manifest.path, array=manifest.array, key=manifest.file_key,
                             where=f"{manifest.folder}: {section!r}", providers=providers, threads=threads)


def encoder_from_spec(spec: dict, *, path, array, key, where: str, providers=None, threads=None):
    """The local encoder an ``encoder`` section describes: ``path(rel)``/``array(rel)`` resolve and
    load its files, ``key(rel)`` is a file's cache key (manifests and export encoder folders alike)."""
    try:
        model_rel, tok_rel = spec["file"], spec["tokenizer"]
        max_length = int(spec.get("max_length", 256))
        disabled = spec.get("ort_disabled_optimizers") or []
        disabled = [disabled] if isinstance(disabled, str) else [str(d) for d in disabled]
    except (KeyError, TypeError, ValueError) as exc:
        raise BadArtifactError(f"{where}: invalid encoder section ({exc})") from exc
    dim = spec.get("dim", spec.get("n_labels"))
    if spec.get("kind") == "static":
        table = array(model_rel)
        if not isinstance(table, np.ndarray) or table.ndim != 2 or table.dtype.kind != "f":
            raise BadArtifactError(f"{where}: {model_rel} must be a 2-D float token-embedding table")
        if dim is not None and table.shape[1] != dim:
            raise BadArtifactError(f"{where}: {model_rel} is {table.shape[1]} wide, the manifest says dim {dim}")
        try:
            return StaticEncoder(table, path(tok_rel), max_length=max_length)
        except BadArtifactError as exc:
            raise BadArtifactError(f"{where}: {model_rel}: {exc}") from None
    enc = Encoder(path(model_rel), path(tok_rel), key=key(model_rel),
                  max_length=max_length, providers=providers, threads=threads, output=spec.get("output"),
                  row_by_row="dynamic" in str(spec.get("quantization", "")) or spec.get("batch_size") == 1,
                  disabled_optimizers=disabled, dim=dim)
    enc.probe()
    return enc
