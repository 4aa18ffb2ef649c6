"""The Snowflake sink: SQL builders (``sql``) and their execution (``sink``)."""

from cdc.snowflake.sink import ApplyResult, SnowflakeSink, map_error

__all__ = ["ApplyResult", "SnowflakeSink", "map_error"]
