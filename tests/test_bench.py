import json

import pytest

from routekit.eval import bench


def test_prompts_have_requested_token_counts(default_router):
    tok = default_router.encoder.tokenizer
    for n in (16, 64, 200):
        ps = bench.prompts_with_tokens(tok, n, 3, seed=n)
        tok.no_truncation()
        try:
            counts = [len(tok.encode(p).ids) for p in ps]
        finally:
            tok.enable_truncation(max_length=default_router.encoder.max_length)
        assert all(n <= c <= n + 3 for c in counts), counts
        assert len(set(ps)) == 3
    # the tokenizer's truncation is restored
    assert len(tok.encode("word " * 2000).ids) == default_router.encoder.max_length


@pytest.mark.slow
def test_bench_cli_quick(tmp_path, capsys):
    from routekit.cli import main

    assert main(["bench", "--router", "mf", "--quick", "--out", str(tmp_path), "--threads", "2"]) == 0
    data = json.loads((tmp_path / "bench.json").read_text())
    r = data["routers"][0]
    assert set(map(int, r["single"])) == set(bench.TOKENS)
    assert r["cold_start"]["peak_rss_mb"] > 0
    assert (tmp_path / "bench.png").is_file()
