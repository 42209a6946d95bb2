"""Ingest: channel adapters that turn native payloads into RawOrderReceived on orders.raw."""
