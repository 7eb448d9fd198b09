"""The OpenAI-compatible gateway (the ``server`` extra): :mod:`~routekit.server.app` (the FastAPI app,
``create_app``, ``serve``), :mod:`~routekit.server.config` (``ServerConfig``), :mod:`~routekit.server.upstream`
(calls to the two models, fallback), :mod:`~routekit.server.metrics`, :mod:`~routekit.server.wire` (the
OpenAI request/response shapes), :mod:`~routekit.server.guard` (slow-client limits),
:mod:`~routekit.server.decision_log`.

Importing this package imports nothing from the extra; import the submodule you need."""
