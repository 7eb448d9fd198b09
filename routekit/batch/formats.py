"""Row readers and writers for ``routekit score``: JSONL, CSV and text with the standard library,
Parquet with pyarrow (``pip install 'routekit[batch]'``, imported only when a Parquet file is used).

A reader yields one :class:`Record` per input record (a non-blank line, a CSV row, a Parquet row)
with its 1-based position, so a bad one can be reported as ``file:line``.  Memory stays bounded:
lines are read one at a time and Parquet in record batches.

The input may also be an object-store URI (``s3://bucket/key``, ``gs://``, ...), read as a stream
through ``pyarrow.fs`` (the batch extra): credentials, region and endpoint come from the usual
environment (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_PROFILE``, ``AWS_REGION``,
``AWS_ENDPOINT_URL`` for S3-compatible stores).  A missing key, a denied bucket or a read cut off
half-way is one :class:`~routekit.errors.BadInputError` naming the URI.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator

from routekit.errors import BadInputError, require

#: Columns ``score`` adds to every row, in this order.
ADDED = ("route", "model", "win_rate", "threshold", "router")
FORMATS = ("jsonl", "csv", "parquet", "text")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet",
             ".txt": "text"}


# -- sources: a local file or an object-store URI ------------------------------------------------
def is_remote(path: str | os.PathLike) -> bool:
    """``s3://...``, ``gs://...`` and the like (``file://`` and plain paths are local)."""
    text = os.fspath(path)
    return isinstance(text, str) and "://" in text and not text.startswith("file://")


@dataclass(frozen=True)
class Source:
    """An input checked to exist and be readable: what a resumed job compares."""

    name: str  #: the path or URI as given (for messages)
    ident: str  #: the resolved path, or the URI
    size: int | None
    mtime_ns: int | None
    remote: bool = False
    folder: bool = False


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _remote_error(uri: str, exc: BaseException) -> BadInputError:
    text = _one_line(exc)
    if any(w in text for w in ("ACCESS_DENIED", "AccessDenied", "Access Denied", "Forbidden", "403")):
        return BadInputError(f"{uri}: access denied ({text}); check the credentials (AWS_ACCESS_KEY_ID, "
                             "AWS_PROFILE) and the bucket's policy")
    if isinstance(exc, FileNotFoundError) or "NoSuchKey" in text or "NoSuchBucket" in text:
        return BadInputError(f"{uri}: not found ({text})")
    return BadInputError(f"{uri}: cannot be read ({text})")


def _filesystem(uri: str):
    fs_mod = require("pyarrow.fs", "batch", f"reading {uri.split('://')[0]}:// input")
    try:
        return fs_mod.FileSystem.from_uri(uri)
    except (ValueError, OSError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        raise _remote_error(uri, exc) from None


def source(path: str | os.PathLike, *, folder_ok: bool = False) -> Source:
    """Check that ``path`` (a file, or an object-store URI) exists and can be read; a missing file
    or key, a folder (unless ``folder_ok``) or a denied bucket is a :class:`BadInputError`."""
    if not is_remote(path):
        p = Path(path)
        if p.is_dir() and folder_ok:
            return Source(str(p), str(p.resolve()), None, None, folder=True)
        if not p.is_file():
            raise BadInputError(f"{p}: " + ("is a folder, not a file" if p.is_dir() else "file not found"))
        st = p.stat()
        return Source(str(p), str(p.resolve()), st.st_size, st.st_mtime_ns)
    uri = os.fspath(path)
    fs, key = _filesystem(uri)
    from pyarrow.fs import FileType

    try:
        info = fs.get_file_info(key)
    except OSError as exc:
        raise _remote_error(uri, exc) from None
    if info.type == FileType.NotFound:
        raise BadInputError(f"{uri}: not found (no such key, or no such bucket)")
    if info.type == FileType.Directory:
        if folder_ok:
            return Source(uri, uri, None, None, remote=True, folder=True)
        raise BadInputError(f"{uri}: is a folder (a key prefix), not an object; the local engine reads one "
                            "object (--engine ray reads folders)")
    return Source(uri, uri, info.size, info.mtime_ns, remote=True)


class _RemoteStream:
    """A buffered object-store stream whose read failures are BadInputErrors naming the URI."""

    def __init__(self, f: IO[bytes], uri: str, size: int | None):
        self._f, self._uri, self._size, self._got = f, uri, size, 0

    def _fail(self, exc: OSError) -> BadInputError:
        return BadInputError(f"{self._uri}: reading stopped after {self._got} of {self._size} bytes "
                             f"({_one_line(exc)})")

    def read(self, n: int = -1) -> bytes:
        try:
            data = self._f.read(n)
        except OSError as exc:
            raise self._fail(exc) from None
        self._got += len(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        while True:
            try:
                line = self._f.readline()
            except OSError as exc:
                raise self._fail(exc) from None
            if not line:
                if self._size is not None and self._got < self._size:
                    raise BadInputError(f"{self._uri}: the object ended after {self._got} of its "
                                        f"{self._size} bytes (a partial read)")
                return
            self._got += len(line)
            yield line


@contextlib.contextmanager
def open_bytes(path: str | os.PathLike) -> Iterator[Any]:
    """A binary file to iterate by lines (or ``read``): a local file, or an object streamed."""
    if not is_remote(path):
        with open(path, "rb") as f:
            yield f
        return
    uri = os.fspath(path)
    fs, key = _filesystem(uri)
    try:
        size = fs.get_file_info(key).size
        raw = fs.open_input_stream(key)
    except OSError as exc:  # FileNotFoundError included
        raise _remote_error(uri, exc) from None
    with io.BufferedReader(raw, 1 << 20) as f:
        yield _RemoteStream(f, uri, size)


def open_random_access(path: str | os.PathLike):
    """A seekable file for Parquet: the path itself when local, else the object opened."""
    if not is_remote(path):
        return path
    uri = os.fspath(path)
    fs, key = _filesystem(uri)
    try:
        return fs.open_input_file(key)
    except OSError as exc:
        raise _remote_error(uri, exc) from None


def input_format(path: Path, given: str | None = None) -> str:
    """``given``, else from the suffix; anything unknown is read as text (one prompt per line)."""
    return given or _SUFFIXES.get(Path(path).suffix.lower(), "text")


def output_format(path: Path | None, given: str | None, fallback: str) -> str:
    """``given``, else from the suffix, else ``fallback`` (the input's format; text becomes JSONL)."""
    fmt = given or (_SUFFIXES.get(Path(path).suffix.lower()) if path is not None else None) or fallback
    if fmt == "text":
        fmt = "jsonl"  # the scores need columns
    return fmt


def extension(fmt: str) -> str:
    return {"jsonl": ".jsonl", "csv": ".csv", "parquet": ".parquet"}[fmt]


@dataclass
class Record:
    where: str  #: "line 17" / "row 17", for messages
    row: dict | None  #: every input column (None when the record could not be parsed)
    prompt: str | None  #: the prompt (None when bad)
    error: str | None = None  #: why the record is bad
    raw: Any = None  #: the input as read, for the .rejected file


def _decode(line: bytes) -> tuple[str, str | None]:
    try:
        return line.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return line.decode("utf-8", errors="replace"), f"invalid UTF-8 (byte {exc.start + 1} of the line)"


def _conflict(columns) -> list[str]:
    return [c for c in ADDED if c in columns]


class _Lines:
    """JSONL and text files, read as bytes so that invalid UTF-8 gets a line number."""

    def __init__(self, path: Path, field: str, fmt: str):
        self.path, self.field, self.fmt = path, field, fmt
        self.columns: list[str] | None = [field] if fmt == "text" else None
        self.schema = None

    def count(self) -> int | None:
        if is_remote(self.path):
            return None  # no second download just for the bar's total
        n = 0
        with open(self.path, "rb") as f:
            for buf in iter(lambda: f.read(1 << 20), b""):
                n += buf.count(b"\n")
        return n

    def records(self, skip: int = 0) -> Iterator[Record]:
        seen = 0
        with open_bytes(self.path) as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                seen += 1
                if seen <= skip:
                    continue
                yield self._parse(i, line)

    def _parse(self, i: int, line: bytes) -> Record:
        where = f"line {i}"
        text, err = _decode(line)
        if err:
            return Record(where, None, None, err, text)
        if self.fmt == "text":
            prompt = text.rstrip("\r\n")
            return Record(where, {self.field: prompt}, prompt)
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            return Record(where, None, None, f"invalid JSON ({exc.msg} at column {exc.colno})", text)
        except RecursionError:
            return Record(where, None, None, "invalid JSON (nested too deeply)", text)
        except ValueError as exc:  # e.g. an integer with more digits than Python converts
            return Record(where, None, None, f"invalid JSON ({exc})", text)
        if isinstance(row, str):
            row = {self.field: row}
        if not isinstance(row, dict):
            return Record(where, None, None, f"expected an object with a {self.field!r} string or a "
                                             f"string, got {type(row).__name__}", text)
        prompt = row.get(self.field)
        if not isinstance(prompt, str):
            what = "missing" if self.field not in row else f"a {type(prompt).__name__}, not a string"
            return Record(where, None, None, f"field {self.field!r} is {what}", text)
        clash = _conflict(row)
        if clash:
            return Record(where, None, None, f"already has field(s) {', '.join(clash)} that score adds "
                                             "(is this a score output?)", text)
        return Record(where, row, prompt)


class _Csv:
    def __init__(self, path: Path, field: str):
        self.path, self.field, self.schema = path, field, None
        self._bad_lines: set[int] = set()
        with open_bytes(path) as f:
            header = next(csv.reader(self._lines(f, track=False)), None)
        if not header:
            raise BadInputError(f"{path}: empty CSV file (no header row)")
        dup = sorted({c for c in header if header.count(c) > 1})
        if dup:
            raise BadInputError(f"{path}:1: duplicate column name(s) {', '.join(dup)}")
        if field not in header:
            raise BadInputError(f"{path}:1: no column {field!r} (columns: {', '.join(header[:20])}); "
                                "pick one with --field")
        clash = _conflict(header)
        if clash:
            raise BadInputError(f"{path}:1: already has column(s) {', '.join(clash)} that score adds "
                                "(is this a score output?)")
        self.columns = header

    def _lines(self, f, track: bool = True) -> Iterator[str]:
        for i, line in enumerate(f, 1):
            text, err = _decode(line)
            if err and track:
                self._bad_lines.add(i)
            yield text

    def count(self) -> int | None:
        return None  # quoted newlines make a line count wrong; no total

    def records(self, skip: int = 0) -> Iterator[Record]:
        with open_bytes(self.path) as f:
            reader = csv.reader(self._lines(f))
            next(reader)
            start, n = 2, 0
            while True:
                try:
                    values = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    values, err = None, f"invalid CSV ({exc})"
                else:
                    err = None
                end = reader.line_num
                where, lines, start = f"line {start}", range(start, end + 1), end + 1
                if values is not None and not any(values):
                    continue  # blank line
                n += 1
                if n <= skip:
                    continue
                if err is None and self._bad_lines.intersection(lines):
                    err = "invalid UTF-8"
                if err is None and len(values) != len(self.columns):
                    err = f"{len(values)} fields, the header has {len(self.columns)}"
                if err is not None:
                    yield Record(where, None, None, err, values)
                    continue
                row = dict(zip(self.columns, values))
                yield Record(where, row, row[self.field])


class _Parquet:
    def __init__(self, path: Path, field: str, chunk_rows: int):
        self._pq = require("pyarrow.parquet", "batch", "Parquet files")
        pa = self._pa = require("pyarrow", "batch", "Parquet files")
        self.path, self.field, self.chunk_rows = path, field, chunk_rows
        with self._open() as f:  # schema and row count now; the rows are read by records(), which opens it again
            self.schema = f.schema_arrow
            self._num_rows = f.metadata.num_rows
        self.columns = list(self.schema.names)
        if field not in self.columns:
            raise BadInputError(f"{path}: no column {field!r} (columns: {', '.join(self.columns[:20])}); "
                                "pick one with --field")
        ftype = self.schema.field(field).type
        if not (pa.types.is_string(ftype) or pa.types.is_large_string(ftype)):
            raise BadInputError(f"{path}: column {field!r} has type {ftype}, not string")
        clash = _conflict(self.columns)
        if clash:
            raise BadInputError(f"{path}: already has column(s) {', '.join(clash)} that score adds "
                                "(is this a score output?)")

    @contextlib.contextmanager
    def _open(self) -> Iterator[Any]:
        """The ParquetFile, closed afterwards with the input file under it (an object store stream that
        ParquetFile itself does not close), however the block ends."""
        src = open_random_access(self.path)
        try:
            try:
                pf = self._pq.ParquetFile(src)
            except (self._pa.ArrowException, OSError) as exc:
                raise BadInputError(f"{self.path}: not a readable Parquet file ({_one_line(exc)})") from None
            with pf:
                yield pf
        finally:
            if src is not self.path:
                src.close()

    def count(self) -> int | None:
        return self._num_rows

    def records(self, skip: int = 0) -> Iterator[Record]:
        try:
            yield from self._records(skip)
        except OSError as exc:  # an object store connection lost half-way, a file truncated under us
            raise BadInputError(f"{self.path}: reading stopped ({_one_line(exc)})") from None

    def _records(self, skip: int) -> Iterator[Record]:
        with self._open() as f:
            yield from self._rows(f, skip)

    def _rows(self, f, skip: int) -> Iterator[Record]:
        n = 0
        for batch in f.iter_batches(batch_size=self.chunk_rows):
            if n + batch.num_rows <= skip:
                n += batch.num_rows
                continue
            for row in batch.to_pylist():
                n += 1
                if n <= skip:
                    continue
                prompt = row[self.field]
                if prompt is None:
                    yield Record(f"row {n}", None, None, f"{self.field!r} is null", row)
                else:
                    yield Record(f"row {n}", row, prompt)


def open_reader(path: Path, fmt: str, field: str, chunk_rows: int = 1024):
    if fmt == "csv":
        return _Csv(path, field)
    if fmt == "parquet":
        return _Parquet(path, field, chunk_rows)
    if fmt in ("jsonl", "text"):
        return _Lines(path, field, fmt)
    raise BadInputError(f"unknown input format {fmt!r} (one of {', '.join(FORMATS)})")


# -- writers --------------------------------------------------------------------------------------
def _jsonable(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("utf-8", errors="replace")
    return str(v)  # datetimes, decimals from Parquet


def json_line(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=_jsonable) + "\n"


class JsonlWriter:
    def __init__(self, f, columns=None, schema=None):
        self.f = f

    def write(self, rows: list[dict]) -> None:
        self.f.write("".join(json_line(r) for r in rows))

    def close(self) -> None:
        pass


class CsvWriter:
    def __init__(self, f, columns=None, schema=None):
        self.f, self.header = f, (list(columns) + list(ADDED)) if columns else None
        self._w = None

    @staticmethod
    def _cell(v: Any) -> Any:
        if isinstance(v, (dict, list)):
            return json.dumps(v, ensure_ascii=False, default=_jsonable)
        if isinstance(v, float) and not math.isfinite(v):
            return repr(v)
        return "" if v is None else v

    def write(self, rows: list[dict]) -> None:
        if not rows:
            return
        if self._w is None:
            self.header = self.header or [k for k in rows[0] if k not in ADDED] + list(ADDED)
            self._w = csv.writer(self.f, lineterminator="\n")
            self._w.writerow(self.header)
        known = set(self.header)
        for r in rows:
            extra = [k for k in r if k not in known]
            if extra:
                raise BadInputError(f"a row has field(s) {', '.join(map(str, extra[:5]))} that the first row "
                                    "lacks; CSV needs the same columns in every row (write JSONL or Parquet)")
            self._w.writerow([self._cell(r.get(k)) for k in self.header])

    def close(self) -> None:
        pass


class ParquetWriter:
    """Parquet with the input's column types when the input is Parquet, else those of the first chunk."""

    def __init__(self, path: Path, columns=None, schema=None):
        self.pa = require("pyarrow", "batch", "Parquet output")
        self.pq = require("pyarrow.parquet", "batch", "Parquet output")
        self.path, self.schema, self._w = path, None, None
        if schema is not None:
            pa = self.pa
            self.schema = schema.append(pa.field("route", pa.string())).append(pa.field("model", pa.string())) \
                .append(pa.field("win_rate", pa.float64())).append(pa.field("threshold", pa.float64())) \
                .append(pa.field("router", pa.string()))

    def write(self, rows: list[dict]) -> None:
        if not rows:
            return
        pa = self.pa
        try:
            table = pa.Table.from_pylist(rows, schema=self.schema)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise BadInputError(f"rows do not fit the Parquet column types of the first chunk ({exc}); "
                                "make the column types consistent or write JSONL") from None
        if self._w is None:
            self.schema = table.schema
            self._w = self.pq.ParquetWriter(str(self.path), self.schema)
        self._w.write_table(table)

    def close(self) -> None:
        if self._w is None:  # no rows: still a valid (empty) file
            pa = self.pa
            schema = self.schema or pa.schema([(c, pa.float64() if c in ("win_rate", "threshold") else pa.string())
                                               for c in ADDED])
            self._w = self.pq.ParquetWriter(str(self.path), schema)
        self._w.close()


def open_writer(fmt: str, target, columns=None, schema=None):
    """``target``: a text file object for JSONL/CSV, a path for Parquet."""
    cls = {"jsonl": JsonlWriter, "csv": CsvWriter, "parquet": ParquetWriter}.get(fmt)
    if cls is None:
        raise BadInputError(f"unknown output format {fmt!r} (jsonl, csv or parquet)")
    return cls(target, columns=columns, schema=schema if fmt == "parquet" else None)


def is_text(fmt: str) -> bool:
    return fmt != "parquet"


__all__ = ["ADDED", "FORMATS", "Record", "input_format", "output_format", "extension", "open_reader",
           "open_writer", "json_line", "is_text"]
