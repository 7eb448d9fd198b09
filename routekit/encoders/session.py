"""ONNX Runtime sessions: providers, thread settings and one shared ``InferenceSession`` per
(model file hash, providers, threads), so several routers that ship the same encoder run it once.

The text encoders built on them are in :mod:`routekit.encoders`; the small int8 graphs routekit
writes itself in :mod:`routekit.encoders.onnx_graph`.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Sequence

from routekit.errors import BadArtifactError, BadInputError

_SESSIONS: dict[tuple, object] = {}
_LOCK = threading.Lock()


def default_providers() -> list[str]:
    """CUDA when the installed onnxruntime offers it (the ``routekit-gpu`` distribution), else CPU."""
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
