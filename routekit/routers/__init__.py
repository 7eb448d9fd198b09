"""Router kinds, one module each (SW is a subpackage), imported on demand through
:mod:`routekit.registry`; each holds its class and the check of its manifest section (``check_section``)."""
