"""The export toolchain's error: library code raises it, ``routekit-export`` prints it as one line."""

from routekit.errors import RoutekitError


class ExportError(RoutekitError):
    """An export input is unusable (a missing tokenizer, a wrong folder, a missing optional package);
    the message says what to do."""
