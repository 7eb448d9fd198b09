"""Property and fuzz tests (issue 18 item 6): manifests mutated field by field, damaged files,
hostile numbers and prompts.  The property everywhere: a routekit exception or a valid answer,
never a foreign exception; a damaged artifact is refused by ``load()`` and ``verify`` alike."""

import copy
import json

import numpy as np
import pytest
from _copies import linked_copy, shipped_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import routekit
from routekit import artifact
from routekit.errors import BadArtifactError, BadInputError, RoutekitError
from routekit.router_set import RouterSet


def fuzz(n: int):
    """Modest example counts (a few seconds per test on 2 cores), no deadline, no example database."""
    return settings(max_examples=n, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

#: values that replace a manifest field: wrong types, absurd sizes, NUL bytes, non-finite numbers
HOSTILE = [None, True, False, 0, -1, 1, 10**400, 1e308, -1e308, float("nan"), float("inf"), 0.5, "", "x",
           "a\u0000b", "../../etc/passwd", [], [None], {}, {"x": 1}, "0" * 10_000]


def _clone(tmp_path, name, tag="a"):
    return linked_copy(artifact.shipped()[name], tmp_path / f"{name}-{tag}")


def _write(folder, m, *, seal):
    if seal:
        try:
            m[artifact.DIGEST] = artifact.manifest_digest(m)
        except ValueError:  # NaN/inf cannot be canonical JSON: leave the old digest
            pass
    (folder / "manifest.json").write_text(json.dumps(m))  # NaN/Infinity are written as such


def _leaves(obj, path=()):
    """Every (path, value) in a manifest, skipping long lists after their first and last items."""
    if isinstance(obj, dict):
        yield path, obj
        for k, v in obj.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(obj, list):
        yield path, obj
        for i in sorted({0, len(obj) - 1} if obj else set()):
            yield from _leaves(obj[i], path + (i,))
    else:
        yield path, obj


def _set(m, path, value):
    m = copy.deepcopy(m)
    node = m
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return m


def _outcome(folder):
    """What routekit does with an artifact: 'ok' (it loads and scores), or the routekit error."""
    try:
        r = routekit.load(folder, verify=False)
        w = r.win_rate("Prove that 17 is prime.")
        assert 0.0 <= w <= 1.0 and np.isfinite(w)
        try:
            d = r.route("x")
            assert d.route in ("strong", "weak") and 0.0 <= d.threshold <= 1.0
        except BadInputError:
            pass  # e.g. no calibration for the pair: route() needs threshold=
        return "ok"
    except RoutekitError as exc:
        return type(exc).__name__


@pytest.fixture(scope="module")
def mf_manifest():
    return json.loads((artifact.shipped()["mf"] / "manifest.json").read_text())


def test_every_field_of_a_manifest_mutated_unsealed_is_refused(tmp_path, mf_manifest):
    """Any change to any field, without resealing: the manifest hash refuses it (verify=False too)."""
    folder = _clone(tmp_path, "mf")
    paths = [p for p, _ in _leaves(mf_manifest) if p and p[0] != artifact.DIGEST]
    n = 0
    for path in paths:
        for value in (None, 0, "x", [], 10**400):
            m = _set(mf_manifest, path, value)
            if m == mf_manifest:
                continue
            _write(folder, m, seal=False)
            with pytest.raises(BadArtifactError):
                artifact.read_manifest(folder, verify=False)
            n += 1
    assert n > 300


def test_every_field_of_a_manifest_mutated_and_resealed(tmp_path, mf_manifest):
    """Each field routekit reads set to each hostile value and resealed: the schema refuses it, or
    the artifact loads and scores in [0, 1] (or refuses with a routekit error); never a foreign
    exception, and ``verify`` refuses whatever ``load()`` refuses."""
    folder = _clone(tmp_path, "mf")
    read = ("format", "format_version", "kind", "files", "pair", "models", "aliases", "encoder", "router",
            "calibration")
    #: descriptive fields routekit never reads: any JSON is fine there
    free = {("encoder", k) for k in ("pooling", "normalize", "source", "license")} | {("calibration", "prompts")}
    refused, loaded = 0, 0
    for path, _ in _leaves(mf_manifest):
        if not path or path[0] not in read or path[:2] in free:
            continue
        for value in HOSTILE[::2]:  # half of them, to keep this test at a few seconds
            _write(folder, _set(mf_manifest, path, value), seal=True)
            try:
                artifact.read_manifest(folder, verify=False)
            except BadArtifactError:
                refused += 1
                continue
            # accepted by the schema: it must load and score, or be refused by load() and verify
            got = _outcome(folder)
            loaded += 1
            if got != "ok":
                with pytest.raises(RoutekitError):
                    artifact.verify(folder, load=True)
            break  # one load per field is enough (loads are the slow part)
    assert refused > 250 and loaded > 10, (refused, loaded)


@fuzz(15)
@given(data=st.data())
def test_resealed_mutations_load_or_are_bad_artifacts(tmp_path_factory, mf_manifest, data):
    """Random field, random JSON value, resealed: load() works (scores in [0, 1]) or raises a routekit
    error; verify agrees with load()."""
    folder = _clone(tmp_path_factory.mktemp("fz"), "mf")
    paths = [p for p, _ in _leaves(mf_manifest) if p and p[0] != artifact.DIGEST and p[0] in
             ("pair", "models", "aliases", "encoder", "router", "calibration", "format_version", "kind")]
    path = data.draw(st.sampled_from(paths))
    json_values = st.recursive(st.none() | st.booleans() | st.integers(-10**30, 10**30)
                               | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
                               lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                               max_leaves=8)
    value = data.draw(st.one_of(st.sampled_from(HOSTILE[:-1]), json_values))
    _write(folder, _set(mf_manifest, path, value), seal=True)
    got = _outcome(folder)
    if got == "ok":
        artifact.verify(folder, load=True)
    else:
        with pytest.raises(RoutekitError):
            artifact.verify(folder, load=True)


def _replace_file(folder, rel, data: bytes):
    p = folder / rel
    p.unlink()
    p.write_bytes(data)
    m = json.loads((folder / "manifest.json").read_text())
    m["files"][rel] = {"sha256": artifact.sha256_file(p), "bytes": len(data)}
    _write(folder, m, seal=True)


DAMAGE = dict(which=st.sampled_from([("mf", "mf.npz"), ("linear", "linear.npz"), ("sw-static", "static.npy"),
                                     ("sw-static", "tokenizer.json"), ("sw-static", "sw.npz")]),
              how=st.sampled_from(["truncate", "flip", "zero-run"]), where=st.floats(0.0, 1.0), n=st.integers(1, 64))


def _damaged(tmp_path, which, how, where, n):
    """A file damaged (cut, bit flips, zeroed bytes) and its hashes updated: load() works or raises
    BadArtifactError, and verify refuses whatever load() refuses."""
    name, rel = which
    folder = _clone(tmp_path, name)
    data = bytearray(shipped_file(name, rel).read_bytes())
    i = int(where * (len(data) - 1))
    if how == "truncate":
        data = data[:i]
    elif how == "flip":
        for j in range(i, min(i + n, len(data))):
            data[j] ^= 0xFF
    else:
        data[i:i + n * 64] = bytes(len(data[i:i + n * 64]))
    _replace_file(folder, rel, bytes(data))
    got = _outcome(folder)
    assert got in ("ok", "BadArtifactError"), got
    if got == "BadArtifactError":
        with pytest.raises(BadArtifactError):
            artifact.verify(folder, load=True)


@fuzz(12)
@given(**DAMAGE)
def test_damaged_files_with_updated_hashes(tmp_path_factory, which, how, where, n):
    _damaged(tmp_path_factory.mktemp("dmg"), which, how, where, n)


@pytest.mark.slow
@fuzz(300)
@given(**DAMAGE)
def test_damaged_files_with_updated_hashes_many(tmp_path_factory, which, how, where, n):
    _damaged(tmp_path_factory.mktemp("dmg"), which, how, where, n)


# ----------------------------------------------------------------------------- numbers and prompts

NUMBERS = st.one_of(st.floats(), st.integers(), st.integers(min_value=10**300), st.booleans(), st.none(),
                    st.text(max_size=10), st.decimals(), st.fractions(), st.sampled_from([[0.5], {"x": 1}, b"0.5"]))


@fuzz(150)
@given(threshold=NUMBERS, fraction=NUMBERS)
def test_any_threshold_or_fraction(default_router, threshold, fraction):
    for kw in ({"threshold": threshold}, {"strong_fraction": fraction}):
        try:
            d = default_router.route("What is 2 + 2?", **kw)
        except BadInputError:
            continue
        given_value = next(iter(kw.values()))
        if given_value is None:  # the default threshold
            continue
        value = float(given_value)
        assert 0.0 <= value <= 1.0 and not isinstance(given_value, bool)
        assert d.route in ("strong", "weak")
        if "threshold" in kw:
            assert d.is_strong == (d.win_rate >= value)


@fuzz(60)
@given(bs=st.one_of(st.integers(-5, 200), st.floats(), st.booleans(), st.none(), st.text(max_size=3)))
def test_any_batch_size(default_router, bs):
    prompts = ["a", "b c", "d e f"]
    try:
        out = default_router.win_rates(prompts, batch_size=bs)
    except BadInputError:
        assert isinstance(bs, bool) or not isinstance(bs, int) or bs < 1
        return
    assert isinstance(bs, int) and bs >= 1
    np.testing.assert_array_equal(out, default_router.win_rates(prompts))


PROMPTS = st.one_of(st.text(max_size=200), st.binary(max_size=100),
                    st.text(alphabet=st.characters(blacklist_categories=()), max_size=60))


@pytest.fixture(scope="module")
def fast_routers():
    return [routekit.load(n) for n in ("mf", "linear", "sw-static")]


@fuzz(8)
@given(prompts=st.lists(PROMPTS, min_size=1, max_size=6), bs=st.integers(1, 7))
def test_any_prompts_batch_independent(fast_routers, prompts, bs):
    """Arbitrary str/bytes prompts: finite win rates in [0, 1], the same in any batch and alone."""
    for r in fast_routers:
        batched = r.win_rates(prompts, batch_size=bs)
        assert batched.shape == (len(prompts),) and np.all((batched >= 0) & (batched <= 1))
        alone = np.array([r.win_rate(p) for p in prompts])
        np.testing.assert_array_equal(batched, alone)
    shared = RouterSet(fast_routers).win_rates(prompts, batch_size=bs)
    for r, got in zip(fast_routers, shared):
        np.testing.assert_array_equal(got, r.win_rates(prompts))
