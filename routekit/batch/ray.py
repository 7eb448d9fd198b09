"""Scale-out on Ray (``pip install 'routekit[ray]'``): score a Ray Data dataset with a pool of actors,
or serve the routing server as an autoscaled Ray Serve deployment.

Nothing here starts or joins a Ray cluster on import: :func:`score_dataset` and :func:`serve_app`
work inside whatever ``ray.init()`` the caller made; the CLI (``routekit score --engine ray``,
``routekit serve --engine ray``) calls ``ray.init`` itself, with ``--address`` when given.

Each actor (or replica) loads and hash-verifies the artifact once, in its constructor; the scores
are the router's own ``win_rates`` on each batch, so they equal the local path bit for bit.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from routekit.batch.formats import ADDED as _ADDED  # the columns score adds
from routekit.batch.formats import _conflict
from routekit.errors import BadInputError, RoutekitError, require
from routekit.io import atomic_write

__all__ = ["score_dataset", "serve_app", "read_dataset", "write_local", "error_from", "score_cli", "serve_cli"]


def _ray():
    return require("ray", "ray", "Ray Data / Ray Serve")


class _Scorer:
    """The ``map_batches`` callable class: one router per actor, loaded in ``__init__``."""

    def __init__(self, router: str, column: str, threshold: float | None, strong_fraction: float | None,
                 batch_size: int, load_options: dict):
        from routekit.loading import load

        self.router = load(router, **load_options)
        self.router.resolve_threshold(threshold, strong_fraction)  # a bad threshold fails at start
        self.column, self.batch_size = column, batch_size
        self.kw = {"threshold": threshold, "strong_fraction": strong_fraction}

    def __call__(self, batch):
        import pyarrow as pa

        if self.column not in batch.column_names:
            raise BadInputError(f"no column {self.column!r} (columns: {', '.join(batch.column_names[:20])})")
        clash = _conflict(batch.column_names)
        if clash:
            raise BadInputError(f"the dataset already has column(s) {', '.join(clash)} that scoring adds")
        prompts = batch.column(self.column).to_pylist()
        for i, p in enumerate(prompts):
            if not isinstance(p, str):
                ident = {k: batch.column(k)[i].as_py() for k in batch.column_names[:3] if k != self.column}
                raise BadInputError(f"column {self.column!r} holds {type(p).__name__}, not a string, in the "
                                    f"row with {ident} (row {i} of its batch)")
        ds = self.router.route_many(prompts, batch_size=self.batch_size, **self.kw)
        cols = {"route": [d.route for d in ds], "model": [d.model for d in ds],
                "win_rate": pa.array([d.win_rate for d in ds], pa.float64()),
                "threshold": pa.array([d.threshold for d in ds], pa.float64()), "router": [d.router for d in ds]}
        for name, values in cols.items():
            batch = batch.append_column(name, pa.array(values) if isinstance(values, list) else values)
        return batch


def score_dataset(ds, router: str | os.PathLike = "default", *, column: str = "prompt",
                  threshold: float | None = None, strong_fraction: float | None = None, batch_size: int = 64,
                  concurrency: int | tuple[int, int] = 1, num_cpus: float = 1, rows_per_call: int = 1024,
                  **load_options: Any):
    """Add ``route``/``model``/``win_rate``/``threshold``/``router`` to every row of a ``ray.data.Dataset``.

    ``router`` is a shipped name or an artifact folder that exists on every node.  ``concurrency``
    actors (an int, or ``(min, max)`` for an autoscaling pool) each reserve ``num_cpus`` CPUs and
    run onnxruntime with that many threads (``threads=`` overrides); each gets ``rows_per_call`` rows
    per call and scores them in encoder batches of ``batch_size``.  Lazy, like any Ray Data transform.
    """
    for name, v in (("batch_size", batch_size), ("rows_per_call", rows_per_call)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise BadInputError(f"{name} must be an integer >= 1, got {v!r}")
    if threshold is not None and strong_fraction is not None:
        raise BadInputError("pass threshold or strong_fraction, not both")
    load_options.setdefault("threads", max(1, int(num_cpus)))
    data = _ray().data
    pool = (data.ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
            if isinstance(concurrency, tuple) else data.ActorPoolStrategy(size=concurrency))
    return ds.map_batches(
        _Scorer, batch_format="pyarrow", batch_size=rows_per_call, compute=pool, num_cpus=num_cpus,
        fn_constructor_kwargs={"router": os.fspath(router), "column": column, "threshold": threshold,
                               "strong_fraction": strong_fraction, "batch_size": batch_size,
                               "load_options": load_options})


# -- files ------------------------------------------------------------------------------------
def read_dataset(path: str, fmt: str, column: str = "prompt"):
    """A Ray dataset from a JSONL/CSV/Parquet/text file or folder (local, s3://, gs://, ...)."""
    data = _ray().data
    if fmt == "jsonl":
        return data.read_json(path, lines=True)
    if fmt == "csv":
        return data.read_csv(path)
    if fmt == "parquet":
        return data.read_parquet(path)
    if fmt == "text":
        ds = data.read_text(path, drop_empty_lines=True)
        return ds.rename_columns({"text": column}) if column != "text" else ds
    raise BadInputError(f"unknown input format {fmt!r}")


def write_local(ds, folder: str | os.PathLike, fmt: str, *, part_rows: int = 100_000) -> dict:
    """Stream a dataset through the driver into ``folder``/part-NNNNN files with routekit's own
    writers (exact float64 in JSONL/CSV, as the local engine writes them; Ray's JSON writer rounds
    to 10 digits).  Returns row counts."""
    import pyarrow.parquet as pq

    from routekit.batch import formats as fm

    folder = Path(folder)
    folder.mkdir(parents=True)
    counts, part, left, writer, f, schema = {"rows": 0, "strong": 0, "parts": 0}, 0, 0, None, None, None

    def close():
        if writer is not None:
            writer.close()
        if f is not None:
            f.close()
        if part:  # the part's data on disk before the folder is published
            with open(folder / f"part-{part - 1:05d}{fm.extension(fmt)}", "rb+") as g:
                os.fsync(g.fileno())

    try:
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=4096):
            schema = schema or batch.schema
            offset = 0
            while offset < batch.num_rows:
                if left == 0:
                    close()
                    path = folder / f"part-{part:05d}{fm.extension(fmt)}"
                    if fmt == "parquet":
                        f, writer = None, pq.ParquetWriter(str(path), schema)
                    else:
                        f = open(path, "w", encoding="utf-8", newline="")
                        writer = fm.open_writer(fmt, f, [c for c in schema.names if c not in _ADDED])
                    part, left = part + 1, part_rows
                piece = batch.slice(offset, min(left, batch.num_rows - offset))
                offset, left = offset + piece.num_rows, left - piece.num_rows
                if fmt == "parquet":
                    try:
                        writer.write_table(piece.cast(schema))
                    except (TypeError, ValueError) as exc:  # pyarrow's errors derive from these
                        raise BadInputError(f"column types changed between batches ({exc}); "
                                            "write JSONL instead") from None
                else:
                    writer.write(piece.to_pylist())
                counts["rows"] += piece.num_rows
                counts["strong"] += piece.column("route").to_pylist().count("strong")
    finally:
        close()
    counts["parts"] = part
    return counts


def error_from(exc: BaseException) -> RoutekitError | None:
    """The routekit error a Ray task raised, however Ray wrapped it (Ray Data keeps only its text)."""
    import re

    from routekit import errors

    seen, x = set(), exc
    while x is not None and id(x) not in seen:
        seen.add(id(x))
        if isinstance(x, RoutekitError):
            return x
        x = getattr(x, "cause", None) or x.__cause__ or x.__context__
    found = re.findall(r"^routekit\.errors\.(\w+): (.*)$", str(exc), flags=re.M)
    if found:
        name, message = found[-1]
        cls = getattr(errors, name, None)
        if isinstance(cls, type) and issubclass(cls, RoutekitError):
            try:
                return cls(message)
            except TypeError:  # e.g. MissingExtraError's own signature
                return RoutekitError(message)
    return None


def _from_ray(exc: BaseException) -> bool:
    return any(c.__module__.split(".")[0] == "ray" for c in type(exc).__mro__)


def _root_text(exc: BaseException, limit: int = 300) -> str:
    """The innermost error under Ray's wrappers, as ``Type: first line``."""
    seen, x = set(), exc
    while id(x) not in seen:
        seen.add(id(x))
        nxt = getattr(x, "cause", None) or x.__cause__ or x.__context__
        if not isinstance(nxt, BaseException):
            break
        x = nxt
    lines = [ln.strip() for ln in str(x).splitlines() if ln.strip()]
    text = f"{type(x).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _init(address: str | None):
    ray = _ray()
    if not ray.is_initialized():
        import logging

        # a local Ray gets one logical CPU more than the cores: the read/write tasks (light, mostly
        # waiting on I/O) need one while every core runs a scoring actor, else the job waits forever
        kw: dict[str, Any] = ({"address": address} if address else
                              {"include_dashboard": False, "num_cpus": (os.cpu_count() or 1) + 1})
        ray.init(logging_level=logging.WARNING, log_to_driver=False, **kw)
    return ray


def score_cli(args) -> int:
    """``routekit score --engine ray``: the input read by Ray Data, the output a folder of part files."""
    from routekit.batch import formats as fm
    from routekit.io import check_output_dir

    if args.resume or args.skip_bad:
        raise BadInputError("--resume and --skip-bad are for the local engine; with --engine ray a bad row "
                            "stops the job and the output folder only appears when it is complete")
    if args.output is None or not str(args.output).endswith("/"):
        raise BadInputError("--engine ray writes a folder of part files: give --output FOLDER/ (ending in '/')")
    remote = "://" in args.input
    if not remote and not os.path.exists(args.input):
        raise BadInputError(f"{args.input}: not found")
    if remote:  # a missing key or a denied bucket: one clear line now, not a Ray task failure later
        fm.source(args.input, folder_ok=True)
    in_fmt = args.input_format or fm.input_format(Path(args.input.rstrip("/")), None)
    if os.path.isdir(args.input) and not args.input_format:
        raise BadInputError("a folder input needs --input-format (jsonl, csv, parquet or text)")
    out_fmt = fm.output_format(None, args.output_format, in_fmt)
    out = args.output.rstrip("/")
    local_out = "://" not in out
    if not local_out and out_fmt != "parquet":
        raise BadInputError("a remote --output is written by Ray's own writers: use --output-format parquet "
                            "(its JSON writer rounds floats)")
    if local_out:
        check_output_dir(out, inputs=[] if remote else [args.input])
    ray = _init(args.address)
    cpus = ray.cluster_resources().get("CPU", 0)
    if args.concurrency < 1 or args.concurrency >= cpus:
        raise BadInputError(f"--concurrency must be 1 to {max(1, int(cpus) - 1)} on this Ray cluster ({cpus:g} "
                            f"CPUs): each actor holds one CPU and reading/writing needs one more")
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    ds = score_dataset(read_dataset(args.input, in_fmt, args.field), args.router, column=args.field,
                       threshold=args.threshold, strong_fraction=args.strong_fraction,
                       batch_size=args.batch_size, concurrency=args.concurrency, threads=args.threads)
    staging = Path(out).with_name(f".{Path(out).name}.tmp-{os.getpid()}") if local_out else None
    try:
        if local_out:
            counts = write_local(ds, staging, out_fmt, part_rows=args.part_rows)
        else:
            ds.write_parquet(out)
    except BaseException as exc:
        if local_out:
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
        cause = error_from(exc) if isinstance(exc, Exception) else None
        if cause is not None:
            raise type(cause)(f"{cause} (nothing was published to {out})") from None
        if isinstance(exc, Exception) and _from_ray(exc):  # e.g. a bad line that Ray's reader met
            raise BadInputError(f"the Ray job on {args.input} failed: {_root_text(exc)} "
                                f"(nothing was published to {out})") from None
        raise
    if local_out:
        os.replace(staging, out)
        with atomic_write(Path(out, "_SUCCESS")) as f:
            f.write(json.dumps(counts) + "\n")
        done = f"{counts['rows']} prompts: {counts['strong']} strong, {counts['rows'] - counts['strong']} weak"
    else:
        import pyarrow.fs as pafs

        fs, root = pafs.FileSystem.from_uri(out)
        with fs.open_output_stream(f"{root}/_SUCCESS"):
            pass
        done = "done"
    print(f"scored {done} -> {out}/ ({out_fmt} part files, _SUCCESS)", file=sys.stderr)
    return 0


# -- Ray Serve --------------------------------------------------------------------------------
class RoutekitServer:
    """The Serve deployment class; its HTTP handling is the FastAPI app of :mod:`routekit.server`."""


def serve_app(config=None, *, num_replicas: int | str | None = None, autoscaling_config: dict | None = None,
              ray_actor_options: dict | None = None, max_ongoing_requests: int | None = None,
              name: str = "routekit"):
    """A Ray Serve application running :func:`routekit.server.app.create_app` (``config``: a ServerConfig).

    The app is built *on each replica* (the routers load there, once, at replica start-up), so
    nothing heavy travels from the driver.  Pass ``num_replicas`` or an ``autoscaling_config``
    (e.g. ``{"min_replicas": 1, "max_replicas": 8, "target_ongoing_requests": 4}``); deploy the
    result with ``serve.run(app)``.
    """
    serve = require("ray.serve", "ray", "Ray Serve")
    from routekit.server.app import ServerConfig

    cfg = config or ServerConfig()
    if not isinstance(cfg, ServerConfig):
        raise BadInputError(f"config must be a routekit.server.config.ServerConfig, got {type(cfg).__name__}")
    if num_replicas is not None and autoscaling_config is not None:
        raise BadInputError("pass num_replicas or autoscaling_config, not both")

    def build():
        from routekit.server.app import create_app

        return create_app(cfg)

    opts: dict[str, Any] = {"name": name, "ray_actor_options": ray_actor_options or {"num_cpus": 1}}
    if num_replicas is not None:
        opts["num_replicas"] = num_replicas
    if autoscaling_config is not None:
        opts["autoscaling_config"] = autoscaling_config
    if max_ongoing_requests is not None:
        opts["max_ongoing_requests"] = max_ongoing_requests
    deployment = serve.deployment(**opts)(serve.ingress(build)(RoutekitServer))
    return deployment.bind()


def add_serve_arguments(sv) -> None:
    """The ``routekit serve`` options for Ray Serve (an argparse parser)."""
    sv.add_argument("--engine", choices=["uvicorn", "ray"], default="uvicorn",
                    help="uvicorn in this process (default) or Ray Serve replicas (pip install 'routekit[ray]')")
    sv.add_argument("--replicas", type=int, default=1, help="Ray Serve: replicas (the minimum with --max-replicas)")
    sv.add_argument("--max-replicas", type=int, default=None,
                    help="Ray Serve: autoscale up to this many replicas (default: --replicas, no autoscaling)")
    sv.add_argument("--address", default=None, help="Ray cluster to join (auto, ray://host:10001); default: local")


def serve_cli(cfg, *, host: str, port: int, address: str | None, replicas: int, max_replicas: int | None) -> None:
    """``routekit serve --engine ray``: run the app on Ray Serve until interrupted."""
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1 or (
            max_replicas is not None and max_replicas < replicas):
        raise BadInputError(f"--replicas must be >= 1 and --max-replicas >= --replicas, got {replicas}, {max_replicas}")
    ray = _init(address)
    serve = require("ray.serve", "ray", "Ray Serve")
    if max_replicas is not None and max_replicas > replicas:
        app = serve_app(cfg, autoscaling_config={"min_replicas": replicas, "max_replicas": max_replicas})
    else:
        app = serve_app(cfg, num_replicas=replicas)
    serve.start(http_options={"host": host, "port": port})
    print(f"routekit on Ray Serve: http://{host}:{port} ({replicas}"
          f"{'-' + str(max_replicas) if max_replicas else ''} replicas)", file=sys.stderr)
    try:
        serve.run(app, blocking=True)
    except KeyboardInterrupt:  # Ctrl-C is how a foreground server stops
        print("routekit: Ray Serve stopped", file=sys.stderr)
    finally:
        serve.shutdown()
        ray.shutdown()
