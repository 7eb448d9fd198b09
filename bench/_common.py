"""What the side-by-side scripts in ``bench/`` share: where the reference harness lives, load, p50."""

from __future__ import annotations

import os
import statistics
import subprocess
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]  # the folder holding this repo, ../shared and ../peer

#: The shared data folder ($ROUTEKIT_DATA, else ../shared/data beside this repo).
DATA = Path(os.environ.get("ROUTEKIT_DATA", str(_ROOT / "shared" / "data")))
#: Python of the virtualenv with routellm==0.2.0 ($PEER_PYTHON, else ../peer/venv beside this repo).
PEER_PY = os.environ.get("PEER_PYTHON", str(_ROOT / "peer" / "venv" / "bin" / "python"))
#: The reference's own harness (../shared/bench/peer/bench_peer.py).
PEER_SCRIPT = str(_ROOT / "shared" / "bench" / "peer" / "bench_peer.py")
#: Where that harness caches its checkpoints and prompts ($PEER_ASSETS, else ../peer/peer-assets).
PEER_ASSETS = os.environ.get("PEER_ASSETS", str(_ROOT / "peer" / "peer-assets"))


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def p50(lat) -> float:
    """Median of latencies in seconds, in milliseconds (3 decimals)."""
    return round(1e3 * statistics.median(lat), 3)
