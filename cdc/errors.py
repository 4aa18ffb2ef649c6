"""One error hierarchy for the whole pipeline.

The retry policy reads the class, never the message: ``TransientError`` is retried with
backoff, ``PermanentError`` is not. Every message says what failed, where, and what to do,
and never carries a secret.
"""

from __future__ import annotations


class CdcError(Exception):
    """Root of every error the pipeline raises on purpose."""


class TransientError(CdcError):
    """A failure that may pass: connection lost, timeout, throttling, service unavailable."""


class PermanentError(CdcError):
    """A failure that retrying cannot fix: credentials, data, configuration."""


class ConfigError(PermanentError):
    """Settings are missing or invalid. The message lists every problem at once."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid configuration ({len(self.problems)} problem(s)):\n{lines}")


class AuthError(PermanentError):
    """A service refused the credentials it was given."""


class SourceUnavailable(TransientError):
    """PostgreSQL could not be reached or dropped the connection."""


class SnapshotInvalidated(TransientError):
    """A table changed in a way an exported snapshot cannot see through: copy again at a new one."""


class SourceError(PermanentError):
    """PostgreSQL is reachable but cannot serve the pipeline as configured."""


class SlotMissing(SourceError):
    """The replication slot the checkpoint refers to does not exist."""


class DecodeError(PermanentError):
    """The decoder sent something the parser cannot turn into changes."""


class SchemaError(PermanentError):
    """A table cannot be replicated as it is defined (no key, unsupported change)."""


class StageError(TransientError):
    """Writing or reading the Parquet stage failed."""


class SinkUnavailable(TransientError):
    """Snowflake could not be reached or asked us to come back later."""


class MergeError(PermanentError):
    """Snowflake rejected a load or MERGE statement."""


class CheckpointUnavailable(TransientError):
    """DynamoDB could not be reached or throttled the request."""


class TransactionTooLarge(PermanentError):
    """One transaction needs more time to read than the invocation's budget ever allows."""


class CheckpointConflict(PermanentError):
    """The checkpoint changed under us, or our lease was lost: this run must not write."""


class LeaseHeld(CdcError):
    """Another live invocation holds the pipeline lease. Not a failure: exit cleanly."""

    def __init__(self, pipeline: str, owner: str, expires_at: float) -> None:
        self.pipeline = pipeline
        self.owner = owner
        self.expires_at = expires_at
        super().__init__(
            f"pipeline {pipeline!r}: lease held by {owner} until {expires_at:.0f} (epoch seconds); "
            "this run did no work"
        )


class SecretsError(PermanentError):
    """Vault refused us or a secret is missing a field."""


class SecretsUnavailable(TransientError):
    """Vault could not be reached."""


class CheckpointError(PermanentError):
    """The checkpoint store is misconfigured (missing table, no permission)."""


class UnknownColumn(SchemaError):
    """A change names a column the window's table schema does not have (added, dropped or renamed)."""

    def __init__(self, schema: str, table: str, column: str) -> None:
        self.schema, self.table, self.column = schema, table, column
        super().__init__(
            f"table {schema}.{table}: a change has column {column!r}, which the table's schema does not have"
        )
