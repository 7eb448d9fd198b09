"""The router registry: one map kind -> class, plugins through the ``routekit.routers`` entry points,
clear errors for unknown kinds and unknown options."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

import routekit
from routekit import artifact, registry
from routekit.errors import (
    BadArtifactError,
    BadInputError,
    UnknownArtifactError,
    UnknownKindError,
)

PLUGIN = '''
import numpy as np
from routekit import Router


class NearestRouter(Router):
    """Win rate of the stored prompt with the most words in common (a toy kNN with k=1)."""

    kind = "nearest-demo"

    def __init__(self, manifest, *, providers=None, threads=None, strong=None, weak=None, floor=0.0):
        super().__init__(manifest, strong=strong, weak=weak)
        data = manifest.array(manifest["router"]["data"])
        self.words = [set(p.split()) for p in manifest["router"]["prompts"]]
        self.rates = np.asarray(data["rates"], dtype=np.float64)
        self.floor = float(floor)

    def score(self, prompts):
        out = []
        for p in prompts:
            overlap = [len(w & set(p.split())) for w in self.words]
            out.append(max(self.floor, self.rates[int(np.argmax(overlap))]))
        return np.array(out)
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A throwaway installed distribution: a module plus a dist-info folder with its entry point, on
    sys.path, found by importlib.metadata like any pip-installed package."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "routekit_nearest_demo.py").write_text(PLUGIN)
    info = site / "routekit_nearest_demo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: routekit-nearest-demo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [routekit.routers]
        nearest-demo = routekit_nearest_demo:NearestRouter
        broken-demo = routekit_nearest_demo_missing:Nothing
        """))
    monkeypatch.syspath_prepend(str(site))
    yield site
    import sys

    sys.modules.pop("routekit_nearest_demo", None)


def _write(folder, kind, **router):
    with artifact.ArtifactWriter(folder) as w:
        np.savez(w.dir / "data.npz", rates=np.array([0.9, 0.2]))
        w.manifest.update(kind=kind, name="demo", pair={"strong": "big", "weak": "small"},
                          router={"data": "data.npz", **router})
    return folder


def test_a_plugin_kind_loads_through_its_entry_point(plugin, tmp_path):
    assert "nearest-demo" in registry.kinds()
    assert registry.kinds()[:len(registry.BUILTIN)] == tuple(registry.BUILTIN)
    folder = _write(tmp_path / "art", "nearest-demo", prompts=["prove the theorem", "say hello"])
    router = routekit.load(folder)
    assert type(router).__name__ == "NearestRouter" and router.kind == "nearest-demo"
    np.testing.assert_allclose(router.win_rates(["prove this theorem please", "hello there, say it"]), [0.9, 0.2])
    assert router.route("say hello", threshold=0.5).model == "small"
    assert routekit.load(folder, floor=0.5).win_rate("say hello") == 0.5  # its own option
    with pytest.raises(BadInputError, match=r"unknown option\(s\) for a 'nearest-demo' router: mode \(it takes floor\)"):
        routekit.load(folder, mode="fast")
    with pytest.raises(BadArtifactError, match="cannot import 'routekit_nearest_demo_missing:Nothing'"):
        routekit.load(_write(tmp_path / "broken", "broken-demo", prompts=[]))


def test_an_unregistered_kind_is_an_unknown_artifact(tmp_path):
    folder = tmp_path / "art"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(
        {"format": artifact.FORMAT, "format_version": artifact.FORMAT_VERSION, "kind": "knn", "files": {}}))
    with pytest.raises(UnknownArtifactError, match="unknown router kind 'knn'.*entry-point group 'routekit.routers'"):
        routekit.load(folder)
    with pytest.raises(UnknownKindError):
        registry.router_class("knn")
    assert "knn" not in registry.kinds() and artifact.KINDS == tuple(registry.BUILTIN)


@pytest.mark.parametrize("kind", list(registry.BUILTIN))
def test_every_builtin_kind_refuses_unknown_options(kind):
    cls = registry.router_class(kind)
    assert cls.kind == kind
    with pytest.raises(BadInputError, match=rf"unknown option\(s\) for a '{kind}' router: bogus"):
        registry.check_options(kind, cls, {"bogus": 1})


def test_load_refuses_options_the_kind_does_not_take():
    with pytest.raises(BadInputError, match=r"'mf' router: mode \(it takes no options\)"):
        routekit.load("mf", mode="fast", verify=False)
    with pytest.raises(BadInputError, match="seed must be an integer, got 'abc'"):
        routekit.load("random:abc")
    with pytest.raises(BadInputError, match="'random' router: mode"):
        routekit.load("random", mode="fast")
    assert routekit.load("random", seed=3).name == routekit.load("random:3").name == "random:3"


def test_the_default_router_is_loaded_once_across_threads(monkeypatch):
    import threading
    import time

    from routekit import loading as router_mod

    calls = []

    def slow_load(name):
        calls.append(name)
        time.sleep(0.05)  # long enough for every thread to find no default yet
        return routekit.load("random")

    monkeypatch.setattr(router_mod, "_DEFAULT", None)
    monkeypatch.setattr(router_mod, "load", slow_load)
    threads = [threading.Thread(target=router_mod.route, args=("hi",)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["default"]
