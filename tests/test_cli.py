import json
import shutil
import subprocess

import pytest

from routekit import artifact
from routekit.cli import main


def test_route_json(capsys):
    assert main(["route", "Prove that there are infinitely many primes.", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"route", "win_rate", "threshold", "router", "model"} <= set(out)
    assert out["route"] in ("strong", "weak") and 0 <= out["win_rate"] <= 1


def test_route_threshold_and_fraction(capsys):
    assert main(["route", "hello", "--threshold", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["route"] == "strong"
    assert main(["route", "hello", "--strong-fraction", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["route"] == "weak"
    assert main(["route", "hello", "--threshold", "2"]) == 2
    assert "threshold must be in [0, 1]" in capsys.readouterr().err


def test_route_random_router(capsys):
    assert main(["route", "hello", "--router", "random", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["router"] == "random"


def test_unknown_router_message(capsys):
    assert main(["route", "x", "--router", "nope"]) == 2
    assert "Unknown router 'nope'" in capsys.readouterr().err


def test_score_file(tmp_path, capsys):
    inp = tmp_path / "p.jsonl"
    inp.write_text("\n".join(json.dumps({"prompt": p}) for p in ["a", "Prove Fermat's last theorem", "c"]) + "\n")
    out = tmp_path / "s.jsonl"
    assert main(["score", "--input", str(inp), "--output", str(out)]) == 0
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["a", "Prove Fermat's last theorem", "c"]
    assert all({"route", "win_rate", "threshold", "router"} <= set(r) for r in rows)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"prompt": \n')
    assert main(["score", "--input", str(bad)]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err


def test_artifacts_list_and_verify(tmp_path, capsys):
    assert main(["artifacts", "list"]) == 0
    assert "(default)" in capsys.readouterr().out
    assert main(["artifacts", "verify", "default"]) == 0
    dst = tmp_path / "copy"
    artifact.copy_artifact(artifact.shipped()["default"], dst)
    onnx = next(dst.glob("*.onnx"))
    data = bytearray(onnx.read_bytes())
    data[1000] ^= 0x01
    onnx.write_bytes(bytes(data))
    assert main(["artifacts", "verify", str(dst)]) == 2
    err = capsys.readouterr().err
    assert "does not match its sha256" in err and onnx.name in err


def test_console_script_entry_point():
    exe = shutil.which("routekit")
    if exe is None:
        pytest.skip("routekit console script not on PATH (package not installed)")
    out = subprocess.run([exe, "route", "hi", "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["route"] in ("strong", "weak")
