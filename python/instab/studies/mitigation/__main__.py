"""``python -m instab.studies.mitigation``: the study's command line (the options of
``instab characterize --experiment mitigation``), defined in :mod:`instab.cli.mitigation`."""

from __future__ import annotations

import sys

# The one import from the cli layer in studies: this entry point only forwards to the command line that owns the
# options, so the documented `python -m instab.studies.mitigation` keeps working.
from instab.cli.mitigation import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
