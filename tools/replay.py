"""Thin wrapper: ``python tools/replay.py replay|checkpoint ...`` runs ``cdc.replay.main``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cdc.replay import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
