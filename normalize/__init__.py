"""Normalize: one mapper per channel, native payload -> canonical Order."""
