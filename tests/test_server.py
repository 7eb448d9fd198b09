"""The routing server (routekit[server]), the in-process client and the model-name convention.

Server tests start real HTTP servers on 127.0.0.1 (ephemeral ports): a fake OpenAI-compatible
upstream with two "models" that answer differently, and the routing server, driven with the
official ``openai`` SDK and httpx.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _fake_chat import _free_socket, running, stop_process

import routekit
from routekit.client import make_model_picker
from routekit.errors import BadInputError
from routekit.loading import RouterCache
from routekit.server.wire import (
    RouteSpec,
    UnknownRouterError,
    Upstream,
    parse_model,
    prompt_from_messages,
)

PROMPTS = ["hi, how are you?", "Prove that there are infinitely many primes.",
           "Write a Rust function that parses ISO-8601 durations, with tests.", "What is 2 + 2?",
           "Summarise the causes of the French revolution in three bullet points.", "translate 'cat' to German",
           "Design a lock-free MPMC queue in C++ and argue its linearizability.", "tell me a joke"]


# -- the model-name convention and turn selection (no extra needed) ----------------------------
def test_parse_model_forms():
    assert parse_model("router-mf-0.7") == RouteSpec("mf", threshold=0.7)
    assert parse_model("router-mf-p30") == RouteSpec("mf", strong_fraction=0.3)
    assert parse_model("router-mf-p12.5").strong_fraction == pytest.approx(0.125)
    assert parse_model("router-mf") == RouteSpec("mf")
    assert parse_model("router-my-mf-1") == RouteSpec("my-mf", threshold=1.0)
    assert parse_model("router-random:3-.25") == RouteSpec("random:3", threshold=0.25)
    assert parse_model("cheap", {"cheap": "smart", "smart": "router-mf-p10"}) == RouteSpec("mf", strong_fraction=0.1)
    assert RouteSpec("mf", threshold=0.2).as_kwargs() == {"threshold": 0.2}
    assert RouteSpec("mf").as_kwargs() == {}


@pytest.mark.parametrize("bad", ["gpt-4o", "router-", "", None, 3, "route-mf-0.5"])
def test_parse_model_rejects_non_routing_models(bad):
    with pytest.raises((UnknownRouterError, BadInputError)):
        parse_model(bad)


@pytest.mark.parametrize("bad", ["router-mf-1.5", "router-mf-p101"])
def test_parse_model_rejects_out_of_range(bad):
    with pytest.raises(BadInputError):
        parse_model(bad)


def test_prompt_from_messages_turns():
    msgs = [{"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "image_url", "image_url": {}},
                                         {"type": "text", "text": "question"}]}]
    assert prompt_from_messages(msgs) == "second\nquestion\n\nfirst question"
    assert prompt_from_messages(msgs, turns="last") == "second\nquestion"
    assert prompt_from_messages([{"role": "user", "content": "only"}]) == "only"
    # history is cut at context_chars, the last message is kept whole
    long_hist = [{"role": "user", "content": "x" * 5000}, {"role": "user", "content": "now"}]
    text = prompt_from_messages(long_hist, context_chars=100)
    assert text.startswith("now\n\n") and len(text) == 100
    assert prompt_from_messages([{"role": "user", "content": "y" * 300}], context_chars=10) == "y" * 300


@pytest.mark.parametrize("bad", [[], "hi", [{"role": "system", "content": "s"}], [{"content": "no role"}], [3],
                                 [{"role": "user", "content": 5}]])
def test_prompt_from_messages_rejects(bad):
    with pytest.raises(BadInputError):
        prompt_from_messages(bad)


def test_router_cache_loads_once_per_name_and_refuses_unknown_names():
    calls = []

    def loader(spec, threads=None):
        calls.append(spec)
        time.sleep(0.05)
        return routekit.load("random")

    cache = RouterCache({"r": "random", "other": "random:1"}, loader=loader)
    got = []
    ts = [threading.Thread(target=lambda: got.append(cache.get("r"))) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert calls == ["random"] and len({id(r) for r in got}) == 1
    assert cache.get() is got[0]  # the first name is the default
    with pytest.raises(UnknownRouterError):
        cache.get("/etc")  # never loads a path a request names


def test_model_picker_hook_matches_router():
    router = routekit.load("random")
    pick = make_model_picker("big", "small", router="random", threshold=0.5)
    for p in PROMPTS:
        want = "big" if router.route(p, threshold=0.5).is_strong else "small"
        assert pick({"messages": [{"role": "user", "content": p}]}) == want
        assert pick([{"role": "user", "content": p}]) == want


def test_plain_runtime_does_not_import_server_deps():
    code = ("import sys, routekit, routekit.client, routekit.cli\n"
            "routekit.load('random').route('x')\n"
            "bad = [m for m in ('fastapi', 'starlette', 'openai', 'uvicorn', 'httpx', 'httpx2') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_serve_without_extra_gives_install_hint(monkeypatch, capsys):
    from routekit import cli

    monkeypatch.setitem(sys.modules, "fastapi", None)  # makes `import fastapi` fail
    monkeypatch.delitem(sys.modules, "routekit.server.app", raising=False)
    assert cli.main(["serve", "--router", "random"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'routekit[server]'" in err and "fastapi" in err


# -- servers on loopback (helpers in _fake_chat.py) ----------------------------------------------
def _config(upstream_url, **kw):
    from routekit.server.app import ServerConfig

    kw.setdefault("strong", Upstream("big-model", f"{upstream_url}/strong/v1", api_key="k"))
    kw.setdefault("weak", Upstream("small-model", f"{upstream_url}/weak/v1", api_key="k"))
    kw.setdefault("routers", {"default": "default", "random": "random"})
    kw.setdefault("aliases", {"cheap": "router-default-p20"})
    kw.setdefault("prices", {"big-model": {"input": 10.0, "output": 30.0}})
    return ServerConfig(**kw)


@pytest.fixture(scope="module")
def router_server(upstream):
    from routekit.server.app import create_app

    app = create_app(_config(upstream[0]))
    with running(app) as url:
        yield url, app


@pytest.fixture(scope="module")
def sdk(router_server):
    import openai

    return openai.OpenAI(base_url=router_server[0] + "/v1", api_key="unused", max_retries=0, timeout=30)


def _samples(text: str) -> dict:
    """Prometheus exposition text -> {(sample name, *sorted (label, value) pairs): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(smp.name, *sorted(smp.labels.items())): smp.value
            for fam in text_string_to_metric_families(text) for smp in fam.samples}


def _user(text):
    return [{"role": "user", "content": text}]


def test_chat_non_streaming_routes_to_the_router_choice(sdk, upstream, default_router):
    _, received = upstream
    rates = default_router.win_rates(PROMPTS)
    thr = round(0.5 * (rates.min() + rates.max()), 6)  # splits PROMPTS; exactly what the model name says
    seen = set()
    for p in PROMPTS:
        want = default_router.route(p, threshold=thr)
        raw = sdk.chat.completions.with_raw_response.create(model=f"router-default-{thr:.6f}", messages=_user(p),
                                                            temperature=0.3)
        r = raw.parse()
        side = "strong" if want.is_strong else "weak"
        assert r.choices[0].message.content == f"{side} says: {p}"
        assert raw.headers["x-routekit-route"] == want.route
        assert raw.headers["x-routekit-model"] == ("big-model" if want.is_strong else "small-model")
        assert float(raw.headers["x-routekit-win-rate"]) == pytest.approx(want.win_rate, abs=1e-6)
        info = r.model_extra["routekit"]
        assert info["route"] == want.route and info["win_rate"] == pytest.approx(want.win_rate)
        # the upstream got its own model name and the client's other fields
        name, body = received[-1]
        assert name == side and body["model"] == info["model"] and body["temperature"] == 0.3
        seen.add(want.route)
    assert seen == {"strong", "weak"}  # the threshold splits the prompts, so both upstreams were used


def test_chat_strong_fraction_and_alias(sdk, default_router):
    assert sdk.chat.completions.create(model="router-default-p0", messages=_user("x")).model_extra["routekit"]["route"] == "weak"
    assert sdk.chat.completions.create(model="router-default-p100", messages=_user("x")).model_extra["routekit"]["route"] == "strong"
    p = PROMPTS[1]
    r = sdk.chat.completions.create(model="cheap", messages=_user(p))
    want = default_router.route(p, strong_fraction=0.2)
    assert r.model_extra["routekit"]["threshold"] == pytest.approx(want.threshold)
    assert r.model_extra["routekit"]["route"] == want.route


def test_chat_streaming(sdk, default_router):
    for frac, side in ((1.0, "strong"), (0.0, "weak")):
        p = "Stream me an answer please"
        stream = sdk.chat.completions.create(model=f"router-default-p{int(frac * 100)}", messages=_user(p),
                                             stream=True)
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == f"{side} says: {p}"
        assert chunks[0].model_extra["routekit"]["route"] == side
        assert chunks[0].model_extra["routekit"]["win_rate"] == pytest.approx(default_router.win_rate(p))
        assert "routekit" not in (chunks[1].model_extra or {})


def test_multi_turn_scores_user_turns(sdk, default_router):
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": PROMPTS[6]},
            {"role": "assistant", "content": "ok"}, {"role": "user", "content": "and in Rust?"}]
    r = sdk.chat.completions.create(model="router-default-0.5", messages=msgs)
    want = default_router.win_rate("and in Rust?\n\n" + PROMPTS[6])
    assert r.model_extra["routekit"]["win_rate"] == pytest.approx(want)


def test_route_endpoint_agrees_with_router(router_server, default_router):
    import httpx

    url = router_server[0]
    with httpx.Client(base_url=url) as c:
        for p in PROMPTS:
            for kw in ({}, {"threshold": 0.7}, {"strong_fraction": 0.3}):
                got = c.post("/v1/route", json={"prompt": p, **kw}).json()
                want = default_router.route(p, **kw)
                assert got["route"] == want.route and got["router"] == want.router
                assert got["win_rate"] == pytest.approx(want.win_rate) and got["threshold"] == pytest.approx(want.threshold)
                assert got["model"] == ("big-model" if want.is_strong else "small-model")
        rnd = routekit.load("random")
        got = c.post("/v1/route", json={"messages": _user("abc"), "router": "random", "threshold": 0.5}).json()
        assert got["win_rate"] == pytest.approx(rnd.win_rate("abc")) and got["router"] == "random"


def test_raw_threshold_outside_calibrated_range_warns(router_server, sdk, default_router):
    """RouteLLM-style thresholds (router-mf-0.11593) that route everything one way are flagged."""
    import httpx

    lo, hi = default_router.calibrated_range()
    with httpx.Client(base_url=router_server[0]) as c:
        got = c.post("/v1/route", json={"prompt": "hi", "threshold": lo / 2}).json()
        assert got["route"] == "strong" and "below every win rate" in got["warning"]
        assert "warning" not in c.post("/v1/route", json={"prompt": "hi", "threshold": (lo + hi) / 2}).json()
        assert "warning" not in c.post("/v1/route", json={"prompt": "hi", "strong_fraction": 0.3}).json()
    r = sdk.chat.completions.create(model=f"router-default-{lo / 2:.5f}", messages=_user("hi"))
    assert "below every win rate" in r.model_extra["routekit"]["warning"]


def test_models_health_metrics(router_server, sdk, default_router):
    ids = [m.id for m in sdk.models.list()]
    assert ids == ["router-default", "router-random", "cheap"]
    import httpx

    url = router_server[0]
    h = httpx.get(url + "/health").json()
    assert h["status"] == "ok" and "default" in h["loaded"]
    httpx.post(url + "/v1/route", json={"prompt": "metrics please", "strong_fraction": 1.0})
    sdk.chat.completions.create(model="router-default-p100", messages=_user("cost me"))
    text = httpx.get(url + "/metrics").text
    m = _samples(text)
    assert m["routekit_requests_total", ("endpoint", "/v1/route"), ("route", "strong"), ("status", "200")] >= 1
    assert m["routekit_requests_total", ("endpoint", "/v1/chat/completions"), ("route", "strong"), ("status", "200")] >= 1
    name = default_router.name  # the histogram is labelled with the router's own name
    count = m["routekit_router_latency_seconds_count", ("router", name)]
    assert count >= 2 and m["routekit_router_latency_seconds_bucket", ("le", "+Inf"), ("router", name)] == count
    assert m["routekit_router_latency_seconds_sum", ("router", name)] > 0
    assert m["routekit_tokens_total", ("kind", "prompt"), ("model", "big-model")] >= 10
    assert m["routekit_cost_usd_total", ("model", "big-model")] >= (10 * 10 + 4 * 30) / 1e6 - 1e-12
    assert "# TYPE routekit_router_latency_seconds histogram" in text


@pytest.mark.parametrize("body,status", [
    (b"{not json", 400), (b"[1, 2]", 400), (b'"x"', 400), (b"\xff\xfe", 400),
    (json.dumps({"messages": _user("x")}).encode(), 400),  # no model
    (json.dumps({"model": "gpt-4o", "messages": _user("x")}).encode(), 404),
    (json.dumps({"model": "router-nope-0.5", "messages": _user("x")}).encode(), 404),
    (json.dumps({"model": "router-default-2", "messages": _user("x")}).encode(), 400),
    (json.dumps({"model": "router-default-0.5"}).encode(), 400),
    (json.dumps({"model": "router-default-0.5", "messages": "hi"}).encode(), 400),
    (json.dumps({"model": "router-default-0.5", "messages": _user("x"), "stream": "yes"}).encode(), 400),
    (json.dumps({"model": "router-random-p50", "messages": _user("x")}).encode(), 200),
])
def test_chat_malformed_requests(router_server, body, status):
    import httpx

    r = httpx.post(router_server[0] + "/v1/chat/completions", content=body,
                   headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    if status != 200:
        assert r.json()["error"]["message"]


@pytest.mark.parametrize("body", [{}, {"prompt": 3}, {"prompt": "a", "messages": _user("a")},
                                  {"prompt": "a", "threshold": 2}, {"prompt": "a", "threshold": "x"},
                                  {"prompt": "a", "threshold": 0.5, "strong_fraction": 0.5},
                                  {"prompt": "a", "router": 5}])
def test_route_malformed_requests(router_server, body):
    import httpx

    r = httpx.post(router_server[0] + "/v1/route", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_request_too_large(upstream):
    import httpx

    from routekit.server.app import create_app

    app = create_app(_config(upstream[0], max_body_bytes=1000, preload=False, routers={"random": "random"}))
    with running(app) as url:
        ok = httpx.post(url + "/v1/route", json={"prompt": "a" * 900})
        assert ok.status_code == 200
        big = httpx.post(url + "/v1/route", json={"prompt": "a" * 2000})
        assert big.status_code == 413
        # no Content-Length (chunked): counted while reading
        chunked = httpx.post(url + "/v1/route", content=iter([b'{"prompt": "', b"a" * 2000, b'"}']))
        assert chunked.status_code == 413


def test_bearer_token(upstream):
    from fastapi.testclient import TestClient

    from routekit.server.app import create_app

    app = create_app(_config(upstream[0], api_key="s3cret", routers={"random": "random"}))
    with TestClient(app) as c:
        body = {"prompt": "hi"}
        assert c.post("/v1/route", json=body).status_code == 401
        assert c.post("/v1/route", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/v1/models").status_code == 401
        assert c.post("/v1/chat/completions", json={"model": "router-random-p50", "messages": _user("x")}).status_code == 401
        assert c.post("/v1/route", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/health").status_code == 200


def test_upstream_failures(upstream):
    import openai

    from routekit.server.app import create_app

    url, _ = upstream
    dead = _free_socket()  # bound but never listening: connections are refused
    dead_url = f"http://127.0.0.1:{dead.getsockname()[1]}/v1"
    cfg = _config(url, routers={"random": "random"}, upstream_timeout=0.5, preload=False, fallback=False,
                  strong=Upstream("big-model", f"{url}/slow/v1", api_key="k"),
                  weak=Upstream("small-model", dead_url, api_key="k"))
    with running(create_app(cfg)) as srv:
        sdk = openai.OpenAI(base_url=srv + "/v1", api_key="unused", max_retries=0, timeout=30)
        t0 = time.perf_counter()
        with pytest.raises(openai.APIStatusError) as slow:
            sdk.chat.completions.create(model="router-random-p100", messages=_user("x"))
        assert slow.value.status_code == 504 and "timed out" in slow.value.message
        assert time.perf_counter() - t0 < 2.5
        with pytest.raises(openai.APIStatusError) as down:
            sdk.chat.completions.create(model="router-random-p0", messages=_user("x"))
        assert down.value.status_code == 502 and "unreachable" in down.value.message and "small-model" in down.value.message
        with pytest.raises(openai.APIStatusError) as down_stream:
            sdk.chat.completions.create(model="router-random-p0", messages=_user("x"), stream=True)
        assert down_stream.value.status_code == 502
        import httpx

        m = _samples(httpx.get(srv + "/metrics").text)
        assert m["routekit_upstream_errors_total", ("kind", "timeout"), ("upstream", "strong")] == 1
        assert m["routekit_upstream_errors_total", ("kind", "connection"), ("upstream", "weak")] == 2
    dead.close()

    cfg = _config(url, routers={"random": "random"}, preload=False, fallback=False,
                  strong=Upstream("big-model", f"{url}/broken/v1", api_key="k"),
                  weak=Upstream("small-model", f"{url}/midfail/v1", api_key="k"))
    with running(create_app(cfg)) as srv:
        sdk = openai.OpenAI(base_url=srv + "/v1", api_key="unused", max_retries=0, timeout=30)
        with pytest.raises(openai.APIStatusError) as broken:
            sdk.chat.completions.create(model="router-random-p100", messages=_user("x"))
        assert broken.value.status_code == 502 and "the fake upstream broke" in broken.value.message
        # a stream that breaks after it started ends with an in-band error event
        import httpx

        r = httpx.post(srv + "/v1/chat/completions", json={"model": "router-random-p0", "stream": True,
                                                           "messages": _user("one two three four")})
        assert r.status_code == 200
        events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]" and "error" in json.loads(events[-2])

    # no upstream configured: routing still works, chat says why it cannot forward
    from routekit.server.app import ServerConfig

    with running(create_app(ServerConfig(routers={"random": "random"}))) as srv:
        r = httpx.post(srv + "/v1/chat/completions", json={"model": "router-random-p100", "messages": _user("x")})
        assert r.status_code == 503 and "--strong-model" in r.json()["error"]["message"]
        assert httpx.post(srv + "/v1/route", json={"prompt": "x"}).status_code == 200


def test_slow_client_does_not_block_others(router_server):
    import httpx

    host, port = router_server[0].removeprefix("http://").split(":")
    slow = socket.create_connection((host, int(port)))
    try:
        # headers promise 10,000 bytes, then the client stalls after a few
        slow.sendall(b"POST /v1/route HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 10000\r\n\r\n{\"prompt\": \"")
        time.sleep(0.1)
        t0 = time.perf_counter()
        with httpx.Client(base_url=router_server[0], timeout=5) as c:
            for p in PROMPTS:
                assert c.post("/v1/route", json={"prompt": p}).status_code == 200
        assert time.perf_counter() - t0 < 3.0
    finally:
        slow.close()


def test_scoring_runs_off_the_event_loop(upstream):
    """While one request's scoring is stuck (a slow router), other requests are still answered."""
    import httpx

    from routekit.server.app import create_app

    class SlowRouter(type(routekit.load("random"))):
        def score(self, prompts):
            if prompts == ["slow"]:
                time.sleep(1.5)
            return super().score(prompts)

    app = create_app(_config(upstream[0], routers={"random": "random"}, preload=False))
    app.state.routers._routers["random"] = SlowRouter()
    with running(app) as url:
        out = {}
        t = threading.Thread(target=lambda: out.update(r=httpx.post(url + "/v1/route", json={"prompt": "slow"},
                                                                    timeout=10)))
        t.start()
        time.sleep(0.2)
        t0 = time.perf_counter()
        assert httpx.post(url + "/v1/route", json={"prompt": "fast"}).status_code == 200
        assert httpx.get(url + "/health").status_code == 200
        assert time.perf_counter() - t0 < 1.0
        t.join()
        assert out["r"].status_code == 200


def test_config_from_file(tmp_path, monkeypatch, server_deps):
    from routekit.server.app import ServerConfig

    monkeypatch.setenv("MY_TOKEN", "tok")
    f = tmp_path / "server.toml"
    f.write_text('routers = {fast = "random", mf = "mf"}\napi_key_env = "MY_TOKEN"\nmax_body_bytes = 5000\n'
                 '[strong]\nmodel = "gpt-4o"\n[weak]\nmodel = "llama3"\nbase_url = "http://127.0.0.1:11434/v1"\n'
                 '[aliases]\ncheap = "router-mf-p20"\n[prices.gpt-4o]\ninput = 2.5\noutput = 10\n')
    cfg = ServerConfig.from_file(f)
    assert cfg.routers == {"fast": "random", "mf": "mf"} and cfg.api_key == "tok" and cfg.max_body_bytes == 5000
    assert cfg.strong == Upstream("gpt-4o") and cfg.weak.base_url == "http://127.0.0.1:11434/v1"
    assert cfg.aliases == {"cheap": "router-mf-p20"} and cfg.prices["gpt-4o"]["output"] == 10
    j = tmp_path / "server.json"
    j.write_text(json.dumps({"routers": ["random"], "colour": "red"}))
    with pytest.raises(BadInputError, match="colour"):
        ServerConfig.from_file(j)


def test_routing_openai_client_in_process(upstream, default_router):
    import openai

    from routekit.client import RoutingOpenAI

    url, received = upstream
    strong, weak = Upstream("big-model", f"{url}/strong/v1", "k"), Upstream("small-model", f"{url}/weak/v1", "k")
    with RoutingOpenAI(strong=strong, weak=weak, routers={"default": "default"}, aliases={"fast": "router-default-p0"},
                       max_retries=0) as client:
        assert isinstance(client._clients["strong"], openai.OpenAI)
        for p in PROMPTS[:4]:
            want = default_router.route(p, threshold=0.75)
            r = client.chat.completions.create(model="router-default-0.75", messages=_user(p), max_tokens=5)
            assert r.choices[0].message.content == f"{want.route} says: {p}"
            assert r.routekit["route"] == want.route and r.routekit["win_rate"] == pytest.approx(want.win_rate)
            assert received[-1][1]["max_tokens"] == 5
        s = client.chat.completions.create(model="fast", messages=_user("stream it"), stream=True)
        assert s.routekit["route"] == "weak"
        assert "".join(c.choices[0].delta.content or "" for c in s if c.choices) == "weak says: stream it"
        with pytest.raises(UnknownRouterError):
            client.chat.completions.create(model="router-mf-0.5", messages=_user("x"))


def test_mounted_app_and_injected_clients(upstream):
    """Mounted inside another app (whose lifespan does not start ours) the server still forwards;
    ready-made AsyncOpenAI clients can be passed in."""
    import httpx
    import openai
    from fastapi import FastAPI

    from routekit.server.app import create_app

    url, received = upstream
    outer = FastAPI()
    outer.mount("/router", create_app(_config(url, routers={"random": "random"})))
    with running(outer) as srv:
        r = httpx.post(srv + "/router/v1/chat/completions", json={"model": "router-random-p100", "messages": _user("m")})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "strong says: m"
    mine = {"strong": openai.AsyncOpenAI(base_url=f"{url}/weak/v1", api_key="k", max_retries=0)}
    with running(create_app(_config(url, routers={"random": "random"}), upstream_clients=mine)) as srv:
        r = httpx.post(srv + "/v1/chat/completions", json={"model": "router-random-p100", "messages": _user("i")})
        assert r.json()["choices"][0]["message"]["content"] == "weak says: i"  # went through the injected client


def test_cli_serve_starts_and_checks_token(upstream, tmp_path):
    s = _free_socket()
    port = s.getsockname()[1]
    s.close()
    env = {**os.environ, "RK_TOKEN": "tok"}
    cmd = [sys.executable, "-m", "routekit", "serve", "--router", "random", "--port", str(port),
           "--strong-model", "big-model", "--strong-base-url", f"{upstream[0]}/strong/v1",
           "--weak-model", "small-model", "--weak-base-url", f"{upstream[0]}/weak/v1",
           "--api-key-env", "RK_TOKEN", "--alias", "auto=router-random-p100", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        import httpx

        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(base + "/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.time() < deadline, proc.stdout.read().decode()
            time.sleep(0.1)
        body = {"model": "auto", "messages": _user("cli")}
        assert httpx.post(base + "/v1/chat/completions", json=body).status_code == 401
        r = httpx.post(base + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer tok"})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "strong says: cli"
    finally:
        stop_process(proc, 10)
    bad = subprocess.run([sys.executable, "-m", "routekit", "serve", "--api-key-env", "RK_UNSET_VAR_X"],
                         capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "RK_UNSET_VAR_X"})
    assert bad.returncode == 2 and "RK_UNSET_VAR_X" in bad.stderr


# -- load ---------------------------------------------------------------------------------------
def _load_test(url: str, concurrency: int, per_client: int) -> dict:
    """examples/load_route.py's bounded load test (so the example is exercised too)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "load_route.py"
    spec = importlib.util.spec_from_file_location("load_route_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.run(url, concurrency, concurrency * per_client)


def test_load_route_endpoint(router_server):
    stats = _load_test(router_server[0], concurrency=8, per_client=50)
    print(f"\n/v1/route load (8 x 50, mf): {stats}")
    assert stats["requests"] == 400 and stats["errors"] == 0, stats


@pytest.mark.slow
def test_load_route_endpoint_2000(router_server):
    stats = _load_test(router_server[0], concurrency=16, per_client=125)
    print(f"\n/v1/route load (16 x 125, mf): {stats}")
    assert stats["requests"] == 2000 and stats["errors"] == 0, stats
