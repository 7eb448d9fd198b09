"""Route OpenAI chat calls between a strong and a weak model, two ways.

1. In process, no server: ``RoutingOpenAI`` looks like ``openai.OpenAI`` for chat completions.
2. Through the routing server: start it, then point the stock ``openai`` client at it.

    pip install 'routekit[server]'
    # strong = OpenAI, weak = a local Ollama (any OpenAI-compatible endpoint works)
    export OPENAI_API_KEY=...
    python examples/openai_drop_in.py                     # in-process
    routekit serve --router mf --strong-model gpt-4o --weak-model llama3.1 \
        --weak-base-url http://127.0.0.1:11434/v1 &
    python examples/openai_drop_in.py --server http://127.0.0.1:6060/v1

Without reachable upstreams it still prints each routing decision (``--dry-run``).
"""

import argparse
import os

from routekit.client import RoutingOpenAI
from routekit.server.wire import Upstream

PROMPTS = ["hi, how are you?", "Prove that there are infinitely many primes.",
           "Write a Rust function that parses ISO-8601 durations, with tests."]
MODEL = "router-mf-p30"  # the mf router, threshold calibrated to send ~30 % of traffic to the strong model


def in_process(args):
    client = RoutingOpenAI(
        strong=Upstream(args.strong_model, args.strong_base_url),
        weak=Upstream(args.weak_model, args.weak_base_url),
        routers=["mf"], aliases={"auto": MODEL})
    for p in PROMPTS:
        messages = [{"role": "user", "content": p}]
        if args.dry_run:
            d = client.route(messages, model="auto")
            print(f"{d.route:6} win_rate={d.win_rate:.3f} threshold={d.threshold:.3f}  {p!r}")
            continue
        r = client.chat.completions.create(model="auto", messages=messages, max_tokens=200)
        print(f"[{r.routekit['route']} -> {r.routekit['model']}, win rate {r.routekit['win_rate']:.3f}]")
        print(r.choices[0].message.content, "\n")


def via_server(args):
    import openai

    client = openai.OpenAI(base_url=args.server, api_key=os.environ.get("ROUTEKIT_API_KEY", "unused"))
    for p in PROMPTS:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": p}], max_tokens=200)
        print(f"[{raw.headers['x-routekit-route']} -> {raw.headers['x-routekit-model']}, "
              f"win rate {raw.headers['x-routekit-win-rate']}]")
        print(raw.parse().choices[0].message.content, "\n")
    # streaming works the same way; the first chunk carries a `routekit` field
    for chunk in client.chat.completions.create(model=MODEL, stream=True,
                                                messages=[{"role": "user", "content": "Count to five."}]):
        if chunk.choices and chunk.choices[0].delta.content:
            print(chunk.choices[0].delta.content, end="", flush=True)
    print()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", help="base URL of a running `routekit serve` (…/v1)")
    ap.add_argument("--dry-run", action="store_true", help="only print routing decisions")
    ap.add_argument("--strong-model", default="gpt-4o")
    ap.add_argument("--strong-base-url", default=None)
    ap.add_argument("--weak-model", default="llama3.1")
    ap.add_argument("--weak-base-url", default="http://127.0.0.1:11434/v1")
    a = ap.parse_args()
    via_server(a) if a.server else in_process(a)
