"""`python -m ptfer_core.cli`: the same as the `ptfer` command."""

import sys

from . import main

sys.exit(main())
