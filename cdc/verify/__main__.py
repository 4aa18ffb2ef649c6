"""``python -m cdc.verify --config FILE ...``: the same as ``cdc verify``."""

import sys

from cdc.verify.command import main

sys.exit(main())
