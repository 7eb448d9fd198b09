#!/usr/bin/env bash
# The GPU path of routekit in one command (issue 32; docs/causal.md "GPU check").
#
#   bash bench/gpu_check.sh [gpu_check.py options]      e.g. --causal build/causal-smollm2 --json gpu.json
#
# On a CUDA machine it makes a virtual environment (GPU_CHECK_VENV, default .venv-gpu) with
#   * torch with CUDA (the default Linux torch wheel on PyPI; TORCH_SPEC to pin another),
#   * transformers 4.57.x, safetensors, onnx (the causal torch backend and the ONNX exporter),
#   * the routekit-gpu distribution built from this checkout by packaging/gpu_variant.py, which pulls
#     onnxruntime-gpu (never install routekit and routekit-gpu together: both onnxruntime wheels
#     install the same module),
# then runs bench/gpu_check.py.  PIP_FIND_LINKS / PIP_INDEX_URL work as usual for an offline
# wheelhouse.  Set GPU_CHECK_NO_INSTALL=1 to use the current python as it is.
# Without a CUDA device it says so, still runs the CPU-fallback check with the current python,
# and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

has_cuda() {
    command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '
}

if ! has_cuda; then
    echo "gpu_check: no CUDA device on $(hostname) (nvidia-smi missing or lists no GPU): running the CPU-fallback check only"
    "$PY" bench/gpu_check.py "$@" || { echo "gpu_check: the CPU-fallback check failed" >&2; exit 1; }
    exit 0
fi

nvidia-smi -L
if [ "${GPU_CHECK_NO_INSTALL:-0}" != "1" ]; then
    VENV=${GPU_CHECK_VENV:-.venv-gpu}
    if [ ! -x "$VENV/bin/python" ]; then
        "$PY" -m venv "$VENV"
    fi
    PY="$VENV/bin/python"
    "$PY" -m pip install -q --upgrade pip setuptools wheel
    "$PY" -m pip install -q "${TORCH_SPEC:-torch}" "transformers>=4.57,<4.58" "safetensors>=0.4" "onnx>=1.15" "tqdm>=4.60"
    STAGE=$(mktemp -d)
    "$PY" packaging/gpu_variant.py stage "$STAGE/routekit-gpu" >/dev/null
    "$PY" -m pip wheel -q --no-deps --no-build-isolation "$STAGE/routekit-gpu" -w "$STAGE/dist"
    "$PY" -m pip uninstall -q -y routekit onnxruntime 2>/dev/null || true
    "$PY" -m pip install -q "$STAGE"/dist/routekit_gpu-*.whl
    rm -rf "$STAGE"
    "$PY" -c "import onnxruntime as o, torch; print('installed: torch', torch.__version__, 'cuda', torch.cuda.is_available(), '| onnxruntime', o.__version__, o.get_available_providers())"
fi
exec "$PY" bench/gpu_check.py "$@"
