"""Exceptions raised by routekit. Every error a caller should handle derives from RoutekitError."""


class RoutekitError(Exception):
    """Base class for all routekit errors."""


class UnknownArtifactError(RoutekitError, LookupError):
    """A router name is neither a shipped artifact nor an existing folder."""


class BadArtifactError(RoutekitError):
    """An artifact folder is missing files, has files that fail their hash, or an invalid manifest."""


class BadInputError(RoutekitError, ValueError):
    """A prompt, threshold or option given to a router is not valid."""


class UnknownKindError(UnknownArtifactError, BadArtifactError):
    """An artifact's router kind is neither built in nor registered by an installed plugin."""


class UnknownModelError(BadInputError, LookupError):
    """A model name is not in the artifact's model table."""


class MissingExtraError(RoutekitError, ImportError):
    """An optional dependency is needed; the message says which extra to install."""

    def __init__(self, package: str, extra: str, purpose: str = ""):
        what = f" for {purpose}" if purpose else ""
        super().__init__(
            f"{package!r} is required{what} but is not installed. "
            f"Install it with: pip install 'routekit[{extra}]'"
        )
        self.package = package
        self.extra = extra


def require(module: str, extra: str, purpose: str = ""):
    """Import an optional dependency or raise MissingExtraError with an install hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised via tests with monkeypatch
        raise MissingExtraError(module.split(".")[0], extra, purpose) from exc


class OutputError(RoutekitError, OSError):
    """An output cannot be written where asked: it is an input, a folder or device, its folder is
    missing or read-only, or the disk filled up.  An existing file there is left untouched."""


class OutputExistsError(OutputError, FileExistsError):
    """An output folder exists and replacing it was not asked for (``--force`` / ``overwrite=True``)."""


class UnknownRouterError(RoutekitError, LookupError):
    """A ``model`` names a router (or alias) that this client/server was not configured with."""


class EvalDataError(BadInputError):
    """Benchmark data is missing or malformed, or a metric is undefined for it."""


class NoAPIKeyError(RoutekitError):
    """The OpenAI embedder has no API key configured."""


class EmbeddingServiceError(RoutekitError):
    """The embeddings server refused a request or kept failing after all retries."""
