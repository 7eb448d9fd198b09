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

from .errors import BadArtifactError, BadInputError

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


def resolve_threads(threads: int | None) -> int | None:
    """``threads``, else ``$ROUTEKIT_THREADS``, else ``None`` (onnxruntime's default)."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 0):
        raise BadInputError(f"threads must be an integer >= 0 (0: onnxruntime's default), got {threads!r}")
    if threads:
        return threads
    env = os.environ.get("ROUTEKIT_THREADS", "").strip() or "0"
    if not env.isdigit():
        raise BadInputError(f"$ROUTEKIT_THREADS must be an integer >= 0, got {env!r}")
    return int(env) or None


def session_options(threads: int | None):
    """Fully optimised, sequential, quiet ORT session options with ``threads`` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return opts


def onnx_session(path: Path, *, key: str, providers: Sequence[str] | None = None, threads: int | None = None,
                 disabled_optimizers: Sequence[str] = ()):
    """A shared, fully optimised ORT session for ``path`` (``key`` is the file's sha256).

    ``disabled_optimizers`` names onnxruntime graph transformers to skip (an artifact can carry
    them, measured for its graph: e.g. ``SkipLayerNormFusion`` on int8 BERT graphs)."""
    import onnxruntime as ort

    providers = list(providers) if providers else default_providers()
    threads = resolve_threads(threads)
    disabled = tuple(sorted({str(d) for d in disabled_optimizers or ()}))
    cache_key = (key, tuple(providers), threads) + ((disabled,) if disabled else ())
    with _LOCK:
        sess = _SESSIONS.get(cache_key)
        if sess is not None:
            return sess
        opts = session_options(threads)
        try:
            extra = {"disabled_optimizers": list(disabled)} if disabled else {}
            sess = ort.InferenceSession(str(path), sess_options=opts, providers=providers, **extra)
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

        if top is None:  # (with_added_tokens=True would build the whole vocabulary: ~7 ms)
            top = max(self.tokenizer.get_vocab_size(with_added_tokens=False) - 1,
                      max(self.tokenizer.get_added_tokens_decoder(), default=0))
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
        vocab = max(self.tokenizer.get_vocab_size(with_added_tokens=False),
                    max(self.tokenizer.get_added_tokens_decoder(), default=-1) + 1)
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

    ``{"kind": "openai", ...}`` gives a remote :class:`~routekit.openai_embedder.OpenAIEmbedder`
    (same call signature; its client is created on the first call).
    """
    spec = manifest[section]
    if isinstance(spec, dict) and spec.get("kind") == "openai":
        from .openai_embedder import OpenAIEmbedder

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


# --------------------------------------------------------------------------- small ONNX graphs
# Small constant-folded graphs (int8 inner products, the SW head) are written here as protobuf
# bytes, so the runtime needs no `onnx` package.  Integer products round each query row to int8 with
# its own scale inside the graph and run ``MatMulInteger`` (a u8×s8 GEMM, VNNI where the CPU has it)
# against a constant int8 matrix, which onnxruntime pre-packs once at load time.

#: Protocol-buffer messages (the model bytes) must stay under 2 GiB; leave room for the graph.
INT8_MAX_BYTES = 2**31 - 2**24
_ELEM_TYPES = {np.dtype(np.float32): 1, np.dtype(np.uint8): 2, np.dtype(np.int8): 3, np.dtype(np.int32): 6,
               np.dtype(np.int64): 7, np.dtype(np.float64): 11}


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _field(num: int, value) -> bytes:
    """One protobuf field: ints as varints, bytes/str/lists of parts length-delimited."""
    if isinstance(value, int):
        return _varint(num << 3) + _varint(value)
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, (list, tuple)):
        value = b"".join(value)
    return _varint(num << 3 | 2) + _varint(len(value)) + value


def _value_info(name: str, elem_type: int, dims: Sequence) -> bytes:
    shape = [_field(1, _field(1 if isinstance(d, int) else 2, d)) for d in dims]  # Dimension
    tensor_type = _field(1, elem_type) + _field(2, shape)                            # TypeProto.Tensor
    return _field(1, name) + _field(2, _field(1, tensor_type))                       # ValueInfoProto


def _tensor(name: str, arr: np.ndarray) -> list[bytes]:
    head = b"".join(_field(1, int(d)) for d in arr.shape) + _field(2, _ELEM_TYPES[arr.dtype]) + _field(8, name)
    raw = np.ascontiguousarray(arr).tobytes()
    return [head, _varint(9 << 3 | 2), _varint(len(raw)), raw]                        # TensorProto


def _attribute(name: str, value) -> bytes:
    if isinstance(value, (list, tuple)):                                              # INTS
        return _field(1, name) + b"".join(_field(8, int(v)) for v in value) + _field(20, 7)
    return _field(1, name) + _field(3, int(value)) + _field(20, 2)                   # INT


class OnnxGraph:
    """Builder for a small ONNX model (opset 17 + com.microsoft): constants, nodes, typed inputs
    and outputs; :meth:`session` compiles it on the CPU provider."""

    def __init__(self, name: str):
        self.name, self.nodes, self.constants, self.nbytes = name, [], [], 0
        self.names: set[str] = set()

    def _new(self, name: str) -> str:
        if name in self.names:  # a second value of the same name would silently rewire the graph
            raise ValueError(f"{self.name}: {name!r} is defined twice")
        self.names.add(name)
        return name

    def const(self, name: str, arr: np.ndarray) -> str:
        self._new(name)
        arr = np.ascontiguousarray(arr)
        self.constants.append(_field(5, _tensor(name, arr)))
        self.nbytes += arr.nbytes
        return name

    def op(self, op_type: str, *inputs: str, out: str, domain: str = "", **attrs) -> str:
        node = [_field(1, i) for i in inputs] + [_field(2, self._new(out)), _field(4, op_type)]
        node += [_field(5, _attribute(k, v)) for k, v in attrs.items()]
        if domain:
            node.append(_field(7, domain))
        self.nodes.append(_field(1, node))
        return out

    def int8_matmul(self, x: str, bt: np.ndarray, scale: np.ndarray, *, out: str) -> str:
        """``out = x @ (bt * scale)`` for an int8 ``bt`` (d × n) with one float scale per column.

        Each row of ``x`` (B × d, float32) is quantised on its own (symmetric, ``max|row| / 127``,
        as :func:`quantize_rows`), so a row's result never depends on the other rows of the batch."""
        amax = self.op("ReduceMax", self.op("Abs", x, out=f"{out}_abs"), out=f"{out}_amax", axes=[1], keepdims=1)
        xs = self.op("Max", self.op("Div", amax, self.const(f"{out}_127", np.float32(127)), out=f"{out}_xs0"),
                     self.const(f"{out}_tiny", np.float32(1e-30)), out=f"{out}_xs")  # a zero row stays zero
        xr = self.op("Round", self.op("Div", x, xs, out=f"{out}_xd"), out=f"{out}_xr")
        # shifted by 128 into uint8 (the u8×s8 kernels are the fast ones) with zero point 128: exact
        xc = self.op("Clip", xr, self.const(f"{out}_lo", np.float32(-127)), self.const(f"{out}_hi", np.float32(127)),
                     out=f"{out}_xc")
        xq = self.op("Cast", self.op("Add", xc, self.const(f"{out}_128", np.float32(128)), out=f"{out}_xu"),
                     out=f"{out}_xq", to=2)
        acc = self.op("MatMulInteger", xq, self.const(f"{out}_B", bt), self.const(f"{out}_zp", np.uint8(128)),
                      out=f"{out}_acc")
        rows = self.op("Mul", self.op("Cast", acc, out=f"{out}_accf", to=1), xs, out=f"{out}_rows")
        return self.op("Mul", rows, self.const(f"{out}_scale", np.asarray(scale, dtype=np.float32)), out=out)

    def model(self, inputs: Sequence[tuple], outputs: Sequence[tuple]) -> bytes:
        """ModelProto bytes; ``inputs``/``outputs``: ``(name, dims)`` of float32 tensors or
        ``(name, dims, dtype)``."""
        if self.nbytes > INT8_MAX_BYTES:
            raise BadInputError(f"{self.nbytes / 2**30:.1f} GiB of constants do not fit one ONNX model (2 GiB limit)")

        def info(spec):
            return _value_info(spec[0], _ELEM_TYPES[np.dtype(spec[2] if len(spec) > 2 else np.float32)], spec[1])

        graph = list(self.nodes) + [_field(2, self.name)] + self.constants
        graph += [_field(11, info(spec)) for spec in inputs] + [_field(12, info(spec)) for spec in outputs]
        opsets = _field(8, _field(2, 17)) + _field(8, _field(1, "com.microsoft") + _field(2, 1))
        return b"".join([_field(1, 8), opsets, _field(7, graph)])

    def session(self, inputs: Sequence[tuple], outputs: Sequence[tuple], threads: int | None):
        """A CPU session for the model (clear error when this onnxruntime lacks an operator)."""
        import onnxruntime as ort

        model = self.model(inputs, outputs)
        try:
            return ort.InferenceSession(model, sess_options=session_options(threads),
                                        providers=["CPUExecutionProvider"])
        except Exception as exc:  # e.g. an onnxruntime build without the com.microsoft contrib ops
            raise BadArtifactError(f"onnxruntime cannot run the {self.name} graph ({exc})") from exc


def quantize_rows(M: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """``M`` (n × d) as int8 with one scale per row: ``(bt (d × n) int8, scale (n,) float32)``."""
    n, d = M.shape
    amax = np.abs(M).max(axis=1).astype(np.float32) if n else np.zeros(0, np.float32)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    bt = np.empty((d, n), dtype=np.int8)
    for s in range(0, n, chunk):  # quantise in blocks: no full-size float temporary
        blk = np.asarray(M[s:s + chunk], dtype=np.float32) / scale[s:s + chunk, None]
        bt[:, s:s + chunk] = np.clip(np.rint(blk), -127, 127).astype(np.int8).T
    return bt, scale


def int8_threads(nbytes: int, threads: int | None, parallel_bytes: int = 16 << 20) -> int | None:
    """Intra-op threads for an int8 pass over ``nbytes``: one below ``parallel_bytes`` (splitting a
    pass of a few MB costs more than it saves, and idle pool threads spinning next to the encoder's
    slow both down), else ``threads`` / ``$ROUTEKIT_THREADS`` / onnxruntime's default."""
    return 1 if nbytes < parallel_bytes else resolve_threads(threads)


class Int8InnerProduct:
    """``Q @ M.T`` for a fixed float matrix ``M`` (n × d) held as int8 with one scale per row.

    A quarter of float32's memory traffic, so a memory-bound similarity pass over every training
    prompt runs several times faster.  The error is that of 8-bit rounding of both sides (for unit
    vectors: a few 1e-4 in a cosine; callers measure what it does to their output).

    Matrices under ``parallel_bytes`` (int8) run on one thread (:func:`int8_threads`).
    """

    def __init__(self, matrix: np.ndarray, *, threads: int | None = None, chunk: int = 8192,
                 parallel_bytes: int = 16 << 20):
        M = np.asarray(matrix)
        if M.ndim != 2 or M.shape[0] == 0 or M.shape[1] == 0:
            raise BadArtifactError(f"int8 inner product needs a non-empty 2-D matrix, got shape {M.shape}")
        n, d = M.shape
        self.n, self.dim = n, d
        if n * self.dim > INT8_MAX_BYTES:
            raise BadInputError(f"a {n} × {self.dim} int8 matrix does not fit one ONNX model (2 GiB limit)")
        g = OnnxGraph("int8 inner product")
        g.int8_matmul("q", *quantize_rows(M, chunk), out="sims")
        self.session = g.session([("q", ["batch", d])], [("sims", ["batch", n])],
                                 int8_threads(n * d, threads, parallel_bytes))
        self.rows = batch_rows(n)

    def __call__(self, Q: np.ndarray) -> np.ndarray:
        """Inner products ``(B, n)`` float32 of queries ``(B, d)`` with every row of the matrix.

        Every query is quantised with its own scale, so its result does not depend on its
        batch-mates; batches run in chunks of a few MB of output."""
        Q = np.ascontiguousarray(np.atleast_2d(Q), dtype=np.float32)
        if Q.ndim != 2 or Q.shape[1] != self.dim:
            raise BadInputError(f"queries must be (n × {self.dim}), got shape {Q.shape}")
        return run_in_chunks(self.session, ["sims"], Q, self.rows)[0]


def batch_rows(n_cols: int, out_bytes: int = 8 << 20) -> int:
    """Queries per run of a graph whose output is ``(B, n_cols)`` float32: about ``out_bytes``."""
    return max(1, out_bytes // (4 * max(n_cols, 1)))


def run_in_chunks(session, outputs: list[str], Q: np.ndarray, rows: int) -> list[np.ndarray]:
    """``session.run(outputs, {"q": Q})`` for a graph whose rows are independent, ``rows`` queries
    per run (bounds the memory of its ``(B, n)`` intermediates)."""
    Q = np.ascontiguousarray(Q, dtype=np.float32)
    if Q.shape[0] <= rows:
        return session.run(outputs, {"q": Q})
    parts = [session.run(outputs, {"q": Q[i:i + rows]}) for i in range(0, Q.shape[0], rows)]
    return [np.concatenate(p) for p in zip(*parts)]
