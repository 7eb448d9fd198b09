"""``routekit-export label`` against a fake OpenAI-compatible chat upstream on 127.0.0.1 (no real API)."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("openai", reason="needs the openai SDK: pip install 'routekit[openai]'")

from routekit_export import cli  # noqa: E402
from routekit_export.label import JUDGES, pairwise_winner  # noqa: E402


class FakeChat:
    """``big`` answers at length, ``small`` briefly; ``judge`` prefers the answer that starts with
    BIG (pairwise: [[A]]/[[B]]; single: 9 or 4), ``biased-judge`` always says [[A]].
    ``fail_next`` answers that many requests with HTTP 500 first."""

    def __init__(self):
        self.requests: list[dict] = []
        self.fail_next = 0
        self.lock = threading.Lock()
        fake = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with fake.lock:
                    fake.requests.append(body)
                    fail = fake.fail_next > 0
                    fake.fail_next -= fail
                if fail:
                    return self._send(500, {"error": {"message": "fake outage", "type": "server_error"}})
                text = fake.answer(body["model"], body["messages"][-1]["content"])
                self._send(200, {"id": "x", "object": "chat.completion", "created": 1, "model": body["model"],
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": text}}],
                                 "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}})

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @staticmethod
    def answer(model: str, content: str) -> str:
        if model == "big":
            return f"BIG: a careful, complete answer to {content!r}"
        if model == "small":
            return "small: meh"
        if model == "biased-judge":
            return "Both fine. [[A]]"
        a = re.search(r"Assistant A's Answer\]\n(.*?)\n\[The End", content, re.S)
        if a:
            return "A is better. [[A]]" if a.group(1).startswith("BIG") else "B is better. [[B]]"
        ans = re.search(r"Assistant's Answer\]\n(.*?)\n\[The End", content, re.S).group(1)
        return f"Rating: [[{9 if ans.startswith('BIG') else 4}]]"

    def models(self) -> list[str]:
        return [r["model"] for r in self.requests]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake():
    f = FakeChat()
    yield f
    f.stop()


def _run(fake, tmp_path, *extra, judge="judge", prompts=None):
    pf = tmp_path / "prompts.jsonl"
    if not pf.exists():
        pf.write_text("".join(json.dumps(r) + "\n" for r in (prompts or [
            {"prompt": "What is 2 + 2?", "reference": "4"}, {"prompt": "Name a prime above 10."},
            {"prompt": "Say hi."}])))
    out = tmp_path / "labels.jsonl"
    return cli.main(["label", "--prompts", str(pf), "--strong-model", "big", "--weak-model", "small",
                     "--judge-model", judge, "--base-url", fake.url, "--out", str(out), "--concurrency", "2",
                     "--max-retries", "3", *extra]), out


def test_pairwise_both_orders_cache_and_costs(fake, tmp_path, capsys):
    rc, out = _run(fake, tmp_path, "--price", "big=2,8", "--price", "judge=1,1")
    assert rc == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["winner"] for r in rows] == ["model_a"] * 3 and {r["model_a"] for r in rows} == {"big"}
    assert all(r["verdicts"] == ["A", "B"] for r in rows)  # strong shown first, then second
    assert fake.models().count("judge") == 6 and fake.models().count("big") == 3
    err = capsys.readouterr().err
    big = next(line for line in err.splitlines() if line.startswith("big "))
    assert big.split()[1:5] == ["3", "0", "30", "9"] and "0.0001" in big  # 3 calls, 30 in, 9 out tokens
    assert "total cost" in err
    # the label file is what `fit` reads
    from routekit_export.fit_data import read_labels

    assert len(read_labels(out, "big", "small")) == 3
    # a second run answers everything from the cache; a changed judge prompt re-asks only the judge
    n = len(fake.requests)
    assert _run(fake, tmp_path)[0] == 0 and len(fake.requests) == n
    assert "big" in capsys.readouterr().err
    edited = tmp_path / "judge.txt"
    edited.write_text("Be strict.\n" + (JUDGES / "pairwise.txt").read_text())
    assert _run(fake, tmp_path, "--judge-prompt", str(edited))[0] == 0
    assert fake.models()[n:].count("judge") == 6 and len(fake.requests) == n + 6


def test_position_bias_cancels_to_ties(fake, tmp_path):
    rc, out = _run(fake, tmp_path, judge="biased-judge")
    assert rc == 0
    assert [json.loads(x)["winner"] for x in out.read_text().splitlines()] == ["tie"] * 3
    assert pairwise_winner("A", "B") == "model_a" and pairwise_winner("B", "A") == "model_b"
    assert pairwise_winner(None, "B") == "tie"


def test_single_scores_use_the_reference(fake, tmp_path):
    rc, out = _run(fake, tmp_path, "--mode", "single")
    assert rc == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert rows[0] == {"prompt": "What is 2 + 2?", "big": 9.0, "small": 4.0}
    judged = [r["messages"][0]["content"] for r in fake.requests if r["model"] == "judge"]
    assert any("[The Start of Reference Answer]\n4\n" in c for c in judged)


def test_sdk_retries_and_failed_prompts(fake, tmp_path, capsys):
    fake.fail_next = 2
    rc, out = _run(fake, tmp_path, "--concurrency", "1", prompts=[{"prompt": "one"}])
    assert rc == 0 and len(out.read_text().splitlines()) == 1
    fake.fail_next = 100
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "two"}\n')
    rc, _ = _run(fake, tmp_path, "--max-retries", "0")
    assert rc == 1
    err = capsys.readouterr().err
    assert "1 prompt(s) failed" in err and "run the same command again" in err


def test_bad_inputs_are_one_line_errors(fake, tmp_path, capsys):
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "ok"}\n{"prompt": \n')
    assert _run(fake, tmp_path)[0] == 2
    assert "prompts.jsonl:2: invalid JSON" in capsys.readouterr().err
    bad = tmp_path / "j.txt"
    bad.write_text("Judge {question} please")
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "ok"}\n')
    assert _run(fake, tmp_path, "--judge-prompt", str(bad))[0] == 2
    assert "lacks {answer_a}, {answer_b}" in capsys.readouterr().err
    assert _run(fake, tmp_path, "--price", "big=cheap")[0] == 2
    assert "--price expects MODEL=IN,OUT" in capsys.readouterr().err
    assert fake.requests == []


def test_missing_openai_sdk_is_one_line_with_the_install_hint(fake, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openai", None)  # import openai -> ImportError
    assert _run(fake, tmp_path)[0] == 2
    err = capsys.readouterr().err
    assert "pip install 'routekit[openai]'" in err and fake.requests == []
