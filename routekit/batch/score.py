"""Streaming ``routekit score``: route every prompt of a JSONL/CSV/Parquet/text file, in chunks.

Each output row is the input row with ``route``, ``model``, ``win_rate``, ``threshold`` and
``router`` added.  Nothing that looks finished appears before the run has finished:

* a file output is written to a temporary name beside it and renamed at the end
  (:mod:`routekit.io`); on an error, Ctrl-C or SIGTERM an existing file there stays untouched;
* a folder output (a path ending in ``/``) gets numbered part files, each renamed into place when
  complete, a ``_score.json`` describing the job, and a ``_SUCCESS`` marker last; ``resume=True``
  skips the parts an interrupted run of the same job finished.  A run holds a lock on the folder
  (a second run into it stops with an error) and first removes the temporary files a killed run
  left there, so a run killed (even with SIGKILL) and resumed any number of times ends with the
  same bytes as one uninterrupted run.

A bad record (invalid JSON or UTF-8, no prompt) stops the run, naming its line/row, unless
``skip_bad=True``: then it goes to a ``.rejected`` file (JSONL: where, error, raw) and is counted.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from routekit.batch import formats as fm
from routekit.errors import BadInputError, OutputError
from routekit.io import (
    atomic_path,
    atomic_write,
    check_output,
    check_output_dir,
    sigterm_raises,
)
from routekit.progress import Meter

STATE, SUCCESS = "_score.json", "_SUCCESS"


@dataclass
class Summary:
    rows: int = 0  #: prompts scored (in this run, plus resumed parts)
    strong: int = 0
    rejected: int = 0
    parts: int = 0  #: part files (folder output), 0 for a file
    resumed_parts: int = 0
    seconds: float = 0.0
    output: str = "-"

    @property
    def weak(self) -> int:
        return self.rows - self.strong


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadInputError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _where(path: Path, rec: fm.Record) -> str:
    kind, _, n = rec.where.partition(" ")
    return f"{path}:{n}" if kind == "line" else f"{path}: {rec.where}"


class ScoreJob:
    """Everything about a scoring run that can be checked before a router is loaded.

    Construct it first (it refuses a bad input, a bad option or an output it cannot write), then
    :meth:`run` it with a router.  ``output=None`` writes JSONL (or CSV) to ``stream`` (stdout).
    """

    def __init__(self, input: str | os.PathLike, output: str | os.PathLike | None = None, *,
                 field: str = "prompt", input_format: str | None = None, output_format: str | None = None,
                 threshold: float | None = None, strong_fraction: float | None = None, batch_size: int = 64,
                 chunk_rows: int | None = None, part_rows: int = 100_000, resume: bool = False,
                 skip_bad: bool = False, rejected: str | os.PathLike | None = None, stream=None):
        self.batch_size = _positive("batch_size", batch_size)
        self.chunk_rows = _positive("chunk_rows", chunk_rows or 16 * batch_size)
        self.part_rows = _positive("part_rows", part_rows)
        self.source = fm.source(input)  # a file, or an object-store URI (s3://...): exists and readable
        self.input = Path(input) if not self.source.remote else self.source.name
        for fmt in (input_format, output_format):
            if fmt is not None and fmt not in fm.FORMATS:
                raise BadInputError(f"unknown format {fmt!r} (one of {', '.join(fm.FORMATS)})")
        self.in_fmt = fm.input_format(self.input, input_format)
        self.field, self.threshold, self.strong_fraction = field, threshold, strong_fraction
        self.resume, self.skip_bad, self.stream = resume, skip_bad, stream
        raw = os.fspath(output) if output is not None else None
        self.folder = raw is not None and (raw.endswith(("/", os.sep)) or (resume and Path(raw).is_dir()))
        self.output = Path(raw) if raw not in (None, "-") else None
        self.out_fmt = fm.output_format(None if self.folder else self.output, output_format,
                                        self.in_fmt if self.folder or self.output is None else "jsonl")
        if self.output is None and self.out_fmt == "parquet":
            raise BadInputError("Parquet output needs --output FILE (it cannot go to stdout)")
        if resume and not self.folder:
            raise BadInputError("resume needs a folder output (end --output with '/'): only part files can be resumed")
        if self.folder:
            self.output = check_output_dir(self.output, inputs=[self.input], overwrite=True)
            self._check_folder()
        elif self.output is not None:
            self.output = check_output(self.output, inputs=[self.input])
        self.rejected = None
        if skip_bad and not self.folder:
            if rejected is None and self.output is None:
                raise BadInputError("skip_bad with output to stdout needs a file for the rejected rows (--rejected)")
            self.rejected = check_output(rejected or f"{self.output}.rejected", inputs=[self.input, self.output]
                                         if self.output else [self.input], what="rejected-rows file")
        # opening the reader checks the header / schema / pyarrow before any work
        self.reader = fm.open_reader(self.input, self.in_fmt, field, self.chunk_rows)

    def _check_folder(self) -> None:
        out = self.output
        if not out.exists() or not any(out.iterdir()):
            return
        if not self.resume:
            raise OutputError(f"output folder {out} exists and is not empty; pass --resume to continue the "
                              "run that wrote it, or give another folder")
        if not (out / STATE).is_file():
            raise OutputError(f"output folder {out} has no {STATE}: not a score output, cannot resume")

    # -- running ---------------------------------------------------------------------------------
    def _chunked(self, records) -> Iterator[list[fm.Record]]:
        chunk: list[fm.Record] = []
        for rec in records:
            chunk.append(rec)
            if len(chunk) == self.chunk_rows:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def _score(self, router, chunk: list[fm.Record], summary: Summary) -> tuple[list[dict], list[dict]]:
        good = [r for r in chunk if r.error is None]
        bad = [r for r in chunk if r.error is not None]
        if bad and not self.skip_bad:
            raise BadInputError(f"{_where(self.input, bad[0])}: {bad[0].error} (pass --skip-bad to write "
                                "bad rows to a .rejected file and go on)")
        decisions = router.route_many([r.prompt for r in good], threshold=self.threshold,
                                      strong_fraction=self.strong_fraction, batch_size=self.batch_size)
        rows = [{**r.row, "route": d.route, "model": d.model, "win_rate": d.win_rate,
                 "threshold": d.threshold, "router": d.router} for r, d in zip(good, decisions)]
        summary.rows += len(rows)
        summary.strong += sum(d.is_strong for d in decisions)
        summary.rejected += len(bad)
        return rows, [{rec.where.split(" ")[0]: int(rec.where.split(" ")[1]), "error": rec.error,
                       "raw": rec.raw} for rec in bad]

    def run(self, router, *, show_progress: bool = False) -> Summary:
        router.resolve_threshold(self.threshold, self.strong_fraction)  # a bad threshold fails before work
        summary, start = Summary(output=str(self.output) if self.output else "-"), time.monotonic()
        with sigterm_raises():
            if self.folder:
                self._run_folder(router, summary, show_progress)
            else:
                self._run_file(router, summary, show_progress)
        summary.seconds = time.monotonic() - start
        return summary

    def _meter(self, show: bool, router, initial: int = 0) -> Meter:
        total = self.reader.count() if show else None
        return Meter(total=total, desc=f"scoring ({router.name})", unit="prompt", enabled=show, initial=initial)

    def _write_chunks(self, router, target, rej, chunks, summary: Summary, meter: Meter) -> None:
        """Score ``chunks`` into one output ``target`` (rejected rows to ``rej`` when given)."""
        writer = fm.open_writer(self.out_fmt, target, self.reader.columns, self.reader.schema)
        for chunk in chunks:
            rows, bad = self._score(router, chunk, summary)
            writer.write(rows)
            if rej is not None:
                rej.write("".join(fm.json_line(b) for b in bad))
            meter.update(len(chunk))
        writer.close()

    def _run_file(self, router, summary: Summary, show: bool) -> None:
        with contextlib.ExitStack() as stack:
            meter = stack.enter_context(self._meter(show, router))  # closed however the run ends
            if self.output is None:
                target = self.stream or sys.stdout
            else:
                tmp = stack.enter_context(atomic_path(self.output, inputs=[self.input]))
                target = tmp if self.out_fmt == "parquet" else stack.enter_context(
                    open(tmp, "w", encoding="utf-8", newline=""))
            rej = None
            if self.rejected is not None:
                rtmp = stack.enter_context(atomic_path(self.rejected, inputs=[self.input], what="rejected-rows file"))
                rej = stack.enter_context(open(rtmp, "w", encoding="utf-8"))
            self._write_chunks(router, target, rej, self._chunked(self.reader.records()), summary, meter)

    # -- folder output -----------------------------------------------------------------------------
    def _job(self, router) -> dict:
        src = fm.source(self.input)  # again: a changed input must not be resumed into
        files = {k: v.get("sha256") for k, v in (router.manifest.files if router.manifest else {}).items()}
        ident = json.dumps({"name": router.name, "files": files, "strong": router.strong_model,
                            "weak": router.weak_model}, sort_keys=True)
        return {"input": src.ident, "input_bytes": src.size, "input_mtime_ns": src.mtime_ns,
                "input_format": self.in_fmt, "output_format": self.out_fmt, "field": self.field,
                "router": router.name, "router_sha256": hashlib.sha256(ident.encode()).hexdigest(),
                "threshold": self.threshold, "strong_fraction": self.strong_fraction,
                "part_rows": self.part_rows, "skip_bad": self.skip_bad}

    def _load_state(self, job: dict) -> dict:
        path = self.output / STATE
        if not path.is_file():
            return {"job": job, "parts": {}}
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            old = state["job"]
            parts = state["parts"]
        except (ValueError, KeyError, TypeError):
            raise OutputError(f"{path}: unreadable; remove the folder to start again") from None
        diff = [k for k in job if old.get(k) != job[k]]
        if diff:
            shown = ", ".join(f"{k}: {old.get(k)!r} then, {job[k]!r} now" for k in diff[:4])
            raise OutputError(f"cannot resume into {self.output}: the job changed ({shown}); "
                              "give another folder or remove it")
        return {"job": job, "parts": parts}

    def _part(self, i: int) -> Path:
        return self.output / f"part-{i:05d}{fm.extension(self.out_fmt)}"

    def _run_folder(self, router, summary: Summary, show: bool) -> None:
        self.output.mkdir(parents=True, exist_ok=True)
        with _exclusive(self.output):
            _sweep(self.output)
            self._fill_folder(router, summary, show)

    def _fill_folder(self, router, summary: Summary, show: bool) -> None:
        job = self._job(router)
        state = self._load_state(job)
        if (self.output / SUCCESS).is_file():
            self._add_done(summary, state, len(state["parts"]))
            return
        done = 0
        while str(done) in state["parts"] and self._part(done).is_file():
            done += 1
        self._add_done(summary, state, done)
        state["parts"] = {k: v for k, v in state["parts"].items() if int(k) < done}
        self._save(state)
        records = self._records_by_part(done * self.part_rows)
        i = done
        try:
            with self._meter(show, router, initial=done * self.part_rows) as meter:
                for part_chunks in records:
                    before = asdict(summary)
                    self._write_part(router, i, part_chunks, summary, meter)
                    state["parts"][str(i)] = {k: getattr(summary, k) - before[k]
                                              for k in ("rows", "strong", "rejected")}
                    self._save(state)
                    i += 1
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                exc.add_note(f"{i} finished part(s) kept in {self.output} (no {SUCCESS}); "
                             "run again with --resume to continue")
            raise
        summary.parts = i
        with atomic_write(self.output / SUCCESS) as f:
            # what the folder holds, not how this run got there: a resumed run writes the same bytes
            f.write(json.dumps({k: v for k, v in asdict(summary).items()
                                if k not in ("seconds", "resumed_parts")}) + "\n")

    def _records_by_part(self, skip: int) -> Iterator[Iterator[list[fm.Record]]]:
        """One iterator of chunks per part (consume each before the next); chunks stay inside a part."""
        it = self.reader.records(skip=skip)
        while True:
            part = itertools.islice(it, self.part_rows)
            first = next(part, None)
            if first is None:
                return
            yield self._chunked(itertools.chain([first], part))

    def _write_part(self, router, i: int, chunks, summary: Summary, meter: Meter) -> None:
        path = self._part(i)
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(atomic_path(path, inputs=[self.input]))
            target = tmp if self.out_fmt == "parquet" else stack.enter_context(
                open(tmp, "w", encoding="utf-8", newline=""))
            rej = None
            if self.skip_bad:
                rtmp = stack.enter_context(atomic_path(path.with_suffix(".rejected"), inputs=[self.input]))
                rej = stack.enter_context(open(rtmp, "w", encoding="utf-8"))
            self._write_chunks(router, target, rej, chunks, summary, meter)

    def _add_done(self, summary: Summary, state: dict, n: int) -> None:
        for k in range(n):
            p = state["parts"].get(str(k), {})
            summary.rows += p.get("rows", 0)
            summary.strong += p.get("strong", 0)
            summary.rejected += p.get("rejected", 0)
        summary.resumed_parts = summary.parts = n

    def _save(self, state: dict) -> None:
        with atomic_write(self.output / STATE) as f:
            f.write(json.dumps(state, indent=1) + "\n")


#: a temporary file of a part, the state or the marker (routekit.io.atomic_path's names)
_TEMP = re.compile(r"^\.(part-\d{5}\.[a-z]+|" + re.escape(STATE) + "|" + SUCCESS + r")\.tmp-[0-9a-f]{8}")


def _sweep(folder: Path) -> None:
    """Remove the temporary files a killed run (SIGKILL, power cut) left in an output folder."""
    for p in folder.iterdir():
        if _TEMP.match(p.name) and p.is_file():
            with contextlib.suppress(OSError):
                p.unlink()


@contextlib.contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (flock on the folder itself: no file is left behind,
    and a killed holder releases it) so two runs never write one output folder."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"another routekit score is writing to {folder}; wait for it to finish "
                              "or give another folder") from None
        yield
    finally:
        os.close(fd)


def add_arguments(s) -> None:
    """The ``routekit score`` options (an argparse parser); the CLI adds --router and the threshold."""
    s.add_argument("--input", required=True,
                   help="JSONL (objects with a 'prompt' field), CSV, Parquet, or text (one prompt per line): a file "
                        "or an s3:// (gs://, ...) object, streamed (needs pyarrow: routekit[batch]; credentials and "
                        "endpoint from AWS_* variables); with --engine ray also a folder or prefix")
    s.add_argument("--output", default=None,
                   help="file to write (format from its suffix: .jsonl/.csv/.parquet), a folder ending in '/' "
                        "for part files + _SUCCESS (default: JSONL on stdout)")
    s.add_argument("--field", default="prompt", help="field/column holding the prompt (default: %(default)s)")
    s.add_argument("--input-format", choices=["jsonl", "csv", "parquet", "text"], default=None,
                   help="format of --input (default: from its suffix)")
    s.add_argument("--output-format", choices=["jsonl", "csv", "parquet"], default=None,
                   help="format of --output (default: from its suffix; JSONL on stdout)")
    s.add_argument("--batch-size", type=int, default=64, help="prompts per encoder batch (default: %(default)s)")
    s.add_argument("--part-rows", type=int, default=100_000, help="input rows per part file (folder output)")
    s.add_argument("--resume", action="store_true", help="folder output: keep the parts a previous run finished")
    s.add_argument("--skip-bad", action="store_true",
                   help="write malformed rows to OUTPUT.rejected (JSONL: line/row, error, raw) and go on")
    s.add_argument("--rejected", default=None, help="file for rejected rows (default: OUTPUT.rejected)")
    s.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local streaming (default) or a Ray Data job (pip install 'routekit[ray]')")
    s.add_argument("--address", default=None,
                   help="Ray cluster to join (auto, ray://host:10001); default: start a local Ray")
    s.add_argument("--concurrency", type=int, default=1, help="Ray: scoring actors (default: %(default)s)")


def score_file(router, input: str | os.PathLike, output: str | os.PathLike | None = None, *,
               show_progress: bool = False, **options: Any) -> Summary:
    """Score ``input`` into ``output`` (a file, a folder ending in ``/``, or None for stdout) with
    ``router``; ``options`` as for :class:`ScoreJob`."""
    return ScoreJob(input, output, **options).run(router, show_progress=show_progress)
