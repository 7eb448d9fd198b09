"""routekit.batch.ray on a local Ray started here (2 CPUs, loopback only) and shut down afterwards."""

from __future__ import annotations

import json
import os

import pytest
from _fake_chat import free_port

ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'routekit[ray]'")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from routekit.batch.score import score_file  # noqa: E402
from routekit.cli import main  # noqa: E402

TOPICS = ["prove", "poem", "sum", "translate", "explain", "hi", "debug this", "capital of"]


def _prompts(n):
    return [f"{TOPICS[i % len(TOPICS)]} #{i}: " + "details " * (i % 23) for i in range(n)]


@pytest.fixture(scope="module")
def local_ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="ERROR",
             log_to_driver=False)
    try:
        yield ray
    finally:
        try:
            from ray import serve

            serve.shutdown()
        finally:
            ray.shutdown()


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_score_dataset_equals_local(local_ray, default_router, tmp_path):
    from routekit.batch.ray import score_dataset

    rows = [{"id": i, "prompt": p, "user": f"u{i % 7}"} for i, p in enumerate(_prompts(300))]
    score_file(default_router, _jsonl(tmp_path / "in.jsonl", rows), tmp_path / "local.jsonl")
    local = {r["id"]: r for r in map(json.loads, (tmp_path / "local.jsonl").read_text().splitlines())}
    out = score_dataset(ray.data.from_items(rows), "default", concurrency=2, batch_size=16,
                        rows_per_call=37).take_all()
    assert len(out) == 300
    for r in out:
        assert r == local[r["id"]]  # every column kept, win rates bit-identical


def test_cli_ray_parquet_and_jsonl(local_ray, default_router, tmp_path, capsys):
    prompts = _prompts(120)
    pq.write_table(pa.table({"id": list(range(120)), "prompt": prompts}), tmp_path / "in.parquet")
    assert main(["score", "--input", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "local.parquet")]) == 0
    assert main(["score", "--engine", "ray", "--input", str(tmp_path / "in.parquet"),
                 "--output", f"{tmp_path}/ray-pq/"]) == 0
    assert (tmp_path / "ray-pq" / "_SUCCESS").is_file()
    got = pq.read_table(tmp_path / "ray-pq").sort_by("id")
    want = pq.read_table(tmp_path / "local.parquet")
    assert got.column("win_rate").to_pylist() == want.column("win_rate").to_pylist()
    assert got.column("route").to_pylist() == want.column("route").to_pylist()

    _jsonl(tmp_path / "in.jsonl", [{"id": i, "prompt": p} for i, p in enumerate(prompts)])
    assert main(["score", "--engine", "ray", "--input", str(tmp_path / "in.jsonl"),
                 "--output", f"{tmp_path}/ray-js/", "--strong-fraction", "0.3"]) == 0
    rows = [json.loads(line) for f in sorted((tmp_path / "ray-js").glob("*.json*")) for line in f.read_text().splitlines()]
    local = dict(enumerate(default_router.route_many(prompts, strong_fraction=0.3)))
    assert sorted(r["id"] for r in rows) == list(range(120))
    assert all(r["win_rate"] == local[r["id"]].win_rate and r["route"] == local[r["id"]].route for r in rows)


def test_bad_row_clear_error_nothing_published(local_ray, tmp_path, capsys):
    _jsonl(tmp_path / "in.jsonl", [{"id": 1, "prompt": "fine"}, {"id": 2, "prompt": None}])
    capsys.readouterr()
    assert main(["score", "--engine", "ray", "--input", str(tmp_path / "in.jsonl"), "--output", f"{tmp_path}/o/"]) == 2
    err = capsys.readouterr().err
    assert "routekit: error: column 'prompt' holds NoneType" in err and "'id': 2" in err
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.tmp-*"))
    assert main(["score", "--engine", "ray", "--input", str(tmp_path / "in.jsonl"), "--output", f"{tmp_path}/o.jsonl"]) == 2
    assert "give --output FOLDER/" in capsys.readouterr().err
    # two actors on this 2-CPU Ray would leave no CPU to read the file: refused, not a hang
    assert main(["score", "--engine", "ray", "--input", str(tmp_path / "in.jsonl"), "--output", f"{tmp_path}/o/",
                 "--concurrency", "2"]) == 2
    assert "--concurrency must be 1 to 1" in capsys.readouterr().err



def test_serve_app_answers_like_the_plain_server(local_ray):
    httpx = pytest.importorskip("httpx")
    from fastapi.testclient import TestClient
    from ray import serve

    from routekit.batch.ray import serve_app
    from routekit.server.app import ServerConfig, create_app

    cfg = ServerConfig(routers={"default": "default", "random": "random"})
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(serve_app(cfg, num_replicas=1), name="routekit-test", route_prefix="/")
    bodies = [{"prompt": "Prove that there are infinitely many primes."}, {"prompt": "hi", "strong_fraction": 0.2},
              {"prompt": "abc", "router": "random", "threshold": 0.5}]
    with TestClient(create_app(cfg)) as plain:
        for body in bodies:
            got = httpx.post(f"http://127.0.0.1:{port}/v1/route", json=body, timeout=60)
            assert got.status_code == 200, got.text
            assert got.json() == plain.post("/v1/route", json=body).json()
        bad = httpx.post(f"http://127.0.0.1:{port}/v1/route", json={"prompt": 3}, timeout=60)
        assert bad.status_code == plain.post("/v1/route", json={"prompt": 3}).status_code == 400
    serve.delete("routekit-test")
