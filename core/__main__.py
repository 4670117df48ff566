"""``python -m aisle``: the same as the ``aisle`` command."""

import sys

from aisle.cli import main

sys.exit(main())
