"""Scoring files of prompts: :mod:`~routekit.batch.score` (``routekit score``: streaming, resumable),
:mod:`~routekit.batch.formats` (JSONL, CSV, text, Parquet readers and writers) and
:mod:`~routekit.batch.ray` (the ``ray`` extra: Ray Data scoring, Ray Serve replicas)."""
