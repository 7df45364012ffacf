"""``python -m instab.cli``."""

import sys

from instab.cli.main import main

sys.exit(main())
