"""Issue 30 item 2: when the chosen upstream fails and the fallback fails too, the OpenAI error body
and the decision-log line keep both attempts (side, upstream, status or exception, message), and
the HTTP status follows the first failure (504 for a timeout, 502 otherwise); streams likewise.
Fake upstreams on 127.0.0.1 (tests/_fake_chat.py): ``slow`` (3 s, past a 0.5 s timeout),
``broken`` (HTTP 500 with a message), ``midfail`` (breaks after two chunks), and a bound socket
that never listens (connection refused)."""

import json

import pytest
from _fake_chat import _free_socket, running

from routekit.server.wire import Upstream

pytestmark = pytest.mark.usefixtures("server_deps")


@pytest.fixture()
def dead():
    s = _free_socket()  # bound, never listening
    yield f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    s.close()


def _cfg(strong_url, weak_url, log):
    from routekit.server.app import ServerConfig

    return ServerConfig(routers={"random": "random"}, preload=False, upstream_timeout=0.5, decision_log=str(log),
                        strong=Upstream("big-model", strong_url, api_key="k"),
                        weak=Upstream("small-model", weak_url, api_key="k"))


def _call(cfg, stream=False):
    import httpx

    from routekit.server.app import create_app

    with running(create_app(cfg)) as srv, httpx.Client(base_url=srv, timeout=30) as c:
        return c.post("/v1/chat/completions", json={"model": "router-random-p100", "stream": stream,
                                                    "messages": [{"role": "user", "content": "one two three"}]})


def _log(path):
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


CASES = {  # strong (chosen), weak (fallback) -> status, first attempt, second attempt, message words
    "timeout then unreachable": ("slow", "dead", 504, ("timeout", None, "APITimeoutError"),
                                 ("connection", None, "APIConnectionError"), ["timed out", "unreachable"]),
    "500 then unreachable": ("broken", "dead", 502, ("http_500", 500, "InternalServerError"),
                             ("connection", None, "APIConnectionError"),
                             ["HTTP 500: the fake upstream broke", "unreachable"]),
    "unreachable then 500": ("dead", "broken", 502, ("connection", None, "APIConnectionError"),
                             ("http_500", 500, "InternalServerError"),
                             ["unreachable", "HTTP 500: the fake upstream broke"]),
    "timeout then 500": ("slow", "broken", 504, ("timeout", None, "APITimeoutError"),
                         ("http_500", 500, "InternalServerError"), ["timed out", "HTTP 500"]),
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("case", list(CASES))
def test_failed_fallback_keeps_both_causes(upstream, dead, tmp_path, case, stream):
    strong, weak, status, first, second, words = CASES[case]
    url = {"slow": f"{upstream[0]}/slow/v1", "broken": f"{upstream[0]}/broken/v1", "dead": dead}
    log = tmp_path / "decisions.jsonl"
    r = _call(_cfg(url[strong], url[weak], log), stream=stream)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["type"] == "upstream_error"
    msg = err["message"]
    assert "'strong'" in msg and "'weak'" in msg and msg.index("'strong'") < msg.index("'weak'")
    pos = [msg.index(w) for w in words]
    assert pos == sorted(pos), msg  # the first cause first
    got = [(a["side"], a["upstream"], a["model"], a["error"], a["status"], a["exception"]) for a in err["attempts"]]
    assert got == [("chosen", "strong", "big-model", *first), ("fallback", "weak", "small-model", *second)]
    if "http_500" in (first[0], second[0]):
        assert any(a["message"] == "the fake upstream broke" for a in err["attempts"])
    rec = _log(log)
    assert rec["status"] == status and rec["attempts"] == err["attempts"]
    assert rec["fallback"] == {"from": "strong", "to": "weak", "reason": first[0]}


def test_a_fallback_stream_that_breaks_names_the_first_cause(upstream, tmp_path):
    log = tmp_path / "decisions.jsonl"
    r = _call(_cfg(f"{upstream[0]}/broken/v1", f"{upstream[0]}/midfail/v1", log), stream=True)
    assert r.status_code == 200 and r.headers["x-routekit-fallback"] == "strong->weak"
    events = [e[6:] for e in r.text.splitlines() if e.startswith("data: ")]
    assert events[-1] == "[DONE]"
    err = json.loads(events[-2])["error"]
    assert "'weak'" in err["message"] and "'strong'" in err["message"] and "the fake upstream broke" in err["message"]
    assert [(a["side"], a["upstream"], a["error"]) for a in err["attempts"]] == [
        ("chosen", "strong", "http_500"), ("fallback", "weak", "connection")]
    rec = _log(log)
    assert rec["attempts"] == err["attempts"] and "'strong'" in rec["error"]


def test_a_fallback_that_works_logs_the_first_cause(upstream, tmp_path):
    log = tmp_path / "decisions.jsonl"
    r = _call(_cfg(f"{upstream[0]}/broken/v1", f"{upstream[0]}/weak/v1", log))
    assert r.status_code == 200 and r.json()["routekit"]["fallback"]["reason"] == "http_500"
    rec = _log(log)
    assert rec["status"] == 200 and [(a["upstream"], a["status"], a["message"]) for a in rec["attempts"]] == [
        ("strong", 500, "the fake upstream broke")]
