"""Shared plumbing: settings, stage runner, projection writer, embedded services, CLI."""
