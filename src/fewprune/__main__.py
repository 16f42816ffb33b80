"""``python -m fewprune …``: the command line, where the ``fewprune`` script is not on the PATH."""

import sys

from .cli import main

sys.exit(main())
