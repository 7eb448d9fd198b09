"""The BERT classifier router's model: its three labels and how a fine-tuned folder is loaded;
shared by training (``bert.py``) and conversion to ONNX (``convert.py``)."""

from __future__ import annotations

from pathlib import Path

LABELS = ("strong_wins", "tie", "weak_wins")


def load_classifier(model_dir: Path):
    """AutoModelForSequenceClassification with 3 labels (eager attention: exports and runs identically)."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "some weights were newly initialised" is expected for a fresh head
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            str(model_dir), num_labels=3, attn_implementation="eager")
    finally:
        hf_logging.set_verbosity(level)
    model.config.id2label = dict(enumerate(LABELS))
    model.config.label2id = {l: i for i, l in enumerate(LABELS)}
    return model
