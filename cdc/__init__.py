"""Change-data-capture from PostgreSQL logical decoding (wal2json) into Snowflake."""

__version__ = "0.1.0"
