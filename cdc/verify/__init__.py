"""``cdc verify``: compare every replicated table in the source with its target, streaming.

* ``command``: the command line (``register`` adds ``verify`` to the ``cdc`` parser; ``main``).
* ``run``: ``verify(settings)`` and the ``Verifier`` with its reports (connections, per table).
* ``read``: the SQL of both sides and the batch-wise readers.
* ``merge``: the merge-join of two key-ordered streams on canonical values (pure).

Importing this package stays light: database clients load when the command runs.
"""

from __future__ import annotations

from cdc.verify.command import main, parse_tables, register

__all__ = ["main", "parse_tables", "register"]
