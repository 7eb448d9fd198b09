"""The runtime package's shape: subpackages by feature (no crowded flat folder, no facades, no import
cycles), one errors module, no project-internal numbers in the wheel, the bench/ tools still work."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from _bench import peer_compare

PKG = Path(__file__).resolve().parents[1] / "routekit"


EXPORT = PKG.parent / "export"  # installed as routekit_export (package-dir)


def _module(path: Path, root: Path, name: str) -> str:
    return ".".join([name, *path.relative_to(root).with_suffix("").parts]).removesuffix(".__init__")


def _internal_imports(path: Path, root: Path, name: str, modules: set[str]) -> set[str]:
    """Modules of package ``name`` (folder ``root``) imported by ``path`` at any level (function-level
    imports included).  ``from pkg import sub`` depends on ``pkg.sub`` (and so on ``pkg`` only through it)."""
    mod = _module(path, root, name)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                imported = ".".join(base + ([node.module] if node.module else []))
            else:
                imported = node.module or ""
            subs = [f"{imported}.{a.name}" for a in node.names if f"{imported}.{a.name}" in modules]
            names = subs if len(subs) == len(node.names) else [imported] + subs
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out |= {n.removesuffix(".__init__") for n in names if n == name or n.startswith(name + ".")}
    return out


def _modules(root: Path, name: str) -> dict[str, Path]:
    return {_module(p, root, name): p for p in root.rglob("*.py")}


def import_cycles(root: Path, name: str) -> list[list[str]]:
    """Every import cycle among the modules of a package (a package's ``__init__`` importing its own
    submodules is not one worth reporting: Python imports the package before any submodule)."""
    files = _modules(root, name)
    graph = {m: {d for d in _internal_imports(p, root, name, set(files)) if d in files and d != m}
             for m, p in files.items()}
    graph = {m: {d for d in deps if not (files[m].name == "__init__.py" and d.startswith(m + "."))}
             for m, deps in graph.items()}
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return cycles


def test_no_import_cycles_in_the_runtime():
    assert import_cycles(PKG, "routekit") == []


def test_no_import_cycles_in_export():
    assert import_cycles(EXPORT, "routekit_export") == []


MAX_FLAT = 15  #: modules in one folder before it wants subpackages by feature


def test_no_folder_is_a_flat_list_of_modules():
    crowded = {}
    for folder in [PKG, *[d for d in PKG.rglob("*") if d.is_dir() and (d / "__init__.py").is_file()]]:
        n = len([p for p in folder.glob("*.py") if p.name not in ("__init__.py", "__main__.py")])
        if n > MAX_FLAT:
            crowded[str(folder.relative_to(PKG.parent))] = n
    assert crowded == {}


def _only_reexports(path: Path) -> bool:
    """A module whose body is imports, ``__all__`` and a docstring only: a facade."""
    body = ast.parse(path.read_text()).body
    has_import = False
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            has_import = True
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        elif isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__all__"]:
            continue
        else:
            return False
    return has_import


def test_no_module_only_reexports_another():
    """Facades that keep old import paths working are gone; a package's ``__init__`` may gather its
    public names, a module may not."""
    facades = [str(p.relative_to(PKG.parent)) for p in PKG.rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py") and _only_reexports(p)]
    assert facades == []


def test_every_routekit_error_lives_in_errors_and_is_exported():
    import routekit
    from routekit import errors

    defined = {}
    for p in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                    getattr(b, "id", getattr(b, "attr", "")).endswith("Error") for b in node.bases):
                defined[node.name] = str(p.relative_to(PKG))
    outside = {k: v for k, v in defined.items() if v != "errors.py" and k in dir(errors)}
    assert outside == {}
    subclasses = {n for n in dir(errors) if isinstance(getattr(errors, n), type)
                  and issubclass(getattr(errors, n), errors.RoutekitError)}
    elsewhere = {k: v for k, v in defined.items() if v != "errors.py" and k not in subclasses
                 and "RoutekitError" in (PKG / v).read_text()}
    assert elsewhere == {}, "RoutekitError subclasses defined outside errors.py"
    assert subclasses <= set(routekit.__all__), subclasses - set(routekit.__all__)


def test_export_uses_only_public_runtime_modules():
    private = []
    for p in EXPORT.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("routekit"):
                mods = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                if any(part.startswith("_") and part != "__version__" for m in mods[:1] for part in m.split(".")):
                    private.append(f"{p.name}: {node.module}")
    assert private == []


def test_python_dash_m_routekit_runs_the_cli():
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "routekit", "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "usage: routekit" in res.stdout, res.stderr


def test_the_wheel_holds_no_project_targets_or_peer_harness():
    text = "\n".join(p.read_text() for p in PKG.rglob("*.py"))
    for marker in ("NOT MET", "PAPER_BEST", "bench_peer", "eval-table:start"):
        assert marker not in text, marker


def test_peer_compare_checks_the_targets_from_bench_results():
    results = {"routers": [{
        "router": "mf", "kind": "mf", "encoder": "Encoder",
        "single": {64: {"p50_ms": 4.0, "scoring_given_embedding_p50_ms": 0.01}},
        "batched": {1: {"fraction_of_encoder": 0.95, "prompts_per_s": 100.0},
                    8: {"fraction_of_encoder": 0.85, "prompts_per_s": 110.0}},
        "cold_start": {"import_s": 0.2, "load_s": 0.3, "peak_rss_mb": 150.0}}]}
    lines, targets = peer_compare.compare(results, threads=1, quick=True)
    assert lines == []
    assert "MF single prompt 64 tokens p50 <= 15 ms: 4.0 ms  MET" in targets
    assert "mf batched throughput >= 90% of bare encoder: worst 85%  NOT MET" in targets
    assert any(t.startswith("mf import + load <= 1 s: 0.50 s MET") for t in targets)


def test_eval_plot_without_matplotlib_fails_before_scoring(tmp_path, monkeypatch, capsys):
    import sys

    from routekit import eval as evaluate
    from routekit.cli import main

    jl = tmp_path / "mine.jsonl"
    jl.write_text("".join(json.dumps({"prompt": f"q {i}", "big": i % 3 != 0, "small": i % 2}) + "\n" for i in range(30)))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError

    def no_work(*a, **k):
        raise AssertionError("scored before finding matplotlib missing")

    monkeypatch.setattr(evaluate, "cached_win_rates", no_work)
    rc = main(["eval", "--file", str(jl), "--strong-model", "big", "--weak-model", "small", "--router", "random",
               "--plot", str(tmp_path / "p.png")])
    err = capsys.readouterr().err
    assert rc == 2 and "pip install 'routekit[plot]'" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("script", ["eval_report.py", "peer_compare.py", "chat_proxy.py", "task_kind.py",
                                    "llm_features.py", "litellm_baseline.py", "linear_weights.py"])
def test_bench_scripts_have_help(script):
    import subprocess
    import sys

    from _bench import BENCH

    res = subprocess.run([sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "usage:" in res.stdout, res.stderr


def test_every_runtime_package_is_in_the_wheel():
    """pyproject lists packages by name: a new subpackage left off the list imports in a checkout and
    fails in an installed wheel."""
    import tomllib

    listed = set(tomllib.loads((PKG.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(PKG.parent).parts) for p in PKG.rglob("__init__.py")}
    assert found - listed == set()
