"""Converting RouteLLM's MF checkpoint format into a routekit MF artifact.

The checkpoints are built here in the reference's on-disk format (``config.json`` +
``model.safetensors`` with ``P.weight``, ``text_proj.0.weight``, ``classifier.0.weight``; random
weights), and routekit's win rates are compared with a direct numpy transcription of the
reference formula  σ(c·(P̂_s ⊙ Wq) − c·(P̂_w ⊙ Wq)),  P̂ = rows of P scaled to unit length.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from _fake_openai import fake_openai  # noqa: F401  (fixture)

import routekit
from routekit.errors import UnknownModelError

safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="needs safetensors (export extra)")
convert = pytest.importorskip("routekit_export.convert")

STRONG, WEAK = "gpt-4-1106-preview", "mixtral-8x7b-instruct-v0.1"


def write_checkpoint(folder, *, num_models=64, dim=128, text_dim=1536, use_proj=True, seed=0, config=None,
                     tensors=None):
    """A RouteLLM-format MF checkpoint folder with random weights (scaled so win rates spread out)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"dim": dim, "num_classes": 1, "num_models": num_models, "text_dim": text_dim, "use_proj": use_proj}
    cfg.update(config or {})
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    w = {"P.weight": rng.standard_normal((num_models, dim)) * rng.uniform(0.2, 5.0, (num_models, 1)),
         "classifier.0.weight": rng.standard_normal((1, dim))}
    if use_proj:
        w["text_proj.0.weight"] = rng.standard_normal((dim, text_dim))
    w = {k: v.astype(np.float32) for k, v in w.items()}
    w.update(tensors or {})
    safetensors_numpy.save_file(w, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return w


def reference_win_rate(w, q, strong: int, weak: int) -> np.ndarray:
    """The reference's pred_win_rate, written out in numpy (float64)."""
    P = w["P.weight"].astype(np.float64)
    P = P / np.linalg.norm(P, axis=1, keepdims=True)
    proj = q.astype(np.float64) @ w["text_proj.0.weight"].astype(np.float64).T if "text_proj.0.weight" in w \
        else q.astype(np.float64)
    c = w["classifier.0.weight"].astype(np.float64)[0]
    logit = (P[strong] * proj) @ c - (P[weak] * proj) @ c
    return 1.0 / (1.0 + np.exp(-logit))


def prompt_embeddings(n=20, d=1536, seed=1):
    q = np.random.default_rng(seed).standard_normal((n, d))
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)  # unit length, like OpenAI's


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("mf")
    w = write_checkpoint(root / "ckpt")
    out = convert.convert_mf(root / "ckpt", root / "artifact")
    return w, out


def test_default_pair_matches_reference(converted):
    w, out = converted
    router = routekit.load(out)
    assert router.kind == "mf" and (router.strong_model, router.weak_model) == (STRONG, WEAK)
    assert router.models == list(convert.ROUTELLM_MF_MODELS) and len(router.models) == 64
    q = prompt_embeddings()
    ref = reference_win_rate(w, q, router.models.index(STRONG), router.models.index(WEAK))
    got = router.scores(q)
    assert np.abs(got - ref).max() <= 1e-6
    assert ref.std() > 0.05  # the weights spread win rates out, so a wrong formula would show
    # the normalisation of P matters here (rows have different lengths): without it the answer is far off
    raw = 1 / (1 + np.exp(-((w["P.weight"][24] - w["P.weight"][36]) * (q @ w["text_proj.0.weight"].T))
                          @ w["classifier.0.weight"][0]))
    assert np.abs(raw - ref).max() > 1e-2


def test_other_pair_matches_reference(converted):
    w, out = converted
    router = routekit.load(out, strong="claude-2.1", weak="llama-2-7b-chat")
    q = prompt_embeddings(seed=2)
    ref = reference_win_rate(w, q, 7, 31)  # the ids in RouteLLM's table
    assert np.abs(router.scores(q) - ref).max() <= 1e-6
    assert not router.is_default_pair


def test_unknown_model_lists_the_table(converted):
    _, out = converted
    with pytest.raises(UnknownModelError) as info:
        routekit.load(out, strong="gpt-4o")
    msg = str(info.value)
    assert "gpt-4o" in msg and "64 models" in msg
    assert all(m in msg for m in ("RWKV-4-Raven-14B", "gpt-4-0613", "zephyr-7b-beta"))


def test_manifest_encoder_is_openai(converted):
    _, out = converted
    m = json.loads((out / "manifest.json").read_text())
    assert m["encoder"] == {"kind": "openai", "model": "text-embedding-3-small", "dim": 1536, "base_url": None,
                            "api_key_env": "OPENAI_API_KEY"}
    assert m["source"]["config"]["num_models"] == 64 and set(m["files"]) == {"mf.npz"}
    from routekit.encoders.openai import OpenAIEmbedder

    assert isinstance(routekit.load(out).encoder, OpenAIEmbedder)


def test_end_to_end_through_embeddings_server(tmp_path, fake_openai, monkeypatch):
    """Prompts -> loopback embeddings API -> converted router == reference formula on those vectors."""
    fake_openai.dim = 1536
    w = write_checkpoint(tmp_path / "ckpt", seed=3)
    out = convert.convert_mf(tmp_path / "ckpt", tmp_path / "art")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.url)  # the manifest's base_url is null: client default
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    router = routekit.load(out, weak="gpt-3.5-turbo-0613")
    prompts = ["Prove that there are infinitely many primes.", "hi", "Écris un poème. 海の詩。"]
    got = router.win_rates(prompts)
    q = np.stack([fake_openai.vector(p, 1536) for p in prompts])
    assert np.abs(got - reference_win_rate(w, q, 24, 19)).max() <= 1e-6
    assert fake_openai.requests[0]["body"]["model"] == "text-embedding-3-small"
    d = router.route(prompts[0], threshold=0.5)
    assert d.model in (STRONG, "gpt-3.5-turbo-0613")


def test_no_projection_checkpoint(tmp_path):
    w = write_checkpoint(tmp_path / "ckpt", dim=32, text_dim=32, use_proj=False)
    out = convert.convert_mf(tmp_path / "ckpt", tmp_path / "art")
    q = prompt_embeddings(d=32)
    ref = reference_win_rate(w, q, 24, 36)
    assert np.abs(routekit.load(out).scores(q) - ref).max() <= 1e-6


def test_custom_model_table_and_calibration(tmp_path):
    w = write_checkpoint(tmp_path / "ckpt", num_models=3, dim=8, text_dim=16)
    (tmp_path / "ids.json").write_text(json.dumps({"big": 0, "small": 2, "mid": 1}))
    with pytest.raises(convert.MFCheckpointError, match="RouteLLM's table"):
        convert.convert_mf(tmp_path / "ckpt", tmp_path / "x")  # 3 rows: RouteLLM's table does not fit
    with pytest.raises(convert.MFCheckpointError, match="not in the model table"):
        convert.convert_mf(tmp_path / "ckpt", tmp_path / "x", models=tmp_path / "ids.json")
    q = prompt_embeddings(200, 16, seed=4)
    out = convert.convert_mf(tmp_path / "ckpt", tmp_path / "art", models=tmp_path / "ids.json", strong="big",
                             weak="small", calibration_embeddings=(q, "random vectors"))
    router = routekit.load(out)
    assert router.models == ["big", "mid", "small"]
    ref = reference_win_rate(w, q, 0, 2)
    assert np.abs(router.scores(q) - ref).max() <= 1e-6
    assert router.threshold_for(0.3) == pytest.approx(np.quantile(ref, 0.7), abs=1e-6)


@pytest.mark.parametrize("change, match", [
    (dict(config={"dim": 64}), "disagrees"),
    (dict(tensors={"classifier.0.weight": np.ones((2, 128), np.float32)}), "num_classes"),
    (dict(tensors={"text_proj.0.bias": np.ones(128, np.float32)}), "unexpected"),
])
def test_rejects_other_formats(tmp_path, change, match):
    write_checkpoint(tmp_path / "ckpt", **change)
    with pytest.raises(convert.MFCheckpointError, match=match):
        convert.convert_mf(tmp_path / "ckpt", tmp_path / "art")
    assert not (tmp_path / "art").exists()


def test_cli(tmp_path, capsys, monkeypatch):
    from routekit_export import cli

    write_checkpoint(tmp_path / "ckpt", seed=5)
    rc = cli.main(["convert-routellm", "--kind", "mf", "--checkpoint", str(tmp_path / "ckpt"),
                   "--out", str(tmp_path / "art"), "--weak", "gpt-4-0613", "--base-url", "http://127.0.0.1:9/v1"])
    assert rc == 0, capsys.readouterr().err
    router = routekit.load(tmp_path / "art")
    assert router.weak_model == "gpt-4-0613" and router.encoder.base_url == "http://127.0.0.1:9/v1"
    rc = cli.main(["convert-routellm", "--kind", "mf", "--checkpoint", str(tmp_path / "ckpt"),
                   "--out", str(tmp_path / "art2"), "--int8"])
    assert rc == 2 and "--int8" in capsys.readouterr().err
    monkeypatch.delattr(convert, "convert_causal", raising=False)
    rc = cli.main(["convert-routellm", "--kind", "causal", "--checkpoint", str(tmp_path / "ckpt"),
                   "--out", str(tmp_path / "c")])
    assert rc == 2 and "not available in this build" in capsys.readouterr().err


def test_cli_calibrates_through_embeddings_api(tmp_path, fake_openai, monkeypatch, capsys):
    from routekit_export import cli

    fake_openai.dim = 1536
    w = write_checkpoint(tmp_path / "ckpt", seed=6)
    prompts = [f"calibration prompt {i} " + "x" * i for i in range(40)]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps({"prompt": p}) for p in prompts) + "\n")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    rc = cli.main(["convert-routellm", "--kind", "mf", "--checkpoint", str(tmp_path / "ckpt"), "--out",
                   str(tmp_path / "art"), "--calibration-prompts", str(tmp_path / "p.jsonl"),
                   "--calibration-limit", "30"])
    assert rc == 0, capsys.readouterr().err
    router = routekit.load(tmp_path / "art")
    ref = reference_win_rate(w, np.stack([fake_openai.vector(p, 1536) for p in prompts[:30]]), 24, 36)
    assert router.manifest["calibration"]["n"] == 30
    assert router.threshold_for(0.5) == pytest.approx(np.quantile(ref, 0.5), abs=1e-6)
    n = len(fake_openai.requests)
    router.route(prompts[0], strong_fraction=0.5)  # cached during calibration: no request
    assert len(fake_openai.requests) == n


@pytest.mark.slow
def test_parity_with_routellm_reference_code(tmp_path):
    """RouteLLM 0.2.0's MatrixFactorizationRouter (peer venv) vs the converted artifact (~20 s)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    peer = Path(os.environ.get("PEER_PYTHON", Path(__file__).resolve().parents[2] / "peer" / "venv" / "bin" / "python"))
    if not peer.is_file():
        pytest.skip(f"no RouteLLM 0.2.0 venv at {peer} (set PEER_PYTHON)")
    script = Path(__file__).resolve().parent.parent / "bench" / "mf_parity_peer.py"
    res = subprocess.run([sys.executable, str(script), "--peer-python", str(peer), "--tol", "1e-6",
                          "--json", str(tmp_path / "parity.json")], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = json.loads((tmp_path / "parity.json").read_text())
    assert summary["max_abs_dP"] <= 1e-6 and all(r["table_matches"] for r in summary["results"])
