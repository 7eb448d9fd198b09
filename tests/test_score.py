"""Streaming `routekit score`: formats, kept columns, atomic publish, parts + resume, bad rows."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import routekit
from routekit.batch.score import ScoreJob, score_file
from routekit.cli import main

PROMPTS = ["hi", "Prove that there are infinitely many primes.", "Write a haiku about tea", "2+2?",
           "Explain the Krebs cycle in detail", "ok", "Translate 'cat' to French", "déjà vu ✓"]


@pytest.fixture()
def router(default_router):
    return default_router  # conftest's session-wide default router (loaded once)


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _rows(n=len(PROMPTS)):
    return [{"id": i, "prompt": PROMPTS[i % len(PROMPTS)], "meta": {"user": f"u{i}"}} for i in range(n)]


def test_jsonl_keeps_columns_and_matches_win_rates(tmp_path, router):
    inp = _jsonl(tmp_path / "in.jsonl", _rows())
    s = score_file(router, inp, tmp_path / "out.jsonl", batch_size=3)
    out = _read_jsonl(tmp_path / "out.jsonl")
    assert s.rows == len(PROMPTS) and s.strong == sum(r["route"] == "strong" for r in out)
    assert [r["id"] for r in out] == list(range(len(PROMPTS)))
    assert all(r["meta"] == {"user": f"u{r['id']}"} for r in out)
    rates = router.win_rates(PROMPTS)
    assert [r["win_rate"] for r in out] == [float(x) for x in rates]  # bit-identical through JSON
    thr = router.default_threshold
    assert all(r["threshold"] == thr and r["router"] == router.name for r in out)
    assert all(r["route"] == ("strong" if r["win_rate"] >= thr else "weak") for r in out)
    assert all(r["model"] == (router.strong_model if r["route"] == "strong" else router.weak_model) for r in out)


def test_csv_text_and_bare_strings(tmp_path, router):
    inp = tmp_path / "in.csv"
    with open(inp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "prompt", "note"])
        for i, p in enumerate(PROMPTS):
            w.writerow([i, p + ("\nsecond line" if i == 2 else ""), "x,y"])
    score_file(router, inp, tmp_path / "out.csv", threshold=0.5)
    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as f:
        out = list(csv.DictReader(f))
    assert list(out[0]) == ["id", "prompt", "note", "route", "model", "win_rate", "threshold", "router"]
    assert out[2]["prompt"].endswith("\nsecond line") and out[0]["note"] == "x,y"
    want = router.win_rates([r["prompt"] for r in out])
    assert [float(r["win_rate"]) for r in out] == [float(x) for x in want]
    assert {r["threshold"] for r in out} == {"0.5"}

    txt = tmp_path / "in.txt"
    txt.write_text("\n".join(PROMPTS[:3]) + "\n\n", encoding="utf-8")
    bare = _jsonl(tmp_path / "bare.jsonl", PROMPTS[:3])
    score_file(router, txt, tmp_path / "t.jsonl")
    score_file(router, bare, tmp_path / "b.jsonl")
    assert _read_jsonl(tmp_path / "t.jsonl") == _read_jsonl(tmp_path / "b.jsonl")
    assert [r["prompt"] for r in _read_jsonl(tmp_path / "t.jsonl")] == PROMPTS[:3]


def test_parquet_round_trip(tmp_path, router):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"id": pa.array(range(len(PROMPTS)), pa.int32()), "prompt": PROMPTS,
                      "score": [0.5] * len(PROMPTS)})
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=3)
    score_file(router, tmp_path / "in.parquet", tmp_path / "out.parquet", chunk_rows=2, batch_size=2)
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.schema.field("id").type == pa.int32()  # the input's column types are kept
    assert out.column_names == ["id", "prompt", "score", "route", "model", "win_rate", "threshold", "router"]
    assert out.column("win_rate").to_pylist() == [float(x) for x in router.win_rates(PROMPTS)]
    score_file(router, tmp_path / "in.parquet", tmp_path / "out.jsonl")
    assert [r["id"] for r in _read_jsonl(tmp_path / "out.jsonl")] == list(range(len(PROMPTS)))


def test_a_parquet_input_stream_is_closed_also_when_the_column_check_fails(tmp_path, monkeypatch):
    """The pyarrow input file (an object store stream: ParquetFile does not close what it is given)
    was never closed, not even when the column check refused the file."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    from routekit.batch import formats

    pq.write_table(pa.table({"id": list(range(5)), "prompt": PROMPTS[:5]}), tmp_path / "in.parquet", row_group_size=2)
    opened = []

    def stream(path):
        opened.append(pa.OSFile(str(path)))  # stands in for fs.open_input_file on s3://
        return opened[-1]

    monkeypatch.setattr(formats, "open_random_access", stream)
    with pytest.raises(routekit.BadInputError, match="no column 'text'"):
        formats.open_reader(tmp_path / "in.parquet", "parquet", "text")
    assert len(opened) == 1 and opened[0].closed
    reader = formats.open_reader(tmp_path / "in.parquet", "parquet", "prompt", chunk_rows=2)
    assert reader.count() == 5 and all(f.closed for f in opened)
    assert [r.prompt for r in reader.records(skip=1)] == PROMPTS[1:5]
    assert all(f.closed for f in opened)


def test_output_is_input_refused(tmp_path, capsys):
    inp = _jsonl(tmp_path / "in.jsonl", _rows())
    before = inp.read_bytes()
    link = tmp_path / "link.jsonl"
    link.symlink_to(inp)
    for out in (inp, link):
        assert main(["score", "--input", str(inp), "--output", str(out)]) == 2
        assert "same file as the input" in capsys.readouterr().err
    assert main(["score", "--input", str(link), "--output", str(inp)]) == 2
    assert inp.read_bytes() == before


@pytest.mark.parametrize("args, message", [
    (["--output", "{tmp}/missing/out.jsonl"], "does not exist"),
    (["--output", "{tmp}"], "is a folder"),
    (["--output", "/dev/full"], "not a regular file"),
    (["--batch-size", "0"], "batch_size must be an integer >= 1"),
    (["--batch-size", "-1"], "batch_size must be an integer >= 1"),
    (["--output", "{tmp}/o.jsonl", "--resume"], "resume needs a folder output"),
    (["--output", "{tmp}/o.parquet", "--input-format", "text"], None),
])
def test_refused_before_any_work(tmp_path, capsys, monkeypatch, args, message):
    inp = _jsonl(tmp_path / "in.jsonl", _rows())
    loaded = []
    monkeypatch.setattr("routekit.cli.common.load_router", lambda *a: loaded.append(a) or routekit.load("random"))
    rc = main(["score", "--input", str(inp), *[a.format(tmp=tmp_path) for a in args]])
    if message is None:
        assert rc == 0 and loaded  # control: a good command does load the router
        return
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.startswith("routekit: error:") and not loaded


def test_bad_rows_named_nothing_published(tmp_path, capsys):
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(b'{"prompt": "fine"}\n\n{"prompt": "caf\xe9"}\n{"prompt": "also fine"}\n')
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    assert main(["score", "--input", str(inp), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{inp}:3: invalid UTF-8" in err and "Traceback" not in err
    assert out.read_text() == "old\n" and sorted(os.listdir(tmp_path)) == ["in.jsonl", "out.jsonl"]
    for line, msg in [(b'{"prompt": \n', "invalid JSON"), (b'{"text": "x"}\n', "field 'prompt' is missing"),
                      (b'{"prompt": 3}\n', "not a string"), (b"[1]\n", "got list"),
                      (b"[" * 100_000 + b"\n", "invalid JSON")]:
        inp.write_bytes(b'{"prompt": "a"}\n' + line)
        assert main(["score", "--input", str(inp), "--output", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"{inp}:2: " in err and msg in err, err
    assert out.read_text() == "old\n"


def test_skip_bad_writes_rejected(tmp_path, router):
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(b'{"prompt": "a", "id": 1}\n{"prompt": nope}\n{"prompt": "b\xff"}\n{"prompt": "c", "id": 4}\n')
    s = score_file(router, inp, tmp_path / "out.jsonl", skip_bad=True)
    assert (s.rows, s.rejected) == (2, 2)
    assert [r["id"] for r in _read_jsonl(tmp_path / "out.jsonl")] == [1, 4]
    rej = _read_jsonl(tmp_path / "out.jsonl.rejected")
    assert [r["line"] for r in rej] == [2, 3]
    assert "invalid JSON" in rej[0]["error"] and rej[0]["raw"] == '{"prompt": nope}\n'
    assert "invalid UTF-8" in rej[1]["error"]
    csv_in = tmp_path / "in.csv"
    csv_in.write_text("id,prompt\n1,a\n2,b,extra\n3,c\n")
    s = score_file(router, csv_in, tmp_path / "c.jsonl", skip_bad=True)
    assert (s.rows, s.rejected) == (2, 1)
    assert _read_jsonl(tmp_path / "c.jsonl.rejected")[0]["line"] == 3


def test_interrupted_run_leaves_old_file(tmp_path, router, monkeypatch):
    inp = _jsonl(tmp_path / "in.jsonl", _rows(200))
    out = tmp_path / "out.jsonl"
    out.write_text("previous results\n")
    calls = []
    real = type(router).route_many

    def flaky(self, prompts, **kw):
        calls.append(len(prompts))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, prompts, **kw)

    monkeypatch.setattr(type(router), "route_many", flaky)
    with pytest.raises(KeyboardInterrupt) as exc:
        score_file(router, inp, out, batch_size=8, chunk_rows=32)
    assert "untouched" in " ".join(exc.value.__notes__)
    assert out.read_text() == "previous results\n" and sorted(os.listdir(tmp_path)) == ["in.jsonl", "out.jsonl"]


def test_sigterm_while_writing_keeps_old_file(tmp_path):
    inp = _jsonl(tmp_path / "in.jsonl", _rows(30_000))
    out = tmp_path / "out.jsonl"
    out.write_text("previous results\n")
    proc = subprocess.Popen([sys.executable, "-m", "routekit", "score", "--input", str(inp), "--output",
                             str(out), "--batch-size", "16"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:  # wait until the temp file has data
        tmp = [p for p in tmp_path.iterdir() if p.name.startswith(".out.jsonl.tmp")]
        if tmp and tmp[0].stat().st_size > 0:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "untouched" in err and "Traceback" not in err
    assert out.read_text() == "previous results\n" and sorted(os.listdir(tmp_path)) == ["in.jsonl", "out.jsonl"]


def test_folder_parts_success_and_resume(tmp_path, router, monkeypatch):
    inp = _jsonl(tmp_path / "in.jsonl", _rows(50))
    whole = tmp_path / "whole.jsonl"
    score_file(router, inp, whole)
    folder = tmp_path / "out"
    real, calls = type(router).route_many, []

    def counting(self, prompts, **kw):
        calls.append(len(prompts))
        if fail_at and len(calls) == fail_at:
            raise KeyboardInterrupt
        return real(self, prompts, **kw)

    monkeypatch.setattr(type(router), "route_many", counting)
    fail_at = 4
    opts = dict(part_rows=10, chunk_rows=5)
    with pytest.raises(KeyboardInterrupt) as exc:
        score_file(router, inp, f"{folder}/", **opts)
    assert "--resume" in " ".join(exc.value.__notes__)
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == \
        ["_score.json", "part-00000.jsonl"]  # part 1 was half done: not published, no _SUCCESS
    with pytest.raises(routekit.errors.OutputError, match="--resume"):
        score_file(router, inp, f"{folder}/", **opts)
    with pytest.raises(routekit.errors.OutputError, match="the job changed"):
        score_file(router, inp, f"{folder}/", resume=True, threshold=0.3, **opts)
    fail_at, calls[:] = 0, []
    s = score_file(router, inp, f"{folder}/", resume=True, **opts)
    assert sum(calls) == 40 and s.resumed_parts == 1 and s.parts == 5 and s.rows == 50
    parts = sorted(folder.glob("part-*.jsonl"))
    assert [r for p in parts for r in _read_jsonl(p)] == _read_jsonl(whole)
    assert json.loads((folder / "_SUCCESS").read_text())["rows"] == 50
    calls[:] = []
    assert score_file(router, inp, f"{folder}/", resume=True, **opts).rows == 50 and calls == []


def test_cli_progress_and_summary(tmp_path, capsys):
    inp = _jsonl(tmp_path / "in.jsonl", _rows())
    assert main(["score", "--input", str(inp), "--output", str(tmp_path / "o.csv"), "--router", "random"]) == 0
    err = capsys.readouterr().err
    assert "prompt/s" in err and f"scored {len(PROMPTS)} prompts" in err
    assert main(["score", "--input", str(inp), "--router", "random", "--strong-fraction", "1"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(out) == len(PROMPTS) and {r["route"] for r in out} == {"strong"}


def test_score_job_checks_before_router(tmp_path):
    inp = tmp_path / "in.csv"
    inp.write_text("id,text\n1,a\n")
    with pytest.raises(routekit.errors.BadInputError, match="no column 'prompt'"):
        ScoreJob(inp, tmp_path / "o.jsonl")
    with pytest.raises(routekit.errors.BadInputError, match="file not found"):
        ScoreJob(tmp_path / "nope.jsonl")


def test_scores_do_not_depend_on_chunking(tmp_path, router):
    # the streaming path cuts the input at arbitrary places; each prompt's score must not move
    prompts = [f"question {i}: " + "why " * (i % 41) + PROMPTS[i % len(PROMPTS)] for i in range(120)]
    inp = _jsonl(tmp_path / "in.jsonl", [{"prompt": p} for p in prompts])
    score_file(router, inp, tmp_path / "a.jsonl", batch_size=7, chunk_rows=50)
    single = [router.win_rate(p) for p in prompts]
    assert [r["win_rate"] for r in _read_jsonl(tmp_path / "a.jsonl")] == single
    assert list(router.win_rates(prompts)) == single


def test_ray_engine_needs_the_extra_and_imports_nothing(tmp_path, capsys, monkeypatch):
    code = "import sys, routekit.batch.ray, routekit.cli; routekit.cli._parser(); print('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    inp = _jsonl(tmp_path / "in.jsonl", _rows(2))
    assert main(["score", "--engine", "ray", "--input", str(inp), "--output", f"{tmp_path}/o/"]) == 2
    assert "pip install 'routekit[ray]'" in capsys.readouterr().err
