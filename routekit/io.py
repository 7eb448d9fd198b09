"""Safe output: check where a file goes before the work starts, write it whole or not at all.

Every command that writes a file (``score --output``, ``calibrate --write``, ``eval --json/--plot``,
the exporters) goes through here:

* :func:`check_output` refuses, *before* any work, an output that is one of the inputs (same inode,
  symlinks resolved), a folder, something that is not a regular file (``/dev/full``), or a path
  whose folder is missing or not writable;
* :func:`atomic_write` / :func:`atomic_path` write to a temporary file in the same folder and
  ``os.replace`` it over the destination only when the writer finished without error.  On any
  exception, Ctrl-C (``KeyboardInterrupt``) or SIGTERM (raised as :class:`Terminated`) the temporary
  file is removed and an existing file at the destination is left exactly as it was; a note saying
  so is attached to the exception (the CLI prints it).

What this does not protect against: a power cut between ``os.replace`` and the folder's metadata
reaching the disk (the file data is fsynced, the folder entry is fsynced best effort), SIGKILL
(a ``.NAME.tmp-*`` file may stay behind; the destination is still untouched), and two processes
writing the same destination (the last one to finish wins).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import stat
import sys
import threading
from pathlib import Path
from typing import IO, Iterable, Iterator

from routekit.errors import OutputError

__all__ = ["Terminated", "check_output", "check_output_dir", "atomic_write", "atomic_path",
           "sigterm_raises", "untouched_note"]


class Terminated(SystemExit):
    """SIGTERM arrived while an atomic write was open (a SystemExit with code 143, so an uncaught
    one ends the program quietly after the cleanup ran)."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(128 + signum)
        self.signum = signum


def _handler(signum, frame):  # noqa: ARG001 - signal handler signature
    raise Terminated(signum)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` inside the block (main thread only; leaves a handler
    someone else installed alone), so ``finally`` blocks and context managers run."""
    installed = False
    if threading.current_thread() is threading.main_thread():
        try:
            if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, _handler)
                installed = True
        except (ValueError, OSError):  # pragma: no cover - e.g. embedded interpreters
            pass
    try:
        yield
    finally:
        if installed:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _as_paths(inputs: Iterable[str | os.PathLike | None] | str | os.PathLike | None) -> list[Path]:
    if inputs is None:
        return []
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    return [Path(p) for p in inputs if p is not None]


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def _refuse_inputs(out: Path, inputs: list[Path], what: str) -> None:
    for inp in inputs:
        if _same(out, inp):
            raise OutputError(f"{what} {out} is the same file as the input {inp}; refusing to overwrite "
                              f"the input (write to another file)")


def _check_parent(out: Path, what: str) -> None:
    parent = out.parent
    if not parent.exists():
        raise OutputError(f"{what} {out}: folder {parent} does not exist (create it first)")
    if not parent.is_dir():
        raise OutputError(f"{what} {out}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {out}: folder {parent} is not writable")


def check_output(path: str | os.PathLike, *, inputs=None, what: str = "output") -> Path:
    """Check that ``path`` can be written as a new or replaced regular file; return it resolved.

    Raises :class:`~routekit.errors.OutputError` if it is one of ``inputs``, a folder, an existing
    non-regular file (device, FIFO, socket), or its folder is missing or not writable.
    Call it before the work starts; :func:`atomic_write` calls it again when it opens.
    """
    if path is None or isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise OutputError(f"{what} must be a file path, got {type(path).__name__}")
    raw = os.fspath(path)
    if isinstance(raw, bytes) or not raw or "\0" in raw:
        raise OutputError(f"{what} {raw!r} is not a valid file path")
    out = Path(os.path.realpath(Path(raw).expanduser()))  # write through a symlink to its target
    _refuse_inputs(out, _as_paths(inputs), what)
    if out.is_dir():
        raise OutputError(f"{what} {out} is a folder; give a file name")
    if out.exists() and not stat.S_ISREG(out.stat().st_mode):
        raise OutputError(f"{what} {out} is not a regular file (device, pipe or socket); give a file name")
    _check_parent(out, what)
    return out


def check_output_dir(path: str | os.PathLike, *, inputs=None, overwrite: bool = False,
                     what: str = "output folder") -> Path:
    """Check an output *folder* (an artifact) before the work starts: not one of ``inputs``, not an
    existing file, not an existing folder unless ``overwrite``; its parent is created if missing."""
    from routekit.errors import OutputExistsError

    if path is None or isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise OutputError(f"{what} must be a folder path, got {type(path).__name__}")
    raw = os.fspath(path)
    if isinstance(raw, bytes) or not raw or "\0" in raw:
        raise OutputError(f"{what} {raw!r} is not a valid folder path")
    out = Path(raw).expanduser()
    for inp in _as_paths(inputs):
        if _same(out, inp) or (inp.exists() and out.exists() and _inside(inp, out)):
            raise OutputError(f"{what} {out} is (or holds) the input {inp}; write to another folder")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{what} {out} exists and is not a folder")
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{what} {out} exists; pass --force (overwrite=True) to replace it")
    probe = out.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"{what} {out}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {out}: folder {probe} is not writable")
    return out


def _inside(child: Path, parent: Path) -> bool:
    try:
        return child.resolve().is_relative_to(parent.resolve())
    except (OSError, ValueError):
        return False


def untouched_note(out: Path, existed: bool) -> str:
    if existed:
        return f"{out} was not written; the existing file was left untouched"
    return f"{out} was not written"


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, inputs=None, what: str = "output") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); move it over ``path`` if the block succeeds.

    For writers that want a file name (``savefig``, ``np.savez``).  An ``OSError`` raised in the block
    (disk full, …) becomes :class:`~routekit.errors.OutputError` naming ``path``.
    """
    out = check_output(path, inputs=inputs, what=what)
    existed = out.exists()
    tmp = out.with_name(f".{out.name}.tmp-{secrets.token_hex(4)}{out.suffix}")
    with sigterm_raises():
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            os.close(fd)
            if existed:
                with contextlib.suppress(OSError):
                    os.chmod(tmp, stat.S_IMODE(out.stat().st_mode))
            yield tmp
            with open(tmp, "rb+") as f:  # the writer may have closed its handle; flush the data
                os.fsync(f.fileno())
            os.replace(tmp, out)
            _fsync_dir(out.parent)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OutputError):
                raise
            if isinstance(exc, OSError):
                raise OutputError(f"{what} {out}: cannot write ({exc.strerror or exc}); "
                                  f"{untouched_note(out, existed)}") from exc
            exc.add_note(untouched_note(out, existed))
            raise


class _Guarded:
    """A file object whose write errors (ENOSPC, EIO, …) become OutputError naming the destination."""

    def __init__(self, f: IO, out: Path, existed: bool, what: str):
        self._f, self._out, self._existed, self._what = f, out, existed, what

    def _fail(self, exc: OSError):
        return OutputError(f"{self._what} {self._out}: cannot write ({exc.strerror or exc}); "
                           f"{untouched_note(self._out, self._existed)}")

    def write(self, data):
        try:
            return self._f.write(data)
        except OSError as exc:
            raise self._fail(exc) from exc

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        try:
            self._f.flush()
        except OSError as exc:
            raise self._fail(exc) from exc

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __iter__(self):
        return iter(self._f)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", *, inputs=None, encoding: str | None = "utf-8",
                 newline: str | None = None, what: str = "output") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; replace ``path`` with it if the block succeeds.

    >>> with atomic_write("out.jsonl", inputs=["in.jsonl"]) as f:   # doctest: +SKIP
    ...     f.write("...")
    On an exception, Ctrl-C or SIGTERM the temporary file is removed and ``path`` is left as it was.
    """
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    binary = "b" in mode
    with atomic_path(path, inputs=inputs, what=what) as tmp:
        out = Path(os.path.realpath(Path(os.fspath(path)).expanduser()))
        existed = out.exists()
        f = open(tmp, "wb" if binary else "w", encoding=None if binary else encoding,
                 newline=None if binary else newline)
        try:
            yield _Guarded(f, out, existed, what)
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError as exc:
                raise OutputError(f"{what} {out}: cannot write ({exc.strerror or exc}); "
                                  f"{untouched_note(out, existed)}") from exc
        finally:
            try:
                f.close()
            except OSError as exc:
                if sys.exc_info()[0] is None:
                    raise OutputError(f"{what} {out}: cannot write ({exc.strerror or exc})") from exc



# --------------------------------------------------------------------------- reading line files


def text_lines(path: str | os.PathLike, *, error=None) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` for each line of a UTF-8 file; an invalid byte is an error naming the
    line (``error``: the exception class, default :class:`~routekit.errors.BadInputError`)."""
    from routekit.errors import BadInputError

    error = error or BadInputError
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or exc})") from None
    with f:
        for i, raw in enumerate(f, 1):
            try:
                yield i, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise error(f"{path}, line {i}: invalid UTF-8 (byte {exc.start + 1} of the line)") from None


def json_line(text: str, where: str, *, error=None):
    """One JSON value from a JSONL line; invalid, too deeply nested or out-of-range JSON is ``error``."""
    import json

    from routekit.errors import BadInputError

    error = error or BadInputError
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise error(f"{where}: invalid JSON (nested too deeply)") from None
    except ValueError as exc:  # an integer with more digits than Python converts
        raise error(f"{where}: invalid JSON ({exc})") from None
