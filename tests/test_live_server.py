"""The gateway on live traffic (issue 29), real uvicorn on 127.0.0.1: budget control shared by clients
and kept across a restart, shadow routing in the decision log and `routekit report`, explain."""

from __future__ import annotations

import json
import re
import threading

import pytest

import routekit
from routekit.server.wire import Upstream

pytestmark = pytest.mark.usefixtures("server_deps")


def _config(tmp_path=None, upstream_url=None, **kw):
    from routekit.server.config import ServerConfig

    if upstream_url:
        kw.setdefault("strong", Upstream("big-model", f"{upstream_url}/strong/v1", api_key="k"))
        kw.setdefault("weak", Upstream("small-model", f"{upstream_url}/weak/v1", api_key="k"))
        kw.setdefault("prices", {"big-model": {"input": 10.0, "output": 30.0},
                                 "small-model": {"input": 1.0, "output": 2.0}})
    kw.setdefault("routers", {"r": "random"})
    kw.setdefault("preload", False)
    return ServerConfig(**kw)


def _samples(text: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    return {(smp.name, *sorted(smp.labels.items())): smp.value
            for fam in text_string_to_metric_families(text) for smp in fam.samples}


def _serve(cfg):
    from _fake_chat import running

    from routekit.server.app import create_app

    return running(create_app(cfg), cfg)


def test_two_concurrent_clients_share_one_budget():
    import httpx

    cfg = _config(target_strong_share=0.3)
    with _serve(cfg) as url:
        got: dict[int, list] = {0: [], 1: []}

        def client(k):
            with httpx.Client(base_url=url, timeout=30) as c:
                for i in range(100):
                    r = c.post("/v1/route", json={"prompt": f"client {k} prompt {i}"})
                    assert r.status_code == 200
                    got[k].append(r.json())

        ts = [threading.Thread(target=client, args=(k,)) for k in (0, 1)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        m = _samples(httpx.get(url + "/metrics").text)
    decisions = got[0] + got[1]
    assert {d["threshold_source"] for d in decisions} == {"budget"}
    strong = sum(d["route"] == "strong" for d in decisions)
    # one controller saw both clients' 200 decisions: its window share is exactly theirs together
    assert m[("routekit_budget_window_share", ("router", "r"))] == pytest.approx(strong / 200)
    assert m[("routekit_decisions_total", ("router", "random"), ("threshold_source", "budget"))] == 200
    assert m[("routekit_budget_target_share", ("router", "r"))] == 0.3
    assert abs(strong - 60) <= 12


def test_restart_keeps_the_controller_state(tmp_path):
    import httpx

    cfg = _config(target_strong_share=0.3, budget_state=str(tmp_path), budget_window=100)
    with _serve(cfg) as url:
        for i in range(150):
            assert httpx.post(url + "/v1/route", json={"prompt": f"before {i}"}).json()["threshold_source"] == "budget"
        before = _samples(httpx.get(url + "/metrics").text)
    state = json.loads((tmp_path / "r.json").read_text())  # written at shutdown
    assert state["decisions"] == 150 and len(state["recent"]) == 100
    thr = before[("routekit_budget_threshold", ("router", "r"))]
    with _serve(cfg) as url:
        first = httpx.post(url + "/v1/route", json={"prompt": "after restart"}).json()
        after = _samples(httpx.get(url + "/metrics").text)
    assert first["threshold"] == pytest.approx(thr, abs=1e-6)  # the restored buffer and feedback
    assert after[("routekit_budget_window_share", ("router", "r"))] == pytest.approx(
        (state["recent"][1:].count("1") + (first["route"] == "strong")) / 100)
    # a fresh server without the state starts from the calibration table instead
    fresh = routekit.control.BudgetController(routekit.load("random"), target_strong_share=0.3).threshold
    assert fresh != pytest.approx(thr, abs=1e-6)



def test_shutdown_saves_the_budget_and_closes_the_log_even_when_an_upstream_client_fails(tmp_path, monkeypatch):
    import asyncio

    from routekit.server import app as app_mod

    async def broken_close(self):
        raise RuntimeError("upstream client would not close")

    closed = []
    real_close = app_mod.DecisionLog.close
    monkeypatch.setattr(app_mod.Upstreams, "close", broken_close)
    monkeypatch.setattr(app_mod.DecisionLog, "close", lambda self: (closed.append(True), real_close(self)))
    cfg = _config(target_strong_share=0.3, budget_state=str(tmp_path), preload=True,
                  decision_log=str(tmp_path / "d.jsonl"))
    app = app_mod.create_app(cfg)

    async def start_and_stop():
        async with app.router.lifespan_context(app):
            pass

    with pytest.raises(RuntimeError, match="would not close"):
        asyncio.run(start_and_stop())
    assert json.loads((tmp_path / "r.json").read_text())["decisions"] == 0  # the state was still written
    assert closed == [True]

def test_explicit_options_still_win_over_the_budget():
    import httpx

    with _serve(_config(target_strong_share=0.3)) as url:
        r = httpx.post(url + "/v1/route", json={"prompt": "x", "threshold": 0.999}).json()
        assert (r["threshold"], r["threshold_source"], r["route"]) == (0.999, "raw", "weak")
        r = httpx.post(url + "/v1/route", json={"prompt": "x", "strong_fraction": 0.5}).json()
        assert r["threshold_source"] == "calibration"


def test_shadow_is_logged_beside_the_served_decision_and_reported(tmp_path, upstream, capsys):
    import httpx

    log = tmp_path / "decisions.jsonl"
    cfg = _config(upstream_url=upstream[0], shadow="random:7", decision_log=str(log))
    served_router = routekit.load("random")
    shadow_router = routekit.load("random:7")
    prompts = [f"question number {i}" for i in range(30)]
    with _serve(cfg) as url:
        for p in prompts:
            r = httpx.post(url + "/v1/chat/completions", timeout=30,
                           json={"model": "router-r", "messages": [{"role": "user", "content": p}]})
            assert r.status_code == 200
            assert r.json()["routekit"]["route"] == served_router.route(p).route  # the shadow changes nothing
        httpx.post(url + "/v1/route", json={"prompt": "route only"})
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(lines) == 31
    chat = [x for x in lines if x["endpoint"] == "/v1/chat/completions"]
    agree = 0
    for p, x in zip(prompts, chat):
        want = shadow_router.route(p)
        sh = x["shadow"]
        assert (sh["router"], sh["route"], sh["threshold_source"]) == ("random:7", want.route, "calibration")
        assert sh["win_rate"] == pytest.approx(want.win_rate, abs=1e-6)
        assert sh["agrees"] == (want.route == x["route"])
        agree += sh["agrees"]
        price = {"strong": (10.0, 30.0), "weak": (1.0, 2.0)}[sh["route"]]
        assert sh["cost_usd"] == pytest.approx((x["prompt_tokens"] * price[0] + x["completion_tokens"] * price[1]) / 1e6)
    from routekit.cli import main

    assert main(["report", str(log), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)["shadow"]
    assert rep["requests"] == 31 and rep["routers"] == {"random:7": 31}
    route_only = [x for x in lines if x["endpoint"] == "/v1/route"][0]
    assert rep["agreement"] == pytest.approx((agree + route_only["shadow"]["agrees"]) / 31)
    assert rep["priced_requests"] == 30
    assert rep["cost_usd"] == pytest.approx(sum(x["shadow"]["cost_usd"] for x in chat))
    assert main(["report", str(log)]) == 0
    assert "agreement with the served route" in capsys.readouterr().out


def test_route_explain_true(default_router):
    import httpx

    with _serve(_config(routers={"default": "default", "r": "random"})) as url:
        p = "Integrate x^2 sin(x) from 0 to pi."
        r = httpx.post(url + "/v1/route", json={"prompt": p, "explain": True}, timeout=30)
        assert r.status_code == 200
        body = r.json()
        ex = body["explain"]
        assert ex["kind"] == "linear" and ex["contributions"]
        assert (ex["route"], ex["threshold"], ex["threshold_source"]) == (body["route"], body["threshold"],
                                                                          "calibration")
        assert ex["win_rate"] == pytest.approx(default_router.win_rate(p), abs=1e-9)
        r = httpx.post(url + "/v1/route", json={"prompt": p, "router": "r", "explain": True})
        assert r.status_code == 400 and "cannot explain" in r.json()["error"]["message"]
        r = httpx.post(url + "/v1/route", json={"prompt": p, "explain": "yes"})
        assert r.status_code == 400


def test_budget_config_is_checked():
    for bad, msg in ((dict(target_strong_share=1.5), "in [0, 1]"),
                     (dict(target_strong_share={"nope": 0.2}), "not a configured router"),
                     (dict(budget_usd=5.0), "needs prices"),
                     (dict(target_strong_share=0.3, budget_usd=1.0), "both")):
        with pytest.raises(routekit.BadInputError, match=re.escape(msg)):
            _config(**bad)



def test_a_wildcard_router_key_is_refused_not_silently_ignored(upstream):
    # {"*": x} used to pass the check and give no router a controller
    for key, value in (("target_strong_share", 0.3), ("budget_usd", 9.0)):
        with pytest.raises(routekit.BadInputError, match=re.escape(f"{key}.*: not a configured router")):
            _config(upstream_url=upstream[0], **{key: {"*": value}})
        cfg = _config(upstream_url=upstream[0], **{key: value})  # one number covers every router
        per = cfg.target_for_all() if key == "target_strong_share" else cfg.budget_for_all()
        assert per == {"r": value}

def test_cost_form_sets_the_share_from_prices_and_follows_real_usage(upstream):
    import httpx

    # 1000 input + 500 output tokens: strong $0.025, weak $0.002 per request; $9.0 per 1,000 requests
    # is (0.009 - 0.002) / (0.025 - 0.002) = 30.4 % strong
    cfg = _config(upstream_url=upstream[0], budget_usd=9.0, budget_window=1000, preload=True)
    with _serve(cfg) as url:
        m = _samples(httpx.get(url + "/metrics").text)
        assert m[("routekit_budget_target_share", ("router", "r"))] == pytest.approx(0.007 / 0.023)
        sides = []
        for i in range(20):  # the fake upstream reports 10 + 4 tokens: far cheaper calls than assumed
            r = httpx.post(url + "/v1/chat/completions", timeout=30,
                           json={"model": "router-r", "messages": [{"role": "user", "content": f"q {i}"}]})
            assert r.json()["routekit"]["threshold_source"] == "budget"
            sides.append(r.json()["routekit"]["upstream"])
        m = _samples(httpx.get(url + "/metrics").text)
    cost = {"strong": 0.025, "weak": 0.002}  # the estimates follow each answer's real cost (moving average)
    real = {"strong": (10 * 10.0 + 4 * 30.0) / 1e6, "weak": (10 * 1.0 + 4 * 2.0) / 1e6}
    for side in sides:
        cost[side] += 0.02 * (real[side] - cost[side])
    want = (0.009 - cost["weak"]) / (cost["strong"] - cost["weak"])
    assert m[("routekit_budget_target_share", ("router", "r"))] == pytest.approx(min(1.0, want))
    assert want > 0.007 / 0.023  # the same dollars buy more strong calls
