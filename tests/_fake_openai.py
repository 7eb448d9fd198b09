"""A tiny OpenAI-compatible embeddings server on 127.0.0.1 for tests (real HTTP, no network).

``POST .../embeddings`` answers with a deterministic unit vector per input text (seeded by the
text's sha256), records every request, and can be told to fail: ``server.failures`` is a queue of
``(status, headers)`` answers, or ``("sleep", seconds)`` to stall one request; texts longer than
``server.max_chars`` are refused with a 400 "maximum context length" error, as OpenAI does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest


class FakeEmbeddingsServer:
    def __init__(self, dim: int = 8):
        self.dim = dim
        self.requests: list[dict] = []
        self.failures: list[tuple] = []
        self.max_chars: int | None = None
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _send(self, status, payload, headers=None):
                body = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                    pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                    failure = server.failures.pop(0) if server.failures else None
                if failure is not None:
                    if failure[0] == "sleep":
                        time.sleep(failure[1])
                    else:
                        status, headers = failure[0], (failure[1] if len(failure) > 1 else {})
                        return self._send(status, {"error": {"message": f"fake failure {status}",
                                                             "type": "fake", "code": status}}, headers)
                if not self.path.split("?")[0].rstrip("/").endswith("/embeddings"):
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                texts = body.get("input")
                if isinstance(texts, str):
                    texts = [texts]
                if not isinstance(texts, list) or not texts or any(not isinstance(t, str) or t == "" for t in texts):
                    return self._send(400, {"error": {"message": "'input' must be non-empty strings",
                                                      "type": "invalid_request_error"}})
                if server.max_chars is not None and any(len(t) > server.max_chars for t in texts):
                    return self._send(400, {"error": {
                        "message": "This model's maximum context length is 8192 tokens, however you requested "
                                   "more tokens. Please reduce your prompt.", "type": "invalid_request_error"}})
                dim = int(body.get("dimensions") or server.dim)
                data = []
                for i, t in enumerate(texts):
                    vec = server.vector(t, dim)
                    emb = (base64.b64encode(vec.tobytes()).decode() if body.get("encoding_format") == "base64"
                           else [float(x) for x in vec])
                    data.append({"object": "embedding", "index": i, "embedding": emb})
                data.reverse()  # the API does not promise order; clients must use "index"
                self._send(200, {"object": "list", "data": data, "model": body.get("model"),
                                 "usage": {"prompt_tokens": len(texts), "total_tokens": len(texts)}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @staticmethod
    def vector(text: str, dim: int) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(dim)
        return (v / np.linalg.norm(v)).astype(np.float32)

    def inputs(self) -> list[list[str]]:
        return [r["body"].get("input") for r in self.requests]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_openai():
    server = FakeEmbeddingsServer()
    try:
        yield server
    finally:
        server.stop()
