"""The local runtime: embedded PostgreSQL, PGMQ, a local API and workers around the same handlers."""
