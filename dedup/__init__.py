"""Dedup: exact duplicates by canonical id, guarded by a Postgres unique key."""
