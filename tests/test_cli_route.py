"""Issue 30 item 6: `python -m routekit` runs the CLI; `routekit route` takes several prompts and
`-` for stdin (one prompt per line), and prints one result per line (JSON lines with --json)."""

import json
import subprocess
import sys

import routekit
from routekit.cli import main


def _run(*args, stdin: bytes = b""):
    return subprocess.run([sys.executable, "-m", "routekit", *args], input=stdin, capture_output=True, timeout=120)


def test_python_dash_m_routekit():
    p = _run("--version")
    assert p.returncode == 0 and p.stdout.decode().strip() == f"routekit {routekit.__version__}"
    p = _run("route", "hi", "--router", "random", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["router"].startswith("random")


def test_several_prompts_one_json_line_each(capsys):
    prompts = ["hello", "Prove that there are infinitely many primes.", "x" * 50]
    assert main(["route", *prompts, "--router", "random", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rnd = routekit.load("random")
    assert [json.loads(x) for x in lines] == [rnd.route(p).to_dict() for p in prompts]


def test_several_prompts_plain_text_one_line_each(capsys):
    assert main(["route", "a", "b", "--router", "random", "--threshold", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(x.startswith("strong\t") for x in lines)


def test_stdin_dash_reads_one_prompt_per_line_in_order():
    rnd = routekit.load("random")
    p = _run("route", "first", "-", "last", "--router", "random", "--json",
             stdin="hello\n\n  \nwhat is 2+2?\r\nno newline at the end".encode())
    assert p.returncode == 0, p.stderr
    got = [json.loads(x) for x in p.stdout.decode().splitlines()]
    want = ["first", "hello", "what is 2+2?", "no newline at the end", "last"]
    assert got == [rnd.route(w).to_dict() for w in want]


def test_stdin_errors_are_one_line():
    cases = [(("-", "-"), b"a\n", "'-' (stdin) can be given once"),
             (("-",), b"\n \n", "stdin has no prompts"),
             (("-",), b"ok\nbad \xff\n", "stdin, line 2: invalid UTF-8")]
    for args, stdin, msg in cases:
        p = _run("route", *args, "--router", "random", stdin=stdin)
        err = p.stderr.decode()
        assert p.returncode == 2 and p.stdout == b"", err
        assert err.endswith("\n") and err.count("\n") == 1 and err.startswith("routekit: error: ") and msg in err
