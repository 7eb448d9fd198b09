"""`routekit eval`, bench/eval_report.py and `calibrate` on the dev data (skipped when it is absent)."""

import json

import numpy as np
import pytest
from _bench import eval_report

import routekit
from routekit.cli import main


@pytest.fixture(scope="module")
def evals(data_root):
    return data_root / "dev" / "routellm-evals"


def test_eval_json_shape(evals, tmp_path, capsys):
    plot = tmp_path / "g.png"
    rc = main(["eval", "--benchmark", "gsm8k", "--data", str(evals), "--router", "default",
               "--router", "random", "--json", "--plot", str(plot), "--out", str(tmp_path / "o")])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["routers"]) == {"default", "random"}
    for r in out["routers"].values():
        assert {"apgr", "cpt50", "cpt80", "n", "curve"} <= set(r)
        assert r["n"] == out["n"] and len(r["curve"]["pgr"]) == 11
        lo, hi = r["apgr_ci95"]
        assert lo <= r["apgr"] <= hi
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "o" / "gsm8k.json").is_file()
    # cached win rates are reused: same numbers the second time
    assert main(["eval", "--benchmark", "gsm8k", "--data", str(evals), "--router", "default", "--json",
                 "--out", str(tmp_path / "o")]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["routers"]["default"]["apgr"] == out["routers"]["default"]["apgr"]


def test_eval_undefined_benchmark_is_a_clear_error(evals, capsys):
    assert main(["eval", "--benchmark", "mt-bench", "--data", str(evals), "--router", "random"]) == 2
    assert "undefined" in capsys.readouterr().err


def test_eval_missing_folder(tmp_path, capsys):
    assert main(["eval", "--benchmark", "mmlu", "--data", str(tmp_path), "--router", "random"]) == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_calibrate_and_write_copy(tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    texts = [f"question number {i}: what is {i} times {i + 3}?" if i % 2 else f"write a story about {i} cats"
             for i in range(60)]
    prompts.write_text("\n".join(texts) + "\n")
    out = tmp_path / "cal"
    assert main(["calibrate", "--strong-fraction", "0.3", "--prompts", str(prompts), "--json",
                 "--write", str(out)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert abs(res["actual_strong_fraction"] - 0.3) <= 0.05
    r = routekit.load(out)
    rates = r.win_rates(texts)
    assert abs((rates >= r.default_threshold).mean() - 0.3) <= 0.05
    assert r.threshold_for(0.3) == pytest.approx(res["threshold"], abs=1e-6)
    routekit.artifact.verify(out)


def test_eval_report_writes_markdown_and_readme(evals, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- eval-table:start -->\nOLD-TABLE\n<!-- eval-table:end -->\nafter\n")
    assert eval_report.main(["--data", str(evals), "--router", "random", "--router", "random:1",
                 "--out", str(tmp_path / "docs"), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "OLD-TABLE" not in text and "| random:1 |" in text and text.endswith("after\n")
    assert "| random |" in text and "| length |" in text  # the baselines, though not asked for
    assert (tmp_path / "docs" / "eval-mmlu.png").is_file()
    data = json.loads((tmp_path / "docs" / "eval.json").read_text())
    assert "undefined" in data["mt-bench"] or "routers" in data["mt-bench"]
    assert np.isfinite(data["mmlu"]["routers"]["random"]["apgr"])


def test_eval_report_no_cache_recomputes_stale_win_rates(evals, tmp_path, monkeypatch):
    from routekit import eval as evaluate
    from routekit.artifact import cache_dir

    monkeypatch.setenv("ROUTEKIT_CACHE", str(tmp_path / "cache"))
    main = eval_report.main
    args = ["--data", str(evals), "--router", "random", "--out", str(tmp_path / "docs")]
    assert main(args) == 0
    key = evaluate.router_cache_key(routekit.load("random"))
    files = sorted((cache_dir() / "winrates").glob(f"mmlu-*{key}.npy"))  # (the length baseline has its own)
    assert len(files) == 1 and f"-v{routekit.__version__}" in files[0].name  # a new release misses
    fresh = np.load(files[0])
    np.save(files[0], np.zeros_like(fresh))  # as if the scoring code had changed since
    assert main(args) == 0
    stale = json.loads((tmp_path / "docs" / "eval.json").read_text())["mmlu"]["routers"]["random"]["apgr"]
    assert main(args + ["--no-cache"]) == 0
    redone = json.loads((tmp_path / "docs" / "eval.json").read_text())["mmlu"]["routers"]["random"]["apgr"]
    assert redone != stale
    np.testing.assert_array_equal(np.load(files[0]), fresh)


def _labelled_rows(n=120, seed=0):
    rng = np.random.default_rng(seed)
    texts = [f"question {i}: compute {i} * {i + 7} and explain" if i % 3 else f"say hello to {i} friends"
             for i in range(n)]
    return texts, rng.integers(0, 2, n), rng.integers(0, 2, n)


def test_eval_on_your_own_labelled_jsonl_and_csv(tmp_path, capsys):
    from routekit.eval import apgr

    texts, s, w = _labelled_rows()
    jl = tmp_path / "mine.jsonl"
    jl.write_text("".join(json.dumps({"prompt": t, "big": bool(a), "small": int(b)}) + "\n"
                          for t, a, b in zip(texts, s, w)))
    args = ["eval", "--file", str(jl), "--strong-model", "big", "--weak-model", "small", "--router", "random:3",
            "--json", "--out", str(tmp_path / "o")]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    rates = routekit.load("random:3").win_rates(texts)
    assert out["n"] == len(texts)
    assert out["routers"]["random:3"]["apgr"] == pytest.approx(apgr(rates, s, w))
    assert (tmp_path / "o" / "mine.json").is_file() and (tmp_path / "o" / "mine.png").is_file()
    # the same labels as a CSV in RouteLLM's responses layout give the same numbers
    import csv
    cv = tmp_path / "mine.csv"
    with open(cv, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["prompt", "small", "big"])
        wr.writerows([t, bool(b), bool(a)] for t, a, b in zip(texts, s, w))
    assert main(["eval", "--file", str(cv), "--strong-model", "big", "--weak-model", "small",
                 "--router", "random:3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["routers"]["random:3"]["apgr"] == pytest.approx(apgr(rates, s, w))


@pytest.mark.parametrize("content,needle", [
    ('{"prompt": "a", "big": 1, "gpt-4o": 1}\n', "no weak model field 'small'; fields: ['big', 'gpt-4o']"),
    ('{"text": "a", "big": 1, "small": 0}\n', "needs a string 'prompt'"),
    ('{"prompt": "a", "big": "yes", "small": 0}\n', "expected True/False or a number"),
    ('{"prompt": "a", "big": 1, "small": 0}\nnot json\n', "line 2: invalid JSON"),
    # a blank line counts: the bad row is reported by its line number, not its record index
    ('{"prompt": "a", "big": 1, "small": 0}\n\n{"text": "b"}\n', "bad.jsonl, line 3: needs a string 'prompt'"),
    ("", "no rows"),
])
def test_eval_labelled_file_errors_are_clear(tmp_path, capsys, content, needle):
    f = tmp_path / "bad.jsonl"
    f.write_text(content)
    args = ["eval", "--file", str(f), "--strong-model", "big", "--weak-model", "small", "--router", "random"]
    assert main(args) == 2
    assert needle in capsys.readouterr().err


def test_eval_needs_a_benchmark_or_a_file(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--router", "random"])
    assert main(["eval", "--file", str(tmp_path / "absent.jsonl"), "--router", "random"]) == 2
    assert "no labelled file" in capsys.readouterr().err
