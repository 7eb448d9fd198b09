import json

import numpy as np
import pytest

import routekit
from routekit import artifact
from routekit.errors import BadArtifactError, UnknownArtifactError


def _tiny(tmp_path, name="a", **extra):
    out = tmp_path / name
    with artifact.ArtifactWriter(out) as w:
        np.save(w.dir / "x.npy", np.arange(5, dtype=np.float32))
        (w.dir / "sub").mkdir()
        (w.dir / "sub" / "t.txt").write_text("hello")
        w.manifest.update({"name": name, "kind": "random", "router": {"seed": 3}, **extra})
    return out


def test_manifest_round_trip(tmp_path):
    out = _tiny(tmp_path, extra_field={"nested": [1, 2]})
    m = artifact.read_manifest(out)
    assert m.kind == "random" and m.name == "a"
    assert m.get("extra_field") == {"nested": [1, 2]}
    assert set(m.files) == {"x.npy", "sub/t.txt"}
    np.testing.assert_array_equal(m.array("x.npy"), np.arange(5, dtype=np.float32))
    again = json.loads((out / "manifest.json").read_text())
    assert again == m.data


def test_hash_mismatch_refused(tmp_path):
    out = _tiny(tmp_path)
    p = out / "sub" / "t.txt"
    p.write_text("hellO")  # same size, one byte differs
    with pytest.raises(BadArtifactError, match="sha256"):
        artifact.read_manifest(out)
    artifact.read_manifest(out, verify=False)  # structure alone is still valid


def test_truncated_and_missing_files(tmp_path):
    out = _tiny(tmp_path)
    (out / "x.npy").write_bytes((out / "x.npy").read_bytes()[:10])
    with pytest.raises(BadArtifactError, match="bytes"):
        artifact.read_manifest(out)
    (out / "x.npy").unlink()
    with pytest.raises(BadArtifactError, match="missing"):
        artifact.read_manifest(out)


@pytest.mark.parametrize("bad", ["../outside.txt", "/etc/passwd", "sub/../../x"])
def test_paths_outside_folder_refused(tmp_path, bad):
    out = _tiny(tmp_path)
    m = json.loads((out / "manifest.json").read_text())
    m["files"][bad] = {"sha256": "0" * 64, "bytes": 1}
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BadArtifactError, match="outside|invalid"):
        artifact.read_manifest(out)


def test_symlink_refused(tmp_path):
    out = _tiny(tmp_path)
    target = tmp_path / "elsewhere.txt"
    target.write_text("hello")
    (out / "sub" / "t.txt").unlink()
    (out / "sub" / "t.txt").symlink_to(target)
    with pytest.raises(BadArtifactError, match="symlink"):
        artifact.read_manifest(out)


def test_wrong_version_and_kind(tmp_path):
    out = _tiny(tmp_path)
    m = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**m, "format_version": 99}))
    with pytest.raises(BadArtifactError, match="format_version 99"):
        artifact.read_manifest(out)
    (out / "manifest.json").write_text(json.dumps({**m, "kind": "nope"}))
    with pytest.raises(BadArtifactError, match="unknown router kind"):
        artifact.read_manifest(out)
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(BadArtifactError, match="JSON"):
        artifact.read_manifest(out)


def test_pickle_is_never_loaded(tmp_path):
    import pickle

    out = _tiny(tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (out / "x.npy").write_bytes(pickle.dumps(Evil()))
    m = artifact.read_manifest(out, verify=False)
    with pytest.raises(BadArtifactError, match="numpy"):
        m.array("x.npy")
    # an .npy header that declares an object array (its payload would be a pickle)
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += " " * (63 - len(header) % 64) + "\n"
    (out / "x.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()
                                + pickle.dumps(Evil()))
    with pytest.raises(BadArtifactError):
        m.array("x.npy")
    assert not marker.exists()


def test_interrupted_write_leaves_nothing(tmp_path):
    out = tmp_path / "half"
    with pytest.raises(RuntimeError):
        with artifact.ArtifactWriter(out) as w:
            np.save(w.dir / "x.npy", np.zeros(3))
            w.manifest.update({"kind": "random"})
            raise RuntimeError("killed mid-export")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_overwrite_unless_asked(tmp_path):
    out = _tiny(tmp_path)
    with pytest.raises(FileExistsError):
        with artifact.ArtifactWriter(out):
            pass
    with artifact.ArtifactWriter(out, overwrite=True) as w:
        w.manifest.update({"kind": "random", "name": "b"})
    assert artifact.read_manifest(out).name == "b"


def test_unknown_artifact_name():
    with pytest.raises(UnknownArtifactError, match="not a shipped artifact"):
        routekit.load("no-such-router")


def test_shipped_artifacts_verify():
    known = artifact.shipped()
    assert "default" in known, f"no default artifact under {artifact.artifacts_root()}"
    for name, folder in known.items():
        m = artifact.verify(folder)
        assert m.get("training", {}).get("noncommercial_rows_included") is False, name
        assert m.get("calibration", {}).get("quantiles"), name


def test_verify_detects_flipped_byte_in_shipped_copy(tmp_path):
    src = artifact.shipped()["default"]
    dst = tmp_path / "copy"
    artifact.copy_artifact(src, dst)
    onnx = next(dst.glob("*.onnx"))
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    with pytest.raises(BadArtifactError, match="does not match its sha256"):
        routekit.load(dst)
