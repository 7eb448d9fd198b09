"""The GPU path in one run (issue 32): causal bf16 vs fp32, every ONNX router on CUDA, the CPU fallback.

    bash bench/gpu_check.sh                      # installs what it needs on a CUDA machine, then runs this
    python bench/gpu_check.py [--causal ART] [--causal-onnx ART] [--n 256] [--json out.json]

Sections (each prints one JSON line, prefixed by its name):

* ``env``            torch / CUDA / onnxruntime versions, the providers onnxruntime offers, which routekit
                     distribution is installed (``routekit`` or ``routekit-gpu``).
* ``causal-torch``   (CUDA only) the causal router in bf16 on CUDA against fp32 on CPU: max |ΔP| over the
                     five scores and over P(strong), and requests/s at batch 1 and 32.  ``--causal`` names a
                     causal artifact; without it, random-init Llamas of SmolLM2-135M's and of a 1.1B
                     shape are built locally (nothing is downloaded; parity on random weights, speed by shape).
* ``onnx-cuda``      (CUDA only) every shipped ONNX router, and the causal ONNX artifact (``--causal-onnx``,
                     else exported here from the SmolLM2-shaped model), on ``CUDAExecutionProvider`` against
                     ``CPUExecutionProvider``: max |Δ win rate|, requests/s at batch 1 and 32, and the
                     providers each session really runs on.
* ``cpu-fallback``   the default router loaded with CUDA requested in a process where CUDA is absent
                     (``CUDA_VISIBLE_DEVICES=""`` on a GPU machine): the providers onnxruntime chose, and
                     that it scores.  Runs everywhere.

On a machine without CUDA only ``env`` and ``cpu-fallback`` run, after a "no CUDA device" line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import DATA

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ["hi", "Thanks!", "What is the capital of France?", "Translate 'good morning' into Spanish.",
           "Solve x^2 - 5x + 6 = 0 and explain each step.", "Prove that there are infinitely many primes.",
           "Write a Python function that merges two sorted lists in O(n).",
           "Summarise the causes of the First World War in three paragraphs.",
           "Implement a lock-free single-producer single-consumer queue in C++ and argue why it is correct.",
           "Fix the typos in this email: " + "Dear team, plase find atached the report for the last quater. " * 8]


def emit(name: str, obj: dict, sink: dict) -> None:
    sink[name] = obj
    print(f"{name}: {json.dumps(obj)}", flush=True)


def prompts(n: int) -> list[str]:
    """``n`` prompts: the calibration prompts of $ROUTEKIT_DATA when present, else the built-in ten repeated."""
    data = DATA / "calibration" / "prompts.jsonl"
    if data.is_file():
        with data.open(encoding="utf-8") as f:  # not splitlines(): prompts may hold U+2028
            rows = [json.loads(line)["prompt"] for line in f if line.strip()]
        if rows:
            return (rows * (n // len(rows) + 1))[:n]
    return (PROMPTS * (n // len(PROMPTS) + 1))[:n]


def sessions(router) -> list:
    """The onnxruntime sessions a router holds (one level down: its encoder / model objects)."""
    found, seen = [], set()

    def visit(obj, depth):
        if id(obj) in seen or depth > 2:
            return
        seen.add(id(obj))
        if hasattr(obj, "get_providers") and hasattr(obj, "run"):
            found.append(obj)
            return
        for v in getattr(obj, "__dict__", {}).values():
            if hasattr(v, "__dict__") or hasattr(v, "get_providers"):
                visit(v, depth + 1)

    visit(router, 0)
    return found


def rate(fn, items: list[str], batch: int, sync=lambda: None) -> float:
    fn(items[:batch])  # warm-up: kernels, allocator, CUDA graphs
    sync()
    t0 = time.perf_counter()
    for s in range(0, len(items), batch):
        fn(items[s:s + batch])
    sync()
    return round(len(items) / (time.perf_counter() - t0), 2)


def env_section() -> dict:
    import importlib.metadata as md

    import onnxruntime as ort

    out = {"python": sys.version.split()[0], "onnxruntime": ort.__version__,
           "onnxruntime_providers": ort.get_available_providers(), "routekit_distributions": []}
    for dist in ("routekit", "routekit-gpu", "onnxruntime", "onnxruntime-gpu"):
        try:
            out["routekit_distributions"].append(f"{dist}=={md.version(dist)}")
        except md.PackageNotFoundError:
            pass
    try:
        import torch

        out["torch"] = torch.__version__
        out["cuda_available"] = bool(torch.cuda.is_available())
        if out["cuda_available"]:
            out["cuda_device"] = torch.cuda.get_device_name(0)
            out["torch_cuda"] = torch.version.cuda
    except ImportError:
        out["torch"] = None
        out["cuda_available"] = False
    return out


def build_random_causal(folder: Path, shape: str) -> Path:
    """A causal artifact around a random-init Llama of a named shape (no download)."""
    from routekit_export import causal as C

    shapes = {"smollm2-135m-shape": dict(hidden=576, intermediate=1536, layers=30, heads=9, kv_heads=3),
              "llama-1.1b-shape": dict(hidden=2048, intermediate=5632, layers=22, heads=32, kv_heads=4)}
    base = C.make_tiny_llama(folder / f"{shape}-base", **shapes[shape])
    model, tok = C.load_base(base, device="cpu", dtype="float32")
    C.write_causal_artifact(folder / shape, model, tok, C.default_prompt_spec(tok), name=shape, max_length=512,
                            description=f"random-init {shape} Llama (gpu_check only)")
    return folder / shape


def causal_torch_section(art: Path, items: list[str]) -> dict:
    import torch

    import routekit

    cpu = routekit.load(art, device="cpu", dtype="float32")
    gpu = routekit.load(art, device="cuda")
    ref = cpu.score_distribution(items[:64])
    got = gpu.score_distribution(items[:64])
    sync = torch.cuda.synchronize
    out = {"artifact": art.name, "dtype": str(gpu.dtype).replace("torch.", ""),
           "max_abs_dp_scores": round(float(np.abs(got - ref).max()), 6),
           "max_abs_dp_pstrong": round(float(np.abs(got[:, :3].sum(1) - ref[:, :3].sum(1)).max()), 6)}
    for bs in (1, 32):
        gpu.batch_size = bs
        out[f"req_per_s_batch_{bs}"] = rate(gpu.win_rates, items, bs, sync)
    return out


def onnx_section(name_or_path, items: list[str]) -> dict:
    import routekit

    cpu = routekit.load(name_or_path, providers=["CPUExecutionProvider"])
    gpu = routekit.load(name_or_path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    ref, got = cpu.win_rates(items[:128]), gpu.win_rates(items[:128])
    out = {"router": str(name_or_path), "gpu_sessions": [s.get_providers()[0] for s in sessions(gpu)],
           "max_abs_dwin": round(float(np.abs(got - ref).max()), 6)}
    for bs in (1, 32):
        out[f"req_per_s_batch_{bs}_cuda"] = rate(gpu.win_rates, items, bs)
        out[f"req_per_s_batch_{bs}_cpu"] = rate(cpu.win_rates, items[: max(64, bs)], bs)
    return out


FALLBACK = r"""
import json, warnings, routekit
warnings.simplefilter("ignore")
r = routekit.load("default", providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
import sys; sys.path.insert(0, "bench"); from gpu_check import sessions
w = r.win_rates(["hi", "Prove that there are infinitely many primes."])
d = routekit.load("default")
print(json.dumps({"router": r.name, "requested": ["CUDAExecutionProvider", "CPUExecutionProvider"],
                  "chosen": [s.get_providers() for s in sessions(r)],
                  "chosen_with_default_providers": [s.get_providers() for s in sessions(d)],
                  "win_rates": [round(float(x), 4) for x in w]}))
"""


def cpu_fallback_section() -> dict:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env.pop("ROUTEKIT_PROVIDERS", None)
    proc = subprocess.run([sys.executable, "-c", FALLBACK], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0:
        return {"ok": False, "returncode": proc.returncode, "stderr_tail": proc.stderr[-2000:]}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["ok"] = all(0.0 <= x <= 1.0 for x in res["win_rates"])
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--causal", type=Path, default=None, help="a causal artifact (default: random-init Llamas)")
    ap.add_argument("--causal-onnx", type=Path, default=None,
                    help="a causal artifact with an ONNX graph (default: exported here from the random SmolLM2 shape)")
    ap.add_argument("--n", type=int, default=256, help="prompts per throughput run")
    ap.add_argument("--json", type=Path, default=None, help="also write every section to this file")
    args = ap.parse_args(argv)
    out: dict = {}
    env = env_section()
    emit("env", env, out)
    cuda = env.get("cuda_available") or "CUDAExecutionProvider" in env["onnxruntime_providers"]
    if not cuda:
        print("gpu_check: no CUDA device (torch sees none and onnxruntime offers no CUDAExecutionProvider): "
              "the causal bf16 and CUDAExecutionProvider checks are skipped", flush=True)
    else:
        items = prompts(args.n)
        with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
            arts = [args.causal] if args.causal else []
            if env.get("cuda_available"):
                arts = arts or [build_random_causal(Path(tmp), s) for s in ("smollm2-135m-shape", "llama-1.1b-shape")]
                for art in arts:
                    try:
                        emit(f"causal-torch {art.name}", causal_torch_section(art, items), out)
                    except Exception as exc:  # report and go on: the other checks still tell something
                        emit(f"causal-torch {art.name}", {"error": f"{type(exc).__name__}: {exc}"}, out)
            if "CUDAExecutionProvider" in env["onnxruntime_providers"]:
                from routekit.artifact import shipped

                names = [n for n in shipped() if n != "default"]
                onnx_causal = args.causal_onnx
                if onnx_causal is None:
                    try:
                        from routekit_export.causal_onnx import export_causal_onnx

                        src = arts[0] if arts else build_random_causal(Path(tmp), "smollm2-135m-shape")
                        export_causal_onnx(src, Path(tmp) / "causal-onnx")
                        onnx_causal = Path(tmp) / "causal-onnx"
                    except Exception as exc:
                        emit("onnx-cuda causal", {"error": f"{type(exc).__name__}: {exc}"}, out)
                for n in names + ([onnx_causal] if onnx_causal else []):
                    try:
                        emit(f"onnx-cuda {Path(str(n)).name}", onnx_section(n, items), out)
                    except Exception as exc:
                        emit(f"onnx-cuda {Path(str(n)).name}", {"error": f"{type(exc).__name__}: {exc}"}, out)
            else:
                print("gpu_check: onnxruntime offers no CUDAExecutionProvider (install routekit-gpu): "
                      "the ONNX-on-CUDA checks are skipped", flush=True)
    emit("cpu-fallback", cpu_fallback_section(), out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0 if out["cpu-fallback"].get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
