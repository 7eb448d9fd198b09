"""``python -m routekit``: the ``routekit`` command."""

import sys

from routekit.cli import main

if __name__ == "__main__":
    sys.exit(main())
