"""ONNX export of Hugging Face models (optimum's exporter) and their int8 form (optimum's ORTQuantizer).

Every model routekit-export turns into ONNX is a Hugging Face one (the MiniLM sentence encoder, BERT
classifiers); MF, SW and linear heads are numpy weights or graphs written by ``routekit.encoders.onnx_graph``,
so no custom torch module goes through ``torch.onnx`` here.  Exports work from an in-memory model
only (loaded from a local folder by the caller): nothing here looks anything up on a hub.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import ExportError

#: opset of every export (optimum's recommended minimum for BERT-family models)
OPSET = 18


def _one_segment_config(model, task: str):
    """optimum's export config for ``model`` and ``task`` without a ``token_type_ids`` input.

    routekit feeds single-segment prompts (token types all 0, what BERT uses when none are given),
    and its graphs keep the inputs they always had, ``input_ids`` and ``attention_mask``: an encoder
    folder or artifact exported now is fed exactly like the shipped ones."""
    from optimum.exporters.onnx import model_configs  # noqa: F401  (registers optimum's ONNX export configs)
    from optimum.exporters.tasks import TasksManager

    try:
        ctor = TasksManager.get_exporter_config_constructor(exporter="onnx", model=model, task=task,
                                                            library_name="transformers")
    except (KeyError, ValueError) as exc:  # an architecture or task optimum cannot export
        why = exc.args[0] if exc.args else exc
        raise ExportError(f"cannot export {type(model).__name__} to ONNX for {task}: {why}") from exc
    base = ctor.func if hasattr(ctor, "func") else ctor

    class OneSegment(base):
        @property
        def inputs(self):
            return {k: v for k, v in super().inputs.items() if k != "token_type_ids"}

    return OneSegment(model.config, task=task)


def export_hf(model, out: Path, *, task: str) -> Path:
    """Write ``model`` (a transformers model, e.g. ``BertForSequenceClassification`` for
    ``task="text-classification"`` or ``BertModel`` for ``"feature-extraction"``) as one ONNX file
    ``out`` with optimum's exporter: dynamic batch and sequence axes, inputs ``input_ids`` and
    ``attention_mask`` (no ``token_type_ids``: :func:`_one_segment_config`)."""
    from optimum.exporters.onnx import onnx_export_from_model

    out = Path(out)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".onnx-export-") as tmp:
        # optimum copies the tokenizer of ``config._name_or_path`` beside the model; pointing it at
        # the (empty) scratch folder keeps a model whose config names a hub id from reaching a hub.
        name, model.config._name_or_path = model.config._name_or_path, tmp
        try:
            # no_post_process: nothing to merge for encoder-only models, and it skips a tied-weights
            # check that only logs "requires accelerate"; routekit's tests check parity instead of
            # optimum's validation pass.
            onnx_export_from_model(model, tmp, task=task, opset=OPSET, do_validation=False, no_post_process=True,
                                   custom_onnx_configs={"model": _one_segment_config(model, task)})
        finally:
            model.config._name_or_path = name
        if (Path(tmp) / "model.onnx_data").exists():  # ONNX's 2 GB protobuf limit: weights beside the graph
            raise ExportError(f"{type(model).__name__}: over 2 GB as ONNX; routekit artifacts hold one-file graphs")
        os.replace(Path(tmp) / "model.onnx", out)
    return out


def mean_pool_normalize(src: Path, dst: Path, *, hidden: str = "last_hidden_state",
                        output: str = "embedding") -> Path:
    """Append sentence-transformers' mean pooling and L2 normalisation to a feature-extraction graph:
    ``embedding = normalize(Σ_t mask_t h_t / max(Σ_t mask_t, 1e-9))`` with ``normalize(v) = v / max(‖v‖, 1e-12)``
    (torch's ``F.normalize``); ``embedding`` replaces ``hidden`` as the graph's only output."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    (h,) = [o for o in g.output if o.name == hidden]
    batch, _, dim = (d.dim_param or d.dim_value for d in h.type.tensor_type.shape.dim)
    consts = {"pool_axis1": np.array([1], np.int64), "pool_axis_last": np.array([-1], np.int64),
              "pool_min_count": np.array(1e-9, np.float32), "pool_min_norm": np.array(1e-12, np.float32)}
    g.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    node = helper.make_node
    g.node.extend([
        node("Cast", ["attention_mask"], ["pool_mask_f"], to=TensorProto.FLOAT),
        node("Unsqueeze", ["pool_mask_f", "pool_axis_last"], ["pool_mask"]),            # B × S × 1
        node("Mul", [hidden, "pool_mask"], ["pool_masked"]),
        node("ReduceSum", ["pool_masked", "pool_axis1"], ["pool_sum"], keepdims=0),     # B × D
        node("ReduceSum", ["pool_mask", "pool_axis1"], ["pool_count"], keepdims=0),     # B × 1
        node("Max", ["pool_count", "pool_min_count"], ["pool_count_c"]),
        node("Div", ["pool_sum", "pool_count_c"], ["pool_mean"]),
        node("ReduceL2", ["pool_mean", "pool_axis_last"], ["pool_norm"], keepdims=1),   # B × 1
        node("Max", ["pool_norm", "pool_min_norm"], ["pool_norm_c"]),
        node("Div", ["pool_mean", "pool_norm_c"], [output]),
    ])
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(output, TensorProto.FLOAT, [batch, dim]))
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(dst))
    return dst


def quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamic int8 with per-channel weights (per-tensor weights lost quality on MiniLM), through
    optimum's ``ORTQuantizer``.

    Only matrix products with a constant right-hand side (the weights) are quantized: the two
    activation × activation products of each attention layer stay fp32, as onnxruntime's
    ``quantize_dynamic`` does by default (``MatMulConstBOnly``), so the bytes written are the same as
    ``quantize_dynamic(src, dst, weight_type=QInt8, per_channel=True)``'s.  optimum's dynamic config
    alone also quantizes those products (a measurably different, less exact graph).
    """
    import onnx
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig
    from transformers import PretrainedConfig

    src, dst = Path(src), Path(dst)
    g = onnx.load(str(src), load_external_data=False).graph
    weights = {t.name for t in g.initializer}
    activation_products = [n.name for n in g.node if n.op_type == "MatMul" and n.input[1] not in weights]
    qconfig = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True,
                                                 nodes_to_exclude=activation_products)
    # an explicit (empty) config: ORTQuantizer would otherwise look for config.json beside ``src``
    quantizer = ORTQuantizer(src, config=PretrainedConfig())
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".int8-") as tmp:
        quantizer.quantize(qconfig, tmp)  # one .onnx file (its name depends on src's) + configs in tmp
        (written,) = Path(tmp).glob("*.onnx")
        os.replace(written, dst)
    return dst
