"""BERT classifier router (RouteLLM paper, §4): a BERT-family encoder fine-tuned with 3 labels.

The ONNX graph maps a prompt to 3 logits, one per outcome of a battle between the strong and the
weak model.  The label order is stored in the manifest (``router.labels``); routekit's own
exports and RouteLLM's published checkpoints both use::

    0: strong wins      1: tie      2: weak wins

    P(strong wins) = 1 − P(tie) − P(weak wins) = softmax(logits)[strong label]

The classifier is trained for one pair, so only the artifact's own pair can be routed.  The model
runs through :class:`routekit.encoders.Encoder` (its ``encoder`` section names the ONNX file, the
tokenizer, ``output: "logits"``, ``max_length`` and ``quantization``).  Dynamic int8 models
(``quantization`` containing ``"dynamic"``) are run one prompt at a time, so a prompt's score never
depends on its batch-mates.
"""

from __future__ import annotations

import numpy as np

from routekit.encoders import encoder_from_manifest
from routekit.errors import BadArtifactError, BadInputError
from routekit.router import Router

#: Label order of routekit's exports and of RouteLLM's BERT checkpoints.
DEFAULT_LABELS = ("strong_wins", "tie", "weak_wins")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class BertRouter(Router):
    kind = "bert"
    needs_encoder = True

    @classmethod
    def check_section(cls, c, r: dict, data: dict, models) -> None:
        labels = r.get("labels")
        if labels is not None:
            c.str_list(labels, "router.labels", max_items=3, unique=True)
            if len(labels) != 3 or "strong_wins" not in labels:
                c.fail("router.labels", f"must be 3 labels incl. 'strong_wins', got {labels!r}")

    def __init__(self, manifest, *, providers=None, threads=None, strong=None, weak=None):
        super().__init__(manifest, strong=strong, weak=weak)
        if not self.is_default_pair:
            raise BadInputError(
                f"router {self.name!r} is a classifier trained for {self.default_strong} vs "
                f"{self.default_weak} only; it cannot score {self.strong_model} vs {self.weak_model}"
            )
        spec = manifest.get("router") or {}
        labels = list(spec.get("labels", DEFAULT_LABELS))
        if len(labels) != 3 or "strong_wins" not in labels:
            raise BadArtifactError(f"{manifest.folder}: router.labels must be 3 labels incl. 'strong_wins', "
                                   f"got {labels!r}")
        self.labels = labels
        self.strong_index = labels.index("strong_wins")
        self.encoder = encoder_from_manifest(manifest, providers=providers, threads=threads)
        n_out = self.encoder.session.get_outputs()[0].shape[-1]
        if isinstance(n_out, int) and n_out != 3:
            raise BadArtifactError(f"{manifest.folder}: the classifier has {n_out} outputs, expected 3 logits")

    def probabilities(self, prompts: list[str]) -> np.ndarray:
        """Softmax over the 3 labels (n × 3, columns in ``self.labels`` order)."""
        return softmax(self.encoder(prompts))

    def score(self, prompts: list[str]) -> np.ndarray:
        if not prompts:
            return np.zeros(0)
        return self.probabilities(prompts)[:, self.strong_index]
