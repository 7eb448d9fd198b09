"""The ``routekit`` command line.  Each subcommand is a :class:`~routekit.cli.common.Command` in one
of the group modules; :data:`COMMANDS` lists them, and the parser and the dispatch are built from it:

- :mod:`routekit.cli.route`: ``route``, ``explain``, ``score``, ``calibrate``
- :mod:`routekit.cli.artifacts`: ``artifacts list|verify|seal|share``
- :mod:`routekit.cli.eval`: ``eval``, ``bench``
- :mod:`routekit.cli.serve`: ``serve``, ``report``
"""

from __future__ import annotations

import sys

from routekit.cli import artifacts as _cli_artifacts
from routekit.cli import eval as _cli_eval
from routekit.cli import route as _cli_route
from routekit.cli import serve as _cli_serve
from routekit.cli.common import Parser, parser_for
from routekit.errors import RoutekitError

#: every ``routekit`` subcommand, in the order ``routekit --help`` lists them
COMMANDS = (_cli_route.ROUTE, _cli_route.EXPLAIN, _cli_route.SCORE, _cli_artifacts.ARTIFACTS, _cli_eval.EVAL, _cli_eval.BENCH,
            _cli_route.CALIBRATE, _cli_serve.SERVE, _cli_serve.REPORT)


def _parser() -> Parser:
    return parser_for("routekit", "Route prompts to a strong or a weak LLM.", COMMANDS, version=_version())


def _version() -> str:
    from routekit import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    run = {cmd.name: cmd.run for cmd in COMMANDS}[args.command]
    from routekit.io import Terminated, sigterm_raises

    try:
        with sigterm_raises():  # SIGTERM unwinds like Ctrl-C, so partial outputs are removed
            return run(args)
    except RoutekitError as exc:
        return _fail(_with_notes(exc), 2)
    except BrokenPipeError:  # e.g. `routekit score ... | head`
        return 0
    except OSError as exc:  # a file the command reads or writes: permissions, disk, a vanished path
        return _fail(_with_notes(exc), 2)
    except KeyboardInterrupt as exc:
        return _fail(f"interrupted{_notes(exc)}", 130)
    except Terminated as exc:
        return _fail(f"terminated (SIGTERM){_notes(exc)}", exc.code)


def _fail(message: str, code: int) -> int:
    """Close the progress bars, then print ``message`` as the last line of stderr, alone (a
    multi-line exception text is folded into that one line)."""
    from routekit.progress import close_all

    close_all()
    text = " ".join(message.splitlines()).strip()
    try:
        sys.stderr.write(f"routekit: error: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr is gone: the exit code still says it
        pass
    return code


def _notes(exc: BaseException) -> str:
    notes = getattr(exc, "__notes__", None) or []
    return "".join(f"; {n}" for n in notes)


def _with_notes(exc: BaseException) -> str:
    return f"{exc}{_notes(exc)}"
