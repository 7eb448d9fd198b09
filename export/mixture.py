"""Extra training sources for the linear head: everyday prompts, code reasoning, maths word problems.

The pair labels in ``golden.jsonl`` / ``multi_model_scores.jsonl`` are exam questions (MMLU, ARC,
Winogrande, MBPP) and 300 Arena prompts: nothing there looks like everyday traffic, so a head fitted
on them alone extrapolates ("short = hard") and ranks greetings above proofs. These sources add the
*kind of task* signal, each with a documented label:

``everyday``  ``export/data/everyday_train.jsonl``: 222 short everyday prompts written for routekit
              (greetings, thanks, quick facts, conversions, one-line rewrites / translations, simple
              recipes, how-tos, definitions, suggestions).  Label: a tie (gain 0, difficulty 0) —
              any chat model answers them correctly.  Worded apart from the everyday dev suite
              (``routekit/suites/everyday.jsonl``), which is never trained on.
``crux``      ZeroEval CRUXEval-O (``train/extra/zeroeval_scores.jsonl``, Apache-2.0 repo / MIT data):
              per-item correctness of gpt-4-turbo-2024-04-09 (the closest GPT-4 Turbo there) and
              Mixtral-8x7B-Instruct; difficulty = share of the 48 models that fail.  The fixed ZeroEval
              answer-format instruction is cut off: the router sees the bare question, as a user sends it.
``math-l5``   ZeroEval MATH level 5: gpt-4-turbo-2024-04-09 vs gpt-3.5-turbo-0125 (Mixtral is absent
              there; gpt-3.5-turbo-0125 is the nearest weak-class model on CRUX, 0.55 vs Mixtral 0.45).
``arena-human`` Chatbot Arena human votes (``train/extra/arena_human_1k.jsonl``, Apache-2.0 repo;
              31 models of 2023, none of them the pair).  Label per prompt: the mean outcome for the
              *stronger* model over its battles (+1 win, −1 loss, 0 tie or "tie (bothbad)"), counting
              only battles whose Bradley–Terry strengths (fitted on these votes, ties half) differ by
              at least :data:`ARENA_MIN_GAP`; a proxy for "does a stronger model help here".
``gsm8k-train`` GSM8K *train* questions (``unlabelled/``, no model answers): a prior gain of
              :data:`GSM8K_PRIOR_GAIN` for every question, from the published GSM8K accuracies of the
              pair (GPT-4 technical report 92.0 %, Mixtral paper 74.4 %).  A constant label cannot rank
              questions *within* GSM8K; it tells the head where multi-step word problems sit relative
              to everything else.
``length``    ``export/data/length_train.jsonl``: 340 prompts written for routekit (README there), 170
              long easy requests (a pasted text or code with a routine instruction: summarise,
              translate, proofread, extract ...) and 170 short hard ones (proofs, contest maths,
              algorithms, concurrency, expert questions), labelled by the length suite's rule
              (``routekit/suites/README.md``).  Label: ``trivial`` a tie (gain 0, difficulty 0), as
              ``everyday``: a weak-class model does the whole task; ``hard`` a gain of
              :data:`LENGTH_HARD_GAIN` (the strong model right, the weak one wrong), difficulty unknown.
              They exist to break the length shortcut: without them every long training prompt is an
              exam passage or a long spec and every short one a question.
``paste``     :data:`PASTE_ROWS` long easy requests composed at training time: one of the 57 routine
              instructions of ``export/data/paste_instructions.jsonl`` (written for routekit: summarise,
              translate, proofread, reformat, extract, classify, document code, shorten, change the
              tone, look something up in the text) put before or after a pasted body of 350–1,000
              characters: the text of a ``length`` row without its instruction, a long MMLU
              gold-train question, a few GSM8K train questions, or a few CRUXEval functions (the
              instruction's ``kind``: text or code).  Label: a tie (gain 0, difficulty 0), the length
              suite's rule for routine work on a given text.  The same bodies appear elsewhere in
              training as questions with their own labels, so the head has to learn the difference
              from the instruction, not from the body or its length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import data as D

EVERYDAY_TRAIN = Path(__file__).resolve().parent / "data" / "everyday_train.jsonl"
#: Everyday prompts for calibration only (``build.traffic_mix``): written for routekit, never trained
#: on, and worded apart from both the training prompts and the dev suite (MiniLM cosine <= 0.85 to
#: every prompt of each).  The head is fitted to score its own training prompts as ties, so
#: calibrating on those would put the default threshold too low for everyday prompts it has not seen.
LENGTH_TRAIN = Path(__file__).resolve().parent / "data" / "length_train.jsonl"
#: Gain label of a ``hard`` length_train row: "the strong model gains", scaled down from a full +1 (chosen
#: by cross-validation with the row weight, docs/quality.md "Round 3": at +1 the 170 short expert
#: questions teach "expert topic = +1" and the MMLU proxy fell from 0.63 to 0.54; at 0.3 it costs 0.03).
LENGTH_HARD_GAIN = 0.3
EVERYDAY_CALIB = Path(__file__).resolve().parent / "data" / "everyday_calib.jsonl"
#: Long easy requests (a pasted document or code + a routine instruction), written for the calibration
#: mix only: never trained on, MiniLM cosine <= 0.85 to every training and dev-suite prompt.
LONG_EASY_CALIB = Path(__file__).resolve().parent / "data" / "long_easy_calib.jsonl"
PASTE_INSTRUCTIONS = Path(__file__).resolve().parent / "data" / "paste_instructions.jsonl"
PASTE_ROWS = 600
PASTE_SEED = 0
#: GSM8K train questions (positions in the fixed order) used as pasted bodies: after any training draw
#: of up to 3,000 questions, before the calibration mix's last 250
PASTE_GSM8K = slice(3000, -250)
_CRUX_CODE = re.compile(r"\[PYTHON\]\s*(.*?)\s*\nassert ", re.S)
#: One fixed order of the GSM8K train questions: training draws its head, the calibration mix its tail.
GSM8K_SEED = 0
GSM8K_PRIOR_GAIN = 0.92 - 0.744
ZEROEVAL_STRONG = "gpt-4-turbo-2024-04-09"
ZEROEVAL_WEAK = {"crux": D.WEAK, "math-l5": "gpt-3.5-turbo-0125"}
SOURCES = ("everyday", "crux", "math-l5", "arena-human", "gsm8k-train", "length", "paste")
ARENA_MIN_GAP = 0.5  # natural-log BT units: the stronger model wins ~62 % of votes against the weaker
_QUESTION = re.compile(r"## Question:\s*(.*?)\s*## Instruction", re.S)


@dataclass(frozen=True)
class Row:
    prompt: str
    source: str  # short name, one of SOURCES
    strong: float
    weak: float
    difficulty: float  # NaN = unknown
    origin: str  # file / data set it came from
    license: str


def zeroeval_question(prompt: str) -> str:
    """The bare question inside ZeroEval's answer-format template (the prompt itself if none)."""
    m = _QUESTION.search(prompt)
    return m.group(1).strip() if m else prompt


def _everyday(path: Path = EVERYDAY_TRAIN):
    for _, r in D.read_jsonl(path, ("prompt",)):
        yield Row(r["prompt"], "everyday", 0.0, 0.0, 0.0, "routekit export/data/everyday_train.jsonl (written "
                  "for routekit; label: tie)", "Apache-2.0")


def _length(path: Path = LENGTH_TRAIN):
    for _, r in D.read_jsonl(path, ("prompt", "side")):
        hard = r["side"] == "hard"
        yield Row(r["prompt"], "length", LENGTH_HARD_GAIN if hard else 0.0, 0.0, np.nan if hard else 0.0,
                  "routekit export/data/length_train.jsonl (written for routekit; label: trivial a tie, "
                  "hard a strong gain)", "Apache-2.0")


def _zeroeval(data_dir: Path, wanted: set[str]):
    path = data_dir / "train" / "extra" / "zeroeval_scores.jsonl"
    for lineno, r in D.read_jsonl(path, ("prompt", "scores", "source")):
        short = r["source"].split("/")[-1]
        if short not in wanted:
            continue
        sc = r["scores"]
        if not isinstance(sc, dict):
            raise D.DataError(f"{path}:{lineno}: scores must be an object")
        s, w = sc.get(ZEROEVAL_STRONG), sc.get(ZEROEVAL_WEAK[short])
        if s is None or w is None:
            continue
        yield Row(zeroeval_question(r["prompt"]), short, float(s), float(w),
                  1.0 - float(np.mean([float(v) for v in sc.values()])), f"zeroeval/{short}",
                  r.get("license", "unknown"))


def _arena_human(data_dir: Path):
    from routekit.routers.sw.bradley_terry import bt_fit

    path = data_dir / "train" / "extra" / "arena_human_1k.jsonl"
    rows = list(D.battle_rows(path, allow_noncommercial=True))
    models = sorted({m for r in rows for m in (r.model_a, r.model_b)})
    idx = {m: i for i, m in enumerate(models)}
    wins = np.zeros((len(models), len(models)))
    for r in rows:
        a, b, y = idx[r.model_a], idx[r.model_b], r.outcome  # both ties: half
        wins[a, b] += y
        wins[b, a] += 1.0 - y
    theta = bt_fit(wins, ridge=1e-3)
    per: dict[str, list[float]] = {}
    for r in rows:
        a, b = idx[r.model_a], idx[r.model_b]
        if abs(theta[a] - theta[b]) < ARENA_MIN_GAP:
            continue
        y = 2.0 * r.outcome - 1.0  # a wins 1, b wins -1, tie 0
        per.setdefault(r.prompt, []).append(y if theta[a] > theta[b] else -y)
    lic = rows[0].license if rows else "unknown"
    for prompt, ys in per.items():
        yield Row(prompt, "arena-human", float(np.mean(ys)), 0.0, np.nan, "arena_human_1k (Chatbot Arena votes)", lic)


def gsm8k_questions(data_dir: Path) -> list[dict]:
    """The GSM8K train question rows in the fixed :data:`GSM8K_SEED` order ([] if the file is absent)."""
    path = Path(data_dir) / FILES["gsm8k-train"]
    if not path.is_file():
        return []
    rows = [r for _, r in D.read_jsonl(path, ("prompt",))]
    return [rows[i] for i in np.random.default_rng(GSM8K_SEED).permutation(len(rows))]


def _gsm8k(data_dir: Path, limit: int):
    for r in gsm8k_questions(data_dir)[:limit]:
        yield Row(r["prompt"], "gsm8k-train", GSM8K_PRIOR_GAIN, 0.0, np.nan,
                  "gsm8k-train (unlabelled; prior gain from published accuracies)", r.get("license", "unknown"))


def _paste_bodies(data_dir: Path) -> dict[str, list[str]]:
    """The pools pasted bodies come from: ``length`` (length rows' texts without their instruction) and
    ``mmlu`` (long gold-train questions) are whole bodies; ``gsm8k`` (train questions) and ``crux``
    (CRUXEval functions, the only code) are items :func:`paste_rows` joins into one body."""
    texts = []
    for _, r in D.read_jsonl(LENGTH_TRAIN, ("prompt", "side")):
        head, sep, body = r["prompt"].partition("\n\n")
        if r["side"] == "trivial" and sep and len(head) < 200 and len(body) >= 300:
            texts.append(body.strip())
    golden = data_dir / "train" / "golden.jsonl"
    mmlu = [r.prompt for r in D.golden_rows(golden)
            if D.MMLU in r.source and len(r.prompt) >= 450] if golden.is_file() else []
    gsm = [r["prompt"] for r in gsm8k_questions(data_dir)[PASTE_GSM8K]]
    zero = data_dir / FILES["crux"]
    crux = []
    if zero.is_file():
        for _, r in D.read_jsonl(zero, ("prompt", "source")):
            m = _CRUX_CODE.search(r["prompt"]) if r["source"].endswith("crux") else None
            if m:
                crux.append(m.group(1))
    return {"length": texts, "mmlu": mmlu, "gsm8k": gsm, "crux": crux}


def paste_rows(data_dir: Path, n: int = PASTE_ROWS, seed: int = PASTE_SEED) -> list[str]:
    """The ``paste`` source's prompts (deterministic for a data folder, ``n`` and ``seed``)."""
    instr = [r for _, r in D.read_jsonl(PASTE_INSTRUCTIONS, ("kind", "instruction"))]
    b = _paste_bodies(Path(data_dir))
    rng = np.random.default_rng(seed)
    text_pools = [(p, w) for p, w in ((b["length"], 0.4), (b["mmlu"], 0.2)) if p]
    if b["gsm8k"]:
        text_pools.append(("gsm8k", 0.4))

    def joined(items: list[str]) -> str:
        want, parts = rng.integers(350, 1000), []
        while sum(map(len, parts)) < want:
            parts.append(items[rng.integers(len(items))])
        return "\n\n".join(parts)

    def body(kind: str) -> str | None:
        if kind == "code":
            return joined(b["crux"]) if b["crux"] else None
        if not text_pools:
            return None
        w = np.array([x[1] for x in text_pools])
        pool = text_pools[rng.choice(len(text_pools), p=w / w.sum())][0]
        return joined(b["gsm8k"]) if pool == "gsm8k" else pool[rng.integers(len(pool))]

    out = []
    for i in range(n):
        r = instr[i % len(instr)]
        kind = r["kind"] if r["kind"] != "any" else ("code", "text")[rng.integers(2)]
        text = body(kind)
        if text is None:
            continue
        ins = r["instruction"]
        if rng.random() < 0.7:
            out.append(ins + ("\n\n", "\n\n---\n", "\n")[rng.integers(3)] + text)
        else:
            out.append(text + "\n\n" + ins)
    return out


def _paste(data_dir: Path):
    for prompt in paste_rows(data_dir):
        yield Row(prompt, "paste", 0.0, 0.0, 0.0, "routekit paste rows (export/data/paste_instructions.jsonl "
                  "instructions + pasted bodies from length_train, MMLU gold-train, GSM8K train, CRUXEval; "
                  "label: tie)", "Apache-2.0 (instructions, length_train and MMLU gold-train bodies); GSM8K and CRUXEval "
                  "bodies: MIT (not verified here)")


#: data file of each source, relative to the data folder (None: shipped with the toolchain)
FILES = {"everyday": None, "length": None, "paste": None, "crux": "train/extra/zeroeval_scores.jsonl",
         "math-l5": "train/extra/zeroeval_scores.jsonl", "arena-human": "train/extra/arena_human_1k.jsonl",
         "gsm8k-train": "unlabelled/gsm8k_train_questions.jsonl"}


def extra_rows(data_dir: Path, sources=SOURCES, *, gsm8k_limit: int = 1000, log=print) -> list[Row]:
    """Rows of the requested extra sources.  Unknown names raise DataError; a source whose file is
    not in ``data_dir`` is skipped with a message through ``log`` (a user's own data folder may
    hold only golden / battle files)."""
    unknown = set(sources) - set(SOURCES)
    if unknown:
        raise D.DataError(f"unknown extra training source(s) {sorted(unknown)}; known: {', '.join(SOURCES)}")
    data_dir = Path(data_dir)
    present = set()
    for name in sources:
        if FILES[name] is None or (data_dir / FILES[name]).is_file():
            present.add(name)
        else:
            log(f"extra training source {name!r} skipped: {data_dir / FILES[name]} not found")
    out: list[Row] = []
    if "everyday" in present:
        out.extend(_everyday())
    if "length" in present:
        out.extend(_length())
    if {"crux", "math-l5"} & present:
        out.extend(_zeroeval(data_dir, {"crux", "math-l5"} & present))
    if "arena-human" in present:
        out.extend(_arena_human(data_dir))
    if "gsm8k-train" in present and gsm8k_limit > 0:
        out.extend(_gsm8k(data_dir, gsm8k_limit))
    if "paste" in present:
        out.extend(_paste(data_dir))
    return out
