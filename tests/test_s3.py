"""Issue 30 item 4: `routekit score` reading s3:// for real, against a local S3 (moto's server on
127.0.0.1, started and stopped here; tests/_moto.py).  The local streaming engine on JSONL, CSV
and Parquet objects gives the same bytes as on the same local file; a missing key, a denied bucket
and a partial object are each one `routekit: error:` line naming the URI; `--engine ray` (slow:
starts Ray) reads the same object.  Credentials and endpoint reach routekit as AWS_* variables."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("moto.server", reason="needs moto's server: pip install 'moto[server]' (the dev extra)")
pytest.importorskip("boto3", reason="needs boto3 (moto's dependency) to set the local S3 up")
pa = pytest.importorskip("pyarrow", reason="s3:// input needs the batch extra (pyarrow)")
import pyarrow.parquet as pq  # noqa: E402
from _moto import child_env, cutting_proxy, local_s3  # noqa: E402

N = 300
ROWS = [{"id": i, "prompt": f"question {i}: " + "why " * (i % 7)} for i in range(N)]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    d = tmp_path_factory.mktemp("s3src")
    jsonl = "".join(json.dumps(r) + "\n" for r in ROWS).encode()
    (d / "prompts.jsonl").write_bytes(jsonl)
    (d / "prompts.csv").write_text("id,prompt\n" + "".join(f"{r['id']},\"{r['prompt']}\"\n" for r in ROWS))
    pq.write_table(pa.Table.from_pylist(ROWS), d / "prompts.parquet")
    with local_s3() as s:
        for name in ("prompts.jsonl", "prompts.csv", "prompts.parquet"):
            s.admin.put_object(Bucket="open", Key=f"data/{name}", Body=(d / name).read_bytes())
        s.admin.put_object(Bucket="locked", Key="data/prompts.jsonl", Body=jsonl)
        cut = jsonl.rfind(b"\n", 0, len(jsonl) // 2) + 25  # an upload cut inside line N/2 + 1
        s.admin.put_object(Bucket="open", Key="partial/prompts.jsonl", Body=jsonl[:cut])
        pqb = (d / "prompts.parquet").read_bytes()
        s.admin.put_object(Bucket="open", Key="partial/prompts.parquet", Body=pqb[:len(pqb) // 2])
        s.local = d
        s.cut_line = jsonl[:cut].count(b"\n") + 1
        yield s


def _score(s3, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "routekit", "score", "--router", "random", *args],
                          capture_output=True, env=child_env(s3), timeout=timeout)


def _error_line(p, ray_logs: bool = False) -> str:
    """The last stderr line, checked to be the one error line (Ray logs its workers' tracebacks
    itself before it, which ``ray_logs`` allows)."""
    assert p.returncode == 2, p.stderr.decode()[-3000:]
    err = p.stderr.decode()
    last = err.rstrip("\n").split("\n")[-1]
    assert last.startswith("routekit: error: ") and "\r" not in last, err[-3000:]
    assert ray_logs or "Traceback" not in err, err[-3000:]
    return last


@pytest.mark.parametrize("name", ["prompts.jsonl", "prompts.csv", "prompts.parquet"])
def test_local_engine_reads_an_s3_object_like_the_local_file(s3, tmp_path, name):
    out_ext = ".parquet" if name.endswith(".parquet") else ".jsonl"
    remote = _score(s3, "--input", f"s3://open/data/{name}", "--output", str(tmp_path / f"remote{out_ext}"))
    assert remote.returncode == 0, remote.stderr.decode()[-3000:]
    local = _score(s3, "--input", str(s3.local / name), "--output", str(tmp_path / f"local{out_ext}"))
    assert local.returncode == 0, local.stderr.decode()[-3000:]
    a, b = (tmp_path / f"remote{out_ext}").read_bytes(), (tmp_path / f"local{out_ext}").read_bytes()
    if out_ext == ".parquet":
        assert pq.read_table(tmp_path / f"remote{out_ext}").equals(pq.read_table(tmp_path / f"local{out_ext}"))
    else:
        assert a == b and len(a.splitlines()) == N


def test_resume_into_a_folder_from_s3(s3, tmp_path):
    out = tmp_path / "out"
    p = _score(s3, "--input", "s3://open/data/prompts.jsonl", "--output", f"{out}/", "--part-rows", "100")
    assert p.returncode == 0, p.stderr.decode()[-3000:]
    state = json.loads((out / "_score.json").read_text())
    assert state["job"]["input"] == "s3://open/data/prompts.jsonl" and state["job"]["input_bytes"] > 0
    again = _score(s3, "--input", "s3://open/data/prompts.jsonl", "--output", f"{out}/", "--part-rows", "100",
                   "--resume")
    assert again.returncode == 0 and b"3 parts resumed" in again.stderr


@pytest.mark.parametrize("engine", ["local", "ray"])
@pytest.mark.parametrize("case, uri, words", [
    ("missing key", "s3://open/data/nope.jsonl", "s3://open/data/nope.jsonl: not found"),
    ("missing bucket", "s3://no-such-bucket/x.jsonl", "s3://no-such-bucket/x.jsonl: "),
    ("denied bucket", "s3://locked/data/prompts.jsonl", "s3://locked/data/prompts.jsonl: access denied"),
])
def test_missing_and_denied_are_one_line(s3, tmp_path, engine, case, uri, words):
    p = _score(s3, "--engine", engine, "--input", uri, "--output", f"{tmp_path / 'out'}/")
    assert words in _error_line(p)
    assert not (tmp_path / "out").exists()


def test_a_partial_jsonl_object_names_the_cut_line(s3, tmp_path):
    p = _score(s3, "--input", "s3://open/partial/prompts.jsonl", "--output", str(tmp_path / "o.jsonl"))
    last = _error_line(p)
    assert f"s3://open/partial/prompts.jsonl:{s3.cut_line}: invalid JSON" in last
    assert not (tmp_path / "o.jsonl").exists()


def test_a_partial_parquet_object_is_one_line(s3, tmp_path):
    p = _score(s3, "--input", "s3://open/partial/prompts.parquet", "--output", str(tmp_path / "o.parquet"))
    assert "s3://open/partial/prompts.parquet: not a readable Parquet file" in _error_line(p)


@pytest.mark.slow  # ~7 s: the S3 client retries the cut download with back-off before it gives up
def test_a_download_cut_half_way_is_one_line(s3, tmp_path):
    body = "".join(json.dumps({"prompt": f"p {i} " + "x" * 50}) + "\n" for i in range(5000)).encode()
    s3.admin.put_object(Bucket="open", Key="big/cut.jsonl", Body=body)
    with cutting_proxy(s3.endpoint, "/open/big/cut.jsonl", 100_000) as proxy:
        env = child_env(s3) | {"AWS_ENDPOINT_URL": proxy}
        p = subprocess.run([sys.executable, "-m", "routekit", "score", "--router", "random", "--input",
                            "s3://open/big/cut.jsonl", "--output", str(tmp_path / "o.jsonl")],
                           capture_output=True, env=env, timeout=300)
    last = _error_line(p)
    assert f"s3://open/big/cut.jsonl: reading stopped after" in last and f"of {len(body)} bytes" in last
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.slow  # starts a local Ray (~20-40 s)
def test_ray_engine_reads_s3(s3, tmp_path):
    pytest.importorskip("ray", reason="needs the ray extra")
    out = tmp_path / "ray"
    p = _score(s3, "--engine", "ray", "--input", "s3://open/data/prompts.jsonl", "--output", f"{out}/",
               timeout=600)
    assert p.returncode == 0, p.stderr.decode()[-3000:]
    rows = [json.loads(x) for f in sorted(out.glob("part-*.jsonl")) for x in f.read_text().splitlines()]
    local = _score(s3, "--input", str(s3.local / "prompts.jsonl"), "--output", str(tmp_path / "local.jsonl"))
    assert local.returncode == 0
    want = [json.loads(x) for x in (tmp_path / "local.jsonl").read_text().splitlines()]
    assert rows == want
    bad = _score(s3, "--engine", "ray", "--input", "s3://open/partial/prompts.jsonl", "--output",
                 f"{tmp_path / 'bad'}/", timeout=600)
    last = _error_line(bad, ray_logs=True)
    assert "the Ray job on s3://open/partial/prompts.jsonl failed: ValueError" in last
    assert not (tmp_path / "bad").exists()
