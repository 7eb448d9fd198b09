"""What the ``routekit`` subcommands share: the :class:`Command` record each group module lists,
the ``--router``/``--threads``/threshold options, and router loading."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: X)`` to an option's help unless it says its default already; an option without
    a value (``None``) must say in words what happens without it (no ``(default: None)``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text.lower() or not action.option_strings or action.required or action.nargs == 0
                or action.default in (None, argparse.SUPPRESS, [], ())):
            return text
        return text + " (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help (and its subcommands', which share the class) shows defaults."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)


@dataclass(frozen=True)
class Command:
    """One subcommand: ``routekit.cli`` builds its parser from ``add_arguments`` and calls ``run``."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def parser_for(prog: str, description: str, commands, *, version: str | None = None) -> Parser:
    """The parser of a command line made of :class:`Command` records (``routekit`` and ``routekit-export``)."""
    p = Parser(prog=prog, description=description)
    if version is not None:
        p.add_argument("--version", action="version", version=f"{prog} {version}")
    sub = p.add_subparsers(dest="command", required=True)
    for cmd in commands:
        cmd.add_arguments(sub.add_parser(cmd.name, help=cmd.help, description=cmd.help))
    return p


def router_help() -> str:
    from routekit import artifact, registry

    names = ["default"] + [n for n in artifact.shipped() if n != "default"] + ["random[:SEED]", "length"]
    return (f"router: a shipped name ({', '.join(names)}; see `routekit artifacts list`) or an artifact "
            f"folder of kind {', '.join(registry.kinds())}")


def threads_arg(p: argparse.ArgumentParser, what: str = "onnxruntime intra-op threads") -> None:
    p.add_argument("--threads", type=int, default=None,
                   help=f"{what} (default: $ROUTEKIT_THREADS, else onnxruntime's: all cores)")


def router_arg(p: argparse.ArgumentParser, many: bool = False) -> None:
    help_ = router_help()
    if many:
        p.add_argument("--router", action="append", default=None, help=help_ + " (repeatable; default: default)")
    else:
        p.add_argument("--router", default="default", help=help_ + " (default: %(default)s)")
    threads_arg(p)


def threshold_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--threshold", type=float, default=None,
                   help="route to strong when win rate >= T (default: the artifact's calibrated threshold)")
    g.add_argument("--strong-fraction", type=float, default=None,
                   help="use the artifact's calibrated threshold that sends this fraction to strong "
                        "(default: the artifact's default fraction)")


def load_router(name: str, threads: int | None):
    from routekit.loading import load

    return load(name, threads=threads)


def default_data() -> Path:
    return Path(os.environ.get("ROUTEKIT_DATA", "../shared/data")) / "dev" / "routellm-evals"
