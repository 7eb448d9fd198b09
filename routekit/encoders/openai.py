"""Prompt embeddings from the OpenAI embeddings API or any OpenAI-compatible server.

Install with ``pip install 'routekit[openai]'``.  Importing this module imports nothing heavy: the
``openai`` client is created on the first call, so a router whose artifact uses remote embeddings
loads without the package or an API key and fails, clearly, only when it has to embed something.

    >>> emb = OpenAIEmbedder()                       # text-embedding-3-small, key from $OPENAI_API_KEY
    >>> emb(["Prove that there are infinitely many primes."]).shape     # doctest: +SKIP
    (1, 1536)

* ``base_url`` points the client at another OpenAI-compatible server (vLLM, llama.cpp, Ollama,
  LiteLLM, or an Azure OpenAI resource's ``/openai/v1/`` endpoint where it offers one); left
  ``None``, the client's own default applies (``$OPENAI_BASE_URL`` or api.openai.com).  With
  ``api_version`` the ``AzureOpenAI`` client is used instead (``base_url`` is then the Azure
  endpoint, e.g. ``https://<resource>.openai.azure.com``, and ``model`` the deployment name).
* The key is read from the environment variable named by ``api_key_env`` (default
  ``OPENAI_API_KEY``) unless ``api_key`` is given.  Servers that need no key accept any value.
* Texts are sent in batches of ``batch_size``; rate limits (429), server errors (5xx), timeouts
  and dropped connections are retried by the ``openai`` SDK itself (``max_retries``; exponential
  backoff with jitter, honouring ``Retry-After``).  A text the server rejects as too long is cut in
  half until it fits.
* Vectors are cached on disk in SQLite (``$ROUTEKIT_CACHE`` or ``~/.cache/routekit``,
  file ``openai-embeddings.sqlite3``), keyed by sha256 of (model, dimensions, text), bounded by
  ``cache_max_bytes`` with least-recently-used eviction.  ``cache=False`` turns it off.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from routekit.artifact import cache_dir
from routekit.errors import EmbeddingServiceError, NoAPIKeyError, require

DEFAULT_MODEL = "text-embedding-3-small"
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
#: Output sizes of OpenAI's own embedding models (used when no ``dim`` is given).
KNOWN_DIMS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}
CACHE_FILE = "openai-embeddings.sqlite3"
DEFAULT_CACHE_MAX_BYTES = 512 * 1024 * 1024

_TOO_LONG_HINTS = ("context length", "too long", "maximum", "token", "exceeds")




def cache_root() -> Path:
    """routekit's user cache folder (see :func:`routekit.artifact.cache_dir`)."""
    return cache_dir()


def cache_key(model: str, dimensions: int | None, text: str) -> str:
    return hashlib.sha256(json.dumps([model, dimensions, text], ensure_ascii=True).encode("ascii")).hexdigest()


class EmbeddingCache:
    """A size-bounded on-disk vector store (SQLite), safe across threads and processes.

    Each row holds one float32 vector and the time it was last used; when the stored vectors pass
    ``max_bytes`` the least recently used are deleted until 90 % of the bound is left.
    """

    def __init__(self, path: str | os.PathLike, *, max_bytes: int = DEFAULT_CACHE_MAX_BYTES):
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # a cache: losing the last writes on power loss is fine
        except sqlite3.DatabaseError:  # some network filesystems refuse WAL; the default journal works
            pass
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vec BLOB NOT NULL, used REAL NOT NULL)")
        self._db.execute("CREATE INDEX IF NOT EXISTS vectors_used ON vectors(used)")

    def get_many(self, keys: Sequence[str], *, dim: int | None = None) -> dict[str, np.ndarray]:
        """Cached vectors for ``keys`` (missing keys, and vectors of another length, are left out)."""
        found: dict[str, np.ndarray] = {}
        keys = list(dict.fromkeys(keys))
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                rows = self._db.execute(
                    f"SELECT key, vec FROM vectors WHERE key IN ({','.join('?' * len(chunk))})", chunk).fetchall()
                for key, blob in rows:
                    vec = np.frombuffer(blob, dtype=np.float32)
                    if dim is None or vec.shape[0] == dim:
                        found[key] = vec
            if found:
                now = time.time()
                try:
                    self._db.execute("BEGIN")
                    self._db.executemany("UPDATE vectors SET used = ? WHERE key = ?", [(now, k) for k in found])
                    self._db.execute("COMMIT")
                except sqlite3.OperationalError:  # busy for longer than the timeout: skip the LRU touch
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
        return found

    def put_many(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        now = time.time()
        rows = [(k, np.ascontiguousarray(v, dtype=np.float32).tobytes(), now) for k, v in items]
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO vectors (key, vec, used) VALUES (?, ?, ?)", rows)
                self._evict()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _evict(self) -> None:
        n, total = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(vec)), 0) FROM vectors").fetchone()
        if total <= self.max_bytes or n == 0:
            return
        per_row = total / n
        drop = min(n, int(np.ceil((total - 0.9 * self.max_bytes) / per_row)))
        self._db.execute("DELETE FROM vectors WHERE key IN (SELECT key FROM vectors ORDER BY used ASC LIMIT ?)", (drop,))

    def stats(self) -> dict[str, int]:
        with self._lock:
            n, total = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(vec)), 0) FROM vectors").fetchone()
        return {"entries": int(n), "bytes": int(total), "max_bytes": self.max_bytes}

    def clear(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM vectors")

    def close(self) -> None:
        with self._lock:
            self._db.close()


class OpenAIEmbedder:
    """Texts -> embeddings (n × dim float32) through an OpenAI-compatible embeddings endpoint.

    Has the call signature of :class:`routekit.encoders.Encoder`, so routers use it unchanged.
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, dim: int | None = None, dimensions: int | None = None,
                 base_url: str | None = None, api_key: str | None = None,
                 api_key_env: str | None = DEFAULT_API_KEY_ENV, api_version: str | None = None,
                 batch_size: int = 128, max_retries: int = 6,
                 timeout: float = 60.0, cache: bool | str | os.PathLike | EmbeddingCache = True,
                 cache_max_bytes: int = DEFAULT_CACHE_MAX_BYTES, default_headers: Mapping[str, str] | None = None):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model = model
        self.dimensions = int(dimensions) if dimensions else None  # sent to the API only when set
        self.dim = int(dim) if dim else (self.dimensions or KNOWN_DIMS.get(model))
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.api_version = api_version
        self.batch_size = int(batch_size)
        self.max_retries = int(max_retries)
        self.timeout = float(timeout)
        self.default_headers = dict(default_headers or {})
        self._api_key = api_key
        self._cache_arg = cache
        self._cache_max_bytes = int(cache_max_bytes)
        self._cache: EmbeddingCache | None = cache if isinstance(cache, EmbeddingCache) else None
        self._cache_ready = isinstance(cache, EmbeddingCache) or not cache  # False or None: no cache
        self._client = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self.requests = 0  #: embeddings calls made (each may be several HTTP attempts: SDK retries)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], **overrides) -> "OpenAIEmbedder":
        """Build from an artifact manifest's encoder section (``{"kind": "openai", "model": ..., ...}``)."""
        kw = {k: spec[k] for k in ("dim", "dimensions", "base_url", "api_key_env", "api_version", "batch_size")
              if spec.get(k) is not None}
        kw.update(overrides)
        return cls(spec.get("model") or DEFAULT_MODEL, **kw)

    def spec(self) -> dict[str, Any]:
        """The manifest encoder section describing this embedder (no secrets)."""
        out = {"kind": "openai", "model": self.model, "dim": self.dim, "base_url": self.base_url,
               "api_key_env": self.api_key_env}
        if self.dimensions:
            out["dimensions"] = self.dimensions
        if self.api_version:
            out["api_version"] = self.api_version
        return out

    def __repr__(self) -> str:
        where = self.base_url or "default endpoint"
        return f"<OpenAIEmbedder {self.model!r} dim={self.dim} {where}>"

    # -- lazily created resources ------------------------------------------------------------
    def _after_fork(self) -> None:
        """A forked child must not reuse the parent's SQLite connection or HTTP connections."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._client = None
            if self._cache is not None and not isinstance(self._cache_arg, EmbeddingCache):
                self._cache, self._cache_ready = None, False

    @property
    def cache(self) -> EmbeddingCache | None:
        self._after_fork()
        if not self._cache_ready:
            with self._lock:
                if not self._cache_ready:
                    arg = self._cache_arg
                    path = cache_root() / CACHE_FILE if arg is True else Path(arg)
                    try:
                        self._cache = EmbeddingCache(path, max_bytes=self._cache_max_bytes)
                    except (OSError, sqlite3.Error) as exc:
                        warnings.warn(f"routekit: embedding cache disabled, cannot open {path} ({exc})", stacklevel=2)
                        self._cache = None
                    self._cache_ready = True
        return self._cache

    def _key(self) -> str:
        key = self._api_key or (os.environ.get(self.api_key_env) if self.api_key_env else None)
        if not key:
            where = f"${self.api_key_env}" if self.api_key_env else "api_key="
            server = f" for {self.base_url}" if self.base_url else ""
            raise NoAPIKeyError(
                f"no API key for the OpenAI embedder ({self.model}{server}): set {where} "
                "(or pass api_key=...). This router embeds prompts with a remote embeddings API; "
                "for a local OpenAI-compatible server that needs no key, set the variable to any value."
            )
        return key

    def client(self):
        """The ``openai`` client, created on first use."""
        self._after_fork()
        if self._client is None:
            with self._lock:
                if self._client is None:
                    key = self._key()
                    openai = require("openai", "openai", "remote (OpenAI) embeddings")
                    common = dict(api_key=key, max_retries=self.max_retries, timeout=self.timeout,
                                  default_headers=self.default_headers or None)
                    if self.api_version:
                        self._client = openai.AzureOpenAI(azure_endpoint=self.base_url, api_version=self.api_version,
                                                          **common)
                    else:
                        self._client = openai.OpenAI(base_url=self.base_url, **common)
        return self._client

    # -- embedding ---------------------------------------------------------------------------
    @staticmethod
    def _clean(text: str) -> str:
        if not text.strip():
            return " "  # the API rejects empty input
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates
            text = text.encode("utf-8", "replace").decode("utf-8")
        return text

    def __call__(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        """Embeddings of ``texts`` as an (n × dim) float32 array; cached texts cost no request."""
        texts = [self._clean(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        keys = [cache_key(self.model, self.dimensions, t) for t in texts]
        cache = self.cache
        found = cache.get_many(keys, dim=self.dim) if cache is not None else {}
        key_of = dict(zip(texts, keys))
        todo = list(dict.fromkeys(t for t, k in key_of.items() if k not in found))
        bs = int(batch_size or self.batch_size)
        for start in range(0, len(todo), bs):
            chunk = todo[start:start + bs]
            vecs = self._embed(chunk)
            new = [(key_of[t], v) for t, v in zip(chunk, vecs)]
            found.update(new)
            if cache is not None:
                cache.put_many(new)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)

    def _embed(self, texts: list[str]) -> list[np.ndarray]:
        """One request for ``texts``; on a 400, texts are retried one by one (long ones shortened)."""
        self.client()  # no key: NoAPIKeyError before anything is imported
        openai = require("openai", "openai", "remote (OpenAI) embeddings")
        try:
            return self._request(texts)
        except openai.BadRequestError as exc:
            if len(texts) > 1:
                return [v for t in texts for v in self._embed([t])]
            text, msg = texts[0], str(exc).lower()
            if len(text) > 256 and any(h in msg for h in _TOO_LONG_HINTS):
                return self._embed([text[: len(text) // 2]])
            raise EmbeddingServiceError(f"embeddings request rejected by the server: {exc}") from exc

    def _request(self, texts: list[str]) -> list[np.ndarray]:
        openai = require("openai", "openai", "remote (OpenAI) embeddings")
        client = self.client()
        extra = {"dimensions": self.dimensions} if self.dimensions else {}
        self.requests += 1
        try:  # the SDK has already retried 408/409/429/5xx, timeouts and dropped connections
            resp = client.embeddings.create(model=self.model, input=texts, encoding_format="float", **extra)
        except (openai.APITimeoutError, openai.APIConnectionError) as exc:
            raise EmbeddingServiceError(
                f"embeddings request failed after {self.max_retries + 1} attempts: {exc}") from exc
        except openai.APIStatusError as exc:
            if exc.status_code == 400:
                raise
            if exc.status_code == 401:
                raise EmbeddingServiceError(
                    f"the embeddings server refused the API key from ${self.api_key_env} (401): {exc}") from exc
            tries = f" after {self.max_retries + 1} attempts" if exc.status_code in (408, 409, 429) or \
                exc.status_code >= 500 else ""
            raise EmbeddingServiceError(f"embeddings request failed ({exc.status_code}){tries}: {exc}") from exc
        data = sorted(resp.data, key=lambda d: d.index)
        if len(data) != len(texts):
            raise EmbeddingServiceError(f"the server returned {len(data)} embeddings for {len(texts)} texts")
        out = [np.asarray(d.embedding, dtype=np.float32) for d in data]
        if self.dim is None:
            self.dim = int(out[0].shape[-1])
        if any(v.shape != (self.dim,) for v in out):
            raise EmbeddingServiceError(
                f"{self.model} returned {out[0].shape[-1]}-d embeddings; {self.dim}-d are expected "
                "(wrong model or server for this artifact?)")
        return out

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # pragma: no cover - best effort
                pass
            self._client = None
