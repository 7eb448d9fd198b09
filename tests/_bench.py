"""The project's bench/ scripts (not part of the routekit package), importable from tests."""

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import eval_report  # noqa: E402
import peer_compare  # noqa: E402

__all__ = ["BENCH", "eval_report", "peer_compare"]
