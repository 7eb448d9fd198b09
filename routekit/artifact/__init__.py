"""The artifact format: a folder with ``manifest.json`` plus the files it lists, each with a sha256.

Loading never unpickles anything: arrays are read with ``numpy.load(allow_pickle=False)``, models
are ONNX files, tokenizers are ``tokenizer.json``.  Every file the manifest lists is hashed on load
and a mismatch is refused with :class:`~routekit.errors.BadArtifactError`.

The manifest itself is checked against a schema (:mod:`routekit.artifact.schema`) and carries its own hash,
``manifest_sha256``: the sha256 of its canonical JSON (sorted keys, no whitespace) without that
field, written by :class:`ArtifactWriter` and checked on every load.  It catches a manifest changed
after it was written — a hand edit (one digit of a calibration quantile), a bad merge, a partial
copy, bit rot — which the file hashes alone do not cover (they say nothing about the thresholds,
the pair or the model table).  It is an integrity check, not a signature: anyone who can write the
folder can also recompute the hash (``routekit artifacts seal``), so it does not protect against
deliberate tampering; for that, compare ``routekit artifacts verify``'s digest with one you keep
elsewhere, or install artifacts read-only.
"""

from __future__ import annotations

import os

import numpy as np

from routekit import registry
from routekit.artifact.locate import (
    artifacts_root,
    cache_dir,
    default_name,
    resolve,
    shipped,
)
from routekit.artifact.manifest import (
    DIGEST,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    SHARED,
    Manifest,
    manifest_digest,
    read_manifest,
    sha256_file,
)
from routekit.artifact.share import ShareReport, copy_artifact, share
from routekit.artifact.write import ArtifactWriter, rewrite, seal
from routekit.errors import BadArtifactError
from routekit.io import check_output_dir

KINDS = tuple(registry.BUILTIN)  #: built-in router kinds; installed plugins add theirs: registry.kinds()

__all__ = ["ArtifactWriter", "DIGEST", "FORMAT", "FORMAT_VERSION", "KINDS", "MANIFEST", "Manifest", "TRIAL_PROMPT",
           "artifacts_root", "cache_dir", "check_output_dir", "default_name", "manifest_digest", "read_manifest",
           "resolve", "rewrite", "seal", "sha256_file", "shipped", "verify", "SHARED", "ShareReport", "copy_artifact", "share"]


TRIAL_PROMPT = "Prove that there are infinitely many prime numbers."


def verify(folder: str | os.PathLike, *, load: bool = False, threads: int | None = None) -> Manifest:
    """Check an artifact's manifest (schema, own hash) and files (sha256); with ``load`` also load
    it as ``routekit.load()`` does and score one prompt (a remote encoder is not called: the head
    scores a synthetic unit embedding instead), so that passing means ``load()`` works.

    Raises BadArtifactError with the first problem found."""
    manifest = read_manifest(folder, verify=True)
    if load:
        _trial(manifest, threads)
    return manifest


def _trial(manifest: Manifest, threads: int | None) -> None:
    from routekit.errors import RoutekitError
    from routekit.router import EncoderRouter

    where = manifest.folder
    try:  # as routekit.load() builds it, from the manifest read and hash-checked above
        router = registry.router_class(manifest.kind)(manifest, threads=threads)
        encoder = router.encoder if isinstance(router, EncoderRouter) else None
        if hasattr(encoder, "check_vocab"):
            encoder.check_vocab()
        enc = manifest.get("encoder")
        if isinstance(enc, dict) and enc.get("kind") == "openai":
            emb = np.zeros((1, int(enc["dim"])), np.float32)
            emb[0, 0] = 1.0
            raw = router.score_embeddings(emb, [TRIAL_PROMPT])
        else:
            raw = router.score([TRIAL_PROMPT])
        raw = np.asarray(raw, dtype=np.float64).reshape(-1)
    except RoutekitError:
        raise
    except Exception as exc:  # anything else is an artifact the loader did not catch
        raise BadArtifactError(f"{where}: the trial load failed ({type(exc).__name__}: {exc})") from exc
    if raw.shape != (1,) or not np.isfinite(raw[0]) or not -1e-6 <= raw[0] <= 1 + 1e-6:
        raise BadArtifactError(f"{where}: the trial prompt gave win rate {raw.tolist()}, not one number in [0, 1]")
