"""Issue 30 item 5, crash tests: `kill -9` of `routekit score --resume` at random points, then
resume (same bytes as one uninterrupted run); `kill -9` of the server while it writes the decision
log (no torn line after a restart, no complete line lost); a full disk while an artifact is
written (the old artifact intact, no temporary folder left)."""

import errno
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _fake_chat import free_port, wait_for_port


def _cli(*args):
    return [sys.executable, "-m", "routekit", *args]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# -- score --resume under SIGKILL ------------------------------------------------------------------
def test_kill9_then_resume_gives_the_bytes_of_one_uninterrupted_run(tmp_path):
    src = tmp_path / "in.jsonl"
    n, part_rows = 6000, 250  # 24 parts: each part and each state save is a separate kill window
    src.write_text("".join(json.dumps({"id": i, "prompt": f"prompt number {i}"}) + "\n" for i in range(n)))
    out = tmp_path / "out"
    cmd = _cli("score", "--input", str(src), "--router", "random", "--output", f"{out}/", "--part-rows",
               str(part_rows), "--resume")
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    want = _files(out)
    shutil.rmtree(out)
    rng = random.Random(30)
    kills = 0
    for target in sorted(rng.sample(range(1, n // part_rows), 5)):  # kill once this many parts exist
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while p.poll() is None and time.monotonic() < deadline:
            if out.is_dir() and len(list(out.glob("part-*"))) >= target:
                time.sleep(rng.uniform(0, 0.03))  # somewhere inside the next part or state write
                break
            time.sleep(0.002)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.wait()
    assert kills >= 3, "the runs finished before they could be killed; the test proved nothing"
    done = subprocess.run(cmd, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = _files(out)
    assert sorted(got) == sorted(want), "stray or missing files after the resumes"
    assert got == want  # bit-identical: parts, _score.json and _SUCCESS
    ids = [json.loads(line)["id"] for name in sorted(got) if name.startswith("part-")
           for line in got[name].decode().splitlines()]
    assert ids == list(range(n))  # complete, in order, nothing twice


def test_a_second_run_into_the_same_folder_is_refused(tmp_path):
    import fcntl

    src = tmp_path / "in.txt"
    src.write_text("a\nb\n")
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running `score` into out/ holds
        p = subprocess.run(_cli("score", "--input", str(src), "--router", "random", "--output", f"{out}/",
                                "--resume"), capture_output=True, text=True, timeout=120)
    finally:
        os.close(fd)
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1].startswith("routekit: error: another")
    assert list(out.iterdir()) == []


# -- the decision log --------------------------------------------------------------------------------
def _torn_log(path: Path) -> list[str]:
    lines = [json.dumps({"request_id": f"r{i}", "router": "random", "status": 200}) for i in range(3)]
    path.write_bytes(("\n".join(lines) + "\n").encode() + '{"request_id": "r3", "router": "ran'.encode())
    return lines


def test_opening_a_log_with_a_torn_tail_cuts_only_the_tail(tmp_path):
    pytest.importorskip("fastapi", reason="needs the server extra")
    from routekit.server.decision_log import DecisionLog

    path = tmp_path / "d.jsonl"
    lines = _torn_log(path)
    log = DecisionLog(str(path))  # a restart after a kill in the middle of a line
    log.write({"request_id": "r4", "router": "random", "status": 200})
    log.close()
    got = path.read_text().splitlines()
    assert got[:3] == lines and json.loads(got[3])["request_id"] == "r4" and len(got) == 4
    assert log.repaired == len('{"request_id": "r3", "router": "ran')



@pytest.mark.parametrize("target", ["file", "-"])
def test_a_write_after_close_is_dropped_not_an_error(tmp_path, target, capsys):
    from routekit.server.decision_log import DecisionLog

    path = tmp_path / "d.jsonl"
    log = DecisionLog(str(path) if target == "file" else "-")
    log.write({"request_id": "r1", "status": 200})
    log.close()
    log.write({"request_id": "late", "status": 200})  # a request that finishes after shutdown
    log.write({"request_id": "later", "status": 200})
    log.close()  # closing twice is harmless
    out = path.read_text() if target == "file" else capsys.readouterr().err
    assert [json.loads(x)["request_id"] for x in out.splitlines()] == ["r1"]
    assert log.dropped == 2

def test_report_reads_a_log_whose_last_line_is_torn(tmp_path):
    from routekit.server.decision_log import summarise

    path = tmp_path / "d.jsonl"
    _torn_log(path)
    assert summarise(path)["requests"] == 3
    path.write_bytes(path.read_bytes().replace(b'"r1"', b'"r1', 1))  # a bad line before the end: an error
    from routekit.errors import BadInputError

    with pytest.raises(BadInputError, match=":2: not a JSON object"):
        summarise(path)



def _serve(cfg: Path, port: int):
    p = subprocess.Popen(_cli("serve", "--config", str(cfg), "--port", str(port), "--log-level", "warning"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if wait_for_port(port, p, 60):
        return p
    if p.poll() is not None:
        raise AssertionError(p.stderr.read().decode()[-2000:])
    p.kill()
    raise AssertionError("the server did not start")


@pytest.mark.slow  # ~15 s: three kills and restarts of a real server
def test_kill9_of_the_server_while_it_logs_leaves_no_torn_line(tmp_path, server_deps):
    import httpx

    log = tmp_path / "decisions.jsonl"
    cfg = tmp_path / "server.json"
    cfg.write_text(json.dumps({"routers": {"random": "random"}, "preload": False, "decision_log": str(log),
                               "log_prompts": True, "log_prompt_chars": 100_000, "max_body_bytes": 1 << 22}))
    port = free_port()
    rng = random.Random(5)
    answered: set[str] = set()
    for round_ in range(3):
        srv = _serve(cfg, port)
        stop = threading.Event()

        def client(k):
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
                i = 0
                while not stop.is_set():
                    rid = f"{round_}-{k}-{i}"
                    i += 1
                    try:
                        r = c.post("/v1/route", headers={"x-request-id": rid},
                                   json={"prompt": f"{rid} " + "x" * rng.randrange(1000, 99_000)})
                    except httpx.HTTPError:
                        return  # the server was killed
                    if r.status_code == 200:
                        answered.add(rid)

        threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(4)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.5, 1.5))
        srv.send_signal(signal.SIGKILL)
        srv.wait()
        stop.set()
        for t in threads:
            t.join(15)
        before = log.read_bytes()
        complete = before[:before.rfind(b"\n") + 1]
        srv = _serve(cfg, port)  # the restart opens the log
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            assert c.post("/v1/route", headers={"x-request-id": f"after-{round_}"},
                          json={"prompt": "after"}).status_code == 200
        srv.send_signal(signal.SIGTERM)
        srv.wait(30)
        after = log.read_bytes()
        assert after.startswith(complete), "a complete line was lost"
        assert after.endswith(b"\n")
        recs = [json.loads(line) for line in after.decode().splitlines()]  # no torn line anywhere
        assert recs[-1]["request_id"] == f"after-{round_}"
    logged = {r["request_id"] for r in recs}
    assert answered and answered <= logged  # every answered request had its line written first


# -- a full disk while an artifact is written ------------------------------------------------------
def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _old_artifact(out: Path) -> None:
    """A self-contained copy of the shipped linear artifact (its encoder copied in, not shared)."""
    import routekit
    from routekit.calibrate import write_calibrated_copy

    write_calibrated_copy(routekit.load("linear"), ["hello", "write a haiku"], out, source="test")


@pytest.fixture()
def small_disk(tmp_path):
    """A 60 MB tmpfs (needs root and mount); skipped where it cannot be mounted."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=60m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({p.stderr.strip() or p.returncode}); "
                    "test_full_disk_enospc_raised covers the same path")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("stage", ["copying the files", "writing the manifest"])
def test_full_disk_keeps_the_old_artifact(small_disk, tmp_path, stage):
    old = small_disk / "out"
    _old_artifact(old)
    want = _digests(old)
    prompts = tmp_path / "p.txt"
    prompts.write_text("hello\nProve that there are infinitely many primes.\n")
    st = os.statvfs(small_disk)
    free = st.f_bavail * st.f_frsize
    need = sum(-(-p.stat().st_size // 4096) * 4096 for p in old.iterdir() if p.name != "manifest.json")
    # leave room for all but the last page of the copy, or for the copy but not the manifest
    room = need - 8192 if stage == "copying the files" else need
    (small_disk / "filler").write_bytes(b"\0" * (free - room))
    p = subprocess.run(_cli("calibrate", "--router", "linear", "--strong-fraction", "0.3", "--prompts", str(prompts),
                            "--write", str(old), "--force", "--json"), capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stdout + p.stderr
    last = p.stderr.rstrip("\n").split("\n")[-1]
    assert last.startswith("routekit: error: ") and "No space left on device" in last
    assert "the existing folder was left untouched" in last
    assert sorted(x.name for x in small_disk.iterdir()) == ["filler", "out"]  # no .out.partial-* left
    assert _digests(old) == want
    import routekit

    routekit.artifact.verify(old)


def test_full_disk_enospc_raised(tmp_path, monkeypatch):
    """The same without a tmpfs: the third file copied into the new artifact fails with ENOSPC."""
    import routekit
    from routekit import calibrate

    old = tmp_path / "out"
    _old_artifact(old)
    want = _digests(old)
    router = routekit.load("linear")
    real, calls = shutil.copyfile, []

    def copyfile(a, b, **kw):
        calls.append(b)
        if len(calls) == 3:
            Path(b).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(b))
        return real(a, b, **kw)

    from routekit.artifact import write as artifact_write  # where artifact.rewrite copies the files

    monkeypatch.setattr(artifact_write.shutil, "copyfile", copyfile)
    with pytest.raises(OSError) as info:
        calibrate.write_calibrated_copy(router, ["hello", "prove it"], old, source="test", overwrite=True)
    assert info.value.errno == errno.ENOSPC and "left untouched" in "".join(info.value.__notes__)
    assert [x.name for x in tmp_path.iterdir()] == ["out"] and _digests(old) == want


def test_a_written_artifact_folder_has_the_umask_mode(tmp_path):
    import routekit
    from routekit import calibrate

    old_mask = os.umask(0o022)
    try:
        out = tmp_path / "new"
        calibrate.write_calibrated_copy(routekit.load("linear"), ["hello", "prove it"], out, source="test")
    finally:
        os.umask(old_mask)
    assert (out.stat().st_mode & 0o777) == 0o755  # mkdtemp's 0700 would hide it from other users
