"""``cdc replay`` (re-apply staged windows; ``--rebuild`` a table from a staged snapshot) and
``cdc checkpoint show|set``.

* ``plan``: which windows, whether they chain, whether their parts are whole (pure but for reads).
* ``run``: replay and rebuild through the Snowflake sink, under the pipeline lease.
* ``checkpoint_cmd``: show and move the checkpoint (never below the slot's confirmed position).
* ``command``: the command lines; ``register(subparsers)`` adds ``replay`` and ``checkpoint``.
"""

from __future__ import annotations

from cdc.replay.command import main, register

__all__ = ["main", "register"]
