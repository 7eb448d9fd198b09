"""routekit.integrations.litellm driven by the real litellm package against a fake upstream on
127.0.0.1 (skipped where litellm is not installed: pip install 'routekit[litellm]')."""

import asyncio
import os
import time

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at litellm's import
litellm = pytest.importorskip("litellm", reason="needs the litellm extra: pip install 'routekit[litellm]'")
pytest.importorskip("fastapi", reason="the fake upstream needs the server extra")

from _fake_chat import _fake_upstream_app, running  # noqa: E402

import routekit  # noqa: E402
from routekit.loading import RouterCache  # noqa: E402
from routekit.server.wire import UnknownRouterError  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*ReadOnly.*:UserWarning")
PROMPTS = ["hi", "Prove that there are infinitely many primes.", "tell me a joke", "Design a lock-free queue in C++."]


def _key():
    try:
        from litellm.proxy._types import UserAPIKeyAuth

        return UserAPIKeyAuth(api_key="sk-test")
    except Exception:  # the proxy extra is not installed: the hook never looks at it
        return None


def test_pre_call_hook_routes_and_litellm_calls_the_chosen_model():
    from routekit.integrations.litellm import RoutekitHook

    hook = RoutekitHook(strong_model="big", weak_model="small", routers=["random"])
    assert isinstance(hook, litellm.integrations.custom_logger.CustomLogger)
    rnd = routekit.load("random")
    received = []
    with running(_fake_upstream_app(received)) as url:
        router = litellm.Router(model_list=[
            {"model_name": "big", "litellm_params": {"model": "openai/big-model", "api_base": f"{url}/strong/v1",
                                                     "api_key": "k"}},
            {"model_name": "small", "litellm_params": {"model": "openai/small-model", "api_base": f"{url}/weak/v1",
                                                       "api_key": "k"}}])

        async def go():
            seen = set()
            for p in PROMPTS:
                data = {"model": "router-random-0.5", "messages": [{"role": "user", "content": p}],
                        "metadata": {"user": "u1"}}
                data = await hook.async_pre_call_hook(_key(), None, data, "completion")
                want = rnd.route(p, threshold=0.5)
                assert data["model"] == ("big" if want.is_strong else "small")
                info = data["metadata"]["routekit"]
                assert info["route"] == want.route and info["win_rate"] == pytest.approx(want.win_rate)
                assert info["requested_model"] == "router-random-0.5" and data["metadata"]["user"] == "u1"
                r = await router.acompletion(model=data["model"], messages=data["messages"])
                side = "strong" if want.is_strong else "weak"
                assert r.choices[0].message.content == f"{side} says: {p}"
                seen.add(side)
            return seen

        assert asyncio.run(go()) == {"strong", "weak"}


def test_hook_passes_other_requests_through_and_refuses_unknown_routers():
    from routekit.integrations.litellm import RoutekitHook

    hook = RoutekitHook(strong_model="big", weak_model="small", routers=["random"], aliases={"cheap": "router-random-p0"})

    async def go():
        plain = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
        assert await hook.async_pre_call_hook(None, None, dict(plain), "completion") == plain
        emb = {"model": "router-random-0.5", "input": ["x"]}
        assert await hook.async_pre_call_hook(None, None, dict(emb), "aembedding") == emb
        cheap = await hook.async_pre_call_hook(None, None, {"model": "cheap", "messages": [{"role": "user", "content": "x"}]},
                                               "acompletion")
        assert cheap["model"] == "small"
        with pytest.raises(UnknownRouterError):
            await hook.async_pre_call_hook(None, None, {"model": "router-mf-0.5", "messages": []}, "completion")

    asyncio.run(go())


def test_async_picker_scores_off_the_event_loop():
    from routekit.integrations.litellm import make_async_picker

    class SlowRouter(type(routekit.load("random"))):
        def score(self, prompts):
            time.sleep(0.6)
            return super().score(prompts)

    cache = RouterCache(["random"])
    cache._routers["random"] = SlowRouter()
    pick = make_async_picker("big", "small", router="random", threshold=0.5, cache=cache)

    async def go():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.02)
                ticks += 1

        t = asyncio.create_task(ticker())
        d = await pick({"messages": [{"role": "user", "content": "hello"}]})
        t.cancel()
        return d, ticks

    d, ticks = asyncio.run(go())
    want = routekit.load("random").route("hello", threshold=0.5)
    assert d["model"] == ("big" if want.is_strong else "small") and d["win_rate"] == pytest.approx(want.win_rate)
    assert ticks >= 10  # the loop kept running during the 0.6 s of scoring
