"""Real HTTP helpers for the server tests: uvicorn on 127.0.0.1 in a thread, and a fake
OpenAI-compatible chat upstream (FastAPI) whose path names how it behaves."""

import asyncio
import json
import socket
import threading
import time
from contextlib import contextmanager


def _free_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    return s


@contextmanager
def running(app, config=None):
    """Serve an ASGI app with uvicorn on 127.0.0.1 in a thread; yields its base URL.  With a
    routekit ``ServerConfig``, uses the server's own uvicorn settings (routekit.server.app.uvicorn_config)."""
    import uvicorn

    sock = _free_socket()
    if config is not None:
        from routekit.server.app import uvicorn_config

        ucfg = uvicorn_config(app, config, log_level="warning", lifespan="on")
    else:
        ucfg = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(ucfg)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if not thread.is_alive() or time.time() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _fake_upstream_app(received: list):
    """An OpenAI-compatible fake: /<name>/v1/chat/completions answers '<name> says: <last user text>'.

    ``slow`` sleeps 3 s before answering; ``broken`` answers HTTP 500; ``midfail`` breaks mid-stream;
    ``flaky*`` answers 503 to its first request only; ``plain`` answers 200 with a text/plain body.
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI()

    @app.post("/{name}/v1/chat/completions")
    async def chat(name: str, request: Request):
        body = await request.json()
        received.append((name, body))
        if name == "slow":
            await asyncio.sleep(3)
        if name.startswith("flaky"):  # the first request on each flaky path fails with 503
            if sum(1 for n, _ in received if n == name) == 1:
                return JSONResponse({"error": {"message": "flaky once"}}, status_code=503)
        if name == "plain":  # 200 with a body that is not JSON
            from fastapi.responses import PlainTextResponse

            return PlainTextResponse("all good, but not JSON")
        if name == "broken":
            return JSONResponse({"error": {"message": "the fake upstream broke", "type": "server_error"}},
                                status_code=500)
        text = f"{name} says: {body['messages'][-1]['content']}"
        base = {"id": "cmpl-1", "created": 1, "model": body["model"]}
        if not body.get("stream"):
            return {**base, "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}}

        async def events():
            for i, piece in enumerate(text.split(" ")):
                delta = {"content": (" " if i else "") + piece}
                if i == 0:
                    delta["role"] = "assistant"
                chunk = {**base, "object": "chat.completion.chunk",
                         "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                yield f"data: {json.dumps(chunk)}\n\n"
                if name == "midfail" and i == 1:
                    raise RuntimeError("connection dropped")
            end = {**base, "object": "chat.completion.chunk",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            yield f"data: {json.dumps(end)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def stop_process(proc, timeout: float = 10) -> None:
    """Stop a server process a test started: SIGTERM, then SIGKILL if it has not exited in ``timeout`` s."""
    import subprocess

    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a server process a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc, timeout: float, poll: float = 0.05) -> bool:
    """Wait until 127.0.0.1:``port`` accepts a connection: True; False when ``proc`` exits first or
    ``timeout`` seconds pass (the caller says why, with the process's output)."""
    import contextlib

    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(poll)
