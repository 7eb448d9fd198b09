"""Issue 30 item 1: when `routekit score` stops (bad input, SIGTERM, Ctrl-C) its progress bar is
closed first and the `routekit: error: ...` line is the last line of stderr, alone; no bar is
drawn after it.  Runs the real CLI (`python -m routekit`) in a subprocess and reads its stderr.

The bar is drawn whether or not stderr is a terminal (tqdm, or routekit's own fallback), so a pipe
shows exactly what a terminal would receive; `\\r` redraws are kept in the bytes checked."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

ROWS = ['{"prompt": "hello number %d"}' % i for i in range(2500)]
BAD = {
    "malformed JSON line": ('{"prompt": "x"', "line 2501", "invalid JSON"),
    "invalid UTF-8": (b'{"prompt": "\xff\xfe"}', "line 2501", "invalid UTF-8"),
    "wrong field type": ('{"prompt": 42}', "line 2501", "field 'prompt' is a int, not a string"),
    "nested-JSON bomb": ('{"prompt": ' + "[" * 100_000 + "]" * 100_000 + "}", "line 2501", "nested too deeply"),
}


def _cli(*args):
    return [sys.executable, "-m", "routekit", *args]


def _env():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("COLUMNS", None)
    return env


def _last_line(stderr: bytes) -> bytes:
    lines = stderr.rstrip(b"\n").split(b"\n")
    return lines[-1]


def _check(stderr: bytes, *needles: str) -> str:
    assert b"scoring (random)" in stderr, "no progress bar was drawn; the test would prove nothing"
    assert stderr.endswith(b"\n")
    last = _last_line(stderr)
    assert b"\r" not in last, f"the error shares its line with a bar: {last[:200]!r}"
    text = last.decode("utf-8")
    assert text.startswith("routekit: error: "), f"last stderr line is not the error: {text[:200]!r}"
    for n in needles:
        assert n in text
    assert stderr.count(b"routekit: error: ") == 1
    before = stderr[:-len(last) - 1]
    assert before.endswith(b"\n"), "the line before the error is not finished"
    return text


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_input_error_is_the_last_stderr_line(tmp_path, kind):
    bad, where, what = BAD[kind]
    src = tmp_path / "in.jsonl"
    body = ("\n".join(ROWS) + "\n").encode()
    src.write_bytes(body + (bad if isinstance(bad, bytes) else bad.encode()) + b"\n" + b'{"prompt": "after"}\n')
    out = tmp_path / "out.jsonl"
    p = subprocess.run(_cli("score", "--input", str(src), "--router", "random", "--output", str(out)),
                       capture_output=True, env=_env(), timeout=120)
    assert p.returncode == 2, p.stderr[-2000:]
    text = _check(p.stderr, f"{src}:{where.split()[1]}", what)
    assert "was not written" in text and not out.exists()


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                             (signal.SIGINT, 130, "interrupted")])
def test_signal_message_is_the_last_stderr_line(tmp_path, sig, code, word):
    src = tmp_path / "big.txt"
    src.write_text("".join(f"prompt {i}\n" for i in range(400_000)))
    out = tmp_path / "out.jsonl"
    p = subprocess.Popen(_cli("score", "--input", str(src), "--router", "random", "--output", str(out)),
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=_env())
    got = bytearray()
    seen = threading.Event()

    def pump():
        while True:
            b = p.stderr.read1(65536)
            if not b:
                return
            got.extend(b)
            if b"prompt/s" in got or b" prompt (" in got:  # the bar shows a rate: work is under way
                seen.set()

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    assert seen.wait(60), f"no progress bar: {bytes(got)[-500:]!r}"
    time.sleep(0.2)
    assert p.poll() is None, "the run finished before the signal; give it more rows"
    p.send_signal(sig)
    assert p.wait(60) == code
    t.join(10)
    text = _check(bytes(got), word)
    assert "was not written" in text and not out.exists()


def test_without_tqdm_the_fallback_bar_is_closed_too(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(ROWS) + '\n{"prompt": 42}\n')
    code = ("import sys; sys.modules['tqdm'] = sys.modules['tqdm.auto'] = None; "
            "from routekit.cli import main; sys.exit(main())")
    p = subprocess.run([sys.executable, "-c", code, "score", "--input", str(src), "--router", "random",
                        "--batch-size", "8", "--output", str(tmp_path / "o.jsonl")],
                       capture_output=True, env=_env(), timeout=120)
    assert p.returncode == 2, p.stderr[-2000:]
    assert b"%|" not in p.stderr and b" prompt (" in p.stderr  # routekit's own bar, not tqdm's
    _check(p.stderr, f"{src}:2501", "not a string")
