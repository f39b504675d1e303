"""``python -m mdactors``."""

import sys

from mdactors.cli import main

sys.exit(main())
