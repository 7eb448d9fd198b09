"""routekit's toolchain (import name ``routekit_export``): data -> torch training -> ONNX -> artifact.

Needs the ``export`` extra: ``pip install 'routekit[export]'``.
"""
