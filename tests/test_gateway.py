"""Gateway behaviour of the routing server: fallbacks, SDK retries, the decision log and
`routekit report`, N-model `router-<name>-auto`, and hardening (strict JSON, non-JSON upstream
bodies, slow-loris, one-line CLI errors).  Real uvicorn servers on 127.0.0.1 only."""

import json
import socket
import time

import pytest
from _bench import slowloris
from _fake_chat import _free_socket, running

import routekit
from routekit.server.wire import Upstream


def _cfg(url, strong="strong", weak="weak", **kw):
    from routekit.server.app import ServerConfig

    kw.setdefault("routers", {"random": "random"})
    kw.setdefault("preload", False)
    kw.setdefault("prices", {"big-model": {"input": 10.0, "output": 30.0}, "small-model": {"input": 1.0, "output": 2.0}})
    return ServerConfig(strong=Upstream("big-model", f"{url}/{strong}/v1", api_key="k"),
                        weak=Upstream("small-model", f"{url}/{weak}/v1", api_key="k"), **kw)


def _user(text):
    return [{"role": "user", "content": text}]


def _samples(text):
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, *sorted(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples}


def _chat(httpx_client, model, text="hello there", **kw):
    return httpx_client.post("/v1/chat/completions", json={"model": model, "messages": _user(text), **kw})


# -- fallbacks and retries -----------------------------------------------------------------------
def test_fallback_on_5xx_connection_error_and_non_json(upstream):
    import httpx

    from routekit.server.app import create_app

    url, _ = upstream
    dead = _free_socket()  # bound, never listening: connection refused
    try:
        cases = [(_cfg(url, strong="broken"), "http_500"), (_cfg(url, strong="plain"), "not_json")]
        dead_cfg = _cfg(url)
        dead_cfg = dead_cfg.model_copy(update={"strong": Upstream("big-model", f"http://127.0.0.1:{dead.getsockname()[1]}/v1")})
        cases.append((dead_cfg, "connection"))
        for cfg, reason in cases:
            with running(create_app(cfg)) as srv, httpx.Client(base_url=srv, timeout=30) as c:
                r = _chat(c, "router-random-p100")
                assert r.status_code == 200, r.text
                body = r.json()
                assert body["choices"][0]["message"]["content"] == "weak says: hello there"
                assert body["routekit"]["route"] == "strong"  # what the router decided
                assert body["routekit"]["upstream"] == "weak" and body["routekit"]["model"] == "small-model"
                assert body["routekit"]["fallback"] == {"from": "strong", "to": "weak", "reason": reason}
                assert r.headers["x-routekit-fallback"] == "strong->weak"
                ok = _chat(c, "router-random-p0")  # the weak side works: no fallback
                assert ok.json()["routekit"]["fallback"] is None and "x-routekit-fallback" not in ok.headers
                m = _samples(c.get("/metrics").text)
                assert m["routekit_fallbacks_total", ("from_upstream", "strong"), ("reason", reason),
                         ("to_upstream", "weak")] == 1
    finally:
        dead.close()


def test_no_fallback_when_off_and_non_json_is_502(upstream):
    import httpx

    from routekit.server.app import create_app

    url, _ = upstream
    with running(create_app(_cfg(url, strong="plain", fallback=False))) as srv, httpx.Client(base_url=srv) as c:
        r = _chat(c, "router-random-p100")
        assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_not_json"
        assert "not a JSON" in r.json()["error"]["message"]
        # a 4xx from the upstream is the client's problem: passed on, never a fallback
    with running(create_app(_cfg(url, strong="no/such"))) as srv, httpx.Client(base_url=srv) as c:
        r = _chat(c, "router-random-p100")
        assert r.status_code == 404 and "x-routekit-fallback" not in r.headers


def test_streaming_falls_back_only_before_the_first_chunk(upstream):
    import httpx

    from routekit.server.app import create_app

    url, _ = upstream
    with running(create_app(_cfg(url, strong="broken", weak="midfail"))) as srv, httpx.Client(base_url=srv) as c:
        r = _chat(c, "router-random-p100", "one two three", stream=True)  # strong fails before any chunk
        assert r.status_code == 200 and r.headers["x-routekit-fallback"] == "strong->weak"
        events = [json.loads(e[6:]) for e in r.text.splitlines() if e.startswith("data: {")]
        assert events[0]["routekit"]["fallback"]["from"] == "strong"
        # the weak side (midfail) breaks after two chunks: the stream ends in-band, nothing falls back
        r = _chat(c, "router-random-p0", "one two three", stream=True)
        lines = [e[6:] for e in r.text.splitlines() if e.startswith("data: ")]
        assert lines[-1] == "[DONE]" and "error" in json.loads(lines[-2])
        assert json.loads(lines[0])["choices"][0]["delta"]["content"] == "midfail"  # its first chunk was relayed
        m = _samples(c.get("/metrics").text)
        assert sum(v for k, v in m.items() if k[0] == "routekit_fallbacks_total") == 1


def test_sdk_max_retries_per_upstream(upstream):
    import httpx

    from routekit.server.app import ServerConfig, create_app

    url, received = upstream
    cfg = ServerConfig(routers={"random": "random"}, preload=False, fallback=False,
                       strong=Upstream("big-model", f"{url}/flaky1/v1", api_key="k", max_retries=1),
                       weak=Upstream("small-model", f"{url}/flaky2/v1", api_key="k"))  # server default: 0
    with running(create_app(cfg)) as srv, httpx.Client(base_url=srv, timeout=30) as c:
        assert _chat(c, "router-random-p100").status_code == 200  # 503, then the SDK's retry succeeds
        assert sum(1 for n, _ in received if n == "flaky1") == 2
        assert _chat(c, "router-random-p0").status_code == 502  # no retry: the 503 is final
        assert sum(1 for n, _ in received if n == "flaky2") == 1


# -- decision log + report -------------------------------------------------------------------------
def test_decision_log_and_report(upstream, tmp_path, capsys):
    import httpx

    from routekit import cli
    from routekit.server.app import create_app

    url, _ = upstream
    path = tmp_path / "decisions.jsonl"
    secret = "my secret prompt text that must not be logged"
    with running(create_app(_cfg(url, strong="broken", decision_log=str(path)))) as srv, \
            httpx.Client(base_url=srv) as c:
        assert _chat(c, "router-random-p0", secret).status_code == 200
        assert _chat(c, "router-random-p0", secret, stream=True).status_code == 200
        assert _chat(c, "router-random-p100", secret).status_code == 200  # falls back to weak
        assert c.post("/v1/route", json={"prompt": secret, "threshold": 0.0}).status_code == 200
        assert _chat(c, "router-nope", secret).status_code == 404  # never routed: not logged
        r = _chat(c, "router-random-p0", secret, stream=False)
        rid = r.headers["x-request-id"]
    text = path.read_text()
    assert secret not in text and "prompt" not in json.loads(text.splitlines()[0])
    recs = [json.loads(line) for line in text.splitlines()]
    assert len(recs) == 5 and recs[-1]["request_id"] == rid
    first = recs[0]
    for key in ("ts", "endpoint", "router", "win_rate", "threshold", "route", "model", "fallback", "status",
                "upstream_status", "route_ms", "upstream_ms", "prompt_tokens", "completion_tokens", "cost_usd"):
        assert key in first, key
    assert first["route"] == "weak" and first["model"] == "small-model" and first["prompt_tokens"] == 10
    assert first["cost_usd"] == pytest.approx((10 * 1 + 4 * 2) / 1e6)
    assert first["strong_cost_usd"] == pytest.approx((10 * 10 + 4 * 30) / 1e6)
    assert recs[1]["stream"] is True and recs[1]["upstream_ms"] > 0
    assert recs[2]["fallback"] == {"from": "strong", "to": "weak", "reason": "http_500"} and recs[2]["route"] == "strong"

    assert cli.main(["report", str(path), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["requests"] == 5 and s["routes"] == {"weak": 3, "strong": 2} and s["fallbacks"] == 1
    # three chats were priced (the streamed one reports no usage): 3 x weak price vs 3 x strong
    assert s["priced_requests"] == 3 and recs[1]["cost_usd"] is None
    assert s["cost_usd"] == pytest.approx(3 * (10 * 1 + 4 * 2) / 1e6)
    assert s["all_strong_cost_usd"] == pytest.approx(3 * (10 * 10 + 4 * 30) / 1e6)
    assert s["route_ms"]["n"] == 5 and s["route_ms"]["p50"] <= s["route_ms"]["p99"]
    assert cli.main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "route weak: 3 (60.0 %)" in out and "saved" in out

    # --log-prompts: the text, cut
    path2 = tmp_path / "with-prompts.jsonl"
    with running(create_app(_cfg(url, decision_log=str(path2), log_prompts=True, log_prompt_chars=9))) as srv, \
            httpx.Client(base_url=srv) as c:
        _chat(c, "router-random-p0", secret)
    rec = json.loads(path2.read_text())
    assert rec["prompt"] == secret[:9] and rec["prompt_chars"] == len(secret)


def test_report_errors(tmp_path, capsys):
    from routekit import cli

    assert cli.main(["report", str(tmp_path / "missing.jsonl")]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"route": "weak"}\nnot json\n')
    assert cli.main(["report", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("routekit: error:") for e in err) and "bad.jsonl:2" in err[1]


# -- hardening -------------------------------------------------------------------------------------
@pytest.mark.parametrize("body,fragment", [
    (b"[" * 100_000 + b"]" * 100_000, "deeper"),          # RecursionError in json before
    (b'{"prompt": "a", "x": ' + b"[" * 40 + b"]" * 40 + b"}", "deeper"),
    (b'{"prompt": "a", "threshold": 1' + b"0" * 400 + b"}", "out of range"),  # OverflowError before
    (b'{"prompt": "a", "threshold": 1e400}', "out of range"),
    (b'{"prompt": "a", "threshold": NaN}', "NaN"),
])
def test_strict_json_bodies_are_400(upstream, body, fragment):
    import httpx

    from routekit.server.app import create_app

    with running(create_app(_cfg(upstream[0]))) as srv:
        for path in ("/v1/route", "/v1/chat/completions"):
            r = httpx.post(srv + path, content=body, headers={"content-type": "application/json"})
            assert r.status_code == 400, r.text
            assert fragment in r.json()["error"]["message"]


def _slowloris(host, port, n):
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(b"POST /v1/route HTTP/1.1\r\nHost: x\r\nContent-Le")  # never finished
        socks.append(s)
    return socks


def test_slowloris_connections_are_closed_and_capped(upstream):
    """200 stalled partial requests against a cap of 50 connections and a 0.5 s read timeout:
    real requests are still answered, and every stalled socket is closed by the server."""
    import httpx

    from routekit.server.app import create_app

    cfg = _cfg(upstream[0], read_timeout=0.5, max_connections=50)
    with running(create_app(cfg), cfg) as srv:
        host, port = srv.removeprefix("http://").split(":")
        socks = _slowloris(host, int(port), 200)
        try:
            t0 = time.perf_counter()
            with httpx.Client(base_url=srv, timeout=5) as c:
                for i in range(8):
                    assert c.post("/v1/route", json={"prompt": f"p{i}"}).status_code == 200
            assert time.perf_counter() - t0 < 4.0
            assert slowloris.closed_by_server(socks, 3.0) == len(socks)
            # a kept-alive client that stalls mid-request is cut too; a complete one is not
            s = socket.create_connection((host, int(port)))
            s.sendall(b'POST /v1/route HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
                      b'Content-Length: 15\r\n\r\n{"prompt": "a"}')
            s.settimeout(3)
            assert b"200 OK" in s.recv(4096)
            s.sendall(b"POST /v1/route HTTP/1.1\r\nHo")
            assert slowloris.closed_by_server([s], 3.0) == 1
        finally:
            for s in socks:
                s.close()


def test_serve_cli_errors_are_one_line(tmp_path, capsys, server_deps):
    from routekit import cli

    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text('max_body_bytes = -5\nnope = 1\n')
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    for argv, fragment in ((["serve", "--config", "/nonexistent.toml"], "does not exist"),
                           (["serve", "--router", "bad=/nonexistent"], "/nonexistent"),
                           (["serve", "--config", str(bad_toml)], "max_body_bytes"),
                           (["serve", "--config", str(deep)], "not valid JSON"),
                           (["serve", "--router", "random", "--decision-log", "/nonexistent/dir/x.jsonl"], "does not exist"),
                           (["serve", "--router", "random", "--upstream-max-retries", "-1"], "upstream_max_retries")):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("routekit: error:") and fragment in err[0], (argv, err)


def test_config_is_validated(server_deps):
    from routekit.errors import BadInputError
    from routekit.server.app import ServerConfig

    with pytest.raises(BadInputError, match="unknown server config key"):
        ServerConfig.from_dict({"routers": ["random"], "max_bdy_bytes": 5})
    with pytest.raises(BadInputError, match="upstream_timeout"):
        ServerConfig(upstream_timeout=0)
    with pytest.raises(BadInputError, match="prices"):
        ServerConfig(prices={"m": {"input": float("inf")}})
    with pytest.raises(BadInputError, match="turns"):
        ServerConfig(turns="all")
    cfg = ServerConfig.from_dict({"strong": "gpt-4o", "upstreams": {"mid": {"model": "m", "router_model": "claude-v2"}}})
    assert cfg.strong == Upstream("gpt-4o") and cfg.upstreams["mid"].router_model == "claude-v2"
    assert list(cfg.all_upstreams()) == ["strong", "mid"]


# -- N-model: router-<name>-auto ------------------------------------------------------------------
def test_auto_picks_among_configured_upstreams(upstream):
    import httpx

    from routekit.server.app import ServerConfig, create_app

    url, received = upstream
    mf = routekit.load("mf")
    prices = {"big-model": {"input": 10.0, "output": 30.0}, "small-model": {"input": 0.6, "output": 0.6},
              "mid-model": {"input": 8.0, "output": 24.0}, "tiny-model": {"input": 0.1, "output": 0.1}}
    ups = {"mid": Upstream("mid-model", f"{url}/mid/v1", api_key="k", router_model="claude-v2"),
           "tiny": Upstream("tiny-model", f"{url}/tiny/v1", api_key="k", router_model="mistral-7b-instruct"),
           "other": Upstream("not-in-the-table", f"{url}/other/v1", api_key="k")}
    names = {"strong": "gpt-4-1106-preview", "weak": "mixtral-8x7b-instruct-v0.1", "mid": "claude-v2",
             "tiny": "mistral-7b-instruct"}
    blended = {"strong": 20.0, "weak": 0.6, "mid": 16.0, "tiny": 0.1}
    chosen = set()
    for wtp in (None, 40.0, 0.0):
        cfg = ServerConfig(routers={"mf": "mf"}, preload=False, prices=prices, willingness_to_pay=wtp,
                           strong=Upstream("big-model", f"{url}/strong/v1", api_key="k", router_model="gpt-4-1106-preview"),
                           weak=Upstream("small-model", f"{url}/weak/v1", api_key="k",
                                         router_model="mixtral-8x7b-instruct-v0.1"),
                           upstreams=ups)
        with running(create_app(cfg)) as srv, httpx.Client(base_url=srv, timeout=30) as c:
            for p in ("Prove that there are infinitely many primes.", "hi!"):
                r = c.post("/v1/chat/completions", json={"model": "router-mf-auto", "messages": _user(p)})
                assert r.status_code == 200, r.text
                info = r.json()["routekit"]
                want = mf.select(p, list(names.values()), prices={names[k]: v for k, v in blended.items()},
                                 willingness_to_pay=wtp)
                side = {v: k for k, v in names.items()}[want.model]
                assert info["route"] == side == info["upstream"] and received[-1][0] == side
                assert set(info["candidates"]) == set(names)  # "other" is not in MF's table
                assert info["candidates"][side] == pytest.approx(want.quality[want.model], abs=1e-6)
                chosen.add(side)
    assert "tiny" in chosen  # wtp 0: the cheapest


def test_connection_cap_fits_the_fd_limit():
    import subprocess
    import sys

    code = ("import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))\n"
            "from routekit.server.guard import fit_to_fd_limit\n"
            "print(fit_to_fd_limit(1000), fit_to_fd_limit(50))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["96", "50"] and "max_connections 1000 needs 2064" in out.stderr
