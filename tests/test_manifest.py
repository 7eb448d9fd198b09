"""Manifest schema and the manifest's own hash (issue 18 item 2): every damaged manifest is refused
with BadArtifactError by both ``load()`` and ``routekit artifacts verify``."""

import json
import math
import os
import shutil

import pytest
from _copies import linked_copy

import routekit
from routekit import artifact
from routekit.cli import main
from routekit.errors import BadArtifactError, BadInputError


@pytest.fixture()
def art(tmp_path):
    """A copy of the shipped linear artifact (hard links for the big files: cheap)."""
    return linked_copy(artifact.shipped()["linear"], tmp_path / "a")


def _edit(folder, fn, *, seal=False):
    m = json.loads((folder / "manifest.json").read_text())
    fn(m)
    (folder / "manifest.json").write_text(json.dumps(m, indent=2))
    if seal:  # the schema must refuse it on its own, without help from the hash
        m[artifact.DIGEST] = artifact.manifest_digest(m)
        (folder / "manifest.json").write_text(json.dumps(m, indent=2))


def _refused(folder, match=None, capsys=None):
    with pytest.raises(BadArtifactError, match=match):
        routekit.load(folder)
    with pytest.raises(BadArtifactError, match=match):
        artifact.verify(folder, load=True)
    assert main(["artifacts", "verify", str(folder)]) == 2
    if capsys is not None:
        err = capsys.readouterr().err
        assert err.startswith("routekit: error:") and err.count("\n") == 1, err


def test_shipped_manifests_are_sealed_and_verify(capsys):
    for name, folder in artifact.shipped().items():
        m = artifact.verify(folder)
        assert m.get(artifact.DIGEST) == artifact.manifest_digest(m.data), name
    assert main(["artifacts", "verify", "linear"]) == 0
    assert "trial load scored one prompt" in capsys.readouterr().out


def test_one_digit_of_a_quantile_is_noticed(art, capsys):
    text = (art / "manifest.json").read_text()
    old = repr(json.loads(text)["calibration"]["thresholds"]["0.5"])  # the example: 0.5689 -> 0.4689
    assert old.startswith("0.5") and old in text
    new = "0.4" + old[3:]
    (art / "manifest.json").write_text(text.replace(old, new, 1))
    _refused(art, "modified after it was written", capsys)
    artifact.seal(art)  # a deliberate, checked edit can be sealed
    r = routekit.load(art)
    assert r.calibration["thresholds"]["0.5"] == float(new)


def test_reformatting_is_not_a_change(art):
    m = json.loads((art / "manifest.json").read_text())
    (art / "manifest.json").write_text(json.dumps(m, separators=(",", ":")))
    routekit.load(art)


def test_missing_digest_is_refused_with_a_hint(art, capsys):
    _edit(art, lambda m: m.pop(artifact.DIGEST))
    _refused(art, "artifacts seal", capsys)
    assert main(["artifacts", "seal", str(art)]) == 0
    routekit.load(art)


@pytest.mark.parametrize("value", ["NaN", "null", "1e308", "1e400", "-Infinity", "-0.1", "1.5", "true", '"0.5"'])
def test_bad_quantile_values(art, value):
    parsed = json.loads(value, parse_constant=lambda c: "unparsable")
    if parsed == "unparsable" or parsed == math.inf:  # not JSON routekit accepts: written as text
        m = json.loads((art / "manifest.json").read_text())
        m["calibration"]["quantiles"][50] = "__Q__"
        (art / "manifest.json").write_text(json.dumps(m).replace('"__Q__"', value))
    else:  # sealed, so the schema (not the hash) must catch it
        _edit(art, lambda m: m["calibration"]["quantiles"].__setitem__(50, parsed), seal=True)
    _refused(art, "quantiles|not a valid manifest|not valid JSON|finite")


def test_decreasing_quantiles(art):
    def f(m):
        q = m["calibration"]["quantiles"]
        q[10], q[11] = q[11], q[10] - 0.01
    _edit(art, f, seal=True)
    _refused(art, "non-decreasing")


@pytest.mark.parametrize("version", [True, "1", 1.0, 2, None])
def test_format_version_must_be_the_integer_1(art, version):
    _edit(art, lambda m: m.update(format_version=version), seal=True)
    _refused(art, "format_version")


SECTIONS = [
    ("pair", []), ("pair", "x"), ("pair", {"strong": 1, "weak": "w"}), ("pair", {"strong": "a", "weak": "a"}),
    ("pair", {"strong": "not-a-model", "weak": "mixtral-8x7b-instruct-v0.1"}),
    ("aliases", []), ("aliases", {"x": 5}), ("aliases", {"x": "no-such-model"}),
    ("router", "x"), ("router", []), ("router", None), ("router", {"weights": "unlisted.npz"}),
    ("router", {"weights": 7}),
    ("calibration", []), ("calibration", "x"), ("calibration", {"quantiles": [0.5]}),
    ("calibration", {"quantiles": [0, 1], "default_strong_fraction": 2}),
    ("encoder", None), ("encoder", "x"), ("encoder.dim", -1), ("encoder.dim", 1e30), ("encoder.dim", True),
    ("encoder.dim", "384"), ("encoder.max_length", -5), ("encoder.max_length", 0), ("encoder.max_length", 1e30),
    ("encoder.max_length", 10**400), ("encoder.file", "missing.onnx"), ("encoder.file", "x\u0000y"),
    ("encoder.tokenizer", None), ("files", []), ("models", "abc"), ("models", [1, 2]), ("kind", "nope"),
    ("kind", None), ("name", 5), ("files.encoder.onnx.bytes", -1), ("files.encoder.onnx.sha256", "abc"),
]


@pytest.mark.parametrize("field,value", SECTIONS, ids=[f"{f}={str(v)[:20]}" for f, v in SECTIONS])
def test_sections_of_the_wrong_type_or_size(art, field, value):
    def f(m):
        if field.startswith("files."):
            _, rel, key = field.split(".", 1)[0], "encoder.onnx", field.rsplit(".", 1)[1]
            m["files"][rel][key] = value
        elif "." in field:
            sec, key = field.split(".")
            m[sec][key] = value
        elif value is None:
            m.pop(field)
        else:
            m[field] = value
    _edit(art, f, seal=True)
    _refused(art)


def test_nul_byte_in_a_file_path(art, capsys):
    _edit(art, lambda m: m["files"].update({"a\u0000b": {"sha256": "0" * 64}}), seal=True)
    _refused(art, "NUL", capsys)


def test_deeply_nested_manifest(art, capsys):
    m = json.loads((art / "manifest.json").read_text())
    text = json.dumps(m)[:-1] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}"
    (art / "manifest.json").write_text(text)
    _refused(art, "nested", capsys)


def test_huge_manifest(art):
    _edit(art, lambda m: m.update(blob="x" * (9 << 20)), seal=True)
    _refused(art, "more than a manifest may have")


def test_duplicate_keys(art):
    text = (art / "manifest.json").read_text()
    (art / "manifest.json").write_text(text.replace('"kind": "linear",', '"kind": "linear", "kind": "mf",', 1))
    _refused(art, "duplicate key")


def test_manifest_symlink_is_refused(art, tmp_path, capsys):
    outside = tmp_path / "elsewhere.json"
    shutil.move(art / "manifest.json", outside)
    (art / "manifest.json").symlink_to(outside)
    _refused(art, "symlink", capsys)


def test_huge_integer_seed_in_a_random_artifact(tmp_path):
    out = tmp_path / "r"
    with pytest.raises(BadArtifactError, match="router.seed"):  # the writer never moves it into place
        with artifact.ArtifactWriter(out) as w:
            w.manifest.update(kind="random", router={"seed": 10**30})
    assert not out.exists()
    out.mkdir()
    m = {"format": artifact.FORMAT, "format_version": 1, "kind": "random", "files": {}, "router": {"seed": 10**30}}
    m[artifact.DIGEST] = artifact.manifest_digest(m)
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BadArtifactError, match="router.seed"):
        routekit.load(out)


def test_writer_seals_and_a_copy_of_a_sealed_manifest_is_resealed(tmp_path):
    src = artifact.shipped()["linear"]
    m = artifact.read_manifest(src)
    out = tmp_path / "copy"
    with artifact.ArtifactWriter(out) as w:  # calibrate --write copies every key, the old digest included
        for rel in m.files:
            os.link(m.path(rel), w.dir / rel)
        w.manifest.update({k: v for k, v in m.data.items() if k != "files"})
        w.manifest["calibration"] = {"quantiles": [0.0, 0.5, 1.0]}
    got = artifact.read_manifest(out, verify=False)
    assert got.get(artifact.DIGEST) == artifact.manifest_digest(got.data) != m.get(artifact.DIGEST)


@pytest.mark.parametrize("bad", [None, 123, b"artifacts/linear", ["linear"], True, "lin\u0000ear"])
def test_load_refuses_non_paths(bad):
    with pytest.raises((BadInputError, routekit.errors.UnknownArtifactError)):
        routekit.load(bad)


def test_seal_refuses_what_the_schema_refuses(art):
    _edit(art, lambda m: m["calibration"].update(quantiles=[0.2, math.pi]))
    before = (art / "manifest.json").read_bytes()
    with pytest.raises(BadArtifactError, match="quantiles"):
        artifact.seal(art)
    assert (art / "manifest.json").read_bytes() == before


def test_sealing_an_unchanged_manifest_keeps_it_byte_identical(art):
    """Sealing twice (or a manifest nobody edited) rewrote it with a second manifest_sha256 key, which the
    strict parser refuses, so `routekit artifacts seal` failed on a valid artifact."""
    before = (art / "manifest.json").read_bytes()
    digest = artifact.seal(art)
    assert (art / "manifest.json").read_bytes() == before
    assert artifact.seal(art) == digest and artifact.verify(art).get(artifact.DIGEST) == digest


BAD_PROB_MAPS = [
    ({"kind": "platt", "a": -1, "b": 0.0}, "a > 0"),
    ({"kind": "platt", "a": 1.0}, "needs the key 'b'"),
    ({"kind": "isotonic", "x": [0.0, 1.0], "y": [0.6, 0.4]}, "y must rise"),
    ({"kind": "sigmoid"}, "kind must be one of"),
    ("platt", "must be an object"),
]


@pytest.mark.parametrize("section,why", BAD_PROB_MAPS, ids=[w for _, w in BAD_PROB_MAPS])
def test_a_bad_prob_map_is_refused_at_load_naming_the_field_once(art, section, why, capsys):
    """The schema checks the optional prob_map section (it was only read, and refused, on the first
    route), and the message names it once (it said "prob_map: prob_map: ...")."""
    _edit(art, lambda m: m.update(prob_map=section), seal=True)
    _refused(art, why, capsys)
    with pytest.raises(BadArtifactError) as info:
        routekit.load(art)
    assert str(info.value).split("manifest.json: ", 1)[1].count("prob_map") == 1, info.value
