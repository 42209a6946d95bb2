"""Notify: tell the buyer, once per (order, event, channel), and keep the send log."""
