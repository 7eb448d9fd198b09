"""Put routekit inside your own FastAPI service.

Two patterns:
* mount the ready-made OpenAI-compatible routing app under a prefix (``/router/v1/...``);
* call a router from your own endpoint, scoring in a worker thread so the event loop stays free.

    pip install 'routekit[server]'
    uvicorn examples.fastapi_service:app --host 127.0.0.1 --port 8000
    curl -s 127.0.0.1:8000/classify -H 'content-type: application/json' -d '{"text": "Prove Fermat'"'"'s little theorem"}'
    curl -s 127.0.0.1:8000/router/v1/route -H 'content-type: application/json' -d '{"prompt": "hi", "strong_fraction": 0.3}'
"""

from fastapi import FastAPI
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from routekit.server.app import ServerConfig, create_app
from routekit.server.wire import Upstream

routing_app = create_app(ServerConfig(
    routers={"mf": "mf"},
    strong=Upstream("gpt-4o"),  # api.openai.com with $OPENAI_API_KEY
    weak=Upstream("llama3.1", "http://127.0.0.1:11434/v1"),  # e.g. a local Ollama
    aliases={"auto": "router-mf-p30"},
))
# the same Router object the routing app uses (loaded once; Router objects are thread-safe)
router = routing_app.state.routers.get("mf")

app = FastAPI(title="my service")
app.mount("/router", routing_app)  # routers and upstream clients load on first use when mounted


class Text(BaseModel):
    text: str
    strong_fraction: float = 0.3


@app.post("/classify")
async def classify(body: Text):
    d = await run_in_threadpool(router.route, body.text, strong_fraction=body.strong_fraction)
    return {"needs_strong_model": d.is_strong, "win_rate": d.win_rate, "threshold": d.threshold}
