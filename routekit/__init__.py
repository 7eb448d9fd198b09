"""routekit: route each prompt to a strong or a weak LLM, locally, in milliseconds.

    >>> import routekit
    >>> routekit.route("Prove that there are infinitely many primes.")   # doctest: +SKIP
    Decision(route='strong', model='gpt-4-1106-preview', win_rate=0.71, ...)

Importing routekit loads nothing: models are read on the first ``load()`` or ``route()``.
"""

from .errors import (BadArtifactError, BadInputError, MissingExtraError, RoutekitError,
                     UnknownArtifactError, UnknownModelError)
from .router import Decision, Router, RouterSet, load, route

__version__ = "0.1.0"

__all__ = ["load", "route", "Router", "RouterSet", "Decision", "RoutekitError", "BadArtifactError", "BadInputError",
           "UnknownArtifactError", "UnknownModelError", "MissingExtraError", "__version__"]
