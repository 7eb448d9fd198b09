"""routekit.io: outputs are checked before work and written whole or not at all (issue 18 item 1)."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from routekit import artifact
from routekit import io as _io
from routekit.errors import OutputError, OutputExistsError, RoutekitError

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".partial-" in p.name)


def test_atomic_write_creates_and_replaces(tmp_path):
    out = tmp_path / "o.jsonl"
    with _io.atomic_write(out) as f:
        f.write("one\n")
        assert not out.exists()  # nothing at the destination until the block ends
    assert out.read_text() == "one\n"
    os.chmod(out, 0o640)
    with _io.atomic_write(out) as f:
        f.write("two\n")
    assert out.read_text() == "two\n"
    assert oct(out.stat().st_mode & 0o777) == oct(0o640)  # the replaced file keeps its mode
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_leaves_the_old_file_untouched(tmp_path, exc):
    out = tmp_path / "o.jsonl"
    out.write_text("precious\n")
    with pytest.raises(type(exc)) as info:
        with _io.atomic_write(out) as f:
            f.write("half of the new con")
            raise exc
    assert out.read_text() == "precious\n"
    assert _leftovers(tmp_path) == []
    assert any("left untouched" in n for n in info.value.__notes__)


def test_atomic_path_for_writers_that_want_a_name(tmp_path):
    import numpy as np

    out = tmp_path / "a.npz"
    with _io.atomic_path(out) as tmp:
        assert tmp.suffix == ".npz" and tmp.parent == tmp_path
        np.savez(tmp, x=np.arange(3))
    assert np.load(out)["x"].tolist() == [0, 1, 2]
    assert _leftovers(tmp_path) == []


def test_output_that_is_the_input_is_refused(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text("data\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(inp)
    hard = tmp_path / "hard.jsonl"
    os.link(inp, hard)
    for out in (inp, link, hard, tmp_path / "." / "in.jsonl"):
        with pytest.raises(OutputError, match="same file as the input"):
            _io.check_output(out, inputs=[inp])
        with pytest.raises(OutputError):
            with _io.atomic_write(out, inputs=[inp]) as f:
                f.write("x")
    assert inp.read_text() == "data\n"


def test_output_through_a_symlink_writes_the_target(tmp_path):
    target = tmp_path / "real.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    with _io.atomic_write(link) as f:
        f.write("new")
    assert link.is_symlink() and target.read_text() == "new"


@pytest.mark.parametrize("case", ["folder", "missing-parent", "parent-is-file", "device", "nul", "none", "bytes"])
def test_bad_output_locations_are_refused_before_work(tmp_path, case):
    (tmp_path / "f").write_text("x")
    path = {"folder": tmp_path, "missing-parent": tmp_path / "nope" / "o.jsonl",
            "parent-is-file": tmp_path / "f" / "o.jsonl", "device": "/dev/full",
            "nul": str(tmp_path / "a\0b"), "none": None, "bytes": b"/tmp/x"}[case]
    if case == "device" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with pytest.raises(OutputError) as info:
        _io.check_output(path)
    assert isinstance(info.value, RoutekitError)


@pytest.mark.skipif(ROOT, reason="root can write into read-only folders")
def test_read_only_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="not writable"):
            _io.check_output(ro / "o.txt")
    finally:
        ro.chmod(0o700)


def _run(code: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_sigterm_while_writing_leaves_the_old_file(tmp_path):
    out = tmp_path / "o.jsonl"
    out.write_text("precious\n")
    p = _run("""
        import os, signal, sys
        from routekit.io import atomic_write
        with atomic_write(sys.argv[1]) as f:
            for i in range(1000):
                f.write(f"line {i}\\n")
            os.kill(os.getpid(), signal.SIGTERM)
            for i in range(10**7):  # the signal arrives here
                pass
            print("not reached")
    """, out)
    assert p.returncode == 128 + signal.SIGTERM, p.stderr
    assert "not reached" not in p.stdout
    assert out.read_text() == "precious\n"
    assert _leftovers(tmp_path) == []


def test_disk_full_is_an_output_error_and_keeps_the_old_file(tmp_path):
    out = tmp_path / "o.jsonl"
    out.write_text("precious\n")
    # RLIMIT_FSIZE makes write() fail with EFBIG, like a full disk, without needing a small filesystem
    p = _run("""
        import resource, signal, sys
        from routekit.io import atomic_write
        from routekit.errors import OutputError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            with atomic_write(sys.argv[1]) as f:
                for i in range(100000):
                    f.write("x" * 100 + "\\n")
        except OutputError as exc:
            print("OutputError:", exc)
    """, out)
    assert "OutputError:" in p.stdout and "left untouched" in p.stdout, p.stdout + p.stderr
    assert out.read_text() == "precious\n"
    assert _leftovers(tmp_path) == []


def test_output_folder_checks(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "prompts.txt").write_text("a\n")
    with pytest.raises(OutputExistsError, match="--force") as info:
        _io.check_output_dir(src)
    assert isinstance(info.value, FileExistsError)  # callers catching FileExistsError keep working
    with pytest.raises(OutputError, match="is \\(or holds\\) the input"):
        _io.check_output_dir(src, overwrite=True, inputs=[src])
    with pytest.raises(OutputError, match="holds"):
        _io.check_output_dir(src, overwrite=True, inputs=[src / "prompts.txt"])
    with pytest.raises(OutputError, match="not a folder"):
        _io.check_output_dir(src / "prompts.txt", overwrite=True)
    assert _io.check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"


def test_artifact_writer_interrupted_keeps_the_old_folder(tmp_path):
    out = tmp_path / "art"
    with artifact.ArtifactWriter(out) as w:
        (w.dir / "a.txt").write_text("v1")
        w.manifest.update(kind="random")
    with pytest.raises(KeyboardInterrupt) as info:
        with artifact.ArtifactWriter(out, overwrite=True) as w:
            (w.dir / "a.txt").write_text("v2")
            raise KeyboardInterrupt
    assert (out / "a.txt").read_text() == "v1"
    assert any("left untouched" in n for n in info.value.__notes__)
    assert _leftovers(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the temporary handler is gone


def test_cli_calibrate_write_existing_folder_names_a_real_flag(tmp_path, capsys):
    from routekit.cli import main

    prompts = tmp_path / "p.txt"
    prompts.write_text("hello\nprove that 2 + 2 = 4\n")
    out = tmp_path / "cal"
    out.mkdir()
    assert main(["calibrate", "--router", "linear", "--strong-fraction", "0.5", "--prompts", str(prompts),
                 "--write", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("routekit: error:") and err.count("\n") == 1 and "--force" in err
    assert main(["calibrate", "--router", "linear", "--strong-fraction", "0.5", "--prompts", str(prompts),
                 "--write", str(out), "--force", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["written"] == str(out)
    artifact.verify(out)
    # writing over the router's own folder, or over the prompts file, is refused
    assert main(["calibrate", "--router", str(out), "--strong-fraction", "0.5", "--prompts", str(prompts),
                 "--write", str(out), "--force"]) == 2
    assert "input" in capsys.readouterr().err


def test_cli_calibrate_interrupted_says_the_old_folder_is_kept(tmp_path, capsys, monkeypatch):
    from routekit.cli import main

    prompts = tmp_path / "p.txt"
    prompts.write_text("hello\nprove that 2 + 2 = 4\n")
    out = tmp_path / "cal"
    args = ["calibrate", "--router", "linear", "--strong-fraction", "0.5", "--prompts", str(prompts),
            "--write", str(out), "--force", "--json"]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    from routekit.artifact import write as artifact_write  # where artifact.rewrite copies the files

    monkeypatch.setattr(artifact_write.shutil, "copyfile", interrupted)
    assert main(args) == 130
    err = capsys.readouterr().err
    assert err.startswith("routekit: error: interrupted") and "left untouched" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _leftovers(tmp_path) == []


def _labelled(tmp_path):
    jl = tmp_path / "mine.jsonl"
    jl.write_text("".join(json.dumps({"prompt": f"question {i}", "big": i % 3 != 0, "small": i % 2})
                          + "\n" for i in range(30)))
    return jl


@pytest.mark.parametrize("case", ["plot-is-input", "plot-is-folder", "plot-missing-folder", "out-is-file"])
def test_cli_eval_outputs_checked_before_work(tmp_path, capsys, monkeypatch, case):
    from routekit import eval as evaluate
    from routekit.cli import main

    jl = _labelled(tmp_path)
    (tmp_path / "afile").write_text("x")
    extra = {"plot-is-input": ["--plot", str(jl)], "plot-is-folder": ["--plot", str(tmp_path)],
             "plot-missing-folder": ["--plot", str(tmp_path / "no" / "p.png")],
             "out-is-file": ["--out", str(tmp_path / "afile")]}[case]

    def no_work(*a, **k):
        raise AssertionError("scored before checking the outputs")

    monkeypatch.setattr(evaluate, "cached_win_rates", no_work)
    rc = main(["eval", "--file", str(jl), "--strong-model", "big", "--weak-model", "small",
               "--router", "random", *extra])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("routekit: error:") and err.count("\n") == 1, err
    assert jl.read_text().startswith('{"prompt": "question 0"')


def test_cli_eval_plot_and_json_written_atomically(tmp_path, capsys):
    from routekit.cli import main

    jl = _labelled(tmp_path)
    plot = tmp_path / "p.png"
    plot.write_bytes(b"old")
    assert main(["eval", "--file", str(jl), "--strong-model", "big", "--weak-model", "small",
                 "--router", "random", "--plot", str(plot), "--out", str(tmp_path / "o"), "--json"]) == 0
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "o" / "mine.json").read_text())["n"] == 30
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "o") == []


def test_exporters_check_the_output_before_any_work(tmp_path, capsys):
    """Every exporter refuses an existing --out (without --force) or an --out that is one of its inputs
    before it reads any data: the data folder here does not even exist."""
    pytest.importorskip("routekit_export")
    from routekit_export.build import build_mf
    from routekit_export.cli import main as export_main
    from routekit_export.linear import build_linear
    from routekit_export.sw import build_sw

    enc = tmp_path / "enc"
    enc.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    missing = tmp_path / "no-data"
    for build in (build_mf, build_sw, build_linear):
        with pytest.raises(OutputExistsError, match="--force"):
            build(out, encoder_dir=enc, data_dir=missing, cfg=None)
        with pytest.raises(OutputError, match="input"):
            build(enc, encoder_dir=enc, data_dir=missing, cfg=None, overwrite=True)
    assert export_main(["train-mf", "--encoder", str(enc), "--data", str(missing), "--out", str(enc),
                        "--force"]) == 2
    assert capsys.readouterr().err.startswith("routekit-export: error: output folder")


def test_cli_sigterm_during_calibrate_write_keeps_the_old_folder_and_says_so(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("hello\nprove that 2 + 2 = 4\n")
    out = tmp_path / "cal"
    out.mkdir()
    (out / "keep.txt").write_text("old artifact")
    p = _run("""
        import os, shutil, signal, sys
        from routekit.cli import main
        real = shutil.copyfile
        def copy_then_term(src, dst, **kw):
            real(src, dst, **kw)
            os.kill(os.getpid(), signal.SIGTERM)  # SIGTERM while the new folder is half written
        shutil.copyfile = copy_then_term  # artifact.rewrite copies through shutil
        sys.exit(main(["calibrate", "--router", "linear", "--strong-fraction", "0.5", "--prompts", sys.argv[1],
                       "--write", sys.argv[2], "--force", "--json"]))
    """, prompts, out)
    assert p.returncode == 128 + signal.SIGTERM, p.stderr
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("routekit:")]
    assert len(err) == 1 and err[0].startswith("routekit: error: terminated (SIGTERM)") and "left untouched" in err[0]
    assert sorted(x.name for x in out.iterdir()) == ["keep.txt"] and _leftovers(tmp_path) == []
