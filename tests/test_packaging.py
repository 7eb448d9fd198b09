"""One onnxruntime, always: routekit depends on onnxruntime, routekit-gpu (same source) on
onnxruntime-gpu, and neither on both.  The fast test builds both distributions' metadata with
setuptools' PEP 517 hook; the slow one builds both wheels."""

import email
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "packaging"))
import gpu_variant  # noqa: E402


def _requires(meta: email.message.Message) -> list[str]:
    return [r.split(";")[0].strip() for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]


def _ort(reqs: list[str]) -> list[str]:
    return [r for r in reqs if r.startswith("onnxruntime")]


def _metadata(folder: Path, out: Path) -> email.message.Message:
    out.mkdir()
    code = "import sys, setuptools.build_meta as b; print(b.prepare_metadata_for_build_wheel(sys.argv[1]))"
    name = subprocess.run([sys.executable, "-c", code, str(out)], cwd=folder, check=True, capture_output=True,
                          text=True).stdout.strip().splitlines()[-1]
    return email.message_from_string((out / name / "METADATA").read_text())


def test_gpu_variant_swaps_only_onnxruntime(tmp_path):
    cpu = _metadata(gpu_variant.stage(tmp_path / "cpu", gpu=False), tmp_path / "m-cpu")
    gpu = _metadata(gpu_variant.stage(tmp_path / "gpu"), tmp_path / "m-gpu")
    assert cpu["Name"] == "routekit" and gpu["Name"] == "routekit-gpu" and cpu["Version"] == gpu["Version"]
    assert _ort(_requires(cpu)) == ["onnxruntime>=1.17"] and _ort(_requires(gpu)) == ["onnxruntime-gpu>=1.17"]
    rest = lambda m: sorted(r for r in _requires(m) if not r.startswith("onnxruntime"))  # noqa: E731
    assert rest(cpu) == rest(gpu) and "numpy>=1.24" in rest(cpu)
    # no extra brings the other onnxruntime in (the old [gpu] extra did)
    for meta in (cpu, gpu):
        extras = [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" in r]
        assert not [r for r in extras if r.startswith("onnxruntime")]


def test_gpu_pyproject_refuses_a_layout_it_does_not_know():
    with pytest.raises(ValueError):
        gpu_variant.gpu_pyproject('[project]\nname = "other"\ndependencies = ["onnxruntime"]\n')


@pytest.mark.slow
def test_both_wheels_build(tmp_path):
    for gpu, name in ((False, "routekit"), (True, "routekit_gpu")):
        folder = gpu_variant.stage(tmp_path / name, gpu=gpu)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(folder),
                        "-w", str(tmp_path / "dist")], check=True)
        (wheel,) = (tmp_path / "dist").glob(f"{name}-*.whl")
        with zipfile.ZipFile(wheel) as z:
            names = set(z.namelist())
            meta = email.message_from_bytes(z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))))
        assert "routekit/router.py" in names and "routekit/_artifacts/index.json" in names
        assert {"routekit/suites/everyday.jsonl", "routekit_export/data/everyday_train.jsonl",
                "routekit_export/judges/pairwise.txt"} <= names
        assert _ort(_requires(meta)) == (["onnxruntime-gpu>=1.17"] if gpu else ["onnxruntime>=1.17"])


def test_package_data_covers_the_data_files_the_code_opens():
    """Files read through Path(__file__) must be in the wheel: every non-Python file under routekit/
    (outside caches) and export/ is matched by a package-data pattern (fast; no wheel built)."""
    import fnmatch

    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = {"routekit": ROOT / "routekit", "routekit_export": ROOT / "export"}
    for pkg, folder in dirs.items():
        pats = cfg["package-data"].get(pkg, [])
        for f in folder.rglob("*"):
            rel = f.relative_to(folder).as_posix()
            if f.is_dir() or f.suffix in (".py", ".pyc") or "__pycache__" in rel:
                continue
            assert any(fnmatch.fnmatch(rel, p) for p in pats), f"{pkg}: {rel} is not in package-data"


def test_only_the_default_router_is_installed_and_the_others_say_where_they_are(tmp_path, monkeypatch):
    """package-data installs linear + the shared store; the repository-only routers give a hint."""
    import json
    import shutil

    import tomllib

    import routekit
    from routekit import artifact

    pats = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    index = json.loads((ROOT / "artifacts" / "index.json").read_text())
    assert pats["routekit._artifacts"] == ["index.json", "_shared/*", f"{index['default']}/*"]
    assert set(index["repository_only"]) == {"bert", "mf", "sw", "sw-static"}
    # what a wheel install sees: the default, the shared store and the index
    inst = tmp_path / "_artifacts"
    inst.mkdir()
    shutil.copyfile(ROOT / "artifacts" / "index.json", inst / "index.json")
    shutil.copytree(ROOT / "artifacts" / "_shared", inst / "_shared", copy_function=os.link)
    shutil.copytree(ROOT / "artifacts" / "linear", inst / "linear", copy_function=os.link)
    monkeypatch.setenv("ROUTEKIT_ARTIFACTS", str(inst))
    monkeypatch.chdir(tmp_path)
    assert set(artifact.shipped()) == {"linear", "default"}
    assert routekit.load("default").route("hi").route in ("strong", "weak")
    with pytest.raises(routekit.UnknownArtifactError, match="'mf' is not installed.*ROUTEKIT_ARTIFACTS"):
        routekit.load("mf")
    monkeypatch.setenv("ROUTEKIT_ARTIFACTS", str(ROOT / "artifacts"))  # the repository's folder: all of them
    assert {"mf", "sw", "sw-static", "bert"} <= set(artifact.shipped())
