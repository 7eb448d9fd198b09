"""What every gradient trainer in export is configured by: one base, each trainer's own defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    """Optimiser, batching, validation split and seed; the fields MF, BERT and causal share.

    A trainer's config subclasses this; a field it declares again keeps its place and takes the
    trainer's own default."""

    lr: float = 1e-5
    weight_decay: float = 0.0
    batch_size: int = 16
    val_fraction: float = 0.1  #: share of prompts held out (a prompt's rows on one side: data.split_by_prompt)
    seed: int = 0


@dataclass
class TextTrainConfig(TrainConfig):
    """A trainer that fine-tunes a transformer on prompt text: truncation and LR warm-up as well."""

    max_length: int = 256  #: tokens a prompt is cut to
    warmup_fraction: float = 0.0  #: share of the steps with a linear LR warm-up (then linear decay)


def add_config_options(parser, cfg: TrainConfig, helps: dict[str, str], *, flags: dict[str, str] | None = None) -> None:
    """One command-line option per field of ``cfg`` named in ``helps``, typed and defaulted from
    ``cfg`` (so a trainer's defaults are written once, in its config): ``batch_size`` becomes
    ``--batch-size`` unless ``flags`` names another flag."""
    for name, text in helps.items():
        default = getattr(cfg, name)
        flag = (flags or {}).get(name, "--" + name.replace("_", "-"))
        parser.add_argument(flag, type=type(default), default=default, help=text)
