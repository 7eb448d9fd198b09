"""Encoder parity, MF torch-vs-runtime parity and a tiny end-to-end export (needs the export extra)."""

import json

import numpy as np

import routekit

TEXTS = ["Prove that there are infinitely many primes.", "hi", "Écris un poème. 海の詩。",
         "def f(x):\n    return x ** 2  # square", "Summarise the causes of World War I. " * 30]


def test_encoder_onnx_matches_torch(encoder_dir_fp32):
    from routekit_export.build import load_encoder
    from routekit_export.encoder import torch_embed

    enc, spec = load_encoder(encoder_dir_fp32)
    got, ref = enc(TEXTS), torch_embed(TEXTS)
    cos = (got * ref).sum(1)
    assert cos.min() >= 0.9999, cos
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_int8_encoder_close_and_batch_invariant(encoder_dir, encoder_dir_fp32):
    from routekit_export.build import load_encoder

    e8, spec = load_encoder(encoder_dir)
    assert spec["quantization"].startswith("int8")
    e32, _ = load_encoder(encoder_dir_fp32)
    cos = (e8(TEXTS) * e32(TEXTS)).sum(1)
    assert cos.mean() > 0.98, cos
    np.testing.assert_allclose(e8(TEXTS), np.stack([e8([t])[0] for t in TEXTS]), atol=1e-6)


def test_mf_runtime_matches_torch(tmp_path, encoder_dir, data_root):
    from routekit_export.build import build_mf, load_encoder
    from routekit_export.mf import MFConfig

    cfg = MFConfig(epochs=2, hidden=16, batch_size=64)
    out = tmp_path / "mf"
    build_mf(out, encoder_dir=encoder_dir, data_dir=data_root, cfg=cfg, limit=400, calib_limit=30, name="tiny")
    router = routekit.load(out)
    # rebuild the torch module from the saved weights and compare on the runtime's own embeddings
    import torch
    from routekit_export.mf import build_model, torch_pair_prob

    w = router.manifest.array("mf.npz")
    model = build_model(len(router.models), w["proj_w"].shape[1], cfg.hidden)
    model.model_emb.weight.data = torch.from_numpy(w["model_emb"])
    model.proj.weight.data = torch.from_numpy(w["proj_w"])
    model.proj.bias.data = torch.from_numpy(w["proj_b"])
    model.head.weight.data = torch.from_numpy(w["head"][None, :])
    enc, _ = load_encoder(encoder_dir)
    emb = enc(TEXTS)
    idx = {m: i for i, m in enumerate(router.models)}
    ref = torch_pair_prob(model, emb, idx[router.strong_model], idx[router.weak_model])
    got = router.win_rates(TEXTS)
    assert np.abs(got - ref).max() <= 1e-4
    # any pair in the table
    other = routekit.load(out, strong=router.models[2], weak=router.models[3])
    ref2 = torch_pair_prob(model, emb, 2, 3)
    assert np.abs(other.win_rates(TEXTS) - ref2).max() <= 1e-4


def test_export_cli_end_to_end(tmp_path, encoder_dir, data_root, capsys):
    from routekit_export.cli import main

    out = tmp_path / "art"
    rc = main(["train-mf", "--encoder", str(encoder_dir), "--data", str(data_root), "--out", str(out),
               "--limit", "300", "--calib-limit", "40", "--epochs", "2"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert 0 <= report["val"]["accuracy_non_tie"] <= 1
    m = routekit.artifact.verify(out)
    assert m.kind == "mf" and m["calibration"]["n"] == 40
    assert m["training"]["noncommercial_rows_included"] is False
    d = routekit.load(out).route("Prove that there are infinitely many primes.")
    assert d.route in ("strong", "weak")
    # refuses to overwrite without --force, and says so
    assert main(["train-mf", "--encoder", str(encoder_dir), "--data", str(data_root), "--out", str(out),
                 "--limit", "300"]) == 2
    assert "exists" in capsys.readouterr().err
