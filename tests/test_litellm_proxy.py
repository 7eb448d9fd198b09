"""Issue 30 item 3: routekit's hook inside a real LiteLLM proxy process.  The `litellm` proxy is
started on 127.0.0.1 with a config that loads routekit's hook (docs/integrations.md shows the same
config) and two fake OpenAI-compatible upstreams (tests/_fake_chat.py); easy and hard prompts go
through it and must reach the upstream the routekit router chose, with the decision in the
`x-routekit-*` response headers.  Those tests are slow (the proxy takes ~10-20 s to start); the
header hook itself is also checked in-process."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _fake_chat import free_port, stop_process, wait_for_port

MASTER_KEY = "sk-routekit-test-" + "0123456789abcdef" * 2
EASY = ["hi", "thanks!", "what's 2+2?", "tell me a joke"]
HARD = ["Prove that there are infinitely many primes, then generalise the argument to primes of the form 4k+3.",
        "Design a lock-free multi-producer multi-consumer queue in C++ and argue its linearizability.",
        "Derive the closed form of the Black-Scholes price of a European call from the PDE."]


def _litellm_cli() -> str:
    exe = Path(sys.executable).with_name("litellm")
    found = str(exe) if exe.exists() else shutil.which("litellm")
    if not found:
        pytest.skip("the litellm command is not installed (pip install 'routekit[dev]')")
    probe = subprocess.run([sys.executable, "-c", "import litellm.proxy.proxy_server"], capture_output=True,
                           text=True, env=_env(), timeout=120)
    if probe.returncode != 0:
        pytest.skip("the LiteLLM proxy's own dependencies are missing (pip install 'routekit[dev]'): "
                    + probe.stderr.strip().splitlines()[-1])
    return found


def _env() -> dict[str, str]:
    return dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", NO_DOCS="True", DISABLE_ADMIN_UI="True",
                LITELLM_DONT_SHOW_FEEDBACK_BOX="True", LITELLM_TELEMETRY="False")



CONFIG = """\
model_list:
  - model_name: big
    litellm_params: {{model: openai/big-model, api_base: "{url}/strong/v1", api_key: "k"}}
  - model_name: small
    litellm_params: {{model: openai/small-model, api_base: "{url}/weak/v1", api_key: "k"}}
litellm_settings:
  callbacks: routekit_hook.handler
general_settings:
  master_key: {key}
"""

HOOK = """\
from routekit.integrations.litellm import RoutekitHook

handler = RoutekitHook(strong_model="big", weak_model="small", routers=["default"])
"""


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    pytest.importorskip("fastapi", reason="the fake upstreams need the server extra")
    from _fake_chat import _fake_upstream_app, running

    cli = _litellm_cli()
    d = tmp_path_factory.mktemp("litellm")
    received: list = []
    with running(_fake_upstream_app(received)) as url:
        (d / "config.yaml").write_text(CONFIG.format(url=url, key=MASTER_KEY))
        (d / "routekit_hook.py").write_text(HOOK)
        port = free_port()
        log = open(d / "proxy.log", "wb")
        p = subprocess.Popen([cli, "--config", "config.yaml", "--host", "127.0.0.1", "--port", str(port)],
                             cwd=d, env=_env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            if not wait_for_port(port, p, 180, poll=0.2):
                pytest.fail("the LiteLLM proxy did not start:\n" + (d / "proxy.log").read_text()[-4000:])
            yield f"http://127.0.0.1:{port}", received
        finally:
            stop_process(p, 20)
            log.close()


@pytest.mark.slow
def test_prompts_reach_the_upstream_routekit_chose(proxy):
    import httpx

    import routekit

    url, received = proxy
    router = routekit.load("default")
    seen = set()
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {MASTER_KEY}"}) as c:
        for text in EASY + HARD:
            r = c.post("/v1/chat/completions", json={"model": "router-default", "messages": [
                {"role": "user", "content": text}]})
            assert r.status_code == 200, r.text
            want = router.route(text)
            side = "strong" if want.is_strong else "weak"
            assert r.json()["choices"][0]["message"]["content"] == f"{side} says: {text}"
            name, body = received[-1]
            assert name == side and body["model"] == ("big-model" if want.is_strong else "small-model")
            assert r.headers["x-routekit-route"] == want.route
            assert r.headers["x-routekit-model"] == ("big" if want.is_strong else "small")
            assert r.headers["x-routekit-router"] == want.router
            assert float(r.headers["x-routekit-win-rate"]) == pytest.approx(want.win_rate, abs=1e-6)
            assert float(r.headers["x-routekit-threshold"]) == pytest.approx(want.threshold, abs=1e-6)
            assert r.headers["x-routekit-requested-model"] == "router-default"
            seen.add(side)
    assert seen == {"strong", "weak"}, "the prompts all went one way; the test proved nothing about routing"


@pytest.mark.slow
def test_threshold_in_the_model_name_and_plain_models_pass_through(proxy):
    import httpx

    url, received = proxy
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {MASTER_KEY}"}) as c:
        for model, side in (("router-default-0", "strong"), ("router-default-1", "weak"), ("small", "weak")):
            r = c.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200, r.text
            assert received[-1][0] == side
            assert ("x-routekit-route" in r.headers) == model.startswith("router-")
        r = c.post("/v1/chat/completions", json={"model": "router-mf-0.5", "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code >= 400 and "not configured" in r.text  # a router the hook was not given


@pytest.mark.slow
def test_streaming_through_the_proxy(proxy):
    import httpx

    url, received = proxy
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {MASTER_KEY}"}) as c:
        r = c.post("/v1/chat/completions", json={"model": "router-default-0", "stream": True,
                                                 "messages": [{"role": "user", "content": "one two"}]})
        assert r.status_code == 200 and received[-1][0] == "strong"
        assert r.headers["x-routekit-route"] == "strong"
        assert "strong" in r.text and "[DONE]" in r.text


def test_header_hook_in_process():
    import asyncio

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    pytest.importorskip("litellm", reason="needs the litellm extra")
    import routekit
    from routekit.integrations.litellm import RoutekitHook

    hook = RoutekitHook(strong_model="big", weak_model="small", routers=["random"])

    async def go():
        data = {"model": "router-random-0.5", "messages": [{"role": "user", "content": "hello"}]}
        data = await hook.async_pre_call_hook(None, None, data, "acompletion")
        routed = await hook.async_post_call_response_headers_hook(data, None, None)
        plain = await hook.async_post_call_response_headers_hook({"model": "small", "metadata": {}}, None, None)
        return routed, plain

    routed, plain = asyncio.run(go())
    want = routekit.load("random").route("hello", threshold=0.5)
    assert plain is None
    assert routed == {"x-routekit-route": want.route, "x-routekit-model": "big" if want.is_strong else "small",
                      "x-routekit-router": want.router, "x-routekit-win-rate": f"{want.win_rate:.6f}",
                      "x-routekit-threshold": "0.500000", "x-routekit-requested-model": "router-random-0.5"}
