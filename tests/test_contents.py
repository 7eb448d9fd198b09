"""Artifact contents checked against the manifest (issue 18 item 3), library inputs (item 5) and
MF's batch independence (item 6).  Every damaged artifact here has its file hashes and manifest
hash updated, so only the contents checks stand between it and a foreign exception."""

import io
import json

import numpy as np
import pytest
from _copies import linked_copy, shipped_file

import routekit
from routekit import artifact
from routekit.errors import BadArtifactError, BadInputError, RoutekitError
from routekit.router_set import RouterSet


def _clone(tmp_path, name):
    return linked_copy(artifact.shipped()[name], tmp_path / name)


def _replace(folder, rel, data: bytes):
    """Put ``data`` at ``rel`` and update its hash and the manifest's own hash, as a careful attacker
    or a buggy exporter would."""
    p = folder / rel
    p.unlink()
    p.write_bytes(data)
    m = json.loads((folder / "manifest.json").read_text())
    m["files"][rel] = {"sha256": artifact.sha256_file(p), "bytes": len(data)}
    m[artifact.DIGEST] = artifact.manifest_digest(m)
    (folder / "manifest.json").write_text(json.dumps(m))
    return folder


def _npz(**arrays) -> bytes:
    b = io.BytesIO()
    np.savez(b, **arrays)
    return b.getvalue()


def _npy(a) -> bytes:
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def _weights(name, rel):
    with np.load(shipped_file(name, rel)) as z:
        return {k: z[k] for k in z.files}


def _refused_by_both(folder, names):
    for attempt in (lambda: routekit.load(folder), lambda: artifact.verify(folder, load=True)):
        with pytest.raises(BadArtifactError) as info:
            attempt()
        assert names in str(info.value), str(info.value)


def _tokenizer_with_id(i, word="zebra"):
    """The shipped tokenizer with ``word`` moved to id ``i`` (an existing word: the size stays the same)."""
    tok = json.loads(shipped_file("linear", "tokenizer.json").read_text())
    assert word in tok["model"]["vocab"]
    tok["model"]["vocab"][word] = i
    return json.dumps(tok).encode()


def _mf_case(key, fn):
    def make(tmp_path):
        w = _weights("mf", "mf.npz")
        return _replace(_clone(tmp_path, "mf"), "mf.npz", _npz(**{**w, key: fn(w[key])})), "mf.npz"
    return make


def _linear_case(key, value):
    def make(tmp_path):
        w = _weights("linear", "linear.npz")
        return _replace(_clone(tmp_path, "linear"), "linear.npz", _npz(**{**w, key: value})), "linear.npz"
    return make


def _swapped_onnx(name, rel, src_name, src_rel):
    def make(tmp_path):
        data = shipped_file(src_name, src_rel).read_bytes()
        return _replace(_clone(tmp_path, name), rel, data), rel
    return make


def _truncated_npz(cut):
    def make(tmp_path):
        data = shipped_file("mf", "mf.npz").read_bytes()
        return _replace(_clone(tmp_path, "mf"), "mf.npz", data[:cut]), "mf.npz"
    return make


def _static(fn):
    def make(tmp_path):
        table = np.load(shipped_file("sw-static", "static.npy"))
        return _replace(_clone(tmp_path, "sw-static"), "static.npy", _npy(fn(table))), "static.npy"
    return make


def _sw_case(key, fn):
    def make(tmp_path):
        w = _weights("sw-static", "sw.npz")
        return _replace(_clone(tmp_path, "sw-static"), "sw.npz", _npz(**{**w, key: fn(w[key])})), "sw"
    return make


DAMAGED = {
    # a valid ONNX file, but not the one the manifest describes
    "linear encoder.onnx is the bert classifier": _swapped_onnx("linear", "encoder.onnx", "bert", "classifier.onnx"),
    "mf encoder.onnx is the bert classifier": _swapped_onnx("mf", "encoder.onnx", "bert", "classifier.onnx"),
    "bert classifier.onnx is the sentence encoder": _swapped_onnx("bert", "classifier.onnx", "linear", "encoder.onnx"),
    "linear encoder.onnx is not ONNX": lambda t: (_replace(_clone(t, "linear"), "encoder.onnx", b"\x08\x07junk"),
                                                  "encoder.onnx"),
    # arrays of the wrong shape, dtype, or values
    "mf proj_w transposed": _mf_case("proj_w", lambda a: a.T),
    "mf proj_w one column short": _mf_case("proj_w", lambda a: a[:, :-1]),
    "mf proj_b one short": _mf_case("proj_b", lambda a: a[:-1]),
    "mf head one short": _mf_case("head", lambda a: a[:-1]),
    "mf model_emb one hidden short": _mf_case("model_emb", lambda a: a[:, :-1]),
    "mf head is strings": _mf_case("head", lambda a: np.array(["x"] * len(a))),
    "mf head NaN": _mf_case("head", lambda a: np.full_like(a, np.nan)),
    "mf model_emb infinite": _mf_case("model_emb", lambda a: np.full_like(a, np.inf)),
    "linear feat_mean one short": _linear_case("feat_mean", np.zeros(7)),
    "linear feat_std zero": _linear_case("feat_std", np.zeros(8)),
    "linear feat_lo 2-D": _linear_case("feat_lo", np.zeros((2, 2))),
    "linear w_emb 2-D": _linear_case("w_emb", np.zeros((384, 2))),
    "sw embeddings 1-D": _sw_case("embeddings", lambda a: a[:, 0]),
    "sw embeddings one prompt short": _sw_case("embeddings", lambda a: a[:-1]),
    # a truncated npz whose hash was updated
    "mf.npz truncated to 100 bytes": _truncated_npz(100),
    "mf.npz truncated by half": _truncated_npz(104_180),
    "mf.npz truncated by 10 bytes": _truncated_npz(-10),
    # the static encoder's table does not fit the tokenizer or the manifest
    "static table narrower than the manifest's dim": _static(lambda t: t[:, :64]),
    "static table with fewer rows than the vocabulary": _static(lambda t: t[:-1000]),
    "static table NaN": _static(lambda t: np.full_like(t, np.nan)),
    "static table 1-D": _static(lambda t: t[:, 0]),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_damaged_contents_are_bad_artifacts(tmp_path, case):
    folder, names = DAMAGED[case](tmp_path)
    _refused_by_both(folder, names)


def test_tokenizer_ids_beyond_the_embedding_table(tmp_path, capsys):
    from routekit.cli import main

    # one more token than the embedding table has rows: load() itself refuses (it runs the last id)
    tok = json.loads(shipped_file("linear", "tokenizer.json").read_text())
    tok["model"]["vocab"]["zzqxword"] = len(tok["model"]["vocab"])
    small = _replace(_clone(tmp_path, "bert"), "tokenizer.json", json.dumps(tok).encode())
    _refused_by_both(small, "classifier.onnx")
    # a non-contiguous id: verify's complete check refuses; load() refuses the prompt that hits it
    far = tmp_path / "far"
    far.mkdir()
    for name in ("linear", "sw-static"):
        folder = _replace(_clone(far, name), "tokenizer.json", _tokenizer_with_id(40000))
        with pytest.raises(BadArtifactError, match="40000"):
            artifact.verify(folder, load=True)
        assert main(["artifacts", "verify", str(folder)]) == 2
        assert "40000" in capsys.readouterr().err
        r = routekit.load(folder)
        assert 0 <= r.win_rate("hello") <= 1
        with pytest.raises(BadArtifactError, match="tokenizer.json"):
            r.win_rate("a zebra")


# ----------------------------------------------------------------------------- library inputs


@pytest.mark.parametrize("kw", [{"threshold": 10**400}, {"threshold": 10**5000}, {"threshold": True},
                                {"strong_fraction": 10**400}, {"strong_fraction": -10**400}])
def test_absurd_numbers_are_bad_input(default_router, kw):
    with pytest.raises(BadInputError, match="must be"):
        default_router.route("x", **kw)


@pytest.mark.parametrize("kw", [{"strong": 123}, {"weak": ["x"]}, {"strong": b"gpt-4-1106-preview"},
                                {"weak": ""}, {"strong": 1.5}])
def test_model_names_must_be_strings(kw):
    with pytest.raises(BadInputError, match="model name"):
        routekit.load("mf", **kw)


@pytest.mark.parametrize("bs", [0, -1, 1.5, True, "8", None])
def test_batch_sizes_below_one_are_refused(default_router, bs):
    with pytest.raises(BadInputError, match="batch_size"):
        default_router.win_rates(["a", "b"], batch_size=bs)
    with pytest.raises(BadInputError, match="batch_size"):
        default_router.route_many(["a", "b"], batch_size=bs)
    with pytest.raises(BadInputError, match="batch_size"):
        RouterSet([default_router]).win_rates(["a"], batch_size=bs)


@pytest.mark.parametrize("routers", [[None], ["random", None], [123], "random", 5])
def test_routerset_refuses_non_routers(routers):
    with pytest.raises(BadInputError):
        RouterSet(routers)


def test_every_library_error_is_a_routekit_error(default_router):
    bad_calls = [lambda: routekit.load(None), lambda: routekit.load(123), lambda: routekit.load(b"linear"),
                 lambda: routekit.load("random:1" + "0" * 40), lambda: default_router.route(123),
                 lambda: default_router.win_rates("one string"), lambda: default_router.win_rates([1, 2])]
    for call in bad_calls:
        with pytest.raises(RoutekitError):
            call()


def test_mf_batched_equals_single_bit_for_bit():
    r = routekit.load("mf")
    prompts = [f"question {i}: " + "why " * (i % 23) for i in range(70)]
    single = np.array([r.win_rate(p) for p in prompts])
    for bs in (1, 3, 64, 70):
        np.testing.assert_array_equal(r.win_rates(prompts, batch_size=bs), single)
    shared = RouterSet([r, routekit.load("linear")]).win_rates(prompts, batch_size=16)[0]
    np.testing.assert_array_equal(shared, single)
