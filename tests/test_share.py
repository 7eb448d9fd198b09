"""Files several artifacts hold, stored once (routekit artifacts share) and still hash-checked."""

from __future__ import annotations

import os

import numpy as np
import pytest
from _copies import linked_copy

import routekit
from routekit import artifact
from routekit.cli import main

PROMPTS = ["hi there", "Prove that there are infinitely many primes.", "Implement a lock-free queue in C++."]


@pytest.fixture
def root(tmp_path):
    """Two shipped artifacts (self-contained hard-linked copies) side by side."""
    r = tmp_path / "arts"
    r.mkdir()
    for name in ("linear", "mf"):
        linked_copy(artifact.resolve(name), r / name)
    return r


def test_share_stores_a_common_file_once_and_every_artifact_still_loads(root, capsys):
    before = {n: routekit.load(str(root / n)).win_rates(PROMPTS) for n in ("linear", "mf")}
    assert (root / "linear" / "encoder.onnx").is_file()
    assert main(["artifacts", "share", str(root)]) == 0
    assert "copies removed" in capsys.readouterr().out
    for n in ("linear", "mf"):
        assert not (root / n / "encoder.onnx").exists() and not (root / n / "tokenizer.json").exists()
        np.testing.assert_array_equal(routekit.load(str(root / n)).win_rates(PROMPTS), before[n])
        artifact.verify(root / n, load=True)
    store = sorted(p.name for p in (root / artifact.SHARED).iterdir())
    sha = artifact.read_manifest(root / "linear", verify=False).files["encoder.onnx"]["sha256"]
    assert f"{sha}.onnx" in store and len(store) == 2  # the encoder and the tokenizer
    again = artifact.share(root)  # idempotent
    assert again.removed_copies == 0 and again.shared_files == 2


def test_a_tampered_shared_file_is_refused_by_name(root):
    artifact.share(root)
    enc = next((root / artifact.SHARED).glob("*.onnx"))
    data = bytearray(enc.read_bytes())
    enc.unlink()  # it was a hard link into the shipped artifact: never write through it
    data[len(data) // 2] ^= 0xFF
    enc.write_bytes(bytes(data))
    with pytest.raises(routekit.BadArtifactError, match="encoder.onnx"):
        routekit.load(str(root / "linear"))


def test_a_copy_is_self_contained_and_a_lone_folder_says_what_is_missing(root, tmp_path):
    artifact.share(root)
    own = artifact.copy_artifact(root / "linear", tmp_path / "mine")
    assert (own / "encoder.onnx").is_file()
    np.testing.assert_array_equal(routekit.load(str(own)).win_rates(PROMPTS),
                                  routekit.load(str(root / "linear")).win_rates(PROMPTS))
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "manifest.json").write_bytes((root / "linear" / "manifest.json").read_bytes())
    (lone / "linear.npz").write_bytes((root / "linear" / "linear.npz").read_bytes())
    with pytest.raises(routekit.BadArtifactError, match=r"'encoder.onnx' listed in the manifest is missing.*_shared"):
        routekit.load(str(lone))


def test_the_shared_name_comes_from_the_hash_not_the_manifest_path(tmp_path):
    from routekit.artifact.manifest import shared_path

    assert shared_path(tmp_path / "a", "../../etc/passwd", "ab" * 32).parent == tmp_path / artifact.SHARED
    assert shared_path(tmp_path / "a", "x.onnx", "not-a-hash") is None
    assert shared_path(tmp_path / "a", "x.o/nnx", "ab" * 32).name == "ab" * 32


def test_a_damaged_store_file_already_there_is_refused_before_any_copy_is_removed(root):
    """share() deleted the local copies whenever _shared/<sha> existed, without checking that file."""
    sha = artifact.read_manifest(root / "linear", verify=False).files["encoder.onnx"]["sha256"]
    (root / artifact.SHARED).mkdir()
    bad = root / artifact.SHARED / f"{sha}.onnx"
    bad.write_bytes(b"not the encoder")
    with pytest.raises(routekit.BadArtifactError, match=f"{sha}.onnx.*does not match"):
        artifact.share(root)
    for n in ("linear", "mf"):  # nothing removed: every artifact still loads on its own files
        assert (root / n / "encoder.onnx").is_file() and (root / n / "tokenizer.json").is_file()
        artifact.verify(root / n)


def test_a_failed_copy_leaves_no_half_copied_folder(root, tmp_path, monkeypatch):
    """copy_artifact left dst half-copied when a file failed; now the copy is renamed into place at the end."""
    calls = []

    def failing_link(a, b):
        calls.append(b)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_link(a, b)

    real_link = os.link
    monkeypatch.setattr(os, "link", failing_link)
    with pytest.raises(OSError, match="No space"):
        artifact.copy_artifact(root / "linear", tmp_path / "out" / "mine", link=True)
    assert len(calls) == 2 and not (tmp_path / "out" / "mine").exists()
    assert list((tmp_path / "out").iterdir()) == []  # the temporary folder is gone too
    monkeypatch.setattr(os, "link", real_link)
    own = artifact.copy_artifact(root / "linear", tmp_path / "out" / "mine", link=True)
    artifact.verify(own)


def test_recalibrating_a_shared_artifact_in_place_keeps_its_files_in_the_store(root):
    """write_calibration (routekit-export recalibrate) copied the store's files back into the folder."""
    from routekit.calibrate import calibration_table, write_calibration

    artifact.share(root)
    r = routekit.load(str(root / "linear"))
    table = calibration_table(r.win_rates(PROMPTS * 4), prompts="test prompts", default_strong_fraction=0.3)
    write_calibration(r, root / "linear", table, overwrite=True)
    assert not (root / "linear" / "encoder.onnx").exists() and (root / "linear" / "linear.npz").is_file()
    again = routekit.load(str(root / "linear"))
    assert again.calibration["prompts"] == "test prompts"
    np.testing.assert_array_equal(again.win_rates(PROMPTS), r.win_rates(PROMPTS))
    artifact.verify(root / "linear", load=True)


def test_rewrite_in_place_keeps_store_files_replaces_what_it_is_told_and_is_atomic(root):
    artifact.share(root)
    folder = root / "linear"
    m = artifact.read_manifest(folder, verify=True)
    with artifact.rewrite(m, folder, overwrite=True, drop=("metrics",)) as w:
        w.manifest["description"] = "rewritten"
    again = artifact.read_manifest(folder, verify=True)
    assert again["description"] == "rewritten" and "metrics" not in again.data
    assert again.files == m.files and not (folder / "encoder.onnx").exists()  # still only in the store
    # a file the block writes itself (``skip``) is the caller's: it lands in the folder, the store is untouched
    store = again.path("tokenizer.json")
    with artifact.rewrite(again, folder, overwrite=True, skip=("tokenizer.json",)) as w:
        (w.dir / "tokenizer.json").write_bytes(store.read_bytes())
    assert (folder / "tokenizer.json").is_file() and store.is_file()
    before = (folder / "manifest.json").read_bytes()
    with pytest.raises(RuntimeError):
        with artifact.rewrite(again, folder, overwrite=True) as w:
            w.manifest["description"] = "half done"
            raise RuntimeError("interrupted")
    assert (folder / "manifest.json").read_bytes() == before  # an interrupted rewrite leaves it as it was
    artifact.verify(folder, load=True)


def test_a_prob_map_written_in_place_keeps_the_store(root):
    pytest.importorskip("routekit_export")
    from routekit_export.calibration_map import apply_prob_map

    from routekit.artifact.probmap import ProbMap

    artifact.share(root)
    apply_prob_map(root / "linear", ProbMap("platt", a=0.5, b=0.0), {"note": "test"})
    assert not (root / "linear" / "encoder.onnx").exists()
    assert routekit.load(str(root / "linear")).manifest["prob_map"]["note"] == "test"


def test_prob_map_command_on_a_labelled_file_keeps_ranking_and_the_store(root, tmp_path, capsys):
    """routekit-export recalibrate --prob-map platt --prob-map-labels FILE (golden.jsonl rows of the pair)."""
    pytest.importorskip("routekit_export")
    import json

    from routekit_export.cli import main as export_main

    artifact.share(root)
    folder = root / "linear"
    r = routekit.load(str(folder))
    rng = np.random.default_rng(0)
    labels = tmp_path / "golden.jsonl"
    with open(labels, "w") as fh:
        for i in range(60):
            hard = i % 2 == 0
            fh.write(json.dumps({"prompt": (f"Prove lemma {i} about primes." if hard else f"hi {i}"),
                                 "strong_model": r.strong_model, "weak_model": r.weak_model,
                                 "strong_correct": bool(hard or rng.random() < 0.9),
                                 "weak_correct": bool((not hard) or rng.random() < 0.3)}) + "\n")
    before = r.win_rates(PROMPTS)
    assert export_main(["recalibrate", str(folder), "--prob-map", "platt", "--prob-map-labels", str(labels)]) == 0
    again = routekit.load(str(folder))
    assert again.manifest["prob_map"]["n"] == 60 and "golden.jsonl (60 rows)" in again.manifest["prob_map"]["fitted_on"]
    after = again.win_rates(PROMPTS)
    assert (np.argsort(after) == np.argsort(before)).all()  # a strictly increasing map: same ranking
    assert not (folder / "encoder.onnx").exists()
    assert export_main(["recalibrate", str(folder), "--prob-map", "none"]) == 0
    np.testing.assert_allclose(routekit.load(str(folder)).win_rates(PROMPTS), before, atol=1e-12)
