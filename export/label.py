"""``routekit-export label``: answers from both models plus an LLM judge's verdict -> a label file for ``fit``.

For every prompt of a prompt file, ask the strong and the weak model (any OpenAI-compatible
endpoints, via the ``openai`` SDK), then a judge model:

* ``--mode pairwise`` (default): the judge compares the two answers **twice, in both orders**
  (position bias cancels: a model wins only if it wins both ways; a split is a tie) and the output
  rows are battles ``{prompt, model_a: strong, model_b: weak, winner}``;
* ``--mode single``: the judge rates each answer 1-10, guided by the row's ``reference`` answer when
  the prompt file has one (as MT-Bench does for maths and reasoning); rows are
  ``{prompt, <strong>: score, <weak>: score}``.

The judge prompts are plain files shipped with the package (``judges/pairwise.txt``,
``judges/single.txt``; placeholders ``{question}``, ``{answer_a}``, ``{answer_b}``, ``{answer}``,
``{reference}``); copy one, edit it and pass ``--judge-prompt``.  Every call's result is kept in a
SQLite cache keyed by (endpoint, model, sampling settings, messages), so an interrupted run resumes
where it stopped and changing the judge prompt re-asks only the judge.  Calls run on a bounded
thread pool (``--concurrency``) with the SDK's retries (``--max-retries``, with backoff); token counts
(and costs, with ``--price MODEL=IN,OUT`` in USD per million tokens) are printed at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sqlite3
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from routekit.cli.common import Command

JUDGES = Path(__file__).resolve().parent / "judges"
PAIRWISE_VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")
SINGLE_VERDICT = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")


class LabelToolError(ValueError):
    """Bad options or input for ``label`` (one line for the CLI)."""


@dataclass
class Endpoint:
    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    _client: object = field(default=None, repr=False)

    def client(self, max_retries: int, timeout: float):
        if self._client is None:
            import openai

            self._client = openai.OpenAI(base_url=self.base_url, api_key=os.environ.get(self.api_key_env) or "none",
                                         max_retries=max_retries, timeout=timeout)
        return self._client


class Cache:
    """call key -> {"text", "usage"} in one SQLite file (thread-safe, committed per call)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), check_same_thread=False)
        self.db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self.db.commit()
        self.lock = threading.Lock()

    def get(self, key: str) -> dict | None:
        with self.lock:
            row = self.db.execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict) -> None:
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO calls VALUES (?, ?)", (key, json.dumps(value)))
            self.db.commit()

    def close(self) -> None:
        self.db.close()


class Caller:
    """Chat calls through the cache, with token counts per model."""

    def __init__(self, cache: Cache, *, max_tokens: int, temperature: float, max_retries: int, timeout: float):
        self.cache, self.max_tokens, self.temperature = cache, max_tokens, temperature
        self.max_retries, self.timeout = max_retries, timeout
        self.usage: dict[str, dict[str, int]] = {}
        self.lock = threading.Lock()

    def _count(self, model: str, usage: dict, cached: bool) -> None:
        with self.lock:
            u = self.usage.setdefault(model, {"calls": 0, "cached": 0, "prompt_tokens": 0, "completion_tokens": 0})
            u["cached" if cached else "calls"] += 1
            if not cached:
                u["prompt_tokens"] += int(usage.get("prompt_tokens") or 0)
                u["completion_tokens"] += int(usage.get("completion_tokens") or 0)

    def chat(self, ep: Endpoint, content: str, *, max_tokens: int | None = None) -> str:
        params = {"model": ep.model, "messages": [{"role": "user", "content": content}],
                  "max_tokens": max_tokens or self.max_tokens, "temperature": self.temperature}
        key = hashlib.sha256(json.dumps([ep.base_url, params], sort_keys=True).encode()).hexdigest()
        hit = self.cache.get(key)
        if hit is not None:
            self._count(ep.model, hit.get("usage") or {}, True)
            return hit["text"]
        r = ep.client(self.max_retries, self.timeout).chat.completions.create(**params)
        text = (r.choices[0].message.content or "") if r.choices else ""
        usage = {"prompt_tokens": getattr(r.usage, "prompt_tokens", 0) or 0,
                 "completion_tokens": getattr(r.usage, "completion_tokens", 0) or 0} if r.usage else {}
        self.cache.put(key, {"text": text, "usage": usage})
        self._count(ep.model, usage, False)
        return text


def fill(template: str, **values: str) -> str:
    """Replace ``{name}`` placeholders (other braces in the template are left alone)."""
    for k, v in values.items():
        template = template.replace("{" + k + "}", v)
    return template


def pairwise_winner(v_ab: str | None, v_ba: str | None) -> str:
    """Combine the verdicts of both orders (strong shown as A first, then as B) into model_a/model_b/tie
    (model_a = strong): a side wins only when it wins in both orders."""
    first = {"A": "strong", "B": "weak", "C": "tie"}.get(v_ab or "", "tie")
    second = {"A": "weak", "B": "strong", "C": "tie"}.get(v_ba or "", "tie")
    if first == second == "strong":
        return "model_a"
    if first == second == "weak":
        return "model_b"
    return "tie"


def _last(regex: re.Pattern, text: str) -> str | None:
    found = regex.findall(text or "")
    return found[-1] if found else None


def label_one(row: dict, caller: Caller, strong: Endpoint, weak: Endpoint, judge: Endpoint, mode: str,
              template: str, judge_max_tokens: int) -> dict:
    q = row["prompt"]
    a_s, a_w = caller.chat(strong, q), caller.chat(weak, q)
    if mode == "pairwise":
        v1 = _last(PAIRWISE_VERDICT, caller.chat(judge, fill(template, question=q, answer_a=a_s, answer_b=a_w),
                                                 max_tokens=judge_max_tokens))
        v2 = _last(PAIRWISE_VERDICT, caller.chat(judge, fill(template, question=q, answer_a=a_w, answer_b=a_s),
                                                 max_tokens=judge_max_tokens))
        return {"prompt": q, "model_a": strong.model, "model_b": weak.model, "winner": pairwise_winner(v1, v2),
                "verdicts": [v1, v2]}
    ref = str(row.get("reference") or "(none given)")
    out = {"prompt": q}
    for ep, ans in ((strong, a_s), (weak, a_w)):
        v = _last(SINGLE_VERDICT, caller.chat(judge, fill(template, question=q, answer=ans, reference=ref),
                                              max_tokens=judge_max_tokens))
        if v is None:
            raise LabelToolError(f"the judge gave no 'Rating: [[n]]' for {ep.model}'s answer")
        out[ep.model] = min(10.0, max(1.0, float(v)))
    return out


def read_prompt_rows(path: Path) -> list[dict]:
    """``.jsonl`` rows with ``prompt`` (and optional ``reference``), or plain text one prompt per line."""
    if not path.is_file():
        raise LabelToolError(f"{path}: no such prompt file")
    if path.suffix.lower() != ".jsonl":
        return [{"prompt": line} for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    from .rows import (
        read_jsonl,  # the toolchain's JSONL reader: file:line errors for bad JSON / non-objects
    )

    rows = []
    for i, r in read_jsonl(path):
        if not isinstance(r.get("prompt"), str):
            raise LabelToolError(f"{path}:{i}: needs an object with a string 'prompt'")
        rows.append(r)
    return rows


def parse_prices(items: list[str]) -> dict[str, tuple[float, float]]:
    out = {}
    for item in items:
        model, sep, rest = item.rpartition("=")
        try:
            pin, pout = (float(x) for x in rest.split(","))
        except ValueError:
            raise LabelToolError(f"--price expects MODEL=IN,OUT (USD per million tokens), got {item!r}") from None
        if not sep or not model:
            raise LabelToolError(f"--price expects MODEL=IN,OUT, got {item!r}")
        out[model] = (pin, pout)
    return out


def run(args) -> dict:
    from routekit.errors import require
    from routekit.progress import progress

    require("openai", "openai", "routekit-export label")  # before any work: one clear line if missing
    if args.mode not in ("pairwise", "single"):
        raise LabelToolError(f"--mode must be pairwise or single, got {args.mode!r}")
    if args.concurrency < 1:
        raise LabelToolError(f"--concurrency must be at least 1, got {args.concurrency}")
    from routekit.io import check_output

    out = check_output(args.out, inputs=[args.prompts], what="--out")
    rows = read_prompt_rows(args.prompts)[:args.limit]
    template_path = args.judge_prompt or JUDGES / f"{args.mode}.txt"
    template = Path(template_path).read_text(encoding="utf-8")
    needed = ("{question}", "{answer_a}", "{answer_b}") if args.mode == "pairwise" else ("{question}", "{answer}")
    missing = [p for p in needed if p not in template]
    if missing:
        raise LabelToolError(f"{template_path}: the {args.mode} judge prompt lacks {', '.join(missing)}")
    prices = parse_prices(args.price)
    base = args.base_url
    strong = Endpoint(args.strong_model, args.strong_base_url or base, args.strong_api_key_env or args.api_key_env)
    weak = Endpoint(args.weak_model, args.weak_base_url or base, args.weak_api_key_env or args.api_key_env)
    judge = Endpoint(args.judge_model, args.judge_base_url or base, args.judge_api_key_env or args.api_key_env)
    cache = Cache(Path(args.cache or out.with_name(out.name + ".cache.sqlite")))
    caller = Caller(cache, max_tokens=args.max_tokens, temperature=args.temperature,
                    max_retries=args.max_retries, timeout=args.timeout)
    results: list[dict | None] = [None] * len(rows)
    failed: list[tuple[int, str]] = []
    try:
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            futs = {pool.submit(label_one, r, caller, strong, weak, judge, args.mode, template,
                                args.judge_max_tokens): i for i, r in enumerate(rows)}
            for fut in progress(as_completed(futs), total=len(futs), desc="labelling", unit="prompt"):
                i = futs[fut]
                try:
                    results[i] = fut.result()
                except Exception as exc:  # noqa: BLE001 - one failed prompt must not lose the others
                    failed.append((i, f"{type(exc).__name__}: {exc}"))
    finally:
        cache.close()
    done = [r for r in results if r is not None]
    from routekit.io import atomic_write

    with atomic_write(out) as fh:
        for r in done:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    cost = {}
    for m, u in caller.usage.items():
        if m in prices:
            cost[m] = round((u["prompt_tokens"] * prices[m][0] + u["completion_tokens"] * prices[m][1]) / 1e6, 6)
    return {"out": str(args.out), "labelled": len(done), "failed": failed, "usage": caller.usage, "cost_usd": cost,
            "rows": len(rows)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompts", type=Path, required=True, help=".jsonl with 'prompt' (+ optional 'reference') "
                                                                "or a text file, one prompt per line")
    p.add_argument("--strong-model", required=True, help="the strong model's name at its endpoint")
    p.add_argument("--weak-model", required=True, help="the weak model's name at its endpoint")
    p.add_argument("--judge-model", required=True, help="the judge model's name at its endpoint")
    p.add_argument("--out", type=Path, required=True, help="label file to write (JSONL that `fit --labels` reads)")
    p.add_argument("--mode", choices=("pairwise", "single"), default="pairwise",
                   help="pairwise: compare both answers in both orders; single: rate each 1-10 (reference-guided)")
    p.add_argument("--judge-prompt", type=Path, default=None,
                   help=f"judge prompt file (default: the shipped {JUDGES.name}/<mode>.txt; copy and edit it)")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint for all three (default: the SDK's)")
    for role in ("strong", "weak", "judge"):
        p.add_argument(f"--{role}-base-url", default=None,
                       help=f"endpoint of the {role} model (default: --base-url)")
        p.add_argument(f"--{role}-api-key-env", default=None,
                       help=f"variable with the {role} endpoint's key (default: --api-key-env)")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="variable holding the API key")
    p.add_argument("--cache", type=Path, default=None, help="SQLite cache of every call (default: OUT.cache.sqlite)")
    p.add_argument("--concurrency", type=int, default=8, help="prompts in flight at once")
    p.add_argument("--max-retries", type=int, default=4, help="SDK retries per call (exponential backoff)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per call")
    p.add_argument("--max-tokens", type=int, default=1024, help="answer length limit")
    p.add_argument("--judge-max-tokens", type=int, default=512, help="verdict length limit")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature of the answers")
    p.add_argument("--price", action="append", default=[], metavar="MODEL=IN,OUT",
                   help="USD per million input,output tokens, for the cost summary (repeatable; default: no cost)")
    p.add_argument("--limit", type=int, default=None, help="label only the first N prompts (default: all)")


def run_cli(args) -> int:
    from routekit.errors import RoutekitError

    try:
        res = run(args)
    except (LabelToolError, RoutekitError, OSError) as exc:
        print(f"routekit-export: error: {exc}", file=sys.stderr)
        return 2
    print(f"labelled {res['labelled']} of {res['rows']} prompts -> {res['out']}", file=sys.stderr)
    for i, why in res["failed"][:10]:
        print(f"  prompt {i + 1} failed: {why}", file=sys.stderr)
    if res["failed"]:
        print(f"{len(res['failed'])} prompt(s) failed; run the same command again to retry them "
              "(finished calls come from the cache)", file=sys.stderr)
    print(f"{'model':<32} {'calls':>6} {'cached':>7} {'in tokens':>10} {'out tokens':>11} {'USD':>9}", file=sys.stderr)
    for m, u in res["usage"].items():
        usd = res["cost_usd"].get(m)
        print(f"{m:<32} {u['calls']:>6} {u['cached']:>7} {u['prompt_tokens']:>10} {u['completion_tokens']:>11} "
              f"{'' if usd is None else format(usd, '.4f'):>9}", file=sys.stderr)
    if res["cost_usd"]:
        print(f"total cost: {sum(res['cost_usd'].values()):.4f} USD (new calls only)", file=sys.stderr)
    return 1 if res["failed"] else 0


COMMAND = Command('label', "answers from both models + an LLM judge's verdicts -> a label file for `fit` (OpenAI-compatible endpoints; pip install 'routekit[openai]')", add_arguments, run_cli)
