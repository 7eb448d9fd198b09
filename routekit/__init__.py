"""routekit: route each prompt to a strong or a weak LLM, locally, in milliseconds.

    >>> import routekit
    >>> routekit.route("Prove that there are infinitely many primes.")   # doctest: +SKIP
    Decision(route='strong', model='gpt-4-1106-preview', win_rate=0.71, ...)

Importing routekit loads nothing: models are read on the first ``load()`` or ``route()``.
"""

from routekit.control.budget import BudgetController
from routekit.errors import (
    BadArtifactError,
    BadInputError,
    EmbeddingServiceError,
    EvalDataError,
    MissingExtraError,
    NoAPIKeyError,
    OutputError,
    OutputExistsError,
    RoutekitError,
    UnknownArtifactError,
    UnknownKindError,
    UnknownModelError,
    UnknownRouterError,
)
from routekit.loading import load, route
from routekit.router import Decision, Router
from routekit.router_set import RouterSet

__version__ = "0.1.0"

__all__ = ["load", "route", "Router", "RouterSet", "Decision", "BudgetController", "__version__",
           "BadArtifactError", "BadInputError", "EmbeddingServiceError", "EvalDataError", "MissingExtraError", "NoAPIKeyError",
           "OutputError", "OutputExistsError", "RoutekitError", "UnknownArtifactError", "UnknownKindError", "UnknownModelError", "UnknownRouterError"]
