"""Export a causal artifact's classifier to ONNX (``routekit-export causal-onnx``).

The graph is a small wrapper around the Hugging Face decoder, exported with ``torch.onnx.export``:

    (input_ids, attention_mask, position_ids)[batch, seq]  ->  scores[batch, 5]
    scores = final_hidden_state[:, -1] @ W5.T          (W5: the LM head's rows of [[1]] .. [[5]])

Batches are left-padded, so the last position is every prompt's last real token.  Only the five
score-token rows of the head are in the graph (the runtime never needs the other 49k logits).
The chat template becomes a plain ``template`` prompt (rendered once with placeholders) so the
runtime needs neither transformers nor jinja; the exporter checks that both give the same token
ids on probe prompts, and measures max |ΔP| between torch and onnxruntime on them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from routekit.cli.common import Command
from routekit.routers.causal import PromptEncoder, PromptSpec

__all__ = ["PARITY_TOL", "PROBES", "COMMAND", "ScoreHead", "add_arguments", "export_causal_onnx", "export_graph", "run_cli",
           "template_spec", "torch_distribution"]

#: Probe prompts for the template and parity checks: empty, short, non-Latin, braces and a score
#: token typed by a user, leading/trailing space, and a long one that must be cut to fit.
PROBES = ["", "hi", "  Solve 2x + 1 = 9.  ", "Écris un poème sur la mer. 海の詩を書いて。",
          "{user} {prompt} {} [[5]] {system}", "What is 17 * 23? Show your work, step by step.",
          "Summarise the causes of World War I, don't skip the alliances. " * 60]
PARITY_TOL = 1e-3  # max |ΔP| torch vs onnxruntime, fp32
_S, _U = "\ue000SYSTEM\ue000", "\ue001USER\ue001"


def template_spec(spec: PromptSpec, tokenizer) -> PromptSpec:
    """The ``template``-format equivalent of ``spec`` (the chat template rendered once)."""
    if spec.format == "template":
        return spec
    system, _ = spec.messages("x")
    msgs = ([{"role": "system", "content": _S}] if system else []) + [{"role": "user", "content": _U}]
    text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    for ph in ("{system}", "{user}", "{prompt}"):
        if ph in text:
            raise ValueError(f"the chat template itself writes {ph!r}; cannot express it as a plain template")
    if text.count(_U) != 1 or text.count(_S) != (1 if system else 0):
        raise ValueError("the chat template does not write each message exactly once")
    return PromptSpec(format="template", system=spec.system, user=spec.user,
                      template=text.replace(_S, "{system}").replace(_U, "{user}"),
                      generation_prefix=spec.generation_prefix, add_special_tokens=False, strip=spec.strip)


class ScoreHead:
    """torch module factory (torch imported lazily): decoder + the 5 head rows at the last position."""

    @staticmethod
    def build(model, score_ids: Sequence[int]):
        import torch

        class _Head(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.decoder = model.get_decoder()
                w = model.get_output_embeddings().weight.detach()[list(score_ids)].float().clone()
                self.register_buffer("w5", w)

            def forward(self, input_ids, attention_mask, position_ids):
                # the 4-D additive mask is built here (causal and padding), so the graph has no
                # data-dependent mask shortcuts; transformers uses a 4-D mask as given
                seq = input_ids.shape[1]
                causal = torch.ones(seq, seq, dtype=torch.bool, device=input_ids.device).tril()
                keep = causal[None, None] & attention_mask.bool()[:, None, None, :]
                zero = torch.zeros((), dtype=self.w5.dtype, device=input_ids.device)
                low = torch.full((), torch.finfo(self.w5.dtype).min, dtype=self.w5.dtype, device=input_ids.device)
                mask = torch.where(keep, zero, low)
                h = self.decoder(input_ids=input_ids, attention_mask=mask, position_ids=position_ids,
                                 use_cache=False).last_hidden_state[:, -1]
                return h @ self.w5.T

        return _Head().eval()


#: Graphs with more weight bytes than this keep them in one external file ``<name>.data`` beside the
#: graph (protobuf caps a file at 2 GB; a Llama-3-8B graph holds ~32 GB of float32 weights).
EXTERNAL_DATA_ABOVE = 1_800_000_000


def export_graph(model, score_ids: Sequence[int], path: Path, *, opset: int = 17,
                 external_data_above: int = EXTERNAL_DATA_ABOVE) -> Path:
    """Write the score graph for ``model`` (fp32) to ``path`` (weights in ``path.data`` when large)."""
    import tempfile

    import onnx
    import torch

    head = ScoreHead.build(model.float().eval(), score_ids)
    ids = torch.tensor([[1, 2, 3, 4], [0, 0, 5, 6]], dtype=torch.long)
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]], dtype=torch.long)
    pos = torch.tensor([[0, 1, 2, 3], [0, 0, 0, 1]], dtype=torch.long)
    dyn = {0: "batch", 1: "seq"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript exporter (deprecated in torch >= 2.9) is the one measured here (parity test);
        # its tracer warnings name Python branches on shapes, not on data
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        with tempfile.TemporaryDirectory(prefix="causal-onnx-") as tmp:
            raw = Path(tmp) / "model.onnx"  # a large model comes out as one file per tensor: regroup below
            torch.onnx.export(head, (ids, mask, pos), str(raw),
                              input_names=["input_ids", "attention_mask", "position_ids"], output_names=["scores"],
                              opset_version=opset, dynamo=False,
                              dynamic_axes={"input_ids": dyn, "attention_mask": dyn, "position_ids": dyn,
                                            "scores": {0: "batch"}})
            size = sum(f.stat().st_size for f in Path(tmp).iterdir())
            graph = onnx.load(str(raw))
            if size > external_data_above:
                onnx.save_model(graph, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                                location=path.name + ".data", size_threshold=1024)
            else:
                onnx.save_model(graph, str(path))
    return path


def torch_distribution(model, rows: list[list[int]], score_ids, pad_id: int) -> np.ndarray:
    import torch

    ids, mask, pos = (torch.from_numpy(a) for a in PromptEncoder.pad_left(rows, pad_id))
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits[:, -1]
    return torch.softmax(logits[:, list(score_ids)].double(), -1).numpy()


def export_causal_onnx(src: Path, out: Path, *, keep_torch: bool = False, overwrite: bool = False,
                       probes: Sequence[str] = PROBES, opset: int = 17, tol: float = PARITY_TOL,
                       external_data_above: int = EXTERNAL_DATA_ABOVE) -> dict:
    """Write ``out``: the causal artifact ``src`` with its classifier as an ONNX graph.

    ``keep_torch`` also copies the Hugging Face folder (one artifact, both backends).  Raises
    ``ValueError`` when the plain template does not reproduce the prompt's token ids or when the
    ONNX scores differ from torch's by more than ``tol`` on the probes.  Returns the parity report.
    """
    import onnxruntime
    import torch

    import routekit
    from routekit import artifact
    from routekit.routers.causal_onnx import TokenizerJson

    src_router = routekit.load(src, device="cpu", dtype="float32", backend="torch")
    tok, model, ids = src_router.tokenizer, src_router.model, list(src_router._ids)
    max_length = src_router.encoder.max_length
    tspec = template_spec(src_router.prompt, tok)
    keep = {k: v for k, v in src_router.manifest.data.items()
            if k not in ("files", "manifest_sha256", "created", "routekit_version")}
    with artifact.ArtifactWriter(out, overwrite=overwrite, inputs=[src]) as w:
        onnx_dir = w.dir / "onnx"
        onnx_dir.mkdir()
        tok.backend_tokenizer.save(str(onnx_dir / "tokenizer.json"))
        clean = bool(getattr(tok, "clean_up_tokenization_spaces", False))
        rt_tok = TokenizerJson(onnx_dir / "tokenizer.json", clean_up_tokenization_spaces=clean)
        hf_rows = [src_router.encoder.encode(p) for p in probes]
        rt_rows = [PromptEncoder(rt_tok, tspec, max_length).encode(p) for p in probes]
        bad = [p[:40] for p, a, b in zip(probes, hf_rows, rt_rows) if a != b]
        if bad:
            raise ValueError(f"the plain template does not give the chat template's token ids for {bad}")
        if [rt_tok.token_id(t) for t in src_router.score_tokens] != ids:
            raise ValueError("tokenizer.json gives other score-token ids than the Hugging Face tokenizer")
        export_graph(model, ids, onnx_dir / "model.onnx", opset=opset, external_data_above=external_data_above)
        router = dict(keep["router"])
        router["onnx"] = {"model": "onnx/model.onnx", "tokenizer": "onnx/tokenizer.json", "prompt": tspec.to_dict(),
                          "pad_id": src_router._pad_id, "clean_up_tokenization_spaces": clean}
        if keep_torch:
            shutil.copytree(src / router.get("model_dir", "model"), w.dir / router.get("model_dir", "model"))
        else:
            router.pop("model_dir", None)
        # parity: torch (HF model, full vocabulary logits) vs onnxruntime (the score graph), batched and single
        sess = onnxruntime.InferenceSession(str(onnx_dir / "model.onnx"), providers=["CPUExecutionProvider"])

        def ort_dist(rows):
            i, m, p = PromptEncoder.pad_left(rows, src_router._pad_id)
            z = sess.run(None, {"input_ids": i, "attention_mask": m, "position_ids": p})[0].astype(np.float64)
            e = np.exp(z - z.max(1, keepdims=True))
            return e / e.sum(1, keepdims=True)

        ref = torch_distribution(model, hf_rows, ids, src_router._pad_id)
        got = ort_dist(hf_rows)
        single = np.concatenate([ort_dist([r]) for r in hf_rows])
        dp = float(np.abs(got - ref).max())
        report = {"max_abs_dp_batch": dp, "max_abs_dp_single": float(np.abs(single - ref).max()),
                  "max_abs_dp_pstrong": float(np.abs((got - ref)[:, [k - 1 for k in src_router.strong_scores]]
                                                     .sum(1)).max()),
                  "probes": len(probes), "opset": opset, "torch": torch.__version__,
                  "onnxruntime": onnxruntime.__version__}
        if max(report["max_abs_dp_batch"], report["max_abs_dp_single"]) > tol:
            raise ValueError(f"ONNX scores differ from torch by {dp:.2e} > {tol} on the probe prompts")
        keep["router"] = router
        report = {k: (float(f"{v:.3g}") if isinstance(v, float) else v) for k, v in report.items()}
        keep.setdefault("metrics", {})["onnx_parity"] = report
        keep["description"] = keep.get("description", "") + " (ONNX graph for onnxruntime)"
        w.manifest.update(keep)
    return report


def add_arguments(c: argparse.ArgumentParser) -> None:
    c.add_argument("--artifact", type=Path, required=True, help="causal artifact to export (needs torch here)")
    c.add_argument("--out", type=Path, required=True, help="artifact folder to write")
    c.add_argument("--keep-torch", action="store_true",
                   help="also keep the Hugging Face model folder (one artifact, both backends)")
    c.add_argument("--opset", type=int, default=17, help="ONNX opset")
    c.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    c.add_argument("--force", action="store_true", help="replace --out if it exists")


def run_cli(args) -> int:
    import sys

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        report = export_causal_onnx(args.artifact, args.out, keep_torch=args.keep_torch, overwrite=args.force,
                                    opset=args.opset)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"routekit-export: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"artifact": str(args.out), **report}, indent=2))
    return 0


COMMAND = Command('causal-onnx', "export a causal artifact's classifier to ONNX (runs on onnxruntime, no torch; docs/causal.md)", add_arguments, run_cli)
