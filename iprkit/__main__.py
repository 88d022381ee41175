"""``python -m iprkit``: the command line (:mod:`iprkit.cli`)."""

import sys

from iprkit.cli import main

sys.exit(main())
