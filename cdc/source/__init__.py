"""Reading changes from PostgreSQL: the wal2json v2 parser (pure) and the slot reader."""
