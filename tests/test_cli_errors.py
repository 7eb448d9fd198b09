"""Every CLI failure is one `routekit: error:` line with exit code 2, never a traceback, and the
checks that can run before the work do (issue 18 item 5; `score` and `serve` have their own tests)."""

import json

import pytest

import routekit as router_mod
from routekit.cli import main


@pytest.fixture()
def files(tmp_path):
    (tmp_path / "ok.txt").write_text("hello\nprove that 2 + 2 = 4\n")
    (tmp_path / "nested.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n")
    (tmp_path / "nested_obj.jsonl").write_text('{"prompt": "a"}\n' + '{"prompt": ' + "[" * 50_000 + "]" * 50_000
                                               + "}\n")
    (tmp_path / "bigint.jsonl").write_text('{"prompt": "a", "n": ' + "9" * 5000 + "}\n")
    (tmp_path / "badutf.txt").write_bytes(b"hello\n\xff\xfe bad\n")
    (tmp_path / "badutf.jsonl").write_bytes(b'{"prompt": "a"}\n{"prompt": "\xff"}\n')
    (tmp_path / "labels_nested.jsonl").write_text('{"prompt": "a", "big": 1, "small": 0}\n{"prompt": '
                                                  + "[" * 100_000 + "]" * 100_000 + "}\n")
    (tmp_path / "labels_badutf.csv").write_bytes(b"prompt,big,small\nhi,1,0\n\xff,1,0\n")
    (tmp_path / "labels_hugefield.csv").write_text("prompt,big,small\n" + "x" * 200_000 + ",1,0\n")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "existing").mkdir()
    return tmp_path


CASES = {
    "calibrate nested JSON line": (["calibrate", "--router", "linear", "--strong-fraction", "0.5", "--prompts",
                                    "{d}/nested.jsonl"], "line 1: invalid JSON (nested too deeply)"),
    "calibrate nested JSON in a field": (["calibrate", "--router", "linear", "--strong-fraction", "0.5",
                                          "--prompts", "{d}/nested_obj.jsonl"], "line 2: invalid JSON"),
    "calibrate 5000-digit integer": (["calibrate", "--router", "linear", "--strong-fraction", "0.5", "--prompts",
                                      "{d}/bigint.jsonl"], "line 1: invalid JSON"),
    "calibrate invalid UTF-8 text": (["calibrate", "--router", "linear", "--strong-fraction", "0.5", "--prompts",
                                      "{d}/badutf.txt"], "line 2: invalid UTF-8"),
    "calibrate invalid UTF-8 JSONL": (["calibrate", "--router", "linear", "--strong-fraction", "0.5", "--prompts",
                                       "{d}/badutf.jsonl"], "line 2: invalid UTF-8"),
    "calibrate fraction > 1": (["calibrate", "--router", "linear", "--strong-fraction", "2", "--prompts",
                                "{d}/ok.txt"], "--strong-fraction must be in [0, 1]"),
    "calibrate fraction NaN": (["calibrate", "--router", "linear", "--strong-fraction", "nan", "--prompts",
                                "{d}/ok.txt"], "--strong-fraction must be in [0, 1]"),
    "calibrate --write existing folder": (["calibrate", "--router", "linear", "--strong-fraction", "0.5",
                                           "--prompts", "{d}/ok.txt", "--write", "{d}/existing"], "--force"),
    "calibrate --write over a file": (["calibrate", "--router", "linear", "--strong-fraction", "0.5", "--prompts",
                                       "{d}/ok.txt", "--write", "{d}/afile", "--force"], "not a folder"),
    "calibrate --write /dev/full": (["calibrate", "--router", "linear", "--strong-fraction", "0.5", "--prompts",
                                     "{d}/ok.txt", "--write", "/dev/full", "--force"], "not a folder"),
    "calibrate --write the prompts' folder": (["calibrate", "--router", "linear", "--strong-fraction", "0.5",
                                               "--prompts", "{d}/ok.txt", "--write", "{d}", "--force"], "input"),
    "calibrate --write a built-in router": (["calibrate", "--router", "random", "--strong-fraction", "0.5",
                                             "--prompts", "{d}/ok.txt", "--write", "{d}/new"], "built in"),
    "calibrate empty file": (["calibrate", "--router", "linear", "--strong-fraction", "0.5", "--prompts",
                              "{d}/empty.txt"], "no prompts"),
    "eval --file nested JSON": (["eval", "--file", "{d}/labels_nested.jsonl", "--strong-model", "big",
                                 "--weak-model", "small", "--router", "random"], "line 2: invalid JSON"),
    "eval --file invalid UTF-8 JSONL": (["eval", "--file", "{d}/badutf.jsonl", "--router", "random"],
                                        "line 2: invalid UTF-8"),
    "eval --file invalid UTF-8 CSV": (["eval", "--file", "{d}/labels_badutf.csv", "--strong-model", "big",
                                       "--weak-model", "small", "--router", "random"], "not a readable CSV"),
    "eval --file CSV field too large": (["eval", "--file", "{d}/labels_hugefield.csv", "--strong-model", "big",
                                         "--weak-model", "small", "--router", "random"], "not a readable CSV"),
    "route --threads -1": (["route", "hello", "--threads", "-1"], "threads must be an integer >= 0"),
    "route random seed too big": (["route", "hello", "--router", "random:" + "9" * 30], "seed must be in"),
    "route a file as router": (["route", "hello", "--router", "{d}/ok.txt"], "not a folder"),
    "artifacts verify a folder without manifest": (["artifacts", "verify", "{d}"], "no manifest.json"),
    "artifacts seal a folder without manifest": (["artifacts", "seal", "{d}"], "no manifest.json"),
    "bench --out a file": (["bench", "--router", "random", "--quick", "--out", "{d}/afile"], "not a folder"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_one_error_line_and_no_work(files, capsys, monkeypatch, case):
    args, needle = CASES[case]

    def no_scoring(*a, **k):  # every check here happens before any prompt is scored
        raise AssertionError("scored prompts before refusing the command")

    monkeypatch.setattr(router_mod.Router, "win_rates", no_scoring)
    monkeypatch.setattr(router_mod.RouterSet, "win_rates", no_scoring)
    rc = main([a.replace("{d}", str(files)) for a in args])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("routekit: error:"), err
    assert needle in lines[0], lines[0]
    assert (files / "ok.txt").read_text() == "hello\nprove that 2 + 2 = 4\n"


def test_route_threshold_out_of_float_range(capsys):
    assert main(["route", "hello", "--threshold", "1e400"]) == 2
    assert capsys.readouterr().err.startswith("routekit: error: threshold must be in [0, 1]")


def test_calibrate_write_force_replaces_and_reports(files, capsys):
    out = files / "existing"
    assert main(["calibrate", "--router", "linear", "--strong-fraction", "0.4", "--prompts", str(files / "ok.txt"),
                 "--write", str(out), "--force", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["written"] == str(out)
    assert (out / "manifest.json").is_file()
