"""Small ONNX graphs written as protobuf bytes, so the runtime needs no ``onnx`` package:
:class:`OnnxGraph` (constants, nodes, typed inputs/outputs) and the int8 inner product built with it.

Integer products round each query row to int8 with its own scale inside the graph and run
``MatMulInteger`` (a u8×s8 GEMM, VNNI where the CPU has it) against a constant int8 matrix, which
onnxruntime pre-packs once at load time.  Tests check the bytes with ``onnx.checker``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from routekit.encoders.session import resolve_threads, session_options
from routekit.errors import BadArtifactError, BadInputError

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
